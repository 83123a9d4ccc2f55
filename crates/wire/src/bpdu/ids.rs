//! The identifiers and flags inside BPDUs: bridge ids, port ids, the flags octet with
//! its port role, and the 1/256 s timer unit.

use core::fmt;

use crate::ethernet::MacAddr;
use crate::{Error, Result};

/// A bridge identifier: priority (with the 12-bit system id extension in its low bits)
/// and MAC address. Ordering is the numeric order of the 8 bytes: lower is better.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BridgeId {
    // Field order matters: the derived ordering compares priority, then address.
    pub priority: u16,
    pub addr: MacAddr,
}

impl BridgeId {
    /// A bridge id.
    pub const fn new(priority: u16, addr: MacAddr) -> BridgeId {
        BridgeId { priority, addr }
    }

    /// Reads the 8 wire bytes.
    pub const fn from_bytes(b: [u8; 8]) -> BridgeId {
        BridgeId {
            priority: u16::from_be_bytes([b[0], b[1]]),
            addr: MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]]),
        }
    }

    /// The 8 wire bytes.
    pub const fn to_bytes(&self) -> [u8; 8] {
        let p = self.priority.to_be_bytes();
        let a = self.addr.0;
        [p[0], p[1], a[0], a[1], a[2], a[3], a[4], a[5]]
    }

    /// The 8 bytes as a number.
    pub const fn to_u64(&self) -> u64 {
        u64::from_be_bytes(self.to_bytes())
    }

    /// The system id extension (the low 12 bits of the priority, a VLAN or MSTI id).
    pub const fn system_id_ext(&self) -> u16 {
        self.priority & 0x0fff
    }
}

/// `8000.000c2927d53b`, as the Linux bridge prints it.
impl fmt::Display for BridgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}.", self.priority)?;
        self.addr.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for BridgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BridgeId({self})")
    }
}

/// A port identifier: priority in the top 4 bits, port number in the low 12
/// (802.1D-2004). Lower is better.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PortId(pub u16);

impl PortId {
    /// `priority` is 0..=240 in steps of 16 (default 128), `number` 0..=4095.
    pub const fn new(priority: u8, number: u16) -> Result<PortId> {
        if priority & 0x0f != 0 {
            return Err(Error::Invalid {
                what: "port priority",
                why: "must be a multiple of 16",
            });
        }
        if number > 0x0fff {
            return Err(Error::Invalid {
                what: "port number",
                why: "must be 0..=4095",
            });
        }
        Ok(PortId(((priority as u16) << 8) | number))
    }

    /// The priority, 0..=240.
    pub const fn priority(self) -> u8 {
        (self.0 >> 8) as u8 & 0xf0
    }

    /// The port number.
    pub const fn number(self) -> u16 {
        self.0 & 0x0fff
    }
}

/// `8001`.
impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.0)
    }
}

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortId({self})")
    }
}

/// The port role carried in bits 2-3 of RST BPDU flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortRole {
    /// 0: Unknown in RST BPDUs, Master in MST BPDUs.
    MasterOrUnknown,
    AlternateOrBackup,
    Root,
    Designated,
}

/// `Master/Unknown`, `Alternate/Backup`, `Root`, `Designated`.
impl fmt::Display for PortRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRole::MasterOrUnknown => "Master/Unknown",
            PortRole::AlternateOrBackup => "Alternate/Backup",
            PortRole::Root => "Root",
            PortRole::Designated => "Designated",
        })
    }
}

/// The flags octet. Config BPDUs use only TC and TC-ack; RST BPDUs use all of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const TC: Flags = Flags(0x01);
    pub const PROPOSAL: Flags = Flags(0x02);
    /// The two port role bits.
    pub const ROLE_MASK: Flags = Flags(0x0c);
    pub const LEARNING: Flags = Flags(0x10);
    pub const FORWARDING: Flags = Flags(0x20);
    pub const AGREEMENT: Flags = Flags(0x40);
    pub const TC_ACK: Flags = Flags(0x80);

    const NAMES: [(Flags, &'static str); 6] = [
        (Flags::TC, "TC"),
        (Flags::PROPOSAL, "proposal"),
        (Flags::LEARNING, "learning"),
        (Flags::FORWARDING, "forwarding"),
        (Flags::AGREEMENT, "agreement"),
        (Flags::TC_ACK, "TC-ack"),
    ];

    /// The raw octet.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }

    /// The port role bits.
    pub const fn port_role(self) -> PortRole {
        match (self.0 >> 2) & 0x03 {
            0 => PortRole::MasterOrUnknown,
            1 => PortRole::AlternateOrBackup,
            2 => PortRole::Root,
            _ => PortRole::Designated,
        }
    }

    /// These flags with the port role bits replaced.
    pub const fn with_port_role(self, role: PortRole) -> Flags {
        Flags((self.0 & !0x0c) | ((role as u8) << 2))
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The names of the set flags other than the role, `TC, proposal`, or `none`.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = ", ";
            }
        }
        if sep.is_empty() {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flags([{self}], role {:?})", self.port_role())
    }
}

