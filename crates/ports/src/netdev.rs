//! Queries and settings of network devices by name: ifindex, MAC, MTU, up/down.
//!
//! The free functions use a throw-away `AF_UNIX` socket, so the name is looked up in the
//! network namespace of the calling thread. Ports do the same ioctls on a descriptor of
//! their own, which pins the namespace where the port was made.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{PortError, check_name};
use crate::port::MacAddr;
use crate::sys;

/// The ifindex of `name`.
pub fn ifindex(name: &str) -> Result<u32, PortError> {
    with_ctl(name, |d| d.ifindex())
}

/// Whether a device called `name` exists.
pub fn exists(name: &str) -> Result<bool, PortError> {
    match ifindex(name) {
        Ok(_) => Ok(true),
        Err(PortError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The name of the device with index `ifindex`.
pub fn name_of(ifindex: u32) -> Result<String, PortError> {
    let sock = ctl_socket("")?;
    sys::ifreq::name_of(sock.as_fd(), ifindex).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::ENXIO) => PortError::NotFound {
            name: format!("#{ifindex}"),
        },
        _ => PortError::io(&format!("#{ifindex}"), "SIOCGIFNAME", e),
    })
}

/// The current MAC address of `name`.
pub fn mac(name: &str) -> Result<MacAddr, PortError> {
    with_ctl(name, |d| d.mac())
}

pub fn set_mac(name: &str, mac: MacAddr) -> Result<(), PortError> {
    with_ctl(name, |d| d.set_mac(mac))
}

/// Whether `name` is administratively up (`IFF_UP`).
pub fn is_up(name: &str) -> Result<bool, PortError> {
    with_ctl(name, |d| d.is_up())
}

pub fn set_up(name: &str) -> Result<(), PortError> {
    with_ctl(name, |d| d.set_up(true))
}

pub fn set_down(name: &str) -> Result<(), PortError> {
    with_ctl(name, |d| d.set_up(false))
}

pub fn mtu(name: &str) -> Result<u32, PortError> {
    with_ctl(name, |d| d.mtu())
}

pub fn set_mtu(name: &str, mtu: u32) -> Result<(), PortError> {
    with_ctl(name, |d| d.set_mtu(mtu))
}

fn with_ctl<T>(
    name: &str,
    f: impl FnOnce(Netdev<'_>) -> Result<T, PortError>,
) -> Result<T, PortError> {
    check_name(name)?;
    let sock = ctl_socket(name)?;
    f(Netdev {
        fd: sock.as_fd(),
        name,
    })
}

/// A datagram socket for device ioctls, in the calling thread's namespace.
pub(crate) fn ctl_socket(name: &str) -> Result<OwnedFd, PortError> {
    sys::socket(libc::AF_UNIX, libc::SOCK_DGRAM, 0)
        .map_err(|e| PortError::io(name, "socket(AF_UNIX) for ioctls", e))
}

/// A device by name, reached through ioctls on `fd` (any socket, or a TAP descriptor for
/// the MAC calls), i.e. in `fd`'s network namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Netdev<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) name: &'a str,
}

impl Netdev<'_> {
    fn err(&self, op: &'static str, e: io::Error) -> PortError {
        match e.raw_os_error() {
            Some(libc::ENODEV) => PortError::NotFound {
                name: self.name.to_owned(),
            },
            _ => PortError::io(self.name, op, e),
        }
    }

    pub(crate) fn ifindex(&self) -> Result<u32, PortError> {
        sys::ifreq::ifindex(self.fd, self.name).map_err(|e| self.err("SIOCGIFINDEX", e))
    }

    pub(crate) fn mac(&self) -> Result<MacAddr, PortError> {
        sys::ifreq::hwaddr(self.fd, self.name)
            .map(MacAddr)
            .map_err(|e| self.err("SIOCGIFHWADDR", e))
    }

    pub(crate) fn set_mac(&self, mac: MacAddr) -> Result<(), PortError> {
        sys::ifreq::set_hwaddr(self.fd, self.name, mac.0).map_err(|e| self.err("SIOCSIFHWADDR", e))
    }

    fn flags(&self) -> Result<i32, PortError> {
        let flags =
            sys::ifreq::flags(self.fd, self.name).map_err(|e| self.err("SIOCGIFFLAGS", e))?;
        Ok(i32::from(flags as u16))
    }

    pub(crate) fn is_up(&self) -> Result<bool, PortError> {
        Ok(self.flags()? & libc::IFF_UP != 0)
    }

    pub(crate) fn set_up(&self, up: bool) -> Result<(), PortError> {
        let flags = self.flags()?;
        let new = if up {
            flags | libc::IFF_UP
        } else {
            flags & !libc::IFF_UP
        };
        if new == flags {
            return Ok(());
        }
        sys::ifreq::set_flags(self.fd, self.name, new as u16 as i16)
            .map_err(|e| self.err("SIOCSIFFLAGS", e))
    }

    pub(crate) fn mtu(&self) -> Result<u32, PortError> {
        sys::ifreq::mtu(self.fd, self.name).map_err(|e| self.err("SIOCGIFMTU", e))
    }

    pub(crate) fn set_mtu(&self, mtu: u32) -> Result<(), PortError> {
        sys::ifreq::set_mtu(self.fd, self.name, mtu).map_err(|e| self.err("SIOCSIFMTU", e))
    }
}
