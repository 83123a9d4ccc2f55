//! `vbr daemon`: owns the datapath, serves the JSON API on a UNIX socket, persists the
//! configuration after every change (and when the netdevs change it, e.g. a bridge MAC
//! set by hand), restores it at start, and shuts down cleanly on SIGTERM/SIGINT.

mod dhcp;
mod errors;
mod handler;
mod limits;
mod metrics;
mod server;
mod store;
mod stream;
mod up;
mod wiring;

pub(crate) use dhcp::LeaseView;
pub(crate) use wiring::ConnectArgs;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use vbridge_datapath::{Config, Datapath};

use crate::api::{ApiError, ErrorKind, Request, Response};
use store::Store;

/// Where the daemon listens and keeps its state.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) socket: PathBuf,
    pub(crate) state_dir: PathBuf,
    /// Serve Prometheus metrics here (`--metrics`).
    pub(crate) metrics: Option<std::net::SocketAddr>,
}

/// What connection threads share.
pub(crate) struct Shared {
    dp: Datapath,
    store: Store,
    /// The configuration last saved; held while a change is applied and saved, so
    /// changes are made one at a time and saved in the order they were made.
    saved: Mutex<Config>,
    /// API requests counted for the metrics.
    api_metrics: metrics::ApiMetrics,
    /// The bridges' DHCP servers.
    dhcp: dhcp::Dhcp,
}

