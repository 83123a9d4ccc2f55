//! The kernel fast path between veth-connected namespaces: flows go to the kernel once
//! the switch knows them (iperf3 TCP counted on the ports), come back the moment the
//! switch would decide otherwise (isolation set, a station moving to another port), are
//! sent out of a netdev whose veth peer is next to the switch, and carry VLAN tags across
//! a trunk between two switches; broadcasts are flooded by the kernel within their VLAN,
//! once, learned from and counted by the switch, and follow VLAN changes at once; and
//! frames for the bridge's own address, or for a VLAN gateway's, reach its TAP through
//! the kernel, and the host's frames come back the same way.

mod common;

use std::time::Duration;

use common::*;

fn fast_flows(d: &Daemon) -> u64 {
    d.json("stats br0")[0]["fast_flows"].as_u64().unwrap()
}

/// Whether two flows reach the kernel while `from` keeps pinging `to` (a new port joins
/// the fast path a moment after it is added, and flows are offered by their frames).
fn offloaded(d: &Daemon, from: &Netns, to: &str) -> bool {
    eventually(Duration::from_secs(3), || {
        from.ping(to);
        fast_flows(d) >= 2
    })
}

/// Waits (up to 3 s) for port `p` of br0 to join the fast path; panics if it does not.
fn wait_fast_path(d: &Daemon, p: &str) {
    assert!(
        eventually(
            Duration::from_secs(3),
            || port(&d.json("stats br0"), p)["fast_path"] == true
        ),
        "{}",
        d.json("stats br0")
    );
}

