//! What a vhost-user port's control thread and the forwarding thread share ([`Shared`],
//! the rings behind one lock), and the protocol side of a connection ([`Session`]): the
//! `vhost` crate parses the frontend's messages and passes descriptors; the session
//! maps guest memory, sets the two split queues up, starts and stops them, and puts the
//! guest's transmit kick in the port's epoll set, so the forwarding thread wakes on it
//! directly.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vhost::VhostUserMemoryRegionBase;
use vhost::vhost_user::message::*;
use vhost::vhost_user::{Backend, Error as VuError, GpuBackend, VhostUserBackendReqHandlerMut};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_net::*;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap};

use super::virtq::{self, Fault, UsedList};
use super::{RX_QUEUE, TX_QUEUE};
use crate::sys;

type Result<T> = std::result::Result<T, VuError>;

/// Longest virtqueue accepted (QEMU's `rx_queue_size`/`tx_queue_size` go up to 1024).
const MAX_QUEUE_SIZE: u16 = 1024;

/// The virtio features offered to the guest.
pub(crate) fn features() -> u64 {
    [
        VIRTIO_F_VERSION_1,
        VIRTIO_RING_F_EVENT_IDX,
        VIRTIO_RING_F_INDIRECT_DESC,
        VIRTIO_NET_F_MRG_RXBUF,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6,
        VIRTIO_NET_F_GUEST_ECN,
        VIRTIO_NET_F_HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6,
        VIRTIO_NET_F_HOST_ECN,
    ]
    .iter()
    .fold(VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(), |f, b| {
        f | (1u64 << b)
    })
}

/// One virtqueue and what goes with it.
pub(crate) struct Ring {
    pub(crate) queue: Queue,
    kick: Option<File>,
    call: Option<File>,
    /// Started by a kick descriptor, stopped by `GET_VRING_BASE`.
    started: bool,
    /// `SET_VRING_ENABLE` (always, without protocol features).
    enabled: bool,
    /// The available index at which the guest's receive buffers ran out (see
    /// [`virtq::send`]).
    pub(crate) full_at: Option<u16>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            queue: Queue::new(MAX_QUEUE_SIZE).expect("a valid queue size"),
            kick: None,
            call: None,
            started: false,
            enabled: false,
            full_at: None,
        }
    }

    /// Whether frames may move on this ring now.
    pub(crate) fn live(&self) -> bool {
        self.started && self.enabled && self.queue.ready()
    }

    /// Publishes the used buffers on `used` and tells the guest, if it wants to hear.
    pub(crate) fn complete(
        &mut self,
        mem: &GuestMemoryMmap,
        used: &mut UsedList,
    ) -> std::result::Result<(), Fault> {
        let old = self.queue.next_used();
        virtq::publish(&mut self.queue, mem, used)?;
        if virtq::should_signal(&self.queue, mem, old)
            && let Some(c) = &self.call
        {
            // Nonblocking (set when it came): a full counter only loses this interrupt.
            let _ = (&*c).write(&1u64.to_ne_bytes());
        }
        Ok(())
    }

    /// Takes the guest's kicks (the descriptor is an eventfd in nonblocking mode).
    pub(crate) fn take_kick(&self) {
        if let Some(k) = &self.kick {
            let _ = (&*k).read(&mut [0u8; 8]);
        }
    }
}

/// A connection's rings and memory, as the forwarding thread uses them.
pub(crate) struct Rings {
    pub(crate) mem: Option<Arc<GuestMemoryMmap>>,
    pub(crate) features: u64,
    pub(crate) rings: [Ring; 2],
    /// The guest broke the rules: nothing moves until the next connection.
    pub(crate) faulted: bool,
}

impl Rings {
    fn new() -> Rings {
        Rings {
            mem: None,
            features: 0,
            rings: [Ring::new(), Ring::new()],
            faulted: false,
        }
    }
}

