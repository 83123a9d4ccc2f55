//! Batched datagram I/O: `recvmmsg`, `sendmmsg` and `sendmsg` with a `[header, frame]`
//! iovec per message, and the `PACKET_AUXDATA` control message decoded into the VLAN tag
//! the kernel stripped. Used by the `AF_PACKET` and `AF_UNIX` seqpacket ports.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use libc::{c_int, c_uint, c_void};

use super::{cvt, cvt_size};

/// Most messages moved by one `recvmmsg`/`sendmmsg` call.
pub(crate) const MAX_BATCH: usize = 64;
/// Size of `struct virtio_net_hdr`, the header used on every vnet port of this crate.
pub(crate) const VNET_HDR_LEN: usize = 10;

/// Where one received message goes: the optional vnet header, then the frame.
pub(crate) struct RxSlot<'a> {
    pub(crate) hdr: Option<&'a mut [u8; VNET_HDR_LEN]>,
    pub(crate) data: &'a mut [u8],
}

/// What the kernel said about one received message.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RxInfo {
    /// Bytes of the message, header included (0 for an empty datagram).
    pub(crate) msg_len: usize,
    /// Bytes that landed in the slot's `data`.
    pub(crate) len: usize,
    /// The message did not fit and its tail was cut off.
    pub(crate) truncated: bool,
    /// The 802.1Q/802.1ad tag the kernel took out of the frame, as `(tpid, tci)`.
    pub(crate) vlan: Option<(u16, u16)>,
    /// The frame's length before a socket filter cut it (without the tag taken out); 0
    /// when unknown.
    pub(crate) wire_len: usize,
}

/// One message's control buffer, aligned for `cmsghdr`. Room for `tpacket_auxdata`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Control([u8; 64]);

/// Receives up to `min(slots, info.len(), MAX_BATCH)` messages without blocking.
/// `aux` asks for the `PACKET_AUXDATA` control message (packet sockets only).
/// Returns how many messages arrived; `info[..n]` describes them. `EAGAIN` is an error
/// here: the caller decides what "nothing now" means.
pub(crate) fn recv<'a>(
    fd: BorrowedFd<'_>,
    slots: impl IntoIterator<Item = RxSlot<'a>>,
    aux: bool,
    info: &mut [RxInfo],
) -> io::Result<usize> {
    // SAFETY: `iovec` is a pointer and a length: all-zero (null, 0) is a valid value.
    let mut iov: [[libc::iovec; 2]; MAX_BATCH] = unsafe { mem::zeroed() };
    let mut iov_count = [0usize; MAX_BATCH];
    let mut hdr_len = [0usize; MAX_BATCH];
    let mut data_len = [0usize; MAX_BATCH];
    let mut control = [Control([0; 64]); MAX_BATCH];

    let limit = MAX_BATCH.min(info.len());
    let mut n = 0;
    for slot in slots.into_iter().take(limit) {
        let mut k = 0;
        if let Some(hdr) = slot.hdr {
            iov[n][k] = libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: VNET_HDR_LEN,
            };
            hdr_len[n] = VNET_HDR_LEN;
            k += 1;
        }
        data_len[n] = slot.data.len();
        iov[n][k] = libc::iovec {
            iov_base: slot.data.as_mut_ptr().cast(),
            iov_len: slot.data.len(),
        };
        iov_count[n] = k + 1;
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }

    // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths and flags).
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { mem::zeroed() };
    let iov_base = iov.as_mut_ptr();
    let control_base = control.as_mut_ptr();
    for (i, msg) in msgs.iter_mut().enumerate().take(n) {
        // SAFETY: `i < n <= MAX_BATCH`, so both offsets stay inside their arrays.
        let (iov_i, control_i) = unsafe { (iov_base.add(i), control_base.add(i)) };
        msg.msg_hdr.msg_iov = iov_i.cast::<libc::iovec>();
        msg.msg_hdr.msg_iovlen = iov_count[i];
        if aux {
            msg.msg_hdr.msg_control = control_i.cast::<c_void>();
            msg.msg_hdr.msg_controllen = mem::size_of::<Control>();
        }
    }

    // SAFETY: `msgs[..n]` point to iovecs and control buffers that live on this stack
    // frame until the call returns, and the iovecs point into slices the caller lent us
    // mutably for `'a` (which outlives this call), so the kernel writes only memory we
    // may write. No Rust reference to any of it is used while the call runs.
    let got = cvt(unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as c_uint,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
        )
    })? as usize;

    for i in 0..got {
        let msg = &msgs[i];
        let msg_len = msg.msg_len as usize;
        let auxdata = if aux { auxdata(&msg.msg_hdr) } else { None };
        info[i] = RxInfo {
            msg_len,
            len: msg_len.saturating_sub(hdr_len[i]).min(data_len[i]),
            truncated: msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            vlan: auxdata.as_ref().and_then(aux_vlan),
            wire_len: auxdata.map_or(0, |a| a.tp_len as usize),
        };
    }
    Ok(got)
}

