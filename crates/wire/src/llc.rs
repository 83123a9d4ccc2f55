//! IEEE 802.2 LLC headers: SAPs, the header view, and finding the LLC PDU inside an
//! 802.3 frame (one whose EtherType field is a length).
//!
//! Layout: DSAP (1), SSAP (1), control (1 byte for U-format PDUs, whose two low bits are
//! both set; 2 bytes for I- and S-format). STP BPDUs use DSAP = SSAP = 0x42, control 0x03
//! (UI).

use crate::ethernet::{self, EtherType};
use crate::{Error, Result, check_len, check_room};

/// The SAP of the Spanning Tree Protocol.
pub const SAP_STP: u8 = 0x42;
/// The SAP announcing a SNAP header.
pub const SAP_SNAP: u8 = 0xaa;
/// Control field of an Unnumbered Information PDU.
pub const CONTROL_UI: u8 = 0x03;
/// The three LLC bytes in front of every BPDU.
pub const STP_HEADER: [u8; 3] = [SAP_STP, SAP_STP, CONTROL_UI];

mod field {
    pub(super) const DSAP: usize = 0;
    pub(super) const SSAP: usize = 1;
    pub(super) const CONTROL: usize = 2;
}

/// Length of a U-format header.
pub const HEADER_LEN: usize = 3;

/// A view of an LLC PDU (header and payload) in a buffer.
#[derive(Debug, Clone)]
pub struct Pdu<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Pdu<T> {
    /// Wraps `buffer` without checking its length; getters may panic if it is short.
    pub const fn new_unchecked(buffer: T) -> Pdu<T> {
        Pdu { buffer }
    }

    /// Wraps `buffer` after checking it holds the header (3 or 4 bytes, by the format).
    pub fn new_checked(buffer: T) -> Result<Pdu<T>> {
        check_len("LLC header", buffer.as_ref(), HEADER_LEN)?;
        let p = Pdu { buffer };
        check_len("LLC header", p.buffer.as_ref(), p.header_len())?;
        Ok(p)
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination SAP (low bit: group address).
    pub fn dsap(&self) -> u8 {
        self.buffer.as_ref()[field::DSAP]
    }

    /// Source SAP (low bit: response).
    pub fn ssap(&self) -> u8 {
        self.buffer.as_ref()[field::SSAP]
    }

    /// Whether the control field is one byte (U-format).
    pub fn is_unnumbered(&self) -> bool {
        self.buffer.as_ref()[field::CONTROL] & 0x03 == 0x03
    }

    /// The control field; for 2-byte (I/S-format) fields the first byte is the low byte.
    pub fn control(&self) -> u16 {
        let b = self.buffer.as_ref();
        if self.is_unnumbered() {
            u16::from(b[field::CONTROL])
        } else {
            u16::from_le_bytes([b[field::CONTROL], b[field::CONTROL + 1]])
        }
    }

    /// Header length: 3 for U-format, 4 otherwise.
    pub fn header_len(&self) -> usize {
        if self.is_unnumbered() { 3 } else { 4 }
    }

    /// Whether this is the `42 42 03` header of a BPDU.
    pub fn is_stp(&self) -> bool {
        self.dsap() == SAP_STP && self.ssap() == SAP_STP && self.control() == 0x03
    }

    /// What follows the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Pdu<T> {
    /// Sets the DSAP.
    pub fn set_dsap(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSAP] = v;
    }

    /// Sets the SSAP.
    pub fn set_ssap(&mut self, v: u8) {
        self.buffer.as_mut()[field::SSAP] = v;
    }

    /// Sets the control field: one byte if its two low bits are set, else two.
    pub fn set_control(&mut self, v: u16) {
        let [lo, hi] = v.to_le_bytes();
        let b = self.buffer.as_mut();
        b[field::CONTROL] = lo;
        if lo & 0x03 != 0x03 {
            b[field::CONTROL + 1] = hi;
        }
    }

    /// What follows the header, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let at = self.header_len();
        &mut self.buffer.as_mut()[at..]
    }
}

/// The parsed LLC header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub dsap: u8,
    pub ssap: u8,
    /// One byte (U-format) when the two low bits are set, else two, first byte low.
    pub control: u16,
}

impl Repr {
    /// The header of a BPDU.
    pub const STP: Repr = Repr {
        dsap: SAP_STP,
        ssap: SAP_STP,
        control: CONTROL_UI as u16,
    };

    /// Reads the header.
    pub fn parse<T: AsRef<[u8]>>(pdu: &Pdu<T>) -> Result<Repr> {
        check_len("LLC header", pdu.buffer.as_ref(), HEADER_LEN)?;
        check_len("LLC header", pdu.buffer.as_ref(), pdu.header_len())?;
        Ok(Repr {
            dsap: pdu.dsap(),
            ssap: pdu.ssap(),
            control: pdu.control(),
        })
    }

