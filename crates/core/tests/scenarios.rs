//! Deterministic scenarios for every behaviour of the bridge core, on a virtual clock.
//! Each seed behaviour has a test named after it.

mod common;

use std::time::Duration;

use common::*;
use vbridge_core::{
    ConfigError, Delivery, DropReason, EntryKind, Event, FlushFilter, Instant, MacAddr, PortConfig,
    PortFlags, PortId, PortKind, StpState, TagOp, Verdict, VidSet, VlanMode,
};
use vbridge_wire::vlan::Tag;

#[test]
fn learning_then_known_unicast() {
    let (mut b, p) = bridge_with(3);
    // A (on p0) talks to unknown B: flooded to everyone else.
    let d = send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    assert_eq!(d.delivery, Some(Delivery::FloodUnknown));
    assert_eq!(outs(&d), vec![p[1], p[2]]);
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[0]));
    // B answers from p1: known unicast to p0 only; B is learned too.
    let d = send(&mut b, 1, p[1], &frame(mac(1), mac(2)));
    assert_eq!(d.delivery, Some(Delivery::KnownUnicast));
    assert_eq!(outs(&d), vec![p[0]]);
    // Now A to B is known as well.
    let d = send(&mut b, 2, p[0], &frame(mac(2), mac(1)));
    assert_eq!(outs(&d), vec![p[1]]);
    assert_eq!(b.port_learned(p[0]).unwrap(), 1);
    assert_eq!(b.stats().fdb_learned, 2);
}

#[test]
fn flooding_to_all_but_ingress() {
    let (mut b, p) = bridge_with(5);
    for (i, ing) in p.iter().enumerate() {
        let d = send(
            &mut b,
            0,
            *ing,
            &frame(MacAddr::BROADCAST, mac(i as u8 + 1)),
        );
        assert_eq!(d.delivery, Some(Delivery::FloodBroadcast));
        let expect: Vec<PortId> = p.iter().copied().filter(|x| x != ing).collect();
        assert_eq!(outs(&d), expect);
    }
    let mcast = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
    let d = send(&mut b, 0, p[0], &frame(mcast, mac(1)));
    assert_eq!(d.delivery, Some(Delivery::FloodMulticast));
    assert_eq!(d.egress.len(), 4);
    assert_eq!(b.port_counters(p[0]).unwrap().rx_flooded, 2);
    assert_eq!(b.port_counters(p[1]).unwrap().tx_flooded, 5);
}

#[test]
fn flood_flags_select_ports() {
    let (mut b, p) = bridge_with(4);
    let only = |f: fn(&mut PortFlags)| {
        let mut fl = PortFlags::default();
        f(&mut fl);
        fl
    };
    b.set_port_flags(p[1], only(|f| f.flood = false)).unwrap();
    b.set_port_flags(p[2], only(|f| f.mcast_flood = false))
        .unwrap();
    b.set_port_flags(p[3], only(|f| f.bcast_flood = false))
        .unwrap();
    assert_eq!(
        outs(&send(&mut b, 0, p[0], &frame(mac(9), mac(1)))),
        vec![p[2], p[3]]
    );
    let mcast = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    assert_eq!(
        outs(&send(&mut b, 0, p[0], &frame(mcast, mac(1)))),
        vec![p[1], p[3]]
    );
    let bc = MacAddr::BROADCAST;
    assert_eq!(
        outs(&send(&mut b, 0, p[0], &frame(bc, mac(1)))),
        vec![p[1], p[2]]
    );
}

