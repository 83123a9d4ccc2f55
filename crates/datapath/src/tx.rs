//! Transmit queues: the copies a received batch makes, gathered per egress port and sent
//! together when the batch is done (one `sendmmsg` per port on AF_PACKET ports). Frames
//! that leave unchanged are sent straight from the receive buffers; frames whose VLAN tag
//! changes (or whose checksum must be finished for a port without offloads) are copied
//! into a pool of buffers that is reused from batch to batch.

use arrayvec::ArrayVec;
use vbridge_core::{Bridge, DropReason, PortId, TagOp};
use vbridge_ports::PacketBuf;
use vbridge_wire::vlan::set_outer_vid;

use crate::bridge_rt::{GonePorts, PortRt};

/// Most changed copies held before the queues are flushed early.
const POOL: usize = 64;
/// Most frames handed to one `send_batch` call.
const SEND_CHUNK: usize = 64;

/// Where a queued frame is.
#[derive(Debug, Clone, Copy)]
enum Src {
    /// Unchanged, in the receive batch at this index.
    Rx(usize),
    /// A changed copy in the pool at this index.
    Copy(usize),
}

/// Frames waiting to be sent, per port.
#[derive(Debug, Default)]
pub(crate) struct TxQueues {
    per_port: Vec<Vec<Src>>,
    /// Ports with frames queued, in the order they got their first one.
    active: Vec<PortId>,
    pool: Vec<PacketBuf>,
    used: usize,
}

/// The pool is full: flush, then queue again.
#[derive(Debug)]
pub(crate) struct Full;

impl TxQueues {
    fn push(&mut self, port: PortId, src: Src) {
        let i = usize::from(port.0);
        if self.per_port.len() <= i {
            self.per_port.resize_with(i + 1, Vec::new);
        }
        if self.per_port[i].is_empty() {
            self.active.push(port);
        }
        self.per_port[i].push(src);
    }

    /// Queues receive-batch frame `index` to leave `port` unchanged.
    pub(crate) fn queue(&mut self, port: PortId, index: usize) {
        self.push(port, Src::Rx(index));
    }

    /// Queues a copy of `pkt` with `op` applied (and its checksum finished when `plain`).
    /// `Ok(false)` when the frame cannot be made so (counted as a drop by the caller).
    pub(crate) fn queue_changed(
        &mut self,
        port: PortId,
        pkt: &PacketBuf,
        op: TagOp,
        plain: bool,
    ) -> Result<bool, Full> {
        if self.used == self.pool.len() {
            if self.pool.len() == POOL {
                return Err(Full);
            }
            self.pool.push(PacketBuf::new());
        }
        let copy = &mut self.pool[self.used];
        copy.hdr = pkt.hdr;
        if copy.set_frame(pkt.frame()).is_err()
            || apply(copy, op).is_err()
            || (plain && !make_plain(copy))
        {
            return Ok(false);
        }
        self.push(port, Src::Copy(self.used));
        self.used += 1;
        Ok(true)
    }

    /// Sends everything queued; `rx` is the receive batch the queue refers to.
    pub(crate) fn flush(
        &mut self,
        rx: &[PacketBuf],
        ports: &mut [Option<PortRt>],
        core: &mut Bridge,
        gone: &mut GonePorts,
    ) {
        for port in self.active.drain(..) {
            let queued = &mut self.per_port[usize::from(port.0)];
            let Some(Some(p)) = ports.get_mut(usize::from(port.0)) else {
                queued.clear();
                continue;
            };
            if p.io.is_none() {
                queued.clear();
                continue;
            }
            for chunk in queued.chunks(SEND_CHUNK) {
                let refs: ArrayVec<&PacketBuf, SEND_CHUNK> = chunk
                    .iter()
                    .filter_map(|s| match *s {
                        Src::Rx(i) => rx.get(i),
                        Src::Copy(i) => self.pool.get(i),
                    })
                    .collect();
                if let Some(c) = p.capture.as_mut() {
                    for r in &refs {
                        c.take(true, r.frame());
                    }
                }
                let Some(io) = p.io.as_mut() else { break };
                match io.send_batch(&refs) {
                    Ok(r) => {
                        for _ in 0..r.dropped {
                            core.count_drop(port, DropReason::TxError);
                        }
                    }
                    Err(e) if e.is_gone() => {
                        gone.push(port);
                        break;
                    }
                    Err(_) => {
                        core.count_drop(port, DropReason::TxError);
                    }
                }
            }
            queued.clear();
        }
        self.used = 0;
    }
}

/// Applies a tag operation to a frame in its buffer.
fn apply(pkt: &mut PacketBuf, op: TagOp) -> Result<(), ()> {
    match op {
        TagOp::Keep => Ok(()),
        TagOp::Push(tag) => pkt.insert_tag(tag).map_err(drop),
        TagOp::Pop => pkt.remove_tag().map(drop).map_err(drop),
        TagOp::SetVid(v) => set_outer_vid(pkt.frame_mut(), v).map_err(drop),
    }
}

/// Finishes a partial checksum for a port without offloads; GSO super-frames cannot be
/// sent there.
fn make_plain(pkt: &mut PacketBuf) -> bool {
    !pkt.hdr.is_gso() && pkt.finish_csum().is_ok() && pkt.hdr.is_plain()
}
