//! ICMPv4 (RFC 792): message types, the packet view, and the parsed echo messages.
//!
//! Every ICMPv4 message starts with type, code, checksum and four type-specific bytes
//! (identifier and sequence number for echo); the checksum covers the whole message,
//! so a view should span exactly the IPv4 payload.

use crate::ipv4::checksum;
use crate::{Result, be16, check_len, check_room};

/// The type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// 0.
    EchoReply,
    /// 3.
    DstUnreachable,
    /// 8.
    EchoRequest,
    /// 11.
    TimeExceeded,
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(v: u8) -> Message {
        match v {
            0 => Message::EchoReply,
            3 => Message::DstUnreachable,
            8 => Message::EchoRequest,
            11 => Message::TimeExceeded,
            v => Message::Unknown(v),
        }
    }
}

impl From<Message> for u8 {
    fn from(m: Message) -> u8 {
        match m {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::EchoRequest => 8,
            Message::TimeExceeded => 11,
            Message::Unknown(v) => v,
        }
    }
}

mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const ECHO_IDENT: usize = 4;
    pub(super) const ECHO_SEQNO: usize = 6;
    pub(super) const DATA: usize = 8;
}

/// Length of the header every message has.
pub const HEADER_LEN: usize = field::DATA;

/// A view of an ICMPv4 message in a buffer.
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
        check_len("ICMP header", buffer.as_ref(), HEADER_LEN)?;
        Ok(Packet { buffer })
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum as carried.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Echo identifier (bytes 4..6, meaningful for echo messages).
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6..8, meaningful for echo messages).
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }

    /// Everything after the 8-byte header.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// Whether the checksum over the whole buffer is right.
    pub fn verify_checksum(&self) -> bool {
        checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_be16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, m: Message) {
        self.buffer.as_mut()[field::TYPE] = m.into();
    }

    /// Sets the message code.
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    /// Sets the checksum field as is.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_be16(field::CHECKSUM, v);
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, v: u16) {
        self.set_be16(field::ECHO_IDENT, v);
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, v: u16) {
        self.set_be16(field::ECHO_SEQNO, v);
    }

    /// Everything after the header, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Computes and writes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

/// The parsed form of an ICMPv4 message.
///
/// `parse` does not verify the checksum: call [`Packet::verify_checksum`] for that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data_len: usize,
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data_len: usize,
    },
    /// Any other message; emitted with four zero bytes after the checksum.
    Other { msg_type: Message, code: u8 },
}

impl Repr {
    /// Reads a message; the data length is the rest of the buffer.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        check_len("ICMP header", packet.buffer.as_ref(), HEADER_LEN)?;
        let (ident, seq_no, data_len) = (
            packet.echo_ident(),
            packet.echo_seq_no(),
            packet.data().len(),
        );
        Ok(match (packet.msg_type(), packet.msg_code()) {
            (Message::EchoRequest, 0) => Repr::EchoRequest {
                ident,
                seq_no,
                data_len,
            },
            (Message::EchoReply, 0) => Repr::EchoReply {
                ident,
                seq_no,
                data_len,
            },
            (msg_type, code) => Repr::Other { msg_type, code },
        })
    }

    /// Bytes the message takes: header and echo data.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Repr::EchoRequest { data_len, .. } | Repr::EchoReply { data_len, .. } => {
                HEADER_LEN + *data_len
            }
            Repr::Other { .. } => HEADER_LEN,
        }
    }

    /// Writes the header, then fills the checksum over the whole buffer: write the data
    /// first (or call [`Packet::fill_checksum`] after writing it), and size the view to
    /// the message.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        check_room("ICMP buffer", packet.buffer.as_ref(), self.buffer_len())?;
        let (msg_type, code, ident, seq_no) = match *self {
            Repr::EchoRequest { ident, seq_no, .. } => (Message::EchoRequest, 0, ident, seq_no),
            Repr::EchoReply { ident, seq_no, .. } => (Message::EchoReply, 0, ident, seq_no),
            Repr::Other { msg_type, code } => (msg_type, code, 0, 0),
        };
        packet.set_msg_type(msg_type);
        packet.set_msg_code(code);
        packet.set_echo_ident(ident);
        packet.set_echo_seq_no(seq_no);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    // Echo request id 1 seq 1, four data bytes; checksum computed by hand:
    // 0800 + 0001 + 0001 + 0102 + 0304 = 0c08 -> f3f7.
    static ECHO: [u8; 12] = [
        0x08, 0x00, 0xf3, 0xf7, 0x00, 0x01, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!((p.msg_code(), p.checksum()), (0, 0xf3f7));
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (1, 1));
        assert_eq!(p.data(), &[1, 2, 3, 4]);
        assert!(p.verify_checksum());
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr::EchoRequest {
                ident: 1,
                seq_no: 1,
                data_len: 4
            }
        );
    }

    #[test]
    fn construct() {
        let mut buf = [0xffu8; 12];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.data_mut().copy_from_slice(&[1, 2, 3, 4]);
        let r = Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data_len: 4,
        };
        assert_eq!(r.buffer_len(), 12);
        r.emit(&mut p).unwrap();
        assert_eq!(buf, ECHO);
        assert!(
            r.emit(&mut Packet::new_unchecked(&mut [0u8; 11][..]))
                .is_err()
        );
    }

    #[test]
    fn reply_and_others() {
        let mut buf = ECHO;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_msg_type(Message::EchoReply);
        p.fill_checksum();
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(matches!(
            Repr::parse(&p).unwrap(),
            Repr::EchoReply { ident: 1, .. }
        ));
        let mut unreach = [0u8; 8];
        let r = Repr::Other {
            msg_type: Message::DstUnreachable,
            code: 3,
        };
        r.emit(&mut Packet::new_unchecked(&mut unreach[..]))
            .unwrap();
        let p = Packet::new_checked(&unreach[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap(), r);
        assert_eq!(Message::from(42), Message::Unknown(42));
        assert_eq!(u8::from(Message::TimeExceeded), 11);
    }

    #[test]
    fn truncated_and_bad_checksum() {
        assert!(matches!(
            Packet::new_checked(&ECHO[..7]),
            Err(Error::Truncated { need: 8, .. })
        ));
        let mut bad = ECHO;
        bad[11] ^= 1;
        assert!(!Packet::new_checked(&bad[..]).unwrap().verify_checksum());
    }
}
