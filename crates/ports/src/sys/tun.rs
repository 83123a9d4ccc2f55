//! `/dev/net/tun` ioctls: create or attach a TAP queue, vnet header size, offloads.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use libc::{c_int, c_short, c_uint};

use super::cvt;
use super::ifreq::IfReq;

/// Opens a fresh, nonblocking, close-on-exec `/dev/net/tun` descriptor.
pub(crate) fn open() -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    Ok(OwnedFd::from(file))
}

/// `TUNSETIFF`: binds the descriptor to device `name` (creating it if needed) with
/// `flags` (`IFF_TAP`, `IFF_NO_PI`, ...). Returns the device's name as the kernel has it.
pub(crate) fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: c_int) -> io::Result<String> {
    let mut ifr = IfReq::new(name)?;
    // The ifreq flags field is a C short; IFF_TUN_EXCL (0x8000) sets its sign bit.
    ifr.set_flags(flags as u16 as c_short);
    ifr.ioctl(fd, libc::TUNSETIFF as libc::c_ulong)?;
    Ok(ifr.name())
}

/// `TUNGETIFF`: the current name of the device and the descriptor's flags.
pub(crate) fn get_iff(fd: BorrowedFd<'_>) -> io::Result<(String, c_int)> {
    let mut ifr = IfReq::new("")?;
    ifr.ioctl(fd, libc::TUNGETIFF as libc::c_ulong)?;
    Ok((ifr.name(), ifr.flags() as u16 as c_int))
}

/// `TUNSETVNETHDRSZ`: length of the header in front of every frame read or written.
pub(crate) fn set_vnet_hdr_size(fd: BorrowedFd<'_>, size: c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is valid for the
    // duration of the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size as *const c_int) })?;
    Ok(())
}

/// `TUNSETOFFLOAD`: which `TUN_F_*` offloads the kernel may hand to us on read.
pub(crate) fn set_offload(fd: BorrowedFd<'_>, flags: c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long), not a pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, flags as libc::c_ulong) })?;
    Ok(())
}

/// `TUNSETPERSIST`: whether the device outlives its last descriptor.
pub(crate) fn set_persist(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value (an unsigned long), not a pointer.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, c_ulong_of(on)) })?;
    Ok(())
}

fn c_ulong_of(on: bool) -> libc::c_ulong {
    libc::c_ulong::from(on)
}
