//! Forwarding benchmark of the core alone: 64-byte frames, one core, frames/s.
//!
//! Cases (named as in the issue): `unicast` (2 ports, known unicast), `fdb_10k` (64 ports,
//! 10 000 learned MACs, random pairs), `fdb_1m` (1 000 000 learned MACs, random pairs over
//! the whole table), `flood16` (broadcast to 16 ports), `trunk` (access <-> trunk with the
//! tag pushed and popped in the frame buffer, by the same wire functions the datapath's
//! buffers use), `unicast_stp` (`unicast` with STP running and both ports forwarding),
//! `fdb_collide_seeded` / `fdb_collide_unseeded` (`fdb_10k` with 10 000 MACs chosen to
//! collide for the unseeded FDB hash, against a random key as the datapath runs it, and
//! without one). Each iteration decides a batch of frames.
//!
//! Run: `cargo bench -p vbridge-core --bench forwarding`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vbridge_core::{
    Bridge, BridgeConfig, Decision, Instant, MacAddr, PortConfig, PortId, StpMode, StpState, TagOp,
    Vid, VidSet, VlanMode,
};
use vbridge_wire::vlan::{pop_in_place, push_in_place};

const BATCH: usize = 1024;
/// Frames the datapath receives from one port in one go.
const BURST: usize = 32;

/// Measures `f`, which decides `BATCH` frames, as case `name` of group `core`.
fn run(c: &mut Criterion, name: &str, mut f: impl FnMut()) {
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function(name, |bench| bench.iter(&mut f));
    g.finish();
}

fn host_mac(i: u64) -> MacAddr {
    MacAddr::from_u64(0x0200_0000_0000 | i)
}

fn write_addrs(frame: &mut [u8], dst: MacAddr, src: MacAddr) {
    frame[..6].copy_from_slice(&dst.0);
    frame[6..12].copy_from_slice(&src.0);
}

fn base_frame() -> [u8; 64] {
    let mut f = [0u8; 64];
    f[12] = 0x08;
    f
}

fn new_bridge(ports: u16, max_learned: u32) -> (Bridge, Vec<PortId>) {
    let mut cfg = BridgeConfig::new(MacAddr([0x0a, 0, 0, 0, 0, 1]));
    cfg.max_learned = max_learned;
    cfg.ageing = Duration::from_secs(300);
    let mut b = Bridge::new(cfg);
    let p = (0..ports)
        .map(|_| b.add_port(PortConfig::new(None)).unwrap())
        .collect();
    (b, p)
}

/// Learns `hosts` MACs, host `i` behind port `i % ports`.
fn learn_hosts(b: &mut Bridge, p: &[PortId], hosts: u64) {
    b.fdb_reserve(hosts as usize);
    let mut f = base_frame();
    let mut d = Decision::new();
    for i in 0..hosts {
        let port = p[(i % p.len() as u64) as usize];
        // Flooding to 64 ports is the slow part of setup; a unicast to self is enough.
        write_addrs(&mut f, host_mac(i), host_mac(i));
        b.process(Instant::from_secs(1), port, &f, &mut d);
    }
    assert_eq!(b.stats().fdb_learned as u64, hosts);
}

/// `n` random (src, dst) host pairs on different ports, from a fixed seed.
fn random_pairs(n: usize, hosts: u64, ports: u64) -> Vec<(u32, u32)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let s = next() % hosts;
            let mut d = next() % hosts;
            if d % ports == s % ports {
                d = (d + 1) % hosts;
            }
            (s as u32, d as u32)
        })
        .collect()
}

fn bench_table(c: &mut Criterion, name: &str, ports: u16, hosts: u64, pairs: usize) {
    let (mut b, p) = new_bridge(ports, hosts as u32 + 16);
    learn_hosts(&mut b, &p, hosts);
    bench_lookups(c, name, b, &p, hosts, pairs, host_mac);
}