/// The tag the kernel took out of the frame, as `PACKET_AUXDATA` says.
fn aux_vlan(auxdata: &libc::tpacket_auxdata) -> Option<(u16, u16)> {
    if auxdata.tp_status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tpid = if auxdata.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
        auxdata.tp_vlan_tpid
    } else {
        libc::ETH_P_8021Q as u16
    };
    Some((tpid, auxdata.tp_vlan_tci))
}

/// Finds `PACKET_AUXDATA` among the control messages.
fn auxdata(hdr: &libc::msghdr) -> Option<libc::tpacket_auxdata> {
    let want = mem::size_of::<libc::tpacket_auxdata>();
    // SAFETY: `hdr` describes a control buffer that the kernel filled and whose length it
    // stored in `msg_controllen`; CMSG_FIRSTHDR/CMSG_NXTHDR only return headers that lie
    // inside that length, or null.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !cmsg.is_null() {
        // SAFETY: non-null `cmsg` points to a complete, aligned `cmsghdr` in the buffer.
        let c = unsafe { &*cmsg };
        // SAFETY: CMSG_LEN is a pure size computation.
        let need = unsafe { libc::CMSG_LEN(want as c_uint) } as usize;
        if c.cmsg_level == libc::SOL_PACKET
            && c.cmsg_type == libc::PACKET_AUXDATA
            && c.cmsg_len >= need
        {
            // SAFETY: `cmsg_len` covers the header and a whole `tpacket_auxdata`, all
            // inside the control buffer; read_unaligned tolerates any alignment.
            return Some(unsafe { ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) });
        }
        // SAFETY: as above, NXTHDR stays inside the kernel-reported control length.
        cmsg = unsafe { libc::CMSG_NXTHDR(hdr, cmsg) };
    }
    None
}

/// One message to send: the optional vnet header, then the frame.
#[derive(Clone, Copy)]
pub(crate) struct TxSlot<'a> {
    pub(crate) hdr: Option<&'a [u8; VNET_HDR_LEN]>,
    pub(crate) data: &'a [u8],
}

const SEND_FLAGS: c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// Fills `iov` for `slot`; returns how many entries are used.
fn tx_iov(slot: TxSlot<'_>, iov: &mut [libc::iovec; 2]) -> usize {
    let mut k = 0;
    if let Some(hdr) = slot.hdr {
        // The kernel only reads through iov_base on send; the cast to *mut is what the
        // C struct requires, nothing writes through it.
        iov[k] = libc::iovec {
            iov_base: hdr.as_ptr() as *mut c_void,
            iov_len: VNET_HDR_LEN,
        };
        k += 1;
    }
    iov[k] = libc::iovec {
        iov_base: slot.data.as_ptr() as *mut c_void,
        iov_len: slot.data.len(),
    };
    k + 1
}

/// Sends one message without blocking; returns the bytes sent (header included).
pub(crate) fn send(fd: BorrowedFd<'_>, slot: TxSlot<'_>) -> io::Result<usize> {
    // SAFETY: all-zero is a valid `iovec` array and a valid `msghdr`.
    let mut iov: [libc::iovec; 2] = unsafe { mem::zeroed() };
    let count = tx_iov(slot, &mut iov);
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = count;
    // SAFETY: `msg` points to `iov`, which points into `slot`'s slices; all of them are
    // alive and unchanged for the duration of the call, and the kernel only reads them.
    cvt_size(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, SEND_FLAGS) })
}

/// Sends up to `MAX_BATCH` messages in one call without blocking; returns how many went
/// out. As with `sendmmsg(2)`, an error after the first message is not reported: the
/// caller resends the rest and meets it again on the message that failed.
pub(crate) fn send_many<'a>(
    fd: BorrowedFd<'_>,
    slots: impl IntoIterator<Item = TxSlot<'a>>,
) -> io::Result<usize> {
    // SAFETY: all-zero is a valid `iovec` (null, 0).
    let mut iov: [[libc::iovec; 2]; MAX_BATCH] = unsafe { mem::zeroed() };
    let mut iov_count = [0usize; MAX_BATCH];
    let mut n = 0;
    for slot in slots.into_iter().take(MAX_BATCH) {
        iov_count[n] = tx_iov(slot, &mut iov[n]);
        n += 1;
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all-zero is a valid `mmsghdr`.
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { mem::zeroed() };
    let iov_base = iov.as_mut_ptr();
    for (i, msg) in msgs.iter_mut().enumerate().take(n) {
        // SAFETY: `i < n <= MAX_BATCH`, inside the array.
        msg.msg_hdr.msg_iov = unsafe { iov_base.add(i) }.cast::<libc::iovec>();
        msg.msg_hdr.msg_iovlen = iov_count[i];
    }
    // SAFETY: `msgs[..n]` point to iovecs on this stack frame, which point into slices
    // borrowed for `'a`; all stay alive and unchanged during the call, and the kernel
    // writes only each `msg_len`.
    let sent =
        cvt(unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as c_uint, SEND_FLAGS) })?;
    Ok(sent as usize)
}
