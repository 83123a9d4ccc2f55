//! Port backends as the control side opens and closes them, never on the forwarding
//! thread: AF_PACKET on an existing netdev (never the loopback device, a device enslaved
//! to a bridge, bond, team or VRF, such a master itself, or without `force` the interface
//! of the host's default route), a TAP held by vbridge, a namespace connection, a
//! bridge's host TAP; the link speed that sets a port's spanning-tree path cost; putting
//! a veth port on its bridge's fast path; and releasing each: everything a port or a
//! bridge made or changed is in the ledger under its owner, and goes when it goes.

use std::sync::Arc;

use vbridge_core::MacAddr;
use vbridge_host::ledger::{Ledger, Object, Owner};
use vbridge_host::{IpFamily, Netlink};
use vbridge_ports::{
    AfPacket, AfPacketOptions, FastPath, FastPort, PortIo, QemuDgram, QemuStream, Tap, TapOptions,
    VhostMode, VhostUser, netdev,
};

use crate::action::Retired;
use crate::bridge_rt::PortSpec;
use crate::control::quiet;
use crate::error::DpError;
use crate::view::PortKind;

/// An opened port backend with what is known of its netdev.
pub(crate) struct Backend {
    pub(crate) io: Box<dyn PortIo>,
    pub(crate) mac: Option<MacAddr>,
    /// The netdev's index in the daemon's namespace (interfaces and host TAPs), to match
    /// link notifications and to notice a device replaced by another of the same name.
    pub(crate) ifindex: Option<u32>,
    pub(crate) mtu: Option<u32>,
    /// On the bridge's kernel fast path (an interface of this namespace).
    pub(crate) fast: Option<FastPort>,
    /// A veth whose peer is in another namespace (the fast path hands frames to the peer).
    pub(crate) peer: bool,
    /// Link speed (Mb/s) and duplex, for spanning-tree path costs.
    pub(crate) link: (Option<u32>, bool),
    /// For a namespace connection: the connection as now made (with its device's index).
    pub(crate) conn: Option<Box<crate::Connection>>,
    /// A connection's TAP: its index inside the namespace.
    pub(crate) conn_ifindex: Option<u32>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.io.name())
            .field("ifindex", &self.ifindex)
            .field("fast", &self.fast.is_some())
            .finish()
    }
}

impl Backend {
    /// A backend of `io` with nothing more known (a TAP whose far end is a VM or a
    /// namespace: its MAC is not a bridge address).
    pub(crate) fn plain(io: Box<dyn PortIo>) -> Backend {
        Backend {
            io,
            mac: None,
            ifindex: None,
            mtu: None,
            fast: None,
            peer: false,
            link: (None, true),
            conn: None,
            conn_ifindex: None,
        }
    }
}

/// The ledger owner of port `port` of `bridge`.
pub(crate) fn port_owner(bridge: &str, port: &str) -> Owner {
    Owner::Port {
        bridge: bridge.to_owned(),
        port: port.to_owned(),
    }
}

/// The ledger owner of a bridge (its host interface).
pub(crate) fn bridge_owner(bridge: &str) -> Owner {
    Owner::Bridge {
        name: bridge.to_owned(),
    }
}

/// The speed (Mb/s) and duplex the kernel reports for `dev`, for STP path costs.
fn link_speed(dev: &str) -> (Option<u32>, bool) {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{dev}/{f}")).ok();
    let speed = read("speed")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|s| *s > 0)
        .and_then(|s| u32::try_from(s).ok());
    let full = read("duplex").is_none_or(|d| d.trim() != "half");
    (speed, full)
}

/// Takes away everything the ledger records for `owner`, newest first, and forgets it.
/// The settings of a device the owner made here go with the device: they are forgotten,
/// not restored on a device about to be deleted.
pub fn undo_owned(owner: &Owner, ledger: &Ledger) {
    let records = ledger.owned_by(owner);
    let doomed: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.object {
            Object::Netdev { name, netns: None } if r.ifindex.is_some() => Some(name.clone()),
            _ => None,
        })
        .collect();
    for r in records {
        let moot = matches!(&r.object, Object::Sysctl { path }
            if path.split('/').any(|part| doomed.iter().any(|d| d == part)));
        if moot {
            let _ = ledger.forget(&r.object);
            continue;
        }
        match vbridge_host::ledger::undo(&r) {
            Ok(_) => {
                let _ = ledger.forget(&r.object);
            }
            Err(e) => tracing::warn!(object = ?r.object, error = %e, "cannot undo"),
        }
    }
}

