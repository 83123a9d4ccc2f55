//! Every topology in `examples/` brought up by a daemon of its own, checked with real
//! traffic, brought down, and nothing left behind (namespaces, links, nftables tables,
//! `ip_forward`). Namespace names are made unique per run (tests run in parallel).

mod common;

use std::path::PathBuf;

use common::*;

/// An example's text with each namespace name `n` (from `names`) turned into a unique
/// one; returns the file written and the new names in order.
fn example(d: &Daemon, file: &str, names: &[&str]) -> (PathBuf, Vec<String>) {
    let src = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(file),
    )
    .unwrap();
    let mut out = src;
    let mut renamed = Vec::new();
    for n in names {
        let u = uniq(n);
        out = out.replace(&format!("name = \"{n}\""), &format!("name = \"{u}\""));
        renamed.push(u);
    }
    let path = d.dir.join(file);
    std::fs::write(&path, out).unwrap();
    (path, renamed)
}

/// What a host namespace holds that `down` must give back.
fn host_state(host: &Netns) -> (Vec<String>, String, String) {
    let mut links: Vec<String> = host
        .ok("ip -o link show")
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().to_owned()))
        .collect();
    links.sort();
    (
        links,
        host.ok("nft list tables"),
        host.ok("sysctl -n net.ipv4.ip_forward"),
    )
}

