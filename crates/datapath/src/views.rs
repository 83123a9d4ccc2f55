//! Builds the serializable views of a bridge from its core and port backends.

use std::collections::BTreeMap;

use vbridge_core::{DropCounters, EntryKind, Instant, PortId, VlanMode};

use crate::bridge_rt::BridgeRt;
use crate::view::{BridgeView, CountersView, FdbRow, PortState, PortView, VlanView};

fn drops_map(d: &DropCounters) -> BTreeMap<String, u64> {
    d.nonzero().map(|(r, n)| (r.name().to_owned(), n)).collect()
}

fn hex_mac(m: vbridge_core::MacAddr) -> String {
    m.0.iter().map(|b| format!("{b:02x}")).collect()
}

impl BridgeRt {
    /// The bridge as `vbr show` presents it.
    pub fn view(&self) -> BridgeView {
        let prio = self.core.stp_params().priority;
        let c = &self.core;
        let s = c.stats();
        let mut ports = Vec::new();
        for (id, name) in self.port_names() {
            let (Ok(cfg), Ok(counters)) = (c.port_config(id), c.port_counters(id)) else {
                continue;
            };
            let Some(rt) = self.port(id) else { continue };
            let state = if rt.io.is_none() {
                PortState::Gone
            } else if cfg.up {
                PortState::Up
            } else {
                PortState::Down
            };
            ports.push(PortView {
                name: name.to_owned(),
                port_no: id.0,
                kind: rt.kind,
                state,
                stp_state: c
                    .port_stp_state(id)
                    .map(|s| s.name())
                    .unwrap_or("?")
                    .to_owned(),
                mac: cfg.mac.map(|m| m.to_string()),
                vlan: match &cfg.vlan {
                    VlanMode::Access(v) => VlanView::Access { vid: v.get() },
                    VlanMode::Trunk { allowed, native } => VlanView::Trunk {
                        allowed: allowed.to_string(),
                        native: native.map(|n| n.get()),
                    },
                },
                flags: cfg.flags,
                max_learned: cfg.max_learned,
                learned: c.port_learned(id).unwrap_or(0),
                netns: rt.conn.as_ref().map(|c| c.netns.clone()),
                ifname: rt.conn.as_ref().map(|c| c.ifname.clone()),
                fast_path: rt.fast.is_some(),
                counters: CountersView {
                    rx_packets: counters.rx_packets,
                    rx_bytes: counters.rx_bytes,
                    tx_packets: counters.tx_packets,
                    tx_bytes: counters.tx_bytes,
                    rx_flooded: counters.rx_flooded,
                    tx_flooded: counters.tx_flooded,
                    rx_control: counters.rx_control,
                    drops: drops_map(&counters.drops),
                },
            });
        }
        BridgeView {
            name: self.name.clone(),
            bridge_id: format!("{prio:04x}.{}", hex_mac(c.mac())),
            mac: c.mac().to_string(),
            mac_fixed: c.mac_fixed(),
            stp: c.stp_enabled(),
            vlan_filtering: c.vlan_filtering(),
            ageing_secs: c.ageing().as_secs_f64(),
            fdb_entries: s.fdb_entries,
            fdb_learned: s.fdb_learned,
            fdb_moves: s.fdb_moves,
            fdb_limit_hits: s.fdb_limit_hits,
            fast_flows: self.fast_flows(),
            drops: drops_map(&s.drops),
            ports,
        }
    }

    /// The FDB as `vbr showmacs` lists it, sorted by port then MAC.
    pub fn fdb_rows(&self, now: Instant) -> Vec<FdbRow> {
        let host = self.core.host_port();
        let mut rows: Vec<FdbRow> = self
            .core
            .fdb_entries(now)
            .map(|e| {
                let port = if e.kind == EntryKind::Local && self.port(e.port).is_none() {
                    host.unwrap_or(PortId(0))
                } else {
                    e.port
                };
                let name = self
                    .port(port)
                    .map(|p| p.name.clone())
                    .unwrap_or_else(|| self.name.clone());
                FdbRow {
                    port: name,
                    port_no: port.0,
                    mac: e.mac.to_string(),
                    vlan: e.vid.map(|v| v.get()),
                    kind: e.kind.name().to_owned(),
                    is_local: e.kind == EntryKind::Local,
                    ageing_timer: e.age.as_secs_f64(),
                }
            })
            .collect();
        rows.sort_by(|a, b| (a.port_no, &a.mac, a.vlan).cmp(&(b.port_no, &b.mac, b.vlan)));
        rows
    }
}
