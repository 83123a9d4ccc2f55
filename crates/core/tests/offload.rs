//! What may be handed to a fast path: only flows whose every further frame would be
//! decided the same way here, and what the fast path carried comes back into counters
//! and FDB ageing.

mod common;

use std::time::Duration;

use common::*;
use vbridge_core::{Instant, PortFlags, StpState, VlanMode};

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
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), Some(p[1]));
    assert_eq!(b.offload_target(p[1], mac(2), mac(1)), Some(p[0]));
}

#[test]
fn anything_that_needs_the_switch_is_not() {
    let (mut b, p) = learned();
    // Unknown destination (flooded), multicast, broadcast.
    assert_eq!(b.offload_target(p[0], mac(1), mac(9)), None);
    assert_eq!(
        b.offload_target(p[0], mac(1), vbridge_core::MacAddr::BROADCAST),
        None
    );
    // A source not learned on that port: the next frame would learn or move it.
    assert_eq!(b.offload_target(p[2], mac(1), mac(2)), None);
    assert_eq!(b.offload_target(p[0], mac(7), mac(2)), None);
    // Frames for the bridge itself go to the host port's path.
    assert_eq!(b.offload_target(p[0], mac(1), b.mac()), None);

    // Isolated on both sides.
    let plain = b.port_config(p[0]).unwrap().flags;
    let iso = PortFlags {
        isolated: true,
        ..plain
    };
    b.set_port_flags(p[0], iso).unwrap();
    b.set_port_flags(p[1], iso).unwrap();
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), None);
    b.set_port_flags(p[0], plain).unwrap();
    b.set_port_flags(p[1], plain).unwrap();
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), Some(p[1]));

    // Locked ingress, blocked or down egress.
    let locked = PortFlags {
        locked: true,
        ..plain
    };
    b.set_port_flags(p[0], locked).unwrap();
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), None);
    b.set_port_flags(p[0], plain).unwrap();
    send(&mut b, 0, p[0], &frame(mac(2), mac(1))); // locking forgot what p0 had learned
    b.set_port_stp_state(p[1], StpState::Blocking).unwrap();
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), None);
    b.set_port_stp_state(p[1], StpState::Forwarding).unwrap();
    b.set_port_up(p[1], false).unwrap();
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), None);
    b.set_port_up(p[1], true).unwrap();
    assert_eq!(
        b.offload_target(p[0], mac(1), mac(2)),
        None,
        "link down forgot B"
    );
    send(&mut b, 0, p[1], &frame(mac(1), mac(2)));
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), Some(p[1]));

    // A station move: B now answers from port 2.
    send(&mut b, 1, p[2], &frame(mac(1), mac(2)));
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), Some(p[2]));
    assert_eq!(b.offload_target(p[1], mac(2), mac(1)), None);

    // Any VLAN setting turns filtering (tags, VLAN membership) on: never offloaded.
    b.set_port_vlan(p[2], VlanMode::Access(vid(1))).unwrap();
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), None);
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
        b.account_offloaded(Instant::from_secs(t), p[0], p[1], mac(1), 100, 150_000);
        b.handle_timeout(Instant::from_secs(t));
    }
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[0]));
    assert_eq!(b.fdb_lookup(vid(1), mac(2)), None, "B aged out");
    assert_eq!(
        b.offload_target(p[0], mac(1), mac(2)),
        None,
        "B unknown now"
    );
    let c0 = b.port_counters(p[0]).unwrap();
    assert_eq!((c0.rx_packets - rx0, c0.rx_bytes >= 450_000), (300, true));
    assert_eq!(b.port_counters(p[1]).unwrap().tx_packets - tx1, 300);
    // Nothing carried: nothing changes.
    b.account_offloaded(Instant::from_secs(19), p[0], p[1], mac(1), 0, 0);
    assert_eq!(b.port_counters(p[0]).unwrap().rx_packets - rx0, 300);
}

#[test]
fn late_counts_never_undo_a_move_or_a_flush() {
    let (mut b, p) = learned();
    // A moves to port 2; then counts of A's old flow from port 0 arrive.
    send(&mut b, 1, p[2], &frame(mac(2), mac(1)));
    b.account_offloaded(Instant::from_secs(2), p[0], p[1], mac(1), 10, 1000);
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[2]), "the move stands");
    // A flush, then late counts: nothing comes back.
    b.fdb_flush(vbridge_core::FlushFilter::default());
    b.account_offloaded(Instant::from_secs(3), p[2], p[1], mac(1), 10, 1000);
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None, "the flush stands");
}

#[test]
fn a_lowered_frame_limit_keeps_flows_here() {
    let (mut b, p) = learned();
    b.set_max_frame_len(1518).unwrap();
    assert_eq!(b.offload_target(p[0], mac(1), mac(2)), None);
}
