//! Frames in and out of a guest's split virtqueues, on the forwarding thread: the
//! guest's transmit queue read into [`PacketBuf`]s, frames written into its receive
//! queue (across several buffers with mergeable rx buffers), each with the 12-byte
//! `virtio_net_hdr_v1` in front.
//!
//! Everything the guest wrote is untrusted: a descriptor pointing outside its memory, a
//! write-only buffer where a readable one belongs, a chain shorter than the header or
//! longer than the largest frame, a chain of more than [`MAX_CHAIN`] descriptors (a loop,
//! say), an available index running ahead of the ring — each is a [`Fault`], and the
//! port cuts the guest off.
//!
//! Used buffers are published by the port's own [`publish`], once per batch, so a
//! frame spread over several merged buffers becomes visible whole (the spec asks that of
//! `num_buffers`), and [`should_signal`] decides on the interrupt with the event index
//! or the driver's `NO_INTERRUPT` flag.

use std::sync::atomic::{Ordering, fence};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use crate::buf::{MAX_FRAME_LEN, PacketBuf};
use crate::vnet::VnetHdr;

/// Bytes of `virtio_net_hdr_v1` (with `num_buffers`): what `VIRTIO_F_VERSION_1` uses.
pub(crate) const HDR_LEN: usize = 12;

/// Most descriptors one chain may have (Linux uses a few dozen at most).
pub(crate) const MAX_CHAIN: usize = 256;

/// Used ring entries waiting to be published: (descriptor head, bytes written).
pub(crate) type UsedList = Vec<(u16, u32)>;

/// A guest broke the virtio rules: cut it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The available index ran more than a queue ahead, or the rings are not in memory.
    Ring,
    /// A buffer outside guest memory.
    Memory,
    /// A write-only buffer on the transmit queue, or a readable one on the receive queue.
    Direction,
    /// Shorter than the header, or longer than the largest frame; or a receive buffer
    /// with no room at all.
    Length,
    /// More than [`MAX_CHAIN`] descriptors in a chain.
    Chain,
}

impl Fault {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fault::Ring => "available ring index out of range",
            Fault::Memory => "a buffer outside guest memory",
            Fault::Direction => "a buffer of the wrong direction",
            Fault::Length => "a frame shorter than its header or longer than the largest frame",
            Fault::Chain => "a descriptor chain too long (a loop?)",
        }
    }
}

/// The guest memory pieces one descriptor chain (or a few, merged) is made of.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    segs: Vec<(GuestAddress, usize)>,
    total: usize,
}

impl Segments {
    fn clear(&mut self) {
        self.segs.clear();
        self.total = 0;
    }

    fn push(&mut self, addr: GuestAddress, len: usize) {
        if len > 0 {
            self.segs.push((addr, len));
            self.total += len;
        }
    }

    /// Copies the bytes from offset `skip` into `dst` (exactly `dst.len()` of them).
    fn gather(&self, mem: &GuestMemoryMmap, mut skip: usize, dst: &mut [u8]) -> Result<(), Fault> {
        let mut done = 0;
        for &(addr, len) in &self.segs {
            if done == dst.len() {
                break;
            }
            if skip >= len {
                skip -= len;
                continue;
            }
            let n = (len - skip).min(dst.len() - done);
            let at = addr.0.checked_add(skip as u64).ok_or(Fault::Memory)?;
            read_at(mem, GuestAddress(at), &mut dst[done..done + n])?;
            done += n;
            skip = 0;
        }
        if done == dst.len() {
            Ok(())
        } else {
            Err(Fault::Length)
        }
    }

    /// Copies `parts` (one after the other) into the segments from their start.
    fn scatter(&self, mem: &GuestMemoryMmap, parts: &[&[u8]]) -> Result<(), Fault> {
        let mut segs = self.segs.iter().copied();
        let (mut addr, mut room) = segs.next().unwrap_or((GuestAddress(0), 0));
        for part in parts {
            let mut part = *part;
            while !part.is_empty() {
                if room == 0 {
                    (addr, room) = segs.next().ok_or(Fault::Length)?;
                }
                let n = room.min(part.len());
                write_at(mem, addr, &part[..n])?;
                addr = GuestAddress(addr.0.checked_add(n as u64).ok_or(Fault::Memory)?);
                room -= n;
                part = &part[n..];
            }
        }
        Ok(())
    }
}

