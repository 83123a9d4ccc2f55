//! What may be handed to a fast path: only flows whose every further frame would be
//! decided the same way here, and what the fast path carried comes back into counters
//! and FDB ageing.

mod common;

use std::time::Duration;

use common::*;
use vbridge_core::{Bridge, Instant, MacAddr, Offload, PortFlags, PortId, StpState, VlanMode};

/// Where the core would let a fast path send untagged `src` -> `dst` from `ingress`.
fn target(b: &Bridge, ingress: PortId, src: MacAddr, dst: MacAddr) -> Option<PortId> {
    b.offload_target(ingress, src, dst).map(|o| o.egress)
}

/// The flow as offloaded on a bridge without VLAN filtering.
fn plain(egress: PortId) -> Offload {
    Offload {
        egress,
        vid: vid(1),
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
        b.offload_target(p[0], mac(1), mac(2)),
        Some(Offload {
            egress: p[1],
            vid: vid(10)
        })
    );
    // Towards the trunk in VLAN 10 the switch pushes a tag: not offloaded. Known only in
    // VLAN 10, mac 4 is unknown to port 2's VLAN 20.
    assert_eq!(target(&b, p[0], mac(1), mac(4)), None);
    assert_eq!(target(&b, p[2], mac(3), mac(4)), None);
    // Untagged on the trunk is its native VLAN 20, which leaves port 2 untagged.
    assert_eq!(
        b.offload_target(p[3], mac(5), mac(3)),
        Some(Offload {
            egress: p[2],
            vid: vid(20)
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
    };
    for t in [6, 12] {
        b.account_offloaded(Instant::from_secs(t), p[0], mac(1), in10, 1, 100);
        b.handle_timeout(Instant::from_secs(t));
    }
    assert_eq!(b.fdb_lookup(vid(10), mac(1)), Some(p[0]));
    assert_eq!(b.fdb_lookup(vid(20), mac(3)), None, "silent stations age");
}
