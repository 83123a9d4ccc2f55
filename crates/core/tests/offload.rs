//! What may be handed to a fast path: only flows whose every further frame would be
//! decided the same way here, and what the fast path carried comes back into counters
//! and FDB ageing.

mod common;

use std::time::Duration;

use common::*;
use vbridge_core::{
    Bridge, Decision, FloodOffload, Instant, MacAddr, Offload, PortFlags, PortId, StpState, TagOp,
    Verdict, VlanMode,
};

/// Where the core would let a fast path send untagged `src` -> `dst` from `ingress`.
fn target(b: &Bridge, ingress: PortId, src: MacAddr, dst: MacAddr) -> Option<PortId> {
    b.offload_target(ingress, None, src, dst).map(|o| o.egress)
}

/// The flow as offloaded on a bridge without VLAN filtering.
fn plain(egress: PortId) -> Offload {
    Offload {
        egress,
        vid: vid(1),
        tag: None,
    }
}

/// A and B learned on ports 0 and 1 of a 3-port bridge.
fn learned() -> (vbridge_core::Bridge, Vec<vbridge_core::PortId>) {
    let (mut b, p) = bridge_with(3);
    send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    send(&mut b, 0, p[1], &frame(mac(1), mac(2)));
    (b, p)
}

#[test]
fn known_unicast_between_learned_stations_is_offloadable() {
    let (b, p) = learned();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), Some(p[1]));
    assert_eq!(target(&b, p[1], mac(2), mac(1)), Some(p[0]));
}

#[test]
fn anything_that_needs_the_switch_is_not() {
    let (mut b, p) = learned();
    // Unknown destination (flooded), multicast, broadcast.
    assert_eq!(target(&b, p[0], mac(1), mac(9)), None);
    assert_eq!(
        target(&b, p[0], mac(1), vbridge_core::MacAddr::BROADCAST),
        None
    );
    // A source not learned on that port: the next frame would learn or move it.
    assert_eq!(target(&b, p[2], mac(1), mac(2)), None);
    assert_eq!(target(&b, p[0], mac(7), mac(2)), None);
    // Frames for the bridge itself go to the host port's path.
    assert_eq!(target(&b, p[0], mac(1), b.mac()), None);

    // Isolated on both sides.
    let plain = b.port_config(p[0]).unwrap().flags;
    let iso = PortFlags {
        isolated: true,
        ..plain
    };
    b.set_port_flags(p[0], iso).unwrap();
    b.set_port_flags(p[1], iso).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None);
    b.set_port_flags(p[0], plain).unwrap();
    b.set_port_flags(p[1], plain).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), Some(p[1]));

    // Locked ingress, blocked or down egress.
    let locked = PortFlags {
        locked: true,
        ..plain
    };
    b.set_port_flags(p[0], locked).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None);
    b.set_port_flags(p[0], plain).unwrap();
    send(&mut b, 0, p[0], &frame(mac(2), mac(1))); // locking forgot what p0 had learned
    b.set_port_stp_state(p[1], StpState::Blocking).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None);
    b.set_port_stp_state(p[1], StpState::Forwarding).unwrap();
    b.set_port_up(p[1], false).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None);
    b.set_port_up(p[1], true).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None, "link down forgot B");
    send(&mut b, 0, p[1], &frame(mac(1), mac(2)));
    assert_eq!(target(&b, p[0], mac(1), mac(2)), Some(p[1]));

    // A station move: B now answers from port 2.
    send(&mut b, 1, p[2], &frame(mac(1), mac(2)));
    assert_eq!(target(&b, p[0], mac(1), mac(2)), Some(p[2]));
    assert_eq!(target(&b, p[1], mac(2), mac(1)), None);
}

#[test]
fn offloaded_frames_count_and_keep_the_source_alive() {
    let (mut b, p) = learned();
    b.set_ageing(Instant::from_secs(0), Duration::from_secs(10))
        .unwrap();
    let (rx0, tx1) = (
        b.port_counters(p[0]).unwrap().rx_packets,
        b.port_counters(p[1]).unwrap().tx_packets,
    );
    // Every 6 s the fast path reports A's frames: A never ages out, B (silent) does.
    for t in [6, 12, 18] {
        b.account_offloaded(
            Instant::from_secs(t),
            p[0],
            mac(1),
            plain(p[1]),
            100,
            150_000,
        );
        b.handle_timeout(Instant::from_secs(t));
    }
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[0]));
    assert_eq!(b.fdb_lookup(vid(1), mac(2)), None, "B aged out");
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None, "B unknown now");
    let c0 = b.port_counters(p[0]).unwrap();
    assert_eq!((c0.rx_packets - rx0, c0.rx_bytes >= 450_000), (300, true));
    assert_eq!(b.port_counters(p[1]).unwrap().tx_packets - tx1, 300);
    // Nothing carried: nothing changes.
    b.account_offloaded(Instant::from_secs(19), p[0], mac(1), plain(p[1]), 0, 0);
    assert_eq!(b.port_counters(p[0]).unwrap().rx_packets - rx0, 300);
}

