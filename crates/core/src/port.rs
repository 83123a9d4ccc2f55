//! Ports of a bridge: identity, kind, per-port flags with the Linux bridge's meanings,
//! administrative and spanning-tree state, and counters.

use core::fmt;

use vbridge_wire::MacAddr;

use crate::counters::PortCounters;
use crate::vlan::VlanMode;

/// A port's number on its bridge (also its STP port number, so 1..=4095 in practice).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl PortId {
    /// The slot index inside the bridge.
    #[inline]
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Debug for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PortId({})", self.0)
    }
}

/// What stands behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortKind {
    /// An ordinary switch port.
    #[default]
    Normal,
    /// The bridge's own host interface (`br0`): frames for the bridge's addresses go here,
    /// and it carries the bridge MAC, so it does not take part in the bridge MAC rule.
    Host,
}

/// Per-port switches, named and meant as in the Linux bridge (`bridge link set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PortFlags {
    /// Learn source addresses of frames received here.
    pub learning: bool,
    /// Receive floods of unknown unicast.
    pub flood: bool,
    /// Receive floods of multicast.
    pub mcast_flood: bool,
    /// Receive floods of broadcast.
    pub bcast_flood: bool,
    /// Frames may leave by the port they came in by.
    pub hairpin: bool,
    /// Isolated ports never exchange frames with other isolated ports.
    pub isolated: bool,
    /// Only sources with a static entry on this port may send; nothing is learned.
    pub locked: bool,
}

impl Default for PortFlags {
    fn default() -> Self {
        PortFlags {
            learning: true,
            flood: true,
            mcast_flood: true,
            bcast_flood: true,
            hairpin: false,
            isolated: false,
            locked: false,
        }
    }
}

/// Spanning-tree state of a port; `Forwarding` when STP is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StpState {
    Disabled,
    Blocking,
    Listening,
    Learning,
    #[default]
    Forwarding,
}

impl StpState {
    /// Frames received here may be learned from.
    #[inline]
    pub const fn learns(self) -> bool {
        matches!(self, StpState::Learning | StpState::Forwarding)
    }

    /// Frames may be forwarded from and to this port.
    #[inline]
    pub const fn forwards(self) -> bool {
        matches!(self, StpState::Forwarding)
    }

    /// The name `brctl showstp` prints.
    pub const fn name(self) -> &'static str {
        match self {
            StpState::Disabled => "disabled",
            StpState::Blocking => "blocking",
            StpState::Listening => "listening",
            StpState::Learning => "learning",
            StpState::Forwarding => "forwarding",
        }
    }
}

/// How a port is set up when it is added.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortConfig {
    pub kind: PortKind,
    /// The MAC of the netdev behind the port, if it has one.
    pub mac: Option<MacAddr>,
    pub flags: PortFlags,
    pub vlan: VlanMode,
    /// Most dynamic entries this port may have learned at once; 0 = no per-port limit.
    pub max_learned: u32,
    /// Administratively up.
    pub up: bool,
}

impl PortConfig {
    /// A normal port that is up, with default flags, in access VLAN 1.
    pub fn new(mac: Option<MacAddr>) -> PortConfig {
        PortConfig {
            mac,
            up: true,
            ..PortConfig::default()
        }
    }

    /// The bridge's host port.
    pub fn host() -> PortConfig {
        PortConfig {
            kind: PortKind::Host,
            up: true,
            ..PortConfig::default()
        }
    }
}

/// A port as the bridge holds it.
#[derive(Debug, Clone)]
pub(crate) struct Port {
    pub(crate) config: PortConfig,
    pub(crate) stp: StpState,
    pub(crate) counters: PortCounters,
}

impl Port {
    pub(crate) fn new(config: PortConfig) -> Port {
        Port {
            config,
            stp: StpState::Forwarding,
            counters: PortCounters::default(),
        }
    }

    /// Up and forwarding: frames may enter and leave.
    #[inline]
    pub(crate) fn forwards(&self) -> bool {
        self.config.up && self.stp.forwards()
    }
}
