//! IEEE 802.1D / 802.1w Bridge PDUs: bridge and port identifiers, flags, the BPDU view,
//! the parsed Config / TCN / RST BPDUs, and whole BPDU frames (802.3 + LLC 42 42 03).
//!
//! Layout after the LLC header: protocol id (2, always 0), version (1: 0 STP, 2 RSTP,
//! 3 MSTP), type (1), then for Config and RST: flags (1), root id (8), root path cost
//! (4), bridge id (8), port id (2), message age, max age, hello time, forward delay
//! (2 each, in 1/256 s), and for RST the version 1 length (1, always 0).
//!
//! The identifier and flag types live in `bpdu/ids.rs` and are re-exported here.

mod ids;

pub use ids::{BridgeId, Flags, PortId, PortRole, millis_to_ticks, ticks_to_millis};

use crate::ethernet::{self, EtherType, MacAddr};
use crate::llc;
use crate::{Error, Result, be16, be32, check_len, check_room};

/// The BPDU type field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BpduType {
    /// 0x00.
    Config,
    /// 0x80.
    Tcn,
    /// 0x02, RST and MST BPDUs.
    Rst,
    Unknown(u8),
}

impl From<u8> for BpduType {
    fn from(v: u8) -> BpduType {
        match v {
            0x00 => BpduType::Config,
            0x80 => BpduType::Tcn,
            0x02 => BpduType::Rst,
            v => BpduType::Unknown(v),
        }
    }
}

impl From<BpduType> for u8 {
    fn from(t: BpduType) -> u8 {
        match t {
            BpduType::Config => 0x00,
            BpduType::Tcn => 0x80,
            BpduType::Rst => 0x02,
            BpduType::Unknown(v) => v,
        }
    }
}

mod field {
    use core::ops::Range;
    pub(super) const PROTOCOL: usize = 0;
    pub(super) const VERSION: usize = 2;
    pub(super) const TYPE: usize = 3;
    pub(super) const FLAGS: usize = 4;
    pub(super) const ROOT: Range<usize> = 5..13;
    pub(super) const COST: usize = 13;
    pub(super) const BRIDGE: Range<usize> = 17..25;
    pub(super) const PORT: usize = 25;
    pub(super) const MESSAGE_AGE: usize = 27;
    pub(super) const MAX_AGE: usize = 29;
    pub(super) const HELLO: usize = 31;
    pub(super) const FORWARD_DELAY: usize = 33;
    pub(super) const V1_LEN: usize = 35;
}

/// Length of a TCN BPDU (and of the part every BPDU has).
pub const TCN_LEN: usize = 4;
/// Length of a Config BPDU.
pub const CONFIG_LEN: usize = 35;
/// Length of an RST BPDU.
pub const RST_LEN: usize = 36;
/// A BPDU frame is padded to this length.
pub const FRAME_MIN_LEN: usize = 60;

/// A view of a BPDU (the LLC payload) in a buffer.
///
/// Fields a BPDU of its type does not have (root id of a TCN) read as zero when they are
/// beyond the buffer.
#[derive(Debug, Clone)]
pub struct Bpdu<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Bpdu<T> {
    /// Wraps `buffer` without checking its length; getters may panic if it is short.
    pub const fn new_unchecked(buffer: T) -> Bpdu<T> {
        Bpdu { buffer }
    }

    /// Wraps `buffer` after checking it holds what its type needs: 4 bytes, 35 for
    /// Config, 36 for RST.
    pub fn new_checked(buffer: T) -> Result<Bpdu<T>> {
        let b = Bpdu { buffer };
        b.check_len()?;
        Ok(b)
    }

