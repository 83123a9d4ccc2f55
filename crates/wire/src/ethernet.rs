//! Ethernet II and 802.3 frame headers: MAC addresses, EtherTypes, and the frame view.
//!
//! A frame here is what a port hands over without preamble or FCS: destination, source,
//! EtherType (or an 802.3 length below 0x0600, followed by LLC), payload.

use core::fmt;
use core::str::FromStr;

use crate::{Error, Result, be16, check_len};

/// A 48-bit IEEE MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);
    /// The Bridge Group Address `01:80:c2:00:00:00`, where STP BPDUs go.
    pub const STP_GROUP: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0, 0, 0]);

    /// Reads an address from the first six bytes of `bytes`; `None` if shorter.
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        let six: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(six))
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Group (multicast or broadcast) address: the I/G bit is set.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// All ones.
    pub fn is_broadcast(&self) -> bool {
        self.0 == [0xff; 6]
    }

    /// An individual address other than all zeros: the only kind a switch may learn.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }

    /// Locally administered (U/L bit set).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// One of the 16 IEEE 802.1D reserved addresses `01:80:c2:00:00:00`..`0f` that a
    /// bridge must not forward; returns the last octet (0..=15).
    pub fn reserved_group_index(&self) -> Option<u8> {
        match self.0 {
            [0x01, 0x80, 0xc2, 0x00, 0x00, last] if last <= 0x0f => Some(last),
            _ => None,
        }
    }

    /// The address as a `u64` (upper two bytes zero), for compact keys.
    #[inline]
    pub const fn to_u64(&self) -> u64 {
        let b = self.0;
        ((b[0] as u64) << 40)
            | ((b[1] as u64) << 32)
            | ((b[2] as u64) << 24)
            | ((b[3] as u64) << 16)
            | ((b[4] as u64) << 8)
            | (b[5] as u64)
    }

    /// The inverse of [`MacAddr::to_u64`]; the upper two bytes of `v` are ignored.
    pub const fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 02:00:00:00:00:01")]
