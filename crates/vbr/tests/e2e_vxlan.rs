//! VXLAN between two "hosts" (namespaces, each with its own daemon) joined by an
//! underlay veth: a namespace on each host's bridge reaches the other through the
//! tunnel (the tunnel's and the namespaces' MTU the underlay's less 50), tcpdump on the
//! underlay sees VXLAN with the right VNI, a daemon restart keeps
//! the tunnel, `vxlan del` removes exactly the netdev vbridge made, and bad input is
//! refused before anything is made.

mod common;

use common::*;

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, vxlan"
)]
fn namespaces_on_two_hosts_reach_each_other_over_vxlan() {
    require_root();
    let (h1, h2) = (Netns::new("h"), Netns::new("i"));
    h1.ok("ip link add u1 type veth peer name u2");
    h1.ok(&format!("ip link set u2 netns {}", h2.name));
    for (h, dev, ip) in [(&h1, "u1", "10.201.0.1/24"), (&h2, "u2", "10.201.0.2/24")] {
        h.ok(&format!("ip addr add {ip} dev {dev}"));
        h.ok(&format!("ip link set {dev} up"));
    }
    let (mut d1, d2) = (Daemon::start(&h1), Daemon::start(&h2));
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    for (d, local, remote, ns, ip) in [
        (&d1, "10.201.0.1", "10.201.0.2", &a, "10.61.0.1/24"),
        (&d2, "10.201.0.2", "10.201.0.1", &b, "10.61.0.2/24"),
    ] {
        d.ok("addbr br0");
        d.ok(&format!(
            "vxlan add vx0 --bridge br0 --vni 42 --local {local} --remote {remote}"
        ));
        d.ok(&format!("connect {} br0 --ip {ip}", ns.name));
    }
    // The tunnel's MTU is the underlay's less 50, and so is a connected namespace's.
    assert!(h1.ok("ip -o link show vx0").contains("mtu 1450"));
    assert!(a.ok("ip -o link show eth0").contains("mtu 1450"));
    let dump = tcpdump_while(&h2, &["-v", "-c", "4", "-i", "u2", "udp port 4789"], || {
        assert!(a.reaches("10.61.0.2"), "a reaches b over the tunnel");
    });
    assert!(dump.contains("VXLAN") && dump.contains("vni 42"), "{dump}");
    let macs = d1.ok("showmacs br0");
    let mac_b = b.ok("cat /sys/class/net/eth0/address");
    assert!(
        macs.contains(mac_b.trim()),
        "b's MAC learned on host 1:\n{macs}"
    );

    // A restart (even kill -9) finds its tunnel again.
    d1.kill9();
    d1.spawn();
    assert!(a.reaches("10.61.0.2"), "the tunnel survives a restart");
    assert_eq!(h1.ok("ip -o link show type vxlan").lines().count(), 1);

    // Its netdev deleted by hand: the port is made again (within a second or two).
    h1.ok("ip link del vx0");
    assert!(
        eventually(std::time::Duration::from_secs(10), || h1
            .exec("ip link show vx0")
            .status
            .success()
            && a.ping("10.61.0.2")),
        "the tunnel came back: {}",
        d1.log()
    );

    // `vxlan del` removes the port and exactly its netdev.
    d1.ok("vxlan del vx0");
    assert!(!h1.exec("ip link show vx0").status.success());
    assert!(!a.ping("10.61.0.2"));
    assert!(d1.alive(), "{}", d1.log());
}

#[test]
#[cfg_attr(vbr_unprivileged, ignore = "needs root: network namespaces, vxlan")]
fn bad_vxlan_requests_are_refused_and_make_nothing() {
    require_root();
    let h = Netns::new("h");
    let d = Daemon::start(&h);
    d.ok("addbr br0");
    let refused = |args: &str, why: &str| {
        let out = d.vbr(&format!("vxlan add {args}"));
        assert!(!out.status.success(), "{args} was accepted");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains(why), "{args}: {err}");
    };
    refused("vx1 --bridge br0 --vni 0 --local 10.0.0.1", "--vni 0");
    refused(
        "vx1 --bridge br0 --vni 16777216 --local 10.0.0.1",
        "--vni 16777216",
    );
    refused(
        "vx1 --bridge br0 --vni 7 --local 10.0.0.1 --remote 10.0.0.1",
        "--remote 10.0.0.1",
    );
    refused(
        "vx1 --bridge br0 --vni 7 --local 10.0.0.1 --remote 224.0.0.9",
        "--remote 224.0.0.9",
    );
    refused("vx1 --bridge nobr --vni 7 --local 10.0.0.1", "nobr");
    refused(
        "vx1 --bridge br0 --vni 7 --local 10.9.9.9",
        "must be an address of this host",
    );
    // Someone else's device of that name is theirs.
    h.ok("ip link add vx2 type veth peer name vx2p");
    refused("vx2 --bridge br0 --vni 7 --local 10.0.0.1", "vx2");
    assert!(h.exec("ip link show vx2").status.success(), "left alone");
    assert_eq!(h.ok("ip -o link show type vxlan").lines().count(), 0);
}
