//! VXLAN (RFC 7348): the VXLAN network identifier, the 8-byte header view, and its
//! parsed form. The header follows a UDP header to port 4789; an Ethernet frame follows.
//!
//! Layout: flags (1, the I bit 0x08 says the VNI is valid), reserved (3), VNI (3),
//! reserved (1). Reserved bits are ignored on receipt and sent as zero.

use core::fmt;

use crate::{Error, Result, be32, check_len, check_room};

/// The IANA UDP port of VXLAN.
pub const UDP_PORT: u16 = 4789;
/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;

/// A 24-bit VXLAN network identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    /// The largest VNI.
    pub const MAX: u32 = 0x00ff_ffff;

    /// A VNI, or [`Error::Invalid`] above 0xffffff.
    pub const fn new(v: u32) -> Result<Vni> {
        if v <= Vni::MAX {
            Ok(Vni(v))
        } else {
            Err(Error::Invalid {
                what: "VXLAN VNI",
                why: "must be 0..=16777215",
            })
        }
    }

    /// The numeric id.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

mod field {
    pub(super) const FLAGS: usize = 0;
    pub(super) const VNI: usize = 4;
    pub(super) const PAYLOAD: usize = 8;
}

/// A view of a VXLAN header and the frame it carries.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length; getters may panic if it is short.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        check_len("VXLAN header", buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags octet.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag is set.
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The 24-bit VNI field (whether or not the I flag says it is valid).
    pub fn vni(&self) -> Vni {
        Vni(be32(self.buffer.as_ref(), field::VNI) >> 8)
    }

    /// The encapsulated Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags octet.
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the VNI, keeping the reserved octet after it.
    pub fn set_vni(&mut self, vni: Vni) {
        let b = vni.0.to_be_bytes();
        self.buffer.as_mut()[field::VNI..field::VNI + 3].copy_from_slice(&b[1..]);
    }

    /// The encapsulated frame, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// The parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub vni: Vni,
}

impl Repr {
    /// Reads the header; [`Error::Malformed`] without the I flag.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        check_len("VXLAN header", packet.buffer.as_ref(), HEADER_LEN)?;
        if !packet.vni_valid() {
            return Err(Error::Malformed {
                what: "VXLAN header",
                why: "I flag not set",
            });
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Bytes the header takes (8).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: I flag, VNI, reserved fields zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        check_room("VXLAN buffer", packet.buffer.as_ref(), HEADER_LEN)?;
        packet.buffer.as_mut()[..HEADER_LEN].fill(0);
        packet.set_flags(FLAG_I);
        packet.set_vni(self.vni);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VNI 0x123456 carrying two bytes of frame.
    static PACKET: [u8; 10] = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xaa, 0xbb];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.flags(), 0x08);
        assert!(p.vni_valid());
        assert_eq!(p.vni().get(), 0x123456);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr {
                vni: Vni::new(0x123456).unwrap()
            }
        );
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 10];
        let r = Repr {
            vni: Vni::new(0x123456).unwrap(),
        };
        let mut p = Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(buf, PACKET);
        assert_eq!(r.buffer_len(), 8);
        assert!(
            r.emit(&mut Packet::new_unchecked(&mut [0u8; 7][..]))
                .is_err()
        );
    }

    #[test]
    fn malformed_and_truncated() {
        assert!(matches!(
            Packet::new_checked(&PACKET[..7]),
            Err(Error::Truncated { need: 8, .. })
        ));
        let mut no_i = PACKET;
        no_i[0] = 0x00;
        let p = Packet::new_checked(&no_i[..]).unwrap();
        assert!(matches!(Repr::parse(&p), Err(Error::Malformed { .. })));
        // Reserved bits are ignored.
        let mut reserved = PACKET;
        reserved[0] = 0xff;
        reserved[7] = 0xff;
        let p = Packet::new_checked(&reserved[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap().vni.get(), 0x123456);
    }

    #[test]
    fn vni_range() {
        assert_eq!(Vni::new(0xff_ffff).unwrap().get(), 0xff_ffff);
        assert!(matches!(Vni::new(0x100_0000), Err(Error::Invalid { .. })));
        assert_eq!(Vni::new(42).unwrap().to_string(), "42");
    }
}
