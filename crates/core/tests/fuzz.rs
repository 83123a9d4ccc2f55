//! Fuzz targets (bolero): arbitrary bytes through the wire parsers and the bridge, and
//! arbitrary sequences of configuration calls and frames. Under `cargo test` each runs a
//! bounded number of random inputs; `cargo bolero test -p vbridge-core --test fuzz
//! <name>` runs them under a coverage-guided fuzzer.

mod common;

use std::time::Duration;

use bolero::{TypeGenerator, check};
use common::*;
use vbridge_core::{
    Decision, FlushFilter, Instant, MacAddr, PortConfig, PortFlags, PortId, Verdict, VidSet,
    VlanMode,
};

#[test]
fn frame_parsing() {
    let (mut b, p) = bridge_with(3);
    b.set_port_vlan(p[1], VlanMode::Access(vid(10))).unwrap();
    let trunk = VlanMode::Trunk {
        allowed: VidSet::parse_list("1-20").unwrap(),
        native: Some(vid(1)),
    };
    b.set_port_vlan(p[2], trunk).unwrap();
    let mut d = Decision::new();
    check!().with_type::<Vec<u8>>().for_each(|bytes| {
        let _ = vbridge_wire::summarize(bytes);
        for port in &p {
            b.process(Instant::ZERO, *port, bytes, &mut d);
            if d.verdict == Verdict::Forward {
                assert!(!d.egress.is_empty());
            }
        }
    });
}

#[derive(Debug, TypeGenerator)]
enum Op {
    Frame {
        port: u8,
        dst: u8,
        src: u8,
        tag: Option<u16>,
        dt: u16,
    },
    AddPort {
        mac: Option<u8>,
    },
    RemovePort(u8),
    Up(u8, bool),
    Flags {
        port: u8,
        bits: u8,
    },
    Access {
        port: u8,
        vid: u16,
    },
    Trunk {
        port: u8,
        lo: u16,
        hi: u16,
        native: Option<u16>,
    },
    Static {
        port: u8,
        mac: u8,
        vid: u16,
    },
    Flush {
        port: Option<u8>,
        vid: Option<u16>,
        statics: bool,
    },
    Ageing(u16),
    Mac(Option<u8>),
    PortMac {
        port: u8,
        mac: Option<u8>,
    },
    MaxLearned(u16),
    Timeout(u16),
}

#[test]
fn operation_sequences() {
    check!().with_type::<Vec<Op>>().for_each(|ops| {
        let (mut b, _) = bridge_with(2);
        let mut now = 0u64;
        let mut d = Decision::new();
        let pid = |n: u8| PortId(u16::from(n % 8));
        let any_vid = |v: u16| vbridge_core::Vid::new(v % 4100);
        for op in ops {
            match op {
                Op::Frame {
                    port,
                    dst,
                    src,
                    tag,
                    dt,
                } => {
                    now += u64::from(*dt);
                    let dst = if *dst == 0xff {
                        MacAddr::BROADCAST
                    } else {
                        mac(*dst)
                    };
                    let f = match tag {
                        Some(v) => tagged(dst, mac(*src), *v),
                        None => frame(dst, mac(*src)),
                    };
                    b.process(Instant::from_millis(now), pid(*port), &f, &mut d);
                }
                Op::AddPort { mac: m } => {
                    let _ = b.add_port(PortConfig::new(m.map(mac)));
                }
                Op::RemovePort(n) => {
                    let _ = b.remove_port(pid(*n));
                }
                Op::Up(n, up) => {
                    let _ = b.set_port_up(pid(*n), *up);
                }
                Op::Flags { port, bits } => {
                    let f = PortFlags {
                        learning: bits & 1 != 0,
                        flood: bits & 2 != 0,
                        mcast_flood: bits & 4 != 0,
                        bcast_flood: bits & 8 != 0,
                        hairpin: bits & 16 != 0,
                        isolated: bits & 32 != 0,
                        locked: bits & 64 != 0,
                    };
                    let _ = b.set_port_flags(pid(*port), f);
                }
                Op::Access { port, vid } => {
                    if let Ok(v) = any_vid(*vid) {
                        let _ = b.set_port_vlan(pid(*port), VlanMode::Access(v));
                    }
                }
                Op::Trunk {
                    port,
                    lo,
                    hi,
                    native,
                } => {
                    let list = format!("{}-{}", lo % 4100, hi % 4100);
                    if let Ok(allowed) = VidSet::parse_list(&list) {
                        let native = native.and_then(|n| any_vid(n).ok());
                        let _ = b.set_port_vlan(pid(*port), VlanMode::Trunk { allowed, native });
                    }
                }
                Op::Static { port, mac: m, vid } => {
                    if let Ok(v) = any_vid(*vid) {
                        let _ = b.fdb_add_static(v, mac(*m), pid(*port));
                    }
                }
                Op::Flush { port, vid, statics } => {
                    let filter = FlushFilter {
                        port: port.map(pid),
                        vid: vid.and_then(|v| any_vid(v).ok()),
                        include_static: *statics,
                    };
                    b.fdb_flush(filter);
                }
                Op::Ageing(s) => {
                    let _ = b.set_ageing(
                        Instant::from_millis(now),
                        Duration::from_secs(u64::from(*s)),
                    );
                }
                Op::Mac(m) => {
                    let _ = b.set_mac(m.map(mac));
                }
                Op::PortMac { port, mac: m } => {
                    let _ = b.set_port_mac(pid(*port), m.map(mac));
                }
                Op::MaxLearned(n) => b.set_max_learned(u32::from(*n)),
                Op::Timeout(dt) => {
                    now += u64::from(*dt) * 100;
                    b.handle_timeout(Instant::from_millis(now));
                }
            }
            let s = b.stats();
            let per_port: u32 = b.port_ids().map(|id| b.port_learned(id).unwrap()).sum();
            assert_eq!(per_port, s.fdb_learned);
            while b.poll_event().is_some() {}
        }
    });
}