/// Closes a port removed for good and undoes what it made or changed: its fast-path
/// program, persistence of its TAP, a veth pair or TAP made for a connection, the
/// quieted sysctls of an attached interface (a host port: its bridge's host interface).
pub(crate) fn release(r: Retired, ledger: &Ledger) {
    let owner = if r.kind == PortKind::Host {
        bridge_owner(&r.bridge)
    } else {
        port_owner(&r.bridge, &r.name)
    };
    let Retired {
        mut io, fast, kind, ..
    } = r;
    if let (Some(io), Some(_)) = (io.as_ref(), fast.as_ref()) {
        let _ = io.detach_fast_filter();
    }
    if kind == PortKind::Interface {
        // A packet socket and a tcx link each take an RCU grace period to close: the
        // device goes first (what vbridge made of it), and they are closed behind the
        // caller's back, off a device that no longer carries frames.
        undo_owned(&owner, ledger);
        let closing = std::thread::Builder::new()
            .name("vbr-close".into())
            .spawn(move || {
                drop(fast);
                drop(io);
            });
        if let Err(e) = closing {
            tracing::warn!(error = %e, "closing a port's descriptors on this thread");
        }
        return;
    }
    drop(fast);
    if let Some(io) = io.as_mut() {
        io.release(); // a persistent TAP stops persisting: it goes when closed
    }
    drop(io);
    undo_owned(&owner, ledger);
}

/// Closes a port at daemon shutdown: its fast-path program goes and its interface's
/// sysctls come back, but what persists for the next start (a host interface, a
/// connection's TAP or veth pair) stays.
pub(crate) fn close(r: Retired, ledger: &Ledger) {
    let Retired {
        bridge,
        name,
        kind,
        io,
        fast,
        ..
    } = r;
    if let (Some(io), Some(_)) = (io.as_ref(), fast.as_ref()) {
        let _ = io.detach_fast_filter();
    }
    drop(fast);
    if kind != PortKind::Host {
        quiet::restore(&port_owner(&bridge, &name), ledger);
    }
    drop(io);
}

/// Closes what a port let go of while it stays (its device went away, or it left the
/// fast path).
pub(crate) fn dispose(io: Option<Box<dyn PortIo>>, fast: Option<FastPort>, release: bool) {
    if let (Some(io), Some(_)) = (io.as_ref(), fast.as_ref()) {
        let _ = io.detach_fast_filter();
    }
    drop(fast);
    if let Some(mut io) = io {
        if release {
            io.release(); // a connection's TAP must not keep a deleted namespace alive
        }
    }
}

/// Closes a backend that was opened for port `name` of `bridge` but not taken, undoing
/// what opening it made.
pub(crate) fn discard(bridge: &str, name: &str, kind: PortKind, b: Backend, ledger: &Ledger) {
    release(
        Retired {
            bridge: bridge.to_owned(),
            name: name.to_owned(),
            kind,
            io: Some(b.io),
            fast: b.fast,
        },
        ledger,
    );
}

/// The host TAP `name` of a new bridge (persistent, carrying `mac`, down), recorded in
/// the ledger before it is made.
pub(crate) fn create_host(name: &str, mac: MacAddr, ledger: &Ledger) -> Result<Backend, DpError> {
    let object = Object::Netdev {
        name: name.to_owned(),
        netns: None,
    };
    if netdev::exists(name).unwrap_or(false) {
        return Err(DpError::NotOurs {
            name: name.to_owned(),
            place: "this namespace".into(),
        });
    }
    ledger
        .put(bridge_owner(name), object.clone(), None)
        .map_err(host)?;
    let made = Tap::create_persistent(name, TapOptions::default())
        .map_err(|e| DpError::port(name, e))
        .and_then(|tap| host_backend(name, tap, mac));
    match &made {
        Ok(b) => {
            if let Some(i) = b.ifindex {
                ledger.set_ifindex(&object, i).map_err(host)?;
            }
        }
        Err(_) => {
            let _ = ledger.forget(&object);
        }
    }
    made
}

