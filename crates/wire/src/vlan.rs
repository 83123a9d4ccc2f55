//! IEEE 802.1Q (C-tag) and 802.1ad (S-tag) VLAN tags: VLAN ids, the tag view, and the
//! push / pop / rewrite operations a switch applies to whole frames.
//!
//! A tag sits between the source address and the EtherType: TPID (2 bytes), TCI (2 bytes:
//! PCP 3 bits, DEI 1 bit, VID 12 bits). The view [`TagHeader`] covers the bytes after the
//! TPID (TCI, inner EtherType, payload) like smoltcp views cover a header and its payload.

use core::fmt;

use crate::ethernet::{EtherType, HEADER_LEN};
use crate::{Error, Result, be16, check_len};

/// Bytes one tag adds to a frame.
pub const TAG_LEN: usize = 4;
/// TPID of an 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad service tag.
pub const TPID_8021AD: u16 = 0x88a8;

/// A usable VLAN id, 1..=4094 (0 means "priority tag only", 4095 is reserved).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vid(u16);

impl Vid {
    /// VLAN 1, the default VLAN of every port.
    pub const DEFAULT: Vid = Vid(1);
    /// The largest usable id.
    pub const MAX: u16 = 4094;

    /// A VLAN id, or [`Error::Invalid`] outside 1..=4094.
    pub const fn new(v: u16) -> Result<Vid> {
        if v >= 1 && v <= Vid::MAX {
            Ok(Vid(v))
        } else {
            Err(Error::Invalid {
                what: "VLAN id",
                why: "must be 1..=4094",
            })
        }
    }

    /// The numeric id.
    #[inline]
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Vid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for Vid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Vid({})", self.0)
    }
}

/// One VLAN tag as found on the wire (the VID may be 0 or 4095 here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// 0x8100, 0x88a8 or 0x9100.
    pub tpid: u16,
    /// Priority code point, 0..=7.
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// The 12-bit VLAN id as carried.
    pub vid: u16,
}

impl Tag {
    /// An 802.1Q tag with priority 0.
    pub const fn dot1q(vid: Vid) -> Tag {
        Tag {
            tpid: TPID_8021Q,
            pcp: 0,
            dei: false,
            vid: vid.get(),
        }
    }

    /// An 802.1ad service tag with priority 0.
    pub const fn dot1ad(vid: Vid) -> Tag {
        Tag {
            tpid: TPID_8021AD,
            pcp: 0,
            dei: false,
            vid: vid.get(),
        }
    }

    /// The TCI field.
    pub const fn tci(&self) -> u16 {
        ((self.pcp as u16 & 0x7) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }

    /// Builds a tag from its TPID and TCI.
    pub const fn from_tci(tpid: u16, tci: u16) -> Tag {
        Tag {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }

    /// The four bytes on the wire.
    pub const fn to_bytes(&self) -> [u8; 4] {
        let t = self.tpid.to_be_bytes();
        let c = self.tci().to_be_bytes();
        [t[0], t[1], c[0], c[1]]
    }

    /// The VID as a usable [`Vid`], `None` for priority tags (0) and 4095.
    pub fn usable_vid(&self) -> Option<Vid> {
        Vid::new(self.vid).ok()
    }
}

mod field {
    pub(super) const TCI: usize = 0;
    pub(super) const ETHERTYPE: usize = 2;
    pub(super) const PAYLOAD: usize = 4;
}

/// A view of the bytes after a tag's TPID: TCI, inner EtherType, payload.
#[derive(Debug, Clone)]
pub struct TagHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TagHeader<T> {
    /// Wraps without checking the length.
    pub const fn new_unchecked(buffer: T) -> TagHeader<T> {
        TagHeader { buffer }
    }

    /// Wraps after checking TCI and inner EtherType are present.
    pub fn new_checked(buffer: T) -> Result<TagHeader<T>> {
        check_len("VLAN tag", buffer.as_ref(), field::PAYLOAD)?;
        Ok(TagHeader { buffer })
    }

    /// The raw TCI.
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point.
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// The 12-bit VID.
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType of what the tag encloses.
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// What the tag encloses.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TagHeader<T> {
    /// Sets the TCI.
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI..field::TCI + 2].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the VID, keeping PCP and DEI.
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    /// Sets the inner EtherType.
    pub fn set_ethertype(&mut self, t: EtherType) {
        let v: u16 = t.into();
        self.buffer.as_mut()[field::ETHERTYPE..field::ETHERTYPE + 2]
            .copy_from_slice(&v.to_be_bytes());
    }
}

/// The parsed form of one tag with the EtherType it encloses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub tag: Tag,
    pub inner: EtherType,
}

