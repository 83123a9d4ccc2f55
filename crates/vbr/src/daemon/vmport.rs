//! `vbr port add` / `vbr port del`: VM ports. QEMU's `-netdev stream`, `-netdev dgram`
//! and `-netdev vhost-user` reach a UNIX socket under the state directory
//! (`vm/NAME.sock`, kept across restarts with the port; for vhost-user `--client`, QEMU
//! listens there and vbridge connects); `-netdev tap` opens a persistent TAP vbridge
//! made (named like the port). The answer carries the QEMU arguments that reach the
//! port; for vhost-user they include the shared guest memory QEMU must use, its size
//! (`RAM`) left for the user to fill in as `-m`.

use std::path::{Path, PathBuf};

use vbridge_core::MacAddr;
use vbridge_datapath::{Datapath, PortKind, PortSpec};

use super::errors::dp;
use super::handler::Outcome;
use crate::api::{ApiError, ErrorKind, VmPort, VmPortKind};

/// Longest UNIX socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_PATH: usize = 107;

/// The QEMU arguments of a NIC on port `name` at `socket` with `mac` (`client`: a
/// vhost-user port where QEMU listens).
pub(crate) fn qemu_args(
    (kind, client): (VmPortKind, bool),
    name: &str,
    socket: &Path,
    mac: MacAddr,
) -> Vec<String> {
    let path = socket.display();
    let mut args: Vec<String> = Vec::new();
    let netdev = match kind {
        VmPortKind::VhostUser => {
            // The guest's memory must be shared with vbridge; its size is the user's.
            let server = if client {
                "server=on"
            } else {
                "reconnect-ms=1000"
            };
            args.extend([
                "-object".into(),
                "memory-backend-memfd,id=mem,size=RAM,share=on".into(),
                "-numa".into(),
                "node,memdev=mem".into(),
                "-chardev".into(),
                format!("socket,id={name},path={path},{server}"),
            ]);
            format!("vhost-user,id={name},chardev={name}")
        }
        VmPortKind::Tap => {
            format!("tap,id={name},ifname={name},script=no,downscript=no,vhost=off")
        }
        VmPortKind::Dgram => format!(
            "dgram,id={name},local.type=unix,local.path={path}.guest,remote.type=unix,remote.path={path}"
        ),
        VmPortKind::Stream => {
            format!("stream,id={name},server=off,reconnect-ms=1000,addr.type=unix,addr.path={path}")
        }
    };
    args.extend([
        "-netdev".into(),
        netdev,
        "-device".into(),
        format!("virtio-net-pci,netdev={name},mac={mac}"),
    ]);
    args
}

/// Adds VM port `name` of `kind` to `bridge`, listening under `state_dir`.
pub(crate) fn add(
    d: &Datapath,
    state_dir: &Path,
    bridge: &str,
    name: &str,
    (kind, client): (VmPortKind, bool),
    mac: Option<&str>,
) -> Outcome {
    crate::names::check_ifname(name).map_err(ApiError::invalid)?;
    let port_kind = match (kind, client) {
        (VmPortKind::VhostUser, false) => PortKind::VhostUser,
        (VmPortKind::VhostUser, true) => PortKind::VhostUserClient,
        (_, true) => {
            return Err(ApiError::invalid(
                "--client is for vhost-user ports (QEMU listening, vbridge connecting)",
            ));
        }
        (VmPortKind::Stream, false) => PortKind::Stream,
        (VmPortKind::Dgram, false) => PortKind::Dgram,
        (VmPortKind::Tap, false) => PortKind::VmTap,
    };
    let mac = match mac {
        Some(m) => m
            .parse::<MacAddr>()
            .map_err(|e| ApiError::invalid(format!("--mac {m}: {e}")))
            .and_then(|m| {
                if m.is_unicast() {
                    Ok(m)
                } else {
                    Err(ApiError::invalid(format!(
                        "--mac {m} must be a unicast address"
                    )))
                }
            })?,
        None => crate::mac::random(),
    };
    if kind == VmPortKind::Tap {
        d.add_port(bridge, &PortSpec::new(name, PortKind::VmTap), false)
            .map_err(dp)?;
        return vm_port(
            bridge,
            name,
            name.to_owned(),
            mac,
            qemu_args((kind, false), name, Path::new(""), mac),
        );
    }
    let dir = std::fs::canonicalize(state_dir)
        .map(|d| d.join("vm"))
        .map_err(|e| ApiError::new(ErrorKind::HostFailure, format!("the state directory: {e}")))?;
    std::fs::create_dir_all(&dir).map_err(|e| {
        ApiError::new(
            ErrorKind::HostFailure,
            format!("making {}: {e}", dir.display()),
        )
    })?;
    let socket: PathBuf = dir.join(format!("{name}.sock"));
    if socket.as_os_str().len() + ".guest".len() > MAX_PATH {
        return Err(ApiError::invalid(format!(
            "the socket path {} is too long for a UNIX socket (use a shorter --state-dir)",
            socket.display()
        )));
    }
    let mut spec = PortSpec::new(name, port_kind);
    spec.socket = Some(socket.clone());
    d.add_port(bridge, &spec, false).map_err(dp)?;
    let qemu = qemu_args((kind, client), name, &socket, mac);
    vm_port(bridge, name, socket.display().to_string(), mac, qemu)
}

