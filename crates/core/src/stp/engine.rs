//! The spanning tree engine: bridge-wide variables (17.18), its inputs, BEGIN, the loop
//! that runs every machine until none changes, the one-second tick, and the queues of
//! what the bridge must do (transmit, flush) and report. Machines live in the sibling
//! files as `impl Stp` blocks over a port index.

use core::time::Duration;
use std::collections::VecDeque;

use vbridge_wire::MacAddr;
use vbridge_wire::bpdu::{self, BridgeId, Repr};

use super::port::{InfoIs, Rcvd, StpPort};
use super::vector::{Priority, Times};
use super::{StpEvent, StpMode, StpParams, StpRole, round_secs};
use crate::port::PortId;
use crate::time::Instant;

/// Migrate Time (17.13.9), seconds.
pub(crate) const MIGRATE_TIME: u16 = 3;
/// The Port Timers tick.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// Most ticks caught up in one call; a driver later than this resynchronises instead.
const MAX_CATCH_UP: u64 = 8;
/// Most passes over the machines for one input (they settle in a handful).
const MAX_ROUNDS: u32 = 256;
/// Bounds of the output queues, in case a driver never drains them.
const TX_QUEUE_MAX: usize = 4096;
const EVENT_QUEUE_MAX: usize = 4096;

/// A flush the bridge's FDB must perform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Remove the dynamic entries of this port now (RSTP).
    Port(PortId),
    /// STP's rapid ageing began or was extended (`Stp::rapid_ageing_until`).
    RapidAgeing,
}

/// Spanning tree state of one bridge.
#[derive(Debug, Clone)]
pub(crate) struct Stp {
    pub(crate) mode: StpMode,
    pub(crate) params: StpParams,
    pub(crate) bridge_mac: MacAddr,
    pub(crate) bridge_id: BridgeId,
    pub(crate) bridge_times: Times,
    pub(crate) root_priority: Priority,
    pub(crate) root_port_id: bpdu::PortId,
    pub(crate) root_times: Times,
    /// Ports in increasing id order.
    pub(crate) ports: Vec<StpPort>,
    /// The latest time an input carried.
    pub(crate) now: Instant,
    next_tick: Option<Instant>,
    pub(crate) tc_count: u64,
    pub(crate) last_tc: Option<Instant>,
    pub(crate) rapid_ageing_until: Option<Instant>,
    pub(crate) flushes: Vec<Flush>,
    tx: VecDeque<(PortId, Repr)>,
    pub(crate) tx_dropped: u64,
    events: VecDeque<StpEvent>,
    pub(crate) reported_root: Option<(BridgeId, Option<PortId>)>,
    /// Times the machines had not settled after `MAX_ROUNDS` passes (should stay 0).
    pub(crate) unsettled: u64,
}

impl Stp {
    pub(crate) fn new(mac: MacAddr) -> Stp {
        let params = StpParams::default();
        let mut s = Stp {
            mode: StpMode::Off,
            params,
            bridge_mac: mac,
            bridge_id: BridgeId::new(params.priority, mac),
            bridge_times: Times::default(),
            root_priority: Priority::default(),
            root_port_id: bpdu::PortId(0),
            root_times: Times::default(),
            ports: Vec::new(),
            now: Instant::ZERO,
            next_tick: None,
            tc_count: 0,
            last_tc: None,
            rapid_ageing_until: None,
            flushes: Vec::new(),
            tx: VecDeque::new(),
            tx_dropped: 0,
            events: VecDeque::new(),
            reported_root: None,
            unsettled: 0,
        };
        s.refresh_bridge();
        s.root_priority = Priority::of_bridge(s.bridge_id);
        s.root_times = s.bridge_times;
        s
    }

    /// Whether a protocol runs.
    #[inline]
    pub(crate) fn running(&self) -> bool {
        self.mode != StpMode::Off
    }

    /// ForceVersion ≥ 2 (17.20.11).
    pub(crate) fn rstp_version(&self) -> bool {
        self.mode == StpMode::Rstp
    }

    pub(crate) fn index(&self, id: PortId) -> Option<usize> {
        self.ports.binary_search_by_key(&id, |p| p.id).ok()
    }

    /// Bridge identifier and BridgeTimes from the parameters and MAC.
    fn refresh_bridge(&mut self) {
        self.bridge_id = BridgeId::new(self.params.priority, self.bridge_mac);
        let s = |d: Duration| round_secs(d).min(u64::from(u16::MAX)) as u16;
        self.bridge_times = Times {
            message_age: 0,
            max_age: s(self.params.max_age),
            hello: s(self.params.hello_time).max(1),
            forward_delay: s(self.params.forward_delay),
        };
    }

