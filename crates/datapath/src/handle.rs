//! [`Datapath`]: the public face of the datapath. It starts the forwarding thread (the
//! engine), the reaper and the netdev monitor, and offers typed operations. Each does
//! its host work on the caller's thread (creating TAPs and veths, entering namespaces,
//! loading BPF programs) and then sends the engine one short [`Action`]; the engine's
//! state is reachable no other way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Waker};
use vbridge_core::{BridgeConfig, MacAddr, PortId, Vid};
use vbridge_host::ledger::Ledger;
use vbridge_ports::FastPath;

use crate::action::{Action, Reply};
use crate::bridge_rt::PortSpec;
use crate::config::Config;
use crate::control::backend::{self, Backend};
use crate::control::{monitor, reaper};
use crate::engine::{Engine, WAKER};
use crate::error::DpError;
use crate::observe::{Captured, Direction};
use crate::settings::{Change, Changed};
use crate::view::{BridgeView, FdbRow, PortInfo, PortKind, StpView, TraceView};

/// The way into the engine: its action queue and the waker that rouses it.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    tx: Sender<Action>,
    waker: Arc<Waker>,
}

impl Inbox {
    /// Queues an action without waiting for it.
    pub(crate) fn send(&self, a: Action) -> Result<(), DpError> {
        self.tx.send(a).map_err(|_| DpError::Stopped)?;
        self.waker.wake().map_err(|_| DpError::Stopped)
    }

    /// Queues an action and waits for its answer.
    pub(crate) fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Action) -> Result<T, DpError> {
        let (tx, rx) = sync_channel(1);
        self.send(make(tx))?;
        rx.recv().map_err(|_| DpError::Stopped)
    }
}

/// A running datapath.
#[derive(Debug)]
pub struct Datapath {
    inbox: Inbox,
    ledger: Arc<Ledger>,
    engine: Option<JoinHandle<()>>,
    reaper: Option<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
    stop_monitor: Arc<AtomicBool>,
    died: Arc<AtomicBool>,
}