/// The host TAP of a restored bridge: the one an earlier run made (index `ifindex`),
/// or a new one if it is gone. A device of that name with another index is someone
/// else's and refused. (`ifindex` is `None` in configurations of older versions: the
/// TAP named like the bridge is then taken as the one they made.)
pub(crate) fn open_host(
    name: &str,
    mac: MacAddr,
    ifindex: Option<u32>,
    ledger: &Ledger,
) -> Result<Backend, DpError> {
    match (netdev::ifindex(name), ifindex) {
        (Ok(i), Some(ours)) if i == ours => reopen_host(name, i, mac, ledger),
        (Ok(_), Some(_)) => Err(DpError::NotOurs {
            name: name.to_owned(),
            place: "this namespace".into(),
        }),
        (Ok(i), None) => reopen_host(name, i, mac, ledger),
        (Err(vbridge_ports::PortError::NotFound { .. }), _) => create_host(name, mac, ledger),
        (Err(e), _) => Err(DpError::port(name, e)),
    }
}

/// The host TAP `name` an earlier run made (index `ifindex`), found again at restart.
fn reopen_host(
    name: &str,
    ifindex: u32,
    mac: MacAddr,
    ledger: &Ledger,
) -> Result<Backend, DpError> {
    let object = Object::Netdev {
        name: name.to_owned(),
        netns: None,
    };
    ledger
        .put(bridge_owner(name), object.clone(), None)
        .map_err(host)?;
    ledger.set_ifindex(&object, ifindex).map_err(host)?;
    let tap = Tap::reopen_persistent(name, TapOptions::default(), ifindex)
        .map_err(|e| DpError::port(name, e))?;
    host_backend(name, tap, mac)
}

fn host_backend(name: &str, tap: Tap, mac: MacAddr) -> Result<Backend, DpError> {
    let fail = |e| DpError::port(name, e);
    let made = (|| {
        tap.set_mac(mac)?;
        Ok((tap.ifindex()?, tap.mtu()?))
    })();
    let (ifindex, mtu) = match made {
        Ok(x) => x,
        Err(e) => {
            let _ = tap.set_persist(false);
            return Err(fail(e));
        }
    };
    let mut b = Backend::plain(Box::new(tap));
    b.ifindex = Some(ifindex);
    b.mtu = Some(mtu);
    Ok(b)
}

/// The persistent TAP `name` an earlier run made (found by the index the ledger holds),
/// or a new one recorded before it is made; up. A device of that name vbridge did not
/// make is refused. Returns it with its index and MTU.
fn persistent_tap(name: &str, owner: &Owner, ledger: &Ledger) -> Result<(Tap, u32, u32), DpError> {
    let object = Object::Netdev {
        name: name.to_owned(),
        netns: None,
    };
    let ours = ledger.get(&object).and_then(|r| r.ifindex);
    let fail = |e| DpError::port(name, e);
    let tap = match netdev::ifindex(name) {
        Ok(i) if Some(i) == ours => {
            Tap::reopen_persistent(name, TapOptions::default(), i).map_err(fail)?
        }
        Ok(_) => {
            return Err(DpError::NotOurs {
                name: name.to_owned(),
                place: "this namespace".into(),
            });
        }
        Err(vbridge_ports::PortError::NotFound { .. }) => {
            ledger
                .put(owner.clone(), object.clone(), None)
                .map_err(host)?;
            match Tap::create_persistent(name, TapOptions::default()) {
                Ok(t) => t,
                Err(e) => {
                    let _ = ledger.forget(&object);
                    return Err(fail(e));
                }
            }
        }
        Err(e) => return Err(fail(e)),
    };
    let made = (|| {
        let i = tap.ifindex()?;
        tap.set_up()?;
        Ok((i, tap.mtu()?))
    })();
    let (ifindex, mtu) = match made {
        Ok(x) => x,
        Err(e) => {
            let _ = tap.set_persist(false);
            let _ = ledger.forget(&object);
            return Err(fail(e));
        }
    };
    ledger.set_ifindex(&object, ifindex).map_err(host)?;
    Ok((tap, ifindex, mtu))
}

