//! What `brctl showstp` (and `mstpctl showport`) print: the bridge's view of the tree,
//! and per port its identifiers, state, role, designated information, flags, timers and
//! counters; and the events that report changes of them.

use core::time::Duration;

use vbridge_wire::bpdu::{self, BridgeId};

use super::engine::Stp;
use super::port::StpPort;
use super::{StpEvent, StpMode, StpRole};
use crate::port::{PortId, StpState};
use crate::time::Instant;

/// BPDU and state counters of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StpPortCounters {
    pub rx_config: u64,
    pub rx_rst: u64,
    pub rx_tcn: u64,
    /// BPDUs refused (unreadable, implausible timers, our own looped back, ...).
    pub rx_bad: u64,
    /// Received BPDUs with the TC flag.
    pub rx_tc: u64,
    pub tx_config: u64,
    pub tx_rst: u64,
    pub tx_tcn: u64,
    /// Changes between discarding, learning and forwarding.
    pub state_transitions: u64,
    /// Times the port started forwarding.
    pub forward_transitions: u64,
    /// Topology changes this port detected (started forwarding as a non-edge port).
    pub tc_detected: u64,
    /// FDB flushes (or rapid ageing) this port triggered.
    pub flushes: u64,
    /// Fallbacks to STP BPDUs for an 802.1D peer.
    pub migrations: u64,
    pub bpdu_guard_trips: u64,
    /// Times the port's machines were (re)started.
    pub begins: u64,
}

/// One port's spanning tree status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StpPortStatus {
    pub port: PortId,
    /// The port identifier in BPDUs (priority and number).
    pub port_id: bpdu::PortId,
    pub state: StpState,
    pub role: StpRole,
    /// The path cost in use (configured, or from the link speed).
    pub path_cost: u32,
    pub designated_root: BridgeId,
    pub designated_cost: u32,
    pub designated_bridge: BridgeId,
    pub designated_port: bpdu::PortId,
    pub admin_edge: bool,
    pub auto_edge: bool,
    pub oper_edge: bool,
    pub point_to_point: bool,
    /// Sending RST BPDUs (false: STP BPDUs, by mode or for an 802.1D peer).
    pub send_rstp: bool,
    pub bpdu_guard: bool,
    /// BPDU guard disabled the port.
    pub bpdu_guard_tripped: bool,
    pub root_guard: bool,
    /// Root guard is keeping the port discarding.
    pub root_guard_blocking: bool,
    /// TC flag in the BPDUs this port sends (tcWhile running).
    pub topology_change: bool,
    /// Time left before received information expires (`rcvdInfoWhile`).
    pub message_age_timer: Duration,
    pub forward_delay_timer: Duration,
    pub hello_timer: Duration,
    pub topology_change_timer: Duration,
    pub counters: StpPortCounters,
}

/// The bridge's spanning tree status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StpStatus {
    pub mode: StpMode,
    pub bridge_id: BridgeId,
    pub designated_root: BridgeId,
    pub root_port: Option<PortId>,
    pub root_path_cost: u32,
    /// Timers in use (the root's).
    pub max_age: Duration,
    pub hello_time: Duration,
    pub forward_delay: Duration,
    /// This bridge's own timers.
    pub bridge_max_age: Duration,
    pub bridge_hello_time: Duration,
    pub bridge_forward_delay: Duration,
    pub tx_hold_count: u8,
    /// The FDB ageing time in effect (forward delay during STP's rapid ageing).
    pub ageing_time: Duration,
    pub topology_change: bool,
    pub topology_change_count: u64,
    pub time_since_topology_change: Option<Duration>,
    /// BPDUs dropped because the driver did not drain [`crate::Bridge::poll_transmit`].
    pub tx_queue_drops: u64,
    /// Inputs after which the state machines had not settled within their bound
    /// (a bug if ever non-zero; the engine carries on).
    pub unsettled_runs: u64,
    pub ports: Vec<StpPortStatus>,
}

