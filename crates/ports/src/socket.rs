//! [`SeqpacketPort`]: a port over an `AF_UNIX` `SOCK_SEQPACKET` socket, one frame per
//! message. Made in connected pairs for tests, or from a descriptor received from
//! elsewhere (another process, a VM monitor) as a building block.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::buf::{Batch, PacketBuf};
use crate::error::{PortError, errno, frame_dropped, would_block};
use crate::port::{MacAddr, PortIo, check_nonempty, check_plain};
use crate::sys;
use crate::sys::mmsg::{MAX_BATCH, RxInfo, RxSlot, TxSlot, VNET_HDR_LEN};
use crate::vnet::VnetHdr;

/// Socket buffer asked for on each end: room for a few dozen 64 KiB frames.
const SOCKET_BUFFER: libc::c_int = 4 << 20;

/// One end of a seqpacket link. A message of length 0 means the peer closed (frames are
/// never empty), reported as [`PortError::Gone`].
#[derive(Debug)]
pub struct SeqpacketPort {
    fd: OwnedFd,
    name: String,
    vnet_hdr: bool,
    mac: MacAddr,
    peer_closed: bool,
    rx_dropped: u64,
}

impl SeqpacketPort {
    /// A connected pair of plain-frame ports (no vnet headers).
    pub fn pair(name_a: &str, name_b: &str) -> Result<(SeqpacketPort, SeqpacketPort), PortError> {
        Self::make_pair(name_a, name_b, false)
    }

    /// A connected pair whose messages carry a 10-byte vnet header before the frame, so
    /// partial checksums and GSO super-frames cross it unchanged.
    pub fn pair_with_vnet_hdr(
        name_a: &str,
        name_b: &str,
    ) -> Result<(SeqpacketPort, SeqpacketPort), PortError> {
        Self::make_pair(name_a, name_b, true)
    }

    fn make_pair(
        name_a: &str,
        name_b: &str,
        vnet_hdr: bool,
    ) -> Result<(SeqpacketPort, SeqpacketPort), PortError> {
        let (a, b) = sys::seqpacket_pair()
            .map_err(|e| PortError::io(name_a, "socketpair(SOCK_SEQPACKET)", e))?;
        Ok((
            Self::from_fd(name_a, a, vnet_hdr)?,
            Self::from_fd(name_b, b, vnet_hdr)?,
        ))
    }

    /// Wraps a connected `SOCK_SEQPACKET` descriptor (made nonblocking here). Both ends
    /// must agree on `vnet_hdr`.
    pub fn from_fd(name: &str, fd: OwnedFd, vnet_hdr: bool) -> Result<SeqpacketPort, PortError> {
        sys::set_nonblocking(fd.as_fd()).map_err(|e| PortError::io(name, "O_NONBLOCK", e))?;
        for (force, plain) in [
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        ] {
            // Best effort: a smaller buffer only means earlier EAGAIN drops.
            if sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, force, SOCKET_BUFFER).is_err() {
                let _ = sys::setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, plain, SOCKET_BUFFER);
            }
        }
        Ok(SeqpacketPort {
            fd,
            name: name.to_owned(),
            vnet_hdr,
            mac: mac_from_name(name),
            peer_closed: false,
            rx_dropped: 0,
        })
    }

    /// Sets the address [`PortIo::mac`] reports (there is no device to ask). By default
    /// it is a locally administered address derived from the name.
    pub fn set_mac(&mut self, mac: MacAddr) {
        self.mac = mac;
    }

    fn send_error(&self, e: io::Error) -> PortError {
        match errno(&e) {
            libc::EPIPE | libc::ECONNRESET | libc::ENOTCONN => PortError::gone(&self.name),
            _ if frame_dropped(&e) => PortError::Dropped {
                op: "send on seqpacket",
                source: e,
            },
            _ => PortError::io(&self.name, "send on seqpacket", e),
        }
    }

    fn hdr_slot<'a>(&self, hdr: &'a [u8; VNET_HDR_LEN]) -> Option<&'a [u8; VNET_HDR_LEN]> {
        self.vnet_hdr.then_some(hdr)
    }
}

