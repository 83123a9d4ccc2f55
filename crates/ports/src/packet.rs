//! [`AfPacket`]: a port on an existing network device (veth end, NIC, a TAP made by
//! someone else) through an `AF_PACKET` raw socket with virtio-net headers, VLAN tags
//! restored from `PACKET_AUXDATA`, our own transmissions ignored, and promiscuous mode
//! held for as long as the socket is open. Frames are received through a `PACKET_MMAP`
//! ring where the kernel allows one (no system call per batch while frames keep coming),
//! else with `recvmmsg`.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::buf::{Batch, PacketBuf};
use crate::error::{PortError, check_name, errno, frame_dropped, would_block};
use crate::netdev::Netdev;
use crate::port::{MacAddr, PortIo, SendReport, check_nonempty};
use crate::sys;
use crate::sys::mmsg::{MAX_BATCH, RxInfo, RxSlot, TxSlot, VNET_HDR_LEN};
use crate::sys::ring::{RingShape, RxRing};
use crate::vnet::VnetHdr;

/// What the fast path's socket filter keeps of a broadcast the kernel flooded: the
/// Ethernet header.
const FLOODED_HEAD: usize = 14;

/// How to attach an [`AfPacket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfPacketOptions {
    /// Put the device in promiscuous mode while attached (`PACKET_MR_PROMISC`; the kernel
    /// undoes it when the socket closes). Needed on real NICs to see other MACs.
    pub promisc: bool,
    /// `PACKET_QDISC_BYPASS`: transmit straight to the driver. Faster on NICs with a
    /// qdisc, but our frames then skip packet taps (tcpdump on the device misses them);
    /// veth has no qdisc by default, so it gains nothing there.
    pub qdisc_bypass: bool,
    /// Receive and send socket buffer size asked for (forced past the sysctl limits when
    /// we may). The kernel doubles it for bookkeeping.
    pub socket_buffer: usize,
    /// Receive through a `PACKET_MMAP` ring (`TPACKET_V2`) of this many 2 KiB slots
    /// (rounded up to 32), GSO super-frames through the receive queue; 0, or a kernel
    /// that refuses it, leaves `recvmmsg`. The ring is kernel memory, 2 KiB a slot.
    pub rx_ring_slots: usize,
}

/// The receive ring's default size: 256 slots of 2 KiB (a 1500-byte frame, its tag,
/// vnet header and the slot header fit), 512 KiB a port.
pub const RX_RING_SLOTS: usize = 256;

/// The shape of a ring of `slots` 2 KiB slots, in blocks of 64 KiB.
fn ring_shape(slots: usize) -> RingShape {
    RingShape {
        frame_size: 2048,
        block_size: 64 << 10,
        blocks: slots.div_ceil(32).max(1),
    }
}

impl Default for AfPacketOptions {
    fn default() -> Self {
        AfPacketOptions {
            promisc: true,
            qdisc_bypass: false,
            socket_buffer: 8 << 20,
            rx_ring_slots: RX_RING_SLOTS,
        }
    }
}

/// A port on an existing netdev. Receives what arrives on the device (not what the
/// host sends out of it) and transmits out of it.
#[derive(Debug)]
pub struct AfPacket {
    fd: OwnedFd,
    name: String,
    ifindex: u32,
    rx_dropped: u64,
    /// Set once `Gone` was reported: the kernel says it only once.
    gone: bool,
    /// The receive ring, if the kernel gave one.
    ring: Option<RxRing>,
    /// Its size, to set it up again.
    slots: usize,
}

