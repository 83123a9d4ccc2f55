//! ARP (RFC 826): the packet view for any hardware/protocol pair, and the parsed form of
//! the one pair a switch meets, Ethernet/IPv4.
//!
//! Layout: hardware type (2), protocol type (2), hardware length (1), protocol length (1),
//! operation (2), then sender hardware and protocol addresses, target hardware and
//! protocol addresses, of the announced lengths.

use core::ops::Range;
use std::net::Ipv4Addr;

use crate::ethernet::{EtherType, MacAddr};
use crate::{Error, Result, be16, check_len, check_room};

/// The hardware type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hardware {
    /// 1: Ethernet.
    Ethernet,
    Unknown(u16),
}

impl From<u16> for Hardware {
    fn from(v: u16) -> Hardware {
        match v {
            1 => Hardware::Ethernet,
            v => Hardware::Unknown(v),
        }
    }
}

impl From<Hardware> for u16 {
    fn from(h: Hardware) -> u16 {
        match h {
            Hardware::Ethernet => 1,
            Hardware::Unknown(v) => v,
        }
    }
}

/// The operation field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Operation {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            v => Operation::Unknown(v),
        }
    }
}

impl From<Operation> for u16 {
    fn from(o: Operation) -> u16 {
        match o {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(v) => v,
        }
    }
}

mod field {
    pub(super) const HTYPE: usize = 0;
    pub(super) const PTYPE: usize = 2;
    pub(super) const HLEN: usize = 4;
    pub(super) const PLEN: usize = 5;
    pub(super) const OPER: usize = 6;
    /// Start of the addresses (sender hardware address).
    pub(super) const SHA: usize = 8;
}

/// Length of the fixed part before the addresses.
pub const FIXED_LEN: usize = field::SHA;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// A view of an ARP packet in a buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length; getters may panic if it is short.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the fixed part and the four addresses of
    /// the lengths it announces.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed part and the addresses are inside the buffer.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        check_len("ARP header", buf, FIXED_LEN)?;
        check_len("ARP addresses", buf, self.packet_len())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Bytes the packet takes, from its address lengths (the buffer may be longer).
    pub fn packet_len(&self) -> usize {
        FIXED_LEN + 2 * (self.hardware_len() as usize + self.protocol_len() as usize)
    }

    /// Hardware type.
    pub fn hardware_type(&self) -> Hardware {
        Hardware::from(be16(self.buffer.as_ref(), field::HTYPE))
    }

    /// Protocol type (an EtherType).
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::PTYPE))
    }

    /// Length of a hardware address.
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Length of a protocol address.
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation.
    pub fn operation(&self) -> Operation {
        Operation::from(be16(self.buffer.as_ref(), field::OPER))
    }

    fn sha(&self) -> Range<usize> {
        field::SHA..field::SHA + self.hardware_len() as usize
    }

    fn spa(&self) -> Range<usize> {
        let at = self.sha().end;
        at..at + self.protocol_len() as usize
    }

    fn tha(&self) -> Range<usize> {
        let at = self.spa().end;
        at..at + self.hardware_len() as usize
    }

    fn tpa(&self) -> Range<usize> {
        let at = self.tha().end;
        at..at + self.protocol_len() as usize
    }

    /// Sender hardware address.
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.sha()]
    }

    /// Sender protocol address.
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.spa()]
    }

    /// Target hardware address.
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.tha()]
    }

    /// Target protocol address.
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[self.tpa()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_be16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, v: Hardware) {
        self.set_be16(field::HTYPE, v.into());
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, v: EtherType) {
        self.set_be16(field::PTYPE, v.into());
    }

    /// Sets the hardware address length (set it before the addresses).
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    /// Sets the protocol address length (set it before the addresses).
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, v: Operation) {
        self.set_be16(field::OPER, v.into());
    }

    /// Sets the sender hardware address; `addr` must have the announced length.
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let r = self.sha();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Sets the sender protocol address; `addr` must have the announced length.
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let r = self.spa();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Sets the target hardware address; `addr` must have the announced length.
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let r = self.tha();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }

    /// Sets the target protocol address; `addr` must have the announced length.
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let r = self.tpa();
        self.buffer.as_mut()[r].copy_from_slice(addr);
    }
}

/// The parsed form of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// Hardware type 1, protocol type 0x0800, lengths 6 and 4.
    EthernetIpv4 {
        operation: Operation,
        source_hardware_addr: MacAddr,
        source_protocol_addr: Ipv4Addr,
        target_hardware_addr: MacAddr,
        target_protocol_addr: Ipv4Addr,
    },
}