#[test]
fn late_counts_never_undo_a_move_or_a_flush() {
    let (mut b, p) = learned();
    // A moves to port 2; then counts of A's old flow from port 0 arrive.
    send(&mut b, 1, p[2], &frame(mac(2), mac(1)));
    b.account_offloaded(Instant::from_secs(2), p[0], mac(1), plain(p[1]), 10, 1000);
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[2]), "the move stands");
    // A flush, then late counts: nothing comes back.
    b.fdb_flush(vbridge_core::FlushFilter::default());
    b.account_offloaded(Instant::from_secs(3), p[2], mac(1), plain(p[1]), 10, 1000);
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None, "the flush stands");
}

#[test]
fn a_lowered_frame_limit_keeps_flows_here() {
    let (mut b, p) = learned();
    b.set_max_frame_len(1518).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None);
}

#[test]
fn vlan_filtering_offloads_untagged_flows_within_one_vlan() {
    // Ports 0, 1: access VLAN 10; port 2: access VLAN 20; port 3: trunk of 10 and 20,
    // native 20.
    let (mut b, p) = bridge_with(4);
    for (i, v) in [(0, 10), (1, 10), (2, 20)] {
        b.set_port_vlan(p[i], VlanMode::Access(vid(v))).unwrap();
    }
    let trunk = VlanMode::Trunk {
        allowed: vbridge_core::VidSet::parse_list("10,20").unwrap(),
        native: Some(vid(20)),
    };
    b.set_port_vlan(p[3], trunk).unwrap();
    assert!(b.vlan_filtering());
    send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    send(&mut b, 0, p[1], &frame(mac(1), mac(2)));
    send(&mut b, 0, p[2], &frame(mac(4), mac(3)));
    send(&mut b, 0, p[3], &tagged(mac(1), mac(4), 10));
    send(&mut b, 0, p[3], &frame(mac(3), mac(5))); // untagged: native VLAN 20

    // Same VLAN, untagged in and out: offloaded, in VLAN 10.
    assert_eq!(
        b.offload_target(p[0], None, mac(1), mac(2)),
        Some(Offload {
            egress: p[1],
            vid: vid(10),
            tag: None,
        })
    );
    // Towards the trunk in VLAN 10 the switch pushes a tag, and so does the fast path.
    // Known only in VLAN 10, mac 4 is unknown to port 2's VLAN 20.
    assert_eq!(
        b.offload_target(p[0], None, mac(1), mac(4)),
        Some(Offload {
            egress: p[3],
            vid: vid(10),
            tag: Some(vid(10)),
        })
    );
    assert_eq!(target(&b, p[2], mac(3), mac(4)), None);
    // Untagged on the trunk is its native VLAN 20, which leaves port 2 untagged.
    assert_eq!(
        b.offload_target(p[3], None, mac(5), mac(3)),
        Some(Offload {
            egress: p[2],
            vid: vid(20),
            tag: None,
        })
    );
    // ... and back: VLAN 20 leaves the trunk untagged, so that is offloaded too.
    assert_eq!(target(&b, p[2], mac(3), mac(5)), Some(p[3]));

    // Port 1 moves to VLAN 20: B's entry in VLAN 10 goes with the port's membership, and
    // nothing from A is offloaded to it.
    b.set_port_vlan(p[1], VlanMode::Access(vid(20))).unwrap();
    assert_eq!(target(&b, p[0], mac(1), mac(2)), None);

    // A trunk without a native VLAN takes no untagged frames at all. (With learning off
    // on the trunk, what it learned does not matter: only the classification can say no.)
    let no_learning = PortFlags {
        learning: false,
        ..b.port_config(p[3]).unwrap().flags
    };
    b.set_port_flags(p[3], no_learning).unwrap();
    assert_eq!(target(&b, p[3], mac(5), mac(3)), Some(p[2]));
    b.set_port_vlan(
        p[3],
        VlanMode::Trunk {
            allowed: vbridge_core::VidSet::parse_list("10,20").unwrap(),
            native: None,
        },
    )
    .unwrap();
    assert_eq!(target(&b, p[3], mac(5), mac(3)), None);

    // Counts refresh the source in the flow's VLAN only.
    b.set_ageing(Instant::from_secs(0), Duration::from_secs(10))
        .unwrap();
    let in10 = Offload {
        egress: p[1],
        vid: vid(10),
        tag: None,
    };
    for t in [6, 12] {
        b.account_offloaded(Instant::from_secs(t), p[0], mac(1), in10, 1, 100);
        b.handle_timeout(Instant::from_secs(t));
    }
    assert_eq!(b.fdb_lookup(vid(10), mac(1)), Some(p[0]));
    assert_eq!(b.fdb_lookup(vid(20), mac(3)), None, "silent stations age");
}

