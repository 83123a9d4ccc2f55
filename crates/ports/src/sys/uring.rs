//! Bursts of `readv`/`writev` on one descriptor through an io_uring: one `io_uring_enter`
//! runs a whole burst and collects every result, where plain calls cost a system call per
//! frame. Each operation is nonblocking (`RWF_NOWAIT`: a read with nothing waiting ends
//! with `-EAGAIN` instead of waiting for data), so on a TAP the kernel completes it during
//! the submission. Whatever happens, a burst returns only once the kernel is done with
//! every operation it was given (completed or cancelled), so the buffers it names are
//! only borrowed for the call.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};

/// Most operations one burst may hold (the submission queue's size).
pub(crate) const MAX_BURST: usize = 64;

/// How long one wait for completions lasts before the burst checks for a stall.
/// Nonblocking operations on a TAP never get there.
const WAIT_SLICE: Duration = Duration::from_millis(200);

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
        let fd = types::Fd(fd.as_raw_fd());
        let ops = bufs.iter_mut().map(|iov| {
            opcode::Readv::new(fd, iov.as_mut_ptr().cast::<libc::iovec>(), N as u32)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
        });
        self.burst(ops, results)
    }

    /// Writes one frame per entry of `bufs`, in order; results as for
    /// [`Ring::readv_burst`].
    pub(crate) fn writev_burst<const N: usize>(
        &mut self,
        fd: BorrowedFd<'_>,
        bufs: &[[IoSlice<'_>; N]],
        results: &mut [i32],
    ) -> io::Result<()> {
        let fd = types::Fd(fd.as_raw_fd());
        let ops = bufs.iter().map(|iov| {
            opcode::Writev::new(fd, iov.as_ptr().cast::<libc::iovec>(), N as u32)
                .rw_flags(libc::RWF_NOWAIT)
                .build()
        });
        self.burst(ops, results)
    }

    /// Runs up to `results.len()` (at most [`MAX_BURST`]) of `ops`, whose memory the
    /// caller lends for the call; an operation that could not be queued reads `-EAGAIN`.
    fn burst(
        &mut self,
        ops: impl Iterator<Item = squeue::Entry>,
        results: &mut [i32],
    ) -> io::Result<()> {
        let n = results.len().min(MAX_BURST);
        let mut pushed = 0;
        for (i, op) in ops.take(n).enumerate() {
            if !self.push(&op.user_data(i as u64)) {
                break;
            }
            pushed += 1;
        }
        results[pushed..n].fill(-libc::EAGAIN);
        self.complete(pushed, results)
    }

    /// Queues one operation; `false` if the queue is full (it is empty at the start of
    /// every burst, and bursts are at most [`MAX_BURST`] long, so this does not happen).
    fn push(&mut self, op: &squeue::Entry) -> bool {
        // SAFETY: the entry points at iovecs and buffers the caller lends for the whole
        // burst, and every caller runs `complete` right after pushing, which does not
        // return while the kernel may still use them (see there).
        unsafe { self.ring.submission().push(op) }.is_ok()
    }

    /// Submits the `n` pushed operations and waits until the kernel is done with each.
    ///
    /// If completions stall (never on a TAP) or the kernel refuses the ring itself, what
    /// it still holds is cancelled synchronously first. After a refusal the caller must
    /// drop the ring: entries never submitted are then discarded with it.
    fn complete(&mut self, n: usize, results: &mut [i32]) -> io::Result<()> {
        let mut done = 0;
        let mut stalls = 0;
        let mut refused = None;
        while done < n {
            let ts = types::Timespec::from(WAIT_SLICE);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(n - done, &args) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => stalls += 1,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) => refused = Some(e),
            }
            for cqe in self.ring.completion() {
                let i = cqe.user_data() as usize;
                if i < n {
                    results[i] = cqe.result();
                    done += 1;
                }
            }
            if done < n && (stalls >= 2 || refused.is_some()) {
                // The kernel still holds operations: cancel them and wait until it has
                // let go of them all; their completions (-ECANCELED) follow.
                match self
                    .ring
                    .submitter()
                    .register_sync_cancel(None, types::CancelBuilder::any())
                {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => {
                        // Returning now could let the kernel write into buffers we no
                        // longer own; nothing sound is left to do.
                        eprintln!("vbridge: io_uring cannot cancel a stuck operation: {e}");
                        std::process::abort();
                    }
                }
                if let Some(e) = refused {
                    // Submitted operations are now finished or cancelled; the rest never
                    // reached the kernel and go with the ring.
                    return Err(e);
                }
                stalls = 0;
            }
        }
        Ok(())
    }
}

