//! Streaming requests on the connection's own thread: `vbr capture` (frames of a port
//! into a pcap file the daemon writes, or as events to the client) and `vbr trace
//! --live` (decisions as lines). A stream ends after its count, when the port or bridge
//! goes, or when the client shuts down its side or disconnects; then the session is
//! dropped, which hands the port's flows back to the kernel fast path.

use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, UNIX_EPOCH};

use vbridge_datapath::{Captured, Datapath, Direction, Next};

use super::errors::dp;
use crate::api::{
    ApiError, ErrorKind, FrameEvent, Request, Response, StreamEnd, StreamMsg, Streaming,
};

/// How long the stream waits for a frame before it looks at the client again.
const TICK: Duration = Duration::from_millis(100);

/// A stream's two ends on the client connection.
pub(super) struct Client<'a> {
    pub(super) read: &'a UnixStream,
    pub(super) write: &'a mut UnixStream,
}

impl Client<'_> {
    fn send(&mut self, line: &impl serde::Serialize) -> std::io::Result<()> {
        let mut out = serde_json::to_vec(line).map_err(std::io::Error::other)?;
        out.push(b'\n');
        self.write.write_all(&out)
    }

    /// Whether the client shut down its side or went away (it has nothing else to say
    /// during a stream; anything it sends is read and dropped).
    fn done(&self) -> bool {
        use nix::errno::Errno;
        use nix::sys::socket::{MsgFlags, recv};
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 512];
        match recv(self.read.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(0) => true,
            Ok(_) | Err(Errno::EAGAIN | Errno::EINTR) => false,
            Err(_) => true,
        }
    }
}

/// Runs a streaming request to its end. Errors before the stream starts are answered
/// as a normal failed response.
pub(super) fn run(d: &Datapath, req: Request, mut client: Client<'_>) -> std::io::Result<()> {
    let end = match req {
        Request::Capture {
            port,
            file,
            count,
            direction,
        } => capture(d, &port, file.as_deref(), count, direction, &mut client)?,
        Request::TraceLive {
            bridge,
            port,
            count,
        } => live(d, &bridge, port.as_deref(), count, &mut client)?,
        _ => return client.send(&Response::err(ApiError::invalid("not a streaming request"))),
    };
    if let Some(end) = end {
        // The client may be gone already; nothing more to do then.
        let _ = client.send(&StreamMsg::End(end));
    }
    Ok(())
}

/// Why the loop of a stream stopped.
enum Stop {
    Count,
    Client,
    Gone,
    Error(String),
}

