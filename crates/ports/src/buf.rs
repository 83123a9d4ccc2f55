//! Frame buffers with headroom for in-place tag pushes, and fixed batches of them that a
//! port fills on receive and the datapath reuses (no allocation per frame).

use std::fmt;

use vbridge_wire::Tag;
use vbridge_wire::ipv4::checksum;
use vbridge_wire::vlan::{pop_in_place, push_in_place};

use crate::vnet::VnetHdr;

/// Bytes kept free in front of a received frame. `AfPacket` uses 4 of them to put back
/// a VLAN tag the kernel stripped, so at least 120 are left to the datapath.
pub const HEADROOM: usize = 128;

/// Longest frame a default [`PacketBuf`] holds: a 64 KiB GSO super-frame (the kernel's
/// legacy `gso_max_size` of 65536) plus Ethernet and two VLAN headers, rounded up.
pub const MAX_FRAME_LEN: usize = 65_536 + 128;

/// Why a buffer operation could not be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BufError {
    #[error("not enough headroom in the packet buffer")]
    NoHeadroom,
    #[error("not enough tailroom in the packet buffer")]
    NoTailroom,
    #[error("frame too short for the operation")]
    TooShort,
    #[error("frame has no VLAN tag to remove")]
    NotTagged,
}

/// One frame: its vnet header and its bytes at `start..start + len` of a buffer that
/// keeps [`HEADROOM`] free in front.
#[derive(Clone)]
pub struct PacketBuf {
    /// Offload state of the frame. Ports without vnet headers ignore it on send and
    /// leave it default on receive.
    pub hdr: VnetHdr,
    data: Box<[u8]>,
    start: usize,
    len: usize,
    /// Not 0: the kernel fast path already flooded this frame, of this length on the
    /// wire, and the buffer holds only its Ethernet header.
    flooded: usize,
}

impl fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketBuf")
            .field("hdr", &self.hdr)
            .field("start", &self.start)
            .field("len", &self.len)
            .field("flooded", &self.flooded)
            .field("capacity", &self.data.len())
            .finish()
    }
}

impl Default for PacketBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuf {
    /// An empty buffer for frames up to [`MAX_FRAME_LEN`]. The memory is zeroed lazily
    /// by the allocator, so untouched pages cost no resident memory.
    pub fn new() -> Self {
        Self::with_max_frame(MAX_FRAME_LEN)
    }

    /// An empty buffer for frames up to `max_frame` bytes (plus [`HEADROOM`]).
    pub fn with_max_frame(max_frame: usize) -> Self {
        PacketBuf {
            hdr: VnetHdr::default(),
            data: vec![0u8; HEADROOM + max_frame].into_boxed_slice(),
            start: HEADROOM,
            len: 0,
            flooded: 0,
        }
    }

    /// A buffer holding a copy of `frame` with a default (empty) header.
    pub fn from_frame(frame: &[u8]) -> Result<Self, BufError> {
        let mut buf = Self::with_max_frame(frame.len().max(64));
        buf.set_frame(frame)?;
        Ok(buf)
    }

    /// The frame's bytes.
    pub fn frame(&self) -> &[u8] {
        &self.data[self.start..self.start + self.len]
    }

    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.start + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `Some(len)` when the kernel fast path already flooded this frame (a broadcast) to
    /// its ports: the buffer holds only the frame's Ethernet header (with its 802.1Q tag,
    /// if it came with one), for the switch to learn from and count, and `len` is the
    /// whole frame's length. Such a frame is never to be sent.
    pub fn flooded_len(&self) -> Option<usize> {
        (self.flooded != 0).then_some(self.flooded)
    }

    /// Free bytes in front of the frame.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Free bytes after the frame.
    pub fn tailroom(&self) -> usize {
        self.data.len() - self.start - self.len
    }

    /// Empties the frame, restores the full headroom and resets the header.
    pub fn clear(&mut self) {
        self.hdr = VnetHdr::default();
        self.start = HEADROOM.min(self.data.len());
        self.len = 0;
        self.flooded = 0;
    }

    /// Replaces the frame by a copy of `frame`, placed after the full headroom. The
    /// header is left as it is.
    pub fn set_frame(&mut self, frame: &[u8]) -> Result<(), BufError> {
        let start = HEADROOM.min(self.data.len());
        let dst = self
            .data
            .get_mut(start..start + frame.len())
            .ok_or(BufError::NoTailroom)?;
        dst.copy_from_slice(frame);
        self.start = start;
        self.len = frame.len();
        self.flooded = 0;
        Ok(())
    }

    /// Grows the frame by `n` bytes at the front and returns them (stale contents).
    pub fn push_front(&mut self, n: usize) -> Result<&mut [u8], BufError> {
        if n > self.start {
            return Err(BufError::NoHeadroom);
        }
        self.start -= n;
        self.len += n;
        Ok(&mut self.data[self.start..self.start + n])
    }

