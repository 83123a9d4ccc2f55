//! The engine: every bridge and port, one epoll loop on one thread. It reads batches from
//! ready ports, runs timers, keeps the cores in step with the netdevs (MACs, up/down,
//! vanished devices) and runs control jobs between batches.

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vbridge_core::{Bridge, BridgeConfig, Event, Instant, MacAddr, PortId, StpEvent};
use vbridge_ports::{Batch, PortIo, Tap, TapOptions, netdev};

use crate::backend::{Backend, link_speed, open_backend, release};
use crate::bridge_rt::{BridgeRt, PortSpec};
use crate::error::DpError;
use crate::hostif::Quieted;
use crate::view::PortKind;

/// Token of the waker that signals control jobs.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Batches read from one port before others get their turn.
const BATCHES_PER_TURN: usize = 4;
/// How long the loop keeps polling without sleeping after it last moved a frame
/// (`VBR_BUSY_POLL_US`, default 0). A reply that arrives within this window is picked up
/// without the wake-up latency of a sleeping thread; an idle datapath sleeps.
fn busy_poll() -> Duration {
    let us = std::env::var("VBR_BUSY_POLL_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_micros(us)
}
/// How often netdevs are checked for MAC, up/down and re-appearance.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// A control job run on the datapath thread.
pub(crate) type Job = Box<dyn FnOnce(&mut Engine) + Send>;

/// The cores' clock: time since the engine started.
fn clock(origin: std::time::Instant) -> Instant {
    Instant::from_millis(origin.elapsed().as_millis() as u64)
}

fn token(bridge: usize, port: PortId) -> Token {
    Token((bridge << 16) | usize::from(port.0))
}

fn untoken(t: Token) -> (usize, PortId) {
    (t.0 >> 16, PortId((t.0 & 0xffff) as u16))
}

/// All bridges and their ports.
pub struct Engine {
    poll: Poll,
    bridges: Vec<Option<BridgeRt>>,
    names: BTreeMap<String, usize>,
    batch: Batch,
    origin: std::time::Instant,
    /// Ports with frames left after their turn.
    pending: Vec<Token>,
    next_housekeeping: Instant,
    /// When a frame was last received, for busy polling.
    last_rx: std::time::Instant,
    busy_poll: Duration,
    pub(crate) stopping: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("bridges", &self.names)
            .finish()
    }
}

impl Engine {
    pub(crate) fn new(poll: Poll) -> Engine {
        Engine {
            poll,
            bridges: Vec::new(),
            names: BTreeMap::new(),
            batch: Batch::new(Batch::DEFAULT_SIZE),
            origin: std::time::Instant::now(),
            pending: Vec::new(),
            next_housekeeping: Instant::ZERO,
            last_rx: std::time::Instant::now(),
            busy_poll: busy_poll(),
            stopping: false,
        }
    }

    /// The datapath's clock, as the cores see it.
    pub fn now(&self) -> Instant {
        clock(self.origin)
    }

    // ----- bridges -----

    /// Creates bridge `name` with its host TAP `name` (down, carrying the bridge MAC).
    pub fn add_bridge(&mut self, name: &str, config: BridgeConfig) -> Result<(), DpError> {
        if self.names.contains_key(name) {
            return Err(DpError::BridgeExists(name.to_owned()));
        }
        if self.find_port(name).is_some() {
            return Err(DpError::InvalidName {
                name: name.to_owned(),
                why: "a port of another bridge has this name",
            });
        }
        // The host interface persists, so a daemon restart (even after kill -9) finds it
        // with its addresses and routes; only `delbr` removes it.
        let (tap, existed) = Tap::open_persistent(name, TapOptions::default())
            .map_err(|e| DpError::port(name, e))?;
        if existed {
            tracing::info!(bridge = name, "host interface found from an earlier run");
        }
        tap.set_mac(config.mac.0)
            .map_err(|e| DpError::port(name, e))?;
        let index = self
            .bridges
            .iter()
            .position(Option::is_none)
            .unwrap_or_else(|| {
                self.bridges.push(None);
                self.bridges.len() - 1
            });
        let mut rt = BridgeRt::new(name, Bridge::new(config));
        let spec = PortSpec::new(name, PortKind::Host);
        let id = rt
            .insert_port(
                &spec,
                Some(Backend {
                    io: Box::new(tap),
                    mac: None,
                    quiet: Quieted::default(),
                    ifindex: None,
                }),
            )
            .map_err(|e| DpError::config(name, e))?;
        self.bridges[index] = Some(rt);
        self.names.insert(name.to_owned(), index);
        self.register(index, id)?;
        self.sync_bridge(index);
        tracing::info!(bridge = name, "bridge added");
        Ok(())
    }