fn ipv4(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

fn mac(b: &[u8]) -> MacAddr {
    MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
}

impl Repr {
    /// Reads an Ethernet/IPv4 ARP packet; other address types give [`Error::Malformed`].
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.hardware_type() != Hardware::Ethernet
            || packet.protocol_type() != EtherType::Ipv4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Malformed {
                what: "ARP packet",
                why: "not Ethernet/IPv4",
            });
        }
        Ok(Repr::EthernetIpv4 {
            operation: packet.operation(),
            source_hardware_addr: mac(packet.source_hardware_addr()),
            source_protocol_addr: ipv4(packet.source_protocol_addr()),
            target_hardware_addr: mac(packet.target_hardware_addr()),
            target_protocol_addr: ipv4(packet.target_protocol_addr()),
        })
    }

    /// Bytes the packet takes (28).
    pub const fn buffer_len(&self) -> usize {
        match self {
            Repr::EthernetIpv4 { .. } => ETHERNET_IPV4_LEN,
        }
    }

    /// Writes the packet to the start of `packet`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        check_room("ARP buffer", packet.buffer.as_ref(), self.buffer_len())?;
        match *self {
            Repr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_hardware_addr,
                target_protocol_addr,
            } => {
                packet.set_hardware_type(Hardware::Ethernet);
                packet.set_protocol_type(EtherType::Ipv4);
                packet.set_hardware_len(6);
                packet.set_protocol_len(4);
                packet.set_operation(operation);
                packet.set_source_hardware_addr(&source_hardware_addr.0);
                packet.set_source_protocol_addr(&source_protocol_addr.octets());
                packet.set_target_hardware_addr(&target_hardware_addr.0);
                packet.set_target_protocol_addr(&target_protocol_addr.octets());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // who-has 10.0.0.2 tell 10.0.0.1, from 02:00:00:00:00:01.
    static PACKET: [u8; 28] = [
        0x00, 0x01, // Ethernet
        0x08, 0x00, // IPv4
        0x06, 0x04, // lengths
        0x00, 0x01, // request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sha
        0x0a, 0x00, 0x00, 0x01, // spa
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha
        0x0a, 0x00, 0x00, 0x02, // tpa
    ];

    fn repr() -> Repr {
        Repr::EthernetIpv4 {
            operation: Operation::Request,
            source_hardware_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.hardware_type(), Hardware::Ethernet);
        assert_eq!(p.protocol_type(), EtherType::Ipv4);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.source_hardware_addr(), &[2, 0, 0, 0, 0, 1]);
        assert_eq!(p.source_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(p.target_hardware_addr(), &[0; 6]);
        assert_eq!(p.target_protocol_addr(), &[10, 0, 0, 2]);
        assert_eq!(Repr::parse(&p).unwrap(), repr());
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 28];
        let r = repr();
        assert_eq!(r.buffer_len(), 28);
        r.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, PACKET);
        assert!(
            r.emit(&mut Packet::new_unchecked(&mut [0u8; 27][..]))
                .is_err()
        );
    }

    #[test]
    fn truncated() {
        assert!(matches!(
            Packet::new_checked(&PACKET[..7]),
            Err(Error::Truncated { need: 8, .. })
        ));
        assert!(matches!(
            Packet::new_checked(&PACKET[..27]),
            Err(Error::Truncated { need: 28, .. })
        ));
        // Larger announced lengths need more bytes than are there.
        let mut long = PACKET;
        long[4] = 0xff;
        assert!(Packet::new_checked(&long[..]).is_err());
    }

    #[test]
    fn other_types_are_read_but_not_parsed() {
        // Hardware type 6 (IEEE 802), protocol 0x86dd with 16-byte addresses.
        let mut buf = [0u8; 8 + 2 * (6 + 16)];
        buf[..8].copy_from_slice(&[0x00, 0x06, 0x86, 0xdd, 6, 16, 0x00, 0x02]);
        buf[14] = 0xfe;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.hardware_type(), Hardware::Unknown(6));
        assert_eq!(p.protocol_type(), EtherType::Ipv6);
        assert_eq!(p.operation(), Operation::Reply);
        assert_eq!(p.source_protocol_addr().len(), 16);
        assert_eq!(p.source_protocol_addr()[0], 0xfe);
        assert!(matches!(Repr::parse(&p), Err(Error::Malformed { .. })));
        assert_eq!(Operation::from(7), Operation::Unknown(7));
        assert_eq!(u16::from(Operation::Unknown(7)), 7);
    }
}
