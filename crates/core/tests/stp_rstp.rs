//! RSTP on the virtual network: sub-second convergence on point-to-point links through
//! proposal / agreement, failures, fast flushing on topology change, edge ports, mixed
//! STP / RSTP rings, BPDU guard and root guard.

mod stp_sim;

use stp_sim::{Net, bridge_mac};
use vbridge_core::{
    BridgeId, Decision, MacAddr, PortConfig, StpEvent, StpMode, StpRole, StpState, Vid,
};

/// RSTP on point-to-point links reconverges well under a second: assert under 300 ms.
const FAST: u64 = 300;

/// Runs 10 s and returns how long after `since` the last port state change was.
fn settle(net: &mut Net, since: u64) -> u64 {
    net.run_for(10_000);
    net.last_state_change(since).unwrap_or(0)
}

#[test]
fn triangle_and_square_converge_in_milliseconds() {
    for n in [3, 4, 5] {
        let mut net = Net::ring(n, StpMode::Rstp);
        let t = settle(&mut net, 0);
        assert!(t < FAST, "ring of {n}: last change after {t} ms");
        assert!(net.settled());
        assert!(net.tree_ok(), "ring of {n}");
        assert_eq!(net.blocked_link_ends(), 1, "ring of {n}");
        for node in &net.nodes {
            let s = node.b.stp_status(net.t());
            assert_eq!(s.designated_root, BridgeId::new(0x8000, bridge_mac(0)));
            assert!(s.ports.iter().all(|p| p.send_rstp));
        }
    }
}

#[test]
fn full_mesh_converges_in_milliseconds() {
    let mut net = Net::new(5, StpMode::Rstp);
    for a in 0..5 {
        for z in a + 1..5 {
            net.connect(a, z);
        }
    }
    let t = settle(&mut net, 0);
    assert!(t < FAST, "{t} ms");
    assert!(net.tree_ok());
    // 10 links, 4 in the tree: 6 blocked ends.
    assert_eq!(net.blocked_link_ends(), 6);
}

#[test]
fn link_failure_reconverges_in_milliseconds() {
    let mut net = Net::ring(4, StpMode::Rstp);
    settle(&mut net, 0);
    for l in 0..4 {
        let t0 = net.now;
        net.set_link(l, false);
        let t = settle(&mut net, t0);
        assert!(t < FAST, "link {l} down: {t} ms");
        assert!(net.tree_ok(), "link {l} down");
        assert_eq!(net.blocked_link_ends(), 0);
        let t0 = net.now;
        net.set_link(l, true);
        let t = settle(&mut net, t0);
        assert!(t < FAST, "link {l} up: {t} ms");
        assert!(net.tree_ok(), "link {l} up");
        assert_eq!(net.blocked_link_ends(), 1);
    }
}

#[test]
fn root_failure_reconverges_in_milliseconds() {
    for n in [3, 4, 5, 8] {
        let mut net = Net::ring(n, StpMode::Rstp);
        settle(&mut net, 0);
        let t0 = net.now;
        net.kill(0);
        let t = settle(&mut net, t0);
        assert!(t < FAST, "ring of {n}: {t} ms");
        assert!(net.tree_ok(), "ring of {n}");
        for i in 1..n {
            let s = net.nodes[i].b.stp_status(net.t());
            assert_eq!(s.designated_root, BridgeId::new(0x8000, bridge_mac(1)));
        }
    }
}

#[test]
fn root_failure_with_several_loops_left_is_bounded_by_max_age() {
    // With more than one loop left, stale information about the dead root can circle
    // (RSTP's count to infinity): it dies when its message age reaches max age, at the
    // pace Transmit Hold Count allows. The tree is back well within that bound.
    for n in [3, 4, 5, 6] {
        let mut net = Net::ring(n, StpMode::Rstp);
        net.connect(1, n - 1);
        settle(&mut net, 0);
        let t0 = net.now;
        net.kill(0);
        net.run_for(30_000);
        let t = net.last_state_change(t0).unwrap();
        assert!(t < 20_000, "ring of {n} with a chord: {t} ms");
        assert!(net.tree_ok(), "ring of {n} with a chord");
        for i in 1..n {
            let s = net.nodes[i].b.stp_status(net.t());
            assert_eq!(s.designated_root, BridgeId::new(0x8000, bridge_mac(1)));
        }
    }
}

