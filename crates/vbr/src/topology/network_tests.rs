//! Topology checks of VLAN gateways and Neutron network types: the plans good files
//! make, and bad files refused with file, line and field.

use super::*;

fn fails(src: &str) -> TopologyError {
    parse("t.toml", src).unwrap_err()
}

fn fails_at(src: &str, line: usize, field: &str, says: &str) {
    let e = fails(src);
    assert_eq!((e.line, e.field.as_str()), (line, field), "{e}");
    assert!(e.message.contains(says), "{e} should say {says:?}");
}

const ROUTER: &str = r#"[[bridge]]
name = "br0"
[[bridge.vlan]]
vid = 10
addresses = ["10.10.0.1/24"]
nat = true
dhcp = { range = "10.10.0.100-10.10.0.200" }
[[bridge.vlan]]
vid = 20
addresses = ["10.20.0.1/24"]
[[namespace]]
name = "a"
bridge = "br0"
access = 10
dhcp = true
"#;

#[test]
fn vlan_gateways_plan() {
    let p = parse("t.toml", ROUTER).unwrap();
    let v = &p.bridges[0].vlans;
    assert_eq!(v.len(), 2);
    assert_eq!(
        (v[0].vid.get(), v[0].ifname.as_str(), v[0].nat),
        (10, "br0.10", true)
    );
    assert_eq!(v[0].dhcp.as_ref().unwrap().server.to_string(), "10.10.0.1");
    assert_eq!(
        (v[1].ifname.as_str(), v[1].nat, v[1].dhcp.is_none()),
        ("br0.20", false, true)
    );
    assert!(p.namespaces[0].dhcp);
}

#[test]
fn vlan_gateways_refused() {
    // DHCP asked on a VLAN without a server.
    let src = ROUTER.replace("access = 10", "access = 20");
    fails_at(
        &src,
        15,
        "namespace[0].dhcp",
        "VLAN 20 of bridge br0 has no DHCP server",
    );
    // ...or on the bridge's own VLAN 1 without one.
    let src = ROUTER.replace("access = 10\n", "");
    fails_at(
        &src,
        14,
        "namespace[0].dhcp",
        "bridge br0 has no DHCP server",
    );
    fails_at(
        &ROUTER.replace("vid = 20", "vid = 10"),
        9,
        "bridge[0].vlan[1].vid",
        "given twice",
    );
    fails_at(
        &ROUTER.replace("vid = 20", "vid = 4095"),
        9,
        "bridge[0].vlan[1].vid",
        "1..=4094",
    );
    fails_at(
        &ROUTER.replace("\"br0\"", "\"bridge-longer\""),
        4,
        "bridge[0].vlan[0].vid",
        "bridge-longer.10",
    );
    // The DHCP range outside the VLAN's subnet.
    fails_at(
        &ROUTER.replace("10.10.0.100-10.10.0.200", "10.30.0.100-10.30.0.200"),
        7,
        "bridge[0].vlan[0].dhcp.range",
        "no address",
    );
    // The range holding the gateway.
    fails_at(
        &ROUTER.replace("10.10.0.100-10.10.0.200", "10.10.0.1-10.10.0.20"),
        7,
        "bridge[0].vlan[0].dhcp.range",
        "10.10.0.1",
    );
    fails_at(
        &ROUTER.replace("addresses = [\"10.10.0.1/24\"]\n", ""),
        5,
        "bridge[0].vlan[0].nat",
        "IPv4",
    );
    fails_at(&ROUTER.replace("nat = true", "colour = 1"), 6, "", "colour");
}

#[test]
fn overlapping_subnets_refused() {
    fails_at(
        &ROUTER.replace("10.20.0.1/24", "10.10.0.129/25"),
        10,
        "bridge[0].vlan[1].addresses[0]",
        "overlaps 10.10.0.1/24 of br0.10",
    );
    let two = "[[bridge]]\nname = \"a\"\naddresses = [\"10.0.0.1/16\"]\n[[bridge]]\nname = \"b\"\naddresses = [\"10.0.5.1/24\"]\n";
    fails_at(
        two,
        6,
        "bridge[1].addresses[0]",
        "overlaps 10.0.0.1/16 of a",
    );
    // Two addresses of one interface in one subnet are that interface's business.
    parse(
        "t.toml",
        "[[bridge]]\nname = \"a\"\naddresses = [\"10.0.0.1/24\", \"10.0.0.2/24\"]\n",
    )
    .unwrap();
}

