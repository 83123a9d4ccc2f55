//! Seed 003's bridge MAC rule on real veths, step by step: the bridge takes the lowest
//! port MAC, follows ports coming, going and changing MAC, and once its MAC is set by
//! hand (`ip link set br0 address ...`) keeps it.

mod common;

use common::*;

fn br_mac(host: &Netns, d: &Daemon) -> (String, String) {
    let netdev = host.ok("cat /sys/class/net/br0/address").trim().to_owned();
    let shown = d.json("show br0")[0]["mac"].as_str().unwrap().to_owned();
    (netdev, shown)
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn seed_003_bridge_mac_rule() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip link add va type veth peer name vap");
    host.ok("ip link add vb type veth peer name vbp");
    host.ok("ip link set va address 0a:00:00:00:00:50");
    host.ok("ip link set vb address 0a:00:00:00:00:30");
    // `vbr show` looks at the netdevs before answering; br0's own MAC follows within
    // the datapath's netdev check.
    let expect = |want: &str, step: &str| {
        let (_, shown) = br_mac(&host, &d);
        assert_eq!(shown, want, "{step}: vbr show");
        let follows = eventually(std::time::Duration::from_secs(3), || {
            br_mac(&host, &d).0 == want
        });
        assert!(
            follows,
            "{step}: br0's own MAC is {} not {want}",
            br_mac(&host, &d).0
        );
    };
    d.ok("addif br0 va");
    expect("0a:00:00:00:00:50", "step 1: one port");
    d.ok("addif br0 vb");
    expect("0a:00:00:00:00:30", "step 2: a lower port MAC joins");
    host.ok("ip link set va address 0a:00:00:00:00:10");
    expect("0a:00:00:00:00:10", "step 3: a port changes to a lower MAC");
    d.ok("delif br0 va");
    expect("0a:00:00:00:00:30", "step 4: the lowest port leaves");
    host.ok("ip link set br0 address 0a:00:00:00:00:99");
    expect("0a:00:00:00:00:99", "step 5: set by hand");
    assert_eq!(d.json("show br0")[0]["mac_fixed"], true);
    d.ok("addif br0 va");
    expect(
        "0a:00:00:00:00:99",
        "step 6: a lower port joins, the hand-set MAC stays",
    );
    let id = d.json("show br0")[0]["bridge_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(id, "8000.0a0000000099");
}
