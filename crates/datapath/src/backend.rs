//! Port backends as the engine opens and closes them: AF_PACKET on an existing netdev,
//! a TAP held by vbridge, or a namespace connection; what each leaves behind and undoes;
//! and the link speed that sets a port's spanning-tree path cost.

use vbridge_core::MacAddr;
use vbridge_ports::{AfPacket, AfPacketOptions, PortIo, Tap, TapOptions, netdev};

use crate::bridge_rt::{PortRt, PortSpec};
use crate::error::DpError;
use crate::hostif::Quieted;
use crate::view::PortKind;

/// The speed (Mb/s) and duplex the kernel reports for `dev`, for STP path costs.
pub(crate) fn link_speed(dev: &str) -> (Option<u32>, bool) {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{dev}/{f}")).ok();
    let speed = read("speed")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|s| *s > 0)
        .and_then(|s| u32::try_from(s).ok());
    let full = read("duplex").is_none_or(|d| d.trim() != "half");
    (speed, full)
}

/// Undoes what a port removed for good leaves behind: persistence of its TAP, a veth
/// pair made for a connection, the quieted sysctls of an attached interface.
pub(crate) fn release(p: &mut PortRt) {
    match &p.conn {
        Some(c) => crate::connect::remove(&p.name, c, p.io.as_mut()),
        None => {
            if let Some(io) = p.io.as_mut() {
                io.release();
            }
        }
    }
    p.quiet.restore();
}

/// An opened port backend with what is known of its netdev.
pub(crate) struct Backend {
    pub(crate) io: Box<dyn PortIo>,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) quiet: Quieted,
    /// The netdev's index, to notice it being replaced by another of the same name.
    pub(crate) ifindex: Option<u32>,
}

/// Opens the backend of a (non-host) port.
pub(crate) fn open_backend(spec: &PortSpec) -> Result<Backend, DpError> {
    let name = &spec.name;
    if let Some(c) = &spec.conn {
        return crate::connect::open(name, c);
    }
    match spec.kind {
        PortKind::Interface => attach_interface(name),
        PortKind::Tap => {
            let tap =
                Tap::create(name, TapOptions::default()).map_err(|e| DpError::port(name, e))?;
            tap.set_up().map_err(|e| DpError::port(name, e))?;
            // The TAP's netdev is the far end (a VM or a namespace): not a bridge address.
            Ok(Backend {
                io: Box::new(tap),
                mac: None,
                quiet: Quieted::default(),
                ifindex: None,
            })
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
        io: Box::new(io),
        quiet: Quieted::apply(name),
    })
}
