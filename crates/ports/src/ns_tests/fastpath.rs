//! The kernel fast path between two veth ports: flows forwarded by the kernel once
//! inserted (ping across, counted per flow, hidden from the ports' packet sockets),
//! tagged frames of an untagged flow left to the switch, tagged flows popped, pushed and
//! rewritten by the kernel (double, 802.1ad and priority tags still left to the switch),
//! back to the switch once removed, and nothing left once the port lets go.

use std::os::fd::AsFd;
use std::process::Command;
use std::time::Duration;

use super::{frame, in_netns, ip, is_test_frame, recv_frames_within};
use crate::fastpath::{Egress, FastPath, FlowKey, to_peer as out};
use crate::netdev;
use crate::packet::{AfPacket, AfPacketOptions};
use crate::port::{MacAddr, PortIo};

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
            ip(&format!("netns add {ns}"));
            ip(&format!(
                "link add {host} type veth peer name e0 netns {ns}"
            ));
            ip(&format!("link set {host} up"));
            assert!(
                in_ns(ns, &format!("ip addr add 10.9.0.{}/24 dev e0", i + 1))
                    .status
                    .success()
            );
            assert!(in_ns(ns, "ip link set e0 up").status.success());
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
            peer: false,
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
