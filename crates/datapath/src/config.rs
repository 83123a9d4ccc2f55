//! The persisted configuration: what the engine's `snapshot` reads off its bridges and
//! [`crate::Datapath::restore`] builds again (bridges, ports with numbers, flags and
//! VLANs, static FDB entries, the bridge MAC when set by hand, ageing, STP parameters,
//! and the index of each device vbridge made, so it is never confused with another).
//! Counters and learned entries are run-time state and are not kept.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vbridge_core::{EntryKind, MacAddr, PortFlags, StpMode, StpPortConfig, Vid, VidSet, VlanMode};

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
        vid: Vid,
    },
    Trunk {
        allowed: String,
        native: Option<Vid>,
    },
}

impl VlanCfg {
    /// From the core's form.
    pub fn from_mode(m: &VlanMode) -> VlanCfg {
        match m {
            VlanMode::Access(v) => VlanCfg::Access { vid: *v },
            VlanMode::Trunk { allowed, native } => VlanCfg::Trunk {
                allowed: allowed.to_string(),
                native: *native,
            },
        }
    }

    /// To the core's form; errors name the bad VID.
    pub fn to_mode(&self) -> Result<VlanMode, vbridge_core::ConfigError> {
        Ok(match self {
            VlanCfg::Access { vid } => VlanMode::Access(*vid),
            VlanCfg::Trunk { allowed, native } => VlanMode::Trunk {
                allowed: VidSet::parse_list(allowed)?,
                native: *native,
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
    /// A VM socket port's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<std::path::PathBuf>,
    /// A VXLAN port's tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vxlan: Option<VxlanCfg>,
}

/// A VXLAN tunnel: its network identifier, the local address it sends from, the UDP
/// port, and the remote VTEPs that get a copy of every frame with no learned remote
/// (head-end replication).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanCfg {
    pub vni: u32,
    pub local: std::net::Ipv4Addr,
    #[serde(default)]
    pub remotes: Vec<std::net::Ipv4Addr>,
    pub dstport: u16,
    /// Whether the netdev learns remote MACs from what it decapsulates (static mode); in
    /// cluster mode the control plane gives it every entry instead.
    #[serde(default = "yes")]
    pub learning: bool,
}

fn yes() -> bool {
    true
}

/// A static FDB entry as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticEntry {
    pub mac: MacAddr,
    pub port: String,
    pub vlan: Vid,
}

/// One bridge as saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeCfg {
    /// The bridge MAC (kept so a restart does not change it).
    pub mac: MacAddr,
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
                match prt.kind {
                    PortKind::Host => {
                        host_ifindex = prt.ifindex;
                        continue;
                    }
                    // Handed over by the caller: nothing to open again at restart.
                    PortKind::Socket => continue,
                    PortKind::Interface
                    | PortKind::Tap
                    | PortKind::Gateway
                    | PortKind::Stream
                    | PortKind::Dgram
                    | PortKind::VhostUser
                    | PortKind::VhostUserClient
                    | PortKind::VmTap
                    | PortKind::Vxlan => {}
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
                    socket: prt.socket.clone(),
                    vxlan: prt.vxlan.clone(),
                });
            }
            let now = self.now();
            let mut static_fdb: Vec<StaticEntry> = c
                .fdb_entries(now)
                .filter(|e| e.kind == EntryKind::Static)
                .filter_map(|e| {
                    Some(StaticEntry {
                        mac: e.mac,
                        port: rt.port(e.port)?.name.clone(),
                        vlan: e.vid?,
                    })
                })
                .collect();
            static_fdb.sort_by(|a, b| (&a.port, &a.mac, a.vlan).cmp(&(&b.port, &b.mac, b.vlan)));
            bridges.insert(
                rt.name.clone(),
                BridgeCfg {
                    mac: c.mac(),
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

/// Something wrong in a configuration: where (a path like `bridges.br0.ports[1].name`)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl Config {
    /// Checks what types alone do not: names, ranges, the core's own checks of VLANs and
    /// spanning-tree settings, duplicate ports, static entries on ports that exist. The
    /// first problem found is returned.
    pub fn check(&self) -> Result<(), ConfigProblem> {
        let bad = |field: String, reason: String| Err(ConfigProblem { field, reason });
        for (name, b) in &self.bridges {
            let at = format!("bridges.{}", name.escape_debug());
            if let Err(e) = vbridge_wire::ifname::check(name) {
                return bad(at, e.to_string());
            }
            if !(b.ageing_secs.is_finite() && (0.0..=1_000_000.0).contains(&b.ageing_secs)) {
                return bad(
                    format!("{at}.ageing_secs"),
                    format!("{} is out of range: use 0..=1000000", b.ageing_secs),
                );
            }
            if let Err(e) = b.stp.to_core().validate() {
                return bad(format!("{at}.stp"), e.to_string());
            }
            let mut names = std::collections::BTreeSet::new();
            let mut numbers = std::collections::BTreeSet::new();
            for (i, p) in b.ports.iter().enumerate() {
                let pat = format!("{at}.ports[{i}]");
                if let Err(e) = vbridge_wire::ifname::check(&p.name) {
                    return bad(format!("{pat}.name"), e.to_string());
                }
                if !names.insert(p.name.as_str()) || p.name == *name {
                    return bad(
                        format!("{pat}.name"),
                        format!("port {} is listed twice", p.name),
                    );
                }
                if !(1..=4095).contains(&p.port_no) || !numbers.insert(p.port_no) {
                    return bad(
                        format!("{pat}.port_no"),
                        format!("{} is taken or out of range: use 1..=4095, once", p.port_no),
                    );
                }
                if matches!(p.kind, PortKind::Host | PortKind::Socket) {
                    return bad(
                        format!("{pat}.kind"),
                        "host and socket ports are not saved".into(),
                    );
                }
                let sockets = p.kind.has_socket();
                if sockets != p.socket.is_some() {
                    return bad(
                        format!("{pat}.socket"),
                        "stream, dgram and vhost-user ports, and they alone, have a socket path"
                            .into(),
                    );
                }
                if (p.kind == PortKind::Vxlan) != p.vxlan.is_some() {
                    return bad(
                        format!("{pat}.vxlan"),
                        "vxlan ports, and they alone, have a tunnel".into(),
                    );
                }
                if let Err(e) = p.vlan.to_mode() {
                    return bad(format!("{pat}.vlan"), e.to_string());
                }
                if let Err(e) = p.stp.validate() {
                    return bad(format!("{pat}.stp"), e.to_string());
                }
                if let Some(c) = &p.conn {
                    if let Err(e) = vbridge_wire::ifname::check(&c.ifname) {
                        return bad(format!("{pat}.conn.ifname"), e.to_string());
                    }
                    if c.netns.is_empty() || c.netns.chars().any(char::is_control) {
                        return bad(
                            format!("{pat}.conn.netns"),
                            "empty or with control characters".into(),
                        );
                    }
                    if c.mac.is_some_and(|m| !m.is_unicast()) {
                        return bad(format!("{pat}.conn.mac"), "not a unicast address".into());
                    }
                }
            }
            for (i, s) in b.static_fdb.iter().enumerate() {
                let sat = format!("{at}.static_fdb[{i}]");
                if !s.mac.is_unicast() {
                    return bad(format!("{sat}.mac"), format!("{} is not unicast", s.mac));
                }
                if !names.contains(s.port.as_str()) {
                    return bad(
                        format!("{sat}.port"),
                        format!("no port {} on the bridge", s.port),
                    );
                }
            }
        }
        Ok(())
    }
}
