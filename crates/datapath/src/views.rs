//! Builds the plain-data views of a bridge from its core and port backends (on the
//! forwarding thread, in answer to a query).

use std::collections::BTreeMap;

use vbridge_core::{DropCounters, EntryKind, Instant, PortId, VlanMode};

use crate::bridge_rt::BridgeRt;
use crate::view::{
    BridgeView, CountersView, FdbRow, PortInfo, PortState, PortView, StpPortView, StpView,
    TraceStep, TraceView, VlanView,
};

fn drops_map(d: &DropCounters) -> BTreeMap<String, u64> {
    d.nonzero().map(|(r, n)| (r.name().to_owned(), n)).collect()
}

fn hex_mac(m: vbridge_core::MacAddr) -> String {
    m.0.iter().map(|b| format!("{b:02x}")).collect()
}

impl BridgeRt {
    /// The bridge as `vbr show` presents it.
    pub(crate) fn view(&self) -> BridgeView {
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
                addresses: rt
                    .conn
                    .as_ref()
                    .map(|c| c.addresses.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                gateway: rt
                    .conn
                    .as_ref()
                    .and_then(|c| c.gateway.map(|g| g.to_string())),
                mtu: rt.mtu,
                socket: rt.socket.as_ref().map(|p| p.display().to_string()),
                fast_path: rt.fast.is_some(),
                backend_drops: rt.io.as_ref().map_or(0, |io| io.rx_dropped()),
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
            fast_floods: self.fast.as_ref().map_or(0, crate::fast::Fast::floods),
            fast_frames: self.fast.as_ref().map_or(0, |f| f.carried().0),
            fast_bytes: self.fast.as_ref().map_or(0, |f| f.carried().1),
            drops: drops_map(&s.drops),
            ports,
        }
    }

    /// The FDB as `vbr showmacs` lists it, sorted by port then MAC.
    pub(crate) fn fdb_rows(&self, now: Instant) -> Vec<FdbRow> {
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

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

impl BridgeRt {
    /// The spanning tree status, ports by name.
    pub(crate) fn stp_view(&self, now: Instant) -> StpView {
        let s = self.core.stp_status(now);
        let name = |p: PortId| {
            self.port(p)
                .map_or_else(|| p.to_string(), |p| p.name.clone())
        };
        let ports = s
            .ports
            .iter()
            .map(|p| StpPortView {
                name: name(p.port),
                port_no: p.port.0,
                port_id: p.port_id.to_string(),
                // With STP off every port forwards.
                state: if s.mode == vbridge_core::StpMode::Off {
                    vbridge_core::StpState::Forwarding.name().to_owned()
                } else {
                    p.state.name().to_owned()
                },
                role: p.role.name().to_owned(),
                path_cost: p.path_cost,
                designated_root: p.designated_root.to_string(),
                designated_bridge: p.designated_bridge.to_string(),
                designated_port: p.designated_port.to_string(),
                designated_cost: p.designated_cost,
                edge: p.oper_edge,
                admin_edge: p.admin_edge,
                point_to_point: p.point_to_point,
                send_rstp: p.send_rstp,
                bpdu_guard: p.bpdu_guard,
                bpdu_guard_tripped: p.bpdu_guard_tripped,
                root_guard: p.root_guard,
                root_guard_blocking: p.root_guard_blocking,
                topology_change: p.topology_change,
                message_age_timer: secs(p.message_age_timer),
                forward_delay_timer: secs(p.forward_delay_timer),
                hello_timer: secs(p.hello_timer),
                topology_change_timer: secs(p.topology_change_timer),
                counters: p.counters,
            })
            .collect();
        StpView {
            bridge: self.name.clone(),
            mode: s.mode,
            bridge_id: s.bridge_id.to_string(),
            designated_root: s.designated_root.to_string(),
            root_port: s.root_port.map(name),
            root_port_no: s.root_port.map_or(0, |p| p.0),
            path_cost: s.root_path_cost,
            max_age: secs(s.max_age),
            hello_time: secs(s.hello_time),
            forward_delay: secs(s.forward_delay),
            bridge_max_age: secs(s.bridge_max_age),
            bridge_hello_time: secs(s.bridge_hello_time),
            bridge_forward_delay: secs(s.bridge_forward_delay),
            ageing_time: secs(s.ageing_time),
            topology_change: s.topology_change,
            topology_change_count: s.topology_change_count,
            time_since_topology_change: s.time_since_topology_change.map(secs),
            ports,
        }
    }

    /// The ports as the control side watches them.
    pub(crate) fn port_infos(&self) -> impl Iterator<Item = PortInfo> + '_ {
        self.ports.iter().flatten().map(|p| PortInfo {
            bridge: self.name.clone(),
            name: p.name.clone(),
            kind: p.kind,
            attached: p.io.is_some(),
            ifindex: p.ifindex,
            conn: p.conn.clone(),
            vxlan: p.vxlan.clone(),
            socket: p.socket.clone(),
        })
    }
}

impl BridgeRt {
    /// What the core would do with `frame` arriving on port `port`, step by step (from
    /// the same code that forwards), with the kernel fast path's view of its flow.
    pub(crate) fn trace(
        &mut self,
        now: Instant,
        port: &str,
        frame: &[u8],
    ) -> Result<TraceView, crate::DpError> {
        let id = self
            .port_id(port)
            .ok_or_else(|| crate::DpError::NotOnBridge {
                port: port.to_owned(),
                bridge: self.name.clone(),
            })?;
        let e = self.core.explain(now, id, frame);
        let name = |p: PortId| crate::bridge_rt::port_label(&self.ports, p);
        let steps = e
            .steps
            .iter()
            .map(|s| TraceStep {
                step: s.kind().to_owned(),
                port: s.port().map(name),
                text: s.describe(&name),
            })
            .collect();
        Ok(TraceView {
            bridge: self.name.clone(),
            ingress: port.to_owned(),
            frame: vbridge_wire::summarize(frame),
            steps,
            verdict: vbridge_core::trace::verdict_text(&e.decision, &name),
            decision: e.decision.describe(&name),
            fast_path: self.fast_path_view(id, frame, &e.decision),
        })
    }