#[test]
fn topology_change_flushes_other_ports_at_once() {
    let mut net = Net::ring(4, StpMode::Rstp);
    settle(&mut net, 0);
    // Every bridge learns every host (a probe from each floods everywhere).
    for i in 0..4 {
        net.probe(i);
    }
    let learned = |net: &Net, i: usize| net.nodes[i].b.stats().fdb_learned;
    assert!((0..4).all(|i| learned(&net, i) >= 3));
    // Bridge 2 reaches bridge 0's host through bridge 1.
    let host_of_0 = |net: &Net| {
        net.nodes[2]
            .b
            .fdb_entries(net.t())
            .find(|e| e.mac.0[0] == 6 && e.mac.0[4] == 0)
            .map(|e| e.port)
    };
    let towards_1 = net.links[1].z.1;
    assert_eq!(host_of_0(&net), Some(towards_1));
    let t0 = net.now;
    net.set_link(0, false); // 0 - 1, in the tree
    net.run_for(50);
    let tc = net
        .events
        .iter()
        .filter(|(t, _, e)| *t >= t0 && matches!(e, StpEvent::TopologyChange { .. }))
        .count();
    assert!(tc >= 1);
    // Entries learned through the old paths are gone well within a second; the port a
    // TC arrived on keeps its own.
    for i in 0..4 {
        assert!(learned(&net, i) < 3, "bridge {i}: {}", learned(&net, i));
    }
    assert_eq!(host_of_0(&net), None, "the stale entry went at once");
    assert!(net.tree_ok());
    assert_ne!(
        host_of_0(&net),
        Some(towards_1),
        "relearned on the new path"
    );
    // RSTP does not use rapid ageing.
    let s = net.nodes[2].b.stp_status(net.t());
    assert_eq!(s.ageing_time.as_secs(), 300);
}

#[test]
fn edge_ports_forward_at_once() {
    let mut net = Net::new(1, StpMode::Rstp);
    let t = net.t();
    let b = &mut net.nodes[0].b;
    let edge = b.add_port(PortConfig::new(None)).unwrap();
    let auto = b.add_port(PortConfig::new(None)).unwrap();
    let mut c = b.port_stp_config(edge).unwrap();
    c.admin_edge = true;
    b.set_port_stp_config(t, edge, c).unwrap();
    assert_eq!(b.port_stp_state(edge).unwrap(), StpState::Forwarding);
    assert_eq!(b.port_stp_state(auto).unwrap(), StpState::Blocking);
    // No BPDU comes back on the other port: after the edge delay it is an edge port.
    net.run_for(2_500);
    assert_eq!(
        net.nodes[0].b.port_stp_state(auto).unwrap(),
        StpState::Blocking
    );
    net.run_for(1_000);
    assert_eq!(
        net.nodes[0].b.port_stp_state(auto).unwrap(),
        StpState::Forwarding
    );
    let s = net.nodes[0].b.stp_status(net.t());
    assert!(
        s.ports
            .iter()
            .all(|p| p.oper_edge && p.role == StpRole::Designated)
    );
    // Edge ports coming up cause no topology change.
    assert_eq!(s.topology_change_count, 0);
    // In STP mode an admin edge port forwards at once too.
    let t = net.t();
    let b = &mut net.nodes[0].b;
    b.set_stp_mode(t, StpMode::Stp);
    assert_eq!(b.port_stp_state(edge).unwrap(), StpState::Forwarding);
    assert_eq!(b.port_stp_state(auto).unwrap(), StpState::Listening);
}

#[test]
fn an_edge_port_receiving_a_bpdu_stops_being_one() {
    let mut net = Net::ring(2, StpMode::Rstp);
    let (b1, p1) = net.links[0].z;
    net.port_config(b1, p1, |c| c.admin_edge = true);
    settle(&mut net, 0);
    let s = net.nodes[b1].b.stp_status(net.t());
    let p = s.ports.iter().find(|p| p.port == p1).unwrap();
    assert!(p.admin_edge && !p.oper_edge);
    assert!(net.tree_ok());
    assert_eq!(net.blocked_link_ends(), 1);
}