impl Repr {
    /// Reads a tag whose TPID was `tpid`.
    pub fn parse<T: AsRef<[u8]>>(tpid: u16, header: &TagHeader<T>) -> Result<Repr> {
        check_len("VLAN tag", header.buffer.as_ref(), field::PAYLOAD)?;
        Ok(Repr {
            tag: Tag::from_tci(tpid, header.tci()),
            inner: header.ethertype(),
        })
    }

    /// Bytes the TCI and inner EtherType take (the TPID is the enclosing EtherType).
    pub const fn buffer_len(&self) -> usize {
        field::PAYLOAD
    }

    /// Writes TCI and inner EtherType.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut TagHeader<T>) -> Result<()> {
        check_len("VLAN tag buffer", header.buffer.as_ref(), field::PAYLOAD)?;
        header.set_tci(self.tag.tci());
        header.set_ethertype(self.inner);
        Ok(())
    }
}

/// The outermost tag of a whole Ethernet frame, if its EtherType is a TPID.
///
/// Errors when the frame is shorter than an Ethernet header, or announces a tag that is
/// cut off.
#[inline]
pub fn outer_tag(frame: &[u8]) -> Result<Option<Tag>> {
    check_len("ethernet header", frame, HEADER_LEN)?;
    let tpid = be16(frame, 12);
    if !EtherType::from(tpid).is_tag() {
        return Ok(None);
    }
    check_len("VLAN tag", frame, HEADER_LEN + TAG_LEN)?;
    Ok(Some(Tag::from_tci(tpid, be16(frame, 14))))
}

/// All tags of a frame from the outside in (at most `N`), and the EtherType after them.
pub fn tag_stack<const N: usize>(frame: &[u8]) -> Result<(heapless_tags::Stack<N>, EtherType)> {
    check_len("ethernet header", frame, HEADER_LEN)?;
    let mut stack = heapless_tags::Stack::new();
    let mut at = 12;
    loop {
        let t = be16(frame, at);
        if !EtherType::from(t).is_tag() || stack.len() == N {
            return Ok((stack, EtherType::from(t)));
        }
        check_len("VLAN tag", frame, at + 2 + TAG_LEN)?;
        stack.push(Tag::from_tci(t, be16(frame, at + 2)));
        at += TAG_LEN;
    }
}

/// A fixed-capacity list of tags, so reading a tag stack never allocates.
pub mod heapless_tags {
    use super::Tag;

    /// Up to `N` tags, outermost first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Stack<const N: usize> {
        tags: [Option<Tag>; N],
        len: usize,
    }

    impl<const N: usize> Stack<N> {
        pub(super) const fn new() -> Self {
            Stack {
                tags: [None; N],
                len: 0,
            }
        }

        pub(super) fn push(&mut self, t: Tag) {
            self.tags[self.len] = Some(t);
            self.len += 1;
        }

        /// Number of tags read.
        pub const fn len(&self) -> usize {
            self.len
        }

        /// No tag at all.
        pub const fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// The tags, outermost first.
        pub fn iter(&self) -> impl Iterator<Item = Tag> + '_ {
            self.tags[..self.len].iter().flatten().copied()
        }
    }
}

