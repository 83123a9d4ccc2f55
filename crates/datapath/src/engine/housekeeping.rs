//! The engine's housekeeping: spanning-tree and ageing timers, the once-a-second check
//! of every netdev (MAC, up/down, vanished and returning devices, veths moved), and
//! applying what the cores asked for after a change (host MAC, BPDUs, the kernel fast
//! path's flows, logged STP events).

use std::time::Duration;

use vbridge_core::{Event, MacAddr, PortId, StpEvent};
use vbridge_ports::netdev;

use super::{Engine, HOUSEKEEPING, clock};
use crate::backend::open_backend;
use crate::bridge_rt::{BridgeRt, PortSpec};
use crate::view::PortKind;

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
            self.refresh();
        }
    }

    /// Brings every core in step with its netdevs now: MAC changes (including the host
    /// interface's MAC set by hand, which fixes the bridge MAC), up/down, vanished and
    /// re-appeared devices. Runs every second, and before showing state.
    pub fn refresh(&mut self) {
        for i in 0..self.bridges.len() {
            let mut reattach = Vec::new();
            let mut gone = Vec::new();
            let Some(rt) = self.bridges[i].as_mut() else {
                continue;
            };
            let host = rt.core.host_port();
            let ids: Vec<PortId> = rt.port_names().map(|(id, _)| id).collect();
            for id in ids {
                let Some(p) = rt.port(id) else { continue };
                let Some(io) = p.io.as_ref() else {
                    let back = match &p.conn {
                        Some(c) => crate::connect::netns_exists(c),
                        None => {
                            p.kind == PortKind::Interface
                                && netdev::exists(&p.name).unwrap_or(false)
                        }
                    };
                    if back {
                        reattach.push(id);
                    }
                    continue;
                };
                if p.conn
                    .as_ref()
                    .is_some_and(|c| !crate::connect::netns_exists(c))
                {
                    // The namespace was deleted (our TAP kept it alive): let it go.
                    gone.push(id);
                    continue;
                }
                if p.ifindex.is_some() && netdev::ifindex(&p.name).ok() != p.ifindex {
                    // Deleted, or deleted and made again: drop the old socket, attach anew.
                    gone.push(id);
                    continue;
                }
                let mac = io.mac().ok().map(MacAddr);
                let up = netdev::is_up(&p.name).unwrap_or(true);
                let kind = p.kind;
                if rt.core.port_config(id).map(|c| c.up).ok() != Some(up) {
                    let _ = rt.core.set_port_up(id, up);
                }
                if Some(id) == host {
                    if let Some(m) = mac.filter(|m| *m != rt.core.mac()) {
                        tracing::info!(bridge = %rt.name, mac = %m, "bridge MAC set by hand");
                        let _ = rt.core.set_mac(Some(m));
                    }
                } else if kind == PortKind::Interface {
                    let cur = rt.core.port_config(id).ok().and_then(|c| c.mac);
                    if mac.is_some() && mac != cur {
                        let _ = rt.core.set_port_mac(id, mac);
                    }
                }
            }
            rt.recheck_fast();
            for id in gone {
                self.port_gone(i, id);
            }
            for id in reattach {
                self.reattach(i, id);
            }
            self.sync_bridge(i);
        }
    }

    pub(super) fn reattach(&mut self, bi: usize, id: PortId) {
        let Some(Some(rt)) = self.bridges.get_mut(bi) else {
            return;
        };
        let Some(p) = rt.port_mut(id) else { return };
        let mut spec = PortSpec::new(&p.name, p.kind);
        spec.conn = p.conn.clone();
        match open_backend(&spec) {
            Ok(b) => {
                let mac = b.mac;
                p.attach(b);
                rt.attach_fast(id);
                tracing::info!(port = %spec.name, "netdev is back; port re-attached");
                let _ = rt.core.set_port_mac(id, mac);
                let _ = rt.core.set_port_up(id, true);
                if let Err(e) = self.register(bi, id) {
                    tracing::warn!(error = %e, "re-attach failed");
                }
            }
            Err(e) => tracing::debug!(port = %spec.name, error = %e, "re-attach failed"),
        }
    }

    /// Applies what a core asked for after a change (the host TAP follows the bridge MAC).
    pub(super) fn sync_bridge(&mut self, i: usize) {
        let Some(rt) = self.bridges[i].as_mut() else {
            return;
        };
        while let Some(ev) = rt.core.poll_event() {
            match ev {
                Event::MacChanged { new, .. } => {
                    if let Err(e) = netdev::set_mac(&rt.name, new.0) {
                        tracing::warn!(bridge = %rt.name, error = %e, "cannot give the host interface the bridge MAC");
                    }
                }
                Event::Aged { count } => {
                    tracing::debug!(bridge = %rt.name, count, "entries aged out")
                }
            }
        }
        while let Some(ev) = rt.core.poll_stp_event() {
            log_stp_event(rt, ev);
        }
        // Settings, timers or devices changed: the kernel's flows must still hold.
        rt.revalidate_fast(clock(self.origin));
        let mut gone = Vec::new();
        rt.transmit_bpdus(&mut gone);
        for id in gone {
            self.port_gone(i, id);
        }
    }

    /// Applies pending core events of every bridge (after control jobs changed settings).
    pub fn sync(&mut self) {
        for i in 0..self.bridges.len() {
            self.sync_bridge(i);
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
