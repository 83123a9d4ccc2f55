//! Bursts of TAP reads and writes through one io_uring system call each (see
//! `sys::uring`), used by [`Tap`]'s `recv_batch`/`send_batch` when a ring is available.
//! A ring the kernel stops accepting is dropped and the plain calls take over.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsFd;

use super::{Tap, TapOptions, tap_gone};
use crate::buf::{Batch, PacketBuf};
use crate::error::{PortError, frame_dropped};
use crate::port::{PortIo, SendReport};
use crate::sys::mmsg::VNET_HDR_LEN;
use crate::sys::uring::{MAX_BURST, Ring};
use crate::vnet::VnetHdr;

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
    /// [`PortIo::recv_batch`] through the ring: one system call reads a burst of frames.
    pub(super) fn recv_burst(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        let Some(ring) = self.ring.as_mut() else {
            return Ok(0);
        };
        let bufs = batch.begin_fill();
        let want = self.rx_want.min(bufs.len()).min(MAX_BURST);
        let hdr_len = if self.opts.vnet_hdr { VNET_HDR_LEN } else { 0 };
        let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX_BURST];
        let mut results = [0i32; MAX_BURST];
        let mut rooms = [0usize; MAX_BURST];
        let mut iovs: Vec<[IoSliceMut<'_>; 2]> = Vec::with_capacity(want);
        for ((buf, hdr), room) in bufs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(rooms.iter_mut())
            .take(want)
        {
            let area = buf.rx_area();
            *room = area.len();
            iovs.push([IoSliceMut::new(&mut hdr[..hdr_len]), IoSliceMut::new(area)]);
        }
        let submitted = ring.readv_burst(self.fd.as_fd(), &mut iovs, &mut results);
        drop(iovs);
        if let Err(e) = submitted {
            tracing::warn!(port = %self.name, error = %e, "io_uring failed; using plain system calls");
            self.ring = None;
            batch.finish_fill(0);
            return Ok(0);
        }
        let mut n = 0;
        let mut failure = None;
        for i in 0..want {
            let r = results[i];
            if r < 0 {
                match -r {
                    libc::EAGAIN => {}
                    libc::EFAULT | libc::EINVAL => self.rx_dropped += 1,
                    e => failure = failure.or(Some(e)),
                }
                continue;
            }
            let got = r as usize;
            if got == 0 {
                continue;
            }
            if got < hdr_len || got - hdr_len >= rooms[i] {
                self.rx_dropped += 1;
                continue;
            }
            let hdr = if hdr_len > 0 {
                VnetHdr::from_bytes(&hdrs[i])
            } else {
                VnetHdr::default()
            };
            bufs[i].set_received(hdr, got - hdr_len);
            bufs.swap(n, i);
            n += 1;
        }
        self.rx_want = (n * 2).clamp(RX_WANT_MIN, MAX_BURST);
        batch.finish_fill(n);
        match failure {
            Some(_) if n > 0 => Ok(n),
            Some(e) if tap_gone(e) => Err(PortError::gone(&self.name)),
            Some(e) => Err(PortError::io(
                &self.name,
                "read from TAP",
                std::io::Error::from_raw_os_error(e),
            )),
            None => Ok(n),
        }
    }

    /// [`PortIo::send_batch`] through the ring: one system call writes the whole batch.
    pub(super) fn send_burst(&mut self, pkts: &[&PacketBuf]) -> Result<SendReport, PortError> {
        let mut report = SendReport::default();
        for chunk in pkts.chunks(MAX_BURST) {
            let Some(ring) = self.ring.as_mut() else {
                for pkt in chunk {
                    match self.send(pkt) {
                        Ok(()) => report.sent += 1,
                        Err(e) if e.is_drop() => report.dropped += 1,
                        Err(e) => return Err(e),
                    }
                }
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
                tracing::warn!(port = %self.name, error = %e, "io_uring failed; using plain system calls");
                self.ring = None;
                report.dropped += count;
                continue;
            }
            for &r in &results[..count] {
                if r >= 0 {
                    report.sent += 1;
                    continue;
                }
                let e = std::io::Error::from_raw_os_error(-r);
                if tap_gone(-r) {
                    return Err(PortError::gone(&self.name));
                } else if frame_dropped(&e) || -r == libc::EIO {
                    report.dropped += 1;
                } else {
                    return Err(PortError::io(&self.name, "write to TAP", e));
                }
            }
        }
        Ok(report)
    }
}
