//! Offloads through `AF_PACKET` vnet headers, in a private namespace: partial checksums
//! keep the right `csum_start` across a stripped-and-restored VLAN tag, stack-made UDP
//! arrives with `NEEDS_CSUM`, and UDP GSO arrives as one super-frame.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;

use super::{in_netns, ip, recv_frames, veth};
use crate::packet::{AfPacket, AfPacketOptions};
use crate::port::PortIo;
use crate::sys;
use crate::{PacketBuf, VnetHdr};
use vbridge_wire::ipv4::checksum;

const IP_A: [u8; 4] = [192, 0, 2, 1];
const IP_B: [u8; 4] = [192, 0, 2, 2];

/// Ethernet (+ tags) + IPv4 + UDP, with the UDP checksum field holding the pseudo-header
/// sum as a sender using checksum offload leaves it. Returns the frame and L4 offset.
fn udp4(dst: [u8; 6], src: [u8; 6], tags: &[(u16, u16)], payload: &[u8]) -> (Vec<u8>, usize) {
    let mut f = Vec::new();
    f.extend(dst);
    f.extend(src);
    for (tpid, tci) in tags {
        f.extend(tpid.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(0x0800u16.to_be_bytes());
    let l3 = f.len();
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    f.extend([0x45, 0]);
    f.extend(total.to_be_bytes());
    f.extend([0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend(IP_B);
    f.extend(IP_A);
    let ip_csum = checksum(&f[l3..l3 + 20]);
    f[l3 + 10..l3 + 12].copy_from_slice(&ip_csum.to_be_bytes());
    let l4 = f.len();
    let pseudo = !checksum(&pseudo_header(IP_B, IP_A, udp_len));
    f.extend(4000u16.to_be_bytes());
    f.extend(9u16.to_be_bytes());
    f.extend(udp_len.to_be_bytes());
    f.extend(pseudo.to_be_bytes());
    f.extend(payload);
    (f, l4)
}

fn pseudo_header(src: [u8; 4], dst: [u8; 4], udp_len: u16) -> Vec<u8> {
    let mut p = Vec::from(src);
    p.extend(dst);
    p.extend([0, 17]);
    p.extend(udp_len.to_be_bytes());
    p
}

/// Whether the UDP checksum of the IPv4 frame whose L4 header is at `l4` is right.
fn udp4_csum_ok(f: &[u8], l4: usize) -> bool {
    let l3 = l4 - 20;
    let src = <[u8; 4]>::try_from(&f[l3 + 12..l3 + 16]).unwrap();
    let dst = <[u8; 4]>::try_from(&f[l3 + 16..l3 + 20]).unwrap();
    let udp_len = u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]);
    let mut all = pseudo_header(src, dst, udp_len);
    all.extend(&f[l4..l4 + usize::from(udp_len)]);
    checksum(&all) == 0
}

fn is_udp_to_9(p: &PacketBuf) -> bool {
    let f = p.frame();
    f.len() > 42 && f[12..14] == [0x08, 0x00] && f[23] == 17 && f[36..38] == 9u16.to_be_bytes()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn partial_checksum_offsets_survive_vlan_strip_and_restore() {
    in_netns(|| {
        veth("va", "vb");
        let opts = AfPacketOptions {
            promisc: false,
            ..AfPacketOptions::default()
        };
        let mut port = AfPacket::attach("va", opts).unwrap();
        let mut peer = AfPacket::attach("vb", opts).unwrap();
        let (frame, l4) = udp4(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            &[(0x8100, 0x0123)],
            b"tagged and partial",
        );
        assert_eq!(l4, 38);
        let mut pkt = PacketBuf::from_frame(&frame).unwrap();
        pkt.hdr = VnetHdr {
            flags: VnetHdr::F_NEEDS_CSUM,
            csum_start: 38,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        peer.send(&pkt).unwrap();

        let got = recv_frames(&mut port, 1, |p| p.frame().len() == frame.len());
        assert_eq!(got.len(), 1, "the frame arrives");
        let mut got = got.into_iter().next().unwrap();
        assert_eq!(got.frame(), &frame[..], "tag restored, bytes unchanged");
        assert!(
            got.hdr.needs_csum(),
            "CHECKSUM_PARTIAL crosses the veth: {:?}",
            got.hdr
        );
        assert_eq!(
            (got.hdr.csum_start, got.hdr.csum_offset),
            (38, 6),
            "csum_start counts the restored tag"
        );
        got.finish_csum().unwrap();
        assert!(udp4_csum_ok(got.frame(), 38));
    });
}

/// vb gets 192.0.2.2/24 and a static neighbour 192.0.2.1 = va's MAC; returns a UDP
/// socket bound on vb's address.
fn udp_sender_on_vb() -> UdpSocket {
    ip("addr add 192.0.2.2/24 dev vb");
    let va_mac = super::link_field("va", "address");
    ip(&format!(
        "neigh add 192.0.2.1 lladdr {va_mac} dev vb nud permanent"
    ));
    UdpSocket::bind("192.0.2.2:4000").unwrap()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn stack_udp_arrives_with_needs_csum_and_udp_gso_as_one_superframe() {
    in_netns(|| {
        veth("va", "vb");
        let mut port = AfPacket::attach("va", AfPacketOptions::default()).unwrap();
        let sock = udp_sender_on_vb();
        let dst = SocketAddr::from((Ipv4Addr::from(IP_A), 9));

        sock.send_to(b"checksum me later", dst).unwrap();
        let got = recv_frames(&mut port, 1, is_udp_to_9);
        assert_eq!(got.len(), 1, "UDP datagram seen on va");
        let mut p = got.into_iter().next().unwrap();
        assert!(
            p.hdr.needs_csum(),
            "veth leaves the checksum partial: {:?}",
            p.hdr
        );
        assert_eq!((p.hdr.csum_start, p.hdr.csum_offset), (34, 6));
        assert!(!p.hdr.is_gso());
        p.finish_csum().unwrap();
        assert!(udp4_csum_ok(p.frame(), 34));

        sys::testing::set_udp_segment(sock.as_fd(), 1000).unwrap();
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        sock.send_to(&payload, dst).unwrap();
        let got = recv_frames(&mut port, 1, is_udp_to_9);
        assert_eq!(got.len(), 1, "one UDP GSO super-frame on va");
        let p = &got[0];
        assert_eq!(p.len(), 14 + 20 + 8 + 5000);
        assert_eq!(p.hdr.gso_kind(), VnetHdr::GSO_UDP_L4, "{:?}", p.hdr);
        assert_eq!(p.hdr.gso_size, 1000);
        assert!(p.hdr.needs_csum());
        assert_eq!(p.hdr.csum_start, 34);
        assert_eq!(&p.frame()[42..], &payload[..]);
        assert_eq!(port.rx_dropped(), 0);
    });
}