    /// Drops the first `n` bytes of the frame.
    pub fn pull_front(&mut self, n: usize) -> Result<(), BufError> {
        if n > self.len {
            return Err(BufError::TooShort);
        }
        self.start += n;
        self.len -= n;
        Ok(())
    }

    /// Sets the frame length, growing into the tailroom (stale contents) or shrinking.
    pub fn set_len(&mut self, len: usize) -> Result<(), BufError> {
        if self.start + len > self.data.len() {
            return Err(BufError::NoTailroom);
        }
        self.len = len;
        Ok(())
    }

    /// Inserts a VLAN tag after the two MAC addresses, in place (the 12 address bytes
    /// move 4 bytes to the left: [`vbridge_wire::vlan::push_in_place`]). The header
    /// follows (`shift(4)`).
    pub fn insert_tag(&mut self, tag: Tag) -> Result<(), BufError> {
        if self.len < 12 {
            return Err(BufError::TooShort);
        }
        if self.start < 4 {
            return Err(BufError::NoHeadroom);
        }
        let end = self.start + self.len;
        // The wire helper wants a whole Ethernet header; a 12-byte frame gets its tag all
        // the same (its type field is what follows the tag).
        let new = if self.len >= 14 {
            push_in_place(&mut self.data, self.start, end, tag).map_err(|_| BufError::TooShort)?
        } else {
            let s = self.start;
            self.data.copy_within(s..s + 12, s - 4);
            self.data[s + 8..s + 12].copy_from_slice(&tag.to_bytes());
            s - 4
        };
        self.start = new;
        self.len += 4;
        self.hdr.shift(4);
        Ok(())
    }

    /// Removes the outer VLAN tag (802.1Q, 802.1ad or 0x9100) in place and returns it
    /// ([`vbridge_wire::vlan::pop_in_place`]). The header follows (`shift(-4)`).
    pub fn remove_tag(&mut self) -> Result<Tag, BufError> {
        if self.len < 16 {
            return Err(BufError::TooShort);
        }
        let (new, tag) = pop_in_place(&mut self.data, self.start, self.start + self.len)
            .map_err(|_| BufError::NotTagged)?;
        self.start = new;
        self.len -= 4;
        self.hdr.shift(-4);
        Ok(tag)
    }

    /// Does in software what `F_NEEDS_CSUM` asks: sums the frame from `csum_start` to
    /// its end, stores the result at `csum_start + csum_offset` and clears the flag (as
    /// the kernel's `skb_checksum_help`). Needed before sending to a port without vnet
    /// headers. Does nothing if the flag is not set.
    pub fn finish_csum(&mut self) -> Result<(), BufError> {
        if !self.hdr.needs_csum() {
            return Ok(());
        }
        let start = usize::from(self.hdr.csum_start);
        let field = start + usize::from(self.hdr.csum_offset);
        if field + 2 > self.len {
            return Err(BufError::TooShort);
        }
        let frame = self.frame_mut();
        let sum = checksum(&frame[start..]);
        // A computed 0 goes out as 0xffff (0 means "no checksum" to UDP).
        let value = if sum == 0 { 0xffff } else { sum };
        frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
        self.hdr.flags &= !VnetHdr::F_NEEDS_CSUM;
        Ok(())
    }

    /// The whole receive area (after the headroom); resets the frame to empty.
    pub(crate) fn rx_area(&mut self) -> &mut [u8] {
        self.start = HEADROOM.min(self.data.len());
        self.len = 0;
        self.flooded = 0;
        &mut self.data[self.start..]
    }

    /// Records that `len` bytes arrived in [`Self::rx_area`] with header `hdr`.
    pub(crate) fn set_received(&mut self, hdr: VnetHdr, len: usize) {
        self.hdr = hdr;
        self.len = len.min(self.data.len() - self.start);
    }

    /// Marks the received header as that of a frame of `wire_len` bytes the kernel
    /// flooded (see [`Self::flooded_len`]).
    pub(crate) fn set_flooded(&mut self, wire_len: usize) {
        self.flooded = wire_len.max(1);
    }
}

/// A fixed set of reusable [`PacketBuf`]s; a port's `recv_batch` replaces its content.
///
/// Each buffer is ~64 KiB of address space (lazily backed), so keep one receive batch
/// per datapath thread rather than one per port.
pub struct Batch {
    bufs: Box<[PacketBuf]>,
    len: usize,
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("size", &self.bufs.len())
            .field("len", &self.len)
            .finish()
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SIZE)
    }
}

impl Batch {
    /// A good default: large enough to amortise syscalls, small enough for the cache.
    pub const DEFAULT_SIZE: usize = 32;
    /// Most frames one receive call moves (the `recvmmsg` vector size).
    pub const MAX_SIZE: usize = crate::sys::mmsg::MAX_BATCH;

    /// A batch of `size` buffers (clamped to `1..=MAX_SIZE`), all empty.
    pub fn new(size: usize) -> Self {
        let size = size.clamp(1, Self::MAX_SIZE);
        Batch {
            bufs: (0..size).map(|_| PacketBuf::new()).collect(),
            len: 0,
        }
    }