    /// Checks the buffer holds what the BPDU type needs.
    pub fn check_len(&self) -> Result<()> {
        let buf = self.buffer.as_ref();
        check_len("BPDU header", buf, TCN_LEN)?;
        match self.bpdu_type() {
            BpduType::Config => check_len("config BPDU", buf, CONFIG_LEN),
            BpduType::Rst => check_len("RST BPDU", buf, RST_LEN),
            BpduType::Tcn | BpduType::Unknown(_) => Ok(()),
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn read<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        if let Some(src) = self.buffer.as_ref().get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }

    fn read16(&self, at: usize) -> u16 {
        be16(&self.read::<2>(at), 0)
    }

    /// Protocol identifier (0).
    pub fn protocol_id(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Protocol version: 0 STP, 2 RSTP, 3 MSTP.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// BPDU type.
    pub fn bpdu_type(&self) -> BpduType {
        BpduType::from(self.buffer.as_ref()[field::TYPE])
    }

    /// Flags.
    pub fn flags(&self) -> Flags {
        Flags(self.read::<1>(field::FLAGS)[0])
    }

    /// Root bridge id.
    pub fn root_id(&self) -> BridgeId {
        BridgeId::from_bytes(self.read(field::ROOT.start))
    }

    /// Root path cost.
    pub fn root_path_cost(&self) -> u32 {
        be32(&self.read::<4>(field::COST), 0)
    }

    /// Sending bridge id.
    pub fn bridge_id(&self) -> BridgeId {
        BridgeId::from_bytes(self.read(field::BRIDGE.start))
    }

    /// Sending port id.
    pub fn port_id(&self) -> PortId {
        PortId(self.read16(field::PORT))
    }

    /// Message age in 1/256 s.
    pub fn message_age_ticks(&self) -> u16 {
        self.read16(field::MESSAGE_AGE)
    }

    /// Max age in 1/256 s.
    pub fn max_age_ticks(&self) -> u16 {
        self.read16(field::MAX_AGE)
    }

    /// Hello time in 1/256 s.
    pub fn hello_time_ticks(&self) -> u16 {
        self.read16(field::HELLO)
    }

    /// Forward delay in 1/256 s.
    pub fn forward_delay_ticks(&self) -> u16 {
        self.read16(field::FORWARD_DELAY)
    }

    /// Version 1 length (RST BPDUs; 0).
    pub fn version1_length(&self) -> u8 {
        self.read::<1>(field::V1_LEN)[0]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Bpdu<T> {
    fn write(&mut self, at: usize, bytes: &[u8]) {
        self.buffer.as_mut()[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Sets the protocol identifier.
    pub fn set_protocol_id(&mut self, v: u16) {
        self.write(field::PROTOCOL, &v.to_be_bytes());
    }

    /// Sets the version.
    pub fn set_version(&mut self, v: u8) {
        self.write(field::VERSION, &[v]);
    }

    /// Sets the type.
    pub fn set_bpdu_type(&mut self, t: BpduType) {
        self.write(field::TYPE, &[t.into()]);
    }

    /// Sets the flags.
    pub fn set_flags(&mut self, f: Flags) {
        self.write(field::FLAGS, &[f.0]);
    }

    /// Sets the root id.
    pub fn set_root_id(&mut self, id: BridgeId) {
        self.write(field::ROOT.start, &id.to_bytes());
    }

    /// Sets the root path cost.
    pub fn set_root_path_cost(&mut self, v: u32) {
        self.write(field::COST, &v.to_be_bytes());
    }

    /// Sets the bridge id.
    pub fn set_bridge_id(&mut self, id: BridgeId) {
        self.write(field::BRIDGE.start, &id.to_bytes());
    }

    /// Sets the port id.
    pub fn set_port_id(&mut self, id: PortId) {
        self.write(field::PORT, &id.0.to_be_bytes());
    }

    /// Sets the message age (1/256 s).
    pub fn set_message_age_ticks(&mut self, v: u16) {
        self.write(field::MESSAGE_AGE, &v.to_be_bytes());
    }

    /// Sets the max age (1/256 s).
    pub fn set_max_age_ticks(&mut self, v: u16) {
        self.write(field::MAX_AGE, &v.to_be_bytes());
    }

    /// Sets the hello time (1/256 s).
    pub fn set_hello_time_ticks(&mut self, v: u16) {
        self.write(field::HELLO, &v.to_be_bytes());
    }

    /// Sets the forward delay (1/256 s).
    pub fn set_forward_delay_ticks(&mut self, v: u16) {
        self.write(field::FORWARD_DELAY, &v.to_be_bytes());
    }

    /// Sets the version 1 length.
    pub fn set_version1_length(&mut self, v: u8) {
        self.write(field::V1_LEN, &[v]);
    }
}

/// The body of a Config or RST BPDU. Timers are in 1/256 s ([`millis_to_ticks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigBpdu {
    pub flags: Flags,
    pub root_id: BridgeId,
    pub root_path_cost: u32,
    pub bridge_id: BridgeId,
    pub port_id: PortId,
    pub message_age_ticks: u16,
    pub max_age_ticks: u16,
    pub hello_time_ticks: u16,
    pub forward_delay_ticks: u16,
}

impl ConfigBpdu {
    fn read<T: AsRef<[u8]>>(b: &Bpdu<T>) -> ConfigBpdu {
        ConfigBpdu {
            flags: b.flags(),
            root_id: b.root_id(),
            root_path_cost: b.root_path_cost(),
            bridge_id: b.bridge_id(),
            port_id: b.port_id(),
            message_age_ticks: b.message_age_ticks(),
            max_age_ticks: b.max_age_ticks(),
            hello_time_ticks: b.hello_time_ticks(),
            forward_delay_ticks: b.forward_delay_ticks(),
        }
    }

    fn write<T: AsRef<[u8]> + AsMut<[u8]>>(&self, b: &mut Bpdu<T>) {
        b.set_flags(self.flags);
        b.set_root_id(self.root_id);
        b.set_root_path_cost(self.root_path_cost);
        b.set_bridge_id(self.bridge_id);
        b.set_port_id(self.port_id);
        b.set_message_age_ticks(self.message_age_ticks);
        b.set_max_age_ticks(self.max_age_ticks);
        b.set_hello_time_ticks(self.hello_time_ticks);
        b.set_forward_delay_ticks(self.forward_delay_ticks);
    }
}

/// The parsed form of a BPDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// 802.1D configuration BPDU (version 0).
    Config(ConfigBpdu),
    /// Topology change notification.
    Tcn,
    /// 802.1w rapid spanning tree BPDU (emitted as version 2; MSTP's version 3 parses
    /// here too, its CIST part).
    Rst(ConfigBpdu),
}

impl Repr {
    /// Reads a BPDU: [`Error::Malformed`] for a protocol id other than 0, an unknown
    /// type, or an RST BPDU of version below 2.
    pub fn parse<T: AsRef<[u8]>>(bpdu: &Bpdu<T>) -> Result<Repr> {
        bpdu.check_len()?;
        let malformed = |why| Err(Error::Malformed { what: "BPDU", why });
        if bpdu.protocol_id() != 0 {
            return malformed("protocol identifier is not 0");
        }
        match bpdu.bpdu_type() {
            BpduType::Config => Ok(Repr::Config(ConfigBpdu::read(bpdu))),
            BpduType::Tcn => Ok(Repr::Tcn),
            BpduType::Rst if bpdu.version() >= 2 => Ok(Repr::Rst(ConfigBpdu::read(bpdu))),
            BpduType::Rst => malformed("RST BPDU with a version below 2"),
            BpduType::Unknown(_) => malformed("unknown BPDU type"),
        }
    }

    /// Bytes the BPDU takes: 35, 4 or 36.
    pub const fn buffer_len(&self) -> usize {
        match self {
            Repr::Config(_) => CONFIG_LEN,
            Repr::Tcn => TCN_LEN,
            Repr::Rst(_) => RST_LEN,
        }
    }

    /// Writes the BPDU to the start of `bpdu`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, bpdu: &mut Bpdu<T>) -> Result<()> {
        check_room("BPDU buffer", bpdu.buffer.as_ref(), self.buffer_len())?;
        bpdu.set_protocol_id(0);
        match self {
            Repr::Config(c) => {
                bpdu.set_version(0);
                bpdu.set_bpdu_type(BpduType::Config);
                c.write(bpdu);
            }
            Repr::Tcn => {
                bpdu.set_version(0);
                bpdu.set_bpdu_type(BpduType::Tcn);
            }
            Repr::Rst(c) => {
                bpdu.set_version(2);
                bpdu.set_bpdu_type(BpduType::Rst);
                c.write(bpdu);
                bpdu.set_version1_length(0);
            }
        }
        Ok(())
    }
}

/// Writes a whole BPDU frame to `out`: to 01:80:c2:00:00:00 from `src`, 802.3 length,
/// LLC 42 42 03, the BPDU, zero padding to 60 bytes. Returns the frame length.
pub fn emit_frame(repr: &Repr, src: MacAddr, out: &mut [u8]) -> Result<usize> {
    let llc_len = llc::HEADER_LEN + repr.buffer_len();
    let len = (ethernet::HEADER_LEN + llc_len).max(FRAME_MIN_LEN);
    check_room("BPDU frame buffer", out, len)?;
    let out = &mut out[..len];
    out.fill(0);
    ethernet::Repr {
        dst: MacAddr::STP_GROUP,
        src,
        ethertype: EtherType::Length(llc_len as u16),
    }
    .emit(&mut ethernet::Frame::new_unchecked(&mut *out))?;
    let mut pdu = llc::Pdu::new_unchecked(&mut out[ethernet::HEADER_LEN..]);
    llc::Repr::STP.emit(&mut pdu)?;
    repr.emit(&mut Bpdu::new_unchecked(pdu.payload_mut()))?;
    Ok(len)
}

/// Reads a whole BPDU frame: destination 01:80:c2:00:00:00, an 802.3 length inside the
/// frame and long enough for the BPDU type, LLC 42 42 03 ([`Error::Malformed`]
/// otherwise), and a BPDU [`Repr::parse`] accepts. A frame under 14 bytes is
/// [`Error::Truncated`].
pub fn parse_frame(frame: &[u8]) -> Result<Repr> {
    let eth = ethernet::Frame::new_checked(frame)?;
    if eth.dst_addr() != MacAddr::STP_GROUP {
        return Err(Error::Malformed {
            what: "BPDU frame",
            why: "not sent to 01:80:c2:00:00:00",
        });
    }
    let pdu = llc::from_frame(frame)?;
    if !pdu.is_stp() {
        return Err(Error::Malformed {
            what: "BPDU frame",
            why: "LLC header is not 42 42 03",
        });
    }
    // The frame holds what its length says, so a BPDU cut short contradicts its type.
    let bpdu = Bpdu::new_checked(pdu.payload()).map_err(|_| Error::Malformed {
        what: "BPDU frame",
        why: "802.3 length too short for the BPDU type",
    })?;
    Repr::parse(&bpdu)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: BridgeId = BridgeId::new(0x8000, MacAddr([2, 0, 0, 0, 0, 1]));

    // A Linux kernel bridge config BPDU, laid out from 802.1D 9.3.1: root and bridge
    // 8000.020000000001, cost 0, port 8001, message age 0, max age 20 s, hello 2 s,
    // forward delay 15 s, TC set; in its 60-byte frame.
    static CONFIG_FRAME: [u8; 60] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // addresses
        0x00, 0x26, // 802.3 length 38
        0x42, 0x42, 0x03, // LLC
        0x00, 0x00, 0x00, 0x00, // protocol 0, version 0, type Config
        0x01, // flags: TC
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // root id
        0x00, 0x00, 0x00, 0x00, // root path cost
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // bridge id
        0x80, 0x01, // port id
        0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00, // timers
        0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];

    // An RST BPDU from 8001.000c2927d53b (system id extension 1) port 8002, root
    // 7000.020000000001 at cost 20000, role Designated, proposal and learning.
    static RST: [u8; 36] = [
        0x00, 0x00, 0x02, 0x02, // protocol 0, version 2, type RST
        0x1e, // flags
        0x70, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // root id
        0x00, 0x00, 0x4e, 0x20, // root path cost 20000
        0x80, 0x01, 0x00, 0x0c, 0x29, 0x27, 0xd5, 0x3b, // bridge id
        0x80, 0x02, // port id
        0x01, 0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00, // timers, message age 1 s
        0x00, // version 1 length
    ];

    fn config() -> ConfigBpdu {
        ConfigBpdu {
            flags: Flags::TC,
            root_id: ROOT,
            root_path_cost: 0,
            bridge_id: ROOT,
            port_id: PortId(0x8001),
            message_age_ticks: 0,
            max_age_ticks: millis_to_ticks(20_000),
            hello_time_ticks: millis_to_ticks(2_000),
            forward_delay_ticks: millis_to_ticks(15_000),
        }
    }

    fn rst() -> ConfigBpdu {
        ConfigBpdu {
            flags: (Flags::PROPOSAL | Flags::LEARNING).with_port_role(PortRole::Designated),
            root_id: BridgeId::new(0x7000, MacAddr([2, 0, 0, 0, 0, 1])),
            root_path_cost: 20_000,
            bridge_id: BridgeId::new(0x8001, MacAddr([0, 0x0c, 0x29, 0x27, 0xd5, 0x3b])),
            port_id: PortId(0x8002),
            message_age_ticks: 0x0100,
            ..config()
        }
    }

    #[test]
    fn deconstruct() {
        let b = Bpdu::new_checked(&CONFIG_FRAME[17..52]).unwrap();
        assert_eq!((b.protocol_id(), b.version()), (0, 0));
        assert_eq!(b.bpdu_type(), BpduType::Config);
        assert_eq!(b.flags(), Flags::TC);
        assert_eq!(b.root_id().to_string(), "8000.020000000001");
        assert_eq!((b.root_path_cost(), b.bridge_id()), (0, ROOT));
        assert_eq!(b.port_id().to_string(), "8001");
        assert_eq!(b.message_age_ticks(), 0);
        assert_eq!(ticks_to_millis(b.max_age_ticks()), 20_000);
        assert_eq!(ticks_to_millis(b.hello_time_ticks()), 2_000);
        assert_eq!(ticks_to_millis(b.forward_delay_ticks()), 15_000);
        assert_eq!(b.version1_length(), 0, "absent, reads as zero");
        assert_eq!(Repr::parse(&b).unwrap(), Repr::Config(config()));
        assert_eq!(parse_frame(&CONFIG_FRAME).unwrap(), Repr::Config(config()));

        let r = Bpdu::new_checked(&RST[..]).unwrap();
        assert_eq!((r.version(), r.bpdu_type()), (2, BpduType::Rst));
        assert_eq!(r.flags().port_role(), PortRole::Designated);
        assert_eq!(r.bridge_id().to_string(), "8001.000c2927d53b");
        assert_eq!(Repr::parse(&r).unwrap(), Repr::Rst(rst()));
    }

    #[test]
    fn construct() {
        let mut frame = [0xffu8; 64];
        let n = emit_frame(&Repr::Config(config()), ROOT.addr, &mut frame).unwrap();
        assert_eq!(n, 60);
        assert_eq!(frame[..60], CONFIG_FRAME);
        let mut buf = [0xffu8; 36];
        Repr::Rst(rst())
            .emit(&mut Bpdu::new_unchecked(&mut buf[..]))
            .unwrap();
        assert_eq!(buf, RST);
        let n = emit_frame(&Repr::Rst(rst()), ROOT.addr, &mut frame).unwrap();
        assert_eq!((n, &frame[12..14]), (60, &[0x00, 0x27][..]));
        assert_eq!(parse_frame(&frame[..n]).unwrap(), Repr::Rst(rst()));
        assert!(emit_frame(&Repr::Tcn, ROOT.addr, &mut [0u8; 59]).is_err());
    }

    #[test]
    fn tcn() {
        let mut frame = [0u8; 60];
        let n = emit_frame(&Repr::Tcn, ROOT.addr, &mut frame).unwrap();
        assert_eq!(n, 60);
        assert_eq!(frame[12..21], [0x00, 0x07, 0x42, 0x42, 0x03, 0, 0, 0, 0x80]);
        assert_eq!(parse_frame(&frame).unwrap(), Repr::Tcn);
        let b = Bpdu::new_checked(&frame[17..21]).unwrap();
        assert_eq!(b.bpdu_type(), BpduType::Tcn);
        assert_eq!((b.root_id().to_u64(), b.max_age_ticks()), (0, 0));
        assert_eq!(Repr::Tcn.buffer_len(), 4);
    }

    #[test]
    fn truncated_and_malformed() {
        let config = &CONFIG_FRAME[17..52];
        assert!(matches!(
            Bpdu::new_checked(&config[..34]),
            Err(Error::Truncated { need: 35, .. })
        ));
        assert!(matches!(
            Bpdu::new_checked(&RST[..35]),
            Err(Error::Truncated { need: 36, .. })
        ));
        assert!(matches!(
            Bpdu::new_checked(&RST[..3]),
            Err(Error::Truncated { need: 4, .. })
        ));
        let mut proto = RST;
        proto[1] = 1;
        let b = Bpdu::new_checked(&proto[..]).unwrap();
        assert!(matches!(Repr::parse(&b), Err(Error::Malformed { .. })));
        let mut v0 = RST;
        v0[2] = 0;
        let b = Bpdu::new_checked(&v0[..]).unwrap();
        assert!(matches!(Repr::parse(&b), Err(Error::Malformed { .. })));
        let unknown = [0, 0, 0, 0x42];
        let b = Bpdu::new_checked(&unknown[..]).unwrap();
        assert_eq!(b.bpdu_type(), BpduType::Unknown(0x42));
        assert_eq!(b.bridge_id().to_u64(), 0);
        assert!(matches!(Repr::parse(&b), Err(Error::Malformed { .. })));

        let mut to_other = CONFIG_FRAME;
        to_other[5] = 1;
        assert!(matches!(
            parse_frame(&to_other),
            Err(Error::Malformed { .. })
        ));
        let mut snap = CONFIG_FRAME;
        snap[14..17].copy_from_slice(&[0xaa, 0xaa, 0x03]);
        assert!(matches!(parse_frame(&snap), Err(Error::Malformed { .. })));
        let mut short_len = CONFIG_FRAME;
        short_len[13] = 37;
        assert!(matches!(
            parse_frame(&short_len),
            Err(Error::Malformed { .. })
        ));
        let mut long_len = CONFIG_FRAME;
        long_len[13] = 47;
        assert!(matches!(
            parse_frame(&long_len),
            Err(Error::Malformed { .. })
        ));
        assert!(parse_frame(&CONFIG_FRAME[..13]).is_err());
    }
}
