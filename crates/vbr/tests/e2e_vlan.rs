//! VLANs on real kernel stacks: access ports of VLAN 10, 10 and 20 in one subnet (seed
//! 003 experiment 4), and two "hosts" joined by a trunk (experiment 5) with the tags seen
//! on the wire by tcpdump.

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn access_vlans_isolate_one_subnet() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let eps = d.endpoints(
        &host,
        &[
            ("a", "p1", "e1", "10.0.0.1/24"),
            ("b", "p2", "e2", "10.0.0.2/24"),
            ("c", "p3", "e3", "10.0.0.3/24"),
        ],
    );
    let (a, c) = (&eps[0], &eps[2]);
    d.ok("link set p1 access 10");
    d.ok("link set p2 access 10");
    d.ok("link set p3 access 20");
    assert!(a.ns.reaches("10.0.0.2"), "VLAN 10 <-> VLAN 10");
    assert!(!a.ns.ping("10.0.0.3"), "VLAN 10 must not reach VLAN 20");
    assert!(!c.ns.ping("10.0.0.2"), "VLAN 20 must not reach VLAN 10");
    // The ARP broadcasts of c stayed in VLAN 20: nobody answered, nothing leaked.
    let v = d.json("show br0");
    let port = |n: &str| {
        v[0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(port("p3")["vlan"]["vid"], 20);
    assert_eq!(port("p1")["vlan"]["mode"], "access");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn trunk_between_two_hosts_carries_tags() {
    require_root();
    let h1 = Netns::new("h");
    let h2 = Netns::new("i");
    let d1 = Daemon::start(&h1);
    let d2 = Daemon::start(&h2);
    d1.ok("addbr br0");
    d2.ok("addbr br0");
    // The trunk: a veth pair from host 1 to host 2.
    h1.ok("ip link add trunk type veth peer name trunk2");
    h1.ok(&format!("ip link set trunk2 netns {}", h2.name));
    d1.ok("addif br0 trunk");
    d2.ok("addif br0 trunk2");
    d1.ok("link set trunk trunk 10,20");
    d2.ok("link set trunk2 trunk 10,20");
    // Host 1: VLAN 10 and 20; host 2: VLAN 10 and 20, all in one subnet.
    let a10 = Endpoint::new(&h1, "a", "a10", "e", "10.1.0.1/24");
    let a20 = Endpoint::new(&h1, "b", "a20", "e", "10.1.0.3/24");
    let b10 = Endpoint::new(&h2, "c", "b10", "e", "10.1.0.2/24");
    let b20 = Endpoint::new(&h2, "d", "b20", "e", "10.1.0.4/24");
    for (d, p, v) in [
        (&d1, "a10", 10),
        (&d1, "a20", 20),
        (&d2, "b10", 10),
        (&d2, "b20", 20),
    ] {
        d.ok(&format!("addif br0 {p}"));
        d.ok(&format!("link set {p} access {v}"));
    }
    // Capture on host 2's end of the trunk while VLAN 10 and 20 talk across it.
    let mut cap = Command::new("ip")
        .args([
            "netns", "exec", &h2.name, "timeout", "15", "tcpdump", "-l", "-n", "-e", "-i",
            "trunk2", "vlan",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Start talking only once tcpdump listens (it says so on stderr); a fixed wait was
    // too short on a loaded machine.
    {
        use std::io::BufRead;
        let mut line = String::new();
        let mut err = std::io::BufReader::new(cap.stderr.take().unwrap());
        while err.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("listening on") {
            line.clear();
        }
        assert!(
            line.contains("listening on"),
            "tcpdump did not start: {line}"
        );
    }
    assert!(a10.ns.reaches("10.1.0.2"), "VLAN 10 across the trunk");
    assert!(a20.ns.reaches("10.1.0.4"), "VLAN 20 across the trunk");
    assert!(
        !a10.ns.ping("10.1.0.4"),
        "VLAN 10 must not reach VLAN 20 on the other host"
    );
    assert!(!b20.ns.ping("10.1.0.2"), "VLAN 20 must not reach VLAN 10");
    // Everything said on the trunk is captured by now (tcpdump -l writes line by line).
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SIGTERM to `timeout` (what `ip netns exec` became), which passes it to tcpdump.
    let _ = Command::new("kill")
        .args(["-TERM", &cap.id().to_string()])
        .status();
    let _ = cap.wait();
    let mut text = String::new();
    use std::io::Read;
    cap.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        text.contains("vlan 10"),
        "no VLAN 10 tags on the trunk:\n{text}"
    );
    assert!(
        text.contains("vlan 20"),
        "no VLAN 20 tags on the trunk:\n{text}"
    );
    let _ = b10;
}