/// Ports 0: access VLAN 10; 1: trunk of 10 and 20, native 20; 2: trunk of 10, 20 and 30;
/// 3: access VLAN 20. Station n learned on port n-1 (tagged 10 on the trunks), 5 on port
/// 3 (VLAN 20), 6 on port 1 in VLAN 20 (untagged, its native VLAN), 7 on port 2 in VLAN 20.
fn trunks() -> (Bridge, Vec<PortId>) {
    let (mut b, p) = bridge_with(4);
    let trunk = |list: &str, native: Option<u16>| VlanMode::Trunk {
        allowed: vbridge_core::VidSet::parse_list(list).unwrap(),
        native: native.map(vid),
    };
    b.set_port_vlan(p[0], VlanMode::Access(vid(10))).unwrap();
    b.set_port_vlan(p[1], trunk("10,20", Some(20))).unwrap();
    b.set_port_vlan(p[2], trunk("10,20,30", None)).unwrap();
    b.set_port_vlan(p[3], VlanMode::Access(vid(20))).unwrap();
    send(&mut b, 0, p[0], &frame(mac(9), mac(1)));
    send(&mut b, 0, p[1], &tagged(mac(9), mac(2), 10));
    send(&mut b, 0, p[2], &tagged(mac(9), mac(3), 10));
    send(&mut b, 0, p[3], &frame(mac(9), mac(5)));
    send(&mut b, 0, p[1], &frame(mac(9), mac(6)));
    send(&mut b, 0, p[2], &tagged(mac(9), mac(7), 20));
    (b, p)
}

fn flow(egress: PortId, v: u16, tag: Option<u16>) -> Option<Offload> {
    Some(Offload {
        egress,
        vid: vid(v),
        tag: tag.map(vid),
    })
}

#[test]
fn tagged_flows_are_offloaded_with_the_tag_the_switch_would_give() {
    let (b, p) = trunks();
    let t = |ingress: usize, tag: Option<u16>, src: u8, dst: u8| {
        b.offload_target(p[ingress], tag.map(vid), mac(src), mac(dst))
    };
    // Trunk -> access: the tag is popped.
    assert_eq!(t(1, Some(10), 2, 1), flow(p[0], 10, None));
    // Access -> trunk: pushed.
    assert_eq!(t(0, None, 1, 2), flow(p[1], 10, Some(10)));
    // Trunk -> trunk: kept.
    assert_eq!(t(1, Some(10), 2, 3), flow(p[2], 10, Some(10)));
    assert_eq!(t(2, Some(10), 3, 2), flow(p[1], 10, Some(10)));
    // VLAN 20 is native on trunk 1: tagged there from trunk 2, popped on the way out;
    // untagged from trunk 1, pushed towards trunk 2; popped towards access port 3.
    assert_eq!(t(2, Some(20), 7, 6), flow(p[1], 20, None));
    assert_eq!(t(1, None, 6, 7), flow(p[2], 20, Some(20)));
    assert_eq!(t(2, Some(20), 7, 5), flow(p[3], 20, None));
    // A tag of the native VLAN on trunk 1 is that VLAN too.
    assert_eq!(t(1, Some(20), 6, 5), flow(p[3], 20, None));
}

