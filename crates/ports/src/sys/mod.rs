//! The only place with `unsafe`: raw syscalls and kernel ABI structs, each wrapped in a
//! safe function over `OwnedFd`/`BorrowedFd`, slices and plain integers.
//!
//! The rest of the crate never sees a raw pointer. Every `unsafe` block here carries a
//! `// SAFETY:` note saying why the call is sound.

pub(crate) mod bpf;
pub(crate) mod epoll;
pub(crate) mod ifreq;
pub(crate) mod mmsg;
pub(crate) mod packet;
pub(crate) mod ring;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tun;
pub(crate) mod uring;

use std::io::{self, IoSlice, IoSliceMut};
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libc::{c_int, c_void};

/// Turns a `-1` return into the thread's `errno`.
fn cvt(ret: c_int) -> io::Result<c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Same as [`cvt`] for calls returning a byte count.
fn cvt_size(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Takes ownership of a descriptor the kernel just returned (or of its error).
fn own(ret: c_int) -> io::Result<OwnedFd> {
    let fd = cvt(ret)?;
    // SAFETY: `fd` was just returned by a successful socket-creating syscall, so it is
    // open and nothing else in the process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `socket(2)` with `SOCK_CLOEXEC | SOCK_NONBLOCK` added.
pub(crate) fn socket(domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments; the result is checked by `own`.
    own(unsafe {
        libc::socket(
            domain,
            ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            protocol,
        )
    })
}

/// A nonblocking, close-on-exec `AF_UNIX` `SOCK_SEQPACKET` pair.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    let ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: `fds` is a valid, writable array of two ints, as socketpair(2) requires.
    cvt(unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Puts a descriptor into nonblocking mode.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads the descriptor's flags.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: F_SETFL takes an int argument; the descriptor is borrowed and open.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// `setsockopt(2)` for options whose value is a C `int`.
pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: c_int,
) -> io::Result<()> {
    setsockopt_raw(fd, level, name, &value)
}

/// The socket's pending error (`SO_ERROR`, which clears it); 0 when none.
pub(crate) fn socket_error(fd: BorrowedFd<'_>) -> io::Result<c_int> {
    let mut v: c_int = 0;
    let mut len = mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are writable for the whole call and `len` holds `v`'s size;
    // the kernel writes at most that many bytes.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut v as *mut c_int).cast::<c_void>(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// `setsockopt(2)` with a plain-old-data value.
pub(crate) fn setsockopt_raw<T: Copy>(
    fd: BorrowedFd<'_>,
    level: c_int,
    name: c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to `size_of::<T>()` readable bytes for the whole call; the
    // kernel copies them and keeps no reference.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast::<c_void>(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `readv(2)`: one read scattered over `bufs`.
pub(crate) fn readv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    // SAFETY: `IoSliceMut` is ABI-compatible with `struct iovec` (std guarantees it on
    // Unix) and every slice is valid for writes for the duration of the call.
    cvt_size(unsafe {
        libc::readv(
            fd.as_raw_fd(),
            bufs.as_ptr().cast::<libc::iovec>(),
            bufs.len() as c_int,
        )
    })
}

/// `writev(2)`: one write gathered from `bufs`.
pub(crate) fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` and every slice stays
    // valid for reads for the duration of the call.
    cvt_size(unsafe {
        libc::writev(
            fd.as_raw_fd(),
            bufs.as_ptr().cast::<libc::iovec>(),
            bufs.len() as c_int,
        )
    })
}

/// Whether `fd` has input waiting now (`poll` with no wait).
pub(crate) fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd the kernel writes `revents` of; the descriptor is
    // open for the call (borrowed); a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & libc::POLLIN != 0
}

/// A new nonblocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments; a non-negative result is a new descriptor nobody
    // else owns (checked by `own`).
    own(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}