fn port<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no port {name} in {v}"))
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn flows_go_to_the_kernel_and_come_back_when_the_switch_changes_its_mind() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let (a, b, c) = (Netns::new("a"), Netns::new("b"), Netns::new("c"));
    for (ns, ip) in [
        (&a, "10.7.0.1/24"),
        (&b, "10.7.0.2/24"),
        (&c, "10.7.0.3/24"),
    ] {
        d.ok(&format!("connect {} br0 --veth --ip {ip}", ns.name));
    }
    let pa = &port_of(&a.name, "eth0");
    let pb = &port_of(&b.name, "eth0");
    wait_fast_path(&d, pa);

    // Known both ways after the first exchange: two flows in the kernel.
    assert!(a.reaches("10.7.0.2"));
    assert!(offloaded(&d, &a, "10.7.0.2"));

    // TCP through the kernel, counted on the switch's ports all the same.
    let before = port(&d.json("stats br0"), pa)["counters"]["rx_bytes"]
        .as_u64()
        .unwrap();
    b.iperf3_server("10.7.0.2");
    a.ok("iperf3 -c 10.7.0.2 -t 2");
    std::thread::sleep(Duration::from_millis(1500)); // the kernel's counts read
    let after = port(&d.json("stats br0"), pa)["counters"]["rx_bytes"]
        .as_u64()
        .unwrap();
    assert!(after - before > 100_000_000, "{before} -> {after}");

    // Isolation on both ports: the switch would drop, so the kernel must stop at once.
    d.ok(&format!("link set {pa} isolated on"));
    d.ok(&format!("link set {pb} isolated on"));
    assert!(!a.ping("10.7.0.2"), "isolated ports must not talk");
    d.ok(&format!("link set {pa} isolated off"));
    d.ok(&format!("link set {pb} isolated off"));
    assert!(a.reaches("10.7.0.2"));

    // B "migrates" to C's port: same MAC and address, B's link down. The first frame
    // from the new place moves the station; the kernel's old flow must follow.
    let mac_b = b.ok("cat /sys/class/net/eth0/address").trim().to_owned();
    assert!(offloaded(&d, &a, "10.7.0.2"));
    b.ok("ip link set eth0 down");
    c.ok("ip link set eth0 down");
    c.ok(&format!("ip link set eth0 address {mac_b}"));
    c.ok("ip addr flush dev eth0");
    c.ok("ip addr add 10.7.0.2/24 dev eth0");
    c.ok("ip link set eth0 up");
    c.ok("ping -c1 -W1 10.7.0.1");
    assert!(a.reaches("10.7.0.2"), "A reaches B at its new port");
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn vlan_access_ports_share_the_fast_path_within_their_vlan() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let (a, b, c) = (Netns::new("a"), Netns::new("b"), Netns::new("c"));
    let mut names = Vec::new();
    for (ns, ip, vlan) in [
        (&a, "10.8.0.1/24", 10),
        (&b, "10.8.0.2/24", 10),
        (&c, "10.8.0.3/24", 20),
    ] {
        d.ok(&format!("connect {} br0 --veth --ip {ip}", ns.name));
        let p = port_of(&ns.name, "eth0");
        d.ok(&format!("link set {p} access {vlan}"));
        names.push(p);
    }

    // VLAN 10 <-> VLAN 10 goes to the kernel; VLAN 20 stays apart.
    assert!(a.reaches("10.8.0.2"));
    assert!(offloaded(&d, &a, "10.8.0.2"));
    assert!(!a.ping("10.8.0.3"), "VLAN 10 must not reach VLAN 20");
    assert!(!c.ping("10.8.0.2"), "VLAN 20 must not reach VLAN 10");

    // B moves to VLAN 20: A's flows to B are taken back at once, C and B now talk.
    d.ok(&format!("link set {} access 20", names[1]));
    assert!(
        !a.ping("10.8.0.2"),
        "A (VLAN 10) must no longer reach B (VLAN 20)"
    );
    assert!(c.reaches("10.8.0.2"));
    assert!(offloaded(&d, &c, "10.8.0.2"));
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_peer_moved_next_to_the_switch_gets_frames_sent_out_of_the_netdev() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    d.ok(&format!("connect {} br0 --veth --ip 10.6.0.1/24", a.name));
    d.ok(&format!("connect {} br0 --veth --ip 10.6.0.2/24", b.name));
    let pb = &port_of(&b.name, "eth0");
    assert!(a.reaches("10.6.0.2"));
    assert!(offloaded(&d, &a, "10.6.0.2"));

    // B's end moves into the switch's own namespace: the kernel can no longer hand
    // frames to a peer elsewhere (`bpf_redirect_peer` crosses namespaces only), so A's
    // flows are taken back and offered again to be sent out of B's port's netdev
    // (`bpf_redirect`), which delivers them to its peer next to the switch.
    b.ok(&format!("ip link set eth0 netns {}", host.name));
    host.ok("ip addr add 10.6.0.2/24 dev eth0");
    host.ok("ip link set eth0 up");
    assert!(
        a.reaches("10.6.0.2"),
        "A reaches B's end next to the switch"
    );
    assert!(port(&d.json("stats br0"), pb)["fast_path"] == true);
    let before = fast_frames(&d);
    assert!(offloaded(&d, &a, "10.6.0.2"), "{}", d.json("stats br0"));
    host.iperf3_server("10.6.0.2");
    a.ok("iperf3 -c 10.6.0.2 -t 1");
    std::thread::sleep(Duration::from_millis(1500)); // the kernel's counts read
    let carried = fast_frames(&d) - before;
    assert!(carried > 10_000, "the kernel carried {carried} frames");
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

