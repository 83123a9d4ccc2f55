//! A small epoll set a port keeps of its own descriptors (a listener and its current
//! connection), itself one pollable descriptor for the datapath's epoll.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// A new epoll set (close-on-exec).
pub(crate) fn create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 takes no pointers; a non-negative return is a new descriptor
    // that nothing else owns, so wrapping it in OwnedFd is sound.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Watches `fd` in `set` for input (level-triggered).
pub(crate) fn add(set: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: fd.as_raw_fd() as u64,
    };
    // SAFETY: both descriptors are open (borrowed for the call) and `ev` is a valid
    // epoll_event the kernel only reads.
    cvt(unsafe {
        libc::epoll_ctl(
            set.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            fd.as_raw_fd(),
            &mut ev,
        )
    })
    .map(drop)
}

/// Watches `fd` in `set` for input, and for room to write too when `out`.
pub(crate) fn modify(set: BorrowedFd<'_>, fd: BorrowedFd<'_>, out: bool) -> io::Result<()> {
    let mut events = libc::EPOLLIN as u32;
    if out {
        events |= libc::EPOLLOUT as u32;
    }
    let mut ev = libc::epoll_event {
        events,
        u64: fd.as_raw_fd() as u64,
    };
    // SAFETY: both descriptors are open (borrowed for the call) and `ev` is a valid
    // epoll_event the kernel only reads.
    cvt(unsafe {
        libc::epoll_ctl(
            set.as_raw_fd(),
            libc::EPOLL_CTL_MOD,
            fd.as_raw_fd(),
            &mut ev,
        )
    })
    .map(drop)
}

/// Stops watching `fd` in `set`.
pub(crate) fn del(set: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: both descriptors are open; EPOLL_CTL_DEL ignores the event pointer, which
    // may be null since Linux 2.6.9.
    cvt(unsafe {
        libc::epoll_ctl(
            set.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            std::ptr::null_mut(),
        )
    })
    .map(drop)
}
