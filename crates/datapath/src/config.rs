//! The persisted configuration: what the engine's `snapshot` reads off its bridges and
//! [`crate::Datapath::restore`] builds again (bridges, ports with numbers, flags and
//! VLANs, static FDB entries, the bridge MAC when set by hand, ageing, STP parameters,
//! and the index of each device vbridge made, so it is never confused with another).
//! Counters and learned entries are run-time state and are not kept.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vbridge_core::{EntryKind, PortFlags, StpMode, StpPortConfig, Vid, VidSet, VlanMode};

use crate::engine::Engine;
use crate::view::PortKind;

/// Bridge-wide spanning-tree settings as saved (times in seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StpParams {
    pub mode: StpMode,
    pub priority: u16,
    pub hello_time: f64,
    pub max_age: f64,
    pub forward_delay: f64,
}

impl StpParams {
    /// The core's settings in saved form.
    pub fn of(core: &vbridge_core::Bridge) -> StpParams {
        let p = core.stp_params();
        StpParams {
            mode: core.stp_mode(),
            priority: p.priority,
            hello_time: p.hello_time.as_secs_f64(),
            max_age: p.max_age.as_secs_f64(),
            forward_delay: p.forward_delay.as_secs_f64(),
        }
    }

    /// The core's form (its ranges are checked when it is applied).
    pub fn to_core(&self) -> vbridge_core::StpParams {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
        vbridge_core::StpParams {
            priority: self.priority,
            hello_time: secs(self.hello_time),
            max_age: secs(self.max_age),
            forward_delay: secs(self.forward_delay),
            ..vbridge_core::StpParams::default()
        }
    }
}

/// A port's VLAN mode as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum VlanCfg {
    Access {
        vid: u16,
    },
    Trunk {
        allowed: String,
        native: Option<u16>,
    },
}

impl VlanCfg {
    /// From the core's form.
    pub fn from_mode(m: &VlanMode) -> VlanCfg {
        match m {
            VlanMode::Access(v) => VlanCfg::Access { vid: v.get() },
            VlanMode::Trunk { allowed, native } => VlanCfg::Trunk {
                allowed: allowed.to_string(),
                native: native.map(Vid::get),
            },
        }
    }

    /// To the core's form; errors name the bad VID.
    pub fn to_mode(&self) -> Result<VlanMode, vbridge_core::ConfigError> {
        let vid = |v: u16| Vid::new(v).map_err(|_| vbridge_core::ConfigError::InvalidVid(v));
        Ok(match self {
            VlanCfg::Access { vid: v } => VlanMode::Access(vid(*v)?),
            VlanCfg::Trunk { allowed, native } => VlanMode::Trunk {
                allowed: VidSet::parse_list(allowed)?,
                native: native.map(vid).transpose()?,
            },
        })
    }
}

/// One port as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortCfg {
    pub name: String,
    pub kind: PortKind,
    pub port_no: u16,
    pub flags: PortFlags,
    pub vlan: VlanCfg,
    pub max_learned: u32,
    #[serde(default)]
    pub stp: StpPortConfig,
    /// The namespace a `vbr connect` port joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<crate::control::connect::Connection>,
}

/// A static FDB entry as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEntry {
    pub mac: String,
    pub port: String,
    pub vlan: u16,
}

/// One bridge as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeCfg {
    /// The bridge MAC (kept so a restart does not change it).
    pub mac: String,
    pub mac_fixed: bool,
    pub ageing_secs: f64,
    pub stp: StpParams,
    pub ports: Vec<PortCfg>,
    pub static_fdb: Vec<StaticEntry>,
    /// The index of the host interface vbridge made for the bridge (`None` in files of
    /// older versions: the interface named like the bridge is then taken as ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ifindex: Option<u32>,
}

/// Everything the daemon keeps across restarts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bridges: BTreeMap<String, BridgeCfg>,
}

impl Engine {
    /// The configuration of everything now.
    pub(crate) fn snapshot(&self) -> Config {
        let mut bridges = BTreeMap::new();
        for rt in self.bridges.iter().flatten() {
            let c = &rt.core;
            let mut ports = Vec::new();
            let mut host_ifindex = None;
            for (id, pname) in rt.port_names() {
                let (Ok(cfg), Some(prt)) = (c.port_config(id), rt.port(id)) else {
                    continue;
                };
                if prt.kind == PortKind::Host {
                    host_ifindex = prt.ifindex;
                    continue;
                }
                ports.push(PortCfg {
                    name: pname.to_owned(),
                    kind: prt.kind,
                    port_no: id.0,
                    flags: cfg.flags,
                    vlan: VlanCfg::from_mode(&cfg.vlan),
                    max_learned: cfg.max_learned,
                    stp: c.port_stp_config(id).unwrap_or_default(),
                    conn: prt.conn.clone(),
                });
            }
            let now = self.now();
            let mut static_fdb: Vec<StaticEntry> = c
                .fdb_entries(now)
                .filter(|e| e.kind == EntryKind::Static)
                .filter_map(|e| {
                    Some(StaticEntry {
                        mac: e.mac.to_string(),
                        port: rt.port(e.port)?.name.clone(),
                        vlan: e.vid?.get(),
                    })
                })
                .collect();
            static_fdb.sort_by(|a, b| (&a.port, &a.mac, a.vlan).cmp(&(&b.port, &b.mac, b.vlan)));
            bridges.insert(
                rt.name.clone(),
                BridgeCfg {
                    mac: c.mac().to_string(),
                    mac_fixed: c.mac_fixed(),
                    ageing_secs: c.ageing().as_secs_f64(),
                    stp: StpParams::of(c),
                    ports,
                    static_fdb,
                    host_ifindex,
                },
            );
        }
        Config { bridges }
    }
}
