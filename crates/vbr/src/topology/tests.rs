//! Topology file checks: errors that name file, line and field, and the plans that
//! good files make.

use super::*;

#[test]
fn default_topology_is_seed_002() {
    let p = parse("default", DEFAULT_TOPOLOGY).unwrap();
    assert_eq!(p.bridges.len(), 1);
    assert_eq!(
        p.bridges[0].addresses,
        vec!["192.168.88.1/24".parse::<IpNet>().unwrap()]
    );
    let ns: Vec<_> = p
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), n.addresses[0].to_string()))
        .collect();
    assert_eq!(
        ns,
        vec![
            ("ns0", "192.168.88.2/24".to_owned()),
            ("ns1", "192.168.88.3/24".to_owned())
        ]
    );
    assert_eq!(p.namespaces[0].ifname, "eth0");
    assert_eq!(
        p.namespaces[0].gateway,
        Some("192.168.88.1".parse().unwrap())
    );
    assert!(p.bridges[0].nat);
}

fn fails(src: &str) -> TopologyError {
    parse("t.toml", src).unwrap_err()
}

#[test]
fn errors_name_file_line_and_field() {
    let e = fails("[[bridge]]\nname = \"br0\"\ncolour = \"blue\"\n");
    assert_eq!((e.file.as_str(), e.line), ("t.toml", 3));
    assert!(e.message.contains("colour"), "{e}");

    let e = fails("[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/33\"]\n");
    assert_eq!((e.line, e.field.as_str()), (3, "bridge[0].addresses[0]"));
    assert!(
        e.to_string()
            .starts_with("t.toml:3: bridge[0].addresses[0]: prefix length"),
        "{e}"
    );

    let e = fails("[[bridge]]\nname = \"br0\"\n\n[[namespace]]\nname = \"a\"\nbridge = \"br9\"\n");
    assert_eq!((e.line, e.field.as_str()), (6, "namespace[0].bridge"));
    assert!(e.message.contains("br9"));

    let e = fails(
        "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\ngateway = \"10.0.0\"\n",
    );
    assert_eq!(e.field, "namespace[0].gateway");

    let e = fails("[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"p\"\naccess = 4095\n");
    assert_eq!((e.line, e.field.as_str()), (5, "bridge[0].port[0].access"));

    let e = fails("[[bridge]]\nname = \"br0\"\n[[bridge]]\nname = \"br0\"\n");
    assert!(e.message.contains("twice"));
    let e = fails(
        "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\nmac = \"ff:ff:ff:ff:ff:ff\"\n",
    );
    assert_eq!(e.field, "namespace[0].mac");
    let e = fails("[[bridge]]\nname = \"br0\"\nstp = \"maybe\"\n");
    assert_eq!(e.field, "bridge[0].stp");
    let e = fails("[[bridge]\n");
    assert_eq!(e.line, 1);
}

#[test]
fn ports_and_vlans() {
    let p = parse(
        "t",
        "[[bridge]]\nname = \"br0\"\nstp = \"rstp\"\n[[bridge.port]]\nname = \"eth1\"\ntrunk = \"10,20\"\nnative = 1\n[[bridge.port]]\nname = \"eth2\"\naccess = 10\n",
    )
    .unwrap();
    assert_eq!(p.bridges[0].stp, Some(StpMode::Rstp));
    assert_eq!(
        p.bridges[0].ports,
        vec![
            (
                "eth1".into(),
                Some(VlanCfg::Trunk {
                    allowed: "10,20".into(),
                    native: Some(Vid::new(1).unwrap())
                })
            ),
            (
                "eth2".into(),
                Some(VlanCfg::Access {
                    vid: Vid::new(10).unwrap()
                })
            ),
        ]
    );
}

#[test]
fn cidrs() {
    assert_eq!(parse_cidr("fd00::1/64").unwrap().prefix_len(), 64);
    assert!(parse_cidr("10.0.0.1").is_err());
    assert!(parse_cidr("10.0.0.300/24").is_err());
    assert!(parse_cidr("fd00::1/129").is_err());
}

#[test]
fn routes_are_checked_and_kept() {
    let p = parse(
        "t",
        "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\nroutes = [{ to = \"10.20.0.0/16\", via = \"192.168.88.1\" }, { to = \"fd00:1::/64\", via = \"fd00::1\" }]\n",
    )
    .unwrap();
    assert_eq!(
        p.namespaces[0].routes,
        vec![
            (
                "10.20.0.0/16".parse().unwrap(),
                "192.168.88.1".parse().unwrap()
            ),
            ("fd00:1::/64".parse().unwrap(), "fd00::1".parse().unwrap())
        ]
    );
    let bad = |routes: &str| {
        fails(&format!(
            "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\n\nroutes = [{routes}]\n"
        ))
    };
    let e = bad("{ to = \"10.20.0.1/16\", via = \"192.168.88.1\" }");
    assert_eq!((e.line, e.field.as_str()), (7, "namespace[0].routes[0]"));
    assert!(e.message.contains("not a network"), "{e}");
    let e = bad("{ to = \"10.20.0.0/16\", via = \"1.2.3\" }");
    assert!(e.message.contains("next hop"), "{e}");
    let e = bad("{ to = \"10.20.0.0/16\", via = \"fd00::1\" }");
    assert!(e.message.contains("same family"), "{e}");
    let e = bad("{ to = \"10.20.0.0/16\", via = \"10.0.0.1\", dev = \"x\" }");
    assert!(e.message.contains("dev"), "{e}");
}