/// The `iovec`s of a burst: `IoSlice`/`IoSliceMut` are ABI-compatible with `struct iovec`
/// (std guarantees it on Unix), which is what the casts above rely on.
const _: () = assert!(std::mem::size_of::<IoSlice<'_>>() == std::mem::size_of::<libc::iovec>());

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    /// A pipe stands in for a TAP: it too completes `RWF_NOWAIT` reads at once, with data
    /// or `-EAGAIN`, even on a blocking descriptor.
    #[test]
    fn read_burst_takes_what_is_there_and_reports_empty() {
        let mut ring = Ring::new().expect("io_uring available");
        let (reader, mut writer) = std::io::pipe().unwrap();
        writer.write_all(b"abc").unwrap();
        let mut bytes = [[0u8; 1]; 4];
        let mut none: [[u8; 0]; 4] = [[]; 4];
        let mut iovs: Vec<[IoSliceMut<'_>; 2]> = bytes
            .iter_mut()
            .zip(none.iter_mut())
            .map(|(b, z)| [IoSliceMut::new(z), IoSliceMut::new(b)])
            .collect();
        let mut results = [0i32; 4];
        ring.readv_burst(reader.as_fd(), &mut iovs, &mut results)
            .unwrap();
        drop(iovs);
        assert_eq!(results, [1, 1, 1, -libc::EAGAIN]);
        assert_eq!(bytes, [[b'a'], [b'b'], [b'c'], [0]]);
    }

    #[test]
    fn write_burst_writes_in_order_and_the_ring_is_reusable() {
        let mut ring = Ring::new().expect("io_uring available");
        let (mut reader, writer) = std::io::pipe().unwrap();
        for round in 0..3u8 {
            let heads = [[b'h', round]; MAX_BURST];
            let bodies: Vec<Vec<u8>> = (0..MAX_BURST as u8).map(|i| vec![i; 3]).collect();
            let iovs: Vec<[IoSlice<'_>; 2]> = heads
                .iter()
                .zip(&bodies)
                .map(|(h, b)| [IoSlice::new(h), IoSlice::new(b)])
                .collect();
            let mut results = [0i32; MAX_BURST];
            ring.writev_burst(writer.as_fd(), &iovs, &mut results)
                .unwrap();
            assert!(results.iter().all(|&r| r == 5), "{results:?}");
            let mut got = vec![0u8; 5 * MAX_BURST];
            reader.read_exact(&mut got).unwrap();
            for (i, op) in got.chunks(5).enumerate() {
                assert_eq!(op, [b'h', round, i as u8, i as u8, i as u8]);
            }
        }
    }

    #[test]
    fn results_shorter_than_the_burst_bound_it() {
        let mut ring = Ring::new().expect("io_uring available");
        let (mut reader, writer) = std::io::pipe().unwrap();
        let iovs: Vec<[IoSlice<'_>; 1]> = (0..4).map(|_| [IoSlice::new(b"x")]).collect();
        let mut results = [0i32; 2];
        ring.writev_burst(writer.as_fd(), &iovs, &mut results)
            .unwrap();
        assert_eq!(results, [1, 1]);
        drop(writer);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"xx");
    }
}
