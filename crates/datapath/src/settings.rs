//! Typed settings of a bridge and its ports ([`Change`]), applied by the engine to the
//! core all at once or not at all. Ranges are the core's: it is the one place that knows
//! them, and its errors name the setting and the range.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use vbridge_core::{
    Bridge, ConfigError, FlushFilter, Instant, MacAddr, PortFlags, PortId, StpMode, StpPortConfig,
    Vid, VlanMode,
};

/// A per-port switch that `vbr link set PORT NAME on|off` turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortFlag {
    Learning,
    Flood,
    McastFlood,
    BcastFlood,
    Hairpin,
    Isolated,
    Locked,
    /// Spanning tree: administratively an edge port.
    Edge,
    /// Spanning tree: becomes an edge port when no BPDU answers.
    AutoEdge,
    BpduGuard,
    RootGuard,
}

impl PortFlag {
    /// Every flag, in the order `vbr` lists them.
    pub const ALL: [PortFlag; 11] = [
        PortFlag::Learning,
        PortFlag::Flood,
        PortFlag::McastFlood,
        PortFlag::BcastFlood,
        PortFlag::Hairpin,
        PortFlag::Isolated,
        PortFlag::Locked,
        PortFlag::Edge,
        PortFlag::AutoEdge,
        PortFlag::BpduGuard,
        PortFlag::RootGuard,
    ];

    /// The name on the command line and in the API.
    pub fn name(self) -> &'static str {
        match self {
            PortFlag::Learning => "learning",
            PortFlag::Flood => "flood",
            PortFlag::McastFlood => "mcast_flood",
            PortFlag::BcastFlood => "bcast_flood",
            PortFlag::Hairpin => "hairpin",
            PortFlag::Isolated => "isolated",
            PortFlag::Locked => "locked",
            PortFlag::Edge => "edge",
            PortFlag::AutoEdge => "auto_edge",
            PortFlag::BpduGuard => "bpdu_guard",
            PortFlag::RootGuard => "root_guard",
        }
    }

    fn set(self, flags: &mut PortFlags, stp: &mut StpPortConfig, on: bool) {
        *match self {
            PortFlag::Learning => &mut flags.learning,
            PortFlag::Flood => &mut flags.flood,
            PortFlag::McastFlood => &mut flags.mcast_flood,
            PortFlag::BcastFlood => &mut flags.bcast_flood,
            PortFlag::Hairpin => &mut flags.hairpin,
            PortFlag::Isolated => &mut flags.isolated,
            PortFlag::Locked => &mut flags.locked,
            PortFlag::Edge => &mut stp.admin_edge,
            PortFlag::AutoEdge => &mut stp.auto_edge,
            PortFlag::BpduGuard => &mut stp.bpdu_guard,
            PortFlag::RootGuard => &mut stp.root_guard,
        } = on;
    }
}

impl std::str::FromStr for PortFlag {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PortFlag::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = PortFlag::ALL.iter().map(|f| f.name()).collect();
                format!("unknown port flag {s:?}: use {}", names.join(", "))
            })
    }
}

/// Several settings of one port, applied together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortEdit {
    pub flags: Vec<(PortFlag, bool)>,
    pub vlan: Option<VlanMode>,
}

/// One setting of a bridge (or of a port of it, by name).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Stp(StpMode),
    /// Every bridge timer and the priority at once (checked together).
    StpParams(vbridge_core::StpParams),
    /// Every spanning-tree setting of a port at once.
    PortStp {
        port: String,
        config: StpPortConfig,
    },
    BridgePriority(u16),
    ForwardDelay(Duration),
    HelloTime(Duration),
    MaxAge(Duration),
    Ageing(Duration),
    /// `None`: from the link speed again.
    PathCost {
        port: String,
        cost: Option<u32>,
    },
    PortPriority {
        port: String,
        priority: u8,
    },
    Port {
        port: String,
        edit: Box<PortEdit>,
    },
    FdbAdd {
        mac: MacAddr,
        vid: Vid,
        port: String,
    },
    FdbDel {
        mac: MacAddr,
        vid: Vid,
    },
    FdbFlush,
}

