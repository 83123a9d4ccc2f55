//! Spanning tree with real peers: a loop of vbridge and the Linux kernel bridge (802.1D
//! STP) joined by two veth links converges with exactly one blocked port, whichever side
//! the priorities make root; a broadcast into the loop is seen a bounded number of times;
//! cutting the active link restores connectivity within 2 x forward delay. And an
//! all-vbridge RSTP triangle recovers from a cut within a second.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The kernel bridge's view of its port `dev`: 0 disabled, 1 listening, 2 learning,
/// 3 forwarding, 4 blocking.
fn kernel_port_state(k: &Netns, dev: &str) -> u32 {
    k.ok(&format!("cat /sys/class/net/{dev}/brport/state"))
        .trim()
        .parse()
        .unwrap()
}

fn vbr_port_states(d: &Daemon) -> Vec<(String, String)> {
    let v = d.json("showstp br0");
    v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

struct Loop {
    k: Netns,
    v: Netns,
    d: Daemon,
    ea: Endpoint,
    eb: Endpoint,
}

/// Kernel bridge `kbr` in K and vbridge `br0` in V, joined by l1 (k1-v1) and l2 (k2-v2);
/// endpoint A (10.6.0.1) on the kernel bridge, B (10.6.0.2) on vbridge.
fn build_loop(kernel_prio: u16, vbr_prio: u16) -> Loop {
    let k = Netns::new("k");
    let v = Netns::new("v");
    let d = Daemon::start(&v);
    k.ok("ip link add kbr type bridge stp_state 1 forward_delay 400 hello_time 100 max_age 600");
    k.ok(&format!(
        "ip link set kbr type bridge priority {kernel_prio}"
    ));
    k.ok("ip link set kbr up");
    d.ok("addbr br0");
    v.ok("ip link set br0 up");
    d.ok("sethello br0 1");
    d.ok("setmaxage br0 6");
    d.ok("setfd br0 4");
    d.ok(&format!("setbridgeprio br0 {vbr_prio}"));
    d.ok("stp br0 on");
    for i in 1..=2 {
        k.ok(&format!(
            "ip link add k{i} type veth peer name v{i} netns {}",
            v.name
        ));
        k.ok(&format!("ip link set k{i} master kbr"));
        k.ok(&format!("ip link set k{i} up"));
        d.ok(&format!("addif br0 v{i}"));
    }
    let ea = Endpoint::new(&k, "a", "ka", "e", "10.6.0.1/24");
    k.ok("ip link set ka master kbr");
    k.ok("ip link set ka up");
    let eb = Endpoint::new(&v, "b", "vb", "e", "10.6.0.2/24");
    d.ok("addif br0 vb");
    Loop { k, v, d, ea, eb }
}

/// Blocked ports on both sides once converged (kernel: brport state 4; vbridge: "blocking"
/// or "discarding").
fn blocked(l: &Loop) -> (Vec<String>, Vec<String>) {
    let kb = ["k1", "k2"]
        .iter()
        .filter(|p| kernel_port_state(&l.k, p) == 4)
        .map(|s| s.to_string())
        .collect();
    let vb = vbr_port_states(&l.d)
        .into_iter()
        .filter(|(n, s)| {
            n.starts_with('v') && n.len() == 2 && (s == "blocking" || s == "discarding")
        })
        .map(|(n, _)| n)
        .collect();
    (kb, vb)
}

fn converged(l: &Loop) -> bool {
    let fwd_k = ["k1", "k2", "ka"]
        .iter()
        .filter(|p| kernel_port_state(&l.k, p) == 3)
        .count();
    let (kb, vb) = blocked(l);
    fwd_k + kb.len() == 3
        && kb.len() + vb.len() == 1
        && vbr_port_states(&l.d)
            .iter()
            .all(|(_, s)| s == "forwarding" || s == "blocking" || s == "discarding")
}

/// Sends `n` broadcasts from A and counts how many B receives.
fn broadcast_copies(l: &Loop, n: u32) -> u32 {
    let cap = Command::new("ip")
        .args([
            "netns",
            "exec",
            &l.eb.ns.name,
            "timeout",
            "4",
            "tcpdump",
            "-l",
            "-n",
            "-i",
            "e",
            "icmp and dst 10.6.0.255",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    l.ea.ns
        .ok("sysctl -q -w net.ipv4.icmp_echo_ignore_broadcasts=0");
    let _ =
        l.ea.ns
            .exec(&format!("ping -b -c {n} -i 0.2 -W 1 10.6.0.255"));
    let out = cap.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("ICMP echo request"))
        .count() as u32
}

fn loop_with_root(kernel_prio: u16, vbr_prio: u16, vbridge_is_root: bool) {
    let l = build_loop(kernel_prio, vbr_prio);
    let ok = eventually(Duration::from_secs(30), || converged(&l));
    let (kb, vb) = blocked(&l);
    assert!(
        ok,
        "no convergence: kernel blocked {kb:?}, vbridge blocked {vb:?}\n{}",
        l.d.ok("showstp br0")
    );
    // The root's ports are all designated: the blocked port is on the other side.
    if vbridge_is_root {
        assert_eq!(
            (kb.len(), vb.len()),
            (1, 0),
            "vbridge is root: the kernel bridge blocks"
        );
    } else {
        assert_eq!(
            (kb.len(), vb.len()),
            (0, 1),
            "the kernel bridge is root: vbridge blocks"
        );
    }
    let root = l.d.json("showstp br0")["designated_root"]
        .as_str()
        .unwrap()
        .to_owned();
    let root_prio = if vbridge_is_root {
        vbr_prio
    } else {
        kernel_prio
    };
    assert!(
        root.starts_with(&format!("{root_prio:04x}.")),
        "designated root {root}"
    );

    assert!(l.ea.ns.reaches("10.6.0.2"), "A -> B across the loop");
    let copies = broadcast_copies(&l, 5);
    assert!(
        (5..=6).contains(&copies),
        "5 broadcasts arrived {copies} times: a storm or a loss"
    );

    // Cut the active link: the blocked one takes over within 2 x forward delay (8 s).
    let active = if vbridge_is_root {
        if kb[0] == "k1" { "k2" } else { "k1" }.to_owned()
    } else if vb[0] == "v1" {
        "k2".to_owned()
    } else {
        "k1".to_owned()
    };
    l.k.ok(&format!("ip link del {active}"));
    let cut = Instant::now();
    let back = eventually(Duration::from_secs(12), || l.ea.ns.ping("10.6.0.2"));
    let took = cut.elapsed();
    assert!(back, "no connectivity after cutting {active}");
    assert!(
        took <= Duration::from_secs(9),
        "took {took:?} (> 2 x forward delay + 1 s)"
    );
    let _ = &l.v;
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn stp_loop_with_kernel_bridge_vbridge_root() {
    require_root();
    loop_with_root(32768, 4096, true);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn stp_loop_with_kernel_bridge_kernel_root() {
    require_root();
    loop_with_root(4096, 32768, false);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn rstp_triangle_of_vbridges_recovers_within_a_second() {
    require_root();
    let hosts: Vec<Netns> = (0..3).map(|_| Netns::new("r")).collect();
    let daemons: Vec<Daemon> = hosts.iter().map(Daemon::start).collect();
    for (i, d) in daemons.iter().enumerate() {
        d.ok("addbr br0");
        d.ok(&format!("setbridgeprio br0 {}", 4096 * (i + 1)));
        d.ok("stp br0 rstp");
    }
    // Triangle: 0-1, 1-2, 2-0.
    for (a, b) in [(0usize, 1usize), (1, 2), (2, 0)] {
        let (na, nb) = (format!("l{a}{b}"), format!("l{b}{a}"));
        hosts[a].ok(&format!(
            "ip link add {na} type veth peer name {nb} netns {}",
            hosts[b].name
        ));
        daemons[a].ok(&format!("addif br0 {na}"));
        daemons[b].ok(&format!("addif br0 {nb}"));
    }
    let e1 = Endpoint::new(&hosts[1], "x", "p1", "e", "10.7.0.1/24");
    let _e2 = Endpoint::new(&hosts[2], "y", "p2", "e", "10.7.0.2/24");
    daemons[1].ok("addif br0 p1");
    daemons[2].ok("addif br0 p2");
    assert!(e1.ns.reaches("10.7.0.2"), "no connectivity in the ring");
    // Bridge 0 is root; 1 and 2 reach it directly; the 1-2 link has the alternate port.
    // Cut 0-2: 2 must use its alternate port towards 1.
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &e1.ns.name,
            "ping",
            "-i",
            "0.01",
            "-c",
            "400",
            "-W",
            "1",
            "10.7.0.2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    hosts[0].ok("ip link del l02");
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let received = text.lines().filter(|l| l.contains("bytes from")).count();
    // 400 pings at 10 ms: at most one second's worth (100) may be lost.
    assert!(
        received >= 300,
        "only {received}/400 answered: recovery took over a second\n{}",
        text.lines().last().unwrap_or("")
    );
}

/// Captures BPDUs a real Linux kernel bridge sends and reads them with our wire parser.
#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn kernel_bpdus_parse() {
    require_root();
    let k = Netns::new("k");
    k.ok("ip link add kbr type bridge stp_state 1 hello_time 100 priority 12288");
    k.ok("ip link add kp type veth peer name kq");
    k.ok("ip link set kp master kbr");
    for dev in ["kbr", "kp", "kq"] {
        k.ok(&format!("ip link set {dev} up"));
    }
    let hex = k.ok("timeout 10 tcpdump -c 2 -xx -n -i kq stp");
    let frames: Vec<Vec<u8>> = hex
        .split("\n\t0x0000:")
        .skip(1)
        .map(|chunk| {
            chunk
                .lines()
                .flat_map(|l| {
                    l.split_once(':')
                        .map_or(l, |(_, rest)| rest)
                        .split_whitespace()
                })
                .take_while(|w| w.len() == 4 && w.chars().all(|c| c.is_ascii_hexdigit()))
                .flat_map(|w| {
                    [
                        u8::from_str_radix(&w[..2], 16).unwrap(),
                        u8::from_str_radix(&w[2..], 16).unwrap(),
                    ]
                })
                .collect()
        })
        .collect();
    assert_eq!(frames.len(), 2, "captured:\n{hex}");
    for f in &frames {
        match vbridge_wire::bpdu::parse_frame(f) {
            Ok(vbridge_wire::bpdu::Repr::Config(c)) => {
                assert_eq!(c.bridge_id.priority, 12288);
                assert_eq!(
                    c.root_id, c.bridge_id,
                    "a lone kernel bridge is its own root"
                );
                assert_eq!(c.hello_time_ticks, 256, "hello 1 s");
            }
            other => panic!("kernel BPDU {f:02x?} parsed as {other:?}"),
        }
    }
}
