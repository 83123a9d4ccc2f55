//! Spanning tree in STP mode (802.1D behaviour) on the virtual network: loops become
//! trees, the expected root wins, ports pass through listening and learning, failures
//! reconverge within max age + 2 × forward delay, topology changes shorten ageing.

mod stp_sim;

use core::time::Duration;

use stp_sim::{Net, bridge_mac};
use vbridge_core::{
    BridgeId, Decision, Instant, MacAddr, StpEvent, StpMode, StpRole, StpState, Vid,
};

/// Max age + 2 × forward delay with the default timers, in ms.
const STP_BOUND: u64 = (20 + 2 * 15) * 1000;

#[test]
fn triangle_converges_to_one_tree() {
    let mut net = Net::ring(3, StpMode::Stp);
    // Before forward delay has passed twice, nothing forwards: no loop, no tree yet.
    net.run_for(1_000);
    assert_eq!(net.link_state(0, 0), StpState::Listening);
    // A port leaving the disabled state waits max age (fdWhile, 17.29) before learning,
    // then forward delay before forwarding.
    net.run_for(15_000);
    assert_eq!(net.link_state(0, 0), StpState::Listening);
    net.run_for(5_000);
    assert_eq!(net.link_state(0, 0), StpState::Learning);
    net.run_for(13_000);
    assert!(
        (0..3).all(|l| (0..2).all(|e| net.link_state(l, e) != StpState::Forwarding)),
        "forwarding before max age + forward delay"
    );
    let t = net.converge_within(500, STP_BOUND).expect("converges");
    assert!(t <= STP_BOUND - 34_000, "took {t} ms more");
    // Bridge 0 has the lowest MAC: it is root; exactly one port blocks the loop.
    for n in &net.nodes {
        let s = n.b.stp_status(net.t());
        assert_eq!(s.designated_root, BridgeId::new(0x8000, bridge_mac(0)));
    }
    assert_eq!(net.blocked_link_ends(), 1);
    // The blocked port is on the link between bridges 1 and 2, at bridge 2 (worse id).
    assert_eq!(net.link_state(1, 1), StpState::Blocking);
    let s2 = net.nodes[2].b.stp_status(net.t());
    let alt = s2
        .ports
        .iter()
        .find(|p| p.role == StpRole::Alternate)
        .unwrap();
    assert_eq!(alt.port, net.links[1].z.1);
    assert_eq!(s2.root_path_cost, 2000, "one 10 Gb/s hop");
    assert!(net.tree_ok());
    assert!(net.bpdus > 0);
}

#[test]
fn square_with_a_chosen_root() {
    let mut net = Net::ring(4, StpMode::Stp);
    // Priority beats MAC: bridge 2 becomes root.
    let t = net.t();
    net.nodes[2].b.set_stp_priority(t, 4096).unwrap();
    net.drain(2);
    net.converge_within(1_000, STP_BOUND + 10_000)
        .expect("converges");
    for n in &net.nodes {
        let s = n.b.stp_status(net.t());
        assert_eq!(s.designated_root, BridgeId::new(4096, bridge_mac(2)));
    }
    assert_eq!(net.nodes[2].b.stp_status(net.t()).root_port, None);
    assert_eq!(net.blocked_link_ends(), 1);
    // Opposite the root (bridge 0, two hops both ways) the tie goes to the lower
    // designated bridge: bridge 1 (via 1) wins over bridge 3.
    let s0 = net.nodes[0].b.stp_status(net.t());
    assert_eq!(s0.root_path_cost, 4000);
    assert_eq!(s0.root_port, Some(net.links[0].a.1));
    assert!(net.tree_ok());
}

#[test]
fn mac_breaks_priority_ties() {
    let mut net = Net::ring(3, StpMode::Stp);
    let t = net.t();
    for i in 0..3 {
        net.nodes[i].b.set_stp_priority(t, 8192).unwrap();
        net.drain(i);
    }
    net.converge_within(1_000, STP_BOUND).expect("converges");
    let s = net.nodes[1].b.stp_status(net.t());
    assert_eq!(s.designated_root, BridgeId::new(8192, bridge_mac(0)));
}

#[test]
fn root_failure_reconverges_within_max_age_plus_twice_forward_delay() {
    let mut net = Net::ring(4, StpMode::Stp);
    net.converge_within(1_000, STP_BOUND).expect("converges");
    let t0 = net.now;
    net.kill(0);
    let t = net.converge_within(1_000, STP_BOUND).expect("reconverges");
    assert!(t <= STP_BOUND, "{t} ms");
    assert!(net.now - t0 >= 2 * 15_000, "STP needs two forward delays");
    for i in 1..4 {
        let s = net.nodes[i].b.stp_status(net.t());
        assert_eq!(s.designated_root, BridgeId::new(0x8000, bridge_mac(1)));
    }
}

#[test]
fn link_failure_opens_the_blocked_port() {
    let mut net = Net::ring(3, StpMode::Stp);
    net.converge_within(1_000, STP_BOUND).expect("converges");
    assert_eq!(net.link_state(1, 1), StpState::Blocking);
    net.set_link(2, false); // 2 - 0: bridge 2 loses its root port
    let t = net.converge_within(1_000, STP_BOUND).expect("reconverges");
    assert!(t <= STP_BOUND);
    assert_eq!(net.link_state(1, 1), StpState::Forwarding);
    // The link comes back: the loop is closed again and cut again.
    net.set_link(2, true);
    net.converge_within(1_000, STP_BOUND).expect("reconverges");
    assert_eq!(net.blocked_link_ends(), 1);
}