/// Decides frames between random pairs of the `hosts` stations `mac(0..hosts)` that `b`
/// has learned (station `i` behind port `i % ports`).
fn bench_lookups(
    c: &mut Criterion,
    name: &str,
    mut b: Bridge,
    p: &[PortId],
    hosts: u64,
    pairs: usize,
    mac: impl Fn(u64) -> MacAddr,
) {
    let ports = p.len() as u16;
    let pairs = random_pairs(pairs, hosts, u64::from(ports));
    let mut burst = [base_frame(); BURST];
    let mut ingress = [p[0]; BURST];
    let mut d = Decision::new();
    let mut at = 0usize;
    run(c, name, || {
        // As the datapath does: a burst of frames is warmed, then decided one by one.
        for _ in 0..BATCH / BURST {
            for (k, frame) in burst.iter_mut().enumerate() {
                let (s, t) = pairs[(at + k) % pairs.len()];
                write_addrs(frame, mac(u64::from(t)), mac(u64::from(s)));
                ingress[k] = p[s as usize % p.len()];
                b.warm(ingress[k], frame);
            }
            for (k, frame) in burst.iter().enumerate() {
                b.process(Instant::from_secs(2), ingress[k], frame, &mut d);
                black_box(&d);
            }
            at = (at + BURST) % pairs.len();
        }
    });
}

/// Known unicast back and forth between the two ports of `b`, from `t` seconds on.
fn two_port_unicast(c: &mut Criterion, name: &str, mut b: Bridge, p: &[PortId], t: u64) {
    let (a, z) = (host_mac(1), host_mac(2));
    let mut fa = base_frame();
    write_addrs(&mut fa, z, a);
    let mut fz = base_frame();
    write_addrs(&mut fz, a, z);
    let mut d = Decision::new();
    b.process(Instant::from_secs(t), p[0], &fa, &mut d);
    b.process(Instant::from_secs(t), p[1], &fz, &mut d);
    let now = Instant::from_secs(t + 1);
    run(c, name, || {
        for _ in 0..BATCH / 2 {
            b.process(now, p[0], black_box(&fa), &mut d);
            black_box(&d);
            b.process(now, p[1], black_box(&fz), &mut d);
            black_box(&d);
        }
    });
}

fn unicast(c: &mut Criterion) {
    let (b, p) = new_bridge(2, 1024);
    two_port_unicast(c, "unicast", b, &p, 1);
}

/// `unicast` with spanning tree (STP mode) running and both ports forwarding.
fn unicast_stp(c: &mut Criterion) {
    let (mut b, p) = new_bridge(2, 1024);
    b.set_stp_mode(Instant::ZERO, StpMode::Stp);
    // No peer answers: both ports are designated and forward after max age + forward delay.
    for s in 1..=40 {
        b.handle_timeout(Instant::from_secs(s));
        while b.poll_transmit().is_some() {}
    }
    assert!(
        p.iter()
            .all(|&q| b.port_stp_state(q).unwrap() == StpState::Forwarding)
    );
    two_port_unicast(c, "unicast_stp", b, &p, 41);
}

fn fdb_10k(c: &mut Criterion) {
    bench_table(c, "fdb_10k", 64, 10_000, 1 << 16);
}

/// 10 000 MACs whose unseeded hashes share their top 16 bits (so one home bucket in any
/// table up to 65 536 buckets): what a guest choosing its addresses against a fixed hash
/// would send. Searched once, before the measurement.
fn colliding_macs(n: usize) -> Vec<MacAddr> {
    let target = vbridge_core::fdb::hash_of(1, host_mac(0), 0) >> 48;
    (0u64..)
        .map(host_mac)
        .filter(|m| vbridge_core::fdb::hash_of(1, *m, 0) >> 48 == target)
        .take(n)
        .collect()
}

