//! The kernel fast path between two veth ports: flows forwarded by the kernel once
//! inserted (ping across, counted per flow, hidden from the ports' packet sockets),
//! tagged frames of an untagged flow left to the switch, tagged flows popped, pushed and
//! rewritten by the kernel (double, 802.1ad and priority tags still left to the switch),
//! back to the switch once removed, and nothing left once the port lets go; broadcasts
//! flooded by the kernel with their tags, the switch getting only their headers.

use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use super::{frame, in_netns, ip, is_test_frame, recv_frames_within};
use crate::fastpath::{Egress, FastPath, Flood, FloodKey, FlowKey, Via, to_peer as out};
use crate::netdev;
use crate::packet::{AfPacket, AfPacketOptions, RX_RING_SLOTS};
use crate::port::{MacAddr, PortIo};
use crate::tap::{Tap, TapOptions};

/// Named namespaces (`bpf_redirect_peer` needs the peers in other namespaces than the
/// ports), deleted when dropped.
struct Spaces(Vec<String>);

impl Drop for Spaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn in_ns(ns: &str, cmd: &str) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd.split_whitespace())
        .output()
        .expect("run ip netns exec")
}

fn ns_mac(ns: &str) -> MacAddr {
    let out = String::from_utf8(in_ns(ns, "cat /sys/class/net/e0/address").stdout).unwrap();
    out.trim().parse().expect("a MAC address")
}

/// A packet socket on `e0` inside namespace `ns` (opened from a thread that enters it).
fn socket_in(ns: &str) -> AfPacket {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        crate::sys::testing::enter_net(&path).expect("setns");
        AfPacket::attach("e0", AfPacketOptions::default()).expect("packet socket on e0")
    })
    .join()
    .expect("socket thread")
}

/// The first byte after the test EtherType of test frames seen on `port` within 300 ms.
fn test_ids(port: &mut AfPacket) -> Vec<u8> {
    recv_frames_within(port, usize::MAX, Duration::from_millis(300), |p| {
        is_test_frame(p.frame())
    })
    .iter()
    .map(|p| {
        let f = p.frame();
        f[f.len() - 60]
    })
    .collect()
}

/// The test frames seen on `port` within 300 ms: their first byte after the test
/// EtherType and their tags, outermost first, as `(tpid, tci)`.
fn tagged_ids(port: &mut AfPacket) -> Vec<(u8, Vec<(u16, u16)>)> {
    recv_frames_within(port, usize::MAX, Duration::from_millis(300), |p| {
        is_test_frame(p.frame())
    })
    .iter()
    .map(|p| {
        let f = p.frame();
        let mut tags = Vec::new();
        let mut at = 12;
        while let [0x81, 0x00, hi, lo, ..] | [0x88, 0xa8, hi, lo, ..] = f[at..] {
            tags.push((
                u16::from_be_bytes([f[at], f[at + 1]]),
                u16::from_be_bytes([hi, lo]),
            ));
            at += 4;
        }
        (f[f.len() - 60], tags)
    })
    .collect()
}

/// Makes namespace `ns` with `e0` in it, the peer of veth `host` here, both up; returns
/// `host`'s ifindex.
fn behind(ns: &str, host: &str) -> u32 {
    ip(&format!("netns add {ns}"));
    ip(&format!(
        "link add {host} type veth peer name e0 netns {ns}"
    ));
    ip(&format!("link set {host} up"));
    assert!(in_ns(ns, "ip link set e0 up").status.success());
    netdev::ifindex(host).unwrap()
}

