//! Frames in and out of a guest's split virtqueues, on the forwarding thread: the
//! guest's transmit queue read into [`PacketBuf`]s, frames written into its receive
//! queue (across several buffers with mergeable rx buffers), each with the 12-byte
//! `virtio_net_hdr_v1` in front.
//!
//! Everything the guest wrote is untrusted: a descriptor pointing outside its memory, a
//! write-only buffer where a readable one belongs, a chain shorter than the header or
//! longer than the largest frame, an available index running ahead of the ring — each
//! is a [`Fault`], and the port cuts the guest off.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use crate::buf::{MAX_FRAME_LEN, PacketBuf};
use crate::vnet::VnetHdr;

/// Bytes of `virtio_net_hdr_v1` (with `num_buffers`): what `VIRTIO_F_VERSION_1` uses.
pub(crate) const HDR_LEN: usize = 12;

/// A guest broke the virtio rules: cut it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The available index ran more than a queue ahead, or the rings are not in memory.
    Ring,
    /// A buffer outside guest memory.
    Memory,
    /// A write-only buffer on the transmit queue, or a readable one on the receive queue.
    Direction,
    /// Shorter than the header, or longer than the largest frame.
    Length,
}

impl Fault {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Fault::Ring => "available ring index out of range",
            Fault::Memory => "a buffer outside guest memory",
            Fault::Direction => "a buffer of the wrong direction",
            Fault::Length => "a frame shorter than its header or longer than the largest frame",
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

/// Reads up to `bufs.len()` frames the guest queued for sending.
pub(crate) fn recv(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    bufs: &mut [PacketBuf],
    scratch: &mut Segments,
) -> Received {
    let mut n = 0;
    while n < bufs.len() {
        match recv_one(q, mem, &mut bufs[n], scratch) {
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
) -> Result<bool, Fault> {
    let chain = loop {
        q.disable_notification(mem).map_err(|_| Fault::Ring)?;
        if let Some(c) = q.iter(mem).map_err(|_| Fault::Ring)?.next() {
            break c;
        }
        // Empty: ask for a kick at the next frame, unless one came meanwhile.
        if !q.enable_notification(mem).map_err(|_| Fault::Ring)? {
            return Ok(false);
        }
    };
    let head = chain.head_index();
    scratch.clear();
    for d in chain {
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
    q.add_used(mem, head, 0).map_err(|_| Fault::Ring)?;
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
/// many as it takes with mergeable rx buffers (`mergeable`).
pub(crate) fn send(
    q: &mut Queue,
    mem: &GuestMemoryMmap,
    hdr: &VnetHdr,
    frame: &[u8],
    mergeable: bool,
    scratch: &mut Segments,
    heads: &mut Vec<(u16, usize)>,
) -> Result<Delivery, Fault> {
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
        for d in chain {
            if !d.is_write_only() {
                return Err(Fault::Direction);
            }
            scratch.push(d.addr(), d.len() as usize);
        }
        heads.push((head, scratch.total - before));
    }
    if scratch.total < need {
        // Put the buffers back for a later, smaller frame.
        for _ in 0..heads.len() {
            q.go_to_previous_position();
        }
        return Ok(Delivery::NoRoom);
    }
    let mut h = [0u8; HDR_LEN];
    h[..VnetHdr::LEN].copy_from_slice(&hdr.to_bytes());
    h[VnetHdr::LEN..].copy_from_slice(&(heads.len() as u16).to_le_bytes());
    scratch.scatter(mem, &[&h, frame])?;
    let mut left = need;
    for &(head, room) in heads.iter() {
        let used = room.min(left);
        left -= used;
        q.add_used(mem, head, used as u32)
            .map_err(|_| Fault::Ring)?;
    }
    Ok(Delivery::Delivered)
}