const NEUTRON: &str = r#"[[bridge]]
name = "loc"
type = "local"
[[bridge]]
name = "flat"
type = "flat"
uplink = "eth1"
[[bridge]]
name = "n101"
type = "vlan"
uplink = "eth1"
segmentation_id = 101
[[bridge]]
name = "n102"
type = "vlan"
uplink = "eth1"
segmentation_id = 102
[[bridge]]
name = "other"
type = "flat"
uplink = "eth2"
"#;

#[test]
fn neutron_networks_plan() {
    let p = parse("t.toml", NEUTRON).unwrap();
    let b = |n: &str| p.bridges.iter().find(|b| b.name == n).unwrap();
    assert_eq!(b("loc").network, Some(NetType::Local));
    assert!(b("loc").ports.is_empty());
    // Alone on eth2: the flat network takes it as a port, and knows where it was given.
    assert_eq!(b("other").ports, vec![("eth2".to_owned(), None)]);
    assert_eq!(b("other").sources["eth2"], "t.toml:21: bridge[4].uplink");
    // eth1 is shared: the provider bridge holds it as the trunk of 101 and 102, its
    // untagged frames the flat network's.
    let prov = b("vbp-eth1");
    assert_eq!(
        prov.ports,
        vec![(
            "eth1".to_owned(),
            Some(VlanCfg::Trunk {
                allowed: "101,102".into(),
                native: Some(Vid::new(1).unwrap())
            })
        )]
    );
    let patches: Vec<(&str, &str, &str, u16)> = p
        .patches
        .iter()
        .map(|x| {
            (
                x.bridge.as_str(),
                x.port.as_str(),
                x.peer.as_str(),
                x.vid.get(),
            )
        })
        .collect();
    assert_eq!(
        patches,
        vec![
            ("flat", "flat-up", "flat-pv", 1),
            ("n101", "n101-up", "n101-pv", 101),
            ("n102", "n102-up", "n102-pv", 102),
        ]
    );
    assert!(p.patches.iter().all(|x| x.provider == "vbp-eth1"));
}

#[test]
fn neutron_networks_refused() {
    fails_at(
        &NEUTRON.replace("segmentation_id = 102", "segmentation_id = 101"),
        17,
        "bridge[3].segmentation_id",
        "segment 101 of eth1 is network n101's already",
    );
    fails_at(
        &NEUTRON.replace("segmentation_id = 102", "segmentation_id = 4095"),
        17,
        "bridge[3].segmentation_id",
        "1..=4094",
    );
    fails_at(
        &NEUTRON.replace("segmentation_id = 102", "segmentation_id = 1"),
        17,
        "bridge[3].segmentation_id",
        "untagged",
    );
    fails_at(
        &NEUTRON.replace("uplink = \"eth2\"", "uplink = \"eth1\""),
        21,
        "bridge[4].uplink",
        "one flat network per uplink",
    );
    fails_at(
        &NEUTRON.replace("segmentation_id = 102\n", ""),
        15,
        "bridge[3].segmentation_id",
        "needs segmentation_id",
    );
    fails_at(
        &NEUTRON.replace("type = \"flat\"\nuplink = \"eth2\"\n", "type = \"flat\"\n"),
        20,
        "bridge[4].uplink",
        "needs uplink",
    );
    fails_at(
        &NEUTRON.replace("type = \"local\"", "type = \"local\"\nuplink = \"eth3\""),
        4,
        "bridge[0].uplink",
        "no uplink",
    );
    fails_at(
        &NEUTRON.replace("type = \"local\"", "type = \"gre\""),
        3,
        "bridge[0].type",
        "use local, flat or vlan",
    );
    fails_at(
        &NEUTRON.replace("type = \"local\"", "segmentation_id = 5"),
        3,
        "bridge[0].segmentation_id",
        "type = \"vlan\"",
    );
    fails_at(
        &NEUTRON.replace(
            "type = \"local\"",
            "type = \"local\"\naddresses = [\"10.0.0.1/24\"]\nnat = true",
        ),
        5,
        "bridge[0].nat",
        "no nat",
    );
    // An uplink that is some bridge's port already.
    fails_at(
        &format!("{NEUTRON}[[bridge.port]]\nname = \"eth1\"\n"),
        7,
        "bridge[1].uplink",
        "eth1 is a port of bridge other",
    );
}

#[test]
fn local_networks_offer_no_router() {
    let p = parse(
        "t.toml",
        "[[bridge]]\nname = \"loc\"\ntype = \"local\"\naddresses = [\"10.0.0.1/24\"]\n[bridge.dhcp]\nrange = \"10.0.0.10-10.0.0.20\"\n",
    )
    .unwrap();
    assert!(p.bridges[0].dhcp.as_ref().unwrap().no_router);
}