/// `fdb_10k` with addresses that collide for the unseeded hash, in a bridge with hash
/// key `seed` (0: unseeded, the attack works; random: as the datapath runs it).
fn fdb_collide(c: &mut Criterion, name: &str, seed: u64) {
    let macs = colliding_macs(10_000);
    let mut cfg = BridgeConfig::new(MacAddr([0x0a, 0, 0, 0, 0, 1]));
    cfg.max_learned = 10_016;
    cfg.ageing = Duration::from_secs(300);
    cfg.fdb_seed = seed;
    let mut b = Bridge::new(cfg);
    let p: Vec<PortId> = (0..64)
        .map(|_| b.add_port(PortConfig::new(None)).unwrap())
        .collect();
    b.fdb_reserve(macs.len());
    let mut d = Decision::new();
    let mut f = base_frame();
    for (i, m) in macs.iter().enumerate() {
        // A unicast to self is enough to learn (flooding to 64 ports is slow).
        write_addrs(&mut f, *m, *m);
        b.process(Instant::from_secs(1), p[i % p.len()], &f, &mut d);
    }
    bench_lookups(c, name, b, &p, macs.len() as u64, 1 << 16, |i| {
        macs[i as usize]
    });
}

/// Colliding addresses against the random key the datapath gives each bridge.
fn fdb_collide_seeded(c: &mut Criterion) {
    use std::hash::BuildHasher;
    let seed = std::collections::hash_map::RandomState::new().hash_one(1u64) | 1;
    fdb_collide(c, "fdb_collide_seeded", seed);
}

/// Colliding addresses against the unseeded hash (what the seed prevents).
fn fdb_collide_unseeded(c: &mut Criterion) {
    fdb_collide(c, "fdb_collide_unseeded", 0);
}

fn fdb_1m(c: &mut Criterion) {
    bench_table(c, "fdb_1m", 64, 1_000_000, 1 << 22);
}

fn flood16(c: &mut Criterion) {
    let (mut b, p) = new_bridge(16, 1024);
    let mut frames: Vec<[u8; 64]> = Vec::new();
    for i in 0..16u64 {
        let mut f = base_frame();
        write_addrs(&mut f, MacAddr::BROADCAST, host_mac(i));
        frames.push(f);
    }
    let mut d = Decision::new();
    run(c, "flood16", || {
        for i in 0..BATCH {
            b.process(Instant::from_secs(2), p[i % 16], &frames[i % 16], &mut d);
            black_box(&d);
        }
    });
}

fn trunk(c: &mut Criterion) {
    let (mut b, p) = new_bridge(2, 1024);
    let ten = Vid::new(10).unwrap();
    b.set_port_vlan(p[0], VlanMode::Access(ten)).unwrap();
    let mut allowed = VidSet::new();
    allowed.insert(ten);
    b.set_port_vlan(
        p[1],
        VlanMode::Trunk {
            allowed,
            native: None,
        },
    )
    .unwrap();
    let (a, z) = (host_mac(1), host_mac(2));
    // Buffers with 4 bytes of headroom: the frame starts at 4 untagged, at 0 tagged.
    let mut up = [0u8; 68];
    up[4..68].copy_from_slice(&base_frame());
    write_addrs(&mut up[4..], z, a);
    let mut down = [0u8; 68];
    down[..16].copy_from_slice(&[&a.0[..], &z.0[..], &[0x81, 0x00, 0x00, 0x0a]].concat());
    down[16] = 0x08;
    let mut d = Decision::new();
    b.process(Instant::from_secs(1), p[0], &up[4..], &mut d);
    b.process(Instant::from_secs(1), p[1], &down, &mut d);
    run(c, "trunk", || {
        for _ in 0..BATCH / 2 {
            // access -> trunk: push the tag, then undo it for the next round.
            b.process(Instant::from_secs(2), p[0], &up[4..], &mut d);
            if let TagOp::Push(t) = d.egress[0].op {
                let s = push_in_place(&mut up, 4, 68, t).unwrap();
                black_box(&up[s..]);
                pop_in_place(&mut up, s, 68).unwrap();
            }
            // trunk -> access: pop, then put the tag back.
            b.process(Instant::from_secs(2), p[1], &down, &mut d);
            if d.egress[0].op == TagOp::Pop {
                let (s, t) = pop_in_place(&mut down, 0, 68).unwrap();
                black_box(&down[s..]);
                push_in_place(&mut down, s, 68, t).unwrap();
            }
        }
    });
}

criterion_group!(
    benches,
    unicast,
    unicast_stp,
    fdb_10k,
    fdb_collide_seeded,
    fdb_collide_unseeded,
    fdb_1m,
    flood16,
    trunk
);
criterion_main!(benches);
