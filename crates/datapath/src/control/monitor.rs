//! The netdev monitor: a thread that follows the daemon namespace's netdevs through the
//! kernel's link notifications and passes each change to the engine as it happens (a
//! port's MAC, up/down, MTU, its device removed, renamed or moved away, a veth whose peer
//! moved). It re-attaches ports whose device came back, and once a second re-checks
//! everything as a safety net for lost notifications: every attached interface port
//! against a fresh link dump, and each namespace connection's namespace.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use vbridge_host::ledger::Ledger;
use vbridge_host::{Link, LinkEvent, LinkMonitor, Netlink};
use vbridge_ports::netdev;

use crate::action::{Action, LinkState};
use crate::bridge_rt::PortSpec;
use crate::control::backend;
use crate::handle::{Inbox, RECHECK};
use crate::view::{PortInfo, PortKind};

/// Starts the monitor in the calling thread's namespace (a new thread inherits it); it
/// ends when `stop` is set.
pub(crate) fn spawn(
    inbox: Inbox,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vbr-monitor".into())
        .spawn(move || run(&inbox, &ledger, &stop))
}

fn state(l: &Link, removed: bool) -> LinkState {
    LinkState {
        ifindex: l.index,
        name: l.name.clone(),
        mac: l.mac,
        up: l.up,
        mtu: l.mtu,
        peer_elsewhere: crate::fast::peer_elsewhere(l),
        removed,
    }
}

fn run(inbox: &Inbox, ledger: &Ledger, stop: &AtomicBool) {
    let mut mon = match LinkMonitor::new() {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(error = %e, "no link notifications; netdevs are checked once a second");
            None
        }
    };
    let mut next_check = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let wait = next_check
            .saturating_duration_since(Instant::now())
            .min(std::time::Duration::from_millis(200));
        let events = match mon.as_mut() {
            Some(m) => m.wait(wait).unwrap_or_else(|e| {
                tracing::debug!(error = %e, "reading link notifications");
                vec![LinkEvent::Overrun]
            }),
            None => {
                std::thread::sleep(wait);
                Vec::new()
            }
        };
        let mut appeared = HashSet::new();
        let mut overrun = false;
        for ev in events {
            let a = match ev {
                LinkEvent::Changed(l) => {
                    appeared.insert(l.name.clone());
                    state(&l, false)
                }
                LinkEvent::Removed(l) => state(&l, true),
                LinkEvent::Overrun => {
                    overrun = true;
                    continue;
                }
            };
            if inbox.send(Action::Link(a)).is_err() {
                return;
            }
        }
        let tick = Instant::now() >= next_check;
        if tick {
            next_check = Instant::now() + RECHECK;
        }
        if appeared.is_empty() && !tick && !overrun {
            continue;
        }
        let Ok(ports) = inbox.ask(|reply| Action::Ports { reply }) else {
            return;
        };
        if tick || overrun {
            recheck(inbox, &ports);
        }
        for p in ports.iter().filter(|p| !p.attached) {
            let back = match &p.conn {
                Some(c) => tick && crate::control::connect::netns_exists(c),
                // Netdevs vbridge makes are made again.
                None if matches!(p.kind, PortKind::VmTap | PortKind::Vxlan) => tick,
                None => {
                    p.kind == PortKind::Interface
                        && (tick || appeared.contains(&p.name))
                        && netdev::exists(&p.name).unwrap_or(false)
                }
            };
            if back {
                reattach(inbox, ledger, p);
            }
        }
    }
}

/// The safety net: every attached port checked against the kernel now.
fn recheck(inbox: &Inbox, ports: &[PortInfo]) {
    let links: Option<HashMap<String, Link>> = Netlink::new()
        .and_then(|mut nl| nl.links())
        .ok()
        .map(|ls| ls.into_iter().map(|l| (l.name.clone(), l)).collect());
    for p in ports.iter().filter(|p| p.attached) {
        if let Some(c) = &p.conn {
            if !crate::control::connect::netns_exists(c) {
                // The namespace was deleted (a TAP inside kept it alive): let it go.
                let _ = inbox.send(Action::Gone {
                    bridge: p.bridge.clone(),
                    port: p.name.clone(),
                });
                continue;
            }
        }
        // TAPs are followed by their descriptor (they may be moved to any namespace);
        // interfaces and host interfaces by their netdev here.
        if !matches!(
            p.kind,
            PortKind::Host
                | PortKind::Interface
                | PortKind::Gateway
                | PortKind::VmTap
                | PortKind::Vxlan
        ) {
            continue;
        }
        let Some(links) = links.as_ref() else {
            continue;
        };
        match links.get(&p.name) {
            Some(l) if Some(l.index) == p.ifindex => {
                let _ = inbox.send(Action::Link(state(l, false)));
            }
            _ if matches!(
                p.kind,
                PortKind::Interface | PortKind::Gateway | PortKind::VmTap | PortKind::Vxlan
            ) =>
            {
                // Deleted, or replaced by another device of the same name.
                let _ = inbox.send(Action::Gone {
                    bridge: p.bridge.clone(),
                    port: p.name.clone(),
                });
            }
            _ => {}
        }
    }
}

/// Opens a gone port's device again and offers it to the engine.
fn reattach(inbox: &Inbox, ledger: &Ledger, p: &PortInfo) {
    let mut spec = PortSpec::new(&p.name, p.kind);
    spec.conn = p.conn.clone();
    spec.vxlan = p.vxlan.clone();
    spec.socket = p.socket.clone();
    // It was accepted when it was added.
    spec.force = true;
    match backend::open(&spec, &p.bridge, ledger) {
        Ok(mut b) => {
            let bridge = p.bridge.clone();
            if let Ok(Ok(Some(fast))) = inbox.ask(|reply| Action::Fast { bridge, reply }) {
                if matches!(
                    p.kind,
                    PortKind::Interface | PortKind::VmTap | PortKind::Vxlan
                ) {
                    backend::attach_fast(&p.name, &mut b, &fast);
                }
            }
            let _ = inbox.send(Action::Reattach {
                bridge: p.bridge.clone(),
                port: p.name.clone(),
                backend: b,
            });
        }
        Err(e) => tracing::debug!(port = %p.name, error = %e, "re-attach failed"),
    }
}