#[test]
fn ageing_expiry_on_virtual_clock() {
    let (mut b, p) = bridge_with(2);
    b.set_ageing(Instant::ZERO, Duration::from_secs(10))
        .unwrap();
    send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    send(&mut b, 4, p[1], &frame(mac(1), mac(2)));
    assert_eq!(b.poll_at(), Some(Instant::from_secs(10)));
    b.handle_timeout(Instant::from_secs(9));
    assert_eq!(b.stats().fdb_learned, 2, "nothing is due before 10 s");
    b.handle_timeout(Instant::from_secs(10));
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None, "A was idle for 10 s");
    assert_eq!(b.fdb_lookup(vid(1), mac(2)), Some(p[1]), "B only for 6 s");
    assert_eq!(b.poll_event(), Some(Event::Aged { count: 1 }));
    assert_eq!(b.poll_at(), Some(Instant::from_secs(14)));
    // Refreshing keeps an entry: B talks at 13, so at 14 it stays.
    send(&mut b, 13, p[1], &frame(mac(1), mac(2)));
    b.handle_timeout(Instant::from_secs(14));
    assert_eq!(b.fdb_lookup(vid(1), mac(2)), Some(p[1]));
    b.handle_timeout(Instant::from_secs(23));
    assert_eq!(b.fdb_lookup(vid(1), mac(2)), None);
    assert_eq!(b.stats().fdb_aged_out, 2);
    assert_eq!(b.poll_at(), None, "an empty table needs no timer");
}

#[test]
fn ageing_zero_never_learns_and_static_never_ages() {
    let (mut b, p) = bridge_with(2);
    b.fdb_add_static(vid(1), mac(7), p[1]).unwrap();
    b.set_ageing(Instant::ZERO, Duration::ZERO).unwrap();
    send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None);
    b.handle_timeout(Instant::from_secs(100_000));
    assert_eq!(b.fdb_lookup(vid(1), mac(7)), Some(p[1]));
    // A static entry's address arriving elsewhere does not move it.
    b.set_ageing(Instant::ZERO, Duration::from_secs(300))
        .unwrap();
    send(&mut b, 1, p[0], &frame(mac(2), mac(7)));
    assert_eq!(b.fdb_lookup(vid(1), mac(7)), Some(p[1]));
}

#[test]
fn station_move() {
    let (mut b, p) = bridge_with(3);
    send(&mut b, 0, p[0], &frame(mac(9), mac(1)));
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[0]));
    let d = send(&mut b, 1, p[2], &frame(mac(9), mac(1)));
    assert_eq!(d.moved_from, Some(p[0]));
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[2]));
    assert_eq!(b.port_learned(p[0]).unwrap(), 0);
    assert_eq!(b.port_learned(p[2]).unwrap(), 1);
    assert_eq!(b.stats().fdb_moves, 1);
    assert_eq!(
        outs(&send(&mut b, 2, p[1], &frame(mac(1), mac(5)))),
        vec![p[2]]
    );
}

#[test]
fn vlan_isolation_access_ports() {
    // Seed 003 experiment 4: VM1 in VLAN 10, VM2 and VM3 in VLAN 20, one subnet.
    let (mut b, p) = bridge_with(3);
    b.set_port_vlan(p[0], VlanMode::Access(vid(10))).unwrap();
    b.set_port_vlan(p[1], VlanMode::Access(vid(20))).unwrap();
    b.set_port_vlan(p[2], VlanMode::Access(vid(20))).unwrap();
    // VM1's ARP broadcast stays in VLAN 10: nobody else is there.
    let d = send(&mut b, 0, p[0], &frame(MacAddr::BROADCAST, mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::NoFloodTarget));
    // VM2's broadcast reaches VM3 only, untagged.
    let d = send(&mut b, 0, p[1], &frame(MacAddr::BROADCAST, mac(2)));
    assert_eq!(outs(&d), vec![p[2]]);
    assert_eq!(d.egress[0].op, TagOp::Keep);
    assert_eq!(d.vid, Some(vid(20)));
    // VM3 answers VM2: known in VLAN 20.
    let d = send(&mut b, 1, p[2], &frame(mac(2), mac(3)));
    assert_eq!(outs(&d), vec![p[1]]);
    // VM1 learned in VLAN 10 is unknown in VLAN 20: a frame to it floods within VLAN 20.
    let d = send(&mut b, 2, p[2], &frame(mac(1), mac(3)));
    assert_eq!(d.delivery, Some(Delivery::FloodUnknown));
    assert_eq!(outs(&d), vec![p[1]]);
    // Tagged frames on access ports are dropped: no hopping, not even double tagged.
    let d = send(&mut b, 3, p[0], &tagged(mac(2), mac(1), 20));
    assert_eq!(d.drop_reason(), Some(DropReason::TaggedOnAccess));
    let mut double = tagged(mac(2), mac(1), 10);
    double.splice(16..16, Tag::from_tci(0x8100, 20).to_bytes());
    let d = send(&mut b, 3, p[0], &double);
    assert_eq!(d.drop_reason(), Some(DropReason::TaggedOnAccess));
    let d = send(&mut b, 3, p[0], &tagged_tpid(mac(2), mac(1), 0x88a8, 20));
    assert_eq!(d.drop_reason(), Some(DropReason::BadTag));
    assert_eq!(
        b.port_counters(p[0])
            .unwrap()
            .drops
            .get(DropReason::TaggedOnAccess),
        2
    );
}

