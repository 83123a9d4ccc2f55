//! Watching frames as they pass, on the forwarding thread, bounded so that it cannot
//! slow forwarding much: a capture of one port (copies of the frames it receives and
//! sends, handed to the control side through a bounded queue; what does not fit is
//! counted, never waited for) and a live trace of a bridge (the decision of each frame
//! in one line, at most [`LIVE_PER_SECOND`] lines a second).

use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use vbridge_core::{Decision, Instant, PortId};

use crate::bridge_rt::BridgeRt;

/// Which frames of a port a capture takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Frames the port receives (entering the switch).
    In,
    /// Frames the switch sends out of the port.
    Out,
    Both,
}

impl Direction {
    pub(crate) fn takes(self, out: bool) -> bool {
        match self {
            Direction::In => !out,
            Direction::Out => out,
            Direction::Both => true,
        }
    }
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Wall-clock time it was seen.
    pub at: SystemTime,
    /// Sent out of the port (`true`) or received by it.
    pub out: bool,
    pub frame: Vec<u8>,
}

/// A capture attached to a port.
#[derive(Debug)]
pub(crate) struct Capture {
    pub(crate) id: u64,
    pub(crate) dir: Direction,
    pub(crate) tx: SyncSender<Captured>,
    /// Frames the queue had no room for.
    pub(crate) dropped: u64,
    /// The reader went away.
    pub(crate) closed: bool,
}

impl Capture {
    /// Hands a copy of `frame` over, if this capture takes that direction.
    #[inline]
    pub(crate) fn take(&mut self, out: bool, frame: &[u8]) {
        if !self.dir.takes(out) || self.closed {
            return;
        }
        let c = Captured {
            at: SystemTime::now(),
            out,
            frame: frame.to_vec(),
        };
        match self.tx.try_send(c) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.dropped += 1,
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
}

/// `HH:MM:SS.mmm` (UTC) of `t`, as a live trace's lines start.
fn time_of_day(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let s = d.as_secs() % 86400;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_millis()
    )
}

/// Lines a live trace writes a second at most.
pub(crate) const LIVE_PER_SECOND: u32 = 200;

/// A live trace of a bridge.
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) id: u64,
    /// Only frames entering this port (all with `None`).
    pub(crate) port: Option<PortId>,
    pub(crate) tx: SyncSender<String>,
    tokens: u32,
    refill_at: Instant,
    /// Frames passed over (rate limit or full queue), said in the next line.
    skipped: u64,
    pub(crate) closed: bool,
}

impl Live {
    pub(crate) fn new(id: u64, port: Option<PortId>, tx: SyncSender<String>) -> Live {
        Live {
            id,
            port,
            tx,
            tokens: LIVE_PER_SECOND,
            refill_at: Instant::ZERO,
            skipped: 0,
            closed: false,
        }
    }

    /// Writes the line of a decided frame, if the rate allows.
    pub(crate) fn note(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        d: &Decision,
        name: &dyn Fn(PortId) -> String,
    ) {
        if self.closed || self.port.is_some_and(|p| p != ingress) {
            return;
        }
        if now >= self.refill_at {
            self.tokens = LIVE_PER_SECOND;
            self.refill_at = now + Duration::from_secs(1);
        }
        if self.tokens == 0 {
            self.skipped += 1;
            return;
        }
        self.tokens -= 1;
        let decision = d.describe(name);
        let skipped = std::mem::take(&mut self.skipped);
        let line = format!(
            "{} {}: {} => {}{}",
            time_of_day(SystemTime::now()),
            name(ingress),
            vbridge_wire::summarize(frame),
            decision,
            if skipped > 0 {
                format!(" ({skipped} frames not shown before this one)")
            } else {
                String::new()
            }
        );
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.skipped += skipped + 1,
            Err(TrySendError::Disconnected(_)) => self.closed = true,
        }
    }
}

impl BridgeRt {
    /// Starts live trace `id` (of frames entering `port`, or all); the ports it watches
    /// leave the fast path at the next check.
    pub(crate) fn live_start(&mut self, id: u64, port: Option<PortId>, tx: SyncSender<String>) {
        for (i, p) in self.ports.iter_mut().enumerate() {
            if let Some(p) = p.as_mut() {
                if port.is_none_or(|w| usize::from(w.0) == i) {
                    p.watchers += 1;
                }
            }
        }
        self.live.push(Live::new(id, port, tx));
    }

    /// Ends the live traces `gone` says are over; whether any was.
    pub(crate) fn live_stop(&mut self, gone: impl Fn(&Live) -> bool) -> bool {
        let mut any = false;
        let mut i = 0;
        while i < self.live.len() {
            if !gone(&self.live[i]) {
                i += 1;
                continue;
            }
            let l = self.live.swap_remove(i);
            any = true;
            for (j, p) in self.ports.iter_mut().enumerate() {
                if let Some(p) = p.as_mut() {
                    if l.port.is_none_or(|w| usize::from(w.0) == j) {
                        p.watchers = p.watchers.saturating_sub(1);
                    }
                }
            }
        }
        any
    }

    /// Drops the sessions whose readers went away without saying so; whether any did.
    pub(crate) fn drop_closed(&mut self) -> bool {
        let mut any = self.live_stop(|l| l.closed);
        for p in self.ports.iter_mut().flatten() {
            if p.capture.as_ref().is_some_and(|c| c.closed) {
                p.capture = None;
                any = true;
            }
        }
        any
    }
}