fn netns_gone(names: &[String]) -> bool {
    let list = ok("ip netns list");
    names
        .iter()
        .all(|n| !list.lines().any(|l| l.split_whitespace().next() == Some(n)))
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, veth")]
fn seed004_bridge_and_two_namespaces() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let before = host_state(&host);
    let (f, n) = example(&d, "seed004-bridge.toml", &["nns1", "nns2"]);
    d.ok(&format!("up {}", f.display()));
    let (a, b) = (Netns::adopt(&n[0]), Netns::adopt(&n[1]));
    assert!(host.reaches("172.16.0.11") && host.reaches("172.16.0.21"));
    assert!(a.reaches("172.16.0.21"));
    let macs = d.ok("showmacs br0");
    for ns in [&a, &b] {
        let mac = ns.ok("cat /sys/class/net/eth0/address");
        assert!(macs.contains(mac.trim()), "{mac} in\n{macs}");
    }
    d.ok(&format!("down {}", f.display()));
    assert!(netns_gone(&n));
    assert_eq!(host_state(&host), before);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, nftables"
)]
fn seed002_docker_bridge_with_nat_and_a_published_port() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    // An outside machine, routed through the host.
    let out = outside(&host);
    let before = host_state(&host);
    let (f, n) = example(&d, "seed002-docker.toml", &["ns0", "ns1"]);
    d.ok(&format!("up {}", f.display()));
    let (ns0, ns1) = (Netns::adopt(&n[0]), Netns::adopt(&n[1]));
    // Masquerade: the outside machine answers, and
    // sees the host's address as the source.
    let line = first_echo_seen(&out, "eth0", || {
        assert!(ns0.reaches("10.77.0.2"), "ns0 reaches the outside")
    });
    assert!(
        line.contains("10.77.0.1 > 10.77.0.2"),
        "source is the host's: {line}"
    );
    assert!(ns1.reaches("10.77.0.2"));
    // The published port, from outside.
    let www = d.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "seed002").unwrap();
    ns0.ok(&format!("busybox httpd -p 80 -h {}", www.display()));
    let body = out.exec("timeout 3 busybox wget -q -O - http://10.77.0.1:8080/");
    assert_eq!(String::from_utf8_lossy(&body.stdout), "seed002");
    d.ok(&format!("down {}", f.display()));
    assert!(netns_gone(&n));
    assert_eq!(host_state(&host), before);
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, TAP")]
fn seed003_vms_in_vlans_on_one_host() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let before = host_state(&host);
    let (f, n) = example(&d, "seed003-vlan-isolation.toml", &["vm1", "vm2", "vm3"]);
    d.ok(&format!("up {}", f.display()));
    let (v1, v3) = (Netns::adopt(&n[0]), Netns::adopt(&n[2]));
    let _v2 = Netns::adopt(&n[1]);
    assert!(v3.reaches("10.10.0.2"), "VLAN 20 to VLAN 20");
    assert!(!v1.ping("10.10.0.2"), "VLAN 10 to VLAN 20: isolated");
    d.ok(&format!("down {}", f.display()));
    assert!(netns_gone(&n));
    assert_eq!(host_state(&host), before);
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, veth")]
fn seed003_two_hosts_joined_by_a_trunk() {
    require_root();
    let (h1, h2) = (Netns::new("h1"), Netns::new("h2"));
    ok(&format!(
        "ip -n {} link add trunk0 type veth peer name trunk0 netns {}",
        h1.name, h2.name
    ));
    h1.ok("ip link set trunk0 up");
    h2.ok("ip link set trunk0 up");
    let d1 = Daemon::start(&h1);
    let d2 = Daemon::start(&h2);
    let (f1, n1) = example(&d1, "seed003-trunk-host1.toml", &["a10", "a20"]);
    let (f2, n2) = example(&d2, "seed003-trunk-host2.toml", &["b10", "b20"]);
    d1.ok(&format!("up {}", f1.display()));
    d2.ok(&format!("up {}", f2.display()));
    let (a10, a20) = (Netns::adopt(&n1[0]), Netns::adopt(&n1[1]));
    let (_b10, _b20) = (Netns::adopt(&n2[0]), Netns::adopt(&n2[1]));
    let seen = tcpdump_while(&h1, &["-e", "-i", "trunk0", "vlan and icmp"], || {
        assert!(a10.reaches("10.20.0.11"), "VLAN 10 across the trunk");
        assert!(a20.reaches("10.20.0.12"), "VLAN 20 across the trunk");
        assert!(!a10.ping("10.20.0.12"), "VLAN 10 does not reach VLAN 20");
    });
    assert!(
        seen.contains("vlan 10") && seen.contains("vlan 20"),
        "tagged frames on the trunk:\n{seen}"
    );
    d1.ok(&format!("down {}", f1.display()));
    d2.ok(&format!("down {}", f2.display()));
    assert!(netns_gone(&n1) && netns_gone(&n2));
    assert!(
        h1.exec("ip link show trunk0").status.success(),
        "the trunk was not ours: kept"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, macvlan"
)]
fn seed002_macvlan() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    // The example's parent, eth1, here a veth whose peer is the parent's network.
    let net = Netns::new("n");
    ok(&format!(
        "ip -n {} link add eth1 type veth peer name eth0 netns {}",
        host.name, net.name
    ));
    host.ok("ip link set eth1 up");
    net.ok("ip addr add 10.79.0.254/24 dev eth0");
    net.ok("ip link set eth0 up");
    let before = host_state(&host);
    let (f, n) = example(&d, "seed002-macvlan.toml", &["mv1", "mv2"]);
    d.ok(&format!("up {}", f.display()));
    let mv1 = Netns::adopt(&n[0]);
    let _mv2 = Netns::adopt(&n[1]);
    assert!(mv1.reaches("10.79.0.12"), "bridge mode: each other");
    assert!(mv1.reaches("10.79.0.254"), "the parent's network");
    d.ok(&format!("down {}", f.display()));
    assert!(netns_gone(&n));
    assert_eq!(host_state(&host), before);
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, veth")]
fn seed001_stp() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let (f, n) = example(&d, "seed001-stp.toml", &["st1"]);
    d.ok(&format!("up {}", f.display()));
    let _st1 = Netns::adopt(&n[0]);
    let stp = d.ok("showstp br0");
    assert!(
        stp.contains("br0")
            && (stp.contains("listening")
                || stp.contains("learning")
                || stp.contains("forwarding")),
        "{stp}"
    );
    assert!(d.ok("show br0").contains("yes"), "STP enabled");
    d.ok(&format!("down {}", f.display()));
    assert!(netns_gone(&n));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, DHCP clients"
)]
fn dhcp_example() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let (f, n) = example(&d, "dhcp.toml", &["d1", "d2"]);
    d.ok(&format!("up {}", f.display()));
    let (d1, d2) = (Netns::adopt(&n[0]), Netns::adopt(&n[1]));
    let script = d.dir.join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = bound ] && ip addr add \"$ip/$mask\" dev \"$interface\"\nexit 0\n",
    )
    .unwrap();
    ok(&format!("chmod +x {}", script.display()));
    for ns in [&d1, &d2] {
        ns.ok(&format!(
            "busybox udhcpc -i eth0 -n -q -f -t 4 -T 1 -s {}",
            script.display()
        ));
    }
    assert!(
        d2.ok("ip -4 addr show eth0").contains("192.168.90.10/24"),
        "the static lease"
    );
    assert!(
        d1.ok("ip -4 addr show eth0").contains("192.168.90.1"),
        "a pool address"
    );
    assert!(d1.reaches("192.168.90.10"));
    d.ok(&format!("down {}", f.display()));
    assert!(netns_gone(&n));
}

