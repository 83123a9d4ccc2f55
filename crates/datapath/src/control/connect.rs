//! Ports that put a network namespace on a bridge (`vbr connect`): a TAP created inside
//! the namespace under its final name (default; persistent, so a daemon restart finds it
//! with its addresses), or a veth pair whose host end is attached with AF_PACKET. The
//! namespace side gets its MAC, addresses, `lo` and the link up, a default route and any
//! other routes.

use std::net::IpAddr;

use ipnet::IpNet;

use serde::{Deserialize, Serialize};
use std::os::fd::OwnedFd;
use vbridge_core::MacAddr;

use vbridge_host::ledger::{Ledger, Object, Owner};
use vbridge_host::{ErrorKind, HostError, Netlink, netns};
use vbridge_ports::{Tap, TapOptions};

use crate::control::backend::Backend;
use crate::error::DpError;

/// A namespace connection as configured and saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// A name under /run/netns, or a path such as /proc/PID/ns/net.
    pub netns: String,
    /// The interface name inside the namespace.
    pub ifname: String,
    /// Addresses with their prefix length for the interface.
    pub addresses: Vec<IpNet>,
    pub gateway: Option<IpAddr>,
    /// More routes inside the namespace: (destination network, next hop).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<(IpNet, IpAddr)>,
    pub mac: Option<MacAddr>,
    /// A veth pair instead of a TAP.
    pub veth: bool,
    /// For a namespace given by path (`/proc/PID/ns/net`): the (device, inode) of the
    /// namespace when it was connected, so a reused PID is never mistaken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_id: Option<(u64, u64)>,
    /// The index of the device vbridge made for it (the TAP inside the namespace, or the
    /// veth's host end), so a device of the same name made by someone else is never
    /// taken for ours. `None` until it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// The MTU of both ends (`None`: the kernel's default), e.g. 50 below the underlay's
    /// on a bridge with a VXLAN tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl Connection {
    /// The port's name on the bridge (and a veth connection's host-side netdev):
    /// `<namespace>-<ifname>` (`p<last path component>-<ifname>` for a path, so
    /// `p<PID>-eth0` for `/proc/PID/ns/net`) when that fits in 15 characters. Longer
    /// ones keep the namespace's first characters and the interface name around 6 hex
    /// digits of a hash of both (`mya-1f3a9b-eth0`), so names that start alike get
    /// different ports; a collision that still happens is refused by `connect`.
    pub fn port_name(&self) -> String {
        port_name(&self.netns, &self.ifname)
    }
}

/// See [`Connection::port_name`].
pub fn port_name(netns: &str, ifname: &str) -> String {
    const MAX: usize = 15;
    let ns = if netns.contains('/') {
        let spec = netns.trim_end_matches('/').trim_end_matches("/ns/net");
        format!("p{}", spec.rsplit_once('/').map_or(spec, |(_, last)| last))
    } else {
        netns.to_owned()
    };
    let plain = format!("{ns}-{ifname}");
    if plain.len() <= MAX {
        return plain;
    }
    // FNV-1a over the whole namespace spec and the interface name.
    let hash = netns
        .bytes()
        .chain([0])
        .chain(ifname.bytes())
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    let tail = format!("-{:06x}-{ifname}", hash >> 8);
    if tail.len() >= MAX {
        return format!("vc{hash:08x}");
    }
    let mut keep = MAX - tail.len();
    while !ns.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{tail}", &ns[..keep])
}

fn host(e: HostError) -> DpError {
    DpError::Host(Box::new(e))
}

