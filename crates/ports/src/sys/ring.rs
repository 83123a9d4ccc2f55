//! The `PACKET_MMAP` receive ring (`TPACKET_V2`) of an `AF_PACKET` socket: frames the
//! kernel writes into memory shared with us, handed over one slot at a time by a status
//! word, so a busy port is read without a system call per batch. A frame too long for a
//! slot (a GSO super-frame) is marked `TP_STATUS_COPY` and waits, whole, in the socket's
//! receive queue (`PACKET_COPY_THRESH`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::mmsg::VNET_HDR_LEN;
use super::setsockopt_raw;

/// The shape of a ring: `frames` slots of `frame_size` bytes, in blocks of `block_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingShape {
    pub(crate) frame_size: usize,
    pub(crate) block_size: usize,
    pub(crate) blocks: usize,
}

impl RingShape {
    fn frames(&self) -> usize {
        self.block_size / self.frame_size * self.blocks
    }
}

/// A mapped receive ring.
#[derive(Debug)]
pub(crate) struct RxRing {
    map: NonNull<u8>,
    map_len: usize,
    frame_size: usize,
    frames_per_block: usize,
    block_size: usize,
    frames: usize,
    /// The slot to look at next.
    next: usize,
    /// Frames taken since [`RxRing::taken`] last read it.
    taken: u64,
}

// SAFETY: the mapping is owned by this value alone (nothing else holds its address) and
// only read or written through `&mut self`/`&self` methods; the kernel's side of the
// sharing is synchronised by the status word, as the packet(7) ABI defines.
unsafe impl Send for RxRing {}

/// A frame in the ring, as the kernel describes it.
#[derive(Debug)]
pub(crate) struct RingFrame<'a> {
    /// The frame's bytes in the slot (`snaplen` of them).
    pub(crate) data: &'a [u8],
    /// Its length on the wire: more than `data.len()` when cut off.
    pub(crate) len: usize,
    /// The virtio-net header the kernel wrote in front of the frame.
    pub(crate) vnet: [u8; VNET_HDR_LEN],
    /// The 802.1Q/802.1ad tag the kernel took out, as `(tpid, tci)`.
    pub(crate) vlan: Option<(u16, u16)>,
    /// The whole frame waits in the socket's receive queue (the slot holds a prefix).
    pub(crate) copied: bool,
}

impl RxRing {
    /// Switches `fd` (a bound or unbound packet socket with `PACKET_VNET_HDR` already
    /// set) to `TPACKET_V2`, asks for a ring of `shape` and maps it. Frames longer than a
    /// slot are copied to the receive queue.
    pub(crate) fn setup(fd: BorrowedFd<'_>, shape: RingShape) -> io::Result<RxRing> {
        let frames = shape.frames();
        if frames == 0 || shape.frame_size % libc::TPACKET_ALIGNMENT != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        setsockopt_raw(fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version)?;
        let thresh: libc::c_int = 1;
        setsockopt_raw(fd, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, &thresh)?;
        let req = libc::tpacket_req {
            tp_block_size: shape.block_size as libc::c_uint,
            tp_block_nr: shape.blocks as libc::c_uint,
            tp_frame_size: shape.frame_size as libc::c_uint,
            tp_frame_nr: frames as libc::c_uint,
        };
        setsockopt_raw(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        let map_len = shape.block_size * shape.blocks;
        // SAFETY: a new shared mapping of the socket's ring, of exactly the size asked
        // for above; the kernel owns what backs it until `munmap` in `Drop`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            // Not mapped, so the ring may go again: frames must not land where nothing
            // reads them.
            let _ = teardown(fd);
            return Err(e);
        }
        let Some(map) = NonNull::new(p.cast::<u8>()) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        Ok(RxRing {
            map,
            map_len,
            frame_size: shape.frame_size,
            frames_per_block: shape.block_size / shape.frame_size,
            block_size: shape.block_size,
            frames,
            next: 0,
            taken: 0,
        })
    }