/// Copies guest memory at `addr` into `dst`: one copy where the range lies in one
/// region (always, in practice), else piece by piece.
fn read_at(mem: &GuestMemoryMmap, addr: GuestAddress, dst: &mut [u8]) -> Result<(), Fault> {
    match mem.get_slice(addr, dst.len()) {
        Ok(s) => {
            s.copy_to(dst);
            Ok(())
        }
        Err(_) => mem.read_slice(dst, addr).map_err(|_| Fault::Memory),
    }
}

/// Copies `src` into guest memory at `addr` (as [`read_at`]).
fn write_at(mem: &GuestMemoryMmap, addr: GuestAddress, src: &[u8]) -> Result<(), Fault> {
    match mem.get_slice(addr, src.len()) {
        Ok(s) => {
            s.copy_from(src);
            Ok(())
        }
        Err(_) => mem.write_slice(src, addr).map_err(|_| Fault::Memory),
    }
}

/// What [`recv`] got: frames read (good ones, even before a fault), whether more may
/// be waiting (the batch filled before the queue emptied), and the guest's fault if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) n: usize,
    pub(crate) more: bool,
    pub(crate) fault: Option<Fault>,
}

/// Reads up to `bufs.len()` frames the guest queued for sending; their buffers go on
/// `used` (publish them with [`publish`]).
pub(crate) fn recv(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    bufs: &mut [PacketBuf],
    scratch: &mut Segments,
    used: &mut UsedList,
) -> Received {
    // No kicks while the batch is read (without the event index, `NO_NOTIFY`; with
    // it, the guest kicks only at the index asked for when the queue was last empty).
    if q.disable_notification(mem).is_err() {
        return Received {
            n: 0,
            more: false,
            fault: Some(Fault::Ring),
        };
    }
    let mut n = 0;
    while n < bufs.len() {
        match recv_one(q, mem, &mut bufs[n], scratch, used) {
            Ok(true) => n += 1,
            Ok(false) => {
                return Received {
                    n,
                    more: false,
                    fault: None,
                };
            }
            Err(f) => {
                return Received {
                    n,
                    more: false,
                    fault: Some(f),
                };
            }
        }
    }
    Received {
        n,
        more: true,
        fault: None,
    }
}

/// Reads one frame into `pkt`; `Ok(false)` when the queue is empty (and the guest has
/// been asked to kick at its next frame).
fn recv_one(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    pkt: &mut PacketBuf,
    scratch: &mut Segments,
    used: &mut UsedList,
) -> Result<bool, Fault> {
    let mut chain = q.iter(mem).map_err(|_| Fault::Ring)?.next();
    if chain.is_none() {
        // Empty: ask for a kick at the next frame, unless one came meanwhile. A ring
        // that says it has more but yields nothing (an entry out of memory) is a fault.
        if !q.enable_notification(mem).map_err(|_| Fault::Ring)? {
            return Ok(false);
        }
        q.disable_notification(mem).map_err(|_| Fault::Ring)?;
        chain = q.iter(mem).map_err(|_| Fault::Ring)?.next();
    }
    let Some(chain) = chain else {
        return Err(Fault::Ring);
    };
    let head = chain.head_index();
    scratch.clear();
    for (i, d) in chain.enumerate() {
        if i == MAX_CHAIN {
            return Err(Fault::Chain);
        }
        if d.is_write_only() {
            return Err(Fault::Direction);
        }
        scratch.push(d.addr(), d.len() as usize);
    }
    if scratch.total < HDR_LEN || scratch.total - HDR_LEN > MAX_FRAME_LEN {
        return Err(Fault::Length);
    }
    let mut hdr = [0u8; VnetHdr::LEN];
    scratch.gather(mem, 0, &mut hdr)?;
    pkt.clear();
    pkt.set_len(scratch.total - HDR_LEN)
        .map_err(|_| Fault::Length)?;
    scratch.gather(mem, HDR_LEN, pkt.frame_mut())?;
    // virtio 1.0 headers are little-endian, which is VnetHdr's host order here
    // (x86-64, little-endian arm64); `num_buffers` means nothing on this queue.
    pkt.hdr = VnetHdr::from_bytes(&hdr);
    used.push((head, 0));
    Ok(true)
}

/// What became of a frame offered to the guest's receive queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    Delivered,
    /// No room: the guest has not given back enough receive buffers.
    NoRoom,
}

