//! The other side of a vhost-user port: a minimal virtio-net *driver* acting as the
//! vhost-user frontend (what QEMU and the guest are together), as DPDK's virtio-user
//! does. Tests use it to reach a port without booting a guest, and `bench/vm.sh`'s load
//! generator (`examples/vhost_load.rs`) to measure the switch side alone.
//!
//! It shares its memory with the backend through a memfd sealed against shrinking (as
//! QEMU's `memory-backend-memfd`), lays out two split virtqueues (receive, transmit) there,
//! negotiates `VERSION_1`, mergeable rx buffers, the event index and the offloads, and
//! polls: it asks for no interrupts and kicks only when the backend asks for it (by the
//! event index, as Linux's virtio-net does).

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;

use vhost::vhost_user::message::{
    VhostUserHeaderFlag, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::virtio_ring::{
    VRING_AVAIL_F_NO_INTERRUPT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY,
};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::backend::features as backend_features;
use super::virtq::HDR_LEN;
use crate::vnet::VnetHdr;

/// Descriptors per queue.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes of each receive buffer (as Linux's mergeable buffers, a page at most).
pub const RX_BUF: u32 = 4096;
/// Bytes of each transmit buffer: a header and the largest GSO frame.
pub const TX_BUF: u32 = 69_632;

const RX: usize = 0;
const TX: usize = 1;

/// Why the driver failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("vhost-user: {0}")]
    Vhost(#[from] vhost::Error),
    #[error("shared memory: {0}")]
    Io(#[from] std::io::Error),
    #[error("guest memory: {0}")]
    Memory(String),
}

/// One split virtqueue, driver side.
#[derive(Debug)]
struct DriverQueue {
    desc: GuestAddress,
    avail: GuestAddress,
    used: GuestAddress,
    bufs: GuestAddress,
    buf_len: u32,
    /// Next avail index to publish.
    avail_idx: u16,
    /// The avail index at the last kick decision.
    kicked_at: u16,
    /// Used entries consumed so far.
    last_used: u16,
    /// Free descriptors (transmit queue).
    free: Vec<u16>,
    kick: EventFd,
    call: EventFd,
}

impl DriverQueue {
    fn buf(&self, i: u16) -> GuestAddress {
        GuestAddress(self.bufs.0 + u64::from(i) * u64::from(self.buf_len))
    }
}

/// A virtio-net driver on a vhost-user socket (see the module docs).
pub struct Driver {
    /// Held for its socket: the connection lasts as long as the driver.
    _frontend: Frontend,
    mem: GuestMemoryMmap,
    queues: [DriverQueue; 2],
    features: u64,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("features", &self.features)
            .finish()
    }
}

fn mem_err(e: impl std::fmt::Display) -> DriverError {
    DriverError::Memory(e.to_string())
}

impl Driver {
    /// Connects to a backend listening at `path` (a vbridge port in server mode).
    pub fn connect(path: &Path) -> Result<Driver, DriverError> {
        Driver::setup(Frontend::connect(path, 2)?, true)
    }

    /// As [`Driver::connect`], with guest memory that is not sealed against shrinking
    /// (which a backend should refuse): for tests.
    pub fn connect_unsealed(path: &Path) -> Result<Driver, DriverError> {
        Driver::setup(Frontend::connect(path, 2)?, false)
    }

    /// Sets up a backend that connected to us (a vbridge port in client mode).
    pub fn over(stream: UnixStream) -> Result<Driver, DriverError> {
        Driver::setup(Frontend::from_stream(stream, 2), true)
    }

    fn event_idx(&self) -> bool {
        self.features & (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX) != 0
    }

    fn setup(mut frontend: Frontend, sealed: bool) -> Result<Driver, DriverError> {
        let q_bytes = |n: u32| 16 * n + 4096 + 8 * n + 4096;
        let size = 2 * q_bytes(u32::from(QUEUE_SIZE)) + u32::from(QUEUE_SIZE) * (RX_BUF + TX_BUF);
        let size = (u64::from(size) + 0xfffff) & !0xfffff;
        let file = File::from(crate::sys::memfd(size, sealed)?);
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            size as usize,
            Some(FileOffset::new(file, 0)),
        )])
        .map_err(mem_err)?;
        let region = mem
            .find_region(GuestAddress(0))
            .ok_or_else(|| mem_err("no region"))?;
        let info = VhostUserMemoryRegionInfo::from_guest_region(region)?;
        let host = info.userspace_addr;

        frontend.set_owner()?;
        let offered = frontend.get_features()?;
        // As Linux's driver: the event index says when the backend wants a kick.
        let features = offered & backend_features();
        frontend.set_features(features)?;
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            let proto = frontend.get_protocol_features()?;
            frontend.set_protocol_features(proto & VhostUserProtocolFeatures::REPLY_ACK)?;
            if proto.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                // Every request answered, so a refusal is an error here (as QEMU asks).
                frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
        }
        frontend.set_mem_table(&[info])?;

        let n = u64::from(QUEUE_SIZE);
        let mut at = 0u64;
        let mut make = |buf_len: u32| -> Result<DriverQueue, DriverError> {
            let desc = at;
            let avail = desc + 16 * n;
            let used = (avail + 6 + 2 * n + 3) & !3;
            at = (used + 6 + 8 * n + 4095) & !4095;
            Ok(DriverQueue {
                desc: GuestAddress(desc),
                avail: GuestAddress(avail),
                used: GuestAddress(used),
                bufs: GuestAddress(0),
                buf_len,
                avail_idx: 0,
                kicked_at: 0,
                last_used: 0,
                free: (0..QUEUE_SIZE).rev().collect(),
                kick: EventFd::new(0)?,
                call: EventFd::new(0)?,
            })
        };
        let mut queues = [make(RX_BUF)?, make(TX_BUF)?];
        for q in &mut queues {
            q.bufs = GuestAddress(at);
            at += n * u64::from(q.buf_len);
        }
        for (i, q) in queues.iter().enumerate() {
            mem.store(
                VRING_AVAIL_F_NO_INTERRUPT as u16,
                q.avail,
                Ordering::Release,
            )
            .map_err(mem_err)?;
            frontend.set_vring_num(i, QUEUE_SIZE)?;
            frontend.set_vring_addr(
                i,
                &VringConfigData {
                    queue_max_size: QUEUE_SIZE,
                    queue_size: QUEUE_SIZE,
                    flags: 0,
                    desc_table_addr: host + q.desc.0,
                    used_ring_addr: host + q.used.0,
                    avail_ring_addr: host + q.avail.0,
                    log_addr: None,
                },
            )?;
            frontend.set_vring_base(i, 0)?;
            frontend.set_vring_call(i, &q.call)?;
            frontend.set_vring_kick(i, &q.kick)?;
            if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
                frontend.set_vring_enable(i, true)?;
            }
        }
        let mut d = Driver {
            _frontend: frontend,
            mem,
            queues,
            features,
        };
        d.fill_rx()?;
        Ok(d)
    }

    /// Offers every free receive buffer to the backend.
    fn fill_rx(&mut self) -> Result<(), DriverError> {
        let event_idx = self.event_idx();
        let q = &mut self.queues[RX];
        while let Some(i) = q.free.pop() {
            write_desc(&self.mem, q, i, q.buf_len, VRING_DESC_F_WRITE as u16)?;
            publish_one(&self.mem, q, i)?;
        }
        self.mem
            .store(q.avail_idx, GuestAddress(q.avail.0 + 2), Ordering::Release)
            .map_err(mem_err)?;
        kick(&self.mem, q, event_idx, true)
    }

    /// Queues `frame` (with offload header `hdr`) for sending; `Ok(false)` when every
    /// transmit buffer is in flight. Call [`Driver::flush`] to hand them over.
    pub fn push(&mut self, hdr: &VnetHdr, frame: &[u8]) -> Result<bool, DriverError> {
        self.reclaim_tx()?;
        let q = &mut self.queues[TX];
        if HDR_LEN + frame.len() > q.buf_len as usize {
            return Err(mem_err("frame larger than a transmit buffer"));
        }
        let Some(i) = q.free.pop() else {
            return Ok(false);
        };
        let mut h = [0u8; HDR_LEN];
        h[..VnetHdr::LEN].copy_from_slice(&hdr.to_bytes());
        let at = q.buf(i);
        self.mem.write_slice(&h, at).map_err(mem_err)?;
        self.mem
            .write_slice(frame, GuestAddress(at.0 + HDR_LEN as u64))
            .map_err(mem_err)?;
        write_desc(&self.mem, q, i, (HDR_LEN + frame.len()) as u32, 0)?;
        publish_one(&self.mem, q, i)?;
        Ok(true)
    }

    /// Publishes the frames pushed so far and kicks the backend if it wants a kick.
    pub fn flush(&mut self) -> Result<(), DriverError> {
        let event_idx = self.event_idx();
        let q = &mut self.queues[TX];
        self.mem
            .store(q.avail_idx, GuestAddress(q.avail.0 + 2), Ordering::Release)
            .map_err(mem_err)?;
        kick(&self.mem, q, event_idx, false)
    }

    /// Transmit buffers the backend is done with become free again.
    fn reclaim_tx(&mut self) -> Result<(), DriverError> {
        let q = &mut self.queues[TX];
        let used: u16 = self
            .mem
            .load(GuestAddress(q.used.0 + 2), Ordering::Acquire)
            .map_err(mem_err)?;
        while q.last_used != used {
            let slot = u64::from(q.last_used % QUEUE_SIZE);
            let id: u32 = self
                .mem
                .read_obj(GuestAddress(q.used.0 + 4 + 8 * slot))
                .map_err(mem_err)?;
            if id >= u32::from(QUEUE_SIZE) {
                return Err(mem_err(format!("used id {id} out of range")));
            }
            q.free.push(id as u16);
            q.last_used = q.last_used.wrapping_add(1);
        }
        Ok(())
    }

    /// Takes the frames delivered since the last call, handing each (offload header,
    /// frame) to `f`, and gives the buffers back. Returns how many frames came.
    pub fn recv(&mut self, mut f: impl FnMut(VnetHdr, &[u8])) -> Result<usize, DriverError> {
        self.take(true, &mut |h, _, frame| f(h, frame))
    }

    /// As [`Driver::recv`], handing over each frame's header and length only, its bytes
    /// left unread (as a guest's driver hands pages on without copying them).
    pub fn recv_lengths(
        &mut self,
        mut f: impl FnMut(VnetHdr, usize),
    ) -> Result<usize, DriverError> {
        self.take(false, &mut |h, len, _| f(h, len))
    }

    fn take(
        &mut self,
        copy: bool,
        f: &mut dyn FnMut(VnetHdr, usize, &[u8]),
    ) -> Result<usize, DriverError> {
        let q = &mut self.queues[RX];
        let used: u16 = self
            .mem
            .load(GuestAddress(q.used.0 + 2), Ordering::Acquire)
            .map_err(mem_err)?;
        let mut frames = 0;
        let mut frame = Vec::new();
        while q.last_used != used {
            // One frame: `num_buffers` used entries.
            let (id, len) = used_elem(&self.mem, q, q.last_used)?;
            let mut h = [0u8; HDR_LEN];
            self.mem.read_slice(&mut h, q.buf(id)).map_err(mem_err)?;
            let nbuf = u16::from_le_bytes([h[10], h[11]]).max(1);
            if used.wrapping_sub(q.last_used) < nbuf {
                break; // the rest of this frame is not there yet
            }
            frame.clear();
            let mut total = 0;
            for k in 0..nbuf {
                let (id, len) = if k == 0 {
                    (id, len)
                } else {
                    used_elem(&self.mem, q, q.last_used.wrapping_add(k))?
                };
                let skip = if k == 0 { HDR_LEN } else { 0 };
                let n = (len as usize).saturating_sub(skip);
                total += n;
                if copy {
                    let start = frame.len();
                    frame.resize(start + n, 0);
                    self.mem
                        .read_slice(&mut frame[start..], GuestAddress(q.buf(id).0 + skip as u64))
                        .map_err(mem_err)?;
                }
                q.free.push(id);
            }
            q.last_used = q.last_used.wrapping_add(nbuf);
            let mut legacy = [0u8; VnetHdr::LEN];
            legacy.copy_from_slice(&h[..VnetHdr::LEN]);
            f(VnetHdr::from_bytes(&legacy), total, &frame);
            frames += 1;
        }
        if frames > 0 {
            self.fill_rx()?;
        }
        Ok(frames)
    }

    /// Writes a raw descriptor into the transmit queue and publishes it: for tests that
    /// play a misbehaving guest. `next: None` chains the descriptor to itself (a loop).
    pub fn push_raw(
        &mut self,
        addr: u64,
        len: u32,
        flags: u16,
        next: Option<u16>,
    ) -> Result<(), DriverError> {
        let q = &mut self.queues[TX];
        let i = q.free.pop().ok_or_else(|| mem_err("no free descriptor"))?;
        let next = next.unwrap_or(i);
        let at = GuestAddress(q.desc.0 + 16 * u64::from(i));
        self.mem.write_obj(addr, at).map_err(mem_err)?;
        self.mem
            .write_obj(len, GuestAddress(at.0 + 8))
            .map_err(mem_err)?;
        self.mem
            .write_obj(flags, GuestAddress(at.0 + 12))
            .map_err(mem_err)?;
        self.mem
            .write_obj(next, GuestAddress(at.0 + 14))
            .map_err(mem_err)?;
        publish_one(&self.mem, q, i)?;
        self.flush()
    }
}

