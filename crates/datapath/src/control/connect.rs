//! Ports that put a network namespace on a bridge (`vbr connect`): a TAP created inside
//! the namespace under its final name (default; persistent, so a daemon restart finds it
//! with its addresses), or a veth pair whose host end is attached with AF_PACKET. The
//! namespace side gets its MAC, addresses, `lo` and the link up, a default route and any
//! other routes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vbridge_core::MacAddr;
use vbridge_host::{ErrorKind, HostError, Netlink, netns};
use vbridge_ports::{PortIo, Tap, TapOptions};

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
    /// CIDRs for the interface.
    pub addresses: Vec<String>,
    pub gateway: Option<String>,
    /// More routes inside the namespace: (destination CIDR, next hop).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<(String, String)>,
    pub mac: Option<String>,
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

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), DpError> {
    let bad = || DpError::InvalidName {
        name: s.to_owned(),
        why: "not an address with a prefix length, like 10.0.0.2/24",
    };
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, p.parse().map_err(|_| bad())?))
}

/// Gives the namespace side of a connection its settings. Runs inside the namespace.
fn configure(nl: &mut Netlink, c: &Connection) -> Result<(), DpError> {
    nl.set_up("lo").map_err(host)?;
    if let Some(m) = &c.mac {
        let mac: MacAddr = m.parse().map_err(|_| DpError::InvalidName {
            name: m.clone(),
            why: "not a MAC address",
        })?;
        nl.set_mac(&c.ifname, mac.0).map_err(host)?;
    }
    for a in &c.addresses {
        let (ip, prefix) = parse_cidr(a)?;
        idempotent(nl.add_address(&c.ifname, ip, prefix)).map_err(host)?;
    }
    nl.set_up(&c.ifname).map_err(host)?;
    if let Some(g) = &c.gateway {
        let gw: IpAddr = g.parse().map_err(|_| DpError::InvalidName {
            name: g.clone(),
            why: "not an IP address",
        })?;
        idempotent(nl.add_default_route(gw)).map_err(host)?;
    }
    for (to, via) in &c.routes {
        let (dest, prefix) = parse_cidr(to)?;
        let gw: IpAddr = via.parse().map_err(|_| DpError::InvalidName {
            name: via.clone(),
            why: "not an IP address",
        })?;
        idempotent(nl.add_route(dest, prefix, Some(gw), None)).map_err(host)?;
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
/// when `c.ifindex` is `None` (refused if a device of that name exists: it is not ours),
/// re-opens the device of index `c.ifindex` otherwise (made anew if it vanished). What
/// this call creates is removed again if configuring it fails. The backend carries the
/// connection with the index of its device.
pub(crate) fn open(port: &str, c: &Connection) -> Result<Backend, DpError> {
    check_identity(c)?;
    let ns = netns::open(&c.netns).map_err(host)?;
    let mut made = c.clone();
    if c.veth {
        let mut nl = Netlink::new().map_err(host)?;
        let existing = nl.link(port).map_err(host)?.map(|l| l.index);
        let created = match (existing, c.ifindex) {
            (Some(i), Some(ours)) if i == ours => false,
            (Some(_), _) => return Err(not_ours(port, "this namespace")),
            (None, _) => {
                nl.create_veth_with_peer_in(port, &c.ifname, &ns)
                    .map_err(|e| match e.kind() {
                        ErrorKind::AlreadyExists => not_ours(&c.ifname, &c.netns),
                        _ => host(e),
                    })?;
                true
            }
        };
        let opened = open_veth(port, c, &ns);
        if opened.is_err() && created {
            let _ = nl.delete_link(port); // its peer in the namespace goes with it
        }
        let mut b = opened?;
        made.ifindex = b.ifindex;
        b.conn = Some(Box::new(made));
        return Ok(b);
    }
    let conn = c.clone();
    let (tap, ifindex, mtu) = netns::run_in(&ns, move || {
        Ok((|| {
            let current = vbridge_ports::netdev::ifindex(&conn.ifname).ok();
            let (tap, created) = match (current, conn.ifindex) {
                (Some(i), Some(ours)) if i == ours => (
                    Tap::reopen_persistent(&conn.ifname, TapOptions::default(), i)
                        .map_err(|e| DpError::port(&conn.ifname, e))?,
                    false,
                ),
                (Some(_), _) => return Err(not_ours(&conn.ifname, &conn.netns)),
                (None, _) => (
                    Tap::create_persistent(&conn.ifname, TapOptions::default())
                        .map_err(|e| DpError::port(&conn.ifname, e))?,
                    true,
                ),
            };
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
                    if created {
                        let _ = tap.set_persist(false); // it vanishes when dropped here
                    }
                    Err(e)
                }
            }
        })())
    })
    .map_err(host)??;
    made.ifindex = Some(ifindex);
    let mut b = Backend::plain(Box::new(tap));
    b.mtu = mtu;
    b.conn = Some(Box::new(made));
    Ok(b)
}

/// A device of that name exists and vbridge did not make it.
fn not_ours(name: &str, place: &str) -> DpError {
    DpError::NotOurs {
        name: name.to_owned(),
        place: place.to_owned(),
    }
}

/// Configures both ends of a connection's veth pair (host end `port`) and attaches the
/// host end.
fn open_veth(port: &str, c: &Connection, ns: &std::os::fd::OwnedFd) -> Result<Backend, DpError> {
    let conn = c.clone();
    netns::run_in(ns, move || {
        Ok(Netlink::new()
            .map_err(host)
            .and_then(|mut nl| configure(&mut nl, &conn)))
    })
    .map_err(host)??;
    crate::control::backend::attach_interface(port)
}

/// Whether the namespace of a connection (still) exists, as the same namespace.
pub(crate) fn netns_exists(c: &Connection) -> bool {
    check_identity(c).is_ok() && netns::open(&c.netns).is_ok()
}

/// Removes what a connection made outside the port itself: a veth's host end (its peer
/// in the namespace goes with it).
pub(crate) fn remove(port: &str, c: &Connection, io: Option<&mut Box<dyn PortIo>>) {
    if let Some(io) = io {
        io.release();
    }
    if c.veth {
        if let Ok(mut nl) = Netlink::new() {
            let _ = nl.delete_link(port);
        }
    }
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