fn secs(s: u16) -> Duration {
    Duration::from_secs(u64::from(s))
}

impl Stp {
    pub(crate) fn status(&self, now: Instant, ageing: Duration) -> StpStatus {
        let running = self.running();
        let rapid = self.rapid_ageing_until.is_some_and(|t| now < t);
        StpStatus {
            mode: self.mode,
            bridge_id: self.bridge_id,
            designated_root: self.root_priority.root,
            root_port: self.root_port(),
            root_path_cost: self.root_priority.cost,
            max_age: secs(self.root_times.max_age),
            hello_time: secs(self.root_times.hello),
            forward_delay: secs(self.root_times.forward_delay),
            bridge_max_age: secs(self.bridge_times.max_age),
            bridge_hello_time: secs(self.bridge_times.hello),
            bridge_forward_delay: secs(self.bridge_times.forward_delay),
            tx_hold_count: self.params.tx_hold_count,
            ageing_time: if rapid && running {
                secs(self.root_times.forward_delay)
            } else {
                ageing
            },
            topology_change: running && self.topology_change(),
            topology_change_count: self.tc_count,
            time_since_topology_change: self.last_tc.map(|t| now - t),
            tx_queue_drops: self.tx_dropped,
            unsettled_runs: self.unsettled,
            ports: self
                .ports
                .iter()
                .map(|p| port_status(p, running, !self.rstp_version()))
                .collect(),
        }
    }
}

impl Stp {
    /// Events for what changed since the last report.
    pub(crate) fn report(&mut self) {
        let stp_mode = !self.rstp_version();
        let mut out = Vec::new();
        for p in &mut self.ports {
            let state = p.state(stp_mode);
            if state != p.reported_state {
                p.reported_state = state;
                out.push(StpEvent::PortState { port: p.id, state });
            }
            if p.role != p.reported_role {
                p.reported_role = p.role;
                out.push(StpEvent::PortRole {
                    port: p.id,
                    role: p.role,
                });
            }
            if p.port_enabled && p.send_rstp != p.reported_rstp {
                p.reported_rstp = p.send_rstp;
                if self.mode == StpMode::Rstp {
                    out.push(StpEvent::Protocol {
                        port: p.id,
                        rstp: p.send_rstp,
                    });
                }
            }
        }
        let root = (self.root_priority.root, self.root_port());
        if self.reported_root != Some(root) {
            self.reported_root = Some(root);
            out.push(StpEvent::NewRoot {
                root: root.0,
                root_port: root.1,
            });
        }
        for e in out {
            self.event(e);
        }
    }
}

fn port_status(p: &StpPort, running: bool, stp_mode: bool) -> StpPortStatus {
    StpPortStatus {
        port: p.id,
        port_id: p.port_id,
        state: if running {
            p.state(stp_mode)
        } else {
            StpState::Forwarding
        },
        role: p.role,
        path_cost: p.path_cost,
        designated_root: p.port_priority.root,
        designated_cost: p.port_priority.cost,
        designated_bridge: p.port_priority.bridge,
        designated_port: p.port_priority.port,
        admin_edge: p.cfg.admin_edge,
        auto_edge: p.cfg.auto_edge,
        oper_edge: p.oper_edge,
        point_to_point: p.oper_p2p,
        send_rstp: p.send_rstp,
        bpdu_guard: p.cfg.bpdu_guard,
        bpdu_guard_tripped: p.guard_tripped,
        root_guard: p.cfg.root_guard,
        root_guard_blocking: p.root_guard_blocking,
        topology_change: p.tc_while != 0,
        message_age_timer: secs(p.rcvd_info_while),
        forward_delay_timer: secs(p.fd_while),
        hello_timer: secs(p.hello_when),
        topology_change_timer: secs(p.tc_while),
        counters: p.counters,
    }
}