/// What a change did, where there is more to say than "done".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Done,
    /// Learned entries forgotten by [`Change::FdbFlush`].
    Flushed(usize),
}

/// Why a change was refused: a port the bridge does not have, or the core's reason.
#[derive(Debug)]
pub(crate) enum Refusal {
    NoPort(String),
    Core(ConfigError),
}

impl From<ConfigError> for Refusal {
    fn from(e: ConfigError) -> Self {
        Refusal::Core(e)
    }
}

/// Applies `change` to `core`; `port` resolves a port name. Nothing changes on error.
pub(crate) fn apply(
    core: &mut Bridge,
    now: Instant,
    change: Change,
    port: impl Fn(&str) -> Option<PortId>,
) -> Result<Changed, Refusal> {
    let id = |name: &str| port(name).ok_or_else(|| Refusal::NoPort(name.to_owned()));
    match change {
        Change::Stp(mode) => core.set_stp_mode(now, mode),
        Change::StpParams(p) => core.set_stp_params(now, p)?,
        Change::PortStp { port, config } => {
            let id = id(&port)?;
            core.set_port_stp_config(now, id, config)?;
        }
        Change::BridgePriority(p) => core.set_stp_priority(now, p)?,
        Change::ForwardDelay(d) => core.set_stp_forward_delay(now, d)?,
        Change::HelloTime(d) => core.set_stp_hello_time(now, d)?,
        Change::MaxAge(d) => core.set_stp_max_age(now, d)?,
        Change::Ageing(d) => core.set_ageing(now, d)?,
        Change::PathCost { port, cost } => {
            let id = id(&port)?;
            let mut c = core.port_stp_config(id)?;
            c.path_cost = match cost {
                None => 0,
                Some(0) => {
                    return Err(Refusal::Core(ConfigError::OutOfRange {
                        what: "port path cost",
                        value: 0,
                        range: "1..=200000000 (or auto)",
                    }));
                }
                Some(n) => n,
            };
            core.set_port_stp_config(now, id, c)?;
        }
        Change::PortPriority { port, priority } => {
            let id = id(&port)?;
            let mut c = core.port_stp_config(id)?;
            c.priority = priority;
            core.set_port_stp_config(now, id, c)?;
        }
        Change::Port { port, edit } => {
            let id = id(&port)?;
            let mut flags = core.port_config(id)?.flags;
            let old_stp = core.port_stp_config(id).ok();
            let mut stp = old_stp.unwrap_or_default();
            for (f, on) in &edit.flags {
                f.set(&mut flags, &mut stp, *on);
            }
            // Check first, so that nothing changes when one part is refused.
            stp.validate()?;
            let stp_touched = edit.flags.iter().any(|(f, _)| {
                matches!(
                    f,
                    PortFlag::Edge | PortFlag::AutoEdge | PortFlag::BpduGuard | PortFlag::RootGuard
                )
            });
            if stp_touched && old_stp.is_none() {
                return Err(Refusal::Core(ConfigError::NotStpPort(id)));
            }
            core.set_port_flags(id, flags)?;
            if stp_touched {
                core.set_port_stp_config(now, id, stp)?;
            }
            if let Some(m) = edit.vlan {
                core.set_port_vlan(id, m)?;
            }
        }
        Change::FdbAdd { mac, vid, port } => {
            let id = id(&port)?;
            core.fdb_add_static(vid, mac, id)?;
        }
        Change::FdbDel { mac, vid } => core.fdb_remove(vid, mac)?,
        Change::FdbFlush => return Ok(Changed::Flushed(core.fdb_flush(FlushFilter::default()))),
    }
    Ok(Changed::Done)
}