/// Moves a session's items to `on` until `count` of them, the session's end, the
/// client's going or an error; `on` gets `None` when nothing came within a tick.
/// Returns the items delivered and why it stopped.
fn pump<T>(
    next: impl Fn(Duration) -> Next<T>,
    count: Option<u64>,
    client: &mut Client<'_>,
    mut on: impl FnMut(Option<T>, &mut Client<'_>) -> Result<(), Stop>,
) -> (u64, Stop) {
    let mut n = 0u64;
    let mut last_look = Instant::now();
    let stop = loop {
        if count.is_some_and(|c| n >= c) {
            break Stop::Count;
        }
        let r = match next(TICK) {
            Next::Item(x) => {
                n += 1;
                on(Some(x), client)
            }
            Next::Quiet => on(None, client),
            Next::Ended => Err(Stop::Gone),
        };
        if let Err(stop) = r {
            break stop;
        }
        if last_look.elapsed() >= TICK {
            last_look = Instant::now();
            if client.done() {
                break Stop::Client;
            }
        }
    };
    (n, stop)
}

fn end(frames: u64, dropped: u64, stop: Stop) -> StreamEnd {
    let (why, error) = match stop {
        Stop::Count => ("count", None),
        Stop::Client => ("client", None),
        Stop::Gone => ("gone", None),
        Stop::Error(e) => ("error", Some(e)),
    };
    StreamEnd {
        frames,
        dropped,
        why: why.into(),
        error,
    }
}

/// `vbr capture`: answers `Streaming`, then frames (or writes them to `file`), then
/// the end. `None` when the start was refused (the refusal is sent).
fn capture(
    d: &Datapath,
    port: &str,
    file: Option<&str>,
    count: Option<u64>,
    dir: Direction,
    client: &mut Client<'_>,
) -> std::io::Result<Option<StreamEnd>> {
    let mut pcap = match file.map(|f| open_pcap(f, client.read)).transpose() {
        Ok(p) => p,
        Err(e) => {
            client.send(&Response::err(e))?;
            return Ok(None);
        }
    };
    let session = match d.capture(port, dir) {
        Ok(s) => s,
        Err(e) => {
            if let (Some(f), Some(_)) = (file, pcap.take()) {
                // Nothing was captured: the empty file goes.
                let _ = std::fs::remove_file(f);
            }
            client.send(&Response::err(dp(e)))?;
            return Ok(None);
        }
    };
    client.send(&Response::ok(Streaming {
        bridge: session.bridge.clone(),
        port: Some(port.to_owned()),
        file: file.map(str::to_owned),
    }))?;
    tracing::info!(port, file = ?file, "capture started");
    let writing =
        |e: std::io::Error| Stop::Error(format!("writing {}: {e}", file.unwrap_or_default()));
    let (frames, stop) = pump(
        |wait| session.next(wait),
        count,
        client,
        |c, client| match (c, pcap.as_mut()) {
            (Some(c), Some(w)) => write_pcap(w, &c).map_err(writing),
            (None, Some(w)) => w.flush().map_err(writing),
            (Some(c), None) => client
                .send(&StreamMsg::Frame(event(port, &c)))
                .map_err(|_| Stop::Client),
            (None, None) => Ok(()),
        },
    );
    let dropped = session.finish();
    let mut stop = stop;
    if let Some(mut w) = pcap {
        if let Err(e) = w.flush() {
            stop = Stop::Error(format!("writing {}: {e}", file.unwrap_or_default()));
        }
    }
    tracing::info!(port, frames, dropped, "capture ended");
    Ok(Some(end(frames, dropped, stop)))
}

fn event(port: &str, c: &Captured) -> FrameEvent {
    FrameEvent {
        time: c
            .at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
        port: port.to_owned(),
        dir: if c.out { Direction::Out } else { Direction::In },
        len: c.frame.len(),
        summary: vbridge_wire::summarize(&c.frame),
    }
}

/// The pcap file: the crate's writer over a buffer the stream flushes when quiet.
struct Pcap {
    writer: pcap_file::pcap::PcapWriter<Buffered>,
    buf: Buffered,
}

/// A buffered file shared by the pcap writer and the stream (which flushes it).
#[derive(Clone)]
struct Buffered(std::rc::Rc<std::cell::RefCell<BufWriter<std::fs::File>>>);

impl Write for Buffered {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

impl Pcap {
    fn flush(&mut self) -> std::io::Result<()> {
        self.buf.flush()
    }
}

fn write_pcap(w: &mut Pcap, c: &Captured) -> std::io::Result<()> {
    let ts = c.at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let len = u32::try_from(c.frame.len()).unwrap_or(u32::MAX);
    let keep = &c.frame[..c.frame.len().min(65535)];
    let pkt = pcap_file::pcap::PcapPacket::new(ts, len, keep);
    w.writer
        .write_packet(&pkt)
        .map(|_| ())
        .map_err(std::io::Error::other)
}

/// Opens the pcap file a client asked for, as safely as root can: an absolute path;
/// never through a symbolic link at its end, never a FIFO or device (opened without
/// blocking, then checked to be a regular file); an existing file is overwritten only
/// if it belongs to the client; a new one is given to the client (its uid and gid).
fn open_pcap(path: &str, peer: &UnixStream) -> Result<Pcap, ApiError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let p = std::path::Path::new(path);
    let cannot = |e: &dyn std::fmt::Display| {
        ApiError::new(
            ErrorKind::HostFailure,
            format!("cannot write capture file {path}: {e}"),
        )
    };
    if !p.is_absolute() {
        return Err(ApiError::invalid(format!(
            "capture file {path:?}: give an absolute path (the daemon writes it)"
        )));
    }
    // Said plainly before opening (the checks after opening are what holds).
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if m.file_type().is_symlink() {
            return Err(cannot(
                &"it is a symbolic link, which the daemon does not follow",
            ));
        }
        if !m.is_file() {
            return Err(cannot(&"not a regular file"));
        }
    }
    let cred =
        nix::sys::socket::getsockopt(&peer.as_fd(), nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| cannot(&e))?;
    let flags = (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits();
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(flags)
        .open(p);
    let (file, new) = match created {
        Ok(f) => (f, true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(flags)
                .open(p)
                .map_err(|e| cannot(&e))?,
            false,
        ),
        Err(e) => return Err(cannot(&e)),
    };
    let meta = file.metadata().map_err(|e| cannot(&e))?;
    if !meta.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    if new {
        if cred.uid() != 0 {
            std::os::unix::fs::fchown(&file, Some(cred.uid()), Some(cred.gid()))
                .map_err(|e| cannot(&e))?;
        }
    } else {
        if cred.uid() != 0 && meta.uid() != cred.uid() {
            return Err(cannot(&"it exists and belongs to another user"));
        }
        file.set_len(0).map_err(|e| cannot(&e))?;
    }
    // Writes block normally from here on (a regular file).
    let _ = nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    );
    let buf = Buffered(std::rc::Rc::new(std::cell::RefCell::new(BufWriter::new(
        file,
    ))));
    let writer = pcap_file::pcap::PcapWriter::new(buf.clone()).map_err(|e| cannot(&e))?;
    Ok(Pcap { writer, buf })
}

/// `vbr trace --live`: answers `Streaming`, then one line per decision (at most
/// [`vbridge_datapath::LIVE_PER_SECOND`] a second), then the end.
fn live(
    d: &Datapath,
    bridge: &str,
    port: Option<&str>,
    count: Option<u64>,
    client: &mut Client<'_>,
) -> std::io::Result<Option<StreamEnd>> {
    let session = match d.trace_live(bridge, port) {
        Ok(s) => s,
        Err(e) => {
            client.send(&Response::err(dp(e)))?;
            return Ok(None);
        }
    };
    client.send(&Response::ok(Streaming {
        bridge: bridge.to_owned(),
        port: port.map(str::to_owned),
        file: None,
    }))?;
    tracing::info!(bridge, port, "live trace started");
    let (lines, stop) = pump(
        |wait| session.next(wait),
        count,
        client,
        |l, client| match l {
            Some(l) => client.send(&StreamMsg::Line(l)).map_err(|_| Stop::Client),
            None => Ok(()),
        },
    );
    drop(session);
    tracing::info!(bridge, port, lines, "live trace ended");
    Ok(Some(end(lines, 0, stop)))
}
