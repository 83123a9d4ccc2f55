//! `AF_PACKET` socket calls that need kernel structs: bind to an ifindex, promiscuous
//! membership, and `getsockname` to learn what the socket is bound to now.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use libc::c_int;

use super::{cvt, setsockopt_raw};

/// The protocol in network byte order, as `sockaddr_ll` and `socket(2)` want it.
fn eth_p_all_be() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// A raw `AF_PACKET` socket that receives nothing until [`bind`] (protocol 0), so no
/// frame from another device can slip in before the bind.
pub(crate) fn open() -> io::Result<OwnedFd> {
    super::socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
}

/// Binds to `ifindex` for all protocols: from here on frames of that device arrive.
pub(crate) fn bind(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    // SAFETY: the all-zero pattern is a valid `sockaddr_ll`.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = eth_p_all_be();
    sll.sll_ifindex = ifindex as c_int;
    // SAFETY: `sll` is a fully initialised `sockaddr_ll` and the length passed is its size.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast::<libc::sockaddr>(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `PACKET_ADD_MEMBERSHIP` / `PACKET_MR_PROMISC`: the device stays promiscuous while
/// this socket is open; the kernel drops the membership when it closes.
pub(crate) fn add_promisc(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    // SAFETY: the all-zero pattern is a valid `packet_mreq`.
    let mut mreq: libc::packet_mreq = unsafe { mem::zeroed() };
    mreq.mr_ifindex = ifindex as c_int;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
    setsockopt_raw(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
}

/// What `getsockname` says about a bound packet socket.
pub(crate) struct Bound {
    /// The bound ifindex; the kernel sets it to -1 once the device is unregistered.
    pub(crate) ifindex: i32,
    /// Hardware address of the device now (empty if the device is gone).
    pub(crate) addr: Vec<u8>,
}

pub(crate) fn bound(fd: BorrowedFd<'_>) -> io::Result<Bound> {
    // SAFETY: the all-zero pattern is a valid `sockaddr_ll`.
    let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is writable for `len` bytes and `len` is writable; the kernel writes
    // at most `len` bytes and stores the real length back.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut sll as *mut libc::sockaddr_ll).cast::<libc::sockaddr>(),
            &mut len,
        )
    })?;
    let halen = usize::from(sll.sll_halen).min(sll.sll_addr.len());
    Ok(Bound {
        ifindex: sll.sll_ifindex,
        addr: sll.sll_addr[..halen].to_vec(),
    })
}
