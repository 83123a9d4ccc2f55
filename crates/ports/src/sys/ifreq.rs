//! `struct ifreq` ioctls (`SIOCGIF*` / `SIOCSIF*`, `TUNSETIFF`) on a socket or TAP
//! descriptor. The device is looked up in the network namespace of the descriptor.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{c_int, c_short, c_ulong};

use super::cvt;

/// An `ifreq` with its name field filled in.
pub(crate) struct IfReq(libc::ifreq);

impl IfReq {
    /// `name` must be shorter than `IFNAMSIZ` and free of NUL bytes (the caller validates
    /// names with a proper error first; this only refuses what would be unsound).
    pub(crate) fn new(name: &str) -> io::Result<Self> {
        // SAFETY: `ifreq` is a C struct of integers, byte arrays, a union of those and a
        // raw pointer: the all-zero pattern is a valid value of it.
        let mut ifr: libc::ifreq = unsafe { mem::zeroed() };
        let bytes = name.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        Ok(IfReq(ifr))
    }

    /// The (possibly kernel-rewritten) name field.
    pub(crate) fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .0
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub(crate) fn set_flags(&mut self, flags: c_short) {
        self.0.ifr_ifru.ifru_flags = flags;
    }

    pub(crate) fn flags(&self) -> c_short {
        // SAFETY: every member of the union is plain data valid for any bit pattern, so
        // reading `ifru_flags` is sound whichever member the kernel wrote.
        unsafe { self.0.ifr_ifru.ifru_flags }
    }

    /// Issues `req` with this `ifreq` as argument; the kernel may write it back.
    pub(crate) fn ioctl(&mut self, fd: BorrowedFd<'_>, req: c_ulong) -> io::Result<()> {
        // SAFETY: `self.0` is a valid, writable `ifreq`, which is what every request used
        // with this helper (SIOC*IF*, TUNSETIFF, TUNGETIFF) reads and writes.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::Ioctl, &mut self.0) })?;
        Ok(())
    }
}

pub(crate) fn ifindex(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut ifr = IfReq::new(name)?;
    ifr.ioctl(fd, libc::SIOCGIFINDEX)?;
    // SAFETY: plain-data union member, valid for any bit pattern; SIOCGIFINDEX wrote it.
    let index = unsafe { ifr.0.ifr_ifru.ifru_ifindex };
    Ok(index as u32)
}

pub(crate) fn name_of(fd: BorrowedFd<'_>, index: u32) -> io::Result<String> {
    let mut ifr = IfReq::new("")?;
    ifr.0.ifr_ifru.ifru_ifindex = index as c_int;
    ifr.ioctl(fd, libc::SIOCGIFNAME)?;
    Ok(ifr.name())
}

pub(crate) fn hwaddr(fd: BorrowedFd<'_>, name: &str) -> io::Result<[u8; 6]> {
    let mut ifr = IfReq::new(name)?;
    ifr.ioctl(fd, libc::SIOCGIFHWADDR)?;
    // SAFETY: plain-data union member, valid for any bit pattern; SIOCGIFHWADDR wrote it.
    let sa = unsafe { ifr.0.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

pub(crate) fn set_hwaddr(fd: BorrowedFd<'_>, name: &str, mac: [u8; 6]) -> io::Result<()> {
    let mut ifr = IfReq::new(name)?;
    // SAFETY: the all-zero pattern is a valid `sockaddr`.
    let mut sa: libc::sockaddr = unsafe { mem::zeroed() };
    sa.sa_family = libc::ARPHRD_ETHER;
    for (dst, src) in sa.sa_data.iter_mut().zip(mac) {
        *dst = src as libc::c_char;
    }
    ifr.0.ifr_ifru.ifru_hwaddr = sa;
    ifr.ioctl(fd, libc::SIOCSIFHWADDR)
}

pub(crate) fn flags(fd: BorrowedFd<'_>, name: &str) -> io::Result<c_short> {
    let mut ifr = IfReq::new(name)?;
    ifr.ioctl(fd, libc::SIOCGIFFLAGS)?;
    Ok(ifr.flags())
}

pub(crate) fn set_flags(fd: BorrowedFd<'_>, name: &str, flags: c_short) -> io::Result<()> {
    let mut ifr = IfReq::new(name)?;
    ifr.set_flags(flags);
    ifr.ioctl(fd, libc::SIOCSIFFLAGS)
}

pub(crate) fn mtu(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut ifr = IfReq::new(name)?;
    ifr.ioctl(fd, libc::SIOCGIFMTU)?;
    // SAFETY: plain-data union member, valid for any bit pattern; SIOCGIFMTU wrote it.
    let mtu = unsafe { ifr.0.ifr_ifru.ifru_mtu };
    Ok(mtu as u32)
}

pub(crate) fn set_mtu(fd: BorrowedFd<'_>, name: &str, mtu: u32) -> io::Result<()> {
    let mut ifr = IfReq::new(name)?;
    ifr.0.ifr_ifru.ifru_mtu =
        c_int::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    ifr.ioctl(fd, libc::SIOCSIFMTU)
}