/// The host interface `name` on one VLAN of a bridge: a [`persistent_tap`] vbridge
/// reads and writes itself.
fn gateway(name: &str, owner: &Owner, ledger: &Ledger) -> Result<Backend, DpError> {
    let (tap, ifindex, mtu) = persistent_tap(name, owner, ledger)?;
    let mut b = Backend::plain(Box::new(tap));
    b.ifindex = Some(ifindex);
    b.mtu = Some(mtu);
    // No MAC for the core: the interface is a host on the VLAN, learned like any other
    // (a port MAC would take part in the bridge MAC rule and be delivered to the
    // bridge's own host interface).
    Ok(b)
}

/// A VM's TAP (`vbr port add --type tap`): a [`persistent_tap`] whose one queue QEMU
/// opens by name, read by vbridge like any interface (`AF_PACKET`), so its flows take
/// the kernel fast path.
fn vm_tap(name: &str, owner: &Owner, ledger: &Ledger) -> Result<Backend, DpError> {
    let object = Object::Netdev {
        name: name.to_owned(),
        netns: None,
    };
    let ours = ledger.get(&object).and_then(|r| r.ifindex);
    let made = match netdev::ifindex(name) {
        // Made by an earlier run (a restart): QEMU may hold its one queue, so it is not
        // opened again.
        Ok(i) if Some(i) == ours => false,
        // Made now (or refused: someone else's); the device stays, its queue is QEMU's.
        _ => {
            drop(persistent_tap(name, owner, ledger)?);
            true
        }
    };
    let attached = attach_interface(name, owner, ledger, true);
    if attached.is_err() && made {
        // A persistent TAP no descriptor holds: deleting it is what undoing it means.
        undo_made(ledger, &object);
    }
    attached
}

/// A VXLAN port: the kernel `vxlan` netdev an earlier run made (found by the index the
/// ledger holds) or a new one recorded before it is made, with its remotes, read like an
/// interface (so its flows take the kernel fast path, GSO kept). A device of that name
/// vbridge did not make is refused.
fn vxlan(
    name: &str,
    cfg: &crate::VxlanCfg,
    owner: &Owner,
    ledger: &Ledger,
) -> Result<Backend, DpError> {
    let object = Object::Netdev {
        name: name.to_owned(),
        netns: None,
    };
    let ours = ledger.get(&object).and_then(|r| r.ifindex);
    let mut nl = Netlink::new().map_err(host)?;
    let mut made = false;
    match netdev::ifindex(name) {
        Ok(i) if Some(i) == ours => {}
        Ok(_) => {
            return Err(DpError::NotOurs {
                name: name.to_owned(),
                place: "this namespace".into(),
            });
        }
        Err(vbridge_ports::PortError::NotFound { .. }) => {
            // The underlay: the link with the local address; the tunnel's MTU is its less
            // VXLAN's 50 bytes (outer Ethernet, IPv4, UDP, VXLAN headers).
            let underlay_mtu = nl
                .links()
                .map_err(host)?
                .into_iter()
                .find(|l| {
                    nl.addresses(&l.name)
                        .is_ok_and(|a| a.iter().any(|(ip, _)| *ip == cfg.local))
                })
                .and_then(|l| l.mtu)
                .ok_or_else(|| DpError::InvalidName {
                    name: cfg.local.to_string(),
                    why: "--local must be an address of this host (on the underlay)",
                })?;
            ledger
                .put(owner.clone(), object.clone(), None)
                .map_err(host)?;
            if let Err(e) = nl.create_vxlan(name, cfg.vni, cfg.local, cfg.dstport, cfg.learning) {
                let _ = ledger.forget(&object);
                return Err(host(e));
            }
            // Its index is recorded at once, so whatever fails next takes it away again.
            match netdev::ifindex(name) {
                Ok(i) => ledger.set_ifindex(&object, i).map_err(host)?,
                Err(e) => {
                    let _ = nl.delete_link(name);
                    let _ = ledger.forget(&object);
                    return Err(DpError::port(name, e));
                }
            }
            made = true;
            if let Err(e) = nl.set_mtu(name, underlay_mtu.saturating_sub(50)) {
                undo_made(ledger, &object);
                return Err(host(e));
            }
        }
        Err(e) => return Err(DpError::port(name, e)),
    }
    let attached = cfg
        .remotes
        .iter()
        .try_for_each(|r| nl.vxlan_add_remote(name, *r).map_err(host))
        .and_then(|()| attach_interface(name, owner, ledger, true));
    if attached.is_err() && made {
        undo_made(ledger, &object);
    }
    attached
}

