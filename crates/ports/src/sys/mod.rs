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

/// A new nonblocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments; a non-negative result is a new descriptor nobody
    // else owns (checked by `own`).
    own(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
}

/// The seals of a memory file (`F_GET_SEALS`); an error for files that take none.
pub(crate) fn seals(fd: BorrowedFd<'_>) -> io::Result<c_int> {
    // SAFETY: F_GET_SEALS takes no argument and returns an integer; the descriptor is
    // open for the call.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

/// `shutdown(2)` of both directions: on a listening socket, wakes a thread blocked in
/// `accept` (which then fails).
pub(crate) fn shutdown(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain integer arguments on a descriptor open for the call.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) }).map(drop)
}

/// Copies the bytes waiting on stream socket `fd` into `buf` without taking them
/// (`MSG_PEEK`), waiting for some if there are none; 0 at end of stream.
pub(crate) fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call; the
    // descriptor is open (borrowed).
    cvt_size(unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<c_void>(),
            buf.len(),
            libc::MSG_PEEK,
        )
    })
}

/// A memory file of `size` bytes (`memfd_create`), sealed against shrinking and
/// growing (`F_ADD_SEALS`) when `sealed`: what a vhost-user frontend shares as guest
/// memory.
pub(crate) fn memfd(size: u64, sealed: bool) -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal; flags are plain integers; the result
    // is checked by `own`.
    let fd = own(unsafe {
        libc::memfd_create(
            c"vbr-guest-memory".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    })?;
    let file = std::fs::File::from(fd);
    file.set_len(size)?;
    if sealed {
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS takes an integer; the descriptor is open (owned by `file`).
        cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    }
    Ok(OwnedFd::from(file))
}
