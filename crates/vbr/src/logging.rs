//! The daemon's log: tracing events formatted on the thread that logs them and written to
//! stderr by a thread of its own. Logging never blocks a caller (when the writer falls
//! behind, say behind a full pipe, lines are dropped and their number said later) and
//! never fails one (write errors, a closed stderr included, are ignored). Also
//! [`RateLimit`], for lines that could repeat without end.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Lines waiting for the writer at most.
const QUEUE: usize = 4096;

/// Hands formatted lines to the writer thread.
#[derive(Debug, Clone)]
struct Queue {
    tx: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

/// One event's text, sent as one line when the event is done.
#[derive(Debug)]
struct Line {
    buf: Vec<u8>,
    queue: Queue,
}

impl Write for Line {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        match self.queue.tx.try_send(buf) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.queue.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Queue {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buf: Vec::new(),
            queue: self.clone(),
        }
    }
}

fn writer(rx: Receiver<Vec<u8>>, dropped: Arc<AtomicU64>) {
    let mut err = std::io::stderr();
    loop {
        let line = rx.recv_timeout(Duration::from_secs(5));
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                err,
                "vbr: {lost} log lines dropped (the log's reader fell behind)"
            );
        }
        match line {
            Ok(l) => {
                let _ = err.write_all(&l);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Sends the daemon's tracing events to stderr through the writer thread (`RUST_LOG`
/// filters, `info` by default).
pub(crate) fn init() {
    let (tx, rx) = sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let d2 = Arc::clone(&dropped);
    let _ = std::thread::Builder::new()
        .name("vbr-log".into())
        .spawn(move || writer(rx, d2));
    let queue = Queue { tx, dropped };
    tracing_subscriber::fmt()
        .with_writer(queue)
        .with_ansi(false)
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Lets a repeating line through at most once per period; says how many it held back.
#[derive(Debug)]
pub(crate) struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimit {
    pub(crate) fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(lines held back since the last one let through)` when this one may go.
    pub(crate) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_holds_back_repeats_and_counts_them() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.allow(), Some(0));
        assert_eq!(r.allow(), None);
        assert_eq!(r.allow(), None);
        r.last = Some(Instant::now() - Duration::from_secs(7200));
        assert_eq!(r.allow(), Some(2));
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let (tx, rx) = sync_channel(1);
        let q = Queue {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..3 {
            let mut l = tracing_subscriber::fmt::MakeWriter::make_writer(&q);
            l.write_all(b"x\n").unwrap();
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(rx.try_recv().unwrap(), b"x\n");
    }
}
