//! The client side: sends one request to the daemon and reads the answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result};

use crate::api::{Request, Response};

/// Sends `req` and returns the daemon's response; `Err` when the daemon cannot be reached.
pub(crate) fn call(socket: &Path, req: &Request) -> Result<Response> {
    let stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the vbr daemon at {} (start it with `vbr daemon`, or set --socket)",
            socket.display()
        )
    })?;
    let mut w = stream.try_clone()?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    serde_json::from_str(&answer).context("the daemon's answer is not valid JSON")
}

/// Makes sure a daemon answers on `socket`, starting `vbr daemon` in the background (its
/// own session, log in the state directory) when none does.
pub(crate) fn ensure_daemon(socket: &Path) -> Result<()> {
    if UnixStream::connect(socket).is_ok() {
        return Ok(());
    }
    let state = std::env::var_os("VBR_STATE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::cli::DEFAULT_STATE.into());
    std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join("daemon.log"))
        .with_context(|| format!("opening {}", state.join("daemon.log").display()))?;
    let exe = std::env::current_exe().context("finding the vbr executable")?;
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