impl AfPacket {
    /// Attaches to device `name` in the calling thread's network namespace.
    pub fn attach(name: &str, opts: AfPacketOptions) -> Result<AfPacket, PortError> {
        check_name(name)?;
        let fd = sys::packet::open().map_err(|e| PortError::io(name, "socket(AF_PACKET)", e))?;
        let ifindex = Netdev {
            fd: fd.as_fd(),
            name,
        }
        .ifindex()?;
        let on = |opt: libc::c_int, what: &'static str| {
            sys::setsockopt_int(fd.as_fd(), libc::SOL_PACKET, opt, 1)
                .map_err(|e| PortError::io(name, what, e))
        };
        on(libc::PACKET_VNET_HDR, "PACKET_VNET_HDR")?;
        on(libc::PACKET_AUXDATA, "PACKET_AUXDATA")?;
        on(libc::PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING")?;
        if opts.qdisc_bypass {
            on(libc::PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS")?;
        }
        let size = libc::c_int::try_from(opts.socket_buffer).unwrap_or(libc::c_int::MAX);
        set_buffer(fd.as_fd(), libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, size)
            .map_err(|e| PortError::io(name, "SO_RCVBUF", e))?;
        set_buffer(fd.as_fd(), libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, size)
            .map_err(|e| PortError::io(name, "SO_SNDBUF", e))?;
        sys::packet::bind(fd.as_fd(), ifindex).map_err(|e| match errno(&e) {
            libc::ENODEV | libc::ENXIO => PortError::NotFound {
                name: name.to_owned(),
            },
            _ => PortError::io(name, "bind(AF_PACKET)", e),
        })?;
        if opts.promisc {
            sys::packet::add_promisc(fd.as_fd(), ifindex)
                .map_err(|e| PortError::io(name, "PACKET_ADD_MEMBERSHIP promisc", e))?;
        }
        let ring = if opts.rx_ring_slots > 0 {
            match RxRing::setup(fd.as_fd(), ring_shape(opts.rx_ring_slots)) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::info!(port = name, error = %e, "no PACKET_MMAP ring; receiving with recvmmsg");
                    None
                }
            }
        } else {
            None
        };
        Ok(AfPacket {
            fd,
            name: name.to_owned(),
            ifindex,
            rx_dropped: 0,
            gone: false,
            ring,
            slots: opts.rx_ring_slots,
        })
    }

    /// Whether frames arrive through a `PACKET_MMAP` ring.
    pub fn has_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Takes frames from the ring into `batch`: each slot copied into a buffer and handed
    /// back at once; a frame the slot was too short for read whole from the queue.
    fn recv_ring(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        let bufs = batch.begin_fill();
        let mut kept = 0;
        let mut seen = 0;
        while kept < bufs.len() && seen < 4 * bufs.len() {
            let Some(ring) = self.ring.as_mut() else {
                break;
            };
            let Some(f) = ring.peek() else {
                break;
            };
            seen += 1;
            let buf = &mut bufs[kept];
            let mut ok = false;
            if f.copied {
                ring.release();
                match self.recv_copied(buf) {
                    // Counted by `accept` when it was refused.
                    Ok(Some(kept_it)) => {
                        kept += usize::from(kept_it);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // What was taken is delivered; the error comes again next time
                        // (the port stays gone).
                        batch.finish_fill(kept);
                        return if kept > 0 { Ok(kept) } else { Err(e) };
                    }
                }
            } else {
                // A frame whole, or the header of one the kernel flooded (the socket
                // filter keeps just that).
                let head = f.len > f.data.len() && f.data.len() == FLOODED_HEAD;
                if (f.len == f.data.len() || head) && !f.data.is_empty() {
                    let area = buf.rx_area();
                    if let Some(dst) = area.get_mut(..f.data.len()) {
                        dst.copy_from_slice(f.data);
                        buf.set_received(VnetHdr::from_bytes(&f.vnet), f.data.len());
                        ok = f.vlan.is_none_or(|(tpid, tci)| {
                            buf.insert_tag(vbridge_wire::Tag::from_tci(tpid, tci))
                                .is_ok()
                        });
                        if head {
                            buf.set_flooded(f.len + if f.vlan.is_some() { 4 } else { 0 });
                        }
                    }
                }
                ring.release();
            }
            if ok {
                kept += 1;
            } else {
                self.rx_dropped += 1;
            }
        }
        batch.finish_fill(kept);
        Ok(kept)
    }

    /// Reads the frame the ring marked `TP_STATUS_COPY` (always queued before the slot
    /// is handed over) from the receive queue into `buf`: `Some(kept)` once read (a
    /// refused frame counted), `None` when nothing could be read (not counted).
    fn recv_copied(&mut self, buf: &mut PacketBuf) -> Result<Option<bool>, PortError> {
        let mut hdr = [[0u8; VNET_HDR_LEN]; 1];
        let mut info = [RxInfo::default(); 1];
        // A pending socket error (the device went down) comes before the queue, once.
        for _ in 0..2 {
            let slot = RxSlot {
                hdr: Some(&mut hdr[0]),
                data: buf.rx_area(),
            };
            match sys::mmsg::recv(self.fd.as_fd(), [slot], true, &mut info) {
                Ok(1) => {
                    return Ok(Some(
                        self.accept(std::slice::from_mut(buf), &hdr, &info) == 1,
                    ));
                }
                Ok(_) => return Ok(None),
                Err(e) if would_block(&e) => return Ok(None),
                Err(e) if matches!(errno(&e), libc::EINVAL | libc::EMSGSIZE) => {
                    return Ok(None);
                }
                Err(e) if errno(&e) == libc::ENETDOWN => {
                    if self.is_gone() {
                        return Err(self.went());
                    }
                    // Down, and the error now cleared: the frame is still queued.
                }
                Err(e) => return Err(PortError::io(&self.name, "recvmsg on AF_PACKET", e)),
            }
        }
        Ok(None)
    }

    /// Counts what the receive ring dropped, and sets the ring up again if the kernel
    /// stopped filling it: frames dropped, none taken since the last look and the next
    /// slot free. (The kernel leaves its slot claimed when it cannot write a vnet header
    /// for a frame, such as tunnel GSO, and then drops everything after it.)
    fn maintain_ring(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let taken = ring.taken();
        let idle = ring.peek().is_none();
        let dropped = sys::ring::drops(self.fd.as_fd()).unwrap_or(0);
        self.rx_dropped += u64::from(dropped);
        if dropped == 0 || taken > 0 || !idle || self.gone {
            return;
        }
        tracing::warn!(port = %self.name, dropped, "the kernel stopped filling the receive ring; setting it up again");
        // Unmapped before the ring goes.
        self.ring = None;
        let again = sys::ring::teardown(self.fd.as_fd())
            .and_then(|()| RxRing::setup(self.fd.as_fd(), ring_shape(self.slots)));
        match again {
            Ok(r) => self.ring = Some(r),
            Err(e) => {
                tracing::warn!(port = %self.name, error = %e, "no receive ring any more; receiving with recvmmsg");
            }
        }
    }

    /// The ifindex the socket was bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether the device was unregistered (deleted or moved to another namespace).
    pub fn is_gone(&self) -> bool {
        // The kernel resets the bound ifindex to -1 when the device unregisters.
        sys::packet::bound(self.fd.as_fd()).map_or(true, |b| b.ifindex < 0)
    }

    /// Records that the device is gone and says so.
    fn went(&mut self) -> PortError {
        self.gone = true;
        PortError::gone(&self.name)
    }

    fn send_error(&mut self, e: io::Error) -> PortError {
        match errno(&e) {
            // The bound ifindex no longer resolves.
            libc::ENXIO | libc::ENODEV => self.went(),
            // Down, or being unregistered: only the latter is final.
            libc::ENETDOWN if self.is_gone() => self.went(),
            _ if frame_dropped(&e) => PortError::Dropped {
                op: "send on AF_PACKET",
                source: e,
            },
            _ => PortError::io(&self.name, "send on AF_PACKET", e),
        }
    }

    /// Moves the frames of one `recvmmsg` into place; returns how many were kept.
    fn accept(
        &mut self,
        bufs: &mut [PacketBuf],
        hdrs: &[[u8; VNET_HDR_LEN]],
        info: &[RxInfo],
    ) -> usize {
        let mut kept = 0;
        for (i, (hdr, info)) in hdrs.iter().zip(info).enumerate() {
            if info.truncated || info.msg_len < VNET_HDR_LEN || info.len == 0 {
                self.rx_dropped += 1;
                continue;
            }
            // The header of a frame the kernel flooded (the socket filter keeps just that).
            // Without the length on the wire (no auxdata) a header cannot be told from a
            // 14-byte frame, and is dropped rather than sent on as one.
            let head = info.wire_len > info.len && info.len == FLOODED_HEAD;
            if (info.wire_len > info.len && !head)
                || (info.wire_len == 0 && info.len == FLOODED_HEAD)
            {
                self.rx_dropped += 1;
                continue;
            }
            let buf = &mut bufs[i];
            buf.set_received(VnetHdr::from_bytes(hdr), info.len);
            // The kernel took the outer tag out of the frame into auxdata; the vnet
            // header's offsets count from the untagged frame. Put both right.
            if let Some((tpid, tci)) = info.vlan {
                if buf
                    .insert_tag(vbridge_wire::Tag::from_tci(tpid, tci))
                    .is_err()
                {
                    self.rx_dropped += 1;
                    continue;
                }
            }
            if head {
                buf.set_flooded(info.wire_len + if info.vlan.is_some() { 4 } else { 0 });
            }
            bufs.swap(kept, i);
            kept += 1;
        }
        kept
    }
}