/// Writes `hdr` and `frame` into the guest's receive queue: one buffer chain, or as
/// many as it takes with mergeable rx buffers (`mergeable`); the chains go on `used`.
/// `full_at` remembers the available index at which the guest had too little room, so
/// that frames after it are dropped without walking its buffers again.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    hdr: &VnetHdr,
    frame: &[u8],
    mergeable: bool,
    scratch: &mut Segments,
    heads: &mut Vec<(u16, usize)>,
    used: &mut UsedList,
    full_at: &mut Option<u16>,
) -> Result<Delivery, Fault> {
    if let Some(at) = *full_at {
        let now = q
            .avail_idx(mem, Ordering::Acquire)
            .map_err(|_| Fault::Ring)?;
        if now.0 == at {
            return Ok(Delivery::NoRoom);
        }
        *full_at = None;
    }
    let need = HDR_LEN + frame.len();
    scratch.clear();
    heads.clear();
    while scratch.total < need {
        if !heads.is_empty() && !mergeable {
            break;
        }
        let chain = q.iter(mem).map_err(|_| Fault::Ring)?.next();
        let Some(chain) = chain else { break };
        let head = chain.head_index();
        let before = scratch.total;
        for (i, d) in chain.enumerate() {
            if i == MAX_CHAIN {
                return Err(Fault::Chain);
            }
            if !d.is_write_only() {
                return Err(Fault::Direction);
            }
            scratch.push(d.addr(), d.len() as usize);
        }
        if scratch.total == before {
            return Err(Fault::Length);
        }
        heads.push((head, scratch.total - before));
    }
    if scratch.total < need {
        // Put the buffers back for a later, smaller frame.
        for _ in 0..heads.len() {
            q.go_to_previous_position();
        }
        let now = q
            .avail_idx(mem, Ordering::Acquire)
            .map_err(|_| Fault::Ring)?;
        *full_at = Some(now.0);
        return Ok(Delivery::NoRoom);
    }
    let mut h = [0u8; HDR_LEN];
    h[..VnetHdr::LEN].copy_from_slice(&hdr.to_bytes());
    h[VnetHdr::LEN..].copy_from_slice(&(heads.len() as u16).to_le_bytes());
    scratch.scatter(mem, &[&h, frame])?;
    let mut left = need;
    for &(head, room) in heads.iter() {
        let n = room.min(left);
        left -= n;
        used.push((head, n as u32));
    }
    Ok(Delivery::Delivered)
}

/// Publishes `used` in the used ring with one index update, and empties it.
pub(crate) fn publish(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    used: &mut UsedList,
) -> Result<(), Fault> {
    if used.is_empty() {
        return Ok(());
    }
    let size = q.size();
    let base = q.used_ring();
    let mut next = q.next_used();
    for &(head, len) in used.iter() {
        let slot = u64::from(next % size);
        let at = base + 4 + 8 * slot;
        mem.write_obj(u32::from(head).to_le(), GuestAddress(at))
            .map_err(|_| Fault::Ring)?;
        mem.write_obj(len.to_le(), GuestAddress(at + 4))
            .map_err(|_| Fault::Ring)?;
        next = next.wrapping_add(1);
    }
    used.clear();
    q.set_next_used(next);
    mem.store(next.to_le(), GuestAddress(base + 2), Ordering::Release)
        .map_err(|_| Fault::Ring)
}

/// Whether the guest wants an interrupt now that the used index moved on from `old`:
/// with the event index, when it passed the driver's `used_event`; without, unless the
/// driver set `VRING_AVAIL_F_NO_INTERRUPT`.
pub(crate) fn should_signal(q: &Queue, mem: &GuestMemoryMmap, old: u16) -> bool {
    let new = q.next_used();
    if new == old {
        return false;
    }
    // The used index must be visible before the driver's word is read.
    fence(Ordering::SeqCst);
    let avail = q.avail_ring();
    if q.event_idx_enabled() {
        let at = GuestAddress(avail + 4 + 2 * u64::from(q.size()));
        let Ok(event) = mem.load::<u16>(at, Ordering::Acquire) else {
            return true;
        };
        let event = u16::from_le(event);
        new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
    } else {
        mem.load::<u16>(GuestAddress(avail), Ordering::Acquire)
            .map_or(true, |f| u16::from_le(f) & 1 == 0)
    }
}