#[test]
fn trunk_push_pop_and_filtering() {
    // Seed 003 experiment 5: access ports in VLAN 10 and 20, one trunk carrying both.
    let (mut b, p) = bridge_with(3);
    b.set_port_vlan(p[0], VlanMode::Access(vid(10))).unwrap();
    b.set_port_vlan(p[1], VlanMode::Access(vid(20))).unwrap();
    let allowed = VidSet::parse_list("10,20").unwrap();
    b.set_port_vlan(
        p[2],
        VlanMode::Trunk {
            allowed,
            native: None,
        },
    )
    .unwrap();
    let d = send(&mut b, 0, p[0], &frame(MacAddr::BROADCAST, mac(1)));
    assert_eq!(d.egress.len(), 1);
    assert_eq!(d.egress[0].port, p[2]);
    assert_eq!(d.egress[0].op, TagOp::Push(Tag::dot1q(vid(10))));
    // Tagged 20 from the trunk reaches the VLAN 20 access port, popped.
    let d = send(&mut b, 0, p[2], &tagged(MacAddr::BROADCAST, mac(5), 20));
    assert_eq!(outs(&d), vec![p[1]]);
    assert_eq!(d.egress[0].op, TagOp::Pop);
    // Tagged 10 to the learned VM1: known unicast, popped.
    let d = send(&mut b, 1, p[2], &tagged(mac(1), mac(5), 10));
    assert_eq!((outs(&d), d.egress[0].op), (vec![p[0]], TagOp::Pop));
    // A VID the trunk does not allow, and untagged without a native VLAN, are dropped.
    let d = send(&mut b, 1, p[2], &tagged(mac(1), mac(5), 30));
    assert_eq!(d.drop_reason(), Some(DropReason::VlanNotAllowed));
    let d = send(&mut b, 1, p[2], &frame(mac(1), mac(5)));
    assert_eq!(d.drop_reason(), Some(DropReason::UntaggedOnTrunk));
    // The byte counters see the tag: 60 in, 64 out on the trunk.
    assert_eq!(b.port_counters(p[2]).unwrap().tx_bytes, 64);
}

#[test]
fn trunk_native_vlan_and_trunk_to_trunk() {
    let (mut b, p) = bridge_with(3);
    let all = VidSet::parse_list("1-100").unwrap();
    let t = |native| VlanMode::Trunk {
        allowed: all.clone(),
        native,
    };
    b.set_port_vlan(p[0], t(Some(vid(1)))).unwrap();
    b.set_port_vlan(p[1], t(None)).unwrap();
    b.set_port_vlan(p[2], VlanMode::Access(vid(1))).unwrap();
    let d = send(&mut b, 0, p[0], &frame(MacAddr::BROADCAST, mac(1)));
    let ops: Vec<_> = d.egress.iter().map(|e| (e.port, e.op)).collect();
    assert_eq!(
        ops,
        vec![(p[1], TagOp::Push(Tag::dot1q(vid(1)))), (p[2], TagOp::Keep)]
    );
    let d = send(&mut b, 0, p[1], &tagged(MacAddr::BROADCAST, mac(2), 1));
    let ops: Vec<_> = d.egress.iter().map(|e| (e.port, e.op)).collect();
    assert_eq!(ops, vec![(p[0], TagOp::Pop), (p[2], TagOp::Pop)]);
    let d = send(&mut b, 0, p[1], &tagged(MacAddr::BROADCAST, mac(2), 50));
    assert_eq!((outs(&d), d.egress[0].op), (vec![p[0]], TagOp::Keep));
    // A priority-tagged frame on the native trunk leaves tagged with the native VID.
    let d = send(&mut b, 0, p[0], &tagged(MacAddr::BROADCAST, mac(1), 0));
    let ops: Vec<_> = d.egress.iter().map(|e| (e.port, e.op)).collect();
    assert_eq!(ops, vec![(p[1], TagOp::SetVid(vid(1))), (p[2], TagOp::Pop)]);
}

