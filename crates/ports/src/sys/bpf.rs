//! The `bpf(2)` commands the fast path needs: a hash map and its elements, loading a
//! program from instructions, a tcx link (attached to a netdev's ingress, detached when
//! its descriptor closes) and `SO_ATTACH_BPF` on a socket.
//!
//! Each command's `union bpf_attr` member is written into a zeroed 128-byte buffer at the
//! offsets of `linux/bpf.h`; the kernel accepts a shorter `attr` whose tail is zero.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_PROG_TYPE_SOCKET_FILTER`.
pub(crate) const PROG_SOCKET_FILTER: u32 = 1;
/// `BPF_PROG_TYPE_SCHED_CLS`.
pub(crate) const PROG_SCHED_CLS: u32 = 3;
/// `BPF_TCX_INGRESS` (Linux 6.6).
pub(crate) const ATTACH_TCX_INGRESS: u32 = 46;
pub(crate) const ATTACH_TCX_EGRESS: u32 = 47;

/// `asm-generic/socket.h` values (x86, arm, riscv, ...; not mips, sparc or parisc).
const SO_ATTACH_BPF: libc::c_int = 50;
const SO_DETACH_BPF: libc::c_int = 27;

/// One command's attributes, built field by field.
struct Attr([u64; 16]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 16])
    }

    fn u32(mut self, off: usize, v: u32) -> Attr {
        let word = &mut self.0[off / 8];
        let shift = (off % 8) * 8;
        *word = (*word & !(0xffff_ffff << shift)) | (u64::from(v) << shift);
        self
    }

    fn u64(mut self, off: usize, v: u64) -> Attr {
        debug_assert_eq!(off % 8, 0);
        self.0[off / 8] = v;
        self
    }

    fn ptr<T>(self, off: usize, p: *const T) -> Attr {
        self.u64(off, p as u64)
    }

    fn run(&mut self, cmd: libc::c_long) -> io::Result<libc::c_long> {
        // SAFETY: `self.0` is a writable, fully initialised buffer of the size passed; the
        // pointers written into it (by `ptr`) refer to memory the calling wrapper keeps
        // alive and of the sizes given for the whole call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                std::mem::size_of_val(&self.0),
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    #[cfg(test)]
    fn read_u32(&self, off: usize) -> u32 {
        (self.0[off / 8] >> ((off % 8) * 8)) as u32
    }

    fn run_fd(&mut self, cmd: libc::c_long) -> io::Result<OwnedFd> {
        let fd = self.run(cmd)?;
        // SAFETY: the command returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    }
}

/// A BPF hash map and the sizes of its keys and values, which every access checks: the
/// kernel reads and writes exactly that many bytes through the pointers it is given.
#[derive(Debug)]
pub(crate) struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

/// `BPF_F_NO_PREALLOC`: entries are allocated as they are inserted.
const BPF_F_NO_PREALLOC: u32 = 1;

impl Map {
    /// A hash map with up to `max_entries` entries of the given key and value sizes.
    pub(crate) fn hash(key_size: u32, value_size: u32, max_entries: u32) -> io::Result<Map> {
        let fd = Attr::new()
            .u32(0, BPF_MAP_TYPE_HASH)
            .u32(4, key_size)
            .u32(8, value_size)
            .u32(12, max_entries)
            .u32(16, BPF_F_NO_PREALLOC)
            .run_fd(BPF_MAP_CREATE)?;
        Ok(Map {
            fd,
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    /// The descriptor, for programs that name the map.
    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn check(&self, key: usize, value: Option<usize>) -> io::Result<()> {
        if key != self.key_size || value.is_some_and(|v| v != self.value_size) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }

    /// Inserts or replaces `key` -> `value`.
    pub(crate) fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.check(key.len(), Some(value.len()))?;
        Attr::new()
            .u32(0, self.fd.as_raw_fd() as u32)
            .ptr(8, key.as_ptr())
            .ptr(16, value.as_ptr())
            .run(BPF_MAP_UPDATE_ELEM)
            .map(drop)
    }

    /// Reads `key`'s value into `value`; `false` if there is no such key.
    pub(crate) fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        self.check(key.len(), Some(value.len()))?;
        absent_is_false(
            Attr::new()
                .u32(0, self.fd.as_raw_fd() as u32)
                .ptr(8, key.as_ptr())
                .ptr(16, value.as_mut_ptr())
                .run(BPF_MAP_LOOKUP_ELEM),
        )
    }

    /// Removes `key`; `false` if there was no such key.
    pub(crate) fn delete(&self, key: &[u8]) -> io::Result<bool> {
        self.check(key.len(), None)?;
        absent_is_false(
            Attr::new()
                .u32(0, self.fd.as_raw_fd() as u32)
                .ptr(8, key.as_ptr())
                .run(BPF_MAP_DELETE_ELEM),
        )
    }
}

fn absent_is_false(r: io::Result<libc::c_long>) -> io::Result<bool> {
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Loads a program; on a verifier refusal the error carries the verifier's log.
pub(crate) fn prog_load(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[u64],
    license: &CStr,
) -> io::Result<OwnedFd> {
    let mut log = vec![0u8; 64 * 1024];
    let attempt = |log_level: u32, log: &mut [u8]| {
        Attr::new()
            .u32(0, prog_type)
            .u32(4, insns.len() as u32)
            .ptr(8, insns.as_ptr())
            .ptr(16, license.as_ptr())
            .u32(24, log_level)
            .u32(28, if log_level > 0 { log.len() as u32 } else { 0 })
            .ptr(
                32,
                if log_level > 0 {
                    log.as_mut_ptr()
                } else {
                    std::ptr::null_mut()
                },
            )
            .u32(68, expected_attach_type)
            .run_fd(BPF_PROG_LOAD)
    };
    match attempt(0, &mut log) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Again with the verifier's log, to say why.
            let again = attempt(1, &mut log);
            let text = CStr::from_bytes_until_nul(&log)
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default();
            match again {
                Ok(fd) => Ok(fd),
                Err(e2) => Err(io::Error::new(
                    e2.kind(),
                    format!("{e2}; verifier: {}", text.trim()),
                )),
            }
        }
        Err(e) => Err(e),
    }
}

/// `BPF_F_BEFORE`: attach ahead of the programs already there.
const BPF_F_BEFORE: u32 = 1 << 3;

/// Attaches `prog` to the ingress of netdev `ifindex` (in the calling thread's network
/// namespace), first in line where the kernel allows (a program ahead of ours that passed
/// a frame on would skip ours, while our socket filter hid it from the switch), else
/// after the others; closing the link detaches it.
pub(crate) fn tcx_ingress_link(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    match tcx_link(prog, ifindex, ATTACH_TCX_INGRESS, BPF_F_BEFORE) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tcx_link(prog, ifindex, ATTACH_TCX_INGRESS, 0)
        }
        r => r,
    }
}

