//! Typed errors of the bridge's configuration API. Frames never produce errors: they are
//! dropped and counted with a [`crate::DropReason`].

use vbridge_wire::MacAddr;

use crate::port::PortId;

/// Why a configuration request was refused. The bridge is unchanged when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("port {0} does not exist on this bridge")]
    UnknownPort(PortId),
    #[error("port {0} already exists on this bridge")]
    DuplicatePort(PortId),
    #[error("the bridge has no room for another port (at most {0})")]
    TooManyPorts(usize),
    #[error("VLAN id {0} is invalid: use 1..=4094")]
    InvalidVid(u16),
    #[error(
        "\"{0}\" is not a VLAN id: use numbers 1..=4094, ranges like 10-20, separated by commas"
    )]
    NotAVid(String),
    #[error("{0} cannot be used here: a static entry needs a unicast address")]
    NotUnicast(MacAddr),
    #[error("no FDB entry for {mac} in VLAN {vid}")]
    NoSuchEntry { mac: MacAddr, vid: u16 },
    #[error("port {port} is not a member of VLAN {vid}")]
    NotMember { port: PortId, vid: u16 },
    #[error(
        "group_fwd_mask {0:#06x} sets bits 0-2 (STP, pause, LACP), which may never be forwarded"
    )]
    RestrictedGroupFwd(u16),
    #[error(
        "STP timers hello {hello_time} s, max age {max_age} s, forward delay {forward_delay} s \
         break 2 * (forward delay - 1) >= max age >= 2 * (hello time + 1)"
    )]
    StpTimers {
        hello_time: u64,
        max_age: u64,
        forward_delay: u64,
    },
    #[error("port {0} is the host port: it takes no part in spanning tree")]
    NotStpPort(PortId),
    #[error("{what} {value} is out of range: {range}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        range: &'static str,
    },
}