#[test]
fn no_vlan_config_is_vlan_1_and_transparent() {
    let (mut b, p) = bridge_with(2);
    assert!(!b.vlan_filtering());
    let d = send(&mut b, 0, p[0], &tagged(MacAddr::BROADCAST, mac(1), 42));
    assert_eq!((outs(&d), d.egress[0].op), (vec![p[1]], TagOp::Keep));
    assert_eq!(d.vid, Some(vid(1)));
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), Some(p[0]));
}

#[test]
fn hairpin() {
    let (mut b, p) = bridge_with(2);
    send(&mut b, 0, p[0], &frame(mac(9), mac(1)));
    send(&mut b, 0, p[0], &frame(mac(9), mac(2)));
    // Both behind p0: without hairpin, a frame between them is not sent back.
    let d = send(&mut b, 1, p[0], &frame(mac(2), mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::SameSegment));
    let flags = PortFlags {
        hairpin: true,
        ..PortFlags::default()
    };
    b.set_port_flags(p[0], flags).unwrap();
    send(&mut b, 1, p[0], &frame(mac(9), mac(2)));
    let d = send(&mut b, 2, p[0], &frame(mac(2), mac(1)));
    assert_eq!(outs(&d), vec![p[0]]);
    // Floods reflect too, as on Linux (reflective relay).
    let d = send(&mut b, 2, p[0], &frame(MacAddr::BROADCAST, mac(1)));
    assert_eq!(outs(&d), vec![p[0], p[1]]);
}

#[test]
fn isolation() {
    let (mut b, p) = bridge_with(3);
    let iso = PortFlags {
        isolated: true,
        ..PortFlags::default()
    };
    b.set_port_flags(p[0], iso).unwrap();
    b.set_port_flags(p[1], iso).unwrap();
    // Isolated ports only reach the non-isolated uplink p2.
    let d = send(&mut b, 0, p[0], &frame(MacAddr::BROADCAST, mac(1)));
    assert_eq!(outs(&d), vec![p[2]]);
    send(&mut b, 0, p[1], &frame(MacAddr::BROADCAST, mac(2)));
    let d = send(&mut b, 1, p[0], &frame(mac(2), mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::Isolated));
    let d = send(&mut b, 1, p[2], &frame(MacAddr::BROADCAST, mac(3)));
    assert_eq!(outs(&d), vec![p[0], p[1]]);
}

#[test]
fn locked_port_only_static_sources() {
    let (mut b, p) = bridge_with(2);
    let locked = PortFlags {
        locked: true,
        ..PortFlags::default()
    };
    b.set_port_flags(p[0], locked).unwrap();
    let d = send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::LockedSource));
    b.fdb_add_static(vid(1), mac(1), p[0]).unwrap();
    let d = send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    assert_eq!(d.verdict, Verdict::Forward);
    // Static on another port does not unlock this one.
    b.fdb_add_static(vid(1), mac(3), p[1]).unwrap();
    let d = send(&mut b, 0, p[0], &frame(mac(2), mac(3)));
    assert_eq!(d.drop_reason(), Some(DropReason::LockedSource));
    assert_eq!(b.stats().fdb_learned, 0, "locked ports learn nothing");
}

#[test]
fn learning_flag_off() {
    let (mut b, p) = bridge_with(2);
    let fl = PortFlags {
        learning: false,
        ..PortFlags::default()
    };
    b.set_port_flags(p[0], fl).unwrap();
    send(&mut b, 0, p[0], &frame(mac(2), mac(1)));
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None);
}

