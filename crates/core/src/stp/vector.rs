//! Spanning tree priority vectors (802.1D-2004 17.6), the timer parameter sets carried
//! with them (17.19.x `portTimes`, `designatedTimes`, ...), and the path cost table.

use core::cmp::Ordering;

use vbridge_wire::bpdu::{self, BridgeId, ConfigBpdu, Flags};

/// Highest port path cost (802.1D-2004 17.14).
pub(crate) const MAX_PATH_COST: u32 = 200_000_000;
/// Path cost while the link speed is unknown: 10 Gb/s.
pub(crate) const DEFAULT_PATH_COST: u32 = 2_000;

/// The recommended port path cost for a link of `mbps` megabits per second (802.1D-2004
/// Table 17-3: 20 000 000 000 000 / speed in kb/s), 1..=200 000 000.
pub fn path_cost_for_speed(mbps: u32) -> u32 {
    if mbps == 0 {
        return MAX_PATH_COST;
    }
    (20_000_000 / mbps).clamp(1, MAX_PATH_COST)
}

/// A priority vector: root bridge, root path cost, designated bridge, designated port.
/// Lower is better, component by component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Priority {
    pub(crate) root: BridgeId,
    pub(crate) cost: u32,
    pub(crate) bridge: BridgeId,
    pub(crate) port: bpdu::PortId,
}

impl Default for Priority {
    fn default() -> Self {
        Priority::of_bridge(BridgeId::new(0, vbridge_wire::MacAddr::ZERO))
    }
}

impl Priority {
    /// The bridge priority vector of `bridge`: itself as root at cost 0.
    pub(crate) fn of_bridge(bridge: BridgeId) -> Priority {
        Priority {
            root: bridge,
            cost: 0,
            bridge,
            port: bpdu::PortId(0),
        }
    }

    fn key(&self) -> (u64, u32, u64, u16) {
        (
            self.root.to_u64(),
            self.cost,
            self.bridge.to_u64(),
            self.port.0,
        )
    }

    /// Strictly better than `other`.
    pub(crate) fn better(&self, other: &Priority) -> bool {
        self.key() < other.key()
    }

    /// Better than or the same as `other`.
    pub(crate) fn better_or_same(&self, other: &Priority) -> bool {
        self.key() <= other.key()
    }

    /// Compares `(self, self_port)` with `(other, other_port)`, the receiving port id
    /// breaking ties (root path priority vectors, 17.6).
    pub(crate) fn cmp_with_port(
        &self,
        self_port: bpdu::PortId,
        other: &Priority,
        other_port: bpdu::PortId,
    ) -> Ordering {
        (self.key(), self_port.0).cmp(&(other.key(), other_port.0))
    }

    /// Sent by the same designated bridge (address) and port (number), whatever their
    /// priorities: the sender updating what it said (17.6's "superior" second clause).
    pub(crate) fn same_sender(&self, other: &Priority) -> bool {
        self.bridge.addr == other.bridge.addr && self.port.number() == other.port.number()
    }
}

/// Timer parameters, in whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Times {
    pub(crate) message_age: u16,
    pub(crate) max_age: u16,
    pub(crate) hello: u16,
    pub(crate) forward_delay: u16,
}

impl Times {
    /// From a received BPDU's 1/256 s fields, each rounded to the nearest second.
    pub(crate) fn from_bpdu(c: &ConfigBpdu) -> Times {
        let s = |t: u16| ((u32::from(t) + 128) >> 8) as u16;
        Times {
            message_age: s(c.message_age_ticks),
            max_age: s(c.max_age_ticks),
            hello: s(c.hello_time_ticks),
            forward_delay: s(c.forward_delay_ticks),
        }
    }
}

/// Builds the body of a Config or RST BPDU.
pub(crate) fn config_bpdu(flags: Flags, p: &Priority, t: &Times) -> ConfigBpdu {
    let ticks = |s: u16| s.saturating_mul(256);
    ConfigBpdu {
        flags,
        root_id: p.root,
        root_path_cost: p.cost,
        bridge_id: p.bridge,
        port_id: p.port,
        message_age_ticks: ticks(t.message_age),
        max_age_ticks: ticks(t.max_age),
        hello_time_ticks: ticks(t.hello),
        forward_delay_ticks: ticks(t.forward_delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vbridge_wire::MacAddr;

    fn id(prio: u16, last: u8) -> BridgeId {
        BridgeId::new(prio, MacAddr([2, 0, 0, 0, 0, last]))
    }

    #[test]
    fn costs_follow_table_17_3() {
        assert_eq!(path_cost_for_speed(10), 2_000_000);
        assert_eq!(path_cost_for_speed(100), 200_000);
        assert_eq!(path_cost_for_speed(1_000), 20_000);
        assert_eq!(path_cost_for_speed(10_000), 2_000);
        assert_eq!(path_cost_for_speed(100_000), 200);
        assert_eq!(path_cost_for_speed(u32::MAX), 1);
        assert_eq!(path_cost_for_speed(0), MAX_PATH_COST);
    }

    #[test]
    fn vector_order() {
        let a = Priority::of_bridge(id(0x1000, 9));
        let b = Priority::of_bridge(id(0x8000, 1));
        assert!(a.better(&b) && !b.better(&a) && a.better_or_same(&a));
        let mut c = b;
        c.cost = 10;
        assert!(b.better(&c));
        let mut d = c;
        d.port = bpdu::PortId(0x8002);
        assert!(c.better(&d));
        assert!(c.same_sender(&d) == (c.port.number() == d.port.number()));
        let p1 = bpdu::PortId(0x8001);
        let p2 = bpdu::PortId(0x8002);
        assert_eq!(c.cmp_with_port(p1, &c, p2), Ordering::Less);
    }

    #[test]
    fn times_round_to_seconds() {
        let c = config_bpdu(
            Flags::default(),
            &Priority::default(),
            &Times {
                message_age: 1,
                max_age: 20,
                hello: 2,
                forward_delay: 15,
            },
        );
        assert_eq!(c.max_age_ticks, 0x1400);
        let mut c2 = c;
        c2.message_age_ticks = 127;
        assert_eq!(Times::from_bpdu(&c2).message_age, 0);
        c2.message_age_ticks = 128;
        assert_eq!(Times::from_bpdu(&c2).message_age, 1);
        assert_eq!(Times::from_bpdu(&c).forward_delay, 15);
    }
}