impl Datapath {
    /// Starts the forwarding thread with no bridges, the reaper, and the netdev monitor
    /// in the calling thread's network namespace. What it makes or changes on the host
    /// is recorded in `ledger` first.
    pub fn start(ledger: Arc<Ledger>) -> Result<Datapath, DpError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| DpError::Io { what, source }
        };
        let poll = Poll::new().map_err(io("epoll_create"))?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(io("eventfd"))?);
        let (tx, rx) = channel::<Action>();
        let inbox = Inbox { tx, waker };
        let (notices_tx, notices_rx) = channel();
        let reaper = reaper::spawn(notices_rx, Arc::clone(&ledger), inbox.clone())
            .map_err(io("spawning the reaper thread"))?;
        let died = Arc::new(AtomicBool::new(false));
        let died2 = Arc::clone(&died);
        let engine = std::thread::Builder::new()
            .name("vbr-datapath".into())
            .spawn(move || {
                let mut engine = Engine::new(poll, notices_tx);
                let run =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.run(&rx)));
                if run.is_err() {
                    died2.store(true, Ordering::SeqCst);
                    tracing::error!("the forwarding thread panicked; forwarding has stopped");
                }
                // Whatever is left closes with the engine.
                drop(engine);
            })
            .map_err(io("spawning the datapath thread"))?;
        let stop_monitor = Arc::new(AtomicBool::new(false));
        let monitor = match monitor::spawn(
            inbox.clone(),
            Arc::clone(&ledger),
            Arc::clone(&stop_monitor),
        ) {
            Ok(m) => m,
            Err(e) => {
                // The reaper holds the inbox too: only `Stop` ends the engine (and so
                // the reaper).
                let _ = inbox.send(Action::Stop);
                return Err(io("spawning the netdev monitor")(e));
            }
        };
        Ok(Datapath {
            inbox,
            ledger,
            engine: Some(engine),
            reaper: Some(reaper),
            monitor: Some(monitor),
            stop_monitor,
            died,
        })
    }

    /// Whether the forwarding thread died (a bug): forwarding has stopped.
    pub fn died(&self) -> bool {
        self.died.load(Ordering::SeqCst)
            || self.engine.as_ref().is_some_and(JoinHandle::is_finished)
    }

    // ----- bridges -----

    /// Creates bridge `name` and its host interface `name` (a persistent TAP carrying
    /// the bridge MAC, down). A device of that name that vbridge did not make is refused.
    pub fn add_bridge(&self, name: &str, config: BridgeConfig) -> Result<(), DpError> {
        if self.bridge_exists(name)? {
            return Err(DpError::BridgeExists(name.to_owned()));
        }
        let host = backend::create_host(name, config.mac, &self.ledger).map_err(|e| match e {
            DpError::Port {
                source: vbridge_ports::PortError::Exists { .. },
                ..
            } => DpError::NotOurs {
                name: name.to_owned(),
                place: "this namespace".into(),
            },
            other => other,
        })?;
        self.add_bridge_with(name, config, host)
    }

    fn add_bridge_with(
        &self,
        name: &str,
        mut config: BridgeConfig,
        host: Backend,
    ) -> Result<(), DpError> {
        if config.fdb_seed == 0 {
            config.fdb_seed = random_seed();
        }
        let name2 = name.to_owned();
        let r = self.inbox.ask(|reply| Action::AddBridge {
            name: name2,
            config,
            host: Some(host),
            reply,
        })?;
        r.map_err(|refused| {
            if let Some(b) = refused.backend {
                backend::discard(name, name, PortKind::Host, *b, &self.ledger);
            }
            refused.error
        })
    }

    /// Creates bridge `name` with no host interface: frames for the bridge's own
    /// addresses are dropped (`no_host_port`). For switches that only join ports, and
    /// for driving the datapath without privileges (with [`Datapath::add_socket_port`]).
    pub fn add_bridge_without_host(
        &self,
        name: &str,
        mut config: BridgeConfig,
    ) -> Result<(), DpError> {
        vbridge_wire::ifname::check(name).map_err(|e| DpError::InvalidName {
            name: name.to_owned(),
            why: e.reason,
        })?;
        if config.fdb_seed == 0 {
            config.fdb_seed = random_seed();
        }
        let name2 = name.to_owned();
        self.inbox
            .ask(|reply| Action::AddBridge {
                name: name2,
                config,
                host: None,
                reply,
            })?
            .map_err(|r| r.error)
    }

    /// Attaches a backend the caller opened (a socket pair, say) as port `name` of
    /// `bridge`. Such a port is not saved: it lives as long as the daemon.
    pub fn add_socket_port(
        &self,
        bridge: &str,
        name: &str,
        io: Box<dyn vbridge_ports::PortIo>,
    ) -> Result<PortId, DpError> {
        self.check_new_port(bridge, name)?;
        let (bridge2, spec) = (bridge.to_owned(), PortSpec::new(name, PortKind::Socket));
        let mut b = Backend::plain(io);
        b.mac = b.io.mac().ok();
        self.inbox
            .ask(|reply| Action::AddPort {
                bridge: bridge2,
                spec: Box::new(spec),
                backend: Some(b),
                reply,
            })?
            .map_err(|r| r.error)
    }

    /// Removes a bridge, its host interface and all its ports (their netdevs are left as
    /// they were before they were attached; what vbridge made for them goes).
    pub fn del_bridge(&self, name: &str) -> Result<(), DpError> {
        let name = name.to_owned();
        let ports = self
            .inbox
            .ask(|reply| Action::DelBridge { name, reply })??;
        ports
            .into_iter()
            .for_each(|p| backend::release(p, &self.ledger));
        Ok(())
    }

    fn bridge_exists(&self, name: &str) -> Result<bool, DpError> {
        match self.bridges(Some(name)) {
            Ok(_) => Ok(true),
            Err(DpError::NoSuchBridge(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ----- ports -----

    /// Attaches a port: an existing netdev (`Interface`, brought up, promiscuous and
    /// kept from the host's IP stack while attached), a new TAP (`Tap`), or a namespace
    /// connection (`spec.conn`). With `allow_gone` (restoring configuration), a port
    /// whose device cannot be opened is kept as gone and attached when it appears.
    pub fn add_port(
        &self,
        bridge: &str,
        spec: &PortSpec,
        allow_gone: bool,
    ) -> Result<PortId, DpError> {
        self.check_new_port(bridge, &spec.name)?;
        let mut spec = spec.clone();
        let mut link_later = None;
        let opened = match backend::open(&spec, bridge, &self.ledger) {
            Ok(mut b) => {
                if let Some(fast) = self.fast_for(bridge, &spec, &b) {
                    link_later = backend::attach_fast_filter(&spec.name, &mut b, &fast)
                        .map(|ifindex| (fast, ifindex));
                }
                if let Some(c) = &b.conn {
                    spec.conn = Some((**c).clone());
                }
                Some(b)
            }
            Err(e) if allow_gone => {
                tracing::warn!(port = %spec.name, error = %e, "port kept as gone");
                None
            }
            Err(e) => return Err(e),
        };
        let bridge2 = bridge.to_owned();
        let spec2 = spec.clone();
        let r = self.inbox.ask(|reply| Action::AddPort {
            bridge: bridge2,
            spec: Box::new(spec2),
            backend: opened,
            reply,
        })?;
        let id = r.map_err(|refused| {
            if let Some(b) = refused.backend {
                backend::discard(bridge, &spec.name, spec.kind, *b, &self.ledger);
            }
            refused.error
        })?;
        if let Some((fast, ifindex)) = link_later {
            self.link_fast(bridge, &spec.name, fast, ifindex);
        }
        Ok(id)
    }

    /// Links a new port's netdev to the fast path on a thread of its own (the kernel
    /// waits for an RCU grace period) and hands the link to the engine; the port
    /// forwards through the switch meanwhile.
    fn link_fast(&self, bridge: &str, port: &str, fast: Arc<FastPath>, ifindex: u32) {
        let (inbox, bridge, name) = (self.inbox.clone(), bridge.to_owned(), port.to_owned());
        let linking = std::thread::Builder::new()
            .name("vbr-fastlink".into())
            .spawn(move || match fast.link(ifindex) {
                Ok(f) => {
                    let _ = inbox.send(Action::SetPortFast {
                        bridge,
                        port: name,
                        ifindex,
                        fast: f,
                        path: fast,
                    });
                }
                Err(e) => {
                    tracing::info!(port = %name, error = %e, "port stays off the kernel fast path");
                }
            });
        if let Err(e) = linking {
            tracing::info!(%port, error = %e, "port stays off the kernel fast path");
        }
    }

    /// Refuses early what the engine would refuse, before any device is made.
    fn check_new_port(&self, bridge: &str, name: &str) -> Result<(), DpError> {
        self.bridges(Some(bridge))?;
        let ports = self.ports()?;
        if let Some(p) = ports.iter().find(|p| p.name == name) {
            return Err(DpError::PortExists {
                port: name.to_owned(),
                bridge: p.bridge.clone(),
            });
        }
        if ports
            .iter()
            .any(|p| p.kind == PortKind::Host && p.bridge == name)
        {
            return Err(DpError::InvalidName {
                name: name.to_owned(),
                why: "that is a bridge's own interface",
            });
        }
        Ok(())
    }

    /// The fast path of `bridge` for a new port with backend `b`, made on first need.
    fn fast_for(&self, bridge: &str, spec: &PortSpec, b: &Backend) -> Option<Arc<FastPath>> {
        let netdev = matches!(
            spec.kind,
            PortKind::Interface | PortKind::VmTap | PortKind::Vxlan
        );
        if b.ifindex.is_none() || !netdev {
            return None;
        }
        let bridge2 = bridge.to_owned();
        if let Ok(Ok(Some(f))) = self.inbox.ask(|reply| Action::Fast {
            bridge: bridge2,
            reply,
        }) {
            return Some(f);
        }
        let fast = crate::fast::make(bridge)?;
        self.inbox
            .send(Action::SetFast {
                bridge: bridge.to_owned(),
                fast: Arc::clone(&fast),
            })
            .ok()?;
        Some(fast)
    }

    /// Detaches port `name` from `bridge` and undoes what vbridge made for it.
    pub fn del_port(&self, bridge: &str, name: &str) -> Result<(), DpError> {
        let (bridge, port) = (bridge.to_owned(), name.to_owned());
        let retired = self.inbox.ask(|reply| Action::DelPort {
            bridge,
            port,
            reply,
        })??;
        backend::release(retired, &self.ledger);
        Ok(())
    }

    // ----- settings and queries -----

    /// Changes a setting of `bridge` or one of its ports.
    pub fn change(&self, bridge: &str, change: Change) -> Result<Changed, DpError> {
        let bridge = bridge.to_owned();
        self.inbox.ask(|reply| Action::Change {
            bridge,
            change,
            reply,
        })?
    }

    /// Adds a static FDB entry.
    pub fn fdb_add(&self, bridge: &str, mac: MacAddr, vid: Vid, port: &str) -> Result<(), DpError> {
        self.change(
            bridge,
            Change::FdbAdd {
                mac,
                vid,
                port: port.to_owned(),
            },
        )
        .map(drop)
    }

    /// Every bridge (sorted by name), or the one named.
    pub fn bridges(&self, bridge: Option<&str>) -> Result<Vec<BridgeView>, DpError> {
        let bridge = bridge.map(str::to_owned);
        self.inbox.ask(|reply| Action::Bridges { bridge, reply })?
    }

    /// A bridge's FDB, sorted by port then MAC.
    pub fn fdb(&self, bridge: &str) -> Result<Vec<FdbRow>, DpError> {
        let bridge = bridge.to_owned();
        self.inbox.ask(|reply| Action::Fdb { bridge, reply })?
    }

    /// A bridge's spanning tree status.
    pub fn stp(&self, bridge: &str) -> Result<StpView, DpError> {
        let bridge = bridge.to_owned();
        self.inbox.ask(|reply| Action::Stp { bridge, reply })?
    }

    /// What bridge `bridge` would do with `frame` arriving on `port`, step by step,
    /// changing nothing.
    pub fn trace(&self, bridge: &str, port: &str, frame: Vec<u8>) -> Result<TraceView, DpError> {
        let (bridge, port) = (bridge.to_owned(), port.to_owned());
        self.inbox.ask(|reply| Action::Trace {
            bridge,
            port,
            frame,
            reply,
        })?
    }

    /// Starts capturing the frames of `port` (on whichever bridge it is) in direction
    /// `dir`; while the session lives, the port's flows stay out of the kernel fast path.
    pub fn capture(&self, port: &str, dir: Direction) -> Result<CaptureSession, DpError> {
        let (tx, rx) = sync_channel(CAPTURE_QUEUE);
        let port2 = port.to_owned();
        let (bridge, id) = self.inbox.ask(|reply| Action::CaptureStart {
            port: port2,
            dir,
            tx,
            reply,
        })??;
        Ok(CaptureSession {
            inbox: self.inbox.clone(),
            port: port.to_owned(),
            bridge,
            id,
            rx,
            done: false,
        })
    }

    /// Starts a live trace of `bridge`'s decisions (of frames entering `port`, if given).
    pub fn trace_live(&self, bridge: &str, port: Option<&str>) -> Result<LiveSession, DpError> {
        let (tx, rx) = sync_channel(LIVE_QUEUE);
        let (bridge2, port) = (bridge.to_owned(), port.map(str::to_owned));
        let id = self.inbox.ask(|reply| Action::LiveStart {
            bridge: bridge2,
            port,
            tx,
            reply,
        })??;
        Ok(LiveSession {
            inbox: self.inbox.clone(),
            bridge: bridge.to_owned(),
            id,
            rx,
        })
    }

    /// The configuration of everything now.
    pub fn snapshot(&self) -> Result<Config, DpError> {
        self.inbox.ask(|reply| Action::Snapshot { reply })
    }

    /// The bridge and port called `name`, on any bridge.
    pub fn find_port(&self, name: &str) -> Result<Option<(String, PortKind)>, DpError> {
        Ok(self
            .ports()?
            .into_iter()
            .find(|p| p.name == name && p.kind != PortKind::Host)
            .map(|p| (p.bridge, p.kind)))
    }

    /// Every port of every bridge.
    pub(crate) fn ports(&self) -> Result<Vec<PortInfo>, DpError> {
        self.inbox.ask(|reply| Action::Ports { reply })
    }

    /// Every namespace connection: (bridge, port, connection).
    pub fn connections(&self) -> Result<Vec<(String, String, crate::Connection)>, DpError> {
        Ok(self
            .ports()?
            .into_iter()
            .filter_map(|p| Some((p.bridge, p.name, p.conn?)))
            .collect())
    }

    /// Closes every bridge at daemon shutdown: ports are detached and their netdevs
    /// restored, but persistent host interfaces and connections stay (with their
    /// addresses) for the next start, as a kernel bridge stays when its management daemon
    /// stops.
    pub fn close_all(&self) -> Result<(), DpError> {
        let ports = self.inbox.ask(|reply| Action::CloseAll { reply })?;
        ports
            .into_iter()
            .for_each(|p| backend::close(p, &self.ledger));
        Ok(())
    }

    /// Builds `config` on a datapath that has none of its bridges yet. Ports whose
    /// netdev is missing are kept as gone; errors are collected and returned, not fatal.
    pub fn restore(&self, config: &Config) -> Vec<DpError> {
        crate::restore::restore(self, config)
    }

    pub(crate) fn add_restored_bridge(
        &self,
        name: &str,
        config: BridgeConfig,
        host_ifindex: Option<u32>,
    ) -> Result<(), DpError> {
        let host = backend::open_host(name, config.mac, host_ifindex, &self.ledger)?;
        self.add_bridge_with(name, config, host)
    }

    /// The ledger of what was made on the host.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Stops every thread, closing every port (persistent devices stay).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop_monitor.store(true, Ordering::SeqCst);
        if let Some(t) = self.monitor.take() {
            let _ = t.join();
        }
        let _ = self.inbox.send(Action::Stop);
        if let Some(t) = self.engine.take() {
            let _ = t.join();
        }
        // The reaper ends when the engine's notice sender is gone.
        if let Some(t) = self.reaper.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Datapath {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Captured frames the forwarding thread may queue for a reader.
const CAPTURE_QUEUE: usize = 4096;
/// Live-trace lines it may queue.
const LIVE_QUEUE: usize = 1024;

/// What a session's reader gets next.
#[derive(Debug)]
pub enum Next<T> {
    Item(T),
    /// Nothing within the wait.
    Quiet,
    /// The port or bridge went away (or the datapath stopped).
    Ended,
}

fn next<T>(rx: &Receiver<T>, wait: Duration) -> Next<T> {
    match rx.recv_timeout(wait) {
        Ok(x) => Next::Item(x),
        Err(RecvTimeoutError::Timeout) => Next::Quiet,
        Err(RecvTimeoutError::Disconnected) => Next::Ended,
    }
}

/// A capture of one port's frames; it ends when dropped (or finished).
#[derive(Debug)]
pub struct CaptureSession {
    inbox: Inbox,
    port: String,
    /// The bridge the port is on.
    pub bridge: String,
    id: u64,
    rx: Receiver<Captured>,
    done: bool,
}

impl CaptureSession {
    /// The next captured frame, waiting up to `wait`.
    pub fn next(&self, wait: Duration) -> Next<Captured> {
        next(&self.rx, wait)
    }

    /// Ends the capture; the frames the forwarding thread had to drop for want of room.
    pub fn finish(mut self) -> u64 {
        self.done = true;
        let (port, id) = (self.port.clone(), self.id);
        self.inbox
            .ask(|reply| Action::CaptureStop {
                port,
                id,
                reply: Some(reply),
            })
            .unwrap_or(0)
    }
}

impl Drop for CaptureSession {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.inbox.send(Action::CaptureStop {
                port: self.port.clone(),
                id: self.id,
                reply: None,
            });
        }
    }
}

/// A live trace of a bridge's decisions; it ends when dropped.
#[derive(Debug)]
pub struct LiveSession {
    inbox: Inbox,
    bridge: String,
    id: u64,
    rx: Receiver<String>,
}

impl LiveSession {
    /// The next line, waiting up to `wait`.
    pub fn next(&self, wait: Duration) -> Next<String> {
        next(&self.rx, wait)
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let _ = self.inbox.send(Action::LiveStop {
            bridge: self.bridge.clone(),
            id: self.id,
        });
    }
}

/// A random FDB hash key (from the standard library's per-process random hash keys).
fn random_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now()) | 1
}

/// How long the monitor waits between full re-checks of the netdevs.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);