#[test]
fn fdb_limits_bound_learning() {
    let (mut b, p) = bridge_with(3);
    b.set_max_learned(10);
    b.set_port_max_learned(p[0], 4).unwrap();
    for i in 0..50u8 {
        send(&mut b, 0, p[0], &frame(MacAddr::BROADCAST, mac(i + 1)));
        send(&mut b, 0, p[1], &frame(MacAddr::BROADCAST, mac(i + 101)));
    }
    assert_eq!(b.port_learned(p[0]).unwrap(), 4);
    assert_eq!(b.port_learned(p[1]).unwrap(), 6);
    assert_eq!(b.stats().fdb_learned, 10);
    assert!(b.stats().fdb_limit_hits >= 90);
    // Unlearned sources still get their frames through (flooded back to them).
    let d = send(&mut b, 1, p[2], &frame(mac(30), mac(200)));
    assert_eq!(d.delivery, Some(Delivery::FloodUnknown));
}

#[test]
fn a_station_moving_onto_a_full_port_is_forgotten_and_reported() {
    let (mut b, p) = bridge_with(3);
    b.set_port_max_learned(p[1], 1).unwrap();
    send(&mut b, 0, p[0], &frame(MacAddr::BROADCAST, mac(1)));
    send(&mut b, 0, p[1], &frame(MacAddr::BROADCAST, mac(2))); // fills port 1
    // mac 1 shows up on port 1: it cannot be learned there, and it is no longer on 0.
    let d = send(&mut b, 1, p[1], &frame(mac(9), mac(1)));
    assert_eq!(
        d.moved_from,
        Some(p[0]),
        "drivers must hear that it left port 0"
    );
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None);
    let d = send(&mut b, 2, p[2], &frame(mac(1), mac(3)));
    assert_eq!(d.delivery, Some(Delivery::FloodUnknown));
}

#[test]
fn multicast_and_zero_sources_never_learned() {
    let (mut b, p) = bridge_with(2);
    let d = send(
        &mut b,
        0,
        p[0],
        &frame(mac(2), MacAddr([0x01, 0, 0x5e, 0, 0, 1])),
    );
    assert_eq!(d.drop_reason(), Some(DropReason::InvalidSource));
    let d = send(&mut b, 0, p[0], &frame(mac(2), MacAddr::ZERO));
    assert_eq!(d.drop_reason(), Some(DropReason::InvalidSource));
    assert_eq!(b.stats().fdb_learned, 0);
}

#[test]
fn reserved_group_addresses() {
    let (mut b, p) = bridge_with(3);
    let group = |n: u8| MacAddr([0x01, 0x80, 0xc2, 0, 0, n]);
    // LLDP (0e) and others go to the control plane, never forwarded.
    for n in [2u8, 3, 0x0e, 0x0f] {
        let d = send(&mut b, 0, p[0], &frame(group(n), mac(1)));
        assert_eq!(d.verdict, Verdict::Control, "{n}");
    }
    let d = send(&mut b, 0, p[0], &frame(group(1), mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::ReservedGroup));
    // With STP off, BPDUs are flooded (like Linux), with STP on they are control frames
    // (and what is not a BPDU is refused).
    let d = send(&mut b, 0, p[0], &frame(group(0), mac(1)));
    assert_eq!(outs(&d), vec![p[1], p[2]]);
    b.set_stp_enabled(true);
    let d = send(&mut b, 0, p[0], &frame(group(0), mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::BadBpdu));
    let mut tcn = [0u8; 60];
    vbridge_wire::bpdu::emit_frame(&vbridge_wire::bpdu::Repr::Tcn, mac(1), &mut tcn).unwrap();
    let d = send(&mut b, 0, p[0], &tcn);
    assert_eq!(d.verdict, Verdict::Control);
    // (STP running keeps the ports discarding for a while: off again for what follows.)
    b.set_stp_enabled(false);
    // group_fwd_mask lets LLDP through, but never STP/pause/LACP.
    b.set_group_fwd_mask(1 << 0x0e).unwrap();
    let d = send(&mut b, 0, p[0], &frame(group(0x0e), mac(1)));
    assert_eq!(outs(&d), vec![p[1], p[2]]);
    assert_eq!(
        b.set_group_fwd_mask(0x0004),
        Err(ConfigError::RestrictedGroupFwd(4))
    );
    assert_eq!(b.port_counters(p[0]).unwrap().rx_control, 5);
}