#[test]
fn nat_needs_an_ipv4_subnet() {
    let e = fails("[[bridge]]\nname = \"br0\"\naddresses = [\"fd00::1/64\"]\nnat = true\n");
    assert_eq!((e.line, e.field.as_str()), (4, "bridge[0].nat"));
    assert!(parse("t", "[[bridge]]\nname = \"br0\"\nnat = false\n").is_ok());
}

#[test]
fn namespace_names_and_port_name_collisions() {
    let ns = |name: &str| {
        fails(&format!(
            "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"{name}\"\nbridge = \"br0\"\n"
        ))
    };
    for name in [".", "..", "a/b", &"x".repeat(256)] {
        let e = ns(name);
        assert_eq!(
            (e.line, e.field.as_str()),
            (4, "namespace[0].name"),
            "{name}"
        );
    }
    assert!(
        parse(
            "t",
            "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"/var/run/docker/netns/abc\"\nbridge = \"br0\"\n"
        )
        .is_ok(),
        "any absolute path may name a namespace"
    );
    // Two names whose ports would be the same: refused, naming both lines.
    let twice = fails(
        "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\n",
    );
    assert_eq!((twice.line, twice.field.as_str()), (7, "namespace[1].name"));
    assert!(twice.message.contains("line 4"), "{twice}");
    // Long names that start alike get different ports.
    let p = parse(
        "t",
        "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"myapp-database-1\"\nbridge = \"br0\"\n[[namespace]]\nname = \"myapp-database-2\"\nbridge = \"br0\"\n",
    )
    .unwrap();
    assert_eq!(p.namespaces.len(), 2);
}

#[test]
fn a_port_has_one_bridge_and_a_port_name_one_owner() {
    let e = fails(
        "[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"eth1\"\n[[bridge]]\nname = \"br1\"\n[[bridge.port]]\nname = \"eth1\"\n",
    );
    assert_eq!((e.line, e.field.as_str()), (8, "bridge[1].port[0].name"));
    assert!(e.message.contains("line 4"), "{e}");

    // A namespace literally named like another one's shortened port.
    let long = "myapp-database-1";
    let taken = vbridge_datapath::port_name(long, "eth0");
    let literal = taken.trim_end_matches("-eth0");
    let e = fails(&format!(
        "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"{long}\"\nbridge = \"br0\"\n[[namespace]]\nname = \"{literal}\"\nbridge = \"br0\"\n"
    ));
    assert_eq!((e.line, e.field.as_str()), (7, "namespace[1].name"));
    assert!(
        e.message.contains(&taken) && e.message.contains("line 4"),
        "{e}"
    );
}

#[test]
fn dhcp_and_published_ports() {
    let good = "[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/24\"]\n[bridge.dhcp]\nrange = \"10.0.0.100-10.0.0.150\"\nlease = 600\ndns = [\"10.0.0.1\"]\nstatic = [{ mac = \"02:00:00:00:00:10\", ip = \"10.0.0.10\" }]\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\ndhcp = true\n[[namespace]]\nname = \"w\"\nbridge = \"br0\"\naddresses = [\"10.0.0.2/24\"]\npublish = [\"8080:80\", \"127.0.0.1:5353:53/udp\"]\n";
    let p = parse("t.toml", good).unwrap();
    let d = p.bridges[0].dhcp.as_ref().unwrap();
    assert_eq!(d.server, "10.0.0.1".parse::<std::net::Ipv4Addr>().unwrap());
    assert_eq!((d.prefix, d.lease_secs, d.statics.len()), (24, 600, 1));
    assert!(p.namespaces[0].dhcp);
    assert_eq!(p.namespaces[1].publish.len(), 2);
    assert_eq!(p.namespaces[1].publish[0].host_port, 8080);
    let base = "[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/24\"]\n";
    for (extra, line, field, says) in [
        (
            "[bridge.dhcp]\nrange = \"10.1.0.1-10.1.0.9\"\n",
            5,
            "bridge[0].dhcp.range",
            "no address of the bridge",
        ),
        (
            "[bridge.dhcp]\nrange = \"10.0.0.9\"\n",
            5,
            "bridge[0].dhcp.range",
            "FIRST-LAST",
        ),
        (
            "[bridge.dhcp]\nrange = \"10.0.0.0-10.0.0.9\"\n",
            5,
            "bridge[0].dhcp.range",
            "network address",
        ),
        (
            "[bridge.dhcp]\nrange = \"10.0.0.2-10.0.0.9\"\nlease = 10\n",
            6,
            "bridge[0].dhcp.lease",
            "too short",
        ),
        (
            "[[namespace]]\nname = \"a\"\nbridge = \"br0\"\ndhcp = true\n",
            7,
            "namespace[0].dhcp",
            "no DHCP server",
        ),
        (
            "[[namespace]]\nname = \"a\"\nbridge = \"br0\"\npublish = [\"80:80\"]\n",
            7,
            "namespace[0].publish[0]",
            "needs an IPv4 address",
        ),
        (
            "[[namespace]]\nname = \"a\"\nbridge = \"br0\"\naddresses = [\"10.0.0.2/24\"]\npublish = [\"8080\"]\n",
            8,
            "namespace[0].publish[0]",
            "HOSTPORT:PORT",
        ),
        (
            "[[namespace]]\nname = \"a\"\nbridge = \"br0\"\naddresses = [\"10.0.0.2/24\"]\npublish = [\"80:80\", \"80:81\"]\n",
            8,
            "namespace[0].publish[1]",
            "published twice",
        ),
    ] {
        let e = fails(&format!("{base}{extra}"));
        assert_eq!((e.line, e.field.as_str()), (line, field), "{extra}: {e}");
        assert!(e.message.contains(says), "{extra}: {e}");
    }
}