/// A udhcpc script that applies the lease: address, and the router when one is given.
fn udhcpc_script(d: &Daemon) -> PathBuf {
    let script = d.dir.join("udhcpc-route.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in bound|renew)\n  ip addr add \"$ip/$mask\" dev \"$interface\"\n  [ -n \"$router\" ] && ip route replace default via \"${router%% *}\"\n;; esac\nexit 0\n",
    )
    .unwrap();
    ok(&format!("chmod +x {}", script.display()));
    script
}

/// busybox udhcpc once in `ns` with `script`; its IPv4 address line afterwards.
fn lease(ns: &Netns, script: &std::path::Path) -> String {
    let _ = ns.exec(&format!(
        "timeout 15 busybox udhcpc -i eth0 -n -q -f -t 5 -T 1 -s {}",
        script.display()
    ));
    ns.ok("ip -4 -o addr show eth0")
}

/// The first ICMP echo request `ns` sees on `dev` while `f` runs: its tcpdump line.
fn first_echo_seen(ns: &Netns, dev: &str, f: impl FnOnce()) -> String {
    tcpdump_while(
        ns,
        &["-c", "1", "-i", dev, "icmp[icmptype] == icmp-echo"],
        f,
    )
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, TAP, nftables, DHCP clients"
)]
fn seed003_vlan_router() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    let out = outside(&host);
    let before = host_state(&host);
    let (f, n) = example(&d, "seed003-vlan-router.toml", &["vm1", "vm2", "vm3"]);
    d.ok(&format!("up {}", f.display()));
    let (vm1, vm2, vm3) = (
        Netns::adopt(&n[0]),
        Netns::adopt(&n[1]),
        Netns::adopt(&n[2]),
    );
    // DHCP on VLAN 10 from the gateway br0.10.
    let script = udhcpc_script(&d);
    let got = lease(&vm1, &script);
    assert!(got.contains("10.10.0.1"), "a lease on VLAN 10: {got}");
    assert!(d.ok("dhcp leases br0.10").contains("10.10.0.1"));
    // Routed from VLAN 10 to VLAN 20 as it is (no NAT between the VLANs).
    let line = first_echo_seen(&vm2, "eth0", || assert!(vm1.reaches("10.20.0.2")));
    assert!(
        line.contains("10.10.0.1"),
        "routed, not masqueraded: {line}"
    );
    // Masqueraded on the way out of the host.
    let line = first_echo_seen(&out, "eth0", || assert!(vm1.reaches("10.77.0.2")));
    assert!(
        line.contains("10.77.0.1 > 10.77.0.2"),
        "masqueraded: {line}"
    );
    assert!(vm2.reaches("10.77.0.2"));
    // VLAN 20 does not reach VLAN 10's gateway, even with an address of its subnet.
    assert!(!vm3.ping("10.10.0.1"), "VLAN 20 is apart from VLAN 10");
    // The gateways persist across a kill -9 of the daemon.
    d.kill9();
    d.spawn();
    assert!(
        host.ok("ip -4 -o addr show br0.10")
            .contains("10.10.0.1/24"),
        "the gateway kept its address"
    );
    assert!(vm1.reaches("10.20.0.2"), "routing again after the restart");
    assert!(d.ok("dhcp leases br0.10").contains("10.10.0.1"));
    d.ok(&format!("down {}", f.display()));
    assert!(netns_gone(&n));
    assert_eq!(host_state(&host), before);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, DHCP clients"
)]
fn seed002_neutron_local_flat_vlan_on_two_nodes() {
    require_root();
    let (h1, h2) = (Netns::new("h1"), Netns::new("h2"));
    ok(&format!(
        "ip -n {} link add eth1 type veth peer name eth1 netns {}",
        h1.name, h2.name
    ));
    h1.ok("ip link set eth1 up");
    h2.ok("ip link set eth1 up");
    let d1 = Daemon::start(&h1);
    let d2 = Daemon::start(&h2);
    let (before1, before2) = (host_state(&h1), host_state(&h2));
    let (f1, n1) = example(
        &d1,
        "seed002-neutron-node1.toml",
        &["l1", "l2", "f1", "v101", "v102"],
    );
    let (f2, n2) = example(&d2, "seed002-neutron-node2.toml", &["f2", "w101", "w102"]);
    d1.ok(&format!("up {}", f1.display()));
    d2.ok(&format!("up {}", f2.display()));
    let [l1, l2, fl1, v101, v102] = [0, 1, 2, 3, 4].map(|i| Netns::adopt(&n1[i]));
    let [fl2, w101, w102] = [0, 1, 2].map(|i| Netns::adopt(&n2[i]));
    let script = udhcpc_script(&d1);
    // Each network's own DHCP server (all on node 1); node 2's namespaces lease across
    // eth1, each from the server of its own network.
    let mut got = std::collections::BTreeMap::new();
    for (ns, net) in [
        (&l1, "10.0.1."),
        (&l2, "10.0.2."),
        (&fl1, "10.1.0."),
        (&v101, "10.101.0."),
        (&v102, "10.102.0."),
        (&fl2, "10.1.0."),
        (&w101, "10.101.0."),
        (&w102, "10.102.0."),
    ] {
        let line = lease(ns, &script);
        let ip = line
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_default()
            .to_owned();
        assert!(
            ip.starts_with(net),
            "{}: a lease in {net}x: {line}",
            ns.name
        );
        got.insert(ns.name.clone(), ip);
    }
    assert!(
        !l1.ok("ip route").contains("default"),
        "a local network offers no router"
    );
    // Two local networks never see each other, even on one subnet.
    assert!(l1.reaches("10.0.1.1"));
    l1.ok("ip addr add 10.0.2.99/24 dev eth0");
    assert!(!l1.ping(&got[&l2.name]), "local1 does not reach local2");
    // Flat and vlan networks span the nodes; segments stay apart on the shared uplink.
    let seen = tcpdump_while(&h1, &["-e", "-i", "eth1", "vlan and icmp"], || {
        assert!(fl2.reaches(&got[&fl1.name]), "flat across eth1");
        assert!(w101.reaches(&got[&v101.name]), "segment 101 across eth1");
        assert!(w102.reaches(&got[&v102.name]), "segment 102 across eth1");
        w101.ok("ip addr add 10.102.0.99/24 dev eth0");
        assert!(
            !w101.ping(&got[&v102.name]),
            "segment 101 does not reach 102"
        );
    });
    assert!(
        seen.contains("vlan 101") && seen.contains("vlan 102"),
        "tagged frames on the uplink:\n{seen}"
    );
    d1.ok(&format!("down {}", f1.display()));
    d2.ok(&format!("down {}", f2.display()));
    assert!(netns_gone(&n1) && netns_gone(&n2));
    assert_eq!(host_state(&h1), before1, "node 1 as it was (eth1 kept)");
    assert_eq!(host_state(&h2), before2, "node 2 as it was");
}
