//! Seed 004, literally: namespaces joined by veth pairs to a bridge that has the gateway
//! address, with `brctl` replaced by `vbr`. The "host" is a throw-away namespace too.

mod common;

use std::time::Duration;

use common::*;

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn seed_004_bridge_namespaces_veth() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    // Step 1-2: the bridge with its gateway address.
    d.ok("addbr br0");
    let show = d.ok("show");
    assert!(
        show.starts_with("bridge name\tbridge id\t\tSTP enabled\tinterfaces"),
        "{show}"
    );
    assert!(show.contains("br0"), "{show}");
    host.ok("ip addr add 172.16.0.1/24 dev br0");
    host.ok("ip link set br0 up");
    // Steps 1-4 of the namespace part: nns1/nns2 with veth pairs.
    let nns1 = Endpoint::new(&host, "a", "veth10", "veth11", "172.16.0.11/24");
    let nns2 = Endpoint::new(&host, "b", "veth20", "veth21", "172.16.0.21/24");
    // Step 5: attach the host ends.
    d.ok("addif br0 veth10");
    d.ok("addif br0 veth20");
    let show = d.ok("show br0");
    assert!(show.contains("veth10") && show.contains("veth20"), "{show}");
    // Step 6: the host reaches both, they reach each other.
    assert!(host.reaches("172.16.0.11"), "host -> nns1\n{}", d.log());
    assert!(host.reaches("172.16.0.21"), "host -> nns2");
    assert!(nns1.ns.reaches("172.16.0.21"), "nns1 -> nns2");
    assert!(nns2.ns.reaches("172.16.0.11"), "nns2 -> nns1");

    // TCP through the switch, offloads left on (GSO/partial checksums from veth).
    nns2.ns.iperf3_server("172.16.0.21");
    let out = nns1.ns.ok("iperf3 -c 172.16.0.21 -t 2 -J");
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 JSON");
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(bps > 10e6, "iperf3 TCP moved only {bps} bit/s");

    // showmacs lists both namespace MACs on the right ports.
    let mac1 = nns1.mac("veth11");
    let mac2 = nns2.mac("veth21");
    let macs = d.json("showmacs br0");
    let port_of = |mac: &str| {
        macs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["mac"] == mac && r["is_local"] == false)
            .map(|r| r["port"].as_str().unwrap().to_owned())
    };
    assert_eq!(port_of(&mac1).as_deref(), Some("veth10"), "{macs}");
    assert_eq!(port_of(&mac2).as_deref(), Some("veth20"), "{macs}");
    let text = d.ok("showmacs br0");
    assert!(
        text.starts_with("port no\tmac addr\t\tis local?\tageing timer"),
        "{text}"
    );
    assert!(text.contains(&mac1) && text.contains(&mac2), "{text}");

    // setageing: with no traffic, learned entries go after the ageing time.
    d.ok("setageing br0 2");
    let gone = eventually(Duration::from_secs(8), || {
        let m = d.json("showmacs br0");
        !m.as_array().unwrap().iter().any(|r| r["is_local"] == false)
    });
    assert!(
        gone,
        "learned entries did not age out: {}",
        d.ok("showmacs br0")
    );
}