impl Shared {
    /// Runs one request; saves the configuration after a change.
    pub(crate) fn execute(&self, req: Request) -> Response {
        if self.dp.died() {
            return Response::err(ApiError::new(
                ErrorKind::Unavailable,
                "the forwarding thread has stopped (a bug: see the daemon's log); restart the daemon",
            ));
        }
        let mutates = req.mutates();
        let mut saved = if mutates {
            Some(self.saved.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            None
        };
        let out = match req {
            Request::Up { name, plan } => up::up(&self.dp, &self.dhcp, &name, &plan)
                .map_err(|e| ApiError::new(e.kind, format!("{name}: {}", e.message)))
                .and_then(|done| {
                    serde_json::to_value(done)
                        .map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
                }),
            Request::Down { name } => {
                up::down(&self.dp, &self.dhcp, &name).map(|()| serde_json::json!({}))
            }
            Request::DhcpLeases { bridge } => self.dhcp.leases(&bridge).and_then(|l| {
                serde_json::to_value(l)
                    .map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
            }),
            Request::Connect(args) if args.dhcp && !self.dhcp.running(&args.bridge) => {
                Err(ApiError::invalid(format!(
                    "--dhcp: bridge {} has no DHCP server (give it one with [bridge.dhcp] in a topology)",
                    args.bridge
                )))
            }
            Request::Delbr { bridge } => {
                let r = handler::apply(
                    &self.dp,
                    Request::Delbr {
                        bridge: bridge.clone(),
                    },
                );
                if r.is_ok() {
                    self.dhcp.stop(&bridge, true);
                }
                r
            }
            req => handler::apply(&self.dp, req),
        };
        if let Some(saved) = saved.as_mut() {
            if let Err(e) = self.persist(saved) {
                tracing::error!(error = %format!("{e:#}"), "cannot save configuration");
                return Response::err(ApiError::new(
                    ErrorKind::HostFailure,
                    format!("applied, but saving the configuration failed: {e:#}"),
                ));
            }
        }
        match out {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        }
    }

    /// Saves the engine's configuration if it differs from what was saved.
    fn persist(&self, saved: &mut Config) -> Result<()> {
        let now = self.dp.snapshot()?;
        if now != *saved {
            self.store.save(&now)?;
            *saved = now;
        }
        Ok(())
    }
}

/// Runs the daemon until a signal stops it.
pub(crate) fn run(opts: Options) -> Result<()> {
    let store = Store::open(&opts.state_dir, &opts.socket)?;
    if let Some((old, new)) = limits::raise_nofile() {
        if old != new {
            tracing::info!(from = old, to = new, "descriptor limit raised");
        }
    }
    for (cap, what) in limits::missing_capabilities() {
        tracing::warn!("missing capability {cap}: {what} will fail");
    }
    let config = store.load()?;
    let ledger = Arc::new(store.ledger()?);
    if let Some(old) = store.take_topologies()? {
        up::migrate(&ledger, old);
    }
    let listener = server::bind(&opts.socket)?;
    let dp = Datapath::start(ledger).context("starting the datapath")?;
    let problems: Vec<String> = dp
        .restore(&config)
        .iter()
        .map(|e| errors::describe(e))
        .collect();
    if !problems.is_empty() {
        // What could not be restored would vanish from the next save: keep a copy.
        let kept = store
            .keep_copy()
            .context("keeping a copy of the configuration")?;
        for p in &problems {
            tracing::warn!("restoring configuration: {p}");
        }
        tracing::warn!(copy = %kept.display(), "part of the configuration could not be restored; the full file is kept");
    }
    let dhcp = dhcp::Dhcp::open(&opts.state_dir, |b| dp.bridges(Some(b)).is_ok());
    for line in up::recover(&dp, &dhcp) {
        tracing::info!("recovery: {line}");
    }
    let shared = Arc::new(Shared {
        dp,
        store,
        saved: Mutex::new(config),
        api_metrics: metrics::ApiMetrics::default(),
        dhcp,
    });
    {
        let mut saved = shared.saved.lock().unwrap_or_else(|p| p.into_inner());
        shared.persist(&mut saved)?;
    }
    if let Some(addr) = opts.metrics {
        metrics::serve(addr, Arc::clone(&shared))?;
    }
    spawn_persister(Arc::clone(&shared));
    spawn_watchdog(Arc::clone(&shared), opts.socket.clone());
    server::spawn_signal_handler(Arc::clone(&shared), opts.socket.clone())?;
    tracing::info!(socket = %opts.socket.display(), state = %opts.state_dir.display(), "vbr daemon ready");
    server::serve(listener, shared);
    Ok(())
}

/// Saves changes the netdevs made (MAC set by hand, ...) every two seconds.
fn spawn_persister(shared: Arc<Shared>) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(2));
            if shared.dp.died() {
                return; // what it would read now is no longer the truth
            }
            let mut saved = shared.saved.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = shared.persist(&mut saved) {
                tracing::warn!(error = %format!("{e:#}"), "cannot save configuration");
            }
        }
    });
}

/// Ends the daemon (exit code 70) if the forwarding thread dies: a supervisor restarts
/// it, and the configuration saved last brings everything back.
fn spawn_watchdog(shared: Arc<Shared>, socket: std::path::PathBuf) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if shared.dp.died() {
                tracing::error!("the forwarding thread died; the daemon stops (exit code 70)");
                shared.shutdown(&socket);
            }
        }
    });
}

impl Shared {
    /// Final save, then every bridge is closed (ports detached and restored; host
    /// interfaces stay for the next start).
    /// The lock on the saved configuration is held until the process exits, so no
    /// request or periodic save can record the closed (empty) engine.
    /// Exits with 0, or with 70 when the forwarding thread had died (then nothing is
    /// saved: the last saved configuration is the truth).
    pub(crate) fn shutdown(&self, socket: &std::path::Path) -> ! {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        let died = self.dp.died();
        if !died {
            if let Err(e) = self.persist(&mut saved) {
                tracing::error!(error = %format!("{e:#}"), "cannot save configuration at shutdown");
            }
            let _ = self.dp.close_all();
        }
        let _ = std::fs::remove_file(socket);
        // Let the log thread write what is queued.
        std::thread::sleep(Duration::from_millis(50));
        std::process::exit(if died { 70 } else { 0 })
    }
}
