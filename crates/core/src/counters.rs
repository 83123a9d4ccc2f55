//! Counters: per port traffic, and a reason for every frame the bridge does not forward.

/// Why a frame was not forwarded (or not to a given port). Each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or a VLAN tag cut off.
    Truncated,
    /// Longer than the bridge's maximum frame length.
    Oversized,
    /// The ingress port does not exist (anymore).
    UnknownPort,
    /// The ingress port is administratively down.
    PortDown,
    /// The ingress port is blocked by spanning tree (not learning or forwarding).
    PortBlocked,
    /// The source address is multicast or all zeros.
    InvalidSource,
    /// A tagged frame on an access port (no VLAN hopping, double tags included).
    TaggedOnAccess,
    /// An untagged or priority-tagged frame on a trunk without a native VLAN.
    UntaggedOnTrunk,
    /// A tagged frame whose VID is not allowed on the ingress trunk.
    VlanNotAllowed,
    /// A tag with VID 4095, or a tag the port does not accept (802.1ad S-tag, 0x9100).
    BadTag,
    /// A locked port received a source address with no static entry on that port.
    LockedSource,
    /// The destination was learned on the ingress port (and hairpin is off).
    SameSegment,
    /// Both ingress and egress ports are isolated.
    Isolated,
    /// The egress port is down, blocked, or not in the frame's VLAN.
    EgressUnavailable,
    /// A flood found no eligible port.
    NoFloodTarget,
    /// A reserved IEEE group address (`01:80:c2:00:00:0X`) that may not be forwarded and
    /// that no control protocol consumed.
    ReservedGroup,
    /// Addressed to the bridge itself but the bridge has no host port.
    NoHostPort,
    /// An STP/RSTP BPDU that could not be read, or was refused.
    BadBpdu,
    /// The datapath could not transmit (queue full, device gone).
    TxError,
    /// Longer than the egress port's MTU allows (and not a GSO super-frame), as the
    /// kernel bridge drops it.
    MtuExceeded,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 20] = [
        DropReason::Truncated,
        DropReason::Oversized,
        DropReason::UnknownPort,
        DropReason::PortDown,
        DropReason::PortBlocked,
        DropReason::InvalidSource,
        DropReason::TaggedOnAccess,
        DropReason::UntaggedOnTrunk,
        DropReason::VlanNotAllowed,
        DropReason::BadTag,
        DropReason::LockedSource,
        DropReason::SameSegment,
        DropReason::Isolated,
        DropReason::EgressUnavailable,
        DropReason::NoFloodTarget,
        DropReason::ReservedGroup,
        DropReason::NoHostPort,
        DropReason::BadBpdu,
        DropReason::TxError,
        DropReason::MtuExceeded,
    ];
    /// Number of reasons.
    pub const COUNT: usize = DropReason::ALL.len();

    /// A stable snake_case name, used in stats output and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::Oversized => "oversized",
            DropReason::UnknownPort => "unknown_port",
            DropReason::PortDown => "port_down",
            DropReason::PortBlocked => "port_blocked",
            DropReason::InvalidSource => "invalid_source",
            DropReason::TaggedOnAccess => "tagged_on_access",
            DropReason::UntaggedOnTrunk => "untagged_on_trunk",
            DropReason::VlanNotAllowed => "vlan_not_allowed",
            DropReason::BadTag => "bad_tag",
            DropReason::LockedSource => "locked_source",
            DropReason::SameSegment => "same_segment",
            DropReason::Isolated => "isolated",
            DropReason::EgressUnavailable => "egress_unavailable",
            DropReason::NoFloodTarget => "no_flood_target",
            DropReason::ReservedGroup => "reserved_group",
            DropReason::NoHostPort => "no_host_port",
            DropReason::BadBpdu => "bad_bpdu",
            DropReason::TxError => "tx_error",
            DropReason::MtuExceeded => "mtu_exceeded",
        }
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Drop counters indexed by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters([0; DropReason::COUNT])
    }
}

impl DropCounters {
    /// Counts one drop.
    #[inline]
    pub fn bump(&mut self, r: DropReason) {
        self.0[r as usize] += 1;
    }

    /// Drops counted for `r`.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// All drops.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &DropCounters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }
}

/// Traffic counters of one port. Drops are attributed to the ingress port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Frames this port sent as part of a flood (unknown unicast, multicast, broadcast).
    pub tx_flooded: u64,
    /// Frames received on this port that were flooded.
    pub rx_flooded: u64,
    /// Frames received on this port and handed to the control plane (BPDUs, ...).
    pub rx_control: u64,
    pub drops: DropCounters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unique_and_indexed() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }

    #[test]
    fn counting() {
        let mut c = DropCounters::default();
        c.bump(DropReason::Isolated);
        c.bump(DropReason::Isolated);
        c.bump(DropReason::Truncated);
        assert_eq!(c.get(DropReason::Isolated), 2);
        assert_eq!(c.total(), 3);
        let v: Vec<_> = c.nonzero().collect();
        assert_eq!(
            v,
            vec![(DropReason::Truncated, 1), (DropReason::Isolated, 2)]
        );
    }
}
