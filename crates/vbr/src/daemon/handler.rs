//! Carries out one API request on the datapath thread. Every refusal is an error message
//! naming the object and what to do; nothing is changed when one is returned.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use vbridge_core::{BridgeConfig, FlushFilter, MacAddr, PortFlags, PortId, StpPortConfig, Vid};
use vbridge_datapath::{DpError, Engine, PortKind, PortSpec};

use crate::api::Request;

type Outcome = Result<Value, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn dp(e: DpError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(&format!(": {cs}"));
        }
        src = c.source();
    }
    s
}

fn parse_mac(s: &str) -> Result<MacAddr, String> {
    s.parse::<MacAddr>().map_err(err)
}

fn vid(v: Option<u16>) -> Result<Vid, String> {
    let v = v.unwrap_or(1);
    Vid::new(v).map_err(|_| format!("invalid VLAN id {v}: use 1..=4094"))
}

fn secs(what: &str, s: f64, lo: f64, hi: f64) -> Result<f64, String> {
    if s.is_finite() && (lo..=hi).contains(&s) {
        Ok(s)
    } else {
        Err(format!(
            "{what} {s} is out of range: use {lo}..={hi} seconds"
        ))
    }
}

/// A random locally administered unicast MAC for a new bridge.
fn random_mac() -> MacAddr {
    let mut b = [0u8; 6];
    if let Ok(bytes) = std::fs::read("/proc/sys/kernel/random/uuid") {
        let hex: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(u8::is_ascii_hexdigit)
            .collect();
        for (i, pair) in hex.chunks(2).take(6).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("0");
            b[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
    }
    b[0] = (b[0] & 0xfe) | 0x02;
    MacAddr(b)
}

fn port_of(e: &Engine, bridge: &str, port: &str) -> Result<PortId, String> {
    let rt = e.bridge(bridge).map_err(dp)?;
    rt.port_id(port)
        .ok_or_else(|| format!("{port} is not a port of bridge {bridge} (see `vbr show {bridge}`)"))
}

/// Runs `req` against the engine.
pub(crate) fn apply(e: &mut Engine, req: Request) -> Outcome {
    let out = apply_one(e, req);
    e.sync();
    out
}

/// Runs one request without the final sync (for composite requests).
pub(crate) fn apply_one(e: &mut Engine, req: Request) -> Outcome {
    match req {
        Request::NetnsAdd { name } => super::wiring::netns_add(&name),
        Request::NetnsDel { name } => super::wiring::netns_del(e, &name),
        Request::NetnsList => super::wiring::netns_list(),
        Request::Connect(args) => super::wiring::connect(e, &args),
        Request::Disconnect { netns, bridge } => super::wiring::disconnect(e, &netns, &bridge),
        Request::Up { .. } | Request::Down { .. } => {
            Err("up/down are handled by the daemon itself".into())
        }
        Request::Ping => Ok(json!("pong")),
        Request::Addbr { bridge } => {
            crate::topology::check_ifname(&bridge)?;
            e.add_bridge(&bridge, BridgeConfig::new(random_mac()))
                .map_err(dp)?;
            Ok(json!({ "bridge": bridge }))
        }
        Request::Delbr { bridge } => {
            e.del_bridge(&bridge).map_err(dp)?;
            Ok(json!({ "bridge": bridge }))
        }
        Request::Addif { bridge, port } => add_port(e, &bridge, &port, PortKind::Interface),
        Request::TapAdd { name, bridge } => add_port(e, &bridge, &name, PortKind::Tap),
        Request::Delif { bridge, port } => {
            e.del_port(&bridge, &port).map_err(dp)?;
            Ok(json!({ "bridge": bridge, "port": port }))
        }
        Request::TapDel { name } => {
            let (bridge, id) = e
                .find_port(&name)
                .ok_or_else(|| format!("no tap port {name} (see `vbr show`)"))?;
            let is_tap = e
                .bridge(&bridge)
                .is_ok_and(|rt| rt.port_kind(id) == Some(PortKind::Tap));
            if !is_tap {
                return Err(format!(
                    "{name} is not a TAP port (use `vbr delif {bridge} {name}`)"
                ));
            }
            e.del_port(&bridge, &name).map_err(dp)?;
            Ok(json!({ "bridge": bridge, "port": name }))
        }
        Request::Show { bridge } => {
            e.refresh();
            let names = match bridge {
                Some(b) => vec![e.bridge(&b).map_err(dp)?.name().to_owned()],
                None => e.bridge_names(),
            };
            let views: Vec<Value> = names
                .iter()
                .filter_map(|n| e.bridge(n).ok())
                .map(|rt| json!(rt.view()))
                .collect();
            Ok(Value::Array(views))
        }
        Request::Stats { bridge } => apply_one(e, Request::Show { bridge }),
        Request::Showmacs { bridge } | Request::FdbShow { bridge } => {
            let now = e.now();
            let rt = e.bridge(&bridge).map_err(dp)?;
            Ok(json!(rt.fdb_rows(now)))
        }
        Request::Showstp { bridge } => {
            e.refresh();
            let now = e.now();
            let rt = e.bridge(&bridge).map_err(dp)?;
            Ok(super::stp::status_json(rt, now))
        }
        Request::Stp { bridge, mode } => {
            let now = e.now();
            e.bridge_mut(&bridge)
                .map_err(dp)?
                .core
                .set_stp_mode(now, mode);
            Ok(json!({ "bridge": bridge, "stp": mode }))
        }
        Request::Setageing { bridge, secs: s } => {
            let s = secs("ageing time", s, 0.0, 1_000_000.0)?;
            let now = e.now();
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            rt.core
                .set_ageing(now, Duration::from_secs_f64(s))
                .map_err(err)?;
            Ok(json!({ "bridge": bridge, "ageing_time": s }))
        }
        Request::Setbridgeprio { bridge, prio } => {
            let now = e.now();
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            rt.core.set_stp_priority(now, prio).map_err(err)?;
            Ok(json!({ "bridge": bridge, "priority": prio }))
        }
        Request::Setfd { bridge, secs: s } => {
            let d = Duration::from_secs_f64(secs("forward delay", s, 2.0, 30.0)?);
            let now = e.now();
            e.bridge_mut(&bridge)
                .map_err(dp)?
                .core
                .set_stp_forward_delay(now, d)
                .map_err(err)?;
            Ok(json!({ "bridge": bridge, "forward_delay": s }))
        }
        Request::Sethello { bridge, secs: s } => {
            let d = Duration::from_secs_f64(secs("hello time", s, 1.0, 10.0)?);
            let now = e.now();
            e.bridge_mut(&bridge)
                .map_err(dp)?
                .core
                .set_stp_hello_time(now, d)
                .map_err(err)?;
            Ok(json!({ "bridge": bridge, "hello_time": s }))
        }
        Request::Setmaxage { bridge, secs: s } => {
            let d = Duration::from_secs_f64(secs("max age", s, 6.0, 40.0)?);
            let now = e.now();
            e.bridge_mut(&bridge)
                .map_err(dp)?
                .core
                .set_stp_max_age(now, d)
                .map_err(err)?;
            Ok(json!({ "bridge": bridge, "max_age": s }))
        }
        Request::Setpathcost { bridge, port, cost } => {
            let id = port_of(e, &bridge, &port)?;
            let now = e.now();
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            let mut c = rt.core.port_stp_config(id).map_err(err)?;
            c.path_cost = cost;
            rt.core.set_port_stp_config(now, id, c).map_err(err)?;
            Ok(json!({ "port": port, "path_cost": cost }))
        }
        Request::Setportprio { bridge, port, prio } => {
            let id = port_of(e, &bridge, &port)?;
            let now = e.now();
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            let mut c = rt.core.port_stp_config(id).map_err(err)?;
            c.priority = prio;
            rt.core.set_port_stp_config(now, id, c).map_err(err)?;
            Ok(json!({ "port": port, "priority": prio }))
        }
        Request::Hairpin { bridge, port, on } => {
            let id = port_of(e, &bridge, &port)?;
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            let mut f = rt.core.port_config(id).map_err(err)?.flags;
            f.hairpin = on;
            rt.core.set_port_flags(id, f).map_err(err)?;
            Ok(json!({ "port": port, "hairpin": on }))
        }
        Request::FdbAdd {
            bridge,
            mac,
            port,
            vlan,
        } => {
            let m = parse_mac(&mac)?;
            let v = vid(vlan)?;
            let id = port_of(e, &bridge, &port)?;
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            rt.core.fdb_add_static(v, m, id).map_err(err)?;
            Ok(json!({ "mac": m.to_string(), "port": port, "vlan": v.get() }))
        }
        Request::FdbDel { bridge, mac, vlan } => {
            let m = parse_mac(&mac)?;
            let v = vid(vlan)?;
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            rt.core.fdb_remove(v, m).map_err(err)?;
            Ok(json!({ "mac": m.to_string(), "vlan": v.get() }))
        }
        Request::FdbFlush { bridge } => {
            let rt = e.bridge_mut(&bridge).map_err(dp)?;
            let n = rt.core.fdb_flush(FlushFilter::default());
            Ok(json!({ "flushed": n }))
        }
        Request::LinkSet { port, flags, vlan } => link_set(e, &port, &flags, vlan),
    }
}

/// The spanning-tree port setting a `link set` flag names, if it is one.
fn stp_flag(name: &str) -> Option<fn(&mut StpPortConfig) -> &mut bool> {
    Some(match name {
        "edge" => |c| &mut c.admin_edge,
        "auto_edge" => |c| &mut c.auto_edge,
        "bpdu_guard" => |c| &mut c.bpdu_guard,
        "root_guard" => |c| &mut c.root_guard,
        _ => return None,
    })
}

fn add_port(e: &mut Engine, bridge: &str, port: &str, kind: PortKind) -> Outcome {
    crate::topology::check_ifname(port)?;
    e.bridge(bridge).map_err(dp)?;
    let id = e
        .add_port(bridge, &PortSpec::new(port, kind), false)
        .map_err(dp)?;
    Ok(json!({ "bridge": bridge, "port": port, "port_no": id.0 }))
}

fn link_set(
    e: &mut Engine,
    port: &str,
    flags: &BTreeMap<String, bool>,
    vlan: Option<vbridge_datapath::VlanCfg>,
) -> Outcome {
    let (bridge, id) = e
        .find_port(port)
        .ok_or_else(|| format!("{port} is not a port of any bridge (see `vbr show`)"))?;
    let now = e.now();
    let rt = e.bridge_mut(&bridge).map_err(dp)?;
    let mut f: PortFlags = rt.core.port_config(id).map_err(err)?.flags;
    let mut stp = rt.core.port_stp_config(id).ok();
    for (name, on) in flags {
        if let (Some(s), Some(slot)) = (stp.as_mut(), stp_flag(name)) {
            *slot(s) = *on;
            continue;
        }
        let slot = match name.as_str() {
            "learning" => &mut f.learning,
            "flood" => &mut f.flood,
            "mcast_flood" => &mut f.mcast_flood,
            "bcast_flood" => &mut f.bcast_flood,
            "hairpin" => &mut f.hairpin,
            "isolated" => &mut f.isolated,
            "locked" => &mut f.locked,
            other => {
                return Err(format!(
                    "unknown port flag {other:?}: use learning, flood, mcast_flood, bcast_flood, hairpin, isolated, locked, edge, auto_edge, bpdu_guard or root_guard"
                ));
            }
        };
        *slot = *on;
    }
    let mode = vlan.map(|v| v.to_mode()).transpose().map_err(err)?;
    rt.core.set_port_flags(id, f).map_err(err)?;
    if let Some(s) = stp {
        rt.core.set_port_stp_config(now, id, s).map_err(err)?;
    }
    if let Some(m) = mode {
        rt.core.set_port_vlan(id, m).map_err(err)?;
    }
    Ok(json!({ "bridge": bridge, "port": port }))
}