    // ----- inputs -----

    /// Switches protocol; any change restarts every machine (BEGIN).
    pub(crate) fn set_mode(&mut self, now: Instant, mode: StpMode) {
        self.now = self.now.max(now);
        if mode == self.mode {
            return;
        }
        self.mode = mode;
        self.tx.clear();
        if mode == StpMode::Off {
            self.next_tick = None;
            self.rapid_ageing_until = None;
            self.reported_root = None;
        } else {
            self.begin();
        }
    }

    /// New bridge parameters (already validated).
    pub(crate) fn set_params(&mut self, now: Instant, params: StpParams) {
        self.now = self.now.max(now);
        self.params = params;
        self.bridge_changed();
    }

    /// The bridge MAC changed: so did the bridge identifier.
    pub(crate) fn set_bridge_mac(&mut self, mac: MacAddr) {
        if mac != self.bridge_mac {
            self.bridge_mac = mac;
            self.bridge_changed();
        }
    }

    /// 17.13: a new bridge identifier or BridgeTimes makes every port reselect.
    fn bridge_changed(&mut self) {
        self.refresh_bridge();
        if self.running() {
            self.reselect_all();
            self.run();
        } else {
            self.root_priority = Priority::of_bridge(self.bridge_id);
            self.root_times = self.bridge_times;
        }
    }

    fn reselect_all(&mut self) {
        for p in &mut self.ports {
            p.reselect = true;
            p.selected = false;
        }
    }

    /// A port joins (in its BEGIN state when the protocol runs).
    pub(crate) fn add_port(&mut self, id: PortId, up: bool) {
        let at = match self.ports.binary_search_by_key(&id, |p| p.id) {
            Ok(_) => return,
            Err(at) => at,
        };
        self.ports.insert(at, StpPort::new(id, up));
        if self.running() {
            self.begin_port(at);
            self.run();
        }
    }

    /// A port leaves.
    pub(crate) fn remove_port(&mut self, id: PortId) {
        if let Some(i) = self.index(id) {
            self.ports.remove(i);
            self.tx.retain(|(p, _)| *p != id);
            if self.running() {
                self.reselect_all();
                self.run();
            }
        }
    }

    /// Link or administrative state; going down also clears a BPDU guard trip.
    pub(crate) fn set_port_up(&mut self, id: PortId, up: bool) {
        let Some(i) = self.index(id) else { return };
        let p = &mut self.ports[i];
        p.up = up;
        if !up {
            p.guard_tripped = false;
        }
        p.refresh_config();
        if self.running() {
            self.run();
        }
    }

    /// Settings of a port changed (already stored and validated): 17.13 reselects.
    pub(crate) fn port_config_changed(&mut self, i: usize, edge_changed: bool) {
        let p = &mut self.ports[i];
        if !p.cfg.bpdu_guard {
            p.guard_tripped = false;
        }
        p.refresh_config();
        if !self.running() {
            return;
        }
        if edge_changed {
            self.bdm_begin(i);
        }
        let p = &mut self.ports[i];
        p.reselect = true;
        p.selected = false;
        self.run();
    }

    /// A validated BPDU received on a port.
    pub(crate) fn receive(&mut self, now: Instant, i: usize, rcvd: Rcvd) {
        self.now = self.now.max(now);
        let running = self.running();
        let p = &mut self.ports[i];
        if !running || !p.port_enabled {
            return;
        }
        p.rcvd = Some(rcvd);
        p.rcvd_bpdu = true;
        self.run();
    }

    /// Trips BPDU guard on a port.
    pub(crate) fn trip_guard(&mut self, now: Instant, i: usize) {
        self.now = self.now.max(now);
        let p = &mut self.ports[i];
        if p.guard_tripped {
            return;
        }
        p.guard_tripped = true;
        p.counters.bpdu_guard_trips += 1;
        p.refresh_config();
        let port = p.id;
        self.event(StpEvent::BpduGuard { port });
        if self.running() {
            self.run();
        }
    }

    /// Forces a protocol migration check (17.19.13 `mcheck`).
    pub(crate) fn mcheck(&mut self, i: usize) {
        if self.running() && self.rstp_version() {
            self.ports[i].mcheck = true;
            self.run();
        }
    }

    // ----- time -----

    /// When the next tick is due.
    pub(crate) fn poll_at(&self) -> Option<Instant> {
        if self.running() { self.next_tick } else { None }
    }

