//! The fast path's programs run by the kernel on frames we hand it (`BPF_PROG_TEST_RUN`),
//! without any device or namespace: which frames `redirect` takes (and counts) and which
//! it leaves to the switch, and that `hide` agrees with it frame by frame. (A test run's
//! context carries no VLAN fields: tagged arrivals are checked in `ns_tests`.)

use std::os::fd::AsFd;

use super::{FastPath, FlowKey, to_peer as out};
use crate::port::MacAddr;
use crate::sys::bpf;

const TC_ACT_REDIRECT: u32 = 7;
const TCX_NEXT: u32 = u32::MAX;
/// What a test run's frame enters by: the loopback device (the context's `ifindex` left
/// 0), whose index the programs read.
const IFINDEX: u32 = 1;
const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);
/// `struct __sk_buff` is 192 bytes; `gso_size` sits at 176.
const SKB_SIZE: usize = 192;

fn frame(dst: MacAddr, src: MacAddr, tpid: u16, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend(dst.0);
    f.extend(src.0);
    f.extend(tpid.to_be_bytes());
    f.resize(len, 0x5a);
    f
}

fn ctx(gso_size: u32) -> Vec<u8> {
    let mut c = vec![0u8; SKB_SIZE];
    c[176..180].copy_from_slice(&gso_size.to_ne_bytes());
    c
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: BPF maps and programs")]
fn programs_take_known_flows_within_their_limit_and_agree() {
    assert!(
        crate::sys::testing::is_root(),
        "this privileged test needs root: the test binary was built as root; rebuild it as this user to have it ignored"
    );
    let fp = FastPath::new(64, 65_535 + 18).unwrap();
    let (redirect, hide) = (&fp.redirect, &fp.hide);
    let key = FlowKey {
        ingress: IFINDEX,
        dst: B,
        src: A,
        vid: 0,
    };
    fp.insert(key, out(9, 0)).unwrap();
    // Untagged A -> C leaves tagged 10: the program pushes the tag, then redirects.
    let tagging = FlowKey { dst: C, ..key };
    fp.insert(tagging, out(9, 10)).unwrap();
    let run_tc = |f: &[u8], gso: u32| bpf::test_run(redirect.as_fd(), f, &ctx(gso)).unwrap();
    // A socket filter sees the frame from its MAC header, but a test run hands it over
    // from the network header: 14 bytes in front make up for that.
    let run_sock = |f: &[u8], gso: u32| {
        let mut padded = vec![0u8; 12];
        padded.extend([0x08, 0x00]);
        padded.extend(f);
        bpf::test_run(hide.as_fd(), &padded, &ctx(gso)).unwrap()
    };
    let cases = [
        ("known flow", frame(B, A, 0x0800, 60), 0, true),
        ("another source", frame(B, C, 0x0800, 60), 0, false),
        (
            "known flow that leaves tagged",
            frame(C, A, 0x0800, 60),
            0,
            true,
        ),
        ("other direction", frame(A, B, 0x0800, 60), 0, false),
        ("802.1Q tag in the frame", frame(B, A, 0x8100, 64), 0, false),
        ("802.1ad tag", frame(B, A, 0x88a8, 64), 0, false),
        ("0x9100 tag", frame(B, A, 0x9100, 64), 0, false),
        ("at the flow's limit", frame(B, A, 0x0800, 1518), 0, true),
        ("over the flow's limit", frame(B, A, 0x0800, 1519), 0, false),
        // (A test run takes at most a page of data: 2000 bytes stand for 64 KiB.)
        ("GSO super-frame", frame(B, A, 0x0800, 2000), 1448, true),
    ];
    let mut taken = 0u64;
    let mut bytes = 0u64;
    for (what, f, gso, take) in &cases {
        let tc = run_tc(f, *gso);
        assert_eq!(tc == TC_ACT_REDIRECT, *take, "{what}: tcx returned {tc}");
        if !*take {
            assert_eq!(tc, TCX_NEXT, "{what}: left to what follows");
        }
        let sock = run_sock(f, *gso);
        if *take {
            assert_eq!(sock, 0, "{what}: hidden from the switch's socket");
            taken += 1;
            bytes += f.len() as u64;
        } else {
            assert_eq!(sock as usize, f.len(), "{what}: the whole frame kept");
        }
    }
    let flow = fp.get(key).unwrap().unwrap();
    let other = fp.get(tagging).unwrap().unwrap();
    assert_eq!(
        (
            flow.egress,
            flow.stats.packets + other.stats.packets,
            flow.stats.bytes + other.stats.bytes
        ),
        (9, taken, bytes)
    );
    assert_eq!(other.stats.packets, 1);
}
