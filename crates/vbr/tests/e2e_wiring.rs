//! Wiring namespaces, the unhappy paths: topology files whose errors only the host can
//! reveal (a missing interface, a namespace path that leads nowhere) change nothing;
//! `down` spares what existed before `up`; routes from the file; `vbr connect` refusing
//! bad requests with clear errors (a FIFO given as namespace must not hang anything),
//! leaving no veth behind when it fails; veth connections after a `kill -9` and after
//! their namespace is deleted; a connection an older vbridge saved under another port
//! name.

mod common;

use std::time::Duration;

use common::*;

/// `vbr ARGS` against `d`, killed after 10 s so that a hang fails the test instead of
/// stalling it; returns (success, stderr).
fn try_vbr(d: &Daemon, args: &str) -> (bool, String) {
    let out = sh(&format!(
        "timeout 10 {} --socket {} {args}",
        vbr_bin(),
        d.socket.display()
    ));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn port_state(d: &Daemon, bridge: &str, port: &str) -> Option<String> {
    let v = d.json(&format!("show {bridge}"));
    v[0]["ports"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == port)
        .and_then(|p| p["state"].as_str().map(str::to_owned))
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn topology_errors_found_on_the_host_change_nothing_and_down_spares_what_existed() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let pre = Netns::new("p"); // exists before `up`
    let fresh = Netns { name: uniq("f") }; // made by `up` (removed on drop if left)
    let file = d.dir.join("topo.toml");
    let write = |extra_port: &str, extra_ns: &str| {
        std::fs::write(
            &file,
            format!(
                r#"[[bridge]]
name = "brq"
addresses = ["10.77.0.1/24"]
{extra_port}
[[namespace]]
name = "{pre}"
bridge = "brq"
addresses = ["10.77.0.2/24"]
gateway = "10.77.0.1"
routes = [{{ to = "10.78.0.0/16", via = "10.77.0.1" }}]

[[namespace]]
name = "{fresh}"
bridge = "brq"
addresses = ["10.77.0.3/24"]
{extra_ns}
"#,
                pre = pre.name,
                fresh = fresh.name
            ),
        )
        .unwrap();
    };
    let nothing_made = |what: &str| {
        assert!(!d.ok("show").contains("brq"), "{what}: bridge made");
        assert!(
            !ok("ip netns list").contains(&fresh.name),
            "{what}: namespace made"
        );
        assert!(
            !host.exec("ip link show brq").status.success(),
            "{what}: netdev made"
        );
    };

    // A port naming an interface that is not there.
    write("[[bridge.port]]\nname = \"nosuchdev0\"\n", "");
    let (good, err) = try_vbr(&d, &format!("up {}", file.display()));
    assert!(!good && err.contains("nosuchdev0"), "{err}");
    assert!(err.contains("no such network interface"), "{err}");
    nothing_made("missing port");

    // A namespace path that leads nowhere.
    write(
        "",
        "[[namespace]]\nname = \"/proc/999999999/ns/net\"\nbridge = \"brq\"\n",
    );
    let (good, err) = try_vbr(&d, &format!("up {}", file.display()));
    assert!(!good && err.contains("/proc/999999999/ns/net"), "{err}");
    nothing_made("missing path");

    // The good file: routes from it; `down` removes the namespace it made, not the one
    // that was there.
    write("", "");
    d.ok(&format!("up {}", file.display()));
    assert!(pre.reaches("10.77.0.3"));
    let routes = pre.ok("ip route");
    assert!(routes.contains("10.78.0.0/16 via 10.77.0.1"), "{routes}");
    d.ok(&format!("down {}", file.display()));
    assert!(
        ok("ip netns list").contains(&pre.name),
        "down removed {}",
        pre.name
    );
    assert!(
        !pre.ok("ip -br link").contains("eth0"),
        "connection left in {}",
        pre.name
    );
    assert!(
        !ok("ip netns list").contains(&fresh.name),
        "down left {}",
        fresh.name
    );
    nothing_made("after down");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn connect_refuses_bad_requests_clearly_and_leaves_nothing_behind() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let a = Netns::new("a");
    let fifo = d.dir.join("fifo");
    let plain = d.dir.join("plain");
    ok(&format!("mkfifo {}", fifo.display()));
    std::fs::write(&plain, "not a namespace").unwrap();

    let refused = |args: &str, says: &str| {
        let (good, err) = try_vbr(&d, args);
        assert!(!good, "`vbr {args}` succeeded");
        assert!(err.contains(says), "`vbr {args}`: {err}");
    };
    let missing = uniq("m");
    refused(&format!("connect {missing} br0"), "does not exist");
    refused(
        &format!("connect {} br0", fifo.display()),
        "not a network namespace",
    );
    refused(
        &format!("connect {} br0", plain.display()),
        "not a network namespace",
    );
    refused(&format!("connect {} br0 --ip 10.1.1.1", a.name), "--ip");
    refused(
        &format!("connect {} br0 --mac ff:ff:ff:ff:ff:ff", a.name),
        "unicast",
    );
    refused(&format!("connect {} br9", a.name), "br9");
    refused(&format!("disconnect {} br0", a.name), "not connected");

    // Configuring the namespace side fails (a gateway it cannot reach): no veth is left.
    let port = &port_of(&a.name, "eth0");
    refused(
        &format!("connect {} br0 --veth --gateway 10.3.3.3", a.name),
        "default route via 10.3.3.3: network unreachable",
    );
    assert!(
        !host.exec(&format!("ip link show {port}")).status.success(),
        "veth host end left behind"
    );
    assert!(
        !a.ok("ip -br link").contains("eth0"),
        "veth peer left behind"
    );
    assert!(!d.ok("show br0").contains(port), "port left on the bridge");

    // Connected once: again is refused, naming where it is.
    d.ok(&format!("connect {} br0 --ip 10.1.1.1/24", a.name));
    refused(&format!("connect {} br0", a.name), "already connected");

    // A connected TAP has its offloads on: TCP leaves the namespace in segments far
    // larger than the MTU. Two addresses and a route on one connection.
    let b = Netns::new("b");
    refused(
        &format!(
            "connect {} br0 --ip 10.1.1.2/24 --route 10.9.0.1/16,10.1.1.254",
            b.name
        ),
        "not a network",
    );
    d.ok(&format!(
        "connect {} br0 --ip 10.1.1.2/24 --ip 10.2.2.2/24 --route 10.9.0.0/16,10.1.1.254",
        b.name
    ));
    let b_routes = b.ok("ip route");
    assert!(
        b_routes.contains("10.9.0.0/16 via 10.1.1.254"),
        "{b_routes}"
    );
    let b_addrs = b.ok("ip -br addr show eth0");
    assert!(
        b_addrs.contains("10.1.1.2/24") && b_addrs.contains("10.2.2.2/24"),
        "{b_addrs}"
    );
    assert!(a.reaches("10.1.1.2"));
    b.iperf3_server("10.1.1.2");
    let pa = &port_of(&a.name, "eth0");
    let (p0, b0) = rx_counters(&d, "br0", pa);
    a.ok("iperf3 -c 10.1.1.2 -t 1");
    let (p1, b1) = rx_counters(&d, "br0", pa);
    let avg = (b1 - b0) / (p1 - p0).max(1);
    assert!(
        avg > 4000,
        "frames from the TAP average {avg} bytes: no TSO"
    );
    assert!(d.ok("netns list").contains(&a.name), "vbr netns list");
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn veth_connections_come_back_after_kill_9_and_a_deleted_namespace_is_reported() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let (a, b) = (Netns::new("a"), Netns::new("b"));
    d.ok(&format!("connect {} br0 --veth --ip 10.5.0.1/24", a.name));
    d.ok(&format!("connect {} br0 --veth --ip 10.5.0.2/24", b.name));
    assert!(a.reaches("10.5.0.2"));

    d.kill9();
    d.spawn();
    assert!(a.reaches("10.5.0.2"), "after kill -9:\n{}", d.log());
    let pb = &port_of(&b.name, "eth0");
    assert_eq!(port_state(&d, "br0", pb).as_deref(), Some("up"));

    // Someone deletes b: its port is shown as gone, the daemon carries on.
    let _ = sh(&format!(
        "ip netns pids {0} | xargs -r kill -9; ip netns del {0}",
        b.name
    ));
    assert!(
        eventually(Duration::from_secs(5), || port_state(&d, "br0", pb)
            .as_deref()
            == Some("gone")),
        "{}",
        d.ok("show br0")
    );
    let c = Netns::new("c");
    d.ok(&format!("connect {} br0 --veth --ip 10.5.0.3/24", c.name));
    assert!(a.reaches("10.5.0.3"), "the rest keeps working");
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_connection_saved_under_an_older_port_name_is_recognised() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    let long = Netns {
        name: format!("{}-database-1", uniq("l")),
    };
    ok(&format!("ip netns add {}", long.name));
    d.ok(&format!("connect {} br0 --ip 10.6.6.1/24", long.name));
    let new_name = port_of(&long.name, "eth0");
    let old_name: String = format!("{}-eth0", long.name).chars().take(15).collect();
    assert_ne!(new_name, old_name);

    // What an older vbridge saved: the same connection under the cut-off name.
    d.kill9();
    let cfg = d.dir.join("state").join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.contains(&new_name), "{text}");
    std::fs::write(
        &cfg,
        text.replace(&format!("\"{new_name}\""), &format!("\"{old_name}\"")),
    )
    .unwrap();
    d.spawn();
    assert!(d.ok("show br0").contains(&old_name));

    // Connecting it again is "already connected", under the name it has...
    let (good, err) = try_vbr(&d, &format!("connect {} br0", long.name));
    assert!(
        !good && err.contains("already connected") && err.contains(&old_name),
        "{err}"
    );
    // ... and a topology file naming it changes nothing.
    let file = d.dir.join("t.toml");
    std::fs::write(
        &file,
        format!(
            "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"{}\"\nbridge = \"br0\"\naddresses = [\"10.6.6.1/24\"]\n",
            long.name
        ),
    )
    .unwrap();
    let out = d.ok(&format!("--json up {}", file.display()));
    assert!(out.contains("\"changed\": false"), "{out}");
    let show = d.ok("show br0");
    assert!(
        show.contains(&old_name) && !show.contains(&new_name),
        "{show}"
    );
    assert!(d.alive(), "daemon died:\n{}", d.log());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn nat_without_nft_is_refused_before_anything_changes() {
    require_root();
    let host = Netns::new("h");
    // A daemon that cannot find `nft` (nsenter itself is found on our PATH).
    let d = Daemon::start_with_env(&host, &[("PATH", "/nonexistent")]);
    let ns = Netns { name: uniq("n") };
    let file = d.dir.join("nat.toml");
    std::fs::write(
        &file,
        format!(
            "[[bridge]]\nname = \"brn\"\naddresses = [\"10.66.0.1/24\"]\nnat = true\n[[namespace]]\nname = \"{}\"\nbridge = \"brn\"\n",
            ns.name
        ),
    )
    .unwrap();
    let (good, err) = try_vbr(&d, &format!("up {}", file.display()));
    assert!(!good && err.contains("nft"), "{err}");
    assert!(!d.ok("show").contains("brn"), "bridge made");
    assert!(
        !host.exec("ip link show brn").status.success(),
        "netdev made"
    );
    assert!(!ok("ip netns list").contains(&ns.name), "namespace made");
}
