//! The API socket: binding with the right permissions, one thread per connection, line
//! framing with a size limit, and the signal handler that stops the daemon.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::Shared;
use crate::api::{MAX_REQUEST, Request, Response};

/// The gid of group `vbridge`, if the system has one.
fn vbridge_gid() -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == "vbridge").then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Binds the socket: refuses if another daemon answers there, replaces a stale one,
/// and lets only root (and group `vbridge`, if present) connect.
pub(super) fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another vbr daemon is already listening on {}",
                path.display()
            );
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    let mode = match vbridge_gid() {
        Some(gid) => {
            std::os::unix::fs::chown(path, Some(0), Some(gid))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(l)
}

/// Accepts connections forever, one thread each.
pub(super) fn serve(listener: UnixListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    if let Err(e) = connection(stream, &shared) {
                        tracing::debug!(error = %e, "connection closed");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
}

/// Reads requests line by line and answers each.
fn connection(stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(MAX_REQUEST as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let too_long = line.len() > MAX_REQUEST && line.last() != Some(&b'\n');
        let resp = if too_long {
            Response::err(format!(
                "request too large: the limit is {MAX_REQUEST} bytes per line"
            ))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => shared.execute(req),
                Err(e) => Response::err(format!(
                    "bad request: {e} (send one JSON object per line, e.g. {{\"cmd\":\"show\"}})"
                )),
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        writer.write_all(&out)?;
        if too_long {
            return Ok(()); // the rest of that line is not worth reading
        }
    }
}

/// On SIGTERM or SIGINT: save, close every bridge, remove the socket, exit 0.
pub(super) fn spawn_signal_handler(shared: Arc<Shared>, socket: PathBuf) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!(signal = sig, "shutting down");
            shared.shutdown(&socket);
        }
    });
    Ok(())
}
