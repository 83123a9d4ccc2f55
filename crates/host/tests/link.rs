//! Links, addresses and routes over netlink, each test inside a network
//! namespace of its own, checked with `ip -j`. Needs root; skipped otherwise.

mod common;

use std::net::IpAddr;

use common::{NsGuard, chain, in_fresh_netns, ip_json, link_names};
use serde_json::Value;
use vbridge_host::{ErrorKind, IpFamily, Netlink, netns};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `ip -j [-n NS] [-d] link show NAME`, the one link.
fn show_link(ns: Option<&str>, name: &str) -> Value {
    let mut args = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-d", "link", "show", "dev", name]);
    ip_json(&args)[0].clone()
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"].as_array().unwrap().iter().any(|f| f == flag)
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn veth_create_and_delete() {
    common::require_root();
    in_fresh_netns(|| {
        let mut nl = Netlink::new().unwrap();
        assert_eq!(nl.link_index("vbha").unwrap(), None);
        nl.create_veth("vbha", "vbhb").unwrap();

        let a = show_link(None, "vbha");
        assert_eq!(a["linkinfo"]["info_kind"], "veth");
        assert_eq!(show_link(None, "vbhb")["linkinfo"]["info_kind"], "veth");
        assert_eq!(
            nl.link_index("vbha").unwrap(),
            a["ifindex"].as_u64().map(|i| i as u32)
        );
        assert!(nl.link_exists("vbhb").unwrap());
        let listed: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        assert!(
            listed.contains(&"vbha".into()) && listed.contains(&"lo".into()),
            "{listed:?}"
        );

        let err = nl.create_veth("vbha", "vbhc").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{}", chain(&err));

        nl.delete_link("vbha").unwrap();
        assert_eq!(link_names(None), ["lo"], "the peer goes with it");
        assert!(!nl.link_exists("vbhb").unwrap());
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn deleting_a_missing_link_says_no_such_device_and_names_it() {
    common::require_root();
    in_fresh_netns(|| {
        let err = Netlink::new()
            .unwrap()
            .delete_link("vbhmissing")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let text = chain(&err);
        assert!(text.contains("\"vbhmissing\""), "{text}");
        assert!(text.contains("no such device"), "{text}");
    });
}

#[test]
fn invalid_link_names_are_refused() {
    let mut nl = match Netlink::new() {
        Ok(nl) => nl,
        Err(_) => return,
    };
    let err = nl.create_veth("this-name-is-too-long", "x0").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("this-name-is-too-long"), "{err}");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn veth_peer_created_directly_in_another_namespace() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.add();
    let ns = netns::open(&name).unwrap();
    in_fresh_netns(|| {
        let mut nl = Netlink::new().unwrap();
        nl.create_veth_with_peer_in("vbhhost", "vbhpeer", &ns)
            .unwrap();
        assert_eq!(link_names(None), ["lo", "vbhhost"]);
        assert!(link_names(Some(&name)).contains(&"vbhpeer".to_owned()));
        // Same name in two namespaces is fine.
        nl.create_veth_with_peer_in("vbhpeer", "vbhpeer2", &ns)
            .unwrap();
        assert!(nl.link_exists("vbhpeer").unwrap());
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn move_rename_configure_address_and_route() {
    common::require_root();
    let mut guard = NsGuard::default();
    let name = guard.add();
    let ns = netns::open(&name).unwrap();
    in_fresh_netns(|| {
        let mut host = Netlink::new().unwrap();
        host.create_veth("vbhh0", "vbhc0").unwrap();
        host.set_link_netns("vbhc0", &ns).unwrap();
        assert_eq!(link_names(None), ["lo", "vbhh0"]);
        host.set_up("vbhh0").unwrap();

        let mut inside = Netlink::new_in(&ns).unwrap();
        inside.rename_link("vbhc0", "eth0").unwrap();
        assert!(!inside.link_exists("vbhc0").unwrap());
        let mac = vbridge_wire::MacAddr([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);
        inside.set_mac("eth0", mac).unwrap();
        inside.set_mtu("eth0", 1400).unwrap();
        inside.set_up("eth0").unwrap();
        inside.set_up("lo").unwrap();

        let eth0 = show_link(Some(&name), "eth0");
        assert_eq!(eth0["address"], "02:00:5e:10:20:30");
        assert_eq!(eth0["mtu"], 1400);
        assert!(has_flag(&eth0, "UP"), "{eth0}");
        let listed = inside
            .links()
            .unwrap()
            .into_iter()
            .find(|l| l.name == "eth0")
            .unwrap();
        assert_eq!(
            (listed.mac, listed.up, listed.mtu),
            (Some(mac), true, Some(1400))
        );

        inside.add_address("eth0", ip("10.77.0.2"), 24).unwrap();
        inside.add_address("eth0", ip("fd77::2"), 64).unwrap();
        let addrs = &ip_json(&["-n", &name, "addr", "show", "dev", "eth0"])[0]["addr_info"];
        let found: Vec<(String, u64)> = addrs
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["local"].as_str().unwrap().to_owned(),
                    a["prefixlen"].as_u64().unwrap(),
                )
            })
            .collect();
        assert!(found.contains(&("10.77.0.2".into(), 24)), "{found:?}");
        assert!(found.contains(&("fd77::2".into(), 64)), "{found:?}");
        assert_eq!(addrs[0]["broadcast"], "10.77.0.255");
        let ours = inside.addresses("eth0").unwrap();
        assert!(
            ours.contains(&(ip("10.77.0.2"), 24)) && ours.contains(&(ip("fd77::2"), 64)),
            "{ours:?}"
        );
        let again = inside.add_address("eth0", ip("10.77.0.2"), 24).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists, "{}", chain(&again));

        inside.add_default_route(ip("10.77.0.1")).unwrap();
        inside.add_default_route(ip("fd77::1")).unwrap();
        let v4 = ip_json(&["-n", &name, "-4", "route", "show", "default"]);
        assert_eq!(v4[0]["gateway"], "10.77.0.1", "{v4}");
        assert_eq!(v4[0]["dev"], "eth0", "{v4}");
        let v6 = ip_json(&["-n", &name, "-6", "route", "show", "default"]);
        assert_eq!(v6[0]["gateway"], "fd77::1", "{v6}");
        let routes = inside.routes(IpFamily::V4).unwrap();
        assert!(
            routes
                .iter()
                .any(|r| r.is_default() && r.gateway == Some(ip("10.77.0.1"))),
            "{routes:?}"
        );
        assert!(
            routes
                .iter()
                .any(|r| r.dest == ip("10.77.0.0") && r.prefix_len == 24),
            "{routes:?}"
        );

        inside
            .add_route(ip("192.0.2.0"), 24, Some(ip("10.77.0.9")), Some("eth0"))
            .unwrap();
        let extra = ip_json(&["-n", &name, "route", "show", "192.0.2.0/24"]);
        assert_eq!(extra[0]["gateway"], "10.77.0.9", "{extra}");
        inside.del_route(ip("192.0.2.0"), 24, None, None).unwrap();
        assert_eq!(
            ip_json(&["-n", &name, "route", "show", "192.0.2.0/24"]),
            Value::Array(vec![])
        );

        inside.del_default_route(IpFamily::V4).unwrap();
        assert_eq!(
            ip_json(&["-n", &name, "-4", "route", "show", "default"]),
            Value::Array(vec![])
        );
        assert_eq!(
            ip_json(&["-n", &name, "-6", "route", "show", "default"])[0]["gateway"],
            "fd77::1"
        );

        inside.del_address("eth0", ip("10.77.0.2"), 24).unwrap();
        // The kernel's own fe80:: link-local address is listed too.
        let left = inside.addresses("eth0").unwrap();
        assert!(!left.iter().any(|(a, _)| a.is_ipv4()), "{left:?}");
        assert!(left.contains(&(ip("fd77::2"), 64)), "{left:?}");
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn route_via_an_unreachable_gateway_is_refused_clearly() {
    common::require_root();
    in_fresh_netns(|| {
        let mut nl = Netlink::new().unwrap();
        let err = nl.add_default_route(ip("10.99.0.1")).unwrap_err();
        let text = chain(&err);
        assert!(text.contains("default route via 10.99.0.1"), "{text}");
        assert!(text.contains("unreachable"), "{text}");
        let err = nl
            .add_route(ip("10.1.0.0"), 16, Some(ip("fd00::1")), None)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let err = nl.add_address("lo", ip("10.0.0.1"), 33).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let err = nl.add_address("vbhnope", ip("10.0.0.1"), 24).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{}", chain(&err));
    });
}
