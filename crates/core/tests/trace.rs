//! `Bridge::explain`: the steps of a decision, from the code that forwards. It decides
//! exactly as `process` does, changes nothing, and names every port left out and why.

mod common;

use common::*;
use proptest::prelude::*;
use vbridge_core::trace::{Exclusion, Learning, Lookup};
use vbridge_core::{
    Bridge, Decision, DropReason, Instant, PortFlags, PortId, Step, StpState, TagOp, Verdict,
    VidSet, VlanMode,
};

fn state(b: &Bridge) -> (usize, u32, Vec<u64>) {
    let s = b.stats();
    let rx = b
        .port_ids()
        .map(|p| b.port_counters(p).unwrap().rx_packets)
        .collect();
    (s.fdb_entries, s.fdb_learned, rx)
}

#[test]
fn known_unicast_step_by_step_and_nothing_changes() {
    let (mut b, p) = bridge_with(3);
    send(&mut b, 1, p[1], &frame(mac(1), mac(2)));
    let before = state(&b);
    let e = b.explain(Instant::from_secs(2), p[0], &frame(mac(2), mac(1)));
    assert_eq!(state(&b), before, "explaining changes nothing");
    assert_eq!(e.decision.verdict, Verdict::Forward);
    let kinds: Vec<&str> = e.steps.iter().map(Step::kind).collect();
    assert_eq!(kinds, ["ingress", "vlan", "learning", "lookup", "egress"]);
    assert_eq!(
        e.steps[2],
        Step::Learning(Learning::New),
        "would be learned"
    );
    match &e.steps[3] {
        Step::Lookup {
            found: Lookup::Hit { port, age, .. },
            ..
        } => {
            assert_eq!(*port, p[1]);
            assert_eq!(age.unwrap().as_secs(), 1);
        }
        other => panic!("{other:?}"),
    }
    let name = |id: PortId| format!("port{}", id.0);
    assert!(
        e.steps[4].describe(&name).contains("copy to port2"),
        "{}",
        e.steps[4]
    );
    // Still unlearned: `process` learns it now.
    let d = send(&mut b, 2, p[0], &frame(mac(2), mac(1)));
    assert_eq!(d, e.decision);
}

#[test]
fn every_port_left_out_of_a_flood_is_named_with_its_reason() {
    let (mut b, p) = bridge_with(6);
    b.set_port_vlan(p[0], VlanMode::Access(vid(10))).unwrap();
    b.set_port_vlan(p[1], VlanMode::Access(vid(20))).unwrap();
    let mut allowed = VidSet::new();
    allowed.insert(vid(10));
    b.set_port_vlan(
        p[2],
        VlanMode::Trunk {
            allowed,
            native: None,
        },
    )
    .unwrap();
    b.set_port_vlan(p[3], VlanMode::Access(vid(10))).unwrap();
    b.set_port_vlan(p[4], VlanMode::Access(vid(10))).unwrap();
    b.set_port_vlan(p[5], VlanMode::Access(vid(10))).unwrap();
    let iso = PortFlags {
        isolated: true,
        ..PortFlags::default()
    };
    b.set_port_flags(p[0], iso).unwrap();
    b.set_port_flags(p[3], iso).unwrap();
    let no_bcast = PortFlags {
        bcast_flood: false,
        ..PortFlags::default()
    };
    b.set_port_flags(p[4], no_bcast).unwrap();
    b.set_port_up(p[5], false).unwrap();
    let bcast = frame(vbridge_core::MacAddr::BROADCAST, mac(1));
    let e = Explanation2(b.explain(Instant::from_secs(1), p[0], &bcast));
    assert_eq!(e.why(p[0]), Some(Exclusion::Ingress));
    assert_eq!(e.why(p[1]), Some(Exclusion::NotInVlan(vid(10))));
    assert_eq!(e.why(p[3]), Some(Exclusion::Isolated));
    assert_eq!(
        e.why(p[4]),
        Some(Exclusion::FloodOff(vbridge_core::Delivery::FloodBroadcast))
    );
    assert_eq!(e.why(p[5]), Some(Exclusion::Down));
    assert_eq!(e.0.decision.egress.len(), 1);
    assert_eq!(e.0.decision.egress[0].port, p[2]);
    assert!(matches!(e.0.decision.egress[0].op, TagOp::Push(t) if t.vid == 10));
}

struct Explanation2(vbridge_core::Explanation);

impl Explanation2 {
    fn why(&self, port: PortId) -> Option<Exclusion> {
        self.0.steps.iter().find_map(|s| match s {
            Step::Excluded { port: p, why } if *p == port => Some(*why),
            _ => None,
        })
    }
}

#[test]
fn drops_and_blocked_ports_are_explained() {
    let (mut b, p) = bridge_with(2);
    b.set_port_vlan(p[0], VlanMode::Access(vid(10))).unwrap();
    let e = b.explain(Instant::from_secs(1), p[0], &tagged(mac(2), mac(1), 10));
    assert_eq!(
        e.decision.verdict,
        Verdict::Drop(DropReason::TaggedOnAccess)
    );
    b.set_port_stp_state(p[1], StpState::Blocking).unwrap();
    let e = b.explain(Instant::from_secs(1), p[1], &frame(mac(1), mac(2)));
    assert_eq!(e.decision.verdict, Verdict::Drop(DropReason::PortBlocked));
    assert!(matches!(
        e.steps[0],
        Step::Ingress {
            stp: StpState::Blocking,
            ..
        }
    ));
}

proptest! {
    /// For any frame sequence, explaining a frame gives exactly the decision that
    /// processing it then makes, and leaves the bridge as it was.
    #[test]
    fn explain_decides_as_process_does(
        frames in prop::collection::vec((0u16..4, 0u8..6, 0u8..6, prop::bool::ANY), 1..60),
        isolated in prop::collection::vec(prop::bool::ANY, 4),
        vlan in prop::bool::ANY,
    ) {
        let (mut b, p) = bridge_with(4);
        for (i, on) in isolated.iter().enumerate() {
            b.set_port_flags(p[i], PortFlags { isolated: *on, ..PortFlags::default() }).unwrap();
        }
        if vlan {
            b.set_port_vlan(p[3], VlanMode::Access(vid(20))).unwrap();
        }
        for (t, (port, dst, src, bcast)) in frames.into_iter().enumerate() {
            let dst = if bcast { vbridge_core::MacAddr::BROADCAST } else { mac(dst) };
            let f = frame(dst, mac(src));
            let now = Instant::from_secs(t as u64);
            let before = b.clone();
            let e = b.explain(now, p[usize::from(port)], &f);
            prop_assert_eq!(&b.stats(), &before.stats());
            let mut d = Decision::new();
            b.process(now, p[usize::from(port)], &f, &mut d);
            prop_assert_eq!(d, e.decision);
        }
    }
}