fn used_elem(mem: &GuestMemoryMmap, q: &DriverQueue, idx: u16) -> Result<(u16, u32), DriverError> {
    let slot = u64::from(idx % QUEUE_SIZE);
    let at = GuestAddress(q.used.0 + 4 + 8 * slot);
    let id: u32 = mem.read_obj(at).map_err(mem_err)?;
    let len: u32 = mem.read_obj(GuestAddress(at.0 + 4)).map_err(mem_err)?;
    if id >= u32::from(QUEUE_SIZE) {
        return Err(mem_err(format!("used id {id} out of range")));
    }
    Ok((id as u16, len))
}

fn write_desc(
    mem: &GuestMemoryMmap,
    q: &DriverQueue,
    i: u16,
    len: u32,
    flags: u16,
) -> Result<(), DriverError> {
    let at = GuestAddress(q.desc.0 + 16 * u64::from(i));
    mem.write_obj(q.buf(i).0, at).map_err(mem_err)?;
    mem.write_obj(len, GuestAddress(at.0 + 8))
        .map_err(mem_err)?;
    mem.write_obj(flags, GuestAddress(at.0 + 12))
        .map_err(mem_err)?;
    mem.write_obj(0u16, GuestAddress(at.0 + 14))
        .map_err(mem_err)
}

