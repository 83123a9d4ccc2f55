//! `AfPacket` on a veth pair in a private namespace: frames both ways with VLAN tags
//! intact, our own sends not read back, promiscuous mode held only while attached, MAC
//! re-read, link down versus device deleted.

use std::time::Duration;

use super::{
    eventually, frame, in_netns, ip, is_test_frame, promiscuity, recv_frames, recv_frames_within,
    test_frames_within, veth,
};
use crate::netdev;
use crate::packet::{AfPacket, AfPacketOptions};
use crate::port::{MacAddr, PortIo};
use crate::{Batch, PacketBuf, PortError};

const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0x0a, 0x01]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0x0b, 0x01]);

fn quiet() -> AfPacketOptions {
    AfPacketOptions {
        promisc: false,
        ..AfPacketOptions::default()
    }
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn veth_frames_arrive_intact_with_their_vlan_tags() {
    // Through the receive ring, and through recvmmsg.
    for rx_ring_slots in [crate::packet::RX_RING_SLOTS, 0] {
        frames_arrive_intact(AfPacketOptions {
            rx_ring_slots,
            ..AfPacketOptions::default()
        });
    }
}

fn frames_arrive_intact(opts: AfPacketOptions) {
    in_netns(move || {
        veth("va", "vb");
        assert_eq!(promiscuity("va"), 0);
        let mut port = AfPacket::attach("va", opts).unwrap();
        assert_eq!(port.has_ring(), opts.rx_ring_slots > 0);
        let mut peer = AfPacket::attach("vb", quiet()).unwrap();
        assert_eq!(promiscuity("va"), 1, "promiscuous while attached");
        assert_eq!(promiscuity("vb"), 0);
        assert_eq!(port.ifindex(), netdev::ifindex("va").unwrap());

        let sent = vec![
            frame(A, B, &[], 1, 60),
            frame(A, B, &[(0x8100, 0x2005)], 2, 200), // PCP 1, VID 5
            frame(A, B, &[(0x8100, 0x0000)], 3, 64),  // priority tag, VID 0
            frame(A, B, &[(0x88a8, 0x0064), (0x8100, 0x00c8)], 4, 300), // QinQ 100/200
            frame(MacAddr([0xff; 6]), B, &[(0x8100, 0x0fff)], 5, 1500),
            frame(MacAddr([0x01, 0x80, 0xc2, 0, 0, 0]), B, &[], 6, 60), // link-local multicast
        ];
        let pkts: Vec<PacketBuf> = sent
            .iter()
            .map(|f| PacketBuf::from_frame(f).unwrap())
            .collect();
        let report = peer.send_batch(&pkts.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((report.sent, report.dropped), (sent.len(), 0));

        let got = recv_frames(&mut port, sent.len(), |p| is_test_frame(p.frame()));
        let frames: Vec<Vec<u8>> = got.iter().map(|p| p.frame().to_vec()).collect();
        assert_eq!(
            frames, sent,
            "tags the kernel stripped into auxdata are back in place"
        );
        assert!(got.iter().all(|p| p.headroom() >= 64));

        // Our sends reach the peer intact.
        let out = frame(B, A, &[(0x8100, 0x0009)], 9, 90);
        port.send(&PacketBuf::from_frame(&out).unwrap()).unwrap();
        let got = recv_frames(&mut peer, 1, |p| is_test_frame(p.frame()));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].frame(), &out[..]);
        // Nothing transmitted on va comes back to the port: not its own frames (the
        // kernel never loops a frame back to its sending socket) and, thanks to
        // PACKET_IGNORE_OUTGOING, not what anyone else (host stack, another socket)
        // sends out of va either.
        let mut other_on_va = AfPacket::attach("va", quiet()).unwrap();
        let other = frame(B, A, &[], 10, 80);
        other_on_va
            .send(&PacketBuf::from_frame(&other).unwrap())
            .unwrap();
        assert_eq!(
            recv_frames(&mut peer, 1, |p| is_test_frame(p.frame())).len(),
            1
        );
        assert_eq!(test_frames_within(&mut port, Duration::from_millis(50)), 0);

        drop(port);
        eventually("promiscuity restored when the socket closes", || {
            promiscuity("va") == 0
        });
        assert_eq!(
            promiscuity("va"),
            0,
            "promiscuity restored when the socket closes"
        );
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_burst_longer_than_the_ring_arrives_in_order() {
    in_netns(|| {
        veth("va", "vb");
        ip("link set va mtu 9000");
        ip("link set vb mtu 9000");
        let mut port = AfPacket::attach("va", AfPacketOptions::default()).unwrap();
        let mut peer = AfPacket::attach("vb", quiet()).unwrap();
        assert!(port.has_ring());
        let mut batch = Batch::new(64);
        while port.recv_batch(&mut batch).unwrap() > 0 {}
        // 3000 frames (more than the ring's slots), sent in rounds of 200 and read between
        // rounds, with a few too long for a slot (read whole from the queue) among them.
        let mut sent = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        for round in 0..15u16 {
            let frames: Vec<Vec<u8>> = (0..200u16)
                .map(|i| {
                    let n = round * 200 + i;
                    let len = if n % 97 == 0 {
                        4000
                    } else {
                        60 + usize::from(n % 50)
                    };
                    let mut f = frame(A, B, &[], (n % 251) as u8, len);
                    f[20..22].copy_from_slice(&n.to_be_bytes());
                    f
                })
                .collect();
            let pkts: Vec<PacketBuf> = frames
                .iter()
                .map(|f| PacketBuf::from_frame(f).unwrap())
                .collect();
            let report = peer.send_batch(&pkts.iter().collect::<Vec<_>>()).unwrap();
            assert_eq!(report.sent, 200);
            sent.extend(frames);
            got.extend(
                recv_frames(&mut port, 200, |p| is_test_frame(p.frame()))
                    .iter()
                    .map(|p| p.frame().to_vec()),
            );
        }
        assert_eq!(got.len(), sent.len());
        assert!(got == sent, "every frame, whole and in order");
        assert_eq!(port.rx_dropped(), 0);
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_full_ring_counts_its_drops_and_keeps_working() {
    in_netns(|| {
        veth("va", "vb");
        let mut port = AfPacket::attach("va", AfPacketOptions::default()).unwrap();
        let mut peer = AfPacket::attach("vb", quiet()).unwrap();
        let mut batch = Batch::new(64);
        while port.recv_batch(&mut batch).unwrap() > 0 {}
        port.maintain();
        let before = port.rx_dropped();
        // Twice the ring's slots, none read: the rest is dropped by the kernel.
        let n = 2 * crate::packet::RX_RING_SLOTS;
        let pkts: Vec<PacketBuf> = (0..n)
            .map(|i| PacketBuf::from_frame(&frame(A, B, &[], (i % 251) as u8, 60)).unwrap())
            .collect();
        for chunk in pkts.chunks(64) {
            peer.send_batch(&chunk.iter().collect::<Vec<_>>()).unwrap();
        }
        port.maintain();
        assert!(
            port.rx_dropped() > before,
            "the ring's drops are counted: {}",
            port.rx_dropped()
        );
        assert!(port.has_ring(), "a full ring is not set up again");
        let got = recv_frames(&mut port, crate::packet::RX_RING_SLOTS, |p| {
            is_test_frame(p.frame())
        });
        assert!(
            got.len() >= crate::packet::RX_RING_SLOTS - 8,
            "{}",
            got.len()
        );
        // And it still receives.
        let sent = frame(A, B, &[], 7, 70);
        peer.send(&PacketBuf::from_frame(&sent).unwrap()).unwrap();
        let got = recv_frames(&mut port, 1, |p| p.frame() == &sent[..]);
        assert_eq!(got.len(), 1);
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn mac_is_read_anew() {
    in_netns(|| {
        veth("va", "vb");
        let port = AfPacket::attach("va", quiet()).unwrap();
        assert_eq!(port.mac().unwrap(), netdev::mac("va").unwrap());
        netdev::set_mac("va", A).unwrap();
        assert_eq!(port.mac().unwrap(), A);
        ip("link set dev va address 02:00:00:00:0a:02");
        assert_eq!(port.mac().unwrap(), MacAddr([2, 0, 0, 0, 0x0a, 2]));
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn attach_to_missing_device_says_so() {
    in_netns(|| match AfPacket::attach("nosuch0", quiet()) {
        Err(PortError::NotFound { name }) => assert_eq!(name, "nosuch0"),
        other => panic!("expected NotFound, got {other:?}"),
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn link_down_is_not_gone_and_recovers() {
    in_netns(|| {
        veth("va", "vb");
        let mut port = AfPacket::attach("va", quiet()).unwrap();
        let mut peer = AfPacket::attach("vb", quiet()).unwrap();
        let mut batch = Batch::new(8);

        netdev::set_down("va").unwrap();
        assert!(!netdev::is_up("va").unwrap());
        // The socket is told ENETDOWN once; the port turns it into "nothing now" (after
        // any frame that arrived before, which a receive ring still holds).
        let mut calls = 0;
        while port.recv_batch(&mut batch).unwrap() > 0 {
            calls += 1;
            assert!(calls < 10, "frames keep coming from a down device");
        }
        assert_eq!(port.recv_batch(&mut batch).unwrap(), 0);
        let pkt = PacketBuf::from_frame(&frame(B, A, &[], 1, 60)).unwrap();
        let err = port.send(&pkt).unwrap_err();
        assert!(err.is_drop(), "send while down is a drop: {err:?}");
        assert!(!port.is_gone());

        netdev::set_up("va").unwrap();
        let sent = frame(A, B, &[], 2, 60);
        // Give the carrier a moment: veth raises it only once both ends are up.
        let mut got = Vec::new();
        for _ in 0..100 {
            peer.send(&PacketBuf::from_frame(&sent).unwrap()).ok();
            got = recv_frames_within(&mut port, 1, Duration::from_millis(30), |p| {
                is_test_frame(p.frame())
            });
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(
            got.first().map(|p| p.frame().to_vec()),
            Some(sent),
            "frames flow again after up"
        );
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn deleted_device_is_gone() {
    in_netns(|| {
        veth("va", "vb");
        let mut port = AfPacket::attach("va", AfPacketOptions::default()).unwrap();
        let mut other = AfPacket::attach("vb", quiet()).unwrap();
        let mut batch = Batch::new(8);
        while port.recv_batch(&mut batch).unwrap() > 0 {}

        ip("link del va");
        assert!(port.is_gone());
        // Frames that arrived before (a receive ring holds them) come first.
        let mut calls = 0;
        let err = loop {
            match port.recv_batch(&mut batch) {
                Ok(n) => assert!(n > 0 && calls < 10, "no gone after {calls} calls"),
                Err(e) => break e,
            }
            calls += 1;
        };
        assert!(err.is_gone(), "{err:?}");
        // The kernel reports it once; the port keeps saying it.
        assert!(port.recv_batch(&mut batch).unwrap_err().is_gone());
        let pkt = PacketBuf::from_frame(&frame(B, A, &[], 1, 60)).unwrap();
        assert!(port.send(&pkt).unwrap_err().is_gone());
        assert!(port.send_batch(&[&pkt, &pkt]).unwrap_err().is_gone());
        assert!(port.mac().unwrap_err().is_gone());
        // Deleting one end of a veth deletes the other.
        assert!(other.recv_batch(&mut batch).unwrap_err().is_gone());
        assert!(!netdev::exists("vb").unwrap());
    });
}