/// A stable, locally administered unicast MAC from a name (FNV-1a), for ports with no
/// device to ask.
pub(crate) fn mac_from_name(name: &str) -> MacAddr {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let b = h.to_be_bytes();
    MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]])
}

impl AsFd for SeqpacketPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl PortIo for SeqpacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    fn recv_batch(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        if self.peer_closed {
            batch.clear();
            return Err(PortError::gone(&self.name));
        }
        let vnet = self.vnet_hdr;
        let mut hdrs = [[0u8; VNET_HDR_LEN]; MAX_BATCH];
        let mut info = [RxInfo::default(); MAX_BATCH];
        let bufs = batch.begin_fill();
        let slots = bufs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .map(|(buf, hdr)| RxSlot {
                hdr: vnet.then_some(hdr),
                data: buf.rx_area(),
            });
        let got = match sys::mmsg::recv(self.fd.as_fd(), slots, false, &mut info) {
            Ok(got) => got,
            Err(e) if would_block(&e) => return Ok(0),
            Err(e) if errno(&e) == libc::ECONNRESET => return Err(PortError::gone(&self.name)),
            Err(e) => return Err(PortError::io(&self.name, "recvmmsg on seqpacket", e)),
        };
        let mut kept = 0;
        for (i, (hdr, info)) in hdrs.iter().zip(&info[..got]).enumerate() {
            if info.msg_len == 0 {
                // End of stream: every further read returns it again.
                self.peer_closed = true;
                break;
            }
            let hdr_len = if vnet { VNET_HDR_LEN } else { 0 };
            if info.truncated || info.msg_len <= hdr_len {
                self.rx_dropped += 1;
                continue;
            }
            let hdr = if vnet {
                VnetHdr::from_bytes(hdr)
            } else {
                VnetHdr::default()
            };
            bufs[i].set_received(hdr, info.len);
            bufs.swap(kept, i);
            kept += 1;
        }
        batch.finish_fill(kept);
        if kept == 0 && self.peer_closed {
            return Err(PortError::gone(&self.name));
        }
        Ok(kept)
    }

    fn send(&mut self, pkt: &PacketBuf) -> Result<(), PortError> {
        check_nonempty(pkt)?;
        if !self.vnet_hdr {
            check_plain(pkt)?;
        }
        let hdr = pkt.hdr.to_bytes();
        let slot = TxSlot {
            hdr: self.hdr_slot(&hdr),
            data: pkt.frame(),
        };
        sys::mmsg::send(self.fd.as_fd(), slot)
            .map(drop)
            .map_err(|e| self.send_error(e))
    }

    fn mac(&self) -> Result<MacAddr, PortError> {
        Ok(self.mac)
    }

    fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 0xbb, 0x02, 0, 0, 0, 0, 0xaa, 0x88, 0xb5];
        f.extend((0..len - 14).map(|i| tag.wrapping_add(i as u8)));
        f
    }

    fn send_all(port: &mut SeqpacketPort, frames: &[Vec<u8>]) {
        let bufs: Vec<PacketBuf> = frames
            .iter()
            .map(|f| PacketBuf::from_frame(f).unwrap())
            .collect();
        let refs: Vec<&PacketBuf> = bufs.iter().collect();
        let report = port.send_batch(&refs).unwrap();
        assert_eq!(
            report,
            SendReport {
                sent: frames.len(),
                dropped: 0
            }
        );
    }

    use crate::port::SendReport;

    #[test]
    fn pair_moves_a_batch_both_ways() {
        let (mut a, mut b) = SeqpacketPort::pair("sa", "sb").unwrap();
        assert!(!a.vnet_hdr());
        let mut batch = Batch::new(32);
        assert_eq!(
            b.recv_batch(&mut batch).unwrap(),
            0,
            "nothing yet, and no blocking"
        );

        let to_b: Vec<Vec<u8>> = (0..40u8)
            .map(|i| frame(i, 60 + usize::from(i) * 37))
            .collect();
        send_all(&mut a, &to_b);
        let mut got = Vec::new();
        while got.len() < to_b.len() {
            let n = b.recv_batch(&mut batch).unwrap();
            assert!(n > 0 && n <= 32);
            got.extend(batch.iter().map(|p| p.frame().to_vec()));
        }
        assert_eq!(got, to_b, "frames arrive whole and in order");

        let to_a: Vec<Vec<u8>> = vec![frame(7, 60), frame(8, 1514), frame(9, 9000)];
        send_all(&mut b, &to_a);
        assert_eq!(a.recv_batch(&mut batch).unwrap(), 3);
        let got: Vec<Vec<u8>> = batch.iter().map(|p| p.frame().to_vec()).collect();
        assert_eq!(got, to_a);
        assert!(
            batch
                .iter()
                .all(|p| p.headroom() >= 64 && p.hdr == VnetHdr::default())
        );
        assert_eq!(a.recv_batch(&mut batch).unwrap(), 0);
        assert!(batch.is_empty());
    }

    #[test]
    fn vnet_pair_carries_headers_and_plain_pair_refuses_them() {
        let hdr = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            gso_type: VnetHdr::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut pkt = PacketBuf::from_frame(&frame(1, 3000)).unwrap();
        pkt.hdr = hdr;

        let (mut a, mut b) = SeqpacketPort::pair_with_vnet_hdr("va", "vb").unwrap();
        assert!(a.vnet_hdr());
        a.send(&pkt).unwrap();
        let mut batch = Batch::new(4);
        assert_eq!(b.recv_batch(&mut batch).unwrap(), 1);
        assert_eq!(batch.packets()[0].hdr, hdr);
        assert_eq!(batch.packets()[0].frame(), pkt.frame());

        let (mut c, _d) = SeqpacketPort::pair("pc", "pd").unwrap();
        assert!(c.send(&pkt).unwrap_err().is_drop());
        assert!(
            c.send(&PacketBuf::new()).unwrap_err().is_drop(),
            "empty frames are refused"
        );
    }

    #[test]
    fn closed_peer_is_gone() {
        let (mut a, b) = SeqpacketPort::pair("ga", "gb").unwrap();
        let mut batch = Batch::new(4);
        drop(b);
        assert!(a.recv_batch(&mut batch).unwrap_err().is_gone());
        assert!(a.recv_batch(&mut batch).unwrap_err().is_gone());
        let pkt = PacketBuf::from_frame(&frame(0, 60)).unwrap();
        assert!(a.send(&pkt).unwrap_err().is_gone());
    }

    #[test]
    fn full_peer_queue_is_a_drop_not_an_error() {
        let (mut a, _b) = SeqpacketPort::pair("fa", "fb").unwrap();
        let pkt = PacketBuf::from_frame(&frame(0, 60_000)).unwrap();
        let mut dropped = 0;
        for _ in 0..2000 {
            match a.send(&pkt) {
                Ok(()) => {}
                Err(e) if e.is_drop() => dropped += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(
            dropped > 0,
            "the peer never reads, so sends must start dropping"
        );
    }

    #[test]
    fn mac_is_stable_and_local() {
        let (mut a, b) = SeqpacketPort::pair("ma", "mb").unwrap();
        let mac = a.mac().unwrap();
        assert_eq!(mac.0[0] & 0x03, 0x02, "locally administered unicast");
        assert_ne!(mac, b.mac().unwrap());
        a.set_mac(MacAddr([2, 0, 0, 0, 0, 9]));
        assert_eq!(a.mac().unwrap(), MacAddr([2, 0, 0, 0, 0, 9]));
    }
}
