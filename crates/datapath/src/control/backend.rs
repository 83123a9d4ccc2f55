//! Port backends as the control side opens and closes them, never on the forwarding
//! thread: AF_PACKET on an existing netdev, a TAP held by vbridge, a namespace connection,
//! a bridge's host TAP; what each leaves behind and undoes; the link speed that sets a
//! port's spanning-tree path cost; and putting a veth port on its bridge's fast path.

use std::sync::Arc;

use vbridge_core::MacAddr;
use vbridge_ports::{
    AfPacket, AfPacketOptions, FastPath, FastPort, PortIo, Tap, TapOptions, netdev,
};

use crate::action::Retired;
use crate::bridge_rt::PortSpec;
use crate::control::quiet::Quieted;
use crate::error::DpError;
use crate::view::PortKind;

/// An opened port backend with what is known of its netdev.
pub(crate) struct Backend {
    pub(crate) io: Box<dyn PortIo>,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) quiet: Quieted,
    /// The netdev's index in the daemon's namespace (interfaces and host TAPs), to match
    /// link notifications and to notice a device replaced by another of the same name.
    pub(crate) ifindex: Option<u32>,
    pub(crate) mtu: Option<u32>,
    /// On the bridge's kernel fast path (a veth whose peer is in another namespace).
    pub(crate) fast: Option<FastPort>,
    /// Link speed (Mb/s) and duplex, for spanning-tree path costs.
    pub(crate) link: (Option<u32>, bool),
    /// For a namespace connection: the connection as now made (with its device's index).
    pub(crate) conn: Option<Box<crate::Connection>>,
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
            quiet: Quieted::default(),
            ifindex: None,
            mtu: None,
            fast: None,
            link: (None, true),
            conn: None,
        }
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

/// Closes a port removed for good and undoes what it left behind: its fast-path program,
/// persistence of its TAP, a veth pair made for a connection, the quieted sysctls of an
/// attached interface.
pub(crate) fn release(r: Retired) {
    let Retired {
        name,
        mut io,
        fast,
        mut quiet,
        conn,
        ..
    } = r;
    if let (Some(io), Some(_)) = (io.as_ref(), fast.as_ref()) {
        let _ = io.detach_fast_filter();
    }
    drop(fast);
    match &conn {
        Some(c) => crate::control::connect::remove(&name, c, io.as_mut()),
        None => {
            if let Some(io) = io.as_mut() {
                io.release();
            }
        }
    }
    quiet.restore();
    drop(io);
}

/// Closes a port at daemon shutdown: its fast-path program goes and its interface's
/// sysctls come back, but what persists for the next start (a connection's TAP or veth
/// pair) stays.
pub(crate) fn close(r: Retired) {
    let Retired {
        io,
        fast,
        mut quiet,
        ..
    } = r;
    if let (Some(io), Some(_)) = (io.as_ref(), fast.as_ref()) {
        let _ = io.detach_fast_filter();
    }
    drop(fast);
    quiet.restore();
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

/// Closes a backend that was opened but not taken, undoing what opening it did.
pub(crate) fn discard(name: &str, b: Backend, conn: Option<&crate::Connection>) {
    release(Retired {
        name: name.to_owned(),
        kind: PortKind::Interface,
        io: Some(b.io),
        fast: b.fast,
        quiet: b.quiet,
        conn: conn.cloned(),
    });
}

/// The host TAP `name` of a new bridge (persistent, carrying `mac`, down).
pub(crate) fn create_host(name: &str, mac: MacAddr) -> Result<Backend, DpError> {
    let tap =
        Tap::create_persistent(name, TapOptions::default()).map_err(|e| DpError::port(name, e))?;
    host_backend(name, tap, mac)
}

/// The host TAP of a restored bridge: the one an earlier run made (index `ifindex`),
/// or a new one if it is gone. A device of that name with another index is someone
/// else's and refused. (`ifindex` is `None` in configurations of older versions: the
/// TAP named like the bridge is then taken as the one they made.)
pub(crate) fn open_host(
    name: &str,
    mac: MacAddr,
    ifindex: Option<u32>,
) -> Result<Backend, DpError> {
    match (netdev::ifindex(name), ifindex) {
        (Ok(i), Some(ours)) if i == ours => reopen_host(name, i, mac),
        (Ok(_), Some(_)) => Err(DpError::NotOurs {
            name: name.to_owned(),
            place: "this namespace".into(),
        }),
        (Ok(i), None) => reopen_host(name, i, mac),
        (Err(vbridge_ports::PortError::NotFound { .. }), _) => create_host(name, mac),
        (Err(e), _) => Err(DpError::port(name, e)),
    }
}

/// The host TAP `name` an earlier run made (index `ifindex`), found again at restart.
fn reopen_host(name: &str, ifindex: u32, mac: MacAddr) -> Result<Backend, DpError> {
    let tap = Tap::reopen_persistent(name, TapOptions::default(), ifindex)
        .map_err(|e| DpError::port(name, e))?;
    host_backend(name, tap, mac)
}

fn host_backend(name: &str, tap: Tap, mac: MacAddr) -> Result<Backend, DpError> {
    let fail = |e| DpError::port(name, e);
    let made = (|| {
        tap.set_mac(mac.0)?;
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

/// Opens the backend of a (non-host) port.
pub(crate) fn open(spec: &PortSpec) -> Result<Backend, DpError> {
    let name = &spec.name;
    if let Some(c) = &spec.conn {
        return crate::control::connect::open(name, c);
    }
    match spec.kind {
        PortKind::Interface => attach_interface(name),
        PortKind::Tap => {
            let tap =
                Tap::create(name, TapOptions::default()).map_err(|e| DpError::port(name, e))?;
            tap.set_up().map_err(|e| DpError::port(name, e))?;
            let mtu = tap.mtu().ok();
            let mut b = Backend::plain(Box::new(tap));
            b.mtu = mtu;
            Ok(b)
        }
        PortKind::Host => Err(DpError::InvalidName {
            name: name.clone(),
            why: "host ports are made with their bridge",
        }),
    }
}

/// An existing netdev `name` as a port: read and written with AF_PACKET, brought up and
/// kept from the host's IP stack.
pub(crate) fn attach_interface(name: &str) -> Result<Backend, DpError> {
    let io =
        AfPacket::attach(name, AfPacketOptions::default()).map_err(|e| DpError::port(name, e))?;
    netdev::set_up(name).map_err(|e| DpError::port(name, e))?;
    Ok(Backend {
        mac: io.mac().ok().map(MacAddr),
        ifindex: Some(io.ifindex()),
        mtu: netdev::mtu(name).ok(),
        io: Box::new(io),
        quiet: Quieted::apply(name),
        fast: None,
        link: link_speed(name),
        conn: None,
    })
}

/// Puts a freshly opened backend on `fast` if its netdev can serve it (a veth whose peer
/// is in another namespace); says why not at debug level otherwise.
pub(crate) fn attach_fast(name: &str, b: &mut Backend, fast: &Arc<FastPath>) {
    if b.ifindex.is_none() || !crate::fast::is_veth(name) {
        return;
    }
    match b.io.attach_fast(fast) {
        Ok(p) => b.fast = p,
        Err(e) => {
            tracing::info!(port = name, error = %e, "port stays off the kernel fast path");
        }
    }
}