#[test]
fn frames_to_the_bridge_go_to_the_host_port() {
    let mut b = bridge();
    let host = b.add_port(PortConfig::host()).unwrap();
    let p1 = b.add_port(PortConfig::new(Some(mac(0x10)))).unwrap();
    let p2 = b.add_port(PortConfig::new(Some(mac(0x20)))).unwrap();
    let bmac = b.mac();
    assert_eq!(bmac, mac(0x10));
    let d = send(&mut b, 0, p2, &frame(bmac, mac(1)));
    assert_eq!((d.delivery, outs(&d)), (Some(Delivery::Local), vec![host]));
    // A port's own MAC is local too (as in Linux).
    let d = send(&mut b, 0, p1, &frame(mac(0x20), mac(2)));
    assert_eq!(outs(&d), vec![host]);
    // The host port is flooded to like any port, and its frames are switched.
    let d = send(&mut b, 0, p1, &frame(MacAddr::BROADCAST, mac(2)));
    assert_eq!(outs(&d), vec![host, p2]);
    let d = send(&mut b, 0, host, &frame(mac(2), bmac));
    assert_eq!(outs(&d), vec![p1]);
    // Without a host port, frames for the bridge are dropped with a reason.
    b.remove_port(host).unwrap();
    let d = send(&mut b, 1, p2, &frame(bmac, mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::NoHostPort));
}