/// Attaches `prog` to the egress of netdev `ifindex` (what it transmits), after the
/// programs already there (nothing of ours needs to run first there: a frame they pass
/// on reaches the switch); closing the link detaches it.
pub(crate) fn tcx_egress_link(prog: BorrowedFd<'_>, ifindex: u32) -> io::Result<OwnedFd> {
    tcx_link(prog, ifindex, ATTACH_TCX_EGRESS, 0)
}

/// `BPF_LINK_CREATE` of `prog` on netdev `ifindex` at tcx hook `attach`.
fn tcx_link(prog: BorrowedFd<'_>, ifindex: u32, attach: u32, flags: u32) -> io::Result<OwnedFd> {
    Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, attach)
        .u32(12, flags)
        .run_fd(BPF_LINK_CREATE)
}

/// `SO_ATTACH_BPF`: `prog` (a socket filter) decides what `sock` receives.
pub(crate) fn attach_socket_filter(sock: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    set_int(sock, SO_ATTACH_BPF, prog.as_raw_fd())
}

/// `SO_DETACH_BPF`: removes the socket filter from `sock`, if any.
pub(crate) fn detach_socket_filter(sock: BorrowedFd<'_>) -> io::Result<()> {
    match set_int(sock, SO_DETACH_BPF, 0) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

/// `setsockopt(sock, SOL_SOCKET, opt, &value)` for an `int` option.
fn set_int(sock: BorrowedFd<'_>, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives on the stack for the call and its size is passed with it.
    let ret = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Runs program `prog` once on a copy of `frame` (`BPF_PROG_TEST_RUN`, no device
/// involved), with the `struct __sk_buff` fields of `ctx` (all others zero); returns the
/// program's return value. For tests of the programs themselves.
#[cfg(test)]
pub(crate) fn test_run(prog: BorrowedFd<'_>, frame: &[u8], ctx: &[u8]) -> io::Result<u32> {
    let mut attr = Attr::new()
        .u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .ptr(16, frame.as_ptr())
        .u32(32, 1)
        .u32(40, ctx.len() as u32)
        .ptr(48, ctx.as_ptr());
    attr.run(BPF_PROG_TEST_RUN)?;
    Ok(attr.read_u32(4))
}
