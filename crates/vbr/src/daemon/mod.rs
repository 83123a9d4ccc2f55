//! `vbr daemon`: owns the datapath, serves the JSON API on a UNIX socket, persists the
//! configuration after every change (and when the netdevs change it, e.g. a bridge MAC
//! set by hand), restores it at start, and shuts down cleanly on SIGTERM/SIGINT.

mod errors;
mod handler;
mod server;
mod store;
mod wiring;

pub(crate) use wiring::ConnectArgs;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use vbridge_datapath::{Config, Datapath};

use crate::api::{ApiError, ErrorKind, Request, Response, UpDone};
use store::Store;

/// Where the daemon listens and keeps its state.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) socket: PathBuf,
    pub(crate) state_dir: PathBuf,
}

/// What connection threads share.
pub(crate) struct Shared {
    dp: Datapath,
    store: Store,
    /// What each `vbr up` made; held while an up or down runs.
    topologies: Mutex<store::Topologies>,
    /// The configuration last saved; held while a change is applied and saved, so
    /// changes are saved in the order they were made.
    saved: Mutex<Config>,
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
        match req {
            Request::Up { name, plan } => return self.up(name, plan),
            Request::Down { name } => return self.down(name),
            _ => {}
        }
        let mutates = req.mutates();
        let mut saved = if mutates {
            Some(self.saved.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            None
        };
        let out = handler::apply(&self.dp, req);
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

    /// `vbr up`: applies the plan, records what it made (merged with earlier runs of the
    /// same topology), saves both. A failure part-way leaves what was made recorded, so
    /// `vbr down` can still remove it.
    fn up(&self, name: String, plan: crate::topology::Plan) -> Response {
        let mut tops = self.topologies.lock().unwrap_or_else(|p| p.into_inner());
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        let mut made = wiring::Made::default();
        let result = wiring::up(&self.dp, &plan, &mut made);
        let changed = !made.is_empty();
        tops.entry(name.clone()).or_default().merge(made);
        if let Err(e) = self.save_both(&tops, &mut saved) {
            return Response::err(ApiError::new(
                ErrorKind::HostFailure,
                format!("applied, but saving the configuration failed: {e:#}"),
            ));
        }
        match result {
            Ok(()) => Response::ok(UpDone {
                topology: name,
                changed,
            }),
            Err(e) => Response::err(ApiError::new(e.kind, format!("{name}: {}", e.message))),
        }
    }

    /// `vbr down`: removes exactly what `up` of this topology made.
    fn down(&self, name: String) -> Response {
        let mut tops = self.topologies.lock().unwrap_or_else(|p| p.into_inner());
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        let Some(made) = tops.get(&name).cloned() else {
            let known: Vec<&str> = tops.keys().map(String::as_str).collect();
            return Response::err(ApiError::new(
                ErrorKind::NotFound,
                if known.is_empty() {
                    format!("nothing was brought up from {name} (see `vbr up`)")
                } else {
                    format!(
                        "nothing was brought up from {name}; brought up: {} (`vbr down` takes one of these paths, even if the file has moved)",
                        known.join(", ")
                    )
                },
            ));
        };
        let problems = wiring::down(&self.dp, &made);
        if problems.is_empty() {
            tops.remove(&name);
        }
        if let Err(e) = self.save_both(&tops, &mut saved) {
            return Response::err(ApiError::new(
                ErrorKind::HostFailure,
                format!("removed, but saving the configuration failed: {e:#}"),
            ));
        }
        if problems.is_empty() {
            Response::ok(crate::api::Done {})
        } else {
            Response::err(ApiError::new(
                ErrorKind::HostFailure,
                format!(
                    "{name}: some objects could not be removed (the record is kept; run `vbr down` again to retry): {}",
                    problems.join("; ")
                ),
            ))
        }
    }

    /// Saves the record of `vbr up` and the engine's configuration.
    fn save_both(&self, tops: &store::Topologies, saved: &mut Config) -> Result<()> {
        self.store.save_topologies(tops)?;
        self.persist(saved)
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
    let store = Store::new(&opts.state_dir)?;
    let config = store.load()?;
    let topologies = store.load_topologies()?;
    let listener = server::bind(&opts.socket)?;
    let dp = Datapath::start().context("starting the datapath")?;
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
    let shared = Arc::new(Shared {
        dp,
        topologies: Mutex::new(topologies),
        store,
        saved: Mutex::new(config),
    });
    {
        let mut saved = shared.saved.lock().unwrap_or_else(|p| p.into_inner());
        shared.persist(&mut saved)?;
    }
    spawn_persister(Arc::clone(&shared));
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
            let mut saved = shared.saved.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = shared.persist(&mut saved) {
                tracing::warn!(error = %format!("{e:#}"), "cannot save configuration");
            }
        }
    });
}

impl Shared {
    /// Final save, then every bridge is closed (ports detached and restored; host
    /// interfaces stay for the next start).
    /// The lock on the saved configuration is held until the process exits, so no
    /// request or periodic save can record the closed (empty) engine.
    pub(crate) fn shutdown(&self, socket: &std::path::Path) -> ! {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.persist(&mut saved) {
            tracing::error!(error = %format!("{e:#}"), "cannot save configuration at shutdown");
        }
        let _ = self.dp.close_all();
        let _ = std::fs::remove_file(socket);
        std::process::exit(0)
    }
}