#[test]
fn tagged_frames_the_switch_would_drop_or_flood_stay_here() {
    let (mut b, p) = trunks();
    let t = |b: &Bridge, ingress: usize, tag: Option<u16>, src: u8, dst: u8| {
        b.offload_target(p[ingress], tag.map(vid), mac(src), mac(dst))
    };
    // A tag on an access port, a VLAN the trunk does not take (30 on trunk 1), untagged
    // on a trunk without a native VLAN, a VLAN whose FDB lacks the destination.
    assert_eq!(t(&b, 0, Some(10), 1, 2), None);
    assert_eq!(t(&b, 1, Some(30), 2, 3), None);
    assert_eq!(t(&b, 2, None, 3, 2), None);
    assert_eq!(t(&b, 1, Some(20), 6, 1), None);
    // The source learned in another VLAN: a frame of it would learn here.
    assert_eq!(t(&b, 1, Some(20), 2, 5), None);
    // The egress port stops carrying the VLAN: the flow goes back to the switch.
    assert_eq!(t(&b, 1, Some(10), 2, 3), flow(p[2], 10, Some(10)));
    b.set_port_vlan(
        p[2],
        VlanMode::Trunk {
            allowed: vbridge_core::VidSet::parse_list("20,30").unwrap(),
            native: None,
        },
    )
    .unwrap();
    assert_eq!(t(&b, 1, Some(10), 2, 3), None);
    // VLAN 10 becomes trunk 1's native VLAN: frames to it leave untagged now.
    b.set_port_vlan(
        p[1],
        VlanMode::Trunk {
            allowed: vbridge_core::VidSet::parse_list("10,20").unwrap(),
            native: Some(vid(10)),
        },
    )
    .unwrap();
    send(&mut b, 1, p[1], &frame(mac(9), mac(2)));
    assert_eq!(t(&b, 0, None, 1, 2), flow(p[1], 10, None));
}

#[test]
fn without_vlan_filtering_tags_pass_unchanged() {
    let (mut b, p) = bridge_with(2);
    send(&mut b, 0, p[0], &tagged(mac(2), mac(1), 42));
    send(&mut b, 0, p[1], &tagged(mac(1), mac(2), 42));
    assert!(!b.vlan_filtering());
    assert_eq!(
        b.offload_target(p[0], Some(vid(42)), mac(1), mac(2)),
        flow(p[1], 1, Some(42))
    );
    assert_eq!(
        b.offload_target(p[0], None, mac(1), mac(2)),
        flow(p[1], 1, None)
    );
}

/// What the switch itself does with a broadcast from `ingress` with `tag`: the ports
/// that get a copy and the tag each copy leaves with, read from the copy's frame.
fn flooded_here(b: &mut Bridge, ingress: PortId, tag: Option<u16>) -> Option<FloodOffload> {
    let f = match tag {
        Some(v) => tagged(MacAddr::BROADCAST, mac(40), v),
        None => frame(MacAddr::BROADCAST, mac(40)),
    };
    let d = send(b, 0, ingress, &f);
    if d.verdict != Verdict::Forward {
        return None;
    }
    let copies = d
        .egress
        .iter()
        .map(|e| {
            let leaves = match e.op {
                TagOp::Keep => tag.map(vid),
                TagOp::Push(t) => Some(vid(t.vid)),
                TagOp::Pop => None,
                TagOp::SetVid(v) => Some(v),
            };
            (e.port, leaves)
        })
        .collect();
    Some(FloodOffload {
        vid: d.vid.unwrap(),
        copies,
    })
}