#[test]
fn mac_rule_seed_003_step_by_step() {
    // The bridge takes the lowest port MAC; it follows ports coming, going and changing;
    // once set by hand it stays.
    let mut b = bridge();
    let initial = b.mac();
    assert_eq!(initial, MacAddr([0x0a, 0, 0, 0, 0, 0xff]));
    let host = b.add_port(PortConfig::host()).unwrap();
    assert_eq!(b.mac(), initial, "the host port never sets the bridge MAC");
    let high = MacAddr([0x0c, 0x29, 0, 0, 0, 0x50]);
    let low = MacAddr([0x00, 0x0c, 0x29, 0x27, 0xd5, 0x3b]);
    let p1 = b.add_port(PortConfig::new(Some(high))).unwrap();
    assert_eq!(b.mac(), high, "step 1: one port, its MAC");
    let p2 = b.add_port(PortConfig::new(Some(low))).unwrap();
    assert_eq!(b.mac(), low, "step 2: a lower MAC arrives");
    let lower = MacAddr([0x00, 0x0c, 0x29, 0x00, 0x00, 0x01]);
    b.set_port_mac(p1, Some(lower)).unwrap();
    assert_eq!(b.mac(), lower, "step 3: a port changes to a lower MAC");
    b.remove_port(p1).unwrap();
    assert_eq!(b.mac(), low, "step 4: the lowest port leaves");
    let by_hand = MacAddr([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
    b.set_mac(Some(by_hand)).unwrap();
    assert_eq!(b.mac(), by_hand, "step 5: set by hand");
    b.add_port(PortConfig::new(Some(MacAddr([0, 0, 0, 0, 0, 1]))))
        .unwrap();
    b.remove_port(p2).unwrap();
    assert_eq!(b.mac(), by_hand, "step 6: ports come and go, the MAC stays");
    b.set_mac(None).unwrap();
    assert_eq!(
        b.mac(),
        MacAddr([0, 0, 0, 0, 0, 1]),
        "step 7: back to the rule"
    );
    let mut changes = Vec::new();
    while let Some(e) = b.poll_event() {
        if let Event::MacChanged { new, .. } = e {
            changes.push(new);
        }
    }
    assert_eq!(changes.len(), 6);
    assert!(b.set_mac(Some(MacAddr::BROADCAST)).is_err());
    let _ = host;
}

#[test]
fn static_local_and_flush() {
    let (mut b, p) = bridge_with(3);
    b.fdb_add_static(vid(1), mac(50), p[2]).unwrap();
    send(&mut b, 0, p[0], &frame(mac(9), mac(1)));
    send(&mut b, 0, p[1], &frame(mac(9), mac(2)));
    let kinds: Vec<EntryKind> = b
        .fdb_entries(Instant::from_secs(5))
        .filter(|e| e.mac == mac(50) || e.mac == mac(1))
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.len(), 2);
    assert!(kinds.contains(&EntryKind::Static) && kinds.contains(&EntryKind::Dynamic));
    let age = b
        .fdb_entries(Instant::from_secs(5))
        .find(|e| e.mac == mac(1))
        .map(|e| e.age);
    assert_eq!(age, Some(Duration::from_secs(5)));
    let port_only = FlushFilter {
        port: Some(p[0]),
        ..FlushFilter::default()
    };
    assert_eq!(b.fdb_flush(port_only), 1);
    assert_eq!(
        b.fdb_flush(FlushFilter::default()),
        1,
        "static survives a plain flush"
    );
    assert_eq!(b.fdb_lookup(vid(1), mac(50)), Some(p[2]));
    let all = FlushFilter {
        include_static: true,
        ..FlushFilter::default()
    };
    assert_eq!(b.fdb_flush(all), 1);
    assert_eq!(
        b.fdb_remove(vid(1), mac(50)),
        Err(ConfigError::NoSuchEntry {
            mac: mac(50),
            vid: 1
        })
    );
    b.fdb_add_static(vid(1), mac(50), p[2]).unwrap();
    b.fdb_remove(vid(1), mac(50)).unwrap();
}

#[test]
fn flush_by_vlan() {
    let (mut b, p) = bridge_with(2);
    let allowed = VidSet::parse_list("10,20").unwrap();
    for port in &p {
        let mode = VlanMode::Trunk {
            allowed: allowed.clone(),
            native: None,
        };
        b.set_port_vlan(*port, mode).unwrap();
    }
    send(&mut b, 0, p[0], &tagged(MacAddr::BROADCAST, mac(1), 10));
    send(&mut b, 0, p[0], &tagged(MacAddr::BROADCAST, mac(1), 20));
    assert_eq!(b.stats().fdb_learned, 2);
    let vlan10 = FlushFilter {
        vid: Some(vid(10)),
        ..FlushFilter::default()
    };
    assert_eq!(b.fdb_flush(vlan10), 1);
    assert_eq!(b.fdb_lookup(vid(20), mac(1)), Some(p[0]));
}

#[test]
fn port_down_and_stp_states() {
    let (mut b, p) = bridge_with(3);
    send(&mut b, 0, p[0], &frame(mac(9), mac(1)));
    b.set_port_up(p[0], false).unwrap();
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None, "down forgets");
    let d = send(&mut b, 0, p[0], &frame(mac(9), mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::PortDown));
    let d = send(&mut b, 0, p[1], &frame(MacAddr::BROADCAST, mac(2)));
    assert_eq!(outs(&d), vec![p[2]], "no copy to a down port");
    b.set_port_stp_state(p[2], StpState::Learning).unwrap();
    let d = send(&mut b, 0, p[2], &frame(mac(2), mac(3)));
    assert_eq!(d.drop_reason(), Some(DropReason::PortBlocked));
    assert_eq!(
        b.fdb_lookup(vid(1), mac(3)),
        Some(p[2]),
        "learning state learns"
    );
    b.set_port_stp_state(p[2], StpState::Blocking).unwrap();
    let d = send(&mut b, 0, p[2], &frame(mac(2), mac(4)));
    assert_eq!(d.drop_reason(), Some(DropReason::PortBlocked));
    assert_eq!(
        b.fdb_lookup(vid(1), mac(4)),
        None,
        "blocking neither learns nor forwards"
    );
}