    /// How many buffers the batch has.
    pub fn size(&self) -> usize {
        self.bufs.len()
    }

    /// How many of them hold a frame.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets all frames (buffers are kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The frames, in arrival order.
    pub fn packets(&self) -> &[PacketBuf] {
        &self.bufs[..self.len]
    }

    pub fn iter(&self) -> std::slice::Iter<'_, PacketBuf> {
        self.packets().iter()
    }

    /// Appends a cleared buffer and returns it for filling; `None` when full.
    pub fn push(&mut self) -> Option<&mut PacketBuf> {
        let buf = self.bufs.get_mut(self.len)?;
        buf.clear();
        self.len += 1;
        Some(buf)
    }

    /// Empties the batch and lends every buffer for a port to fill.
    pub(crate) fn begin_fill(&mut self) -> &mut [PacketBuf] {
        self.len = 0;
        &mut self.bufs
    }

    /// Declares the first `n` buffers filled.
    pub(crate) fn finish_fill(&mut self, n: usize) {
        self.len = n.min(self.bufs.len());
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a PacketBuf;
    type IntoIter = std::slice::Iter<'a, PacketBuf>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 0x01, // dst
            0x02, 0, 0, 0, 0, 0x02, // src
            0x08, 0x00, // IPv4
        ];
        f.extend(0..50u8);
        f
    }

    #[test]
    fn tag_insert_and_remove_in_place() {
        let mut b = PacketBuf::new();
        b.set_frame(&frame()).unwrap();
        b.hdr = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let room = b.headroom();
        b.insert_tag(Tag::from_tci(0x8100, 0x2005)).unwrap();
        assert_eq!(b.headroom(), room - 4);
        assert_eq!(&b.frame()[..12], &frame()[..12]);
        assert_eq!(&b.frame()[12..16], &[0x81, 0x00, 0x20, 0x05]);
        assert_eq!(&b.frame()[16..], &frame()[12..]);
        assert_eq!(b.hdr.csum_start, 38);
        assert_eq!(b.remove_tag().unwrap(), Tag::from_tci(0x8100, 0x2005));
        assert_eq!(b.frame(), &frame()[..]);
        assert_eq!(b.hdr.csum_start, 34);
        assert_eq!(b.headroom(), room);
    }

    #[test]
    fn bounds_are_checked() {
        let mut b = PacketBuf::with_max_frame(20);
        assert_eq!(b.set_frame(&[0u8; 21]), Err(BufError::NoTailroom));
        b.set_frame(&[0u8; 11]).unwrap();
        assert_eq!(
            b.insert_tag(Tag::from_tci(0x8100, 1)),
            Err(BufError::TooShort)
        );
        assert_eq!(b.remove_tag(), Err(BufError::TooShort));
        assert_eq!(b.pull_front(12), Err(BufError::TooShort));
        b.push_front(HEADROOM).unwrap();
        assert_eq!(b.push_front(1), Err(BufError::NoHeadroom));
        assert_eq!(b.len(), HEADROOM + 11);
        b.clear();
        assert_eq!((b.headroom(), b.len(), b.tailroom()), (HEADROOM, 0, 20));
    }

    #[test]
    fn finish_csum_matches_a_known_udp_checksum() {
        // IPv4/UDP 192.0.2.1:1000 -> 192.0.2.2:2000, payload "hi!" (odd length).
        let mut f = frame()[..14].to_vec();
        f.extend([
            0x45, 0, 0, 31, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
        ]);
        f.extend([0x03, 0xe8, 0x07, 0xd0, 0, 11, 0, 0, b'h', b'i', b'!']);
        // The pseudo-header sum the kernel leaves in the field: addresses, proto, length.
        let pseudo = !checksum(&[192, 0, 2, 1, 192, 0, 2, 2, 0, 17, 0, 11]);
        f[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let mut b = PacketBuf::from_frame(&f).unwrap();
        b.hdr = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        b.finish_csum().unwrap();
        assert!(!b.hdr.needs_csum());
        // Verify the classic way: pseudo header + UDP segment sums to 0xffff.
        // (Pseudo header first: the odd trailing byte must stay last.)
        let mut check = vec![192, 0, 2, 1, 192, 0, 2, 2, 0, 17, 0, 11];
        check.extend(&b.frame()[34..]);
        assert_eq!(checksum(&check), 0);
        assert_ne!(&b.frame()[40..42], &pseudo.to_be_bytes());
    }

    #[test]
    fn batch_push_and_fill() {
        let mut batch = Batch::new(3);
        assert_eq!(batch.size(), 3);
        for i in 0..3u8 {
            batch.push().unwrap().set_frame(&[i; 60]).unwrap();
        }
        assert!(batch.push().is_none());
        assert_eq!(
            batch.iter().map(|p| p.frame()[0]).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(Batch::new(1000).size(), Batch::MAX_SIZE);
    }
}