/// Milliseconds in a BPDU timer value (units of 1/256 s), rounded down.
pub const fn ticks_to_millis(ticks: u16) -> u32 {
    (ticks as u32 * 1000) / 256
}

/// The BPDU timer value (units of 1/256 s) nearest to `ms`, saturating at `u16::MAX`.
pub const fn millis_to_ticks(ms: u32) -> u16 {
    let t = (ms as u64 * 256 + 500) / 1000;
    if t > u16::MAX as u64 {
        u16::MAX
    } else {
        t as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_id_display_bytes_and_order() {
        let a = BridgeId::new(0x8000, "00:0c:29:27:d5:3b".parse().unwrap());
        assert_eq!(a.to_string(), "8000.000c2927d53b");
        assert_eq!(format!("{a:?}"), "BridgeId(8000.000c2927d53b)");
        let bytes = [0x80, 0x01, 0x00, 0x0c, 0x29, 0x27, 0xd5, 0x3b];
        let b = BridgeId::from_bytes(bytes);
        assert_eq!((b.priority, b.system_id_ext()), (0x8001, 1));
        assert_eq!(b.to_bytes(), bytes);
        assert_eq!(b.to_u64(), 0x8001_000c_2927_d53b);
        // Priority decides first, then the address; both as the 8-byte number.
        let low_prio = BridgeId::new(0x1000, MacAddr::BROADCAST);
        let mut ids = [b, a, low_prio, BridgeId::new(0x8000, MacAddr::ZERO)];
        ids.sort();
        assert!(ids.windows(2).all(|w| w[0].to_u64() < w[1].to_u64()));
        assert_eq!(ids[0], low_prio);
    }

    #[test]
    fn port_id() {
        let p = PortId::new(128, 1).unwrap();
        assert_eq!(p, PortId(0x8001));
        assert_eq!(p.to_string(), "8001");
        assert_eq!((p.priority(), p.number()), (128, 1));
        assert_eq!(PortId(0xf123).priority(), 240);
        assert!(PortId::new(100, 1).is_err());
        assert!(PortId::new(16, 0x1000).is_err());
        assert!(PortId::new(16, 2).unwrap() < PortId::new(32, 1).unwrap());
    }

    #[test]
    fn flags_and_roles() {
        let mut f = Flags::PROPOSAL | Flags::LEARNING;
        f = f.with_port_role(PortRole::Designated);
        assert_eq!(f.bits(), 0x1e);
        assert_eq!(f.port_role(), PortRole::Designated);
        assert_eq!(f.to_string(), "proposal, learning");
        assert!(f.contains(Flags::PROPOSAL) && !f.contains(Flags::TC));
        f.insert(Flags::TC);
        f.remove(Flags::PROPOSAL);
        assert_eq!(f.to_string(), "TC, learning");
        assert_eq!(f.with_port_role(PortRole::Root).port_role(), PortRole::Root);
        assert_eq!(Flags(0x04).port_role(), PortRole::AlternateOrBackup);
        assert_eq!(Flags(0x0c).to_string(), "none");
        assert_eq!(Flags(0xff).to_string().matches(", ").count(), 5);
    }

    #[test]
    fn timers() {
        assert_eq!(ticks_to_millis(0x1400), 20_000);
        assert_eq!(ticks_to_millis(0x0200), 2_000);
        assert_eq!(millis_to_ticks(15_000), 0x0f00);
        assert_eq!(millis_to_ticks(4), 1);
        assert_eq!(millis_to_ticks(u32::MAX), u16::MAX);
        for t in [0u16, 1, 255, 256, 0x1400, u16::MAX] {
            assert_eq!(millis_to_ticks(ticks_to_millis(t)), t);
        }
    }
}