    /// Where slot `i` starts in the mapping.
    fn slot(&self, i: usize) -> usize {
        (i / self.frames_per_block) * self.block_size
            + (i % self.frames_per_block) * self.frame_size
    }

    fn header(&self) -> *mut libc::tpacket2_hdr {
        // SAFETY: `slot(next)` is inside the mapping (next < frames, every slot fits in
        // its block), and slots are 16-byte aligned (frame and block sizes are), enough
        // for `tpacket2_hdr`.
        unsafe { self.map.as_ptr().add(self.slot(self.next)).cast() }
    }

    /// The next frame, if the kernel has handed it over.
    pub(crate) fn peek(&self) -> Option<RingFrame<'_>> {
        let h = self.header();
        // SAFETY: `h` points at a live, 4-byte aligned slot header word the kernel
        // writes concurrently: accessed only atomically here.
        let status = unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*h).tp_status)) }
            // Everything the kernel wrote before handing the slot over is visible after.
            .load(Ordering::Acquire);
        if status & libc::TP_STATUS_USER == 0 {
            return None;
        }
        // SAFETY: the slot is ours until `release` (status USER), so the kernel does not
        // write the header now.
        let hdr = unsafe { h.read() };
        let base = self.slot(self.next);
        let mac = usize::from(hdr.tp_mac);
        let snap = hdr.tp_snaplen as usize;
        // Kernel-written offsets, checked to stay inside this slot all the same.
        if mac < VNET_HDR_LEN || mac + snap > self.frame_size {
            return Some(RingFrame {
                data: &[],
                len: 0,
                vnet: [0; VNET_HDR_LEN],
                vlan: None,
                copied: status & libc::TP_STATUS_COPY != 0,
            });
        }
        // SAFETY: `base + mac - VNET_HDR_LEN .. base + mac + snap` lies within this
        // slot, inside the mapping (checked above), and the slot is ours until
        // `release`, which takes `&mut self` and so ends this borrow first.
        let (vnet_bytes, data) = unsafe {
            let p = self.map.as_ptr().add(base);
            (
                std::slice::from_raw_parts(p.add(mac - VNET_HDR_LEN), VNET_HDR_LEN),
                std::slice::from_raw_parts(p.add(mac), snap),
            )
        };
        let mut vnet = [0; VNET_HDR_LEN];
        vnet.copy_from_slice(vnet_bytes);
        let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
            let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                hdr.tp_vlan_tpid
            } else {
                0x8100
            };
            (tpid, hdr.tp_vlan_tci)
        });
        Some(RingFrame {
            data,
            len: hdr.tp_len as usize,
            vnet,
            vlan,
            copied: status & libc::TP_STATUS_COPY != 0,
        })
    }

    /// Hands the current slot back to the kernel and moves on.
    pub(crate) fn release(&mut self) {
        let h = self.header();
        // SAFETY: as in `peek`; the store hands the slot back, after our reads of it.
        unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*h).tp_status)) }
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.frames;
        self.taken += 1;
    }

    /// Frames taken since the last call.
    pub(crate) fn taken(&mut self) -> u64 {
        std::mem::take(&mut self.taken)
    }
}

/// Takes a socket's receive ring away (it must not be mapped).
pub(crate) fn teardown(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: the all-zero pattern is a valid `tpacket_req` (no ring).
    let req: libc::tpacket_req = unsafe { std::mem::zeroed() };
    setsockopt_raw(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)
}

/// The frames the kernel dropped on this socket since the last call (`PACKET_STATISTICS`,
/// which reading resets): no room in the ring, or one it could not describe.
pub(crate) fn drops(fd: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: the all-zero pattern is a valid `tpacket_stats`.
    let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: `st` and `len` are writable for the whole call and `len` holds `st`'s
    // size; the kernel writes at most that many bytes.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.tp_drops)
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `setup`, of that length, unmapped once; no borrow
        // of it outlives `self`.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}