fn pings(ns: &str, to: &str) -> bool {
    in_ns(ns, &format!("ping -c 3 -i 0.05 -W 1 {to}"))
        .status
        .success()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn inserted_flows_cross_in_the_kernel_and_removed_ones_come_back() {
    in_netns(|| {
        let tag = format!("vbfp{}", std::process::id());
        let spaces = Spaces(vec![format!("{tag}a"), format!("{tag}b")]);
        let (a, b) = (&spaces.0[0], &spaces.0[1]);
        for (i, (ns, host)) in [(a, "h1"), (b, "h2")].into_iter().enumerate() {
            behind(ns, host);
            assert!(
                in_ns(ns, &format!("ip addr add 10.9.0.{}/24 dev e0", i + 1))
                    .status
                    .success()
            );
        }
        let (ma, mb) = (ns_mac(a), ns_mac(b));
        let text = |m: MacAddr| super::mac_text(m);
        assert!(
            in_ns(
                a,
                &format!("ip neigh add 10.9.0.2 lladdr {} dev e0", text(mb))
            )
            .status
            .success()
        );
        assert!(
            in_ns(
                b,
                &format!("ip neigh add 10.9.0.1 lladdr {} dev e0", text(ma))
            )
            .status
            .success()
        );
        let (h1, h2) = (
            netdev::ifindex("h1").unwrap(),
            netdev::ifindex("h2").unwrap(),
        );

        // Someone else's tcx program already on h1 that passes everything on: ours must
        // run ahead of it.
        let other = crate::sys::bpf::prog_load(
            crate::sys::bpf::PROG_SCHED_CLS,
            crate::sys::bpf::ATTACH_TCX_INGRESS,
            &crate::fastpath::prog::pass_all(),
            c"GPL",
        )
        .unwrap();
        let _other_link = crate::sys::bpf::tcx_ingress_link(other.as_fd(), h1).unwrap();

        let mut s1 = AfPacket::attach("h1", AfPacketOptions::default()).unwrap();
        let s2 = AfPacket::attach("h2", AfPacketOptions::default()).unwrap();
        let fp = FastPath::new(1024, 65_535 + 18).unwrap();
        let p1 = fp.attach(h1, s1.as_fd()).unwrap();
        let _p2 = fp.attach(h2, s2.as_fd()).unwrap();
        let to_b = |p: &crate::PacketBuf| p.frame().starts_with(&mb.0);

        // No flows: nothing crosses, and the switch's socket sees the frames.
        assert!(!pings(a, "10.9.0.2"), "nothing joins the veths yet");
        assert!(!recv_frames_within(&mut s1, 1, Duration::from_millis(300), to_b).is_empty());

        // Both directions inserted: ping crosses, counted, and the socket sees none.
        let ab = FlowKey {
            ingress: h1,
            dst: mb,
            src: ma,
            vid: 0,
        };
        let ba = FlowKey {
            ingress: h2,
            dst: ma,
            src: mb,
            vid: 0,
        };
        fp.insert(ab, out(h2, 0)).unwrap();
        fp.insert(ba, out(h1, 0)).unwrap();
        recv_frames_within(&mut s1, usize::MAX, Duration::from_millis(100), |_| true);
        assert!(pings(a, "10.9.0.2"), "the kernel forwards inserted flows");
        let flow = fp.get(ab).unwrap().expect("flow listed");
        assert_eq!(flow.egress, h2);
        assert!(
            flow.stats.packets >= 3 && flow.stats.bytes >= 3 * 98,
            "{:?}",
            flow.stats
        );
        assert!(
            recv_frames_within(&mut s1, 1, Duration::from_millis(200), to_b).is_empty(),
            "offloaded frames are hidden from the switch"
        );
        assert_eq!(fp.get(ba).unwrap().map(|f| f.egress), Some(h1));

        // The same flow's frames with a VLAN tag (one the kernel takes into metadata,
        // one it leaves in the frame) are the switch's; untagged ones cross.
        let mut in_a = socket_in(a);
        let mut in_b = socket_in(b);
        let sent = [
            frame(mb, ma, &[], 1, 60),
            frame(mb, ma, &[(0x8100, 10)], 2, 60),
            frame(mb, ma, &[(0x88a8, 20), (0x8100, 10)], 3, 60),
            frame(mb, ma, &[(0x9100, 30)], 4, 60),
        ];
        for f in &sent {
            in_a.send(&crate::PacketBuf::from_frame(f).unwrap())
                .unwrap();
        }
        let mut at_switch = test_ids(&mut s1);
        at_switch.sort_unstable();
        assert_eq!(at_switch, [2, 3, 4], "tagged frames go to the switch");
        assert_eq!(test_ids(&mut in_b), [1], "the untagged frame crosses");

        // Tagged flows: VID 10 in, popped; VID 20 in, rewritten to 30; the untagged flow
        // now pushing 40. What the programs must leave alone stays with the switch even
        // with a flow of its VID in the map: a second tag, an 802.1ad tag, a priority tag.
        let (pop, rewrite) = (FlowKey { vid: 10, ..ab }, FlowKey { vid: 20, ..ab });
        fp.insert(pop, out(h2, 0)).unwrap();
        fp.insert(rewrite, out(h2, 30)).unwrap();
        fp.insert(ab, out(h2, 40)).unwrap();
        let sent = [
            frame(mb, ma, &[(0x8100, 10)], 5, 60),
            frame(mb, ma, &[(0x8100, 20)], 6, 60),
            frame(mb, ma, &[], 7, 60),
            frame(mb, ma, &[(0x8100, 10), (0x8100, 11)], 8, 60),
            frame(mb, ma, &[(0x88a8, 10)], 9, 60),
            frame(mb, ma, &[(0x8100, 0)], 10, 60),
        ];
        for f in &sent {
            in_a.send(&crate::PacketBuf::from_frame(f).unwrap())
                .unwrap();
        }
        let mut at_switch = test_ids(&mut s1);
        at_switch.sort_unstable();
        assert_eq!(at_switch, [8, 9, 10], "double, 802.1ad and priority tags");
        let mut crossed = tagged_ids(&mut in_b);
        crossed.sort_unstable();
        assert_eq!(
            crossed,
            [
                (5, vec![]),
                (6, vec![(0x8100, 30)]),
                (7, vec![(0x8100, 40)])
            ],
            "popped, rewritten, pushed"
        );
        for k in [pop, rewrite] {
            assert_eq!(fp.get(k).unwrap().map(|f| f.stats.packets), Some(1));
            assert!(fp.remove(k).unwrap());
        }
        fp.insert(ab, out(h2, 0)).unwrap();

        // Sent out of the egress netdev instead (`bpf_redirect`, as for a NIC or a veth
        // whose peer is in this namespace): h2's peer gets them all the same.
        let egress = Egress {
            via: Via::Out,
            ..out(h2, 0)
        };
        fp.insert(ab, egress).unwrap();
        assert!(pings(a, "10.9.0.2"), "the kernel sends them out of h2");
        assert!(fp.get(ab).unwrap().unwrap().stats.packets >= 3);
        fp.insert(ab, out(h2, 0)).unwrap();

        // One direction removed: the replies stop, the switch sees the frames again.
        assert!(fp.remove(ab).unwrap());
        assert!(!fp.remove(ab).unwrap(), "already gone");
        assert!(fp.get(ab).unwrap().is_none());
        assert!(!pings(a, "10.9.0.2"));
        assert!(!recv_frames_within(&mut s1, 1, Duration::from_millis(300), to_b).is_empty());

        // The port lets go: even with the flow back, the kernel no longer forwards it.
        fp.insert(ab, out(h2, 0)).unwrap();
        crate::fastpath::detach_filter(s1.as_fd()).unwrap();
        drop(p1);
        assert!(!pings(a, "10.9.0.2"), "detached port forwards nothing");
        assert!(!recv_frames_within(&mut s1, 1, Duration::from_millis(300), to_b).is_empty());
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn broadcasts_are_flooded_by_the_kernel_with_their_tags_and_the_switch_gets_headers() {
    in_netns(|| {
        let tag = format!("vbfl{}", std::process::id());
        let spaces = Spaces((0..4).map(|i| format!("{tag}{i}")).collect());
        let mut hosts = Vec::new();
        for (i, ns) in spaces.0.iter().enumerate() {
            hosts.push(behind(ns, &format!("f{}", i + 1)));
        }
        // The switch reads port 2 with `recvmmsg`, the others through their rings.
        let mut switch: Vec<AfPacket> = (1..=4)
            .map(|i| {
                let o = AfPacketOptions {
                    rx_ring_slots: if i == 2 { 0 } else { RX_RING_SLOTS },
                    ..AfPacketOptions::default()
                };
                AfPacket::attach(&format!("f{i}"), o).unwrap()
            })
            .collect();
        let fp = FastPath::new(1024, 65_535 + 18).unwrap();
        let _ports: Vec<_> = hosts
            .iter()
            .zip(&switch)
            .map(|(&h, s)| fp.attach(h, s.as_fd()).unwrap())
            .collect();
        let mut inside: Vec<AfPacket> = spaces.0.iter().map(|ns| socket_in(ns)).collect();
        let ma = ns_mac(&spaces.0[0]);
        let all = MacAddr([0xff; 6]);
        let [h1, h2, h3, h4] = hosts[..] else {
            unreachable!()
        };
        let flood = |copies: &[(u32, u16)], max_len| Flood {
            max_len,
            copies: copies.iter().map(|&(i, t)| (i, t, Via::Out)).collect(),
        };
        let send = |from: &mut AfPacket, frames: &[Vec<u8>]| {
            for f in frames {
                from.send(&crate::PacketBuf::from_frame(f).unwrap())
                    .unwrap();
            }
        };
        // What the switch's socket on port `i` got: whole test frames by id, and the
        // headers of flooded ones as (length on the wire, tag).
        let at_switch = |s: &mut AfPacket| {
            let got = recv_frames_within(s, usize::MAX, Duration::from_millis(300), |p| {
                p.flooded_len().is_some() || is_test_frame(p.frame())
            });
            let mut whole = Vec::new();
            let mut heads = Vec::new();
            for p in &got {
                let f = p.frame();
                match p.flooded_len() {
                    Some(len) => heads.push((len, f.len(), f[12..14].to_vec())),
                    None => {
                        let mut at = 12;
                        while matches!(f[at..at + 2], [0x81, 0x00] | [0x88, 0xa8]) {
                            at += 4;
                        }
                        whole.push(f[at + 2]);
                    }
                }
            }
            (whole, heads)
        };
        let untagged = vec![];

        // Untagged broadcasts from a: b untagged, c and d tagged 10; the switch gets the
        // header alone. A group source, a tagged frame of a VLAN without an entry and a
        // frame over the entry's limit stay with the switch.
        let key = FloodKey {
            ingress: h1,
            vid: 0,
        };
        fp.insert_flood(key, &flood(&[(h2, 0), (h3, 10), (h4, 10)], 200))
            .unwrap();
        let mut group = ma;
        group.0[0] |= 1;
        send(
            &mut inside[0],
            &[
                frame(all, ma, &[], 1, 60),
                frame(all, group, &[], 2, 60),
                frame(all, MacAddr([0; 6]), &[], 9, 60),
                frame(all, ma, &[(0x8100, 10)], 3, 60),
                frame(all, ma, &[], 4, 300),
            ],
        );
        assert_eq!(tagged_ids(&mut inside[1]), [(1, untagged.clone())]);
        for d in [2, 3] {
            assert_eq!(tagged_ids(&mut inside[d]), [(1, vec![(0x8100, 10)])], "{d}");
        }
        assert!(tagged_ids(&mut inside[0]).is_empty(), "no copy back to a");
        let (mut whole, heads) = at_switch(&mut switch[0]);
        whole.sort_unstable();
        assert_eq!(whole, [2, 3, 4, 9]);
        assert_eq!(
            heads,
            [(74, 14, vec![0x88, 0xb5])],
            "one header of 74 bytes"
        );

        // Tagged 10 into a: popped for b, kept for c (priority bits and all); the header
        // comes with its tag. Untagged from b: pushed 30 for a, the last copy alone.
        // Tagged 10 from c: rewritten to 20 for d, its priority kept.
        let entries = [
            (
                FloodKey {
                    ingress: h1,
                    vid: 10,
                },
                flood(&[(h2, 0), (h3, 10)], 1514),
            ),
            (
                FloodKey {
                    ingress: h2,
                    vid: 0,
                },
                flood(&[(h1, 30)], 1514),
            ),
            (
                FloodKey {
                    ingress: h3,
                    vid: 10,
                },
                flood(&[(h4, 20)], 1514),
            ),
        ];
        for (k, f) in &entries {
            fp.insert_flood(*k, f).unwrap();
        }
        send(
            &mut inside[0],
            &[frame(all, ma, &[(0x8100, 0xa00a)], 5, 60)],
        );
        let mb = ns_mac(&spaces.0[1]);
        send(&mut inside[1], &[frame(all, mb, &[], 6, 60)]);
        let mc = ns_mac(&spaces.0[2]);
        send(
            &mut inside[2],
            &[frame(all, mc, &[(0x8100, 0x600a)], 7, 60)],
        );
        assert_eq!(
            tagged_ids(&mut inside[0]),
            [(6, vec![(0x8100, 30)])],
            "pushed"
        );
        assert_eq!(
            tagged_ids(&mut inside[1]),
            [(5, untagged.clone())],
            "popped"
        );
        assert_eq!(
            tagged_ids(&mut inside[2]),
            [(5, vec![(0x8100, 0xa00a)])],
            "kept"
        );
        assert_eq!(
            tagged_ids(&mut inside[3]),
            [(7, vec![(0x8100, 0x6014)])],
            "rewritten"
        );
        let (whole, heads) = at_switch(&mut switch[0]);
        assert!(whole.is_empty(), "{whole:?}");
        assert_eq!(heads, [(78, 18, vec![0x81, 0x00])], "the header, tagged");
        assert_eq!(
            at_switch(&mut switch[1]),
            (vec![], vec![(74, 14, vec![0x88, 0xb5])]),
            "read with recvmmsg"
        );

        // Tagged copies of two VIDs are more than the program does: refused.
        assert!(
            fp.insert_flood(key, &flood(&[(h2, 10), (h3, 20)], 1514))
                .is_err()
        );

        // Removed: the switch gets the whole frames again, nobody else.
        assert!(fp.remove_flood(key).unwrap());
        assert!(!fp.remove_flood(key).unwrap(), "already gone");
        send(&mut inside[0], &[frame(all, ma, &[], 8, 60)]);
        assert!(tagged_ids(&mut inside[1]).is_empty());
        assert_eq!(at_switch(&mut switch[0]), (vec![8], vec![]));

        // A TAP the switch reads itself (as the bridge's host port): the kernel has its
        // netdev receive the flood's copy and a flow's frames (`BPF_F_INGRESS`), as the
        // switch's writes to it would; its reader, the switch, gets none of them.
        let mut tap = Tap::create("ft0", TapOptions::default()).unwrap();
        tap.set_up().unwrap();
        let ft = netdev::ifindex("ft0").unwrap();
        let mut received = AfPacket::attach("ft0", AfPacketOptions::default()).unwrap();
        let to_tap = Flood {
            max_len: 1514,
            // The TAP first: a clone (the last copy is the frame itself).
            copies: vec![(ft, 0, Via::In), (h2, 0, Via::Out)],
        };
        fp.insert_flood(key, &to_tap).unwrap();
        send(&mut inside[0], &[frame(all, ma, &[], 11, 60)]);
        assert_eq!(tagged_ids(&mut inside[1]), [(11, untagged.clone())]);
        assert_eq!(
            test_ids(&mut received),
            [11],
            "received by the TAP's netdev"
        );
        let mt = tap.mac().unwrap();
        let flow = FlowKey {
            ingress: h1,
            dst: mt,
            src: ma,
            vid: 0,
        };
        let into_tap = Egress {
            ifindex: ft,
            max_len: 1518,
            tag: 0,
            via: Via::In,
        };
        fp.insert(flow, into_tap).unwrap();
        send(&mut inside[0], &[frame(mt, ma, &[], 12, 60)]);
        assert_eq!(test_ids(&mut received), [12], "a flow into the TAP");
        assert_eq!(fp.get(flow).unwrap().unwrap().stats.packets, 1);
        assert!(
            recv_frames_within(&mut tap, 1, Duration::from_millis(200), |p| {
                is_test_frame(p.frame())
            })
            .is_empty(),
            "the TAP's reader sees none"
        );
        assert!(at_switch(&mut switch[0]).0.is_empty());
    });
}
