//! Bursts of TAP reads and writes through one io_uring system call each (see
//! `sys::uring`), used by [`Tap`]'s `recv_batch`/`send_batch` when a ring is available.
//! A ring the kernel stops accepting is dropped and the plain calls take over.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsFd;

use super::{MAX_SKIPS, Tap, TapOptions, received};
use crate::buf::{Batch, PacketBuf};
use crate::error::PortError;
use crate::port::{SendReport, send_each};
use crate::sys::mmsg::VNET_HDR_LEN;
use crate::sys::uring::{MAX_BURST, Ring};

/// Fewest reads a burst asks for: one frame and the `EAGAIN` that says there are no more.
pub(super) const RX_WANT_MIN: usize = 2;

/// A ring for a new queue, unless the options or `VBR_IO_URING=0` (for comparisons)
/// switch io_uring off, or the kernel does not offer it.
pub(super) fn new_ring(opts: TapOptions) -> Option<Ring> {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| std::env::var("VBR_IO_URING").map_or(true, |v| v != "0"));
    if on && opts.io_uring {
        Ring::new().ok()
    } else {
        None
    }
}

impl Tap {
    /// [`PortIo::recv_batch`](crate::PortIo::recv_batch) through the ring: one system call reads a burst of frames.
    /// `None` when the ring is gone (the kernel refused it or `RWF_NOWAIT`): the caller
    /// reads with plain calls from then on.
    pub(super) fn recv_burst(&mut self, batch: &mut Batch) -> Option<Result<usize, PortError>> {
        let bufs = batch.begin_fill();
        let hdr_len = if self.opts.vnet_hdr { VNET_HDR_LEN } else { 0 };
        let mut n = 0;
        let mut failure = None;
        // A burst whose frames were all skipped (too long, bad vnet header) says nothing
        // about what is left, and the engine's readiness is edge-triggered: read on until
        // a read finds the queue empty, as the plain path does.
        for _ in 0..MAX_SKIPS {
            let ring = self.ring.as_mut()?;
            let want = self.rx_want.min(bufs.len() - n).min(MAX_BURST);
            if want == 0 {
                break;
            }
            let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX_BURST];
            let mut results = [0i32; MAX_BURST];
            let mut rooms = [0usize; MAX_BURST];
            let mut iovs: Vec<[IoSliceMut<'_>; 2]> = Vec::with_capacity(want);
            for ((buf, hdr), room) in bufs[n..]
                .iter_mut()
                .zip(&mut hdrs)
                .zip(&mut rooms)
                .take(want)
            {
                let area = buf.rx_area();
                *room = area.len();
                iovs.push([IoSliceMut::new(&mut hdr[..hdr_len]), IoSliceMut::new(area)]);
            }
            let submitted = ring.readv_burst(self.fd.as_fd(), &mut iovs, &mut results);
            drop(iovs);
            if let Err(e) = submitted {
                self.drop_ring(&e);
                break;
            }
            let base = n;
            let (mut got, mut skipped, mut empty) = (0usize, 0usize, false);
            for (i, &r) in results[..want].iter().enumerate() {
                match r {
                    0 => empty = true,
                    r if r < 0 => match -r {
                        libc::EAGAIN => empty = true,
                        libc::ECANCELED => {}
                        // The kernel consumed a frame it could not give us.
                        libc::EFAULT | libc::EINVAL => skipped += 1,
                        libc::EOPNOTSUPP => {
                            self.drop_ring(&std::io::Error::from_raw_os_error(-r));
                            empty = true;
                        }
                        e => failure = failure.or(Some(e)),
                    },
                    r => {
                        let Some((hdr, len)) = received(hdr_len, &hdrs[i], r as usize, rooms[i])
                        else {
                            skipped += 1;
                            continue;
                        };
                        bufs[base + i].set_received(hdr, len);
                        bufs.swap(n, base + i);
                        n += 1;
                        got += 1;
                    }
                }
            }
            self.rx_dropped += skipped as u64;
            self.rx_want = ((got + skipped) * 2).clamp(RX_WANT_MIN, MAX_BURST);
            if got > 0 || empty || failure.is_some() {
                break;
            }
        }
        batch.finish_fill(n);
        if n == 0 && self.ring.is_none() {
            return None;
        }
        Some(self.batch_result(n, failure.map(std::io::Error::from_raw_os_error)))
    }

    /// Gives up on the ring after the kernel refused it; plain calls take over.
    fn drop_ring(&mut self, e: &std::io::Error) {
        tracing::warn!(port = %self.name, error = %e, "io_uring refused; using plain system calls");
        self.ring = None;
    }

    /// [`PortIo::send_batch`](crate::PortIo::send_batch) through the ring: one system call writes the whole batch.
    pub(super) fn send_burst(&mut self, pkts: &[&PacketBuf]) -> Result<SendReport, PortError> {
        let mut report = SendReport::default();
        for chunk in pkts.chunks(MAX_BURST) {
            let Some(ring) = self.ring.as_mut() else {
                let r = send_each(self, chunk)?;
                report.sent += r.sent;
                report.dropped += r.dropped;
                continue;
            };
            let vnet = self.opts.vnet_hdr;
            let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX_BURST];
            let mut results = [0i32; MAX_BURST];
            let mut iovs: Vec<[IoSlice<'_>; 2]> = Vec::with_capacity(chunk.len());
            for (pkt, hdr) in chunk.iter().zip(hdrs.iter_mut()) {
                if pkt.is_empty() || (!vnet && !pkt.hdr.is_plain()) {
                    report.dropped += 1;
                    continue;
                }
                let h: &[u8] = if vnet {
                    *hdr = pkt.hdr.to_bytes();
                    &hdr[..]
                } else {
                    &[]
                };
                iovs.push([IoSlice::new(h), IoSlice::new(pkt.frame())]);
            }
            let count = iovs.len();
            let submitted = ring.writev_burst(self.fd.as_fd(), &iovs, &mut results);
            drop(iovs);
            if let Err(e) = submitted {
                // Some of the chunk may have gone out; sending it again could duplicate
                // frames, so it counts as dropped.
                self.drop_ring(&e);
                report.dropped += count;
                continue;
            }
            let mut fatal = None;
            for &r in &results[..count] {
                if r >= 0 {
                    report.sent += 1;
                    continue;
                }
                let e = std::io::Error::from_raw_os_error(-r);
                if -r == libc::EOPNOTSUPP && self.ring.is_some() {
                    self.drop_ring(&e);
                }
                match self.write_error(e) {
                    e if e.is_drop() => report.dropped += 1,
                    e => fatal = fatal.or(Some(e)),
                }
            }
            if let Some(e) = fatal {
                return Err(e);
            }
        }
        Ok(report)
    }
}
