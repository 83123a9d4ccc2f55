//! The API socket: binding it with the right permissions (never over anything but a
//! stale socket), serving a bounded number of clients with a thread each, reading each
//! request within a deadline and a size limit, backing off when accept fails, and the
//! signals that stop the daemon.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Shared;
use crate::api::{API_VERSION, ApiError, ErrorKind, MAX_REQUEST, Request, Response};

/// Most API clients served at once; one more is answered "busy" and closed.
pub(crate) const MAX_CLIENTS: usize = 32;
/// How long a client may take to send a whole request (counted from when the daemon
/// starts waiting for it, so an idle connection is closed after this long too):
/// `VBR_REQUEST_TIMEOUT` seconds, 60 by default.
fn request_timeout() -> Duration {
    static T: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        let secs = std::env::var("VBR_REQUEST_TIMEOUT")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .unwrap_or(60);
        Duration::from_secs(secs)
    })
}
/// How long writing an answer may take before the client is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The gid of group `vbridge`, if the system has one.
fn vbridge_gid() -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == "vbridge").then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Binds the socket: refuses if another daemon answers there or if the path is anything
/// but a stale socket (a file there is never deleted), and lets only root (and group
/// `vbridge`, if present) connect.
pub(super) fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; vbridge does not remove it (choose another --socket)",
                path.display()
            );
        }
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

/// Decrements the client count when a connection thread ends.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts connections forever, one thread each, at most [`MAX_CLIENTS`] at once.
pub(super) fn serve(listener: UnixListener, shared: Arc<Shared>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut backoff = Duration::from_millis(10);
    let mut said = crate::logging::RateLimit::new(Duration::from_secs(10));
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => {
                backoff = Duration::from_millis(10);
                s
            }
            Err(e) => {
                if let Some(skipped) = said.allow() {
                    tracing::warn!(error = %e, skipped, "accept failed; backing off");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            let slot = Slot(Arc::clone(&active));
            refuse_busy(stream);
            drop(slot);
            continue;
        }
        let slot = Slot(Arc::clone(&active));
        let shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("vbr-api".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = connection(stream, &shared) {
                    tracing::debug!(error = %e, "connection closed");
                }
            });
        if let Err(e) = spawned {
            // The closure (and its slot) was dropped: the count is right again.
            if let Some(skipped) = said.allow() {
                tracing::warn!(error = %e, skipped, "cannot start a thread for a client");
            }
            std::thread::sleep(backoff);
        }
    }
}

/// Tells a client over the limit to come back later, without waiting on it.
fn refuse_busy(mut stream: UnixStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let resp = Response::err(ApiError::new(
        ErrorKind::Busy,
        format!("the daemon is serving {MAX_CLIENTS} clients, its limit; try again"),
    ));
    let _ = write_response(&mut stream, &resp);
}

fn write_response(w: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    w.write_all(&out)
}

/// One request line as read.
enum Line {
    /// The connection ended before another request.
    Closed,
    /// A whole line (without its newline).
    Request(Vec<u8>),
    /// Longer than [`MAX_REQUEST`] (the rest was read and dropped).
    TooLarge,
}

/// Reads one line within `deadline`, keeping at most [`MAX_REQUEST`] bytes of it;
/// `pending` holds bytes read past the previous line.
fn read_line(
    stream: &mut UnixStream,
    pending: &mut Vec<u8>,
    deadline: Instant,
) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_large = false;
    loop {
        if let Some(nl) = pending.iter().position(|b| *b == b'\n') {
            let rest = pending.split_off(nl + 1);
            pending.pop();
            if !too_large {
                line.append(pending);
            }
            *pending = rest;
            return Ok(if too_large {
                Line::TooLarge
            } else {
                Line::Request(line)
            });
        }
        if !too_large {
            line.append(pending);
            if line.len() > MAX_REQUEST {
                too_large = true;
                line = Vec::new();
            }
        } else {
            pending.clear();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request did not arrive in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let mut buf = [0u8; 64 * 1024];
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(if line.is_empty() && !too_large {
                Line::Closed
            } else if too_large {
                Line::TooLarge
            } else {
                // A last request without its newline.
                Line::Request(line)
            });
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Parses a request line: JSON, optionally with the API `version` it was written for.
pub(crate) fn parse_request(line: &[u8]) -> Result<Request, ApiError> {
    let mut v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        ApiError::invalid(format!(
            "bad request: {e} (send one JSON object per line, e.g. {{\"cmd\":\"show\"}})"
        ))
    })?;
    if let Some(obj) = v.as_object_mut() {
        if let Some(ver) = obj.remove("version") {
            if ver.as_u64() != Some(u64::from(API_VERSION)) {
                return Err(ApiError::new(
                    ErrorKind::Version,
                    format!(
                        "this daemon speaks API version {API_VERSION}, the request was written for {ver}"
                    ),
                ));
            }
        }
    }
    serde_json::from_value(v).map_err(|e| {
        ApiError::invalid(format!(
            "bad request: {e} (see docs/api.md for the requests and their fields)"
        ))
    })
}