    /// Removes a bridge, its host TAP and all its ports (their netdevs are left as they
    /// were before they were attached).
    pub fn del_bridge(&mut self, name: &str) -> Result<(), DpError> {
        let index = *self
            .names
            .get(name)
            .ok_or_else(|| DpError::NoSuchBridge(name.to_owned()))?;
        let mut rt = self.bridges[index]
            .take()
            .ok_or_else(|| DpError::NoSuchBridge(name.to_owned()))?;
        self.names.remove(name);
        for slot in rt.ports.iter_mut() {
            if let Some(mut p) = slot.take() {
                self.deregister(p.io.as_deref());
                release(&mut p);
            }
        }
        self.pending.retain(|t| untoken(*t).0 != index);
        tracing::info!(bridge = name, "bridge removed");
        Ok(())
    }

    /// Closes every bridge at daemon shutdown: ports are detached and their netdevs
    /// restored, but persistent host interfaces stay (with their addresses) for the next
    /// start, as a kernel bridge stays when its management daemon stops.
    pub fn close_all(&mut self) {
        for slot in self.bridges.iter_mut() {
            if let Some(mut rt) = slot.take() {
                for p in rt.ports.iter_mut().flatten() {
                    if let Some(io) = p.io.as_deref() {
                        let fd = io.as_raw_fd();
                        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
                    }
                    p.quiet.restore();
                }
            }
        }
        self.names.clear();
        self.pending.clear();
    }

    /// Names of all bridges, sorted.
    pub fn bridge_names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    /// A bridge by name.
    pub fn bridge(&self, name: &str) -> Result<&BridgeRt, DpError> {
        self.names
            .get(name)
            .and_then(|i| self.bridges[*i].as_ref())
            .ok_or_else(|| DpError::NoSuchBridge(name.to_owned()))
    }

    /// A bridge by name, to change its core's settings. Call [`Engine::sync`] after.
    pub fn bridge_mut(&mut self, name: &str) -> Result<&mut BridgeRt, DpError> {
        let i = *self
            .names
            .get(name)
            .ok_or_else(|| DpError::NoSuchBridge(name.to_owned()))?;
        self.bridges[i]
            .as_mut()
            .ok_or_else(|| DpError::NoSuchBridge(name.to_owned()))
    }

    // ----- ports -----

    /// The bridge and port number of the port called `name`, on any bridge.
    pub fn find_port(&self, name: &str) -> Option<(String, PortId)> {
        self.bridges
            .iter()
            .flatten()
            .find_map(|b| b.port_id(name).map(|id| (b.name.clone(), id)))
    }

    /// Attaches a port. For `Interface` the netdev must exist; it is brought up, made
    /// promiscuous and kept from the host's IP stack while attached. For `Tap` a TAP is
    /// created and brought up. A port may be added while its netdev is missing only when
    /// `allow_gone` (restoring configuration): it is attached when the netdev appears.
    pub fn add_port(
        &mut self,
        bridge: &str,
        spec: &PortSpec,
        allow_gone: bool,
    ) -> Result<PortId, DpError> {
        if let Some((b, _)) = self.find_port(&spec.name) {
            return Err(DpError::PortExists {
                port: spec.name.clone(),
                bridge: b,
            });
        }
        if self.names.contains_key(&spec.name) {
            return Err(DpError::InvalidName {
                name: spec.name.clone(),
                why: "that is a bridge's own interface",
            });
        }
        let index = *self
            .names
            .get(bridge)
            .ok_or_else(|| DpError::NoSuchBridge(bridge.to_owned()))?;
        let backend = match open_backend(spec) {
            Ok(b) => Some(b),
            Err(e) if allow_gone => {
                tracing::warn!(port = %spec.name, error = %e, "port kept as gone");
                None
            }
            Err(e) => return Err(e),
        };
        let rt = self.bridges[index]
            .as_mut()
            .ok_or_else(|| DpError::NoSuchBridge(bridge.to_owned()))?;
        let id = rt
            .insert_port(spec, backend)
            .map_err(|e| DpError::config(bridge, e))?;
        if spec.kind == PortKind::Interface {
            let (speed, full) = link_speed(&spec.name);
            let now = self.now();
            if let Some(rt) = self.bridges[index].as_mut() {
                let _ = rt.core.set_port_link(now, id, speed, full);
            }
        }
        self.register(index, id)?;
        self.sync_bridge(index);
        tracing::info!(bridge, port = %spec.name, no = id.0, "port added");
        Ok(id)
    }