/// Sets a socket buffer size, forcing it past `net.core.*mem_max` if we are allowed to.
fn set_buffer(
    fd: BorrowedFd<'_>,
    force: libc::c_int,
    plain: libc::c_int,
    size: libc::c_int,
) -> io::Result<()> {
    match sys::setsockopt_int(fd, libc::SOL_SOCKET, force, size) {
        Err(e) if errno(&e) == libc::EPERM => {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, plain, size)
        }
        r => r,
    }
}

impl AsFd for AfPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PortIo for AfPacket {
    fn name(&self) -> &str {
        &self.name
    }

    fn attach_fast(&self, fp: &crate::FastPath) -> Result<Option<crate::FastPort>, PortError> {
        fp.attach(self.ifindex, self.fd.as_fd()).map(Some)
    }

    fn attach_fast_filter(&self, fp: &crate::FastPath) -> Result<bool, PortError> {
        fp.attach_filter(self.fd.as_fd()).map(|()| true)
    }

    fn detach_fast_filter(&self) -> Result<(), PortError> {
        crate::fastpath::detach_filter(self.fd.as_fd())
    }

    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        true
    }

    fn recv_batch(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        if self.gone {
            batch.clear();
            return Err(PortError::gone(&self.name));
        }
        if self.ring.is_some() {
            let got = self.recv_ring(batch)?;
            if got > 0 {
                return Ok(got);
            }
            // An empty ring: a socket error (the device down or gone) is still reported
            // through the socket, and copied frames wait there.
            return match sys::socket_error(self.fd.as_fd()) {
                Ok(0) => Ok(0),
                Ok(libc::ENETDOWN) if !self.is_gone() => Ok(0),
                Ok(libc::ENETDOWN | libc::ENODEV | libc::ENXIO) => Err(self.went()),
                Ok(e) => Err(PortError::io(
                    &self.name,
                    "AF_PACKET ring",
                    io::Error::from_raw_os_error(e),
                )),
                Err(e) => Err(PortError::io(&self.name, "SO_ERROR", e)),
            };
        }
        let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX_BATCH];
        let mut info = [RxInfo::default(); MAX_BATCH];
        // Skipped frames were consumed by the kernel, so this ends; the bound only keeps
        // one call from running long under a flood of bad frames.
        for _ in 0..MAX_BATCH {
            let bufs = batch.begin_fill();
            let slots = bufs
                .iter_mut()
                .zip(hdrs.iter_mut())
                .map(|(buf, hdr)| RxSlot {
                    hdr: Some(hdr),
                    data: buf.rx_area(),
                });
            let got = match sys::mmsg::recv(self.fd.as_fd(), slots, true, &mut info) {
                Ok(got) => got,
                Err(e) if would_block(&e) => return Ok(0),
                // The device went down or away (reported once, as a socket error).
                Err(e) if errno(&e) == libc::ENETDOWN => {
                    return if self.is_gone() {
                        Err(self.went())
                    } else {
                        Ok(0)
                    };
                }
                Err(e) if matches!(errno(&e), libc::ENODEV | libc::ENXIO) => {
                    return Err(self.went());
                }
                // A frame the kernel could not describe in a vnet header (e.g. tunnel
                // GSO) was consumed with this error: count it and read on.
                Err(e) if matches!(errno(&e), libc::EINVAL | libc::EMSGSIZE) => {
                    self.rx_dropped += 1;
                    continue;
                }
                Err(e) => return Err(PortError::io(&self.name, "recvmmsg on AF_PACKET", e)),
            };
            let kept = self.accept(bufs, &hdrs[..got], &info[..got]);
            batch.finish_fill(kept);
            if kept > 0 || got == 0 {
                return Ok(kept);
            }
        }
        Ok(0)
    }

    fn send(&mut self, pkt: &PacketBuf) -> Result<(), PortError> {
        check_nonempty(pkt)?;
        let hdr = pkt.hdr.to_bytes();
        match sys::mmsg::send(
            self.fd.as_fd(),
            TxSlot {
                hdr: Some(&hdr),
                data: pkt.frame(),
            },
        ) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.send_error(e)),
        }
    }

    fn send_batch(&mut self, pkts: &[&PacketBuf]) -> Result<SendReport, PortError> {
        let mut report = SendReport::default();
        let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX_BATCH];
        let mut rest = pkts;
        while let Some(first) = rest.first() {
            if check_nonempty(first).is_err() {
                report.dropped += 1;
                rest = &rest[1..];
                continue;
            }
            let chunk = &rest[..rest.len().min(MAX_BATCH)];
            let chunk = &chunk[..chunk
                .iter()
                .position(|p| p.is_empty())
                .unwrap_or(chunk.len())];
            for (hdr, pkt) in hdrs.iter_mut().zip(chunk) {
                *hdr = pkt.hdr.to_bytes();
            }
            let slots = hdrs.iter().zip(chunk).map(|(hdr, pkt)| TxSlot {
                hdr: Some(hdr),
                data: pkt.frame(),
            });
            match sys::mmsg::send_many(self.fd.as_fd(), slots) {
                Ok(sent) => {
                    // sendmmsg returns >= 1 on success; guard anyway against spinning.
                    let sent = sent.max(1);
                    report.sent += sent;
                    rest = &rest[sent..];
                }
                Err(e) => match self.send_error(e) {
                    PortError::Dropped { .. } => {
                        report.dropped += 1;
                        rest = &rest[1..];
                    }
                    fatal => return Err(fatal),
                },
            }
        }
        Ok(report)
    }

    fn mac(&self) -> Result<MacAddr, PortError> {
        let bound = sys::packet::bound(self.fd.as_fd())
            .map_err(|e| PortError::io(&self.name, "getsockname(AF_PACKET)", e))?;
        if bound.ifindex < 0 {
            return Err(PortError::gone(&self.name));
        }
        <[u8; 6]>::try_from(bound.addr.as_slice())
            .map(MacAddr)
            .map_err(|_| {
                PortError::io(
                    &self.name,
                    "read a 6-byte hardware address",
                    io::Error::from_raw_os_error(libc::EINVAL),
                )
            })
    }

    fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    fn maintain(&mut self) {
        self.maintain_ring();
    }
}