/// Puts descriptor `i` in the next avail slot (published by storing the index later).
fn publish_one(mem: &GuestMemoryMmap, q: &mut DriverQueue, i: u16) -> Result<(), DriverError> {
    let slot = u64::from(q.avail_idx % QUEUE_SIZE);
    mem.write_obj(i, GuestAddress(q.avail.0 + 4 + 2 * slot))
        .map_err(mem_err)?;
    q.avail_idx = q.avail_idx.wrapping_add(1);
    Ok(())
}

/// Kicks unless the backend said it is polling anyway (`always` for the first fill).
/// With the event index, when the new available index passed the backend's
/// `avail_event`; without, unless it set `VRING_USED_F_NO_NOTIFY`.
fn kick(
    mem: &GuestMemoryMmap,
    q: &mut DriverQueue,
    event_idx: bool,
    always: bool,
) -> Result<(), DriverError> {
    std::sync::atomic::fence(Ordering::SeqCst);
    let (old, new) = (q.kicked_at, q.avail_idx);
    q.kicked_at = new;
    let wanted = if event_idx {
        let at = GuestAddress(q.used.0 + 4 + 8 * u64::from(QUEUE_SIZE));
        let event = u16::from_le(mem.load::<u16>(at, Ordering::Acquire).map_err(mem_err)?);
        new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
    } else {
        let flags: u16 = mem.load(q.used, Ordering::Acquire).map_err(mem_err)?;
        flags & VRING_USED_F_NO_NOTIFY as u16 == 0
    };
    if always || wanted {
        q.kick.write(1)?;
    }
    Ok(())
}