/// Inserts `tag` as the outermost tag of the frame at `buf[start..end]`, using four bytes
/// of headroom before `start`. Returns the new start. Only the 12 address bytes move.
pub fn push_in_place(buf: &mut [u8], start: usize, end: usize, tag: Tag) -> Result<usize> {
    if start < TAG_LEN {
        return Err(Error::Invalid {
            what: "VLAN push",
            why: "needs 4 bytes of headroom",
        });
    }
    if end > buf.len() || end < start + HEADER_LEN {
        return Err(Error::Truncated {
            what: "ethernet header",
            need: HEADER_LEN,
            have: end
                .saturating_sub(start)
                .min(buf.len().saturating_sub(start)),
        });
    }
    let new = start - TAG_LEN;
    buf.copy_within(start..start + 12, new);
    buf[new + 12..new + 16].copy_from_slice(&tag.to_bytes());
    Ok(new)
}

/// Removes the outermost tag of the frame at `buf[start..end]`; returns the new start and
/// the tag. Only the 12 address bytes move.
pub fn pop_in_place(buf: &mut [u8], start: usize, end: usize) -> Result<(usize, Tag)> {
    let frame = buf.get(start..end).ok_or(Error::Invalid {
        what: "VLAN pop",
        why: "frame range outside the buffer",
    })?;
    let tag = outer_tag(frame)?.ok_or(Error::Invalid {
        what: "VLAN pop",
        why: "frame has no tag",
    })?;
    buf.copy_within(start..start + 12, start + TAG_LEN);
    Ok((start + TAG_LEN, tag))
}

/// Rewrites the VID of the outermost tag of `frame`, keeping PCP and DEI.
pub fn set_outer_vid(frame: &mut [u8], vid: Vid) -> Result<()> {
    outer_tag(frame)?.ok_or(Error::Invalid {
        what: "VLAN rewrite",
        why: "frame has no tag",
    })?;
    TagHeader::new_unchecked(&mut frame[HEADER_LEN..]).set_vid(vid.get());
    Ok(())
}

/// Copies `frame` into `out` with `tag` pushed; returns the length written.
pub fn push_into(frame: &[u8], tag: Tag, out: &mut [u8]) -> Result<usize> {
    check_len("ethernet header", frame, HEADER_LEN)?;
    let len = frame.len() + TAG_LEN;
    if out.len() < len {
        return Err(Error::Invalid {
            what: "VLAN push output",
            why: "buffer too small",
        });
    }
    out[..12].copy_from_slice(&frame[..12]);
    out[12..16].copy_from_slice(&tag.to_bytes());
    out[16..len].copy_from_slice(&frame[12..]);
    Ok(len)
}