    /// Whether the flow of `frame` (decided as `d`) is in the kernel, would be after
    /// this frame, or why it stays in the switch.
    fn fast_path_view(&self, ingress: PortId, frame: &[u8], d: &vbridge_core::Decision) -> String {
        let Some(fast) = self.fast.as_ref() else {
            return "no kernel fast path on this bridge (no veth port, or turned off)".into();
        };
        // On the fast path as the fast path itself sees it (linked, attached, not watched).
        let on = |p: PortId| crate::fast::fast_ifindex(&self.ports, p).is_some();
        let Ok(eth) = vbridge_wire::ethernet::Frame::new_checked(frame) else {
            return "stays in the switch: not a whole Ethernet header".into();
        };
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        let Some(tag) = crate::fast::kernel_tag(frame) else {
            return "stays in the switch: the kernel program leaves frames with two tags, 802.1ad or priority tags to the switch".into();
        };
        let vid = tag.map_or(0, vbridge_core::Vid::get);
        let in_if = self.port(ingress).and_then(|p| p.ifindex);
        if fast.holds(in_if, vid, src, dst) {
            return "in the kernel fast path now: the kernel forwards this flow".into();
        }
        let flood = d.delivery == Some(vbridge_core::Delivery::FloodBroadcast);
        let untagged_len = frame.len() - if tag.is_some() { 4 } else { 0 };
        if flood && fast.floods_for(in_if, vid, untagged_len) {
            return "flooded by the kernel now: it sends the copies, the switch learns from the header".into();
        }
        if !on(ingress) {
            return "stays in the switch: the ingress port is not on the fast path (not an interface port read through AF_PACKET, such as a TAP vbridge holds, a host port or VLAN gateway not linked yet, or captured or traced live)".into();
        }
        match (d.egress.as_slice(), d.delivery) {
            ([e], Some(vbridge_core::Delivery::KnownUnicast | vbridge_core::Delivery::Local)) => {
                if crate::fast::egress_via(&self.ports, e.port).is_none() {
                    return "stays in the switch: the egress port is not on the fast path".into();
                }
                match self.core.offload_target(ingress, tag, src, dst) {
                    Some(t) if t.egress == e.port => {
                        "would be handed to the kernel once a frame of it is forwarded".into()
                    }
                    _ => "stays in the switch: the core keeps it (a setting that needs it)".into(),
                }
            }
            _ if flood => {
                if crate::fast::at_egress(&self.ports, ingress) {
                    "stays in the switch: the host's broadcasts are flooded by the switch, which must see them whole".into()
                } else if fast.can_flood(&self.core, &self.ports, ingress, tag) {
                    "would be flooded by the kernel once a broadcast of this port and tag is forwarded".into()
                } else {
                    "stays in the switch: a port it is flooded to is not on the fast path, or the flood depends on more than port and tag".into()
                }
            }
            _ => "stays in the switch: only known unicast to one port and broadcasts go to the kernel".into(),
        }
    }
}
