//! The engine: every bridge and port, one epoll loop on one thread. It reads batches from
//! ready ports, adds and removes bridges and ports, and runs control jobs between
//! batches; timers and keeping the cores in step with the netdevs are in `housekeeping`.

mod housekeeping;

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vbridge_core::{Bridge, BridgeConfig, Instant, PortId};
use vbridge_ports::{Batch, PortIo, Tap, TapOptions};

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
