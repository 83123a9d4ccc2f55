//! [`Tap`]: a TAP device we create through `/dev/net/tun`, nonblocking, with 10-byte
//! virtio-net headers and checksum/TSO offloads. Not persistent: when the last queue's
//! descriptor closes, the kernel removes the device. Bursts through io_uring: `burst`.

mod burst;

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::buf::{Batch, PacketBuf};
use crate::error::{PortError, check_name, errno, frame_dropped, would_block};
use crate::netdev::{Netdev, ctl_socket};
use crate::port::{MacAddr, PortIo, SendReport, check_nonempty, check_plain, send_each};
use crate::sys;
use crate::sys::mmsg::VNET_HDR_LEN;
use crate::sys::uring::Ring;
use crate::vnet::VnetHdr;

/// How to create a [`Tap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOptions {
    /// `IFF_VNET_HDR` plus offloads `TUN_F_CSUM | TSO4 | TSO6 | TSO_ECN`: the kernel hands
    /// us TCP super-frames of up to 64 KiB with partial checksums, and takes them back.
    pub vnet_hdr: bool,
    /// `IFF_MULTI_QUEUE`: further queues can be opened with [`Tap::open_queue`].
    pub multi_queue: bool,
    /// Read and write bursts of frames with one io_uring system call each, where the
    /// kernel allows it (and `VBR_IO_URING=0` is not set); else a call per frame.
    pub io_uring: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            vnet_hdr: true,
            multi_queue: false,
            io_uring: true,
        }
    }
}

impl TapOptions {
    /// The `TUNSETIFF` flags these options ask for.
    fn iff_flags(&self) -> libc::c_int {
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if self.vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        if self.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        flags
    }
}

/// Offloads we let the kernel use towards us.
const OFFLOADS: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;

/// One queue of a TAP device (the only one unless `multi_queue`).
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    /// An `AF_UNIX` socket made in the namespace the device was created in, for ioctls.
    ctl: OwnedFd,
    name: String,
    opts: TapOptions,
    rx_dropped: u64,
    /// Batched reads and writes; `None` where io_uring is unavailable or refused us.
    ring: Option<Ring>,
    /// How many reads the next burst asks for: twice the last burst's yield.
    rx_want: usize,
}

impl Tap {
    /// Creates TAP device `name` in the calling thread's network namespace. Fails with
    /// [`PortError::Exists`] if any device of that name exists. The device starts down;
    /// see [`Tap::set_up`].
    pub fn create(name: &str, opts: TapOptions) -> Result<Tap, PortError> {
        check_name(name)?;
        if name.contains('%') {
            return Err(PortError::InvalidName {
                name: name.to_owned(),
                reason: "'%' asks the kernel to pick a name",
            });
        }
        let fd = sys::tun::open().map_err(|e| PortError::io(name, "open /dev/net/tun", e))?;
        let ctl = ctl_socket(name)?;
        // TUNSETIFF says EINVAL for a name taken by a non-TAP device: ask first, clearly.
        if (Netdev {
            fd: ctl.as_fd(),
            name,
        })
        .ifindex()
        .is_ok()
        {
            return Err(PortError::Exists {
                name: name.to_owned(),
            });
        }
        let flags = opts.iff_flags() | libc::IFF_TUN_EXCL;
        let got = sys::tun::set_iff(fd.as_fd(), name, flags).map_err(|e| match errno(&e) {
            libc::EBUSY | libc::EEXIST => PortError::Exists {
                name: name.to_owned(),
            },
            _ => PortError::io(name, "TUNSETIFF", e),
        })?;
        let tap = Tap::from_parts(fd, ctl, got, opts);
        tap.configure_queue()?;
        Ok(tap)
    }

    /// Creates TAP device `name` (refused with [`PortError::Exists`] if any device has
    /// that name: someone else's is never adopted) and makes it persistent: it then
    /// outlives this process, keeping its addresses and routes, until
    /// [`Tap::set_persist`]`(false)` and close.
    pub fn create_persistent(name: &str, opts: TapOptions) -> Result<Tap, PortError> {
        let tap = Tap::create(name, opts)?;
        tap.set_persist(true)?;
        Ok(tap)
    }

    /// Attaches to the persistent TAP `name` that an earlier run made, known by its
    /// `ifindex`: a device of that name with another index (deleted and made again by
    /// someone else) is refused with [`PortError::Exists`], and so is any non-TAP device
    /// or a TAP someone else holds. A missing device is [`PortError::NotFound`].
    pub fn reopen_persistent(name: &str, opts: TapOptions, ifindex: u32) -> Result<Tap, PortError> {
        check_name(name)?;
        match crate::netdev::ifindex(name) {
            Ok(i) if i == ifindex => {}
            Ok(_) => {
                return Err(PortError::Exists {
                    name: name.to_owned(),
                });
            }
            Err(e) => return Err(e),
        }
        let fd = sys::tun::open().map_err(|e| PortError::io(name, "open /dev/net/tun", e))?;
        let flags = opts.iff_flags();
        let got = sys::tun::set_iff(fd.as_fd(), name, flags).map_err(|e| match errno(&e) {
            // Not a TAP, or a TAP someone else holds.
            libc::EBUSY | libc::EEXIST | libc::EINVAL | libc::EPERM => PortError::Exists {
                name: name.to_owned(),
            },
            _ => PortError::io(name, "TUNSETIFF (attach)", e),
        })?;
        let ctl = ctl_socket(&got)?;
        let tap = Tap::from_parts(fd, ctl, got, opts);
        if tap.ifindex()? != ifindex {
            // Replaced between the check and the attach: let it be.
            return Err(PortError::Exists {
                name: name.to_owned(),
            });
        }
        tap.configure_queue()?;
        tap.set_persist(true)?;
        Ok(tap)
    }