#[test]
fn malformed_frames_are_counted_not_fatal() {
    let (mut b, p) = bridge_with(2);
    b.set_port_vlan(p[0], VlanMode::Access(vid(10))).unwrap();
    let d = send(&mut b, 0, p[0], &[0u8; 13]);
    assert_eq!(d.drop_reason(), Some(DropReason::Truncated));
    let cut = &tagged(MacAddr::BROADCAST, mac(1), 10)[..16];
    assert_eq!(
        send(&mut b, 0, p[0], cut).drop_reason(),
        Some(DropReason::Truncated)
    );
    let huge = vec![0u8; 70_000];
    assert_eq!(
        send(&mut b, 0, p[0], &huge).drop_reason(),
        Some(DropReason::Oversized)
    );
    let d = send(&mut b, 0, PortId(77), &frame(mac(2), mac(1)));
    assert_eq!(d.drop_reason(), Some(DropReason::UnknownPort));
    let s = b.stats();
    assert_eq!(s.drops.get(DropReason::Truncated), 2);
    assert_eq!(s.drops.get(DropReason::UnknownPort), 1);
    assert_eq!(s.drops.total(), 4);
}

#[test]
fn invalid_configuration_is_a_typed_error() {
    let (mut b, p) = bridge_with(1);
    assert_eq!(
        b.set_port_up(PortId(9), true),
        Err(ConfigError::UnknownPort(PortId(9)))
    );
    assert_eq!(
        b.add_port_with_id(p[0], PortConfig::new(None)),
        Err(ConfigError::DuplicatePort(p[0]))
    );
    assert!(
        b.add_port_with_id(PortId(0), PortConfig::new(None))
            .is_err()
    );
    assert!(
        b.add_port_with_id(PortId(5000), PortConfig::new(None))
            .is_err()
    );
    assert_eq!(VidSet::parse_list("0"), Err(ConfigError::InvalidVid(0)));
    assert_eq!(
        VidSet::parse_list("4095"),
        Err(ConfigError::InvalidVid(4095))
    );
    assert!(vbridge_core::Vid::new(0).is_err());
    assert_eq!(
        b.fdb_add_static(vid(1), MacAddr::BROADCAST, p[0]),
        Err(ConfigError::NotUnicast(MacAddr::BROADCAST))
    );
    assert_eq!(
        b.fdb_add_static(vid(1), mac(1), PortId(3)),
        Err(ConfigError::UnknownPort(PortId(3)))
    );
    assert!(
        b.set_ageing(Instant::ZERO, Duration::from_secs(10_000_000))
            .is_err()
    );
    assert!(b.set_max_frame_len(10).is_err());
    let mut host2 = bridge();
    host2.add_port(PortConfig::host()).unwrap();
    assert!(
        host2.add_port(PortConfig::host()).is_err(),
        "one host port per bridge"
    );
    assert_eq!(b.port_config(p[0]).unwrap().kind, PortKind::Normal);
}

#[test]
fn port_removal_forgets_its_entries() {
    let (mut b, p) = bridge_with(2);
    send(&mut b, 0, p[0], &frame(mac(9), mac(1)));
    b.fdb_add_static(vid(1), mac(8), p[0]).unwrap();
    b.remove_port(p[0]).unwrap();
    assert_eq!(b.fdb_lookup(vid(1), mac(1)), None);
    assert_eq!(b.fdb_lookup(vid(1), mac(8)), None);
    assert_eq!(b.stats().fdb_learned, 0);
    let again = b.add_port(PortConfig::new(None)).unwrap();
    assert_eq!(again, p[0], "the lowest free number is reused");
}

#[test]
fn decision_explains_itself() {
    let (mut b, p) = bridge_with(3);
    b.set_port_vlan(p[0], VlanMode::Access(vid(10))).unwrap();
    let allowed = VidSet::parse_list("10").unwrap();
    b.set_port_vlan(
        p[1],
        VlanMode::Trunk {
            allowed,
            native: None,
        },
    )
    .unwrap();
    let d = send(&mut b, 0, p[0], &frame(MacAddr::BROADCAST, mac(1)));
    assert_eq!(d.to_string(), "vlan 10 flood-broadcast -> #2 (push 10)");
    let d = send(&mut b, 0, p[0], &tagged(MacAddr::BROADCAST, mac(1), 10));
    assert_eq!(d.to_string(), "drop: tagged_on_access");
}