fn vm_port(bridge: &str, name: &str, socket: String, mac: MacAddr, qemu: Vec<String>) -> Outcome {
    serde_json::to_value(VmPort {
        bridge: bridge.to_owned(),
        port: name.to_owned(),
        socket,
        mac: mac.to_string(),
        qemu,
    })
    .map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
}

/// Removes VM port `name` of `bridge` (its socket file goes with it).
pub(crate) fn del(d: &Datapath, bridge: &str, name: &str) -> Outcome {
    match d.find_port(name).map_err(dp)? {
        Some((b, k)) if b == bridge && (k.has_socket() || k == PortKind::VmTap) => {
            d.del_port(bridge, name).map_err(dp)?;
            Ok(serde_json::json!({}))
        }
        Some((b, _)) if b == bridge => Err(ApiError::invalid(format!(
            "{name} is not a VM port (use `vbr delif {bridge} {name}`)"
        ))),
        _ => Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no port {name} on bridge {bridge} (see `vbr show`)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_arguments_name_the_socket_and_the_mac() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        let s = Path::new("/var/lib/vbridge/vm/vm0.sock");
        let a = qemu_args((VmPortKind::Stream, false), "vm0", s, mac);
        assert_eq!(
            a,
            [
                "-netdev",
                "stream,id=vm0,server=off,reconnect-ms=1000,addr.type=unix,addr.path=/var/lib/vbridge/vm/vm0.sock",
                "-device",
                "virtio-net-pci,netdev=vm0,mac=52:54:00:12:34:56",
            ]
        );
        let d = qemu_args((VmPortKind::Dgram, false), "vm1", s, mac);
        assert!(d[1].starts_with(
            "dgram,id=vm1,local.type=unix,local.path=/var/lib/vbridge/vm/vm0.sock.guest,"
        ));
        assert!(d[1].ends_with("remote.type=unix,remote.path=/var/lib/vbridge/vm/vm0.sock"));
    }

    #[test]
    fn vhost_user_arguments_share_the_guest_memory_both_ways_round() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        let s = Path::new("/run/vbr/vm/v0.sock");
        let a = qemu_args((VmPortKind::VhostUser, false), "v0", s, mac);
        assert_eq!(
            a,
            [
                "-object",
                "memory-backend-memfd,id=mem,size=RAM,share=on",
                "-numa",
                "node,memdev=mem",
                "-chardev",
                "socket,id=v0,path=/run/vbr/vm/v0.sock,reconnect-ms=1000",
                "-netdev",
                "vhost-user,id=v0,chardev=v0",
                "-device",
                "virtio-net-pci,netdev=v0,mac=52:54:00:12:34:56",
            ]
        );
        let c = qemu_args((VmPortKind::VhostUser, true), "v0", s, mac);
        assert_eq!(c[5], "socket,id=v0,path=/run/vbr/vm/v0.sock,server=on");
    }
}