#[test]
fn mixed_stp_and_rstp_ring() {
    // Bridges 0 and 1 run RSTP, bridge 2 (the root) STP: the RSTP ports facing it fall
    // back to Config BPDUs, and the ring still becomes a tree.
    let mut net = Net::new(3, StpMode::Rstp);
    let now = net.now_instant();
    net.nodes[2].b.set_stp_mode(now, StpMode::Stp);
    net.nodes[2].b.set_stp_priority(now, 4096).unwrap();
    for i in 0..3 {
        net.connect(i, (i + 1) % 3);
    }
    net.run_for(60_000);
    assert!(net.settled());
    assert!(net.tree_ok());
    assert_eq!(net.blocked_link_ends(), 1);
    let s1 = net.nodes[1].b.stp_status(net.t());
    let towards_2 = s1
        .ports
        .iter()
        .find(|p| p.port == net.links[1].a.1)
        .unwrap();
    assert!(!towards_2.send_rstp, "migrated to STP");
    assert!(towards_2.counters.migrations >= 1);
    assert_eq!(towards_2.role, StpRole::Root);
    let towards_0 = s1
        .ports
        .iter()
        .find(|p| p.port == net.links[0].z.1)
        .unwrap();
    assert!(towards_0.send_rstp);
    assert!(net.events_of(1).contains(&StpEvent::Protocol {
        port: towards_2.port,
        rstp: false
    }));
    // Bridge 2 never sends RST BPDUs, and gets none any more.
    let rx_rst = |net: &Net| -> u64 {
        let s2 = net.nodes[2].b.stp_status(net.t());
        assert!(s2.ports.iter().all(|p| p.counters.tx_rst == 0));
        s2.ports.iter().map(|p| p.counters.rx_rst).sum()
    };
    let before = rx_rst(&net);
    net.run_for(10_000);
    assert_eq!(rx_rst(&net), before);
    // The STP bridge becomes RSTP: after an mcheck its peers speak RSTP again.
    let now = net.now_instant();
    net.nodes[2].b.set_stp_mode(now, StpMode::Rstp);
    let p = towards_2.port;
    net.nodes[1].b.stp_mcheck(now, p).unwrap();
    net.drain(1);
    net.drain(2);
    net.run_for(10_000);
    let s1 = net.nodes[1].b.stp_status(net.t());
    assert!(s1.ports.iter().all(|p| p.send_rstp));
    assert!(net.tree_ok());
}

#[test]
fn bpdu_guard_disables_the_port() {
    let mut net = Net::ring(2, StpMode::Rstp);
    let (b1, p1) = net.links[0].z;
    net.port_config(b1, p1, |c| c.bpdu_guard = true);
    net.run_for(1_000);
    assert_eq!(
        net.nodes[b1].b.port_stp_state(p1).unwrap(),
        StpState::Disabled
    );
    assert!(
        net.events_of(b1)
            .contains(&StpEvent::BpduGuard { port: p1 })
    );
    let s = net.nodes[b1].b.stp_status(net.t());
    let p = s.ports.iter().find(|p| p.port == p1).unwrap();
    assert!(p.bpdu_guard_tripped && p.counters.bpdu_guard_trips == 1);
    // Data does not pass a disabled port.
    assert!(net.tree_ok());
    assert_eq!(net.link_state(0, 1), StpState::Disabled);
    // Down and up again re-enables it (and the next BPDU trips it again).
    net.nodes[b1].b.set_port_up(p1, false).unwrap();
    net.nodes[b1].b.set_port_up(p1, true).unwrap();
    assert_ne!(
        net.nodes[b1].b.port_stp_state(p1).unwrap(),
        StpState::Disabled
    );
    net.run_for(3_000);
    assert_eq!(
        net.nodes[b1].b.port_stp_state(p1).unwrap(),
        StpState::Disabled
    );
    // Turning the guard off re-enables it for good.
    net.port_config(b1, p1, |c| c.bpdu_guard = false);
    settle(&mut net, 0);
    assert!(net.tree_ok());
    assert_eq!(net.blocked_link_ends(), 1);
}

