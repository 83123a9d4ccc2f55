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