    /// Whether reads and writes go in io_uring bursts (see [`TapOptions::io_uring`]).
    #[cfg(test)]
    pub(crate) fn uses_io_uring(&self) -> bool {
        self.ring.is_some()
    }

    /// A queue around a descriptor already attached to device `name`.
    fn from_parts(fd: OwnedFd, ctl: OwnedFd, name: String, opts: TapOptions) -> Tap {
        Tap {
            fd,
            ctl,
            name,
            opts,
            rx_dropped: 0,
            ring: burst::new_ring(opts),
            rx_want: burst::RX_WANT_MIN,
        }
    }

    /// Makes the device outlive its descriptors (`true`) or vanish with them (`false`).
    pub fn set_persist(&self, on: bool) -> Result<(), PortError> {
        sys::tun::set_persist(self.fd.as_fd(), on)
            .map_err(|e| PortError::io(&self.name, "TUNSETPERSIST", e))
    }

    /// Opens one more queue of a multi-queue TAP: a new descriptor for the same device,
    /// which the kernel spreads flows over. Closing every queue removes the device.
    pub fn open_queue(&self) -> Result<Tap, PortError> {
        if !self.opts.multi_queue {
            return Err(PortError::io(
                &self.name,
                "open_queue on a single-queue TAP",
                std::io::Error::from_raw_os_error(libc::EINVAL),
            ));
        }
        let name = self.current_name()?;
        let fd = sys::tun::open().map_err(|e| PortError::io(&name, "open /dev/net/tun", e))?;
        let flags = self.opts.iff_flags();
        let got = sys::tun::set_iff(fd.as_fd(), &name, flags)
            .map_err(|e| PortError::io(&name, "TUNSETIFF (attach queue)", e))?;
        let ctl = ctl_socket(&got)?;
        let queue = Tap::from_parts(fd, ctl, got, self.opts);
        queue.configure_queue()?;
        Ok(queue)
    }

    fn configure_queue(&self) -> Result<(), PortError> {
        if self.opts.vnet_hdr {
            sys::tun::set_vnet_hdr_size(self.fd.as_fd(), VNET_HDR_LEN as libc::c_int)
                .map_err(|e| PortError::io(&self.name, "TUNSETVNETHDRSZ", e))?;
            sys::tun::set_offload(self.fd.as_fd(), OFFLOADS)
                .map_err(|e| PortError::io(&self.name, "TUNSETOFFLOAD", e))?;
        }
        Ok(())
    }

    /// The device's name now (it can be renamed while we hold it).
    pub fn current_name(&self) -> Result<String, PortError> {
        match sys::tun::get_iff(self.fd.as_fd()) {
            Ok((name, _)) => Ok(name),
            Err(e) if tap_gone(errno(&e)) => Err(PortError::gone(&self.name)),
            Err(e) => Err(PortError::io(&self.name, "TUNGETIFF", e)),
        }
    }

