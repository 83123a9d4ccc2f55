//! Privileged tests against the real kernel, each in a throw-away network namespace.
//!
//! [`in_netns`] runs the test body on a fresh thread that first unshares its network
//! namespace (namespaces are per thread; threads and `ip` processes it spawns inherit
//! it). Everything the test creates dies with that namespace when the thread ends, pass
//! or fail; nothing touches the host's namespace. Without root the tests print
//! "skipping: needs root" and pass.

mod afpacket;
mod fastpath;
mod offload;
mod switch;
mod tap;

use std::process::Command;
use std::time::{Duration, Instant};

use crate::buf::{Batch, PacketBuf};
use crate::port::{MacAddr, PortIo};
use crate::sys;

/// Runs `body` in a new network namespace on its own thread; re-raises its panic.
pub(super) fn in_netns(body: impl FnOnce() + Send + 'static) {
    assert!(
        sys::testing::is_root(),
        "this privileged test needs root: the test binary was built as root; rebuild it as this user to have it ignored"
    );
    let thread = std::thread::spawn(move || {
        sys::testing::unshare_net().expect("unshare(CLONE_NEWNET)");
        body();
    });
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Runs `ip ARGS` (in the calling thread's namespace) and returns its stdout; panics
/// with its stderr if it fails.
pub(super) fn ip(args: &str) -> String {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A veth pair `a`/`b`, both up.
pub(super) fn veth(a: &str, b: &str) {
    ip(&format!("link add {a} type veth peer name {b}"));
    ip(&format!("link set {a} up"));
    ip(&format!("link set {b} up"));
}

/// The raw text of `"key":value` in `ip -d -j link show dev`, first occurrence.
pub(super) fn link_field(dev: &str, key: &str) -> String {
    let json = ip(&format!("-d -j link show dev {dev}"));
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim_matches('"').to_owned()
}

pub(super) fn promiscuity(dev: &str) -> u32 {
    link_field(dev, "promiscuity")
        .parse()
        .expect("promiscuity is a number")
}

pub(super) fn mac_text(mac: MacAddr) -> String {
    mac.to_string()
}

/// Local experimental EtherType: no stack in the namespace answers or makes these.
pub(super) const ETH_TEST: u16 = 0x88b5;

/// A test frame: `dst`, `src`, optional tags (TPID, TCI) in order, `ETH_TEST`, and a
/// payload of `len` bytes that starts with `id`.
pub(super) fn frame(
    dst: MacAddr,
    src: MacAddr,
    tags: &[(u16, u16)],
    id: u8,
    len: usize,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(len + 30);
    f.extend(dst.0);
    f.extend(src.0);
    for (tpid, tci) in tags {
        f.extend(tpid.to_be_bytes());
        f.extend(tci.to_be_bytes());
    }
    f.extend(ETH_TEST.to_be_bytes());
    f.push(id);
    f.extend((1..len).map(|i| (i as u8) ^ id));
    f
}

/// Whether `f` is one of our test frames (whatever its tags).
pub(super) fn is_test_frame(f: &[u8]) -> bool {
    let mut at = 12;
    while f.len() >= at + 2 {
        match u16::from_be_bytes([f[at], f[at + 1]]) {
            0x8100 | 0x88a8 | 0x9100 => at += 4,
            t => return t == ETH_TEST,
        }
    }
    false
}

/// Receives from `port` until `want` frames satisfying `keep` arrived or 3 s passed;
/// returns copies of them.
pub(super) fn recv_frames(
    port: &mut dyn PortIo,
    want: usize,
    keep: impl Fn(&PacketBuf) -> bool,
) -> Vec<PacketBuf> {
    recv_frames_within(port, want, Duration::from_secs(3), keep)
}

/// [`recv_frames`] with a given patience.
pub(super) fn recv_frames_within(
    port: &mut dyn PortIo,
    want: usize,
    wait: Duration,
    keep: impl Fn(&PacketBuf) -> bool,
) -> Vec<PacketBuf> {
    let mut batch = Batch::new(16);
    let mut got = Vec::new();
    let deadline = Instant::now() + wait;
    while got.len() < want && Instant::now() < deadline {
        match port.recv_batch(&mut batch) {
            Ok(0) => std::thread::sleep(Duration::from_millis(1)),
            Ok(_) => got.extend(batch.iter().filter(|p| keep(p)).cloned()),
            Err(e) => panic!("{}: recv: {e:?}", port.name()),
        }
    }
    got
}

/// Waits up to 2 s for `cond`. Closing a descriptor takes effect (device removed,
/// promiscuity dropped) only when its last copy goes: a child that another test thread
/// is forking at that moment holds copies until it execs, so the effect can lag.
pub(super) fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Test frames seen on `port` within `wait`, for "must not arrive" checks.
pub(super) fn test_frames_within(port: &mut dyn PortIo, wait: Duration) -> usize {
    let mut batch = Batch::new(16);
    let deadline = Instant::now() + wait;
    let mut n = 0;
    while Instant::now() < deadline {
        match port.recv_batch(&mut batch) {
            Ok(0) => std::thread::sleep(Duration::from_millis(1)),
            Ok(_) => n += batch.iter().filter(|p| is_test_frame(p.frame())).count(),
            Err(e) => panic!("{}: recv: {e:?}", port.name()),
        }
    }
    n
}
