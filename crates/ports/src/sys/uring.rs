//! Bursts of `readv`/`writev` on one descriptor through an io_uring: one `io_uring_enter`
//! runs a whole burst and collects every result, where plain calls cost a system call per
//! frame. Each operation is nonblocking (`RWF_NOWAIT` on an `O_NONBLOCK` descriptor), so
//! the kernel completes it during the submission; the call still waits for every
//! completion before it returns, so the buffers it names are only borrowed for the call.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};

/// Most operations one burst may hold (the submission queue's size).
pub(crate) const MAX_BURST: usize = 64;

/// How long a burst may wait for completions before it cancels what is left. Nonblocking
/// operations never get here; it only keeps a kernel surprise from hanging the datapath.
const STUCK_AFTER: Duration = Duration::from_millis(200);

/// One io_uring, used by one port from one thread at a time.
pub(crate) struct Ring {
    ring: IoUring,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").finish_non_exhaustive()
    }
}

impl Ring {
    /// A ring for bursts of up to [`MAX_BURST`] operations. Fails where io_uring is not
    /// available (old kernel, `kernel.io_uring_disabled`, seccomp); callers fall back to
    /// plain system calls.
    pub(crate) fn new() -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(MAX_BURST as u32)?;
        Ok(Ring { ring })
    }

    /// Reads up to `bufs.len()` frames, one `readv` per entry of `bufs`, in order. Writes
    /// each result (bytes read, or a negative errno such as `-EAGAIN`) to `results`.
    pub(crate) fn readv_burst<const N: usize>(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &mut [[IoSliceMut<'_>; N]],
        results: &mut [i32],
    ) -> io::Result<()> {
        let n = bufs.len().min(results.len()).min(MAX_BURST);
        for (i, iov) in bufs[..n].iter_mut().enumerate() {
            let op = opcode::Readv::new(
                types::Fd(fd.as_raw_fd()),
                iov.as_mut_ptr().cast::<libc::iovec>(),
                N as u32,
            )
            .rw_flags(libc::RWF_NOWAIT)
            .build()
            .user_data(i as u64);
            self.push(&op);
        }
        self.complete(n, results)
    }

    /// Writes one frame per entry of `bufs`, in order; results as for
    /// [`Ring::readv_burst`].
    pub(crate) fn writev_burst<const N: usize>(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &[[IoSlice<'_>; N]],
        results: &mut [i32],
    ) -> io::Result<()> {
        let n = bufs.len().min(results.len()).min(MAX_BURST);
        for (i, iov) in bufs[..n].iter().enumerate() {
            let op = opcode::Writev::new(
                types::Fd(fd.as_raw_fd()),
                iov.as_ptr().cast::<libc::iovec>(),
                N as u32,
            )
            .rw_flags(libc::RWF_NOWAIT)
            .build()
            .user_data(i as u64);
            self.push(&op);
        }
        self.complete(n, results)
    }

    fn push(&mut self, op: &squeue::Entry) {
        // SAFETY: the entry points at iovecs and buffers the caller lends for the whole
        // burst, and `complete` (which every caller runs right after pushing) does not
        // return before the kernel has finished every pushed entry. The queue has room:
        // bursts are at most MAX_BURST long and `complete` leaves it empty.
        let pushed = unsafe { self.ring.submission().push(op) };
        debug_assert!(pushed.is_ok(), "burst longer than the submission queue");
    }

    /// Submits what was pushed and waits until all `n` operations are complete.
    ///
    /// An error means the kernel refused the ring itself (never seen in practice); the
    /// caller must then drop the ring. Entries it did not take are discarded with it, and
    /// entries it took were nonblocking and so finished during the submission.
    fn complete(&mut self, n: usize, results: &mut [i32]) -> io::Result<()> {
        let mut done = 0;
        let mut cancelled = false;
        while done < n {
            let ts = types::Timespec::from(STUCK_AFTER);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(n - done, &args) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) && !cancelled => {
                    // Something did not complete inline: cancel it, then keep waiting,
                    // since the kernel may use the buffers until it reports.
                    cancelled = true;
                    let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                        .build()
                        .user_data(u64::MAX);
                    // SAFETY: a cancel request names no memory.
                    let _ = unsafe { self.ring.submission().push(&cancel) };
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY | libc::ETIME)
                    ) => {}
                Err(e) => return Err(e),
            }
            for cqe in self.ring.completion() {
                let i = cqe.user_data() as usize;
                if i < n {
                    if let Some(r) = results.get_mut(i) {
                        *r = cqe.result();
                        done += 1;
                    }
                }
            }
        }
        // A cancel's own completion may arrive after the others; it names no memory.
        self.ring.completion().for_each(drop);
        Ok(())
    }
}

/// The `iovec`s of a burst: `IoSlice`/`IoSliceMut` are ABI-compatible with `struct iovec`
/// (std guarantees it on Unix), which is what the casts above rely on.
const _: () = assert!(std::mem::size_of::<IoSlice<'_>>() == std::mem::size_of::<libc::iovec>());