/// Reads requests line by line and answers each.
fn connection(mut stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut writer = stream.try_clone()?;
    let mut pending = Vec::new();
    loop {
        let deadline = Instant::now() + request_timeout();
        let line = read_line(&mut stream, &mut pending, deadline)?;
        let resp = match line {
            Line::Closed => return Ok(()),
            Line::TooLarge => Response::err(ApiError::new(
                ErrorKind::TooLarge,
                format!(
                    "request too large: the daemon reads at most {MAX_REQUEST} bytes per request"
                ),
            )),
            Line::Request(l) if l.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Request(l) => match parse_request(&l) {
                Ok(req) if req.streams() && !shared.dp.died() => {
                    shared
                        .api_metrics
                        .observe(req.cmd(), "stream", Duration::ZERO);
                    // The connection is the stream's until it ends.
                    let client = super::stream::Client {
                        read: &stream,
                        write: &mut writer,
                    };
                    return super::stream::run(&shared.dp, req, client);
                }
                Ok(req) => {
                    let (cmd, started) = (req.cmd(), Instant::now());
                    let resp = shared.execute(req);
                    let outcome = match &resp.error {
                        None => "ok".to_owned(),
                        Some(e) => serde_json::to_value(e.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                    };
                    shared.api_metrics.observe(cmd, &outcome, started.elapsed());
                    resp
                }
                Err(e) => {
                    shared
                        .api_metrics
                        .observe("invalid", "invalid_argument", Duration::ZERO);
                    Response::err(e)
                }
            },
        };
        write_response(&mut writer, &resp)?;
    }
}

/// On SIGTERM or SIGINT: save, close every bridge, remove the socket, exit (70 if the
/// forwarding thread had died). SIGHUP is logged and otherwise ignored: the daemon
/// keeps running (its configuration changes only through the API).
pub(super) fn spawn_signal_handler(shared: Arc<Shared>, socket: PathBuf) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("vbr-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::info!("SIGHUP: ignored (the daemon keeps running; SIGTERM stops it)");
                    continue;
                }
                tracing::info!(signal = sig, "shutting down");
                shared.shutdown(&socket);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_request;

    /// The request parser on arbitrary bytes and on JSON close to real requests: an
    /// answer for every input (never a panic), and only known requests accepted.
    #[test]
    fn request_parser_takes_anything_without_panicking() {
        bolero::check!().for_each(|bytes: &[u8]| {
            let _ = parse_request(bytes);
        });
        let cmds = [
            "show", "addbr", "addif", "link_set", "connect", "up", "fdb_add", "x",
        ];
        let values = [
            "1",
            "-1",
            "1e400",
            "\"br0\"",
            "null",
            "[]",
            "{}",
            "\"\\u0000\"",
            "true",
        ];
        let fields = [
            "bridge", "port", "flags", "vlan", "plan", "ips", "version", "mac",
        ];
        bolero::check!()
            .with_type::<(u8, u8, u8, u8, u8)>()
            .for_each(|(c, f1, v1, f2, v2)| {
                let pick = |a: &[&'static str], i: &u8| a[usize::from(*i) % a.len()];
                let line = format!(
                    "{{\"cmd\":\"{}\",\"{}\":{},\"{}\":{}}}",
                    pick(&cmds, c),
                    pick(&fields, f1),
                    pick(&values, v1),
                    pick(&fields, f2),
                    pick(&values, v2)
                );
                let _ = parse_request(line.as_bytes());
            });
        assert!(parse_request(br#"{"cmd":"show","bridge":"br0"}"#).is_ok());
        assert!(parse_request(br#"{"cmd":"show","version":1}"#).is_ok());
        assert!(parse_request(br#"{"cmd":"show","version":9}"#).is_err());
        assert!(parse_request(br#"{"cmd":"nosuch"}"#).is_err());
    }
}
