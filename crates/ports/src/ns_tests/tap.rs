//! TAP in a private namespace: creation, MAC/MTU/up, frames both ways between the TAP
//! descriptor and an `AF_PACKET` socket on the device, and what happens when it goes.

use super::{
    ETH_TEST, eventually, frame, in_netns, ip, is_test_frame, link_field, mac_text, recv_frames,
};
use crate::netdev;
use crate::packet::{AfPacket, AfPacketOptions};
use crate::port::{MacAddr, PortIo};
use crate::tap::{Tap, TapOptions};
use crate::{PacketBuf, PortError};

const TAP_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0xaa, 0x01]);
const OTHER: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0xbb, 0x02]);

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tap_is_created_configured_and_passes_frames_both_ways() {
    passes_frames_both_ways(TapOptions::default());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tap_without_io_uring_passes_frames_both_ways() {
    passes_frames_both_ways(TapOptions {
        io_uring: false,
        ..TapOptions::default()
    });
}

fn passes_frames_both_ways(opts: TapOptions) {
    in_netns(move || {
        let mut tap = Tap::create("vbt0", opts).unwrap();
        assert_eq!(tap.uses_io_uring(), opts.io_uring);
        assert!(tap.vnet_hdr());
        assert_eq!(tap.name(), "vbt0");
        tap.set_mac(TAP_MAC).unwrap();
        tap.set_mtu(9000).unwrap();
        tap.set_up().unwrap();
        assert!(tap.is_up().unwrap());
        assert_eq!(tap.mac().unwrap(), TAP_MAC);
        assert_eq!(tap.mtu().unwrap(), 9000);
        assert_eq!(tap.ifindex().unwrap(), netdev::ifindex("vbt0").unwrap());
        assert_eq!(
            link_field("vbt0", "address"),
            mac_text(TAP_MAC),
            "ip sees our MAC"
        );
        assert_eq!(link_field("vbt0", "mtu"), "9000");
        assert!(ip("-j link show dev vbt0").contains("\"UP\""));
        // The kernel reports the TAP's offload flags; vnet_hdr must be on.
        assert!(ip("-d -j link show dev vbt0").contains("\"vnet_hdr\":true"));

        let mut sock = AfPacket::attach("vbt0", AfPacketOptions::default()).unwrap();

        // Written to the TAP fd = received by the device: the packet socket sees it.
        // One of them tagged: the kernel strips it on receive and AfPacket puts it back.
        let to_dev: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                let tags: &[(u16, u16)] = if i == 2 { &[(0x8100, 100)] } else { &[] };
                frame(
                    OTHER,
                    MacAddr([2, 0, 0, 0, 0, 0x10 + i]),
                    tags,
                    i,
                    100 + 50 * usize::from(i),
                )
            })
            .collect();
        tap.send(&PacketBuf::from_frame(&to_dev[0]).unwrap())
            .unwrap();
        let rest: Vec<PacketBuf> = to_dev[1..]
            .iter()
            .map(|f| PacketBuf::from_frame(f).unwrap())
            .collect();
        let refs: Vec<&PacketBuf> = rest.iter().collect();
        let report = tap.send_batch(&refs).unwrap();
        assert_eq!((report.sent, report.dropped), (rest.len(), 0));
        let got = recv_frames(&mut sock, to_dev.len(), |p| is_test_frame(p.frame()));
        let got: Vec<Vec<u8>> = got.iter().map(|p| p.frame().to_vec()).collect();
        assert_eq!(got, to_dev);

        // Sent on the device = handed to the TAP fd.
        let to_tap: Vec<Vec<u8>> = (0..5)
            .map(|i| frame(TAP_MAC, OTHER, &[(0x8100, 7)], 0x40 + i, 1400))
            .collect();
        for f in &to_tap {
            sock.send(&PacketBuf::from_frame(f).unwrap()).unwrap();
        }
        let got = recv_frames(&mut tap, to_tap.len(), |p| is_test_frame(p.frame()));
        let got: Vec<Vec<u8>> = got.iter().map(|p| p.frame().to_vec()).collect();
        assert_eq!(got, to_tap, "TAP reads carry VLAN tags in-band");
        assert_eq!(u16::from_be_bytes([got[0][16], got[0][17]]), ETH_TEST);

        // Closing the only queue removes the device; the packet socket learns it.
        drop(tap);
        eventually("vbt0 removed", || !netdev::exists("vbt0").unwrap());
        assert!(sock.is_gone());
        let mut batch = crate::Batch::new(4);
        assert!(sock.recv_batch(&mut batch).unwrap_err().is_gone());
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tap_name_conflicts_are_clear_errors() {
    in_netns(|| {
        let _tap = Tap::create("vbt1", TapOptions::default()).unwrap();
        for taken in ["vbt1", "lo"] {
            match Tap::create(taken, TapOptions::default()) {
                Err(PortError::Exists { name }) => assert_eq!(name, taken),
                other => panic!("{taken}: expected Exists, got {other:?}"),
            }
        }
        let err = Tap::create("vbt1", TapOptions::default()).unwrap_err();
        assert_eq!(err.to_string(), "network device vbt1 already exists");
        assert!(matches!(
            Tap::create("tap%d", TapOptions::default()),
            Err(PortError::InvalidName { .. })
        ));
        assert!(matches!(
            Tap::create("a-name-far-too-long", TapOptions::default()),
            Err(PortError::InvalidName { .. })
        ));
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tap_down_drops_and_deleted_tap_is_gone() {
    in_netns(|| {
        let mut tap = Tap::create("vbt2", TapOptions::default()).unwrap();
        let pkt = PacketBuf::from_frame(&frame(OTHER, TAP_MAC, &[], 1, 60)).unwrap();
        // Down: the kernel refuses writes with EIO, which is a drop, not a failure.
        let err = tap.send(&pkt).unwrap_err();
        assert!(err.is_drop(), "down TAP: {err:?}");
        let report = tap.send_batch(&[&pkt, &pkt, &pkt]).unwrap();
        assert_eq!((report.sent, report.dropped), (0, 3));
        tap.set_up().unwrap();
        tap.send(&pkt).unwrap();

        ip("link del vbt2");
        let mut batch = crate::Batch::new(4);
        assert!(tap.recv_batch(&mut batch).unwrap_err().is_gone());
        assert!(tap.send(&pkt).unwrap_err().is_gone());
        assert!(tap.send_batch(&[&pkt, &pkt]).unwrap_err().is_gone());
        assert!(tap.mac().unwrap_err().is_gone());
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn multiqueue_tap_opens_more_queues() {
    in_netns(|| {
        let opts = TapOptions {
            multi_queue: true,
            ..TapOptions::default()
        };
        let tap = Tap::create("vbt3", opts).unwrap();
        let q1 = tap.open_queue().unwrap();
        assert_eq!(q1.name(), "vbt3");
        drop(tap);
        assert!(
            netdev::exists("vbt3").unwrap(),
            "device lives while a queue is open"
        );
        drop(q1);
        eventually("vbt3 removed", || !netdev::exists("vbt3").unwrap());

        let single = Tap::create("vbt4", TapOptions::default()).unwrap();
        assert!(single.open_queue().is_err());
    });
}

/// Bursts: many frames each way in one go, in order, with the read burst growing from
/// two reads to a full batch and the empty device answering with nothing, not an error.
#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tap_bursts_keep_order_and_size() {
    in_netns(|| {
        let mut tap = Tap::create("vbt4", TapOptions::default()).unwrap();
        assert!(
            tap.uses_io_uring(),
            "io_uring available on the test machine"
        );
        tap.set_mac(TAP_MAC).unwrap();
        tap.set_up().unwrap();
        let mut sock = AfPacket::attach("vbt4", AfPacketOptions::default()).unwrap();
        let mut batch = crate::Batch::new(64);
        // What the host sent out of it so far (IPv6 on up) is not the test's.
        while tap.recv_batch(&mut batch).unwrap() > 0 {}

        let to_tap: Vec<Vec<u8>> = (0..150u16)
            .map(|i| frame(TAP_MAC, OTHER, &[], i as u8, 60 + usize::from(i) * 9))
            .collect();
        for f in &to_tap {
            sock.send(&PacketBuf::from_frame(f).unwrap()).unwrap();
        }
        let mut got = Vec::new();
        let mut largest = 0;
        for _ in 0..100 {
            let n = tap.recv_batch(&mut batch).unwrap();
            largest = largest.max(n);
            got.extend(
                batch
                    .iter()
                    .filter(|p| is_test_frame(p.frame()))
                    .map(|p| p.frame().to_vec()),
            );
            if got.len() == to_tap.len() {
                break;
            }
        }
        assert_eq!(got, to_tap);
        assert!(largest >= 32, "bursts grew to {largest} frames");
        assert_eq!(tap.recv_batch(&mut batch).unwrap(), 0, "drained");

        let out: Vec<PacketBuf> = (0..100u16)
            .map(|i| PacketBuf::from_frame(&frame(OTHER, TAP_MAC, &[], i as u8, 1000)).unwrap())
            .collect();
        let refs: Vec<&PacketBuf> = out.iter().collect();
        let report = tap.send_batch(&refs).unwrap();
        assert_eq!((report.sent, report.dropped), (100, 0));
        let got = recv_frames(&mut sock, 100, |p| is_test_frame(p.frame()));
        let want: Vec<&[u8]> = out.iter().map(|p| p.frame()).collect();
        let got: Vec<&[u8]> = got.iter().map(|p| p.frame()).collect();
        assert_eq!(got, want);
    });
}
