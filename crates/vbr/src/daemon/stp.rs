//! `showstp` as JSON: the spanning tree status of a bridge with port names.

use serde_json::{Value, json};
use vbridge_core::{Instant, StpState};
use vbridge_datapath::BridgeRt;

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

/// The bridge's spanning tree status, ports by name.
pub(crate) fn status_json(rt: &BridgeRt, now: Instant) -> Value {
    let s = rt.core.stp_status(now);
    let name = |p: vbridge_core::PortId| {
        rt.port_names()
            .find(|(id, _)| *id == p)
            .map_or_else(|| p.to_string(), |(_, n)| n.to_owned())
    };
    let ports: Vec<Value> = s
        .ports
        .iter()
        .map(|p| {
            // With STP off every port forwards and no role applies.
            let state = if s.mode == vbridge_core::StpMode::Off {
                StpState::Forwarding
            } else {
                p.state
            };
            json!({
                "name": name(p.port),
                "port_no": p.port.0,
                "port_id": p.port_id.to_string(),
                "state": state.name(),
                "role": p.role.name(),
                "path_cost": p.path_cost,
                "designated_root": p.designated_root.to_string(),
                "designated_bridge": p.designated_bridge.to_string(),
                "designated_port": p.designated_port.to_string(),
                "designated_cost": p.designated_cost,
                "edge": p.oper_edge,
                "admin_edge": p.admin_edge,
                "point_to_point": p.point_to_point,
                "send_rstp": p.send_rstp,
                "bpdu_guard": p.bpdu_guard,
                "bpdu_guard_tripped": p.bpdu_guard_tripped,
                "root_guard": p.root_guard,
                "root_guard_blocking": p.root_guard_blocking,
                "topology_change": p.topology_change,
                "message_age_timer": secs(p.message_age_timer),
                "forward_delay_timer": secs(p.forward_delay_timer),
                "hello_timer": secs(p.hello_timer),
                "topology_change_timer": secs(p.topology_change_timer),
                "counters": {
                    "rx_config": p.counters.rx_config, "rx_rst": p.counters.rx_rst,
                    "rx_tcn": p.counters.rx_tcn, "rx_bad": p.counters.rx_bad,
                    "tx_config": p.counters.tx_config, "tx_rst": p.counters.tx_rst,
                    "tx_tcn": p.counters.tx_tcn,
                    "state_transitions": p.counters.state_transitions,
                    "forward_transitions": p.counters.forward_transitions,
                    "tc_detected": p.counters.tc_detected,
                    "migrations": p.counters.migrations,
                    "bpdu_guard_trips": p.counters.bpdu_guard_trips,
                },
            })
        })
        .collect();
    json!({
        "bridge": rt.name(),
        "mode": s.mode,
        "bridge_id": s.bridge_id.to_string(),
        "designated_root": s.designated_root.to_string(),
        "root_port": s.root_port.map(name),
        "root_port_no": s.root_port.map_or(0, |p| p.0),
        "path_cost": s.root_path_cost,
        "max_age": secs(s.max_age),
        "hello_time": secs(s.hello_time),
        "forward_delay": secs(s.forward_delay),
        "bridge_max_age": secs(s.bridge_max_age),
        "bridge_hello_time": secs(s.bridge_hello_time),
        "bridge_forward_delay": secs(s.bridge_forward_delay),
        "ageing_time": secs(s.ageing_time),
        "topology_change": s.topology_change,
        "topology_change_count": s.topology_change_count,
        "time_since_topology_change": s.time_since_topology_change.map(secs),
        "ports": ports,
    })
}
