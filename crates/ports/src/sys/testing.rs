//! Test-only syscalls: whether we are root, a private network namespace for the calling
//! thread (or another existing one), and `UDP_SEGMENT` to make the kernel build UDP GSO
//! packets.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, setsockopt_int};

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Moves the calling thread (only it: namespaces are per thread) into a new, empty
/// network namespace. Threads and processes it spawns afterwards inherit it.
pub(crate) fn unshare_net() -> io::Result<()> {
    // SAFETY: plain flag argument; unshare(2) affects only the calling thread here.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Moves the calling thread into the network namespace at `path` (e.g. `/run/netns/x`).
pub(crate) fn enter_net(path: &str) -> io::Result<()> {
    let ns = std::fs::File::open(path)?;
    // SAFETY: `ns` is an open namespace file for the duration of the call; setns(2)
    // affects only the calling thread.
    cvt(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// Sets `UDP_SEGMENT` on a UDP socket: each send becomes one GSO packet of `size`-byte
/// segments.
pub(crate) fn set_udp_segment(fd: BorrowedFd<'_>, size: u16) -> io::Result<()> {
    setsockopt_int(
        fd,
        libc::SOL_UDP,
        libc::UDP_SEGMENT,
        libc::c_int::from(size),
    )
}

/// Waits up to `ms` milliseconds for descriptor `fd` (a port's, open while the port
/// lives) to poll readable.
pub(crate) fn wait_readable(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd the kernel writes `revents` of; poll(2) only
    // reports on the number (a closed one would read as POLLNVAL, not harm memory).
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents & libc::POLLIN != 0
}
