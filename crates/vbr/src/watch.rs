//! The client side of `vbr trace` and `vbr capture`: the frame a trace asks about
//! (built from `--src/--dst/--vlan/--ethertype`), the text form of a trace, and reading
//! a stream to its end (Ctrl-C ends it politely: the daemon is told, and its last line
//! with the totals is still read).

use std::io::BufRead;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, bail};
use vbridge_core::MacAddr;
use vbridge_datapath::{Direction, TraceView};

use crate::api::{Response, StreamEnd, StreamMsg, Streaming};
use crate::names::escape;
use crate::output::say;

/// A test frame: `dst`, `src`, an 802.1Q tag with `vlan`, `ethertype` (IPv4 by
/// default, then with a valid empty IPv4 header), padded to the 60-byte minimum.
pub(crate) fn frame(dst: MacAddr, src: MacAddr, vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&src.octets());
    if let Some(v) = vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    if ethertype == 0x0800 {
        // 20-byte header, protocol 253 (experiments), 0.0.0.0 -> 0.0.0.0, TTL 64.
        let mut ip = [
            0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let c = vbridge_wire::ipv4::checksum(&ip).to_be_bytes();
        ip[10] = c[0];
        ip[11] = c[1];
        f.extend_from_slice(&ip);
    }
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// Bytes as hex, for the API.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An EtherType from the command line: `0x0806`, `0806` or `806`.
pub(crate) fn ethertype_arg(s: &str) -> Result<u16, String> {
    let t = s.trim_start_matches("0x").trim_start_matches("0X");
    u16::from_str_radix(t, 16)
        .map_err(|_| format!("{s:?}: give the EtherType in hex, e.g. 0x0806"))
        .and_then(|v| {
            if v < 0x0600 {
                Err(format!(
                    "{s:?}: EtherTypes start at 0x0600 (smaller values are 802.3 lengths)"
                ))
            } else {
                Ok(v)
            }
        })
}

/// `vbr trace` as text: the frame, each step, the verdict and the fast path.
pub(crate) fn print_trace(t: &TraceView) {
    say!(
        "trace {}: {} entering {}",
        escape(&t.bridge),
        t.frame,
        escape(&t.ingress)
    );
    for s in &t.steps {
        let port = s.port.as_deref().map(escape).unwrap_or_default();
        say!("  {:<10} {:<14} {}", s.step, port, escape(&s.text));
    }
    say!("verdict:   {}", escape(&t.verdict));
    say!("fast path: {}", t.fast_path);
}

/// Reads a stream to its end, printing as it goes; returns its end line. Ctrl-C (or
/// SIGTERM) once ends the stream politely, twice quits at once.
pub(crate) fn follow(socket: &Path, line: Vec<u8>, json: bool, capture: bool) -> Result<StreamEnd> {
    let (mut r, first) = crate::client::open(socket, line)?;
    let resp: Response = serde_json::from_str(&first).context("the daemon's answer")?;
    if resp.version != crate::api::API_VERSION {
        bail!(
            "the daemon speaks API version {}, this vbr version {}",
            resp.version,
            crate::api::API_VERSION
        );
    }
    if !resp.ok {
        let e = resp.error.map(|e| e.message).unwrap_or_default();
        bail!("{}", crate::names::escape_text(&e));
    }
    let start: Streaming = serde_json::from_value(resp.result.unwrap_or_default())
        .context("the daemon's answer is not what this vbr expects")?;
    match &start.file {
        Some(f) => eprintln!(
            "vbr: capturing {} to {} (Ctrl-C stops)",
            escape(start.port.as_deref().unwrap_or("")),
            escape(f)
        ),
        None if capture => eprintln!(
            "vbr: capturing {} (on {}) (Ctrl-C stops)",
            escape(start.port.as_deref().unwrap_or("")),
            escape(&start.bridge)
        ),
        None => eprintln!(
            "vbr: watching {}{} (Ctrl-C stops)",
            escape(&start.bridge),
            start
                .port
                .as_deref()
                .map(|p| format!(" port {}", escape(p)))
                .unwrap_or_default()
        ),
    }
    stop_on_signal(r.get_ref())?;
    r.get_ref().set_read_timeout(None)?;
    let mut buf = String::new();
    loop {
        buf.clear();
        if r.read_line(&mut buf)? == 0 {
            bail!("the daemon closed the stream without its last line");
        }
        let msg: StreamMsg = serde_json::from_str(&buf).context("a line of the stream")?;
        match msg {
            StreamMsg::End(end) => return Ok(end),
            _ if json => say!("{}", buf.trim_end()),
            StreamMsg::Line(l) => say!("{}", escape(&l)),
            StreamMsg::Frame(f) => {
                let secs = f.time.rem_euclid(86400.0);
                let (h, m, s) = (
                    (secs / 3600.0) as u32,
                    ((secs % 3600.0) / 60.0) as u32,
                    secs % 60.0,
                );
                say!(
                    "{h:02}:{m:02}:{s:09.6} {} {:<3} {}",
                    escape(&f.port),
                    match f.dir {
                        Direction::In => "In",
                        _ => "Out",
                    },
                    f.summary
                );
            }
        }
    }
}

/// On the first SIGINT/SIGTERM the client shuts down its side of the connection (the
/// daemon ends the stream and sends its totals); on the second it exits.
fn stop_on_signal(stream: &UnixStream) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let s = stream.try_clone()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("vbr-stop".into())
        .spawn(move || {
            let mut told = false;
            for _ in signals.forever() {
                if told {
                    std::process::exit(130);
                }
                told = true;
                let _ = s.shutdown(Shutdown::Write);
            }
        })?;
    Ok(())
}
