//! Invariants of the bridge over random port setups and random traffic.

mod common;

use common::*;
use proptest::prelude::*;
use vbridge_core::{
    Bridge, Decision, DropReason, Instant, MacAddr, PortFlags, PortId, TagOp, Verdict, VidSet,
    VlanMode,
};
use vbridge_wire::vlan::outer_tag;

#[derive(Debug, Clone)]
struct PortSetup {
    mode: VlanMode,
    hairpin: bool,
    isolated: bool,
    max_learned: u32,
}

fn vlan_mode() -> impl Strategy<Value = VlanMode> {
    prop_oneof![
        (1u16..5).prop_map(|v| VlanMode::Access(vid(v))),
        (
            prop::collection::vec(1u16..5, 0..4),
            prop::option::of(1u16..5)
        )
            .prop_map(|(vs, n)| {
                let mut allowed = VidSet::new();
                for v in vs {
                    allowed.insert(vid(v));
                }
                VlanMode::Trunk {
                    allowed,
                    native: n.map(vid),
                }
            }),
    ]
}

fn port_setup() -> impl Strategy<Value = PortSetup> {
    (vlan_mode(), any::<bool>(), any::<bool>(), 0u32..4).prop_map(
        |(mode, hairpin, isolated, max_learned)| PortSetup {
            mode,
            hairpin,
            isolated,
            max_learned,
        },
    )
}

#[derive(Debug, Clone)]
struct Traffic {
    port: usize,
    dst: u8,
    src: u8,
    tag: Option<u16>,
    dt: u64,
}

fn traffic() -> impl Strategy<Value = Traffic> {
    (
        0usize..6,
        prop_oneof![0u8..12, Just(0xff)],
        0u8..12,
        prop::option::of(prop_oneof![0u16..6, Just(4095)]),
        0u64..200,
    )
        .prop_map(|(port, dst, src, tag, dt)| Traffic {
            port,
            dst,
            src,
            tag,
            dt,
        })
}

fn build(setups: &[PortSetup], max_learned: u32, filtering: bool) -> (Bridge, Vec<PortId>) {
    let (mut b, p) = bridge_with(setups.len() as u16);
    b.set_max_learned(max_learned);
    for (s, id) in setups.iter().zip(&p) {
        if filtering {
            b.set_port_vlan(*id, s.mode.clone()).unwrap();
        }
        let flags = PortFlags {
            hairpin: s.hairpin,
            isolated: s.isolated,
            ..PortFlags::default()
        };
        b.set_port_flags(*id, flags).unwrap();
        b.set_port_max_learned(*id, s.max_learned).unwrap();
    }
    (b, p)
}

fn make_frame(t: &Traffic) -> Vec<u8> {
    let dst = if t.dst == 0xff {
        MacAddr::BROADCAST
    } else {
        mac(t.dst + 1)
    };
    match t.tag {
        Some(v) => tagged(dst, mac(t.src + 1), v),
        None => frame(dst, mac(t.src + 1)),
    }
}

/// The VID a copy carries when it leaves, given the tag it arrived with and the op.
fn leaves_in(frame: &[u8], op: TagOp) -> Option<u16> {
    let arrived = outer_tag(frame).ok().flatten().map(|t| t.vid);
    match op {
        TagOp::Keep => arrived,
        TagOp::Push(t) => Some(t.vid),
        TagOp::Pop => None,
        TagOp::SetVid(v) => Some(v.get()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn forwarding_invariants(
        setups in prop::collection::vec(port_setup(), 2..6),
        frames in prop::collection::vec(traffic(), 1..120),
        max_learned in 1u32..8,
        filtering in any::<bool>(),
    ) {
        let (mut b, p) = build(&setups, max_learned, filtering);
        let mut now = 0u64;
        let mut d = Decision::new();
        for t in &frames {
            let i = t.port % p.len();
            now += t.dt;
            let f = make_frame(t);
            b.process(Instant::from_millis(now), p[i], &f, &mut d);
            for e in &d.egress {
                let j = p.iter().position(|x| *x == e.port).unwrap();
                // Never back out the ingress port unless it is hairpin.
                prop_assert!(e.port != p[i] || setups[i].hairpin);
                // Isolated ports never talk to each other.
                prop_assert!(!(setups[i].isolated && setups[j].isolated));
                if filtering {
                    // A copy leaves in the frame's own VLAN, tagged as the port says.
                    let v = d.vid.unwrap();
                    prop_assert!(setups[j].mode.carries(v));
                    let out = leaves_in(&f, e.op);
                    if setups[j].mode.egress_untagged(v) {
                        prop_assert_eq!(out, None);
                    } else {
                        prop_assert_eq!(out, Some(v.get()));
                    }
                } else {
                    prop_assert_eq!(e.op, TagOp::Keep);
                }
            }
            if d.verdict == Verdict::Forward {
                prop_assert!(!d.egress.is_empty());
            }
            // The FDB never exceeds its limits.
            let s = b.stats();
            prop_assert!(s.fdb_learned <= max_learned);
            for (k, id) in p.iter().enumerate() {
                let lim = setups[k].max_learned;
                prop_assert!(lim == 0 || b.port_learned(*id).unwrap() <= lim);
            }
            b.handle_timeout(Instant::from_millis(now));
        }
        // Every frame is accounted: received = forwarded or control or dropped by reason.
        let s = b.stats();
        let rx: u64 = p.iter().map(|id| b.port_counters(*id).unwrap().rx_packets).sum();
        prop_assert_eq!(rx, frames.len() as u64);
        prop_assert!(s.drops.total() <= rx);
        prop_assert_eq!(s.drops.get(DropReason::UnknownPort), 0);
    }

    #[test]
    fn learned_count_matches_table(
        frames in prop::collection::vec(traffic(), 1..200),
        ageing_s in 1u64..5,
    ) {
        let (mut b, p) = bridge_with(6);
        b.set_ageing(Instant::ZERO, std::time::Duration::from_secs(ageing_s)).unwrap();
        let mut now = 0u64;
        let mut d = Decision::new();
        for t in &frames {
            now += t.dt * 10;
            b.process(Instant::from_millis(now), p[t.port], &make_frame(t), &mut d);
            b.handle_timeout(Instant::from_millis(now));
            let dynamic = b
                .fdb_entries(Instant::from_millis(now))
                .filter(|e| e.kind == vbridge_core::EntryKind::Dynamic)
                .count();
            prop_assert_eq!(dynamic as u32, b.stats().fdb_learned);
            let per_port: u32 = p.iter().map(|id| b.port_learned(*id).unwrap()).sum();
            prop_assert_eq!(per_port, b.stats().fdb_learned);
            // Nothing older than the ageing time plus one sweep interval survives.
            for e in b.fdb_entries(Instant::from_millis(now)) {
                prop_assert!(e.age.as_millis() < u128::from(ageing_s * 1000 + 250));
            }
        }
    }
}
