//! The engine: every bridge and port, one epoll loop on the forwarding thread. It reads
//! batches from ready ports and, between batches, carries out the typed [`Action`]s the
//! control side sends (`apply`), runs the timers and keeps the cores in step with the
//! netdevs (`housekeeping`, `links`). Nothing here waits for the host: no netlink, no
//! namespace, no file or sysctl, no descriptor whose closing takes the RTNL lock (those
//! go back to the control side as [`Notice`]s or [`crate::action::Retired`] ports).

mod apply;
mod housekeeping;
mod links;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::RawFd;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use vbridge_core::{Instant, PortId};
use vbridge_ports::{Batch, PortIo};

use crate::action::{Action, Notice};
use crate::bridge_rt::BridgeRt;
use crate::error::DpError;

/// Token of the waker that signals actions.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// Batches read from one port before others get their turn.
const BATCHES_PER_TURN: usize = 4;
/// Actions carried out between two rounds of the ports, at most.
const ACTIONS_PER_TURN: usize = 64;
/// How often the periodic work runs: fast-path accounting, and the core's clock when no
/// timer is due sooner.
const HOUSEKEEPING: Duration = Duration::from_millis(250);

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

/// All bridges and their ports. Reachable only through [`Action`]s.
pub(crate) struct Engine {
    poll: Poll,
    pub(crate) bridges: Vec<Option<BridgeRt>>,
    names: BTreeMap<String, usize>,
    /// Attached ports by the ifindex of their netdev in the daemon's namespace.
    by_ifindex: HashMap<u32, (usize, PortId)>,
    batch: Batch,
    origin: std::time::Instant,
    /// Ports with frames left after their turn.
    pending: Vec<Token>,
    next_housekeeping: Instant,
    /// When a frame was last received, for busy polling.
    last_rx: std::time::Instant,
    busy_poll: Duration,
    /// Actions left for the next turn.
    more_actions: bool,
    /// Housekeeping rounds so far.
    ticks: u64,
    /// The last id given to a capture or live trace.
    last_id: u64,
    notices: Sender<Notice>,
    stopping: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("bridges", &self.names)
            .finish()
    }
}

impl Engine {
    pub(crate) fn new(poll: Poll, notices: Sender<Notice>) -> Engine {
        Engine {
            poll,
            bridges: Vec::new(),
            names: BTreeMap::new(),
            by_ifindex: HashMap::new(),
            batch: Batch::new(Batch::DEFAULT_SIZE),
            origin: std::time::Instant::now(),
            pending: Vec::new(),
            next_housekeeping: Instant::ZERO,
            last_rx: std::time::Instant::now(),
            busy_poll: busy_poll(),
            more_actions: false,
            ticks: 0,
            last_id: 0,
            notices,
            stopping: false,
        }
    }

    /// The datapath's clock, as the cores see it.
    pub(crate) fn now(&self) -> Instant {
        clock(self.origin)
    }

    /// Hands `n` to the control side (which outlives the engine; if it is gone, the
    /// daemon is ending and dropping here is all that is left).
    fn notify(&self, n: Notice) {
        let _ = self.notices.send(n);
    }

    /// Runs until [`Action::Stop`] or until the control side hangs up.
    pub(crate) fn run(&mut self, actions: &Receiver<Action>) {
        let mut events = Events::with_capacity(256);
        while !self.stopping {
            let idle = self.pending.is_empty()
                && !self.more_actions
                && self.last_rx.elapsed() > self.busy_poll;
            let timeout = if idle { self.timeout() } else { Duration::ZERO };
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
            self.more_actions = false;
            for n in 0.. {
                if n == ACTIONS_PER_TURN {
                    self.more_actions = true;
                    break;
                }
                match actions.try_recv() {
                    Ok(a) => self.act(a),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        self.stopping = true;
                        break;
                    }
                }
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

    /// A port's device went away: the port stays, without a backend, until it is back.
    fn port_gone(&mut self, bi: usize, id: PortId) {
        let now = self.now();
        let Some(Some(rt)) = self.bridges.get_mut(bi) else {
            return;
        };
        let Some(p) = rt.port(id) else { return };
        if p.io.is_none() {
            return;
        }
        tracing::warn!(bridge = %rt.name, port = %p.name, "netdev vanished; port kept as gone");
        let release = p.conn.is_some();
        let ifindex = p.ifindex;
        let (io, fast) = rt.mark_gone(id);
        rt.check_fast(now);
        self.deregister(io.as_deref());
        if let Some(i) = ifindex {
            self.by_ifindex.remove(&i);
        }
        let t = token(bi, id);
        self.pending.retain(|x| *x != t);
        self.notify(Notice::Dispose { io, fast, release });
    }

    /// Registers an attached port with epoll and the ifindex index.
    fn register(&mut self, bi: usize, id: PortId) -> Result<(), DpError> {
        let Some((fd, ifindex)) = self.fd_of(bi, id) else {
            return Ok(());
        };
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token(bi, id), Interest::READABLE)
            .map_err(|source| DpError::Io {
                what: "epoll registration".into(),
                source,
            })?;
        if let Some(i) = ifindex {
            self.by_ifindex.insert(i, (bi, id));
        }
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

    fn fd_of(&self, bi: usize, id: PortId) -> Option<(RawFd, Option<u32>)> {
        let rt = self.bridges.get(bi)?.as_ref()?;
        let p = rt.port(id)?;
        p.io.as_ref().map(|io| (io.as_raw_fd(), p.ifindex))
    }

    fn index_of(&self, bridge: &str) -> Result<usize, DpError> {
        self.names
            .get(bridge)
            .copied()
            .filter(|i| self.bridges.get(*i).is_some_and(Option::is_some))
            .ok_or_else(|| DpError::NoSuchBridge(bridge.to_owned()))
    }

    fn bridge(&self, name: &str) -> Result<&BridgeRt, DpError> {
        let i = self.index_of(name)?;
        self.bridges[i]
            .as_ref()
            .ok_or_else(|| DpError::NoSuchBridge(name.to_owned()))
    }

    /// The bridge and port number of the port called `name`, on any bridge.
    fn find_port(&self, name: &str) -> Option<(usize, PortId)> {
        self.bridges
            .iter()
            .enumerate()
            .find_map(|(i, b)| b.as_ref()?.port_id(name).map(|id| (i, id)))
    }
}
