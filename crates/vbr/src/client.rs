//! The client side: sends one request to the daemon and reads the answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};

use crate::api::{API_VERSION, MAX_REQUEST, Request, Response};

/// Sends `req` and returns the daemon's response; `Err` when the daemon cannot be reached
/// or answers in another API version.
pub(crate) fn call(socket: &Path, req: &Request) -> Result<Response> {
    send(socket, encode(req)?)
}

/// `req` as the line the daemon reads, with the API version; refused (naming the limit)
/// when it is longer than the daemon reads.
pub(crate) fn encode(req: &Request) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&serde_json::json!({ "version": API_VERSION }))?;
    let body = serde_json::to_vec(req)?;
    // {"version":1} + {"cmd":...} -> {"version":1,"cmd":...}
    line.pop();
    if body.len() > 2 {
        line.push(b',');
        line.extend_from_slice(&body[1..]);
    } else {
        line.push(b'}');
    }
    if line.len() > MAX_REQUEST {
        anyhow::bail!(
            "the request is {} bytes, more than the {MAX_REQUEST} bytes the daemon reads (split the topology into several files)",
            line.len()
        );
    }
    Ok(line)
}

/// Sends an encoded request and reads the answer.
pub(crate) fn send(socket: &Path, line: Vec<u8>) -> Result<Response> {
    let (_, answer) = open(socket, line)?;
    let resp: Response =
        serde_json::from_str(&answer).context("the daemon's answer is not valid JSON")?;
    if resp.version != API_VERSION {
        anyhow::bail!(
            "the daemon speaks API version {}, this vbr version {API_VERSION}: use the vbr of the running daemon, or restart the daemon with this one",
            resp.version
        );
    }
    Ok(resp)
}

/// Sends an encoded request and reads the first answer line; the connection stays
/// open for what follows (a stream).
pub(crate) fn open(socket: &Path, mut line: Vec<u8>) -> Result<(BufReader<UnixStream>, String)> {
    let stream = UnixStream::connect(socket).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "only root (and group vbridge, if it exists) may use it".to_owned()
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
                "no daemon runs there: start one with `vbr daemon --socket {}` (as root), or give --socket",
                socket.display()
            ),
            _ => "is the daemon running?".to_owned(),
        };
        anyhow::anyhow!("cannot reach the vbr daemon at {}: {e} ({hint})", socket.display())
    })?;
    let wait = answer_timeout();
    stream.set_read_timeout(Some(wait))?;
    let mut w = stream.try_clone()?;
    line.push(b'\n');
    // A daemon that refuses at once (too many clients) answers before reading: its answer
    // is still there to read when the write fails.
    let sent = w.write_all(&line);
    let mut answer = String::new();
    let mut r = BufReader::new(stream);
    r.read_line(&mut answer).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => anyhow::anyhow!(
            "the daemon did not answer within {} s (set VBR_TIMEOUT to wait longer; its log may say why)",
            wait.as_secs()
        ),
        _ => anyhow::Error::new(e).context("reading the daemon's answer"),
    })?;
    if answer.is_empty() {
        return Err(match sent {
            Err(e) => anyhow::Error::new(e)
                .context("sending the request (the daemon closed the connection)"),
            Ok(()) => anyhow::anyhow!("the daemon closed the connection without an answer"),
        });
    }
    Ok((r, answer))
}

/// One connection for several requests, answered in turn (the daemon reads requests
/// line by line): for a program that makes a few calls in a row, such as the CNI plugin.
pub(crate) struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Session {
    /// Connects to the daemon on `socket`.
    pub(crate) fn connect(socket: &Path) -> Result<Session> {
        let stream = UnixStream::connect(socket)
            .with_context(|| format!("cannot reach the vbr daemon at {}", socket.display()))?;
        stream.set_read_timeout(Some(answer_timeout()))?;
        let writer = stream.try_clone()?;
        Ok(Session {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Sends `req` and reads its answer.
    pub(crate) fn call(&mut self, req: &Request) -> Result<Response> {
        let mut line = encode(req)?;
        line.push(b'\n');
        self.writer
            .write_all(&line)
            .context("sending the request to the daemon")?;
        let mut answer = String::new();
        self.reader
            .read_line(&mut answer)
            .context("reading the daemon's answer")?;
        if answer.is_empty() {
            anyhow::bail!("the daemon closed the connection without an answer");
        }
        let resp: Response =
            serde_json::from_str(&answer).context("the daemon's answer is not valid JSON")?;
        if resp.version != API_VERSION {
            anyhow::bail!(
                "the daemon speaks API version {}, this program {API_VERSION}",
                resp.version
            );
        }
        Ok(resp)
    }
}

/// How long to wait for an answer: `VBR_TIMEOUT` seconds, 300 by default (`vbr up` of
/// a large topology takes a while; a daemon that never answers must not hang us).
fn answer_timeout() -> std::time::Duration {
    let secs = std::env::var("VBR_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

/// The state directory of a daemon started for `socket`: `VBR_STATE_DIR` if set, the
/// default one for the default socket, else `<socket>.state` beside the socket, so a
/// daemon started for another socket never shares the default state.
pub(crate) fn state_dir_for(socket: &Path) -> std::path::PathBuf {
    if let Some(d) = std::env::var_os("VBR_STATE_DIR") {
        return d.into();
    }
    if socket == Path::new(crate::cli::DEFAULT_SOCKET) {
        return crate::cli::DEFAULT_STATE.into();
    }
    let mut s = socket.as_os_str().to_owned();
    s.push(".state");
    s.into()
}

/// Makes sure a daemon answers on `socket`, starting `vbr daemon` in the background (its
/// own session, log in the state directory) when none does.
pub(crate) fn ensure_daemon(socket: &Path) -> Result<()> {
    if UnixStream::connect(socket).is_ok() {
        return Ok(());
    }
    let exe = std::env::current_exe().context("finding the vbr executable")?;
    ensure_daemon_with(socket, &exe)
}

/// [`ensure_daemon`] with the `vbr` program `exe` (for callers that are another program,
/// such as the CNI plugin).
pub(crate) fn ensure_daemon_with(socket: &Path, exe: &Path) -> Result<()> {
    if UnixStream::connect(socket).is_ok() {
        return Ok(());
    }
    let state = state_dir_for(socket);
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("daemon.log"))
        .with_context(|| format!("opening {}", state.join("daemon.log").display()))?;
    use std::os::unix::process::CommandExt;
    std::process::Command::new(exe)
        .arg("--socket")
        .arg(socket)
        .arg("daemon")
        .arg("--state-dir")
        .arg(&state)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting `vbr daemon`")?;
    for _ in 0..100 {
        if UnixStream::connect(socket).is_ok() {
            eprintln!(
                "vbr: started the daemon (log: {})",
                state.join("daemon.log").display()
            );
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    anyhow::bail!(
        "started `vbr daemon` but it does not answer on {}; see {}",
        socket.display(),
        state.join("daemon.log").display()
    )
}
