//! The engine's periodic work, all of it bounded: spanning-tree and ageing timers, what
//! the cores asked for after a change (the host MAC, BPDUs, checking the kernel fast
//! path's flows, logged STP events), and reading what the fast path carried a bounded
//! number of flows per tick.

use std::time::Duration;

use vbridge_core::{Event, PortId, StpEvent};

use super::{Engine, HOUSEKEEPING};
use crate::action::Notice;
use crate::bridge_rt::BridgeRt;
use crate::view::PortKind;

/// Flows whose kernel counters are read per housekeeping tick (per bridge).
const ACCOUNT_PER_TICK: usize = 1024;

impl Engine {
    pub(super) fn timeout(&self) -> Duration {
        let now = self.now();
        let mut next = self.next_housekeeping;
        for b in self.bridges.iter().flatten() {
            if let Some(t) = b.core.poll_at() {
                next = next.min(t);
            }
        }
        next.saturating_since(now).min(HOUSEKEEPING)
    }

    pub(super) fn timers(&mut self) {
        let now = self.now();
        for i in 0..self.bridges.len() {
            if let Some(rt) = self.bridges[i].as_mut() {
                if rt.core.poll_at().is_some_and(|t| t <= now) {
                    rt.core.handle_timeout(now);
                    self.sync_bridge(i);
                }
            }
        }
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.ticks = self.ticks.wrapping_add(1);
            let mtus = self.ticks % 4 == 0;
            let mut links = Vec::new();
            for rt in self.bridges.iter_mut().flatten() {
                links.extend(rt.tap_links_wanted(now));
                if let Some(f) = rt.fast.as_mut() {
                    f.account(now, &mut rt.core, ACCOUNT_PER_TICK);
                }
                // Readers that went away without saying so: their ports' flows may
                // go back to the kernel.
                if rt.drop_closed() {
                    rt.check_fast(now);
                }
                if mtus {
                    for p in rt.ports.iter_mut().flatten() {
                        let Some(io) = p.io.as_mut() else { continue };
                        io.maintain();
                        // TAPs live in other namespaces, out of the link notifications'
                        // sight.
                        if p.kind == PortKind::Tap {
                            if let Some(m) = io.current_mtu() {
                                p.mtu = Some(m);
                            }
                        }
                    }
                }
            }
            for n in links {
                self.notify(n);
            }
        }
    }

    /// Applies what a core asked for after a change: the host TAP follows the bridge
    /// MAC (done by the control side), BPDUs go out, the fast path's flows are checked.
    pub(super) fn sync_bridge(&mut self, i: usize) {
        let now = self.now();
        let Some(rt) = self.bridges.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        let mut notices = Vec::new();
        while let Some(ev) = rt.core.poll_event() {
            match ev {
                Event::MacChanged { new, .. } if rt.host_mac != Some(new) => {
                    rt.host_mac_asked.push((new, now));
                    notices.push(Notice::HostMac {
                        bridge: rt.name.clone(),
                        mac: new,
                    });
                }
                Event::MacChanged { .. } => {}
                Event::Aged { count } => {
                    tracing::debug!(bridge = %rt.name, count, "entries aged out")
                }
            }
        }
        while let Some(ev) = rt.core.poll_stp_event() {
            log_stp_event(rt, ev);
        }
        // Settings, timers or devices changed: the kernel's flows must still hold.
        rt.check_fast(now);
        let mut gone = Vec::new();
        rt.transmit_bpdus(&mut gone);
        for n in notices {
            self.notify(n);
        }
        for id in gone {
            self.port_gone(i, id);
        }
    }
}

/// Logs a spanning tree event with the port's name.
fn log_stp_event(rt: &BridgeRt, ev: StpEvent) {
    let name = |p: PortId| rt.port(p).map_or_else(|| p.to_string(), |p| p.name.clone());
    let b = rt.name();
    match ev {
        StpEvent::PortState { port, state } => {
            tracing::info!(bridge = b, port = %name(port), state = state.name(), "STP port state")
        }
        StpEvent::PortRole { port, role } => {
            tracing::info!(bridge = b, port = %name(port), role = role.name(), "STP port role")
        }
        StpEvent::TopologyChange { port } => {
            tracing::info!(bridge = b, port = %name(port), "STP topology change")
        }
        StpEvent::NewRoot { root, root_port } => tracing::info!(
            bridge = b,
            root = %root,
            root_port = %root_port.map_or_else(|| "none (we are root)".into(), name),
            "STP new root"
        ),
        StpEvent::BpduGuard { port } => {
            tracing::warn!(bridge = b, port = %name(port), "BPDU guard disabled the port")
        }
        StpEvent::RootGuard { port, blocking } => {
            tracing::warn!(bridge = b, port = %name(port), blocking, "root guard")
        }
        StpEvent::Protocol { port, rstp } => {
            tracing::info!(bridge = b, port = %name(port), rstp, "STP protocol of port")
        }
    }
}