    /// Bytes the header takes (3 or 4).
    pub const fn buffer_len(&self) -> usize {
        if self.control & 0x03 == 0x03 { 3 } else { 4 }
    }

    /// Writes the header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, pdu: &mut Pdu<T>) -> Result<()> {
        if self.control & 0x03 == 0x03 && self.control > 0xff {
            return Err(Error::Invalid {
                what: "LLC control",
                why: "a U-format control field is one byte",
            });
        }
        check_room("LLC buffer", pdu.buffer.as_ref(), self.buffer_len())?;
        pdu.set_dsap(self.dsap);
        pdu.set_ssap(self.ssap);
        pdu.set_control(self.control);
        Ok(())
    }
}

/// The LLC PDU of a whole Ethernet frame whose EtherType field is an 802.3 length,
/// bounded by that length (padding after it is left out).
///
/// [`Error::Truncated`] if the frame is shorter than the Ethernet header,
/// [`Error::Malformed`] if the EtherType is not a length, or the length runs past the
/// frame or is too short for the LLC header.
pub fn from_frame(frame: &[u8]) -> Result<Pdu<&[u8]>> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let EtherType::Length(len) = eth.ethertype() else {
        return Err(Error::Malformed {
            what: "802.3 frame",
            why: "EtherType is not a length",
        });
    };
    let pdu = frame
        .get(ethernet::HEADER_LEN..ethernet::HEADER_LEN + usize::from(len))
        .ok_or(Error::Malformed {
            what: "802.3 frame",
            why: "length field runs past the frame",
        })?;
    // The frame holds `len` bytes: a header that does not fit is the length's fault.
    Pdu::new_checked(pdu).map_err(|_| Error::Malformed {
        what: "802.3 frame",
        why: "length field too short for an LLC header",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // An 802.3 frame to the STP group address, length 7, LLC 42 42 03, a TCN BPDU, and
    // padding.
    static FRAME: [u8; 26] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0x01, // addresses
        0x00, 0x07, // 802.3 length
        0x42, 0x42, 0x03, // LLC
        0x00, 0x00, 0x00, 0x80, // TCN BPDU
        0x00, 0x00, 0x00, 0x00, 0x00, // padding
    ];

    #[test]
    fn deconstruct() {
        let p = from_frame(&FRAME).unwrap();
        assert_eq!((p.dsap(), p.ssap(), p.control()), (0x42, 0x42, 0x03));
        assert!(p.is_unnumbered() && p.is_stp());
        assert_eq!(p.header_len(), 3);
        assert_eq!(p.payload(), &[0, 0, 0, 0x80]);
        assert_eq!(Repr::parse(&p).unwrap(), Repr::STP);
    }

    #[test]
    fn construct() {
        let mut buf = [0u8; 7];
        let mut p = Pdu::new_unchecked(&mut buf[..]);
        Repr::STP.emit(&mut p).unwrap();
        p.payload_mut().copy_from_slice(&[0, 0, 0, 0x80]);
        assert_eq!(buf, FRAME[14..21]);
        assert_eq!(STP_HEADER, FRAME[14..17]);
        // An I-format header takes four bytes.
        let i = Repr {
            dsap: 0xaa,
            ssap: 0xaa,
            control: 0x0302,
        };
        let mut buf = [0u8; 5];
        i.emit(&mut Pdu::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, [0xaa, 0xaa, 0x02, 0x03, 0x00]);
        let p = Pdu::new_checked(&buf[..]).unwrap();
        assert_eq!((p.header_len(), p.control()), (4, 0x0302));
        assert_eq!(Repr::parse(&p).unwrap(), i);
        let bad = Repr {
            control: 0x1203,
            ..i
        };
        assert!(bad.emit(&mut Pdu::new_unchecked(&mut buf[..])).is_err());
    }

    #[test]
    fn bad_frames() {
        let mut long = FRAME;
        long[13] = 13; // 14 + 13 = 27 > 26
        assert!(matches!(from_frame(&long), Err(Error::Malformed { .. })));
        let mut ipv4 = FRAME;
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(matches!(from_frame(&ipv4), Err(Error::Malformed { .. })));
        let mut two = FRAME;
        two[13] = 2;
        assert!(matches!(from_frame(&two), Err(Error::Malformed { .. })));
        assert!(matches!(
            from_frame(&FRAME[..13]),
            Err(Error::Truncated { .. })
        ));
        // I-format control needs a fourth byte.
        assert!(Pdu::new_checked(&[0xaa, 0xaa, 0x00][..]).is_err());
    }
}