pub struct ParseMacError(pub String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    /// Accepts `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` and one-digit octets (`0:c:29:...`,
    /// as `brctl showmacs` prints them).
    fn from_str(s: &str) -> core::result::Result<MacAddr, ParseMacError> {
        let err = || ParseMacError(s.to_string());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.is_empty() || part.len() > 2 {
                return Err(err());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n != 6 {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// The EtherType field. Values below 0x0600 are 802.3 lengths (see [`EtherType::Length`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    Ipv4,
    Arp,
    Ipv6,
    /// 802.1Q customer VLAN tag (C-tag), 0x8100.
    Vlan,
    /// 802.1ad service VLAN tag (S-tag), 0x88a8.
    QinQ,
    /// Pre-standard QinQ tag 0x9100.
    QinQLegacy,
    Lldp,
    /// An 802.3 length field: an LLC header follows.
    Length(u16),
    Unknown(u16),
}

impl From<u16> for EtherType {
    fn from(v: u16) -> EtherType {
        match v {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x86dd => EtherType::Ipv6,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            0x9100 => EtherType::QinQLegacy,
            0x88cc => EtherType::Lldp,
            v if v < 0x0600 => EtherType::Length(v),
            v => EtherType::Unknown(v),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(t: EtherType) -> u16 {
        match t {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::QinQLegacy => 0x9100,
            EtherType::Lldp => 0x88cc,
            EtherType::Length(v) | EtherType::Unknown(v) => v,
        }
    }
}

impl EtherType {
    /// A VLAN tag protocol identifier (0x8100, 0x88a8 or 0x9100).
    pub fn is_tag(self) -> bool {
        matches!(
            self,
            EtherType::Vlan | EtherType::QinQ | EtherType::QinQLegacy
        )
    }
}

mod field {
    use core::ops::{Range, RangeFrom};
    pub(super) const DST: Range<usize> = 0..6;
    pub(super) const SRC: Range<usize> = 6..12;
    pub(super) const ETHERTYPE: usize = 12;
    pub(super) const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A view of an Ethernet frame in a buffer.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking its length; getters may panic if it is short.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` after checking it holds the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        check_len("ethernet header", buffer.as_ref(), HEADER_LEN)?;
        Ok(Frame { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole frame.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(a)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(a)
    }

    /// The EtherType (or 802.3 length) right after the addresses.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(self.ethertype_raw())
    }

    /// The raw 16-bit value after the addresses.
    #[inline]
    pub fn ethertype_raw(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// Everything after the 14-byte header (a VLAN tag, if any, is part of it).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    pub fn set_ethertype(&mut self, t: EtherType) {
        let v: u16 = t.into();
        self.buffer.as_mut()[field::ETHERTYPE..field::ETHERTYPE + 2]
            .copy_from_slice(&v.to_be_bytes());
    }

    /// Everything after the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        check_len("ethernet header", frame.as_bytes(), HEADER_LEN)?;
        Ok(Repr {
            dst: frame.dst_addr(),
            src: frame.src_addr(),
            ethertype: frame.ethertype(),
        })
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header to the start of `frame`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) -> Result<()> {
        if frame.as_bytes().len() < HEADER_LEN {
            return Err(Error::Invalid {
                what: "ethernet buffer",
                why: "shorter than 14 bytes",
            });
        }
        frame.set_dst_addr(self.dst);
        frame.set_src_addr(self.src);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request from 02:00:00:00:00:01 to broadcast, padded to 60 bytes.
    static FRAME: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0xaa, 0xbb, 0xcc, 0xdd, // payload
    ];

    #[test]
    fn deconstruct() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), EtherType::Arp);
        assert_eq!(f.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 18];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        let repr = Repr {
            dst: MacAddr::BROADCAST,
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            ethertype: EtherType::Arp,
        };
        repr.emit(&mut f).unwrap();
        f.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(buf, FRAME);
    }

    #[test]
    fn parse_roundtrip() {
        let f = Frame::new_checked(&FRAME[..]).unwrap();
        let r = Repr::parse(&f).unwrap();
        assert_eq!(r.buffer_len(), 14);
        assert_eq!(r.ethertype, EtherType::Arp);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&FRAME[..13]).unwrap_err(),
            Error::Truncated {
                what: "ethernet header",
                need: 14,
                have: 13
            }
        );
    }

    #[test]
    fn ethertypes() {
        assert_eq!(EtherType::from(0x0800), EtherType::Ipv4);
        assert_eq!(EtherType::from(0x0026), EtherType::Length(0x26));
        assert_eq!(EtherType::from(0x1234), EtherType::Unknown(0x1234));
        for v in [
            0x0800u16, 0x0806, 0x86dd, 0x8100, 0x88a8, 0x9100, 0x88cc, 0x26, 0x1234,
        ] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
        assert!(EtherType::QinQ.is_tag() && !EtherType::Ipv4.is_tag());
    }

    #[test]
    fn mac_parse_and_classes() {
        let m: MacAddr = "0:c:29:27:d5:3b".parse().unwrap();
        assert_eq!(m, MacAddr([0, 0x0c, 0x29, 0x27, 0xd5, 0x3b]));
        assert_eq!(m.to_string(), "00:0c:29:27:d5:3b");
        assert_eq!("00-0C-29-27-D5-3B".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "00:11:22:33:44",
            "00:11:22:33:44:55:66",
            "zz:11:22:33:44:55",
            "001:1:2:3:4:5",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(m.is_unicast() && !m.is_multicast());
        assert!(MacAddr::BROADCAST.is_multicast() && MacAddr::BROADCAST.is_broadcast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert_eq!(MacAddr::STP_GROUP.reserved_group_index(), Some(0));
        assert_eq!(
            MacAddr([1, 0x80, 0xc2, 0, 0, 0x0e]).reserved_group_index(),
            Some(14)
        );
        assert_eq!(
            MacAddr([1, 0x80, 0xc2, 0, 0, 0x10]).reserved_group_index(),
            None
        );
        assert_eq!(MacAddr::from_u64(m.to_u64()), m);
    }
}