    /// Detaches the port called `name` from its bridge.
    pub fn del_port(&mut self, bridge: &str, name: &str) -> Result<(), DpError> {
        let index = *self
            .names
            .get(bridge)
            .ok_or_else(|| DpError::NoSuchBridge(bridge.to_owned()))?;
        let rt = self.bridges[index]
            .as_mut()
            .ok_or_else(|| DpError::NoSuchBridge(bridge.to_owned()))?;
        let id = rt
            .port_id(name)
            .filter(|id| Some(*id) != rt.core.host_port())
            .ok_or_else(|| DpError::NoSuchPort(format!("{name} (on bridge {bridge})")))?;
        // Off the fast path first, with what the kernel carried for it counted.
        if let Some(p) = rt.port_mut(id) {
            p.fast = None;
        }
        rt.revalidate_fast(clock(self.origin));
        let mut p = rt
            .take_port(id)
            .ok_or_else(|| DpError::NoSuchPort(name.to_owned()))?;
        self.deregister(p.io.as_deref());
        release(&mut p);
        let t = token(index, id);
        self.pending.retain(|x| *x != t);
        self.sync_bridge(index);
        tracing::info!(bridge, port = name, "port removed");
        Ok(())
    }

    // ----- the loop -----

    /// Runs until a job sets `stopping`.
    pub(crate) fn run(&mut self, jobs: &Receiver<Job>) {
        let mut events = Events::with_capacity(256);
        while !self.stopping {
            let timeout = if self.pending.is_empty() && self.last_rx.elapsed() > self.busy_poll {
                self.timeout()
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "epoll failed");
                }
                continue;
            }
            for ev in events.iter() {
                if ev.token() != WAKER && !self.pending.contains(&ev.token()) {
                    self.pending.push(ev.token());
                }
            }
            let turn: Vec<Token> = std::mem::take(&mut self.pending);
            for t in turn {
                if self.service(t) {
                    self.pending.push(t);
                }
            }
            while let Ok(job) = jobs.try_recv() {
                job(self);
            }
            self.timers();
        }
    }

    /// Reads and forwards up to a few batches from one port; whether frames remain.
    fn service(&mut self, t: Token) -> bool {
        let (bi, port) = untoken(t);
        let now = self.now();
        let Engine {
            bridges,
            batch,
            last_rx,
            busy_poll,
            ..
        } = self;
        let Some(Some(rt)) = bridges.get_mut(bi) else {
            return false;
        };
        let mut gone = Vec::new();
        let mut more = false;
        for _ in 0..BATCHES_PER_TURN {
            let Some(io) = rt.port_mut(port).and_then(|p| p.io.as_mut()) else {
                break;
            };
            match io.recv_batch(batch) {
                Ok(0) => {
                    more = false;
                    break;
                }
                Ok(_) => {
                    more = true;
                    if !busy_poll.is_zero() {
                        *last_rx = std::time::Instant::now();
                    }
                    gone.extend(rt.forward(now, port, batch));
                }
                Err(e) if e.is_gone() => {
                    gone.push(port);
                    more = false;
                    break;
                }
                Err(e) => {
                    tracing::debug!(port = port.0, error = %e, "receive failed");
                    break;
                }
            }
        }
        for id in gone {
            self.port_gone(bi, id);
        }
        more
    }

    fn port_gone(&mut self, bi: usize, id: PortId) {
        let Some(Some(rt)) = self.bridges.get_mut(bi) else {
            return;
        };
        let bname = rt.name.clone();
        if let Some(p) = rt.port_mut(id) {
            tracing::warn!(bridge = %bname, port = %p.name, "netdev vanished; port kept as gone");
            if let Some(mut io) = p.io.take() {
                if p.conn.is_some() {
                    io.release(); // a connection's TAP must not keep a deleted namespace
                }
                let fd = io.as_raw_fd();
                let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            }
        }
        rt.mark_gone(id);
        rt.revalidate_fast(clock(self.origin));
        let t = token(bi, id);
        self.pending.retain(|x| *x != t);
    }

    fn timeout(&self) -> Duration {
        let now = self.now();
        let mut next = self.next_housekeeping;
        for b in self.bridges.iter().flatten() {
            if let Some(t) = b.core.poll_at() {
                next = next.min(t);
            }
        }
        next.saturating_since(now).min(HOUSEKEEPING)
    }

    fn timers(&mut self) {
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

    fn reattach(&mut self, bi: usize, id: PortId) {
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
    fn sync_bridge(&mut self, i: usize) {
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

    fn register(&mut self, bi: usize, id: PortId) -> Result<(), DpError> {
        let Some(fd) = self.fd_of(bi, id) else {
            return Ok(());
        };
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token(bi, id), Interest::READABLE)
            .map_err(|source| DpError::Io {
                what: "epoll registration".into(),
                source,
            })?;
        // Edge-triggered: read whatever arrived before registration.
        self.pending.push(token(bi, id));
        Ok(())
    }

    fn deregister(&self, io: Option<&dyn PortIo>) {
        if let Some(io) = io {
            let fd = io.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    fn fd_of(&self, bi: usize, id: PortId) -> Option<RawFd> {
        let rt = self.bridges.get(bi)?.as_ref()?;
        rt.port(id)?.io.as_ref().map(|io| io.as_raw_fd())
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
