//! A fixed workload for counting instructions (not time): `valgrind --tool=callgrind
//! target/release/examples/insn CASE` gives the same count on every run, so two builds
//! of the core compare exactly where timing on a shared VM moves by ten percent. Cases:
//! `unicast` (2 ports, 1M frames), `fdb_10k` (64 ports, 10 000 stations, 1M frames
//! between random pairs), `flood16` (1M broadcasts to 16 ports).

use std::hint::black_box;

use vbridge_core::{Bridge, BridgeConfig, Decision, Instant, MacAddr, PortConfig, PortId};

fn frame(dst: MacAddr, src: MacAddr) -> [u8; 64] {
    let mut f = [0u8; 64];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12] = 0x08;
    f
}

fn mac(i: u64) -> MacAddr {
    MacAddr::from_u64(0x0200_0000_0000 | i)
}

fn bridge(ports: u16) -> (Bridge, Vec<PortId>) {
    let mut c = BridgeConfig::new(MacAddr([0x0a, 0, 0, 0, 0, 1]));
    c.max_learned = 20_000;
    c.fdb_seed = 0x5eed;
    let mut b = Bridge::new(c);
    let p = (0..ports)
        .map(|_| b.add_port(PortConfig::new(None)).unwrap())
        .collect();
    (b, p)
}

fn main() {
    let case = std::env::args().nth(1).unwrap_or_else(|| "unicast".into());
    let mut d = Decision::new();
    let now = Instant::from_secs(2);
    match case.as_str() {
        "unicast" => {
            let (mut b, p) = bridge(2);
            let (fa, fz) = (frame(mac(2), mac(1)), frame(mac(1), mac(2)));
            b.process(now, p[0], &fa, &mut d);
            b.process(now, p[1], &fz, &mut d);
            for _ in 0..500_000 {
                b.process(now, p[0], black_box(&fa), &mut d);
                b.process(now, p[1], black_box(&fz), &mut d);
            }
        }
        "fdb_10k" => {
            let (mut b, p) = bridge(64);
            for i in 0..10_000u64 {
                let f = frame(mac(i), mac(i));
                b.process(now, p[(i % 64) as usize], &f, &mut d);
            }
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            for _ in 0..1_000_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (s, t) = (x % 10_000, (x >> 20) % 10_000);
                let f = frame(mac(t), mac(s));
                b.process(now, p[(s % 64) as usize], black_box(&f), &mut d);
            }
        }
        "flood16" => {
            let (mut b, p) = bridge(16);
            for i in 0..1_000_000u64 {
                let f = frame(MacAddr::BROADCAST, mac(i % 16));
                b.process(now, p[(i % 16) as usize], black_box(&f), &mut d);
            }
        }
        other => panic!("unknown case {other}"),
    }
    black_box(&d);
}