/// Shared by a port and its control thread.
pub(crate) struct Shared {
    name: String,
    /// The port's pollable descriptor: an epoll set of `wake` and the guest's transmit
    /// kick (while that ring runs).
    pub(crate) set: OwnedFd,
    /// Wakes the forwarding thread: a batch filled before the queue emptied, a ring
    /// (re)started.
    wake: File,
    rings: Mutex<Rings>,
    /// The current connection, to cut it off or end it.
    stream: Mutex<Option<UnixStream>>,
    /// A duplicate of the listening socket (server mode).
    listener: Mutex<Option<OwnedFd>>,
    pub(crate) cut_off: AtomicU64,
    pub(crate) connects: AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub(crate) fn new(name: &str) -> io::Result<Shared> {
        let set = sys::epoll::create()?;
        let wake = File::from(sys::eventfd()?);
        sys::epoll::add(set.as_fd(), wake.as_fd())?;
        Ok(Shared {
            name: name.to_owned(),
            set,
            wake,
            rings: Mutex::new(Rings::new()),
            stream: Mutex::new(None),
            listener: Mutex::new(None),
            cut_off: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            stop: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Makes the port's descriptor readable (the forwarding thread will look).
    pub(crate) fn wake(&self) {
        let _ = (&self.wake).write(&1u64.to_ne_bytes());
    }

    /// Takes the wake-ups given so far.
    pub(crate) fn woken(&self) {
        let _ = (&self.wake).read(&mut [0u8; 8]);
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stream(&self) -> MutexGuard<'_, Option<UnixStream>> {
        self.stream.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection starts on `stream`: fresh rings.
    pub(crate) fn begin(&self, stream: Option<UnixStream>) {
        self.replace(Rings::new());
        *self.stream() = stream;
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection ended: its rings go.
    pub(crate) fn end(&self) {
        self.replace(Rings::new());
        *self.stream() = None;
    }

    /// Puts `new` in place of the rings, the transmit kick out of the epoll set.
    fn replace(&self, new: Rings) {
        let old = std::mem::replace(&mut *self.lock(), new);
        if let Some(k) = &old.rings[TX_QUEUE].kick {
            let _ = sys::epoll::del(self.set.as_fd(), k.as_fd());
        }
    }

    /// Enables or disables ring `index` (`SET_VRING_ENABLE`); false if there is no
    /// such ring.
    pub(crate) fn enable(&self, index: u32, on: bool) -> bool {
        let found = self
            .lock()
            .rings
            .get_mut(index as usize)
            .map(|ring| ring.enabled = on)
            .is_some();
        self.wake();
        found
    }

    pub(crate) fn connected(&self) -> bool {
        self.stream().is_some()
    }

    /// Cuts the current guest off: it broke the rules (the caller holds the rings).
    pub(crate) fn cut(&self, rings: &mut Rings) {
        rings.faulted = true;
        self.cut_off.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = &*self.stream() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The port is going away: ends the connection and wakes a waiting `accept`; the
    /// control thread sees `stop` and ends.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(s) = &*self.stream() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if let Some(l) = &*self.listener.lock().unwrap_or_else(|p| p.into_inner()) {
            let _ = sys::shutdown(l.as_fd());
        }
    }

    /// The listening socket (server mode), so that [`Shared::stop`] can wake `accept`.
    pub(crate) fn set_listener(&self, l: OwnedFd) {
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = Some(l);
    }
}

/// Takes `file` as a ring's kick or call descriptor if it is an eventfd, in nonblocking
/// mode (QEMU's are already): the forwarding thread reads and writes it and must never
/// wait on it. Anything else could stall or spin that thread, and is refused.
fn eventfd(file: File) -> Result<File> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(VuError::ReqHandlerError)?;
    if link.as_os_str() != "anon_inode:[eventfd]" {
        return Err(VuError::InvalidParam);
    }
    sys::set_nonblocking(file.as_fd()).map_err(VuError::ReqHandlerError)?;
    Ok(file)
}

/// Refuses a guest memory file that could be cut shorter than the region mapped from
/// it (the forwarding thread would fault on the missing pages): it must hold the region
/// now, and a memory file that takes seals (a memfd, QEMU's `memory-backend-memfd`) must
/// be sealed against shrinking. Files without seals (hugetlbfs) are taken on their size.
fn check_memory_file(file: &File, region: &VhostUserMemoryRegion) -> Result<()> {
    let size = file.metadata().map_err(VuError::ReqHandlerError)?.len();
    let end = region.mmap_offset.checked_add(region.memory_size);
    if end.is_none_or(|e| e > size) {
        return Err(VuError::InvalidParam);
    }
    match sys::seals(file.as_fd()) {
        Ok(seals) if seals & libc::F_SEAL_SHRINK == 0 => Err(VuError::InvalidOperation(
            "guest memory must be sealed against shrinking (memory-backend-memfd seals it)",
        )),
        _ => Ok(()),
    }
}

/// Where guest memory appears in the frontend's address space (for ring addresses).
#[derive(Debug, Clone, Copy)]
struct Mapping {
    user_addr: u64,
    size: u64,
    gpa: u64,
}

/// The protocol side of one connection.
pub(crate) struct Session {
    shared: Arc<Shared>,
    owned: bool,
    mappings: Vec<Mapping>,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>) -> Session {
        Session {
            shared,
            owned: false,
            mappings: Vec::new(),
        }
    }

    /// Runs `f` on ring `index` and the guest memory, under the rings' lock.
    fn ring<T>(
        &self,
        index: u32,
        f: impl FnOnce(&mut Ring, Option<&GuestMemoryMmap>) -> Result<T>,
    ) -> Result<T> {
        let mut r = self.shared.lock();
        let Rings { rings, mem, .. } = &mut *r;
        let ring = rings.get_mut(index as usize).ok_or(VuError::InvalidParam)?;
        f(ring, mem.as_deref())
    }

    /// The guest physical address of frontend address `va`.
    fn gpa(&self, va: u64) -> Result<u64> {
        self.mappings
            .iter()
            .find(|m| va >= m.user_addr && va - m.user_addr < m.size)
            .map(|m| m.gpa + (va - m.user_addr))
            .ok_or(VuError::InvalidParam)
    }

    /// Starts a ring that has its kick (the spec: "start ring upon receiving a kick"),
    /// or checks a started one again after its addresses, size or the memory changed: a
    /// ring outside guest memory stops (and its kick leaves the port's epoll set).
    fn start(&self, ring: &mut Ring, mem: Option<&GuestMemoryMmap>, index: u32) {
        let was = ring.started;
        // The queue checks itself only while it is marked ready.
        ring.queue.set_ready(true);
        let valid = mem.is_some_and(|m| ring.queue.is_valid(m));
        ring.started = ring.kick.is_some() && valid;
        ring.queue.set_ready(ring.started);
        ring.full_at = None;
        if ring.started
            && index as usize == RX_QUEUE
            && let Some(m) = mem
        {
            // The switch never waits for receive buffers: the guest need not kick when
            // it adds some (without the event index, `NO_NOTIFY`; with it, the guest
            // kicks only when it passes an index that is never moved on).
            let _ = ring.queue.disable_notification(m);
        }
        if index as usize == TX_QUEUE
            && let Some(k) = &ring.kick
        {
            if ring.started && !was {
                let _ = sys::epoll::add(self.shared.set.as_fd(), k.as_fd());
            } else if was && !ring.started {
                let _ = sys::epoll::del(self.shared.set.as_fd(), k.as_fd());
            }
        }
        // Frames may be waiting already.
        self.shared.wake();
    }

    /// Checks started ring `index` again (see [`Session::start`]).
    fn recheck(&self, ring: &mut Ring, mem: Option<&GuestMemoryMmap>, index: u32) {
        if ring.started {
            self.start(ring, mem, index);
        }
    }

    fn unsupported<T>(&self) -> Result<T> {
        Err(VuError::InvalidOperation("not supported by vbridge"))
    }
}

impl VhostUserBackendReqHandlerMut for Session {
    fn set_owner(&mut self) -> Result<()> {
        if self.owned {
            return Err(VuError::InvalidOperation("already owned"));
        }
        self.owned = true;
        Ok(())
    }

    fn reset_owner(&mut self) -> Result<()> {
        self.owned = false;
        self.shared.replace(Rings::new());
        Ok(())
    }

    fn reset_device(&mut self) -> Result<()> {
        self.reset_owner().map(|()| self.owned = true)
    }

    fn get_features(&mut self) -> Result<u64> {
        Ok(features())
    }

    fn set_features(&mut self, f: u64) -> Result<()> {
        if f & !features() != 0 {
            return Err(VuError::InvalidParam);
        }
        let event_idx = f & (1 << VIRTIO_RING_F_EVENT_IDX) != 0;
        let legacy = f & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() == 0;
        let mut r = self.shared.lock();
        r.features = f;
        for ring in &mut r.rings {
            ring.queue.set_event_idx(event_idx);
            // Without protocol features a ring is enabled as soon as it exists.
            if legacy {
                ring.enabled = true;
            }
        }
        Ok(())
    }

    fn set_mem_table(
        &mut self,
        ctx: &[VhostUserMemoryRegion],
        files: Vec<File>,
        _postcopy: Option<bool>,
    ) -> Result<Option<Vec<VhostUserMemoryRegionBase>>> {
        let mut regions = Vec::new();
        let mut mappings = Vec::new();
        for (region, file) in ctx.iter().zip(files) {
            check_memory_file(&file, region)?;
            let mapped = GuestRegionMmap::new(
                region.mmap_region(file)?,
                GuestAddress(region.guest_phys_addr),
            )
            .ok_or(VuError::InvalidParam)?;
            regions.push(mapped);
            mappings.push(Mapping {
                user_addr: region.user_addr,
                size: region.memory_size,
                gpa: region.guest_phys_addr,
            });
        }
        let mem = GuestMemoryMmap::from_regions(regions).map_err(|_| VuError::InvalidParam)?;
        self.mappings = mappings;
        let mem = Arc::new(mem);
        let mut r = self.shared.lock();
        r.mem = Some(mem.clone());
        for (i, ring) in r.rings.iter_mut().enumerate() {
            self.recheck(ring, Some(&mem), i as u32);
        }
        Ok(None)
    }

    fn set_vring_num(&mut self, index: u32, num: u32) -> Result<()> {
        let num = u16::try_from(num).map_err(|_| VuError::InvalidParam)?;
        if num == 0 || num > MAX_QUEUE_SIZE || !num.is_power_of_two() {
            return Err(VuError::InvalidParam);
        }
        self.ring(index, |ring, mem| {
            ring.queue.set_size(num);
            self.recheck(ring, mem, index);
            Ok(())
        })
    }

    fn set_vring_addr(
        &mut self,
        index: u32,
        _flags: VhostUserVringAddrFlags,
        descriptor: u64,
        used: u64,
        available: u64,
        _log: u64,
    ) -> Result<()> {
        let (d, u, a) = (self.gpa(descriptor)?, self.gpa(used)?, self.gpa(available)?);
        self.ring(index, |ring, mem| {
            let q = &mut ring.queue;
            q.set_desc_table_address(Some(d as u32), Some((d >> 32) as u32));
            q.set_used_ring_address(Some(u as u32), Some((u >> 32) as u32));
            q.set_avail_ring_address(Some(a as u32), Some((a >> 32) as u32));
            self.recheck(ring, mem, index);
            Ok(())
        })
    }

    fn set_vring_base(&mut self, index: u32, base: u32) -> Result<()> {
        let base = u16::try_from(base).map_err(|_| VuError::InvalidParam)?;
        self.ring(index, |ring, _| {
            // Every frame is finished before the next message is read, so nothing is
            // in flight: used and available meet at `base`.
            ring.queue.set_next_avail(base);
            ring.queue.set_next_used(base);
            ring.full_at = None;
            Ok(())
        })
    }

    fn get_vring_base(&mut self, index: u32) -> Result<VhostUserVringState> {
        let set = &self.shared.set;
        self.ring(index, |ring, _| {
            if let Some(k) = ring.kick.take() {
                let _ = sys::epoll::del(set.as_fd(), k.as_fd());
            }
            ring.call = None;
            ring.started = false;
            ring.queue.set_ready(false);
            Ok(VhostUserVringState::new(
                index,
                u32::from(ring.queue.next_avail()),
            ))
        })
    }

    fn set_vring_kick(&mut self, index: u8, fd: Option<File>) -> Result<()> {
        let index = u32::from(index);
        let fd = fd.map(eventfd).transpose()?;
        let set = &self.shared.set;
        self.ring(index, |ring, mem| {
            if let Some(k) = ring.kick.take() {
                let _ = sys::epoll::del(set.as_fd(), k.as_fd());
            }
            ring.started = false;
            ring.kick = fd;
            self.start(ring, mem, index);
            Ok(())
        })
    }

    fn set_vring_call(&mut self, index: u8, fd: Option<File>) -> Result<()> {
        let fd = fd.map(eventfd).transpose()?;
        self.ring(u32::from(index), |ring, _| {
            ring.call = fd;
            Ok(())
        })
    }

    fn set_vring_err(&mut self, index: u8, _fd: Option<File>) -> Result<()> {
        self.ring(u32::from(index), |_, _| Ok(()))
    }

    fn get_protocol_features(&mut self) -> Result<VhostUserProtocolFeatures> {
        // `vhost` adds REPLY_ACK, which it answers itself.
        Ok(VhostUserProtocolFeatures::empty())
    }

    fn set_protocol_features(&mut self, _features: u64) -> Result<()> {
        Ok(())
    }

    fn get_queue_num(&mut self) -> Result<u64> {
        Ok(2)
    }

    fn set_vring_enable(&mut self, index: u32, enable: bool) -> Result<()> {
        if self.shared.enable(index, enable) {
            Ok(())
        } else {
            Err(VuError::InvalidParam)
        }
    }

    fn get_config(&mut self, _: u32, _: u32, _: VhostUserConfigFlags) -> Result<Vec<u8>> {
        self.unsupported()
    }

    fn set_config(&mut self, _: u32, _: &[u8], _: VhostUserConfigFlags) -> Result<()> {
        self.unsupported()
    }

    fn set_backend_req_fd(&mut self, _backend: Backend) {}

    fn set_gpu_socket(&mut self, _gpu: GpuBackend) -> Result<()> {
        self.unsupported()
    }

    fn get_shared_object(&mut self, _uuid: VhostUserSharedMsg) -> Result<File> {
        self.unsupported()
    }

    fn get_inflight_fd(&mut self, _: &VhostUserInflight) -> Result<(VhostUserInflight, File)> {
        self.unsupported()
    }

    fn set_inflight_fd(&mut self, _: &VhostUserInflight, _: File) -> Result<()> {
        self.unsupported()
    }

    fn get_max_mem_slots(&mut self) -> Result<u64> {
        self.unsupported()
    }

    fn add_mem_region(
        &mut self,
        _: &VhostUserSingleMemoryRegion,
        _: File,
        _: Option<bool>,
    ) -> Result<Option<VhostUserMemoryRegionBase>> {
        self.unsupported()
    }

    fn remove_mem_region(&mut self, _: &VhostUserSingleMemoryRegion) -> Result<()> {
        self.unsupported()
    }

    fn set_device_state_fd(
        &mut self,
        _: VhostTransferStateDirection,
        _: VhostTransferStatePhase,
        _: File,
    ) -> Result<Option<File>> {
        self.unsupported()
    }

    fn check_device_state(&mut self) -> Result<()> {
        self.unsupported()
    }

    fn get_shmem_config(&mut self) -> Result<VhostUserShMemConfig> {
        self.unsupported()
    }

    fn set_log_base(&mut self, _: &VhostUserLog, _: File) -> Result<()> {
        self.unsupported()
    }
}