/// Tolerates "already there" (addresses, routes, `lo` up on a restart).
fn idempotent(r: Result<(), HostError>) -> Result<(), HostError> {
    match r {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Gives the namespace side of a connection its settings. Runs inside the namespace.
fn configure(nl: &mut Netlink, c: &Connection) -> Result<(), DpError> {
    nl.set_up("lo").map_err(host)?;
    if let Some(mtu) = c.mtu {
        nl.set_mtu(&c.ifname, mtu).map_err(host)?;
    }
    if let Some(mac) = c.mac {
        nl.set_mac(&c.ifname, mac).map_err(host)?;
    }
    for a in &c.addresses {
        idempotent(nl.add_address(&c.ifname, a.addr(), a.prefix_len())).map_err(host)?;
    }
    nl.set_up(&c.ifname).map_err(host)?;
    if let Some(gw) = c.gateway {
        idempotent(nl.add_default_route(gw)).map_err(host)?;
    }
    for (to, via) in &c.routes {
        idempotent(nl.add_route(to.network(), to.prefix_len(), Some(*via), None)).map_err(host)?;
    }
    Ok(())
}

/// The (device, inode) identifying the namespace at `path`.
pub fn netns_identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses a path-based connection whose path now leads to another namespace.
fn check_identity(c: &Connection) -> Result<(), DpError> {
    match c.netns_id {
        Some(id) if netns_identity(&c.netns) != Some(id) => Err(DpError::InvalidName {
            name: c.netns.clone(),
            why: "that path now leads to another namespace than the one connected",
        }),
        _ => Ok(()),
    }
}

/// Opens (or re-opens) the backend of a connected port called `port`: makes its device
/// when `c.ifindex` is `None` (refused if a device of that name exists: it is not ours;
/// when `restoring` a configuration of an older version, which kept no index, the device
/// named in it is taken), re-opens the device of index `c.ifindex` otherwise (made anew
/// if it vanished). A device made is recorded in the ledger under `owner` before it is
/// made, and removed again if configuring it fails. The backend carries the connection
/// with the index of its device.
pub(crate) fn open(
    port: &str,
    c: &Connection,
    owner: &Owner,
    ledger: &Ledger,
    restoring: bool,
) -> Result<Backend, DpError> {
    check_identity(c)?;
    let ns = netns::open(&c.netns).map_err(host)?;
    let mut made = c.clone();
    let (object, existing) = if c.veth {
        let mut nl = Netlink::new().map_err(host)?;
        (
            Object::Netdev {
                name: port.to_owned(),
                netns: None,
            },
            nl.link(port).map_err(host)?.map(|l| l.index),
        )
    } else {
        let ifname = c.ifname.clone();
        (
            Object::Netdev {
                name: c.ifname.clone(),
                netns: Some(c.netns.clone()),
            },
            netns::run_in(
                &ns,
                move || Ok(vbridge_ports::netdev::ifindex(&ifname).ok()),
            )
            .map_err(host)?,
        )
    };
    let reuse = match (existing, c.ifindex) {
        (Some(i), Some(ours)) if i == ours => true,
        (Some(_), None) if restoring => true,
        (Some(_), _) if c.veth => return Err(not_ours(port, "this namespace")),
        (Some(_), _) => return Err(not_ours(&c.ifname, &c.netns)),
        (None, _) => false,
    };
    ledger
        .put(owner.clone(), object.clone(), None)
        .map_err(host)?;
    let opened = if c.veth {
        open_veth(port, c, &ns, owner, ledger, !reuse)
    } else {
        open_tap(c, &ns, existing.filter(|_| reuse))
    };
    match opened {
        Ok(mut b) => {
            let index = if c.veth { b.ifindex } else { b.conn_ifindex };
            if let Some(i) = index {
                ledger.set_ifindex(&object, i).map_err(host)?;
            }
            made.ifindex = index;
            b.conn = Some(Box::new(made));
            Ok(b)
        }
        Err(e) => {
            if !reuse {
                // Made here: it goes again (the record says which device, by index).
                if let Some(r) = ledger.get(&object) {
                    let _ = vbridge_host::ledger::undo(&r);
                }
                let _ = ledger.forget(&object);
            }
            Err(e)
        }
    }
}

/// The TAP of a connection inside namespace `ns`: the one of index `reuse`, or a new one.
fn open_tap(c: &Connection, ns: &OwnedFd, reuse: Option<u32>) -> Result<Backend, DpError> {
    let conn = c.clone();
    let (tap, ifindex, mtu) = netns::run_in(ns, move || {
        Ok((|| {
            let tap = match reuse {
                Some(i) => Tap::reopen_persistent(&conn.ifname, TapOptions::default(), i),
                None => Tap::create_persistent(&conn.ifname, TapOptions::default()),
            }
            .map_err(|e| match e {
                vbridge_ports::PortError::Exists { .. } => not_ours(&conn.ifname, &conn.netns),
                e => DpError::port(&conn.ifname, e),
            })?;
            let configured = Netlink::new()
                .map_err(host)
                .and_then(|mut nl| configure(&mut nl, &conn))
                .and_then(|()| {
                    Ok((
                        tap.ifindex().map_err(|e| DpError::port(&conn.ifname, e))?,
                        tap.mtu().ok(),
                    ))
                });
            match configured {
                Ok((ifindex, mtu)) => Ok::<_, DpError>((tap, ifindex, mtu)),
                Err(e) => {
                    if reuse.is_none() {
                        let _ = tap.set_persist(false); // it vanishes when dropped here
                    }
                    Err(e)
                }
            }
        })())
    })
    .map_err(host)??;
    let mut b = Backend::plain(Box::new(tap));
    b.mtu = mtu;
    b.conn_ifindex = Some(ifindex);
    Ok(b)
}

/// A device of that name exists and vbridge did not make it.
fn not_ours(name: &str, place: &str) -> DpError {
    DpError::NotOurs {
        name: name.to_owned(),
        place: place.to_owned(),
    }
}

/// Makes (when `create`) and configures both ends of a connection's veth pair (host end
/// `port`, its peer inside the namespace), and attaches the host end.
fn open_veth(
    port: &str,
    c: &Connection,
    ns: &OwnedFd,
    owner: &Owner,
    ledger: &Ledger,
    create: bool,
) -> Result<Backend, DpError> {
    if create {
        let mut nl = Netlink::new().map_err(host)?;
        nl.create_veth_with_peer_in(port, &c.ifname, ns)
            .map_err(|e| match e.kind() {
                ErrorKind::AlreadyExists => not_ours(&c.ifname, &c.netns),
                _ => host(e),
            })?;
        if let Ok(Some(l)) = nl.link(port) {
            let object = Object::Netdev {
                name: port.to_owned(),
                netns: None,
            };
            ledger.set_ifindex(&object, l.index).map_err(host)?;
        }
    }
    if let Some(mtu) = c.mtu {
        Netlink::new()
            .and_then(|mut nl| nl.set_mtu(port, mtu))
            .map_err(host)?;
    }
    let conn = c.clone();
    netns::run_in(ns, move || {
        Ok(Netlink::new()
            .map_err(host)
            .and_then(|mut nl| configure(&mut nl, &conn)))
    })
    .map_err(host)??;
    // Made here for the connection: not the host's uplink nor anyone's port.
    crate::control::backend::attach_interface(port, owner, ledger, true)
}

/// Whether the namespace of a connection (still) exists, as the same namespace.
pub(crate) fn netns_exists(c: &Connection) -> bool {
    check_identity(c).is_ok() && netns::open(&c.netns).is_ok()
}

#[cfg(test)]
mod tests {
    use super::port_name;

    #[test]
    fn port_names_are_predictable_and_short_names_stay_readable() {
        assert_eq!(port_name("ns0", "eth0"), "ns0-eth0");
        assert_eq!(port_name("/proc/4242/ns/net", "eth0"), "p4242-eth0");
        assert_eq!(port_name("abcdefghij", "eth0"), "abcdefghij-eth0"); // exactly 15
        let a = port_name("myapp-database-1", "eth0");
        let b = port_name("myapp-database-2", "eth0");
        assert_ne!(a, b, "names that start alike must not collide");
        assert_eq!(
            a,
            port_name("myapp-database-1", "eth0"),
            "the same every time"
        );
        for n in [&a, &b] {
            assert_eq!(n.len(), 15, "{n}");
            assert!(n.starts_with("mya-") && n.ends_with("-eth0"), "{n}");
        }
        assert_eq!(port_name("/proc/4242/ns/net/", "eth0"), "p4242-eth0");
        assert_eq!(
            port_name("/var/run/docker/netns/abc", "eth0"),
            "pabc-eth0",
            "any path: its last component"
        );
        // Non-ASCII names are cut on a character boundary.
        let n = port_name("ñañañañañañañañaña", "eth0");
        assert!(n.len() <= 15 && n.ends_with("-eth0"), "{n}");
        // 200 long names that start alike: no collisions (the bench connects as many).
        let names: std::collections::HashSet<_> = (0..200)
            .map(|i| port_name(&format!("vbe1234567n{i}"), "eth0"))
            .collect();
        assert_eq!(names.len(), 200);
        assert_ne!(
            port_name("a-very-long-namespace", "eth0"),
            port_name("a-very-long-namespace", "eth1")
        );
        let long_if = port_name("ns0", "averylongifnam");
        assert!(
            long_if.len() <= 15 && long_if.starts_with("vc"),
            "{long_if}"
        );
    }
}