/// The slots of an interface port's `PACKET_MMAP` receive ring: `VBR_RING=N` (0: none,
/// `recvmmsg` as before the ring, for comparisons), else the default.
fn ring_slots() -> usize {
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::env::var("VBR_RING")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(vbridge_ports::RX_RING_SLOTS)
            .min(1 << 16)
    })
}

/// Takes away the netdev `object` names, made just now, and its record.
fn undo_made(ledger: &Ledger, object: &Object) {
    if let Some(r) = ledger.get(object) {
        let _ = vbridge_host::ledger::undo(&r);
    }
    let _ = ledger.forget(object);
}

fn host(e: vbridge_host::HostError) -> DpError {
    DpError::Host(Box::new(e))
}

/// Opens the backend of a (non-host) port of `bridge`.
pub(crate) fn open(spec: &PortSpec, bridge: &str, ledger: &Ledger) -> Result<Backend, DpError> {
    let name = &spec.name;
    let owner = port_owner(bridge, name);
    if let Some(c) = &spec.conn {
        return crate::control::connect::open(name, c, &owner, ledger, spec.restoring);
    }
    match spec.kind {
        PortKind::Interface => attach_interface(name, &owner, ledger, spec.force),
        PortKind::Tap => {
            // Not persistent: it vanishes with its descriptor, so nothing to record.
            let tap =
                Tap::create(name, TapOptions::default()).map_err(|e| DpError::port(name, e))?;
            tap.set_up().map_err(|e| DpError::port(name, e))?;
            let mtu = tap.mtu().ok();
            let mut b = Backend::plain(Box::new(tap));
            b.mtu = mtu;
            Ok(b)
        }
        PortKind::Gateway => gateway(name, &owner, ledger),
        PortKind::VmTap => vm_tap(name, &owner, ledger),
        PortKind::Vxlan => match &spec.vxlan {
            Some(cfg) => vxlan(name, cfg, &owner, ledger),
            None => Err(DpError::InvalidName {
                name: name.clone(),
                why: "a vxlan port needs its tunnel",
            }),
        },
        PortKind::VhostUser | PortKind::VhostUserClient => {
            let path = spec.socket.as_deref().ok_or(DpError::InvalidName {
                name: name.clone(),
                why: "a vhost-user port needs its socket path",
            })?;
            let mode = if spec.kind == PortKind::VhostUser {
                VhostMode::Server
            } else {
                VhostMode::Client
            };
            let io = VhostUser::new(name, path, mode).map_err(|e| DpError::port(name, e))?;
            Ok(Backend::plain(Box::new(io)))
        }
        PortKind::Stream | PortKind::Dgram => {
            let path = spec.socket.as_deref().ok_or(DpError::InvalidName {
                name: name.clone(),
                why: "a VM socket port needs its socket path",
            })?;
            let io: Box<dyn PortIo> = if spec.kind == PortKind::Stream {
                Box::new(QemuStream::listen(name, path).map_err(|e| DpError::port(name, e))?)
            } else {
                let mut guest = path.as_os_str().to_owned();
                guest.push(".guest");
                Box::new(
                    QemuDgram::bind(name, path, std::path::Path::new(&guest))
                        .map_err(|e| DpError::port(name, e))?,
                )
            };
            Ok(Backend::plain(io))
        }
        PortKind::Host | PortKind::Socket => Err(DpError::InvalidName {
            name: name.clone(),
            why: "host ports are made with their bridge, socket ports are handed over",
        }),
    }
}