    /// Runs the ticks due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let Some(due) = self.next_tick.filter(|_| self.running()) else {
            return;
        };
        if now < due {
            return;
        }
        let late = (now - due).as_millis() / TICK.as_millis();
        let ticks = if late as u64 >= MAX_CATCH_UP {
            self.next_tick = Some(now + TICK);
            1
        } else {
            self.next_tick = Some(due + TICK * (late as u32 + 1));
            late as u64 + 1
        };
        for _ in 0..ticks {
            for p in &mut self.ports {
                p.tick();
            }
            self.run();
        }
        if self.rapid_ageing_until.is_some_and(|t| now >= t) {
            self.rapid_ageing_until = None;
        }
    }

    // ----- BEGIN and the run loop -----

    /// Every machine to its BEGIN state, then run.
    fn begin(&mut self) {
        self.next_tick = Some(self.now + TICK);
        self.refresh_bridge();
        self.root_priority = Priority::of_bridge(self.bridge_id);
        self.root_port_id = bpdu::PortId(0);
        self.root_times = self.bridge_times;
        self.reported_root = None;
        for i in 0..self.ports.len() {
            self.begin_port(i);
        }
        self.run();
    }

    /// BEGIN for one port's machines (its Port Role Selection part included).
    fn begin_port(&mut self, i: usize) {
        let times = self.bridge_times;
        let p = &mut self.ports[i];
        p.refresh_config();
        p.port_times = times;
        p.designated_times = times;
        p.designated_priority = Priority::of_bridge(self.bridge_id);
        p.counters.begins += 1;
        self.prx_begin(i);
        self.ppm_begin(i);
        self.ports[i].reported_rstp = self.ports[i].send_rstp;
        self.bdm_begin(i);
        self.ptx_begin(i);
        self.pim_begin(i);
        self.ports[i].selected_role = StpRole::Disabled;
        self.prt_begin(i);
        self.pst_begin(i);
        self.tcm_begin(i);
    }

    /// Runs every machine of every port until none changes state (17.16: machines
    /// evaluate until all conditions are stable).
    ///
    /// Port Transmit runs only once the others have settled: nothing they test is set by
    /// it, and one BPDU then carries the outcome of a whole exchange instead of one per
    /// intermediate step, which keeps ports under Transmit Hold Count while converging.
    pub(crate) fn run(&mut self) {
        if !self.running() {
            return;
        }
        let n = self.ports.len();
        let mut rounds = 0;
        'outer: loop {
            loop {
                rounds += 1;
                if rounds > MAX_ROUNDS {
                    self.unsettled += 1;
                    break 'outer;
                }
                if !self.round() {
                    break;
                }
            }
            let mut sent = false;
            for i in 0..n {
                sent |= self.ptx_step(i);
            }
            if !sent {
                break;
            }
        }
        self.report();
    }

    /// One pass over every machine but Port Transmit; whether any changed.
    fn round(&mut self) -> bool {
        let n = self.ports.len();
        let mut changed = false;
        for i in 0..n {
            changed |= self.prx_step(i);
        }
        for i in 0..n {
            changed |= self.ppm_step(i);
        }
        for i in 0..n {
            changed |= self.bdm_step(i);
        }
        for i in 0..n {
            changed |= self.pim_step(i);
        }
        changed |= self.prs_step();
        for i in 0..n {
            changed |= self.prt_step(i);
        }
        for i in 0..n {
            changed |= self.pst_step(i);
        }
        for i in 0..n {
            changed |= self.tcm_step(i);
        }
        changed
    }

    // ----- outputs -----

    pub(crate) fn event(&mut self, e: StpEvent) {
        if self.events.len() >= EVENT_QUEUE_MAX {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    pub(crate) fn poll_event(&mut self) -> Option<StpEvent> {
        self.events.pop_front()
    }

    pub(crate) fn transmit(&mut self, port: PortId, repr: Repr) {
        if self.tx.len() >= TX_QUEUE_MAX {
            self.tx.pop_front();
            self.tx_dropped += 1;
        }
        self.tx.push_back((port, repr));
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<(PortId, Repr)> {
        self.tx.pop_front()
    }

    /// The root port, if the bridge is not the root.
    pub(crate) fn root_port(&self) -> Option<PortId> {
        if self.root_port_id.0 == 0 {
            return None;
        }
        self.ports
            .iter()
            .find(|p| p.port_id == self.root_port_id && p.info_is == InfoIs::Received)
            .map(|p| p.id)
    }

    /// Whether any port's topology change timer runs.
    pub(crate) fn topology_change(&self) -> bool {
        self.ports.iter().any(|p| p.tc_while != 0)
    }
}