    fn with_dev<T>(
        &self,
        f: impl FnOnce(Netdev<'_>) -> Result<T, PortError>,
    ) -> Result<T, PortError> {
        let name = self.current_name()?;
        f(Netdev {
            fd: self.ctl.as_fd(),
            name: &name,
        })
        .map_err(|e| match e {
            PortError::NotFound { .. } => PortError::gone(&self.name),
            e => e,
        })
    }

    pub fn ifindex(&self) -> Result<u32, PortError> {
        self.with_dev(|d| d.ifindex())
    }

    pub fn set_mac(&self, mac: MacAddr) -> Result<(), PortError> {
        self.with_dev(|d| d.set_mac(mac))
    }

    pub fn mtu(&self) -> Result<u32, PortError> {
        self.with_dev(|d| d.mtu())
    }

    pub fn set_mtu(&self, mtu: u32) -> Result<(), PortError> {
        self.with_dev(|d| d.set_mtu(mtu))
    }

    pub fn is_up(&self) -> Result<bool, PortError> {
        self.with_dev(|d| d.is_up())
    }

    pub fn set_up(&self) -> Result<(), PortError> {
        self.with_dev(|d| d.set_up(true))
    }

    pub fn set_down(&self) -> Result<(), PortError> {
        self.with_dev(|d| d.set_up(false))
    }

    /// Reads one frame into `buf`. `Ok(false)`: nothing waiting.
    fn read_one(&mut self, buf: &mut PacketBuf) -> Result<bool, std::io::Error> {
        let mut hdr = [0u8; VNET_HDR_LEN];
        let vnet = self.opts.vnet_hdr;
        let hdr_len = if vnet { VNET_HDR_LEN } else { 0 };
        // Each skipped frame was consumed by the kernel, so this ends; the bound only
        // keeps one call from running long under a flood of bad frames.
        for _ in 0..MAX_SKIPS {
            let area = buf.rx_area();
            let room = area.len();
            let got = if vnet {
                sys::readv(
                    self.fd.as_fd(),
                    &mut [IoSliceMut::new(&mut hdr), IoSliceMut::new(area)],
                )
            } else {
                sys::readv(self.fd.as_fd(), &mut [IoSliceMut::new(area)])
            };
            let got = match got {
                Ok(0) => return Ok(false),
                Ok(got) => got,
                Err(e) if would_block(&e) => return Ok(false),
                // The kernel consumed a frame it could not give us (EFAULT: longer than
                // our buffer; EINVAL: no vnet header for its GSO type): count and go on.
                Err(e) if matches!(errno(&e), libc::EFAULT | libc::EINVAL) => {
                    self.rx_dropped += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some((hdr, len)) = received(hdr_len, &hdr, got, room) else {
                self.rx_dropped += 1;
                continue;
            };
            buf.set_received(hdr, len);
            return Ok(true);
        }
        Ok(false)
    }
}

impl Tap {
    /// What a failed write means: the device gone, this frame dropped (`EIO`: the
    /// device is down), or a real failure.
    fn write_error(&self, e: std::io::Error) -> PortError {
        match errno(&e) {
            n if tap_gone(n) => PortError::gone(&self.name),
            n if matches!(n, libc::EIO | libc::ECANCELED | libc::EOPNOTSUPP)
                || frame_dropped(&e) =>
            {
                PortError::Dropped {
                    op: "write to TAP",
                    source: e,
                }
            }
            _ => PortError::io(&self.name, "write to TAP", e),
        }
    }

    /// A read batch's outcome: `n` frames, and the error that stopped it, which waits for
    /// the next call when there are frames to deliver.
    fn batch_result(&self, n: usize, failure: Option<std::io::Error>) -> Result<usize, PortError> {
        match failure {
            Some(_) if n > 0 => Ok(n),
            Some(e) if tap_gone(errno(&e)) => Err(PortError::gone(&self.name)),
            Some(e) => Err(PortError::io(&self.name, "read from TAP", e)),
            None => Ok(n),
        }
    }
}

/// A frame read as `got` bytes (vnet header included when `hdr_len` is not 0) into a
/// buffer area of `room` bytes: its header and length, or `None` if it must be skipped.
fn received(
    hdr_len: usize,
    hdr: &[u8; VNET_HDR_LEN],
    got: usize,
    room: usize,
) -> Option<(VnetHdr, usize)> {
    if got < hdr_len || got - hdr_len >= room {
        return None;
    }
    let h = if hdr_len > 0 {
        VnetHdr::from_bytes(hdr)
    } else {
        VnetHdr::default()
    };
    Some((h, got - hdr_len))
}

/// Most frames one read call skips (counted in `rx_dropped`) before yielding.
pub(super) const MAX_SKIPS: usize = 64;

/// Errors meaning the TAP device is no more (`EBADFD`: detached by `ip link del`).
fn tap_gone(n: i32) -> bool {
    matches!(n, libc::EBADFD | libc::ENODEV | libc::ENXIO)
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PortIo for Tap {
    fn name(&self) -> &str {
        &self.name
    }

    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        self.opts.vnet_hdr
    }

    fn recv_batch(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        if self.ring.is_some() {
            if let Some(res) = self.recv_burst(batch) {
                return res;
            }
        }
        let bufs = batch.begin_fill();
        let mut n = 0;
        let mut failure = None;
        for buf in bufs.iter_mut() {
            match self.read_one(buf) {
                Ok(true) => n += 1,
                Ok(false) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        batch.finish_fill(n);
        self.batch_result(n, failure)
    }

    fn send(&mut self, pkt: &PacketBuf) -> Result<(), PortError> {
        check_nonempty(pkt)?;
        let res = if self.opts.vnet_hdr {
            let hdr = pkt.hdr.to_bytes();
            sys::writev(
                self.fd.as_fd(),
                &[IoSlice::new(&hdr), IoSlice::new(pkt.frame())],
            )
        } else {
            check_plain(pkt)?;
            sys::writev(self.fd.as_fd(), &[IoSlice::new(pkt.frame())])
        };
        res.map(drop).map_err(|e| self.write_error(e))
    }

    fn send_batch(&mut self, pkts: &[&PacketBuf]) -> Result<SendReport, PortError> {
        if self.ring.is_some() && pkts.len() > 1 {
            self.send_burst(pkts)
        } else {
            send_each(self, pkts)
        }
    }

    fn mac(&self) -> Result<MacAddr, PortError> {
        self.with_dev(|d| d.mac())
    }

    fn current_mtu(&self) -> Option<u32> {
        self.mtu().ok()
    }

    fn release(&mut self) {
        let _ = self.set_persist(false);
    }

    fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }
}
