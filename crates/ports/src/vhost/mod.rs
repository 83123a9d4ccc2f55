//! [`VhostUser`]: a vhost-user port. vbridge is the vhost-user backend of a guest's
//! virtio-net device, so the guest's virtqueues live in memory both share (QEMU's
//! `memory-backend-memfd,share=on`): frames move between guest memory and the switch
//! with one copy, and no TAP or kernel crossing.
//!
//! A *control thread* per port ([`control`]) accepts the QEMU connection (vbridge as
//! server) or connects to QEMU's socket (vbridge as client, retrying each second, so a
//! restarted daemon finds its guests again) and carries out the protocol: guest memory
//! maps, ring set-up. The *forwarding thread* polls the guest's transmit kick itself
//! (the port's descriptor is an epoll set holding it) and reads and fills the rings
//! ([`virtq`]) in [`PortIo::recv_batch`] and [`PortIo::send_batch`].
//!
//! Features offered: `VERSION_1`, mergeable rx buffers, event index, indirect
//! descriptors, and checksum/TSO offloads both ways, so 64 KiB TCP segments cross whole
//! between a guest and TAP/veth ports. A guest that breaks the rules ([`virtq::Fault`])
//! is cut off (its connection closed, counted); one that stops reading its receive
//! queue loses the frames that do not fit (counted as drops), never stalling the switch.

mod backend;
mod control;
pub mod driver;
mod virtq;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use virtio_bindings::virtio_net::*;

use self::backend::{Rings, Shared};
use self::virtq::{Delivery, Segments};
use crate::buf::{Batch, PacketBuf};
use crate::error::PortError;
use crate::port::{MacAddr, PortIo, SendReport};
use crate::socket::mac_from_name;
use crate::vnet::VnetHdr;

/// The guest's receive queue (frames to the guest) and transmit queue.
const RX_QUEUE: usize = 0;
const TX_QUEUE: usize = 1;

/// Who opens the vhost-user socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VhostMode {
    /// vbridge listens; QEMU connects (`-chardev socket,path=...,reconnect-ms=...`).
    Server,
    /// QEMU listens (`server=on`); vbridge connects and reconnects (OVS's
    /// `dpdkvhostuserclient`).
    Client,
}

/// A vhost-user port (see the module docs).
pub struct VhostUser {
    name: String,
    path: PathBuf,
    mode: VhostMode,
    shared: Arc<Shared>,
    segs: Segments,
    heads: Vec<(u16, usize)>,
    used: virtq::UsedList,
    /// Where a frame's checksum is finished for a guest that takes no partial ones.
    scratch: PacketBuf,
}

impl std::fmt::Debug for VhostUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostUser")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("connected", &self.connected())
            .finish()
    }
}

