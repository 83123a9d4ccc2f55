//! The persisted configuration: what `snapshot` reads off a running engine and `restore`
//! builds again (bridges, ports with numbers, flags and VLANs, static FDB entries, the
//! bridge MAC when set by hand, ageing, STP parameters). Counters and learned entries
//! are run-time state and are not kept.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vbridge_core::{
    BridgeConfig, EntryKind, MacAddr, PortFlags, StpMode, StpPortConfig, Vid, VidSet, VlanMode,
};

use crate::bridge_rt::PortSpec;
use crate::engine::Engine;
use crate::error::DpError;
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

    /// Applies saved settings to a core.
    pub fn apply(
        &self,
        now: vbridge_core::Instant,
        core: &mut vbridge_core::Bridge,
    ) -> Result<(), vbridge_core::ConfigError> {
        let secs = |s: f64| Duration::from_secs_f64(s.clamp(0.0, 3600.0));
        let mut p = core.stp_params();
        p.priority = self.priority;
        p.hello_time = secs(self.hello_time);
        p.max_age = secs(self.max_age);
        p.forward_delay = secs(self.forward_delay);
        core.set_stp_params(now, p)?;
        core.set_stp_mode(now, self.mode);
        Ok(())
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
    pub conn: Option<crate::connect::Connection>,
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
}

/// Everything the daemon keeps across restarts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub bridges: BTreeMap<String, BridgeCfg>,
}

impl Engine {
    /// The configuration of everything now.
    pub fn snapshot(&self) -> Config {
        let mut bridges = BTreeMap::new();
        for name in self.bridge_names() {
            let Ok(rt) = self.bridge(&name) else { continue };
            let c = &rt.core;
            let mut ports = Vec::new();
            for (id, pname) in rt.port_names() {
                let (Ok(cfg), Some(prt)) = (c.port_config(id), rt.port(id)) else {
                    continue;
                };
                if prt.kind == PortKind::Host {
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
                name.clone(),
                BridgeCfg {
                    mac: c.mac().to_string(),
                    mac_fixed: c.mac_fixed(),
                    ageing_secs: c.ageing().as_secs_f64(),
                    stp: StpParams::of(c),
                    ports,
                    static_fdb,
                },
            );
        }
        Config { bridges }
    }

    /// Builds `config` on an engine that has none of its bridges yet. Ports whose netdev
    /// is missing are kept as gone; errors are collected and returned, not fatal.
    pub fn restore(&mut self, config: &Config) -> Vec<DpError> {
        let mut errors = Vec::new();
        for (name, b) in &config.bridges {
            let mac: MacAddr = match b.mac.parse() {
                Ok(m) => m,
                Err(_) => MacAddr([0x02, 0, 0, 0, 0, 1]),
            };
            let mut bc = BridgeConfig::new(mac);
            bc.mac_fixed = b.mac_fixed;
            bc.ageing = Duration::from_secs_f64(b.ageing_secs.clamp(0.0, 1e6));
            if let Err(e) = self.add_bridge(name, bc) {
                errors.push(e);
                continue;
            }
            for p in &b.ports {
                let vlan = match p.vlan.to_mode() {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(DpError::config(name, e));
                        VlanMode::default()
                    }
                };
                let spec = PortSpec {
                    name: p.name.clone(),
                    kind: p.kind,
                    port_no: Some(p.port_no),
                    flags: p.flags,
                    vlan,
                    max_learned: p.max_learned,
                    conn: p.conn.clone(),
                };
                match self.add_port(name, &spec, true) {
                    Ok(id) => {
                        let now = self.now();
                        if let Ok(rt) = self.bridge_mut(name) {
                            if let Err(e) = rt.core.set_port_stp_config(now, id, p.stp) {
                                errors.push(DpError::config(name, e));
                            }
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            let now = self.now();
            if let Ok(rt) = self.bridge_mut(name) {
                if let Err(e) = b.stp.apply(now, &mut rt.core) {
                    errors.push(DpError::config(name, e));
                }
                for s in &b.static_fdb {
                    let (Ok(mac), Ok(vid), Some(id)) = (
                        s.mac.parse::<MacAddr>(),
                        Vid::new(s.vlan),
                        rt.port_id(&s.port),
                    ) else {
                        continue;
                    };
                    if let Err(e) = rt.core.fdb_add_static(vid, mac, id) {
                        errors.push(DpError::config(name, e));
                    }
                }
            }
        }
        self.sync();
        errors
    }
}