#[test]
fn broadcasts_are_flooded_by_port_and_tag_as_the_switch_floods_them() {
    let (mut b, p) = trunks();
    let f = |b: &Bridge, i: usize, tag: Option<u16>| b.flood_target(p[i], tag.map(vid));
    // Access 10 -> both trunks, tagged 10.
    assert_eq!(
        f(&b, 0, None),
        Some(FloodOffload {
            vid: vid(10),
            copies: vec![(p[1], Some(vid(10))), (p[2], Some(vid(10)))],
        })
    );
    // Native VLAN 20 of trunk 1, untagged -> trunk 2 tagged, access 20 untagged.
    assert_eq!(
        f(&b, 1, None),
        Some(FloodOffload {
            vid: vid(20),
            copies: vec![(p[2], Some(vid(20))), (p[3], None)],
        })
    );
    // Dropped at the ingress: a tag on an access port, a VLAN the trunk lacks, untagged
    // on a trunk without a native VLAN.
    assert_eq!(f(&b, 0, Some(10)), None);
    assert_eq!(f(&b, 1, Some(30)), None);
    assert_eq!(f(&b, 2, None), None);
    // VLAN 30 has nobody else.
    assert_eq!(f(&b, 2, Some(30)), None);

    // Whatever the port, tag and configuration: exactly what the switch does with such a
    // frame.
    let all = |b: &mut Bridge| {
        for (i, &port) in p.iter().enumerate() {
            for tag in [None, Some(10), Some(20), Some(30)] {
                let want = flooded_here(b, port, tag);
                assert_eq!(f(b, i, tag), want, "port {i}, tag {tag:?}");
            }
        }
    };
    all(&mut b);
    let plain = b.port_config(p[2]).unwrap().flags;
    b.set_port_flags(
        p[2],
        PortFlags {
            bcast_flood: false,
            ..plain
        },
    )
    .unwrap();
    all(&mut b);
    b.set_port_flags(
        p[2],
        PortFlags {
            hairpin: true,
            ..plain
        },
    )
    .unwrap();
    all(&mut b);
    assert!(
        f(&b, 2, Some(10))
            .unwrap()
            .copies
            .contains(&(p[2], Some(vid(10))))
    );
    for i in [0, 1] {
        b.set_port_flags(
            p[i],
            PortFlags {
                isolated: true,
                ..plain
            },
        )
        .unwrap();
    }
    all(&mut b);
    b.set_port_stp_state(p[2], StpState::Blocking).unwrap();
    all(&mut b);
    b.set_port_stp_state(p[1], StpState::Learning).unwrap();
    all(&mut b);
    assert_eq!(f(&b, 1, Some(10)), None, "a port that does not forward");

    // Locked ports decide by source: never by port and tag alone.
    b.set_port_flags(
        p[0],
        PortFlags {
            locked: true,
            ..plain
        },
    )
    .unwrap();
    assert_eq!(f(&b, 0, None), None);
}

#[test]
fn a_flooded_frame_s_head_learns_and_counts_like_the_frame() {
    let (mut b, p) = trunks();
    let before: Vec<_> = p.iter().map(|&q| *b.port_counters(q).unwrap()).collect();
    let head = &tagged(MacAddr::BROADCAST, mac(30), 10)[..18];
    let mut d = Decision::new();
    b.process_head(Instant::from_secs(1), p[1], head, 1000, &mut d);
    assert_eq!(d.verdict, Verdict::Forward);
    assert_eq!(outs(&d), vec![p[0], p[2]]);
    assert_eq!(b.fdb_lookup(vid(10), mac(30)), Some(p[1]), "learned");
    let now: Vec<_> = p.iter().map(|&q| *b.port_counters(q).unwrap()).collect();
    assert_eq!(now[1].rx_packets - before[1].rx_packets, 1);
    assert_eq!(now[1].rx_bytes - before[1].rx_bytes, 1000);
    assert_eq!(now[1].rx_flooded - before[1].rx_flooded, 1);
    // Popped towards the access port, kept towards the trunk.
    assert_eq!(now[0].tx_bytes - before[0].tx_bytes, 996);
    assert_eq!(now[2].tx_bytes - before[2].tx_bytes, 1000);
    assert_eq!(now[3].tx_packets, before[3].tx_packets);
}

#[test]
fn frames_for_the_bridge_and_from_the_host_take_the_host_port() {
    let mut b = bridge();
    let host = b.add_port(vbridge_core::PortConfig::host()).unwrap();
    let p1 = b
        .add_port(vbridge_core::PortConfig::new(Some(mac(0x10))))
        .unwrap();
    let p2 = b
        .add_port(vbridge_core::PortConfig::new(Some(mac(0x20))))
        .unwrap();
    send(&mut b, 0, p2, &frame(MacAddr::BROADCAST, mac(1)));
    // The bridge's MAC and a port's own MAC: both delivered to the host port.
    assert_eq!(target(&b, p2, mac(1), b.mac()), Some(host));
    assert_eq!(target(&b, p2, mac(1), mac(0x20)), Some(host));
    assert_eq!(target(&b, p1, mac(1), b.mac()), None, "not learned on p1");
    // And the host's frames, from the bridge's own MAC (local, never learned).
    assert_eq!(target(&b, host, b.mac(), mac(1)), Some(p2));
    assert_eq!(
        target(&b, host, mac(0x20), mac(1)),
        Some(p2),
        "a port's MAC"
    );
    // The host port down: the switch drops, so nothing is offloaded.
    b.set_port_up(host, false).unwrap();
    assert_eq!(target(&b, p2, mac(1), b.mac()), None);
    b.set_port_up(host, true).unwrap();
    // Without a host port, such frames are dropped: nothing to offload.
    b.remove_port(host).unwrap();
    assert_eq!(target(&b, p2, mac(1), b.mac()), None);
}