/// Copies `frame` into `out` without its outer tag; returns the length written.
pub fn pop_into(frame: &[u8], out: &mut [u8]) -> Result<usize> {
    outer_tag(frame)?.ok_or(Error::Invalid {
        what: "VLAN pop",
        why: "frame has no tag",
    })?;
    let len = frame.len() - TAG_LEN;
    if out.len() < len {
        return Err(Error::Invalid {
            what: "VLAN pop output",
            why: "buffer too small",
        });
    }
    out[..12].copy_from_slice(&frame[..12]);
    out[12..len].copy_from_slice(&frame[16..]);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    // dst 02:..:02, src 02:..:01, 802.1Q PCP 5 DEI 0 VID 10, IPv4, 2 payload bytes.
    static TAGGED: [u8; 20] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, // addresses
        0x81, 0x00, 0xa0, 0x0a, // TPID, TCI = 101 0 000000001010
        0x08, 0x00, 0x45, 0x00,
    ];
    static UNTAGGED: [u8; 16] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, 0x45, 0x00,
    ];
    // QinQ: S-tag VID 100 outside, C-tag VID 10 inside.
    static DOUBLE: [u8; 24] = [
        0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00,
        0x0a, 0x08, 0x00, 0x45, 0x00,
    ];

    #[test]
    fn deconstruct() {
        let t = outer_tag(&TAGGED).unwrap().unwrap();
        assert_eq!(
            t,
            Tag {
                tpid: 0x8100,
                pcp: 5,
                dei: false,
                vid: 10
            }
        );
        let h = TagHeader::new_checked(&TAGGED[14..]).unwrap();
        assert_eq!((h.pcp(), h.dei(), h.vid()), (5, false, 10));
        assert_eq!(h.ethertype(), EtherType::Ipv4);
        assert_eq!(h.payload(), &[0x45, 0x00]);
        let r = Repr::parse(0x8100, &h).unwrap();
        assert_eq!(r.inner, EtherType::Ipv4);
        assert_eq!(r.buffer_len(), 4);
        assert_eq!(outer_tag(&UNTAGGED).unwrap(), None);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 4];
        let repr = Repr {
            tag: Tag {
                tpid: 0x8100,
                pcp: 5,
                dei: false,
                vid: 10,
            },
            inner: EtherType::Ipv4,
        };
        repr.emit(&mut TagHeader::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, TAGGED[14..18]);
        assert_eq!(repr.tag.to_bytes(), TAGGED[12..16]);
    }

    #[test]
    fn double_tag_stack() {
        let (stack, inner) = tag_stack::<4>(&DOUBLE).unwrap();
        let tags: Vec<Tag> = stack.iter().collect();
        assert_eq!(tags.len(), 2);
        assert_eq!((tags[0].tpid, tags[0].vid), (0x88a8, 100));
        assert_eq!((tags[1].tpid, tags[1].vid), (0x8100, 10));
        assert_eq!(inner, EtherType::Ipv4);
        let (one, next) = tag_stack::<1>(&DOUBLE).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(next, EtherType::Vlan);
    }

    #[test]
    fn push_pop_in_place() {
        let mut buf = [0u8; 24];
        buf[4..20].copy_from_slice(&UNTAGGED);
        let tag = Tag::from_tci(0x8100, 0xa00a);
        let start = push_in_place(&mut buf, 4, 20, tag).unwrap();
        assert_eq!(start, 0);
        assert_eq!(buf[..20], TAGGED);
        let (start, popped) = pop_in_place(&mut buf, 0, 20).unwrap();
        assert_eq!((start, popped), (4, tag));
        assert_eq!(buf[4..20], UNTAGGED);
        assert!(push_in_place(&mut buf, 2, 18, tag).is_err());
        assert!(pop_in_place(&mut buf, 4, 20).is_err(), "untagged frame");
    }

    #[test]
    fn push_pop_copy_and_rewrite() {
        let mut out = [0u8; 32];
        let n = push_into(&UNTAGGED, Tag::from_tci(0x8100, 0xa00a), &mut out).unwrap();
        assert_eq!(out[..n], TAGGED);
        let mut back = [0u8; 32];
        let m = pop_into(&TAGGED, &mut back).unwrap();
        assert_eq!(back[..m], UNTAGGED);
        let mut f = TAGGED;
        set_outer_vid(&mut f, Vid::new(20).unwrap()).unwrap();
        assert_eq!(&f[14..16], &[0xa0, 0x14]);
        assert!(set_outer_vid(&mut UNTAGGED.clone(), Vid::DEFAULT).is_err());
        assert!(push_into(&UNTAGGED, Tag::dot1q(Vid::DEFAULT), &mut [0u8; 19]).is_err());
    }

    #[test]
    fn truncated_tag() {
        assert!(matches!(
            outer_tag(&TAGGED[..16]),
            Err(Error::Truncated { need: 18, .. })
        ));
        assert!(outer_tag(&TAGGED[..10]).is_err());
        assert!(tag_stack::<2>(&DOUBLE[..19]).is_err());
    }

    #[test]
    fn vid_range() {
        assert!(Vid::new(0).is_err());
        assert!(Vid::new(4095).is_err());
        assert_eq!(Vid::new(4094).unwrap().get(), 4094);
        assert_eq!(Tag::from_tci(0x8100, 0x0000).usable_vid(), None);
    }
}
