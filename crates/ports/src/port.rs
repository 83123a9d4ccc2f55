//! The [`PortIo`] trait the datapath drives, implemented by every port backend, and the
//! small types that go with it.

use std::io;
use std::os::fd::RawFd;

use crate::buf::{Batch, PacketBuf};
use crate::error::PortError;

pub use vbridge_wire::MacAddr;

/// Outcome of [`PortIo::send_batch`] when the port is still usable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Frames handed to the kernel / peer.
    pub sent: usize,
    /// Frames lost to transient errors ([`PortError::Dropped`]).
    pub dropped: usize,
}

/// One switch port: a source and sink of Ethernet frames behind a pollable descriptor.
///
/// All I/O is nonblocking. A port that reports [`PortError::Gone`] is dead; drop it.
pub trait PortIo: Send {
    /// The name given when the port was made (the netdev name for TAP and AF_PACKET).
    fn name(&self) -> &str;

    /// The descriptor to register with epoll. Readable: frames are waiting. An error or
    /// hang-up condition: call [`PortIo::recv_batch`], which says whether the device is
    /// gone (TAP and AF_PACKET stay in error forever after that, so deregister).
    fn as_raw_fd(&self) -> RawFd;

    /// Whether frames carry offload state in [`PacketBuf::hdr`]. When false, received
    /// headers are default and sent frames must be plain: checksums finished
    /// ([`PacketBuf::finish_csum`]) and no GSO super-frames (segment them first).
    fn vnet_hdr(&self) -> bool;

    /// Replaces `batch`'s content with the frames waiting now (at most `batch.size()`)
    /// and returns their number; `Ok(0)` when there are none.
    fn recv_batch(&mut self, batch: &mut Batch) -> Result<usize, PortError>;

    /// Sends one frame. [`PortError::Dropped`] means only this frame was lost.
    fn send(&mut self, pkt: &PacketBuf) -> Result<(), PortError>;

    /// Sends frames in order, counting transient losses; stops at the first other error.
    fn send_batch(&mut self, pkts: &[&PacketBuf]) -> Result<SendReport, PortError> {
        send_each(self, pkts)
    }

    /// The current MAC address of the device, read anew on each call.
    fn mac(&self) -> Result<MacAddr, PortError>;

    /// The device's MTU now, where the port can tell without waiting on anything (a TAP
    /// asks the namespace it was made in); `None` otherwise.
    fn current_mtu(&self) -> Option<u32> {
        None
    }

    /// Lets `fp` forward flows entering this port inside the kernel, where this kind of
    /// port allows it (an `AF_PACKET` port; its netdev must be a veth). `Ok(None)`: it
    /// does not.
    fn attach_fast(&self, fp: &crate::FastPath) -> Result<Option<crate::FastPort>, PortError> {
        let _ = fp;
        Ok(None)
    }

    /// The first half of [`PortIo::attach_fast`], which is quick: the socket filter alone.
    /// The port joins the fast path with [`crate::FastPath::link`] (on its netdev), which
    /// waits for the kernel (an RCU grace period) and so may be done later elsewhere;
    /// until then no flow enters by this port. `Ok(false)`: the port cannot join.
    fn attach_fast_filter(&self, fp: &crate::FastPath) -> Result<bool, PortError> {
        let _ = fp;
        Ok(false)
    }

    /// Takes the socket filter `attach_fast` set off this port, so the switch sees every
    /// frame again. The tcx program goes when its [`crate::FastPort`] is dropped (which
    /// takes the kernel's RTNL lock: drop it off the forwarding thread).
    fn detach_fast_filter(&self) -> Result<(), PortError> {
        Ok(())
    }

    /// Periodic upkeep on the forwarding thread (about once a second), quick and never
    /// blocking in the common case: an `AF_PACKET` port counts what its receive ring
    /// dropped and sets up a ring again that the kernel stopped filling.
    fn maintain(&mut self) {}

    /// Undoes what outlives the port: a persistent TAP stops persisting, so it vanishes
    /// when the port is dropped. Called when the port is removed for good.
    fn release(&mut self) {}

    /// Frames the port received and discarded itself since it was made (too long for a
    /// buffer, or not representable in a vnet header).
    fn rx_dropped(&self) -> u64 {
        0
    }
}

/// Refuses a frame whose header asks for offload work on a port that cannot carry it.
/// [`PortIo::send_batch`] as a [`PortIo::send`] per frame, for ports with nothing better.
pub(crate) fn send_each<P: PortIo + ?Sized>(
    port: &mut P,
    pkts: &[&PacketBuf],
) -> Result<SendReport, PortError> {
    let mut report = SendReport::default();
    for pkt in pkts {
        match port.send(pkt) {
            Ok(()) => report.sent += 1,
            Err(e) if e.is_drop() => report.dropped += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

pub(crate) fn check_plain(pkt: &PacketBuf) -> Result<(), PortError> {
    if pkt.hdr.is_plain() {
        Ok(())
    } else {
        Err(PortError::Dropped {
            op: "send: frame needs checksum/GSO offload that this port cannot carry",
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        })
    }
}

/// Refuses empty frames, which no port can carry (seqpacket would read them as EOF).
pub(crate) fn check_nonempty(pkt: &PacketBuf) -> Result<(), PortError> {
    if pkt.is_empty() {
        Err(PortError::Dropped {
            op: "send: empty frame",
            source: io::Error::from_raw_os_error(libc::EINVAL),
        })
    } else {
        Ok(())
    }
}