#[test]
fn root_guard_blocks_a_better_root() {
    let mut net = Net::ring(3, StpMode::Rstp);
    // Bridge 1 guards its port towards bridge 2.
    let (b1, guarded) = net.links[1].a;
    net.port_config(b1, guarded, |c| c.root_guard = true);
    settle(&mut net, 0);
    assert!(net.tree_ok());
    // Bridge 2 claims the root.
    let now = net.now_instant();
    net.nodes[2].b.set_stp_priority(now, 0).unwrap();
    net.drain(2);
    settle(&mut net, now.millis());
    let s1 = net.nodes[b1].b.stp_status(net.t());
    let p = s1.ports.iter().find(|p| p.port == guarded).unwrap();
    assert_eq!((p.role, p.state), (StpRole::Alternate, StpState::Blocking));
    assert!(p.root_guard_blocking);
    assert!(net.events_of(b1).contains(&StpEvent::RootGuard {
        port: guarded,
        blocking: true
    }));
    // Bridge 1 still reaches the new root, through bridge 0.
    assert_eq!(s1.designated_root, BridgeId::new(0, bridge_mac(2)));
    assert_ne!(s1.root_port, Some(guarded));
    assert!(net.tree_ok());
    // The claim is withdrawn: the port is released.
    let now = net.now_instant();
    net.nodes[2].b.set_stp_priority(now, 0xf000).unwrap();
    net.drain(2);
    net.run_for(10_000);
    let s1 = net.nodes[b1].b.stp_status(net.t());
    let p = s1.ports.iter().find(|p| p.port == guarded).unwrap();
    assert!(!p.root_guard_blocking);
    assert_eq!(p.state, StpState::Forwarding);
    assert!(net.tree_ok());
}

#[test]
fn blocked_ports_neither_forward_nor_learn() {
    let mut net = Net::ring(3, StpMode::Rstp);
    settle(&mut net, 0);
    let (b, p) = net.links[1].z;
    assert_eq!(
        net.nodes[b].b.port_stp_state(p).unwrap(),
        StpState::Blocking
    );
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&MacAddr::BROADCAST.0);
    f[6..12].copy_from_slice(&[2, 0xbb, 0, 0, 0, 1]);
    let mut d = Decision::new();
    let now = net.now_instant();
    net.nodes[b].b.process(now, p, &f, &mut d);
    assert!(d.egress.is_empty());
    assert_eq!(
        net.nodes[b]
            .b
            .fdb_lookup(Vid::DEFAULT, MacAddr([2, 0xbb, 0, 0, 0, 1])),
        None
    );
}

trait NowInstant {
    fn now_instant(&self) -> vbridge_core::Instant;
}

impl NowInstant for Net {
    fn now_instant(&self) -> vbridge_core::Instant {
        self.t()
    }
}

#[test]
fn a_cable_between_two_ports_of_one_bridge_makes_a_backup_port() {
    let mut net = Net::new(2, StpMode::Rstp);
    net.connect(0, 1);
    let l = net.connect(1, 1);
    settle(&mut net, 0);
    let s = net.nodes[1].b.stp_status(net.t());
    let role = |p| {
        s.ports
            .iter()
            .find(|x| x.port == p)
            .map(|x| (x.role, x.state))
    };
    let (a, z) = (net.links[l].a.1, net.links[l].z.1);
    assert_eq!(role(a), Some((StpRole::Designated, StpState::Forwarding)));
    assert_eq!(role(z), Some((StpRole::Backup, StpState::Blocking)));
    assert!(net.tree_ok());
}

#[test]
fn shared_links_wait_for_the_timers() {
    let mut net = Net::new(2, StpMode::Rstp);
    let l = net.connect(0, 1);
    settle(&mut net, 0);
    for (i, p) in [net.links[l].a, net.links[l].z] {
        net.port_config(i, p, |c| {
            c.point_to_point = vbridge_core::PointToPoint::ForceFalse
        });
    }
    net.set_link(l, false);
    net.set_link(l, true);
    // No agreement on a shared LAN: the designated port waits out its timers.
    net.run_for(1_000);
    assert_ne!(net.link_state(l, 0), StpState::Forwarding);
    net.run_for(25_000);
    assert_eq!(net.link_state(l, 0), StpState::Forwarding);
    let s = net.nodes[0].b.stp_status(net.t());
    assert!(s.ports.iter().all(|p| !p.point_to_point));
}
