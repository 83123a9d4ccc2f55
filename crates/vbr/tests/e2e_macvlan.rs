//! Namespaces on the kernel's macvlan (seed 002), from the CLI and from a topology:
//! bridge-mode macvlans reach each other and the parent's network, private ones only
//! the parent's network; bad parents and taken names are refused; disconnect and
//! `down` remove exactly what was made.

mod common;

use common::*;

/// The parent: a veth end `up0` in the daemon's namespace whose peer sits in `net`
/// (10.79.0.254/24), the network the macvlans join.
fn parent(host: &Netns) -> Netns {
    let net = Netns::new("n");
    ok(&format!(
        "ip -n {} link add up0 type veth peer name eth0 netns {}",
        host.name, net.name
    ));
    host.ok("ip link set up0 up");
    net.ok("ip addr add 10.79.0.254/24 dev eth0");
    net.ok("ip link set eth0 up");
    net
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, macvlan"
)]
fn macvlan_namespaces_from_the_cli() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let net = parent(&host);
    let (m1, m2, m3, m4) = (
        Netns::new("m1"),
        Netns::new("m2"),
        Netns::new("m3"),
        Netns::new("m4"),
    );
    d.ok(&format!(
        "connect {} --macvlan up0 --ip 10.79.0.1/24",
        m1.name
    ));
    d.ok(&format!(
        "connect {} --macvlan up0 --mode bridge --ip 10.79.0.2/24",
        m2.name
    ));
    assert!(
        m1.reaches("10.79.0.2"),
        "bridge mode: macvlans see each other"
    );
    assert!(m1.reaches("10.79.0.254"), "and the parent's network");
    let kind = m1.ok("ip -d link show eth0");
    assert!(kind.contains("macvlan mode bridge"), "{kind}");
    d.ok(&format!(
        "connect {} --macvlan up0 --mode private --ip 10.79.0.3/24",
        m3.name
    ));
    d.ok(&format!(
        "connect {} --macvlan up0 --mode private --ip 10.79.0.4/24",
        m4.name
    ));
    assert!(m3.reaches("10.79.0.254"), "private: the parent's network");
    assert!(!m3.ping("10.79.0.4"), "private: not each other");
    // Refusals: no such parent, the loopback device, a name taken in the namespace.
    let x = Netns::new("x");
    for (args, says) in [
        (
            format!("connect {} --macvlan nope0 --ip 10.79.0.9/24", x.name),
            "no such network interface",
        ),
        (
            format!("connect {} --macvlan lo --ip 10.79.0.9/24", x.name),
            "loopback",
        ),
        (
            format!("connect {} --macvlan up0 --ip 10.79.0.9/24", m1.name),
            "already has a device eth0",
        ),
        (
            format!("connect {} --macvlan up0 --dhcp --ip 10.79.0.9/24", x.name),
            "cannot be used with",
        ),
    ] {
        let o = d.vbr(&args);
        assert_ne!(o.status.code(), Some(0), "{args}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(says), "{args}: {e}");
    }
    assert!(
        !x.exec("ip link show eth0").status.success(),
        "nothing made"
    );
    // disconnect removes exactly that macvlan; one vbridge did not make is refused.
    d.ok(&format!("disconnect {} --macvlan", m1.name));
    assert!(!m1.exec("ip link show eth0").status.success());
    assert!(m2.reaches("10.79.0.254"), "the others stay");
    x.ok("ip link add eth0 type veth peer name eth1");
    let o = d.vbr(&format!("disconnect {} --macvlan", x.name));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        x.exec("ip link show eth0").status.success(),
        "not ours: kept"
    );
    drop(net);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, macvlan"
)]
fn macvlan_namespaces_from_a_topology_come_and_go() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let _net = parent(&host);
    let t = uniq("v");
    let topo = d.dir.join("mv.toml");
    std::fs::write(
        &topo,
        format!(
            "[[namespace]]\nname = \"{t}a\"\naddresses = [\"10.79.0.11/24\"]\nmacvlan = {{ parent = \"up0\" }}\n\n[[namespace]]\nname = \"{t}b\"\naddresses = [\"10.79.0.12/24\"]\nmacvlan = {{ parent = \"up0\", mode = \"vepa\" }}\n"
        ),
    )
    .unwrap();
    d.ok(&format!("up {}", topo.display()));
    let (a, b) = (
        Netns::adopt(&format!("{t}a")),
        Netns::adopt(&format!("{t}b")),
    );
    assert!(a.reaches("10.79.0.254"));
    assert!(b.ok("ip -d link show eth0").contains("macvlan mode vepa"));
    // Again: nothing changes.
    d.ok(&format!("up {}", topo.display()));
    d.ok(&format!("down {}", topo.display()));
    assert!(
        !ok("ip netns list").contains(&format!("{t}a")),
        "namespaces gone"
    );
    // Bad settings are refused with file, line and field.
    std::fs::write(
        &topo,
        "[[bridge]]\nname = \"brm\"\n[[namespace]]\nname = \"q\"\nbridge = \"brm\"\nmacvlan = { parent = \"up0\" }\n",
    )
    .unwrap();
    let o = d.vbr(&format!("up {}", topo.display()));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not both"));
    std::fs::write(
        &topo,
        "[[namespace]]\nname = \"q\"\nmacvlan = { parent = \"up0\", mode = \"fast\" }\n",
    )
    .unwrap();
    let o = d.vbr(&format!("up {}", topo.display()));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("namespace[0].macvlan.mode"));
}
