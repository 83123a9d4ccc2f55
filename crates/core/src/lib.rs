//! `vbridge-core`: the switch itself, sans-IO.
//!
//! A [`Bridge`] is handed `(now, ingress port, frame)` and answers with a [`Decision`]:
//! forward to these ports with these VLAN tag operations, hand to the control plane, or
//! drop with a [`DropReason`]. It never reads a clock, spawns a thread or touches a file
//! descriptor, so it is tested on a virtual clock and benchmarked in memory.
//!
//! What it covers: ports with the Linux bridge's per-port flags, an FDB keyed by
//! (VLAN, MAC) with learning, ageing, static and local entries, station moves and
//! learning limits; flooding; hairpin and isolation; IEEE reserved group addresses;
//! 802.1Q access and trunk ports with ingress filtering and egress tagging; the bridge MAC
//! rule; per-port counters and a counter per drop reason; STP and RSTP (`stp/`). See
//! `bridge.rs` for the order in which a driver calls it.

pub mod bridge;
pub mod counters;
pub mod decision;
pub mod error;
pub mod fdb;
mod forward;
pub mod offload;
pub mod port;
pub mod stp;
pub mod time;
pub mod trace;
pub mod vlan;

pub use bridge::{Bridge, BridgeConfig, BridgeStats, Event};
pub use counters::{DropCounters, DropReason, PortCounters};
pub use decision::{Decision, Delivery, Egress, Verdict};
pub use error::ConfigError;
pub use fdb::{EntryKind, FdbEntry, FlushFilter};
pub use offload::{FloodOffload, Offload};
pub use port::{PortConfig, PortFlags, PortId, PortKind, StpState};
pub use stp::{
    BpduFrame, BridgeId, PointToPoint, StpEvent, StpMode, StpParams, StpPortConfig, StpPortStatus,
    StpRole, StpStatus,
};
pub use time::Instant;
pub use trace::{Explanation, Step};
pub use vbridge_wire::{MacAddr, Vid};
pub use vlan::{TagOp, VidSet, VlanMode};
