//! Port kinds and live changes: a TAP held by vbridge moved into a namespace, and ports
//! added and removed while traffic flows between others.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tap_port_moved_into_a_namespace() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip addr add 10.4.0.1/24 dev br0");
    host.ok("ip link set br0 up");
    d.ok("tap add tap0 --bridge br0");
    let v = d.json("show br0");
    let kinds: Vec<_> = v[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].clone(), p["kind"].clone()))
        .collect();
    assert!(kinds.contains(&("tap0".into(), "tap".into())), "{kinds:?}");
    // The TAP's netdev goes into a namespace, like a container's eth0.
    let ns = Netns::new("t");
    host.ok(&format!("ip link set tap0 netns {}", ns.name));
    ns.ok("ip addr add 10.4.0.2/24 dev tap0");
    ns.ok("ip link set tap0 up");
    assert!(
        ns.reaches("10.4.0.1"),
        "namespace -> host through the TAP port"
    );
    assert!(host.reaches("10.4.0.2"), "host -> namespace");
    // TCP with TSO: the namespace hands segments far larger than its MTU to the TAP.
    ns.iperf3_server("10.4.0.2");
    let (p0, b0) = rx_counters(&d, "br0", "tap0");
    let out = host.ok("iperf3 -c 10.4.0.2 -t 1 -R -J");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            > 10e6
    );
    let (p1, b1) = rx_counters(&d, "br0", "tap0");
    let avg = (b1 - b0) / (p1 - p0).max(1);
    assert!(
        avg > 4000,
        "frames from the TAP average {avg} bytes: no TSO"
    );
    d.ok("tap del tap0");
    assert!(
        !ns.exec("ip link show tap0").status.success(),
        "tap0 outlived `tap del`"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn ports_come_and_go_while_traffic_flows() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let a = Endpoint::new(&host, "a", "pa", "e", "10.5.0.1/24");
    let _b = Endpoint::new(&host, "b", "pb", "e", "10.5.0.2/24");
    d.ok("addif br0 pa");
    d.ok("addif br0 pb");
    assert!(a.ns.reaches("10.5.0.2"));
    // 300 pings at 10 ms while a third port and a second bridge come and go.
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &a.ns.name, "ping", "-q", "-c", "300", "-i", "0.01", "-W", "1",
            "10.5.0.2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    host.ok("ip link add pc type veth peer name pcp");
    for _ in 0..10 {
        d.ok("addif br0 pc");
        d.ok("addbr br1");
        d.ok("delif br0 pc");
        d.ok("delbr br1");
    }
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("300 received") || text.contains(" 0% packet loss"),
        "{text}"
    );
}

/// A namespace given by path, as Docker or Podman containers have them: the netns of a
/// process, with a MAC chosen by hand.
#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn connect_a_namespace_by_path() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip addr add 10.8.0.1/24 dev br0");
    host.ok("ip link set br0 up");
    // A "container": a process in a network namespace of its own, with no name.
    let mut proc_ = Command::new("unshare")
        .args(["-n", "sleep", "60"])
        .spawn()
        .unwrap();
    let pid = proc_.id();
    let path = format!("/proc/{pid}/ns/net");
    assert!(eventually(Duration::from_secs(2), || std::fs::read_link(
        &path
    )
    .is_ok()));
    std::thread::sleep(Duration::from_millis(200));
    let out = d.ok(&format!(
        "connect {path} br0 --ip 10.8.0.5/24 --gateway 10.8.0.1 --mac 02:00:00:00:08:05"
    ));
    let port = port_of(&path, "eth0");
    let port = port.as_str();
    assert!(out.contains(port), "{out}");
    let inside = |cmd: &str| ok(&format!("nsenter --net={path} {cmd}"));
    // (sysfs shows the mounting namespace's devices under nsenter: ask netlink)
    assert!(inside("ip link show eth0").contains("02:00:00:00:08:05"));
    assert!(inside("ip route").contains("default via 10.8.0.1"));
    assert!(host.reaches("10.8.0.5"), "host -> the container");
    assert!(inside("ping -c1 -W2 10.8.0.1").contains("1 received"));

    // After a kill -9 the connection comes back by its path.
    d.kill9();
    d.spawn();
    assert!(host.reaches("10.8.0.5"), "after kill -9:\n{}", d.log());
    d.ok(&format!("disconnect {path} br0"));
    assert!(!inside("ip -br link").contains("eth0"));

    // The container ends while the daemon is down: it starts all the same and shows the
    // port as gone.
    d.ok(&format!("connect {path} br0 --ip 10.8.0.5/24"));
    d.kill9();
    let _ = proc_.kill();
    let _ = proc_.wait();
    assert!(eventually(Duration::from_secs(2), || std::fs::read_link(
        &path
    )
    .is_err()));
    d.spawn();
    let v = d.json("show br0");
    let state = v[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .map(|p| p["state"].clone());
    assert_eq!(state, Some(serde_json::json!("gone")), "{v}");
    assert!(d.alive(), "daemon died:\n{}", d.log());
}
