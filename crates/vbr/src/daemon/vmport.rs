//! `vbr port add` / `vbr port del`: VM ports. QEMU's `-netdev stream` and `-netdev dgram`
//! reach a UNIX socket under the state directory (`vm/NAME.sock`, kept across restarts
//! with the port); `-netdev tap` opens a persistent TAP vbridge made (named like the
//! port). The answer carries the QEMU arguments that reach the port.

use std::path::{Path, PathBuf};

use vbridge_core::MacAddr;
use vbridge_datapath::{Datapath, PortKind, PortSpec};

use super::errors::dp;
use super::handler::Outcome;
use crate::api::{ApiError, ErrorKind, VmPort, VmPortKind};

/// Longest UNIX socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_PATH: usize = 107;

/// The QEMU arguments of a NIC on port `name` at `socket` with `mac`.
pub(crate) fn qemu_args(kind: VmPortKind, name: &str, socket: &Path, mac: MacAddr) -> Vec<String> {
    let path = socket.display();
    let netdev = match kind {
        VmPortKind::Tap => {
            format!("tap,id={name},ifname={name},script=no,downscript=no,vhost=off")
        }
        VmPortKind::Dgram => format!(
            "dgram,id={name},local.type=unix,local.path={path}.guest,remote.type=unix,remote.path={path}"
        ),
        _ => {
            format!("stream,id={name},server=off,reconnect-ms=1000,addr.type=unix,addr.path={path}")
        }
    };
    vec![
        "-netdev".into(),
        netdev,
        "-device".into(),
        format!("virtio-net-pci,netdev={name},mac={mac}"),
    ]
}

/// Adds VM port `name` of `kind` to `bridge`, listening under `state_dir`.
pub(crate) fn add(
    d: &Datapath,
    state_dir: &Path,
    bridge: &str,
    name: &str,
    kind: VmPortKind,
    mac: Option<&str>,
) -> Outcome {
    crate::names::check_ifname(name).map_err(ApiError::invalid)?;
    let port_kind = match kind {
        VmPortKind::Stream => PortKind::Stream,
        VmPortKind::Dgram => PortKind::Dgram,
        VmPortKind::VhostUser => {
            return Err(ApiError::invalid(
                "vhost-user ports are not built yet: use --type stream or dgram (or a TAP: let QEMU make it, then `vbr addif`)",
            ));
        }
        VmPortKind::Tap => PortKind::VmTap,
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
            qemu_args(kind, name, Path::new(""), mac),
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
    let qemu = qemu_args(kind, name, &socket, mac);
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
        Some((b, PortKind::Stream | PortKind::Dgram | PortKind::VmTap)) if b == bridge => {
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
        let a = qemu_args(VmPortKind::Stream, "vm0", s, mac);
        assert_eq!(
            a,
            [
                "-netdev",
                "stream,id=vm0,server=off,reconnect-ms=1000,addr.type=unix,addr.path=/var/lib/vbridge/vm/vm0.sock",
                "-device",
                "virtio-net-pci,netdev=vm0,mac=52:54:00:12:34:56",
            ]
        );
        let d = qemu_args(VmPortKind::Dgram, "vm1", s, mac);
        assert!(d[1].starts_with(
            "dgram,id=vm1,local.type=unix,local.path=/var/lib/vbridge/vm/vm0.sock.guest,"
        ));
        assert!(d[1].ends_with("remote.type=unix,remote.path=/var/lib/vbridge/vm/vm0.sock"));
    }
}