/// What the kernel has carried for `d`'s br0, in frames.
fn fast_frames(d: &Daemon) -> u64 {
    d.json("stats br0")[0]["fast_frames"].as_u64().unwrap()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tagged_flows_cross_a_trunk_in_the_kernel() {
    require_root();
    // Two "hosts", each a daemon, joined by a trunk (a veth pair) of VLANs 10 and 20;
    // an access port of VLAN 10 on each.
    let (h1, h2) = (Netns::new("h"), Netns::new("i"));
    let (mut d1, mut d2) = (Daemon::start(&h1), Daemon::start(&h2));
    h1.ok("ip link add trunk type veth peer name trunk2");
    h1.ok(&format!("ip link set trunk2 netns {}", h2.name));
    let a = Endpoint::new(&h1, "a", "a10", "e", "10.6.0.1/24");
    let b = Endpoint::new(&h2, "b", "b10", "e", "10.6.0.2/24");
    for (d, trunk, access) in [(&d1, "trunk", "a10"), (&d2, "trunk2", "b10")] {
        d.ok("addbr br0");
        d.ok(&format!("addif br0 {trunk}"));
        d.ok(&format!("link set {trunk} trunk 10,20"));
        d.ok(&format!("addif br0 {access}"));
        d.ok(&format!("link set {access} access 10"));
        for p in [trunk, access] {
            wait_fast_path(d, p);
        }
    }

    // Each host hands both directions to the kernel: towards the trunk the program
    // pushes VLAN 10's tag, from it the program pops it.
    assert!(a.ns.reaches("10.6.0.2"));
    assert!(
        eventually(Duration::from_secs(5), || {
            a.ns.ping("10.6.0.2");
            fast_flows(&d1) >= 2 && fast_flows(&d2) >= 2
        }),
        "{}\n{}",
        d1.json("stats br0"),
        d2.json("stats br0")
    );

    // TCP across: the kernel carries it on both hosts, and the tags are on the trunk.
    let (k1, k2) = (fast_frames(&d1), fast_frames(&d2));
    b.ns.iperf3_server("10.6.0.2");
    let tags = tcpdump_while(&h2, &["-c", "5", "-e", "-i", "trunk2", "vlan 10"], || {
        a.ns.ok("iperf3 -c 10.6.0.2 -t 2");
    });
    assert!(
        tags.contains("vlan 10"),
        "no VLAN 10 tags on the trunk:\n{tags}"
    );
    std::thread::sleep(Duration::from_millis(1500)); // the kernel's counts read
    let (c1, c2) = (fast_frames(&d1) - k1, fast_frames(&d2) - k2);
    assert!(
        c1 > 10_000 && c2 > 10_000,
        "kernel carried {c1} and {c2} frames"
    );

    // VLAN 10 leaves host 2's trunk: the switch would drop, so the kernel stops at once.
    d2.ok("link set trunk2 trunk 20");
    assert!(!a.ns.ping("10.6.0.2"), "VLAN 10 is off the trunk");
    d2.ok("link set trunk2 trunk 10,20");
    assert!(a.ns.reaches("10.6.0.2"));
    assert!(d1.alive(), "{}", d1.log());
    assert!(d2.alive(), "{}", d2.log());
}

/// `rx_packets` of `eth0` in `ns`.
fn rx_packets(ns: &Netns) -> u64 {
    ns.ok("cat /sys/class/net/eth0/statistics/rx_packets")
        .trim()
        .parse()
        .unwrap()
}

/// Sends `n` 60-byte broadcasts of an experimental EtherType from `eth0` in `ns`, with
/// source MAC `src` (hex, no colons), in bursts of 100 a millisecond apart (within what
/// the switch's receive ring holds, so none is lost to a full ring however the test
/// threads are scheduled).
fn broadcasts(ns: &Netns, src: &str, n: usize) {
    broadcasts_on(ns, "eth0", src, n);
}

/// [`broadcasts`] from netdev `dev`.
fn broadcasts_on(ns: &Netns, dev: &str, src: &str, n: usize) {
    ns.ok(&format!(
        "python3 -c \"import socket, time; s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); \
         s.bind(('{dev}', 0)); f=bytes.fromhex('ffffffffffff{src}88b5')+bytes(46); \
         [(s.send(f), i % 100 == 99 and time.sleep(0.001)) for i in range({n})]\""
    ));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn broadcasts_are_flooded_by_the_kernel_within_their_vlan_and_learned_by_the_switch() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let spaces: Vec<Netns> = ["a", "b", "c", "d"].into_iter().map(Netns::new).collect();
    let mut names = Vec::new();
    for (ns, vlan) in spaces.iter().zip([10, 10, 10, 20]) {
        d.ok(&format!("connect {} br0 --veth", ns.name));
        let p = port_of(&ns.name, "eth0");
        d.ok(&format!("link set {p} access {vlan}"));
        names.push(p);
    }
    for p in &names {
        wait_fast_path(&d, p);
    }
    let [a, b, c, dd] = &spaces[..] else {
        unreachable!()
    };
    let stats = |d: &Daemon| d.json("stats br0");
    let count =
        |v: &serde_json::Value, p: &str, what: &str| port(v, p)["counters"][what].as_u64().unwrap();

    // 3000 broadcasts from A: B and C get each once (the kernel floods, the switch does
    // not do it again), D in VLAN 20 none.
    let n = 3000;
    let rx = |s: &[&Netns]| s.iter().map(|ns| rx_packets(ns)).collect::<Vec<_>>();
    let (before, s0) = (rx(&[b, c, dd]), stats(&d));
    broadcasts(a, "02000000aa0a", n);
    std::thread::sleep(Duration::from_millis(1500)); // the kernel's counts read
    let (after, s1) = (rx(&[b, c, dd]), stats(&d));
    let got: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    for i in [0, 1] {
        assert!(
            (n as u64..n as u64 + 20).contains(&got[i]),
            "each broadcast once in VLAN 10: {got:?}"
        );
    }
    assert!(got[2] < 20, "nothing in VLAN 20: {got:?}");
    assert!(s1[0]["fast_floods"].as_u64().unwrap() >= 1, "{s1}");
    let kernel = s1[0]["fast_frames"].as_u64().unwrap() - s0[0]["fast_frames"].as_u64().unwrap();
    assert!(kernel >= n as u64 / 2, "the kernel flooded {kernel} of {n}");
    // The switch learned the source and counted every frame, flooded by whom it may.
    let macs = d.json("showmacs br0");
    assert!(
        macs.as_array()
            .unwrap()
            .iter()
            .any(|r| r["mac"] == "02:00:00:00:aa:0a" && r["port"] == names[0].as_str()),
        "{macs}"
    );
    // `trace` says so (a flood taken back when a port's MTU is first read comes back
    // with the next broadcast).
    let trace = || {
        d.json(&format!(
            "trace br0 --in {} --src 02:00:00:00:aa:0a --dst ff:ff:ff:ff:ff:ff --ethertype 88b5",
            names[0]
        ))
    };
    assert!(
        eventually(Duration::from_secs(3), || {
            broadcasts(a, "02000000aa0a", 10);
            trace()["fast_path"]
                .as_str()
                .unwrap()
                .contains("flooded by the kernel now")
        }),
        "{}\n{}",
        trace(),
        d.log()
    );
    let rx_a = count(&s1, &names[0], "rx_flooded") - count(&s0, &names[0], "rx_flooded");
    let tx_b = count(&s1, &names[1], "tx_packets") - count(&s0, &names[1], "tx_packets");
    assert!(rx_a >= n as u64 && tx_b >= n as u64, "{rx_a} {tx_b}");

    // C moves to VLAN 20: A's broadcasts stop reaching it at once, B still gets them.
    d.ok(&format!("link set {} access 20", names[2]));
    let before = rx(&[b, c, dd]);
    broadcasts(a, "02000000aa0a", n);
    std::thread::sleep(Duration::from_millis(300));
    let after = rx(&[b, c, dd]);
    let got: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    assert!(got[0] >= n as u64 && got[0] < n as u64 + 20, "{got:?}");
    assert!(
        got[1] < 20 && got[2] < 20,
        "C and D are in VLAN 20: {got:?}"
    );
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

/// TCP between namespace `ns` (`ns_ip`) and the host's interface `tap` (`tap_ip`), a
/// TAP port of br0 the daemon reads, carried by the kernel both ways: `ns`'s frames are
/// handed to the TAP's netdev as received frames, counted on the TAP's port; the
/// host's, met at the TAP's egress once it joins the fast path (within a housekeeping
/// tick of the bridge's fast path being made). The data is counted, not only the
/// (small) acknowledgements.
fn tcp_through_the_kernel_both_ways(
    d: &Daemon,
    host: &Netns,
    tap: &str,
    tap_ip: &str,
    ns: &Netns,
    ns_ip: &str,
) {
    assert!(ns.reaches(tap_ip));
    assert!(
        eventually(Duration::from_secs(3), || {
            ns.ping(tap_ip);
            fast_flows(d) >= 1
        }),
        "{}",
        d.json("stats br0")
    );
    // TCP from `client` to `server` (at `ip`): the bytes sent out of port `to`, the
    // server's (the data), and how many bytes the kernel carried, once its counts are
    // read.
    let transfer = |server: &Netns, ip: &str, client: &Netns, to: &str| {
        let fast = |v: &serde_json::Value| v[0]["fast_bytes"].as_u64().unwrap();
        let tx = |v: &serde_json::Value| port(v, to)["counters"]["tx_bytes"].as_u64().unwrap();
        let s0 = d.json("stats br0");
        server.iperf3_server(ip);
        client.ok(&format!("iperf3 -c {ip} -t 2"));
        std::thread::sleep(Duration::from_millis(1500)); // the kernel's counts read
        let s1 = d.json("stats br0");
        (tx(&s1) - tx(&s0), fast(&s1) - fast(&s0))
    };
    let (sent, carried) = transfer(host, tap_ip, ns, tap);
    assert!(sent > 100_000_000, "{sent} bytes to {tap}");
    assert!(
        carried * 10 > sent * 9,
        "the kernel carried {carried} of {sent} bytes to {tap}"
    );

    wait_fast_path(d, tap);
    assert!(
        eventually(Duration::from_secs(3), || {
            host.exec(&format!("ping -c1 -W1 {ns_ip}"));
            fast_flows(d) >= 2
        }),
        "{}",
        d.json("stats br0")
    );
    let to_ns = port_of(&ns.name, "eth0");
    let (sent, carried) = transfer(ns, ns_ip, host, &to_ns);
    assert!(sent > 100_000_000, "{sent} bytes to {to_ns}");
    assert!(
        carried * 10 > sent * 9,
        "the kernel carried {carried} of {sent} bytes from the host"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn frames_to_the_bridge_s_own_address_go_through_the_kernel() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip addr add 10.9.0.1/24 dev br0");
    host.ok("ip link set br0 up");
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    for (ns, ip) in [(&a, "10.9.0.2/24"), (&b, "10.9.0.3/24")] {
        d.ok(&format!(
            "connect {} br0 --veth --ip {ip} --gateway 10.9.0.1",
            ns.name
        ));
        wait_fast_path(&d, &port_of(&ns.name, "eth0"));
    }
    let pa = port_of(&a.name, "eth0");

    // A's frames to the host port (a TAP the daemon reads) are handed to the kernel,
    // which has the TAP's netdev receive them; the host's frames to A too.
    tcp_through_the_kernel_both_ways(&d, &host, "br0", "10.9.0.1", &a, "10.9.0.2");
    let t = d.json(&format!(
        "trace br0 --in {pa} --src {} --dst {}",
        a.ok("cat /sys/class/net/eth0/address").trim(),
        host.ok("cat /sys/class/net/br0/address").trim()
    ));
    assert!(
        t["fast_path"]
            .as_str()
            .unwrap()
            .contains("in the kernel fast path now"),
        "{t}"
    );

    // Broadcasts from A reach B and the host port, flooded by the kernel.
    assert!(
        eventually(Duration::from_secs(3), || {
            broadcasts(&a, "02000000bb0b", 10);
            d.json("stats br0")[0]["fast_floods"].as_u64().unwrap() >= 1
        }),
        "{}",
        d.json("stats br0")
    );
    // Each reaches B and the host exactly once (the host's copy counted by a packet
    // socket on br0: the TAP's own counters see only the daemon's writes).
    let before = rx_packets(&b);
    // The counter says "ready" once bound, then counts until 1000 have come and 0.5 s
    // passed without another (a duplicate would show), or 10 s in all.
    let mut counter = std::process::Command::new("ip")
        .args(["netns", "exec", &host.name, "python3", "-u", "-c"])
        .arg(
            "import socket, time\n\
             s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))\n\
             s.bind(('br0', 0)); print('ready'); n = 0; end = time.time() + 10\n\
             while time.time() < end:\n\
             \x20   s.settimeout(0.5 if n >= 1000 else max(end - time.time(), 0.01))\n\
             \x20   try:\n        s.recv(100); n += 1\n\
             \x20   except socket.timeout:\n        if n >= 1000: break\n\
             print(n)",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(counter.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    broadcasts(&a, "02000000bb0b", 1000);
    let at_host: u64 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    counter.wait().unwrap();
    assert_eq!(at_host, 1000, "the host got each broadcast once");
    let at_b = rx_packets(&b) - before;
    assert!((1000..1020).contains(&at_b), "B got {at_b}");

    // The host's own broadcasts stay in the switch (the program meets them at the TAP's
    // egress, before the switch could see their headers): still one flood in the
    // kernel, A's, and both namespaces get the host's frames, from the switch.
    let floods = || d.json("stats br0")[0]["fast_floods"].as_u64().unwrap();
    assert_eq!(floods(), 1, "{}", d.json("stats br0"));
    let (a0, b0) = (rx_packets(&a), rx_packets(&b));
    let host_mac = host
        .ok("cat /sys/class/net/br0/address")
        .trim()
        .replace(':', "");
    broadcasts_on(&host, "br0", &host_mac, 100);
    assert!(
        eventually(Duration::from_secs(3), || rx_packets(&a) - a0 >= 100
            && rx_packets(&b) - b0 >= 100),
        "a got {}, b {}",
        rx_packets(&a) - a0,
        rx_packets(&b) - b0
    );
    assert_eq!(floods(), 1, "{}", d.json("stats br0"));
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_vlan_gateway_s_frames_go_through_the_kernel() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    let a = Netns::new("a");
    // br0.10, the host's interface on VLAN 10 (a TAP the daemon reads), and A on an
    // access port of VLAN 10: the kernel pops no tag (both are access ports) and hands
    // A's frames to br0.10's netdev, the host's to A.
    let topo = d.dir.join("gw.toml");
    std::fs::write(
        &topo,
        format!(
            "[[bridge]]\nname = \"br0\"\n\n[[bridge.vlan]]\nvid = 10\n\
             addresses = [\"10.12.0.1/24\"]\n\n[[namespace]]\nname = \"{}\"\n\
             bridge = \"br0\"\naddresses = [\"10.12.0.2/24\"]\naccess = 10\n",
            a.name
        ),
    )
    .unwrap();
    d.ok(&format!("up {}", topo.display()));
    wait_fast_path(&d, &port_of(&a.name, "eth0"));
    tcp_through_the_kernel_both_ways(&d, &host, "br0.10", "10.12.0.1", &a, "10.12.0.2");
    assert_eq!(
        port(&d.json("stats br0"), "br0.10")["kind"],
        "gateway",
        "{}",
        d.json("stats br0")
    );
    d.ok(&format!("down {}", topo.display()));
    assert!(d.alive(), "daemon died:\n{}", d.log());
}
