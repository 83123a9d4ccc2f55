//! `vbr daemon`: owns the datapath, serves the JSON API on a UNIX socket, persists the
//! configuration after every change (and when the netdevs change it, e.g. a bridge MAC
//! set by hand), restores it at start, and shuts down cleanly on SIGTERM/SIGINT.

mod handler;
mod server;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use vbridge_datapath::{Config, Datapath};

use crate::api::{Request, Response};
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
    /// The configuration last saved; held while a change is applied and saved, so
    /// changes are saved in the order they were made.
    saved: Mutex<Config>,
}

impl Shared {
    /// Runs one request; saves the configuration after a change.
    pub(crate) fn execute(&self, req: Request) -> Response {
        let mutates = req.mutates();
        let mut saved = if mutates {
            Some(self.saved.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            None
        };
        let out = match self.dp.call(move |e| handler::apply(e, req)) {
            Ok(out) => out,
            Err(e) => return Response::err(e.to_string()),
        };
        if let Some(saved) = saved.as_mut() {
            if let Err(e) = self.persist(saved) {
                tracing::error!(error = %format!("{e:#}"), "cannot save configuration");
                return Response::err(format!(
                    "applied, but saving the configuration failed: {e:#}"
                ));
            }
        }
        match out {
            Ok(v) => Response::ok(v),
            Err(msg) => Response::err(msg),
        }
    }

    /// Saves the engine's configuration if it differs from what was saved.
    fn persist(&self, saved: &mut Config) -> Result<()> {
        let now = self.dp.call(|e| e.snapshot())?;
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
    let dp = Datapath::start().context("starting the datapath")?;
    let restore = config.clone();
    let problems = dp.call(move |e| {
        e.restore(&restore)
            .into_iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    })?;
    for p in problems {
        tracing::warn!("restoring configuration: {p}");
    }
    let listener = server::bind(&opts.socket)?;
    let shared = Arc::new(Shared {
        dp,
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
    pub(crate) fn shutdown(&self) {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.persist(&mut saved) {
            tracing::error!(error = %format!("{e:#}"), "cannot save configuration at shutdown");
        }
        let _ = self.dp.call(|e| e.close_all());
    }
}