/// Refuses a netdev the host needs as it is: the loopback device, a device enslaved to
/// a bridge, bond, team or VRF, such a master itself, and (unless `force`) the interface
/// of the host's default route.
fn check_attachable(name: &str, force: bool) -> Result<(), DpError> {
    let refuse = |why: String| DpError::Refused {
        name: name.to_owned(),
        why,
    };
    let mut nl = Netlink::new().map_err(host)?;
    let Some(link) = nl.link(name).map_err(host)? else {
        return Err(DpError::port(
            name,
            vbridge_ports::PortError::NotFound {
                name: name.to_owned(),
            },
        ));
    };
    if link.loopback {
        return Err(refuse("it is the loopback device".into()));
    }
    if link.is_master_kind() {
        return Err(refuse(format!(
            "it is a {} (a master of other devices), not a port",
            link.kind.as_deref().unwrap_or("master")
        )));
    }
    if let Some(m) = link.master {
        let master = nl
            .links()
            .ok()
            .and_then(|ls| ls.into_iter().find(|l| l.index == m))
            .map_or_else(|| format!("#{m}"), |l| l.name);
        return Err(refuse(format!(
            "it is enslaved to {master}; take it out there first (ip link set {name} nomaster)"
        )));
    }
    if !force {
        for family in [IpFamily::V4, IpFamily::V6] {
            let routes = nl.routes(family).unwrap_or_default();
            if routes
                .iter()
                .any(|r| r.is_default() && r.oif == Some(link.index))
            {
                return Err(refuse(
                    "the host's default route goes out through it: attaching it would cut the host off; add --force if that is what you want".into(),
                ));
            }
        }
    }
    Ok(())
}

/// An existing netdev `name` as a port: read and written with AF_PACKET, brought up and
/// kept from the host's IP stack (recorded under `owner`).
pub(crate) fn attach_interface(
    name: &str,
    owner: &Owner,
    ledger: &Ledger,
    force: bool,
) -> Result<Backend, DpError> {
    check_attachable(name, force)?;
    let opts = AfPacketOptions {
        rx_ring_slots: ring_slots(),
        ..AfPacketOptions::default()
    };
    let io = AfPacket::attach(name, opts).map_err(|e| DpError::port(name, e))?;
    netdev::set_up(name).map_err(|e| DpError::port(name, e))?;
    quiet::apply(name, owner, ledger);
    Ok(Backend {
        mac: io.mac().ok(),
        ifindex: Some(io.ifindex()),
        mtu: netdev::mtu(name).ok(),
        io: Box::new(io),
        fast: None,
        peer: false,
        link: link_speed(name),
        conn: None,
        conn_ifindex: None,
    })
}

/// The quick half of [`attach_fast`]: the socket filter on a freshly opened interface
/// port's backend; its ifindex, for [`FastPath::link`] later.
pub(crate) fn attach_fast_filter(name: &str, b: &mut Backend, fast: &FastPath) -> Option<u32> {
    let ifindex = b.ifindex?;
    match b.io.attach_fast_filter(fast) {
        Ok(true) => {
            b.peer = crate::fast::peer_elsewhere_of(name);
            Some(ifindex)
        }
        Ok(false) => None,
        Err(e) => {
            tracing::info!(port = name, error = %e, "port stays off the kernel fast path");
            None
        }
    }
}

/// Puts a freshly opened backend on `fast` if it can serve it (an interface of this
/// namespace, read through `AF_PACKET`); says why not otherwise.
pub(crate) fn attach_fast(name: &str, b: &mut Backend, fast: &Arc<FastPath>) {
    if b.ifindex.is_none() {
        return;
    }
    b.peer = crate::fast::peer_elsewhere_of(name);
    match b.io.attach_fast(fast) {
        Ok(p) => b.fast = p,
        Err(e) => {
            tracing::info!(port = name, error = %e, "port stays off the kernel fast path");
        }
    }
}