/// A frame from `src` entering bridge `i` through its host port (so it is learned there).
fn learn_on_host(net: &mut Net, i: usize, src: MacAddr) {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&bridge_mac(9).0);
    f[6..12].copy_from_slice(&src.0);
    f[12] = 0x08;
    let host = net.nodes[i].host;
    let mut d = Decision::new();
    let now = net.t();
    net.nodes[i].b.process(now, host, &f, &mut d);
}

#[test]
fn topology_change_shortens_ageing_to_forward_delay() {
    let mut net = Net::ring(3, StpMode::Stp);
    net.converge_within(1_000, STP_BOUND).expect("converges");
    // Wait for the topology change of the start (max age + forward delay at the root,
    // then forward delay of fast ageing) to be over.
    net.run_for(60_000);
    assert!(!net.nodes[1].b.stp_status(net.t()).topology_change);
    // Bridge 1 learns a station behind bridge 2 (a frame from 2's host floods to 1).
    let station = MacAddr([2, 0xaa, 0, 0, 0, 1]);
    learn_on_host(&mut net, 2, station);
    let vid = Vid::DEFAULT;
    let mut d = Decision::new();
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&station.0);
    f[12] = 0x08;
    let host = net.nodes[2].host;
    let now = net.t();
    net.nodes[2].b.process(now, host, &f, &mut d);
    for e in d.egress.clone() {
        if let Some(l) = net
            .links
            .iter()
            .find(|l| l.z == (2, e.port) || l.a == (2, e.port))
        {
            let (i, p) = if l.a.0 == 2 { l.z } else { l.a };
            let now = net.t();
            net.nodes[i].b.process(now, p, &f, &mut Decision::new());
        }
    }
    assert!(net.nodes[0].b.fdb_lookup(vid, station).is_some());
    assert_eq!(
        net.nodes[0].b.stp_status(net.t()).ageing_time,
        Duration::from_secs(300)
    );
    // A second link between bridges 1 and 2: one of its ends starts forwarding after
    // 35 s, a topology change; TCN goes to the root, the root sets TC, all age fast.
    net.connect(2, 1);
    net.run_for(34_000);
    assert!(!net.nodes[0].b.stp_status(net.t()).topology_change);
    net.run_for(2_000);
    let tc_seen = net
        .events
        .iter()
        .any(|(_, _, e)| matches!(e, StpEvent::TopologyChange { .. }));
    assert!(tc_seen);
    let s0 = net.nodes[0].b.stp_status(net.t());
    assert!(s0.topology_change, "the root announces the change");
    assert_eq!(s0.ageing_time, Duration::from_secs(15));
    assert!(s0.topology_change_count >= 1);
    // Nobody refreshed the station: gone within forward delay (plus a sweep).
    net.run_for(16_000);
    assert_eq!(net.nodes[0].b.fdb_lookup(vid, station), None);
    // TCNs were sent and acknowledged.
    let tcn_out: u64 = (0..3)
        .flat_map(|i| net.nodes[i].b.stp_status(net.t()).ports)
        .map(|p| p.counters.tx_tcn)
        .sum();
    assert!(tcn_out >= 1);
    // When the change is over, normal ageing is back.
    net.run_for(60_000);
    let s0 = net.nodes[0].b.stp_status(net.t());
    assert!(!s0.topology_change);
    assert_eq!(s0.ageing_time, Duration::from_secs(300));
    assert!(s0.time_since_topology_change.unwrap() > Duration::from_secs(60));
    let _ = Instant::ZERO;
}

#[test]
fn stp_status_reports_like_showstp() {
    let mut net = Net::ring(3, StpMode::Stp);
    net.converge_within(1_000, STP_BOUND).expect("converges");
    let s = net.nodes[1].b.stp_status(net.t());
    assert_eq!(s.mode, StpMode::Stp);
    assert_eq!(s.bridge_id, BridgeId::new(0x8000, bridge_mac(1)));
    assert_eq!(s.max_age, Duration::from_secs(20));
    assert_eq!(s.bridge_forward_delay, Duration::from_secs(15));
    let root = s.root_port.unwrap();
    let rp = s.ports.iter().find(|p| p.port == root).unwrap();
    assert_eq!((rp.role, rp.state), (StpRole::Root, StpState::Forwarding));
    assert_eq!(rp.designated_bridge, BridgeId::new(0x8000, bridge_mac(0)));
    assert_eq!(rp.designated_cost, 0);
    assert_eq!(rp.port_id.0, 0x8000 | root.0);
    assert!(!rp.send_rstp);
    assert!(rp.counters.rx_config > 0);
    assert_eq!(rp.counters.rx_rst, 0);
    let dp = s
        .ports
        .iter()
        .find(|p| p.role == StpRole::Designated)
        .unwrap();
    assert!(dp.counters.tx_config > 0 && dp.counters.forward_transitions == 1);
    assert_eq!(dp.designated_bridge, s.bridge_id);
}
