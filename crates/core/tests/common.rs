//! Frame builders and a small harness shared by the core's scenario and property tests.
#![allow(dead_code, unreachable_pub)]

use vbridge_core::{Bridge, BridgeConfig, Decision, Instant, MacAddr, PortConfig, PortId, Vid};
use vbridge_wire::vlan::Tag;

/// `02:00:00:00:00:nn`.
pub fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

pub fn vid(v: u16) -> Vid {
    Vid::new(v).unwrap()
}

/// An untagged IPv4-ish frame of 64 bytes.
pub fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// A frame with one 802.1Q tag.
pub fn tagged(dst: MacAddr, src: MacAddr, vid: u16) -> Vec<u8> {
    tagged_tpid(dst, src, 0x8100, vid)
}

/// A frame with one tag of the given TPID.
pub fn tagged_tpid(dst: MacAddr, src: MacAddr, tpid: u16, vid: u16) -> Vec<u8> {
    let mut f = frame(dst, src);
    let t = Tag::from_tci(tpid, vid).to_bytes();
    f.splice(12..12, t);
    f
}

/// A bridge with a fixed initial MAC.
pub fn bridge() -> Bridge {
    Bridge::new(BridgeConfig::new(MacAddr([0x0a, 0, 0, 0, 0, 0xff])))
}

/// A bridge with `n` plain ports (ids 1..=n) and no port MACs.
pub fn bridge_with(n: u16) -> (Bridge, Vec<PortId>) {
    let mut b = bridge();
    let ports = (0..n)
        .map(|_| b.add_port(PortConfig::new(None)).unwrap())
        .collect();
    (b, ports)
}

/// Runs one frame through `b` at `t` seconds and returns the decision.
pub fn send(b: &mut Bridge, t: u64, ingress: PortId, f: &[u8]) -> Decision {
    let mut d = Decision::new();
    b.process(Instant::from_secs(t), ingress, f, &mut d);
    d
}

/// The egress ports of a decision, sorted.
pub fn outs(d: &Decision) -> Vec<PortId> {
    let mut v: Vec<_> = d.egress.iter().map(|e| e.port).collect();
    v.sort();
    v
}