impl VhostUser {
    /// A port whose guest reaches it at `path`: vbridge listens there ([`VhostMode::Server`],
    /// a stale socket file is replaced) or connects there ([`VhostMode::Client`]).
    pub fn new(name: &str, path: &Path, mode: VhostMode) -> Result<VhostUser, PortError> {
        let shared = Arc::new(Shared::new(name).map_err(|e| PortError::io(name, "epoll", e))?);
        control::spawn(name, path, &mode, shared.clone())?;
        Ok(VhostUser {
            name: name.to_owned(),
            path: path.to_owned(),
            mode,
            shared,
            segs: Segments::default(),
            heads: Vec::new(),
            used: Vec::new(),
            scratch: PacketBuf::new(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a frontend (QEMU) is connected now.
    pub fn connected(&self) -> bool {
        self.shared.connected()
    }

    /// Whether a frontend has set up memory and both rings, so frames can move.
    pub fn active(&self) -> bool {
        let r = self.shared.lock();
        !r.faulted && r.mem.is_some() && r.rings.iter().all(|q| q.live())
    }

    /// Connections cut off because the guest broke the virtio rules.
    pub fn cut_off(&self) -> u64 {
        self.shared.cut_off.load(Ordering::Relaxed)
    }

    /// Connections accepted or made so far.
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }
}

fn has(features: u64, bit: u32) -> bool {
    features & (1 << bit) != 0
}

/// Whether a guest with `features` takes a frame with header `hdr`: `Ok(false)` as it
/// is, `Ok(true)` once its checksum is finished, `Err` not at all (a GSO kind it did not
/// accept).
fn fit_for_guest(hdr: &VnetHdr, features: u64) -> Result<bool, ()> {
    if hdr.is_gso() {
        let bit = match hdr.gso_kind() {
            VnetHdr::GSO_TCPV4 => VIRTIO_NET_F_GUEST_TSO4,
            VnetHdr::GSO_TCPV6 => VIRTIO_NET_F_GUEST_TSO6,
            _ => return Err(()),
        };
        let ecn = hdr.gso_type & VnetHdr::GSO_ECN == 0 || has(features, VIRTIO_NET_F_GUEST_ECN);
        return if has(features, bit) && ecn {
            Ok(false)
        } else {
            Err(())
        };
    }
    Ok(hdr.needs_csum() && !has(features, VIRTIO_NET_F_GUEST_CSUM))
}

impl PortIo for VhostUser {
    fn name(&self) -> &str {
        &self.name
    }

    fn as_raw_fd(&self) -> RawFd {
        self.shared.set.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        true
    }

    fn recv_batch(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        batch.clear();
        let VhostUser {
            name,
            shared,
            segs,
            used,
            ..
        } = self;
        // Level-triggered: take the wake-ups and the guest's kicks now (also while the
        // ring is stopped, or they would keep the port readable); a wake-up is given
        // again below if the batch fills before the queue empties.
        shared.woken();
        let mut r = shared.lock();
        let Rings {
            mem,
            rings,
            faulted,
            ..
        } = &mut *r;
        let ring = &mut rings[TX_QUEUE];
        ring.take_kick();
        let Some(mem) = mem.as_deref() else {
            return Ok(0);
        };
        if *faulted || !ring.live() {
            return Ok(0);
        }
        let mut got = virtq::recv(&mut ring.queue, mem, batch.begin_fill(), segs, used);
        if let Err(f) = ring.complete(mem, used) {
            got.fault = got.fault.or(Some(f));
        }
        // Frames read before a fault still go on.
        batch.finish_fill(got.n);
        if let Some(f) = got.fault {
            tracing::warn!(port = %name, why = f.as_str(), "guest broke the virtio rules: cut off");
            shared.cut(&mut r);
        } else if got.more {
            shared.wake();
        }
        Ok(got.n)
    }

    fn send(&mut self, pkt: &PacketBuf) -> Result<(), PortError> {
        let r = self.send_batch(&[pkt])?;
        if r.sent == 1 { Ok(()) } else { Err(no_room()) }
    }

    fn send_batch(&mut self, pkts: &[&PacketBuf]) -> Result<SendReport, PortError> {
        let VhostUser {
            name,
            shared,
            segs,
            heads,
            used,
            scratch,
            ..
        } = self;
        let mut report = SendReport::default();
        let mut r = shared.lock();
        let Rings {
            mem,
            features,
            rings,
            faulted,
        } = &mut *r;
        let ring = &mut rings[RX_QUEUE];
        let Some(mem) = mem.as_deref().filter(|_| !*faulted && ring.live()) else {
            report.dropped = pkts.len();
            return Ok(report);
        };
        let mergeable = has(*features, VIRTIO_NET_F_MRG_RXBUF);
        let mut fault = None;
        for pkt in pkts {
            let (hdr, frame) = match fit_for_guest(&pkt.hdr, *features) {
                Ok(false) => (pkt.hdr, pkt.frame()),
                Ok(true) => {
                    scratch.clear();
                    let done = scratch.set_frame(pkt.frame()).is_ok() && {
                        scratch.hdr = pkt.hdr;
                        scratch.finish_csum().is_ok()
                    };
                    if !done {
                        report.dropped += 1;
                        continue;
                    }
                    (scratch.hdr, scratch.frame())
                }
                Err(()) => {
                    report.dropped += 1;
                    continue;
                }
            };
            let full_at = &mut ring.full_at;
            let q = &mut ring.queue;
            match virtq::send(q, mem, &hdr, frame, mergeable, segs, heads, used, full_at) {
                Ok(Delivery::Delivered) => report.sent += 1,
                Ok(Delivery::NoRoom) => report.dropped += 1,
                Err(f) => {
                    fault = Some(f);
                    break;
                }
            }
        }
        // Whole frames only, also before a fault.
        if let Err(f) = ring.complete(mem, used) {
            fault = fault.or(Some(f));
        }
        if let Some(f) = fault {
            report.dropped = pkts.len() - report.sent;
            tracing::warn!(port = %name, why = f.as_str(), "guest broke the virtio rules: cut off");
            shared.cut(&mut r);
        }
        Ok(report)
    }

    fn mac(&self) -> Result<MacAddr, PortError> {
        Ok(mac_from_name(&self.name))
    }

    fn release(&mut self) {
        if self.mode == VhostMode::Server {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    fn rx_dropped(&self) -> u64 {
        self.cut_off()
    }
}

impl Drop for VhostUser {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

#[cfg(test)]
mod tests;

fn no_room() -> PortError {
    PortError::Dropped {
        op: "vhost-user send: no room in the guest's receive queue",
        source: io::Error::from_raw_os_error(libc::ENOBUFS),
    }
}
