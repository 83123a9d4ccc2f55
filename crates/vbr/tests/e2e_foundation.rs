//! The foundation: namespaces connect over veth by default (TAP on request), forwarding
//! goes on while namespaces with NAT come and go, netdev changes are followed (a port's
//! device renamed or moved away shows as gone), one MTU rule on every path, typed API
//! errors, and topology files read only when they are small regular files.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn namespaces_connect_over_veth_by_default_and_tap_on_request() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let a = Netns::new("a");
    let b = Netns::new("b");
    d.ok(&format!("connect {} br0 --ip 10.60.0.1/24", a.name));
    d.ok(&format!("connect {} br0 --tap --ip 10.60.0.2/24", b.name));
    let pa = port_json(&d, "br0", &port_of(&a.name, "eth0"));
    assert_eq!(pa["kind"], "interface", "{pa}");
    // It joins the fast path a moment after it is added.
    assert!(
        eventually(Duration::from_secs(3), || port_json(
            &d,
            "br0",
            &port_of(&a.name, "eth0")
        )["fast_path"]
            == true),
        "{pa}"
    );
    let pb = port_json(&d, "br0", &port_of(&b.name, "eth0"));
    assert_eq!(pb["kind"], "tap", "{pb}");
    assert!(a.reaches("10.60.0.2"));
    // Topology files: veth unless `tap = true`.
    let c = uniq("c");
    let t = d.dir.join("t.toml");
    std::fs::write(
        &t,
        format!(
            "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"{c}x\"\nbridge = \"br0\"\n[[namespace]]\nname = \"{c}y\"\nbridge = \"br0\"\ntap = true\n"
        ),
    )
    .unwrap();
    d.ok(&format!("up {}", t.display()));
    let kind = |n: &str| port_json(&d, "br0", &port_of(n, "eth0"))["kind"].clone();
    assert_eq!(kind(&format!("{c}x")), "interface");
    assert_eq!(kind(&format!("{c}y")), "tap");
    d.ok(&format!("down {}", t.display()));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn forwarding_goes_on_while_namespaces_with_nat_come_and_go() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let a = Netns::new("a");
    let b = Netns::new("b");
    d.ok(&format!("connect {} br0 --tap --ip 10.61.0.1/24", a.name));
    d.ok(&format!("connect {} br0 --tap --ip 10.61.0.2/24", b.name));
    assert!(a.reaches("10.61.0.2"));
    let n = uniq("z");
    let mut src =
        String::from("[[bridge]]\nname = \"brz\"\naddresses = [\"10.62.0.1/24\"]\nnat = true\n");
    for i in 0..10 {
        src.push_str(&format!(
            "[[namespace]]\nname = \"{n}{i}\"\nbridge = \"brz\"\naddresses = [\"10.62.0.{}/24\"]\ngateway = \"10.62.0.1\"\n",
            i + 2
        ));
    }
    let t = d.dir.join("churn.toml");
    std::fs::write(&t, src).unwrap();
    // Pings every 10 ms for as long as two rounds of up and down take.
    let pinger = std::process::Command::new("ip")
        .args(["netns", "exec", &a.name, "ping", "-i", "0.01", "10.61.0.2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    for _ in 0..2 {
        d.ok(&format!("up {}", t.display()));
        d.ok(&format!("down {}", t.display()));
    }
    std::thread::sleep(Duration::from_millis(200));
    let _ = sh(&format!("kill -INT {}", pinger.id()));
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    let nums: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let (sent, got) = (nums[0], nums[1]);
    assert!(sent > 20, "{summary} in {:?}", start.elapsed());
    // The last one may still be in flight when ping stops.
    assert!(got + 1 >= sent, "pings lost during the churn: {summary}");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_port_device_renamed_or_moved_away_is_gone_and_comes_back() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip link add p1 type veth peer name p1p");
    host.ok("ip link add p2 type veth peer name p2p");
    d.ok("addif br0 p1");
    d.ok("addif br0 p2");
    let state = |p: &str| {
        port_json(&d, "br0", p)["state"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    host.ok("ip link set p1 name p9");
    assert!(eventually(Duration::from_secs(3), || state("p1") == "gone"));
    let away = Netns::new("w");
    host.ok(&format!("ip link set p2 netns {}", away.name));
    assert!(eventually(Duration::from_secs(3), || state("p2") == "gone"));
    // Back under its name: attached again.
    host.ok("ip link set p9 name p1");
    assert!(eventually(Duration::from_secs(3), || state("p1") == "up"));
    // The bridge's own host interface deleted by hand: shown as broken; delbr still works.
    host.ok("ip link del br0");
    assert!(eventually(Duration::from_secs(3), || d
        .ok("show")
        .contains("br0 (host interface gone)")));
    d.ok("delbr br0");
    assert_eq!(d.ok("show").lines().count(), 1);
}

/// rx/tx drops for `reason` on `port`.
fn drops(d: &Daemon, bridge: &str, port: &str, reason: &str) -> u64 {
    port_json(d, bridge, port)["counters"]["drops"][reason]
        .as_u64()
        .unwrap_or(0)
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn frames_over_the_egress_mtu_are_dropped_and_counted_on_every_path() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let a = Netns::new("a");
    let b = Netns::new("b");
    let t = Netns::new("t");
    d.ok(&format!("connect {} br0 --ip 10.63.0.1/24", a.name));
    d.ok(&format!("connect {} br0 --ip 10.63.0.2/24", b.name));
    d.ok(&format!("connect {} br0 --tap --ip 10.63.0.3/24", t.name));
    let (pb, pt) = (port_of(&b.name, "eth0"), port_of(&t.name, "eth0"));
    let big = |to: &str| {
        a.exec(&format!("ping -c1 -W1 -M do -s 1200 {to}"))
            .status
            .success()
    };
    // Known flows, the veth one in the kernel fast path.
    assert!(a.reaches("10.63.0.2") && a.reaches("10.63.0.3"));
    assert!(big("10.63.0.2") && big("10.63.0.3"));
    assert!(eventually(Duration::from_secs(3), || {
        a.ping("10.63.0.2");
        d.json("show br0")[0]["fast_flows"].as_u64().unwrap_or(0) > 0
    }));
    // The veth port's netdev (here) and the TAP (in its namespace) get a 1000-byte MTU.
    host.ok(&format!("ip link set {pb} mtu 1000"));
    t.ok("ip link set eth0 mtu 1000");
    let mtu_known = eventually(Duration::from_secs(3), || {
        port_json(&d, "br0", &pb)["mtu"] == 1000 && port_json(&d, "br0", &pt)["mtu"] == 1000
    });
    assert!(mtu_known, "{}", d.json("show br0"));
    for (to, port) in [("10.63.0.2", &pb), ("10.63.0.3", &pt)] {
        let before = drops(&d, "br0", port, "mtu_exceeded");
        assert!(
            !big(to),
            "a 1242-byte frame crossed a 1000-byte MTU to {port}"
        );
        assert!(
            eventually(Duration::from_secs(3), || drops(
                &d,
                "br0",
                port,
                "mtu_exceeded"
            ) > before),
            "not counted on {port}: {}",
            d.json("show br0")
        );
        assert!(a.ping(to), "small frames still pass to {port}");
    }
}

fn raw(d: &Daemon, line: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut answer = String::new();
    BufReader::new(s).read_line(&mut answer).unwrap();
    serde_json::from_str(&answer).unwrap()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn api_errors_carry_a_kind_and_results_their_shape() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let kind = |line: &str| raw(&d, line)["error"]["kind"].as_str().map(str::to_owned);
    assert_eq!(
        kind(r#"{"cmd":"delbr","bridge":"nosuch"}"#).as_deref(),
        Some("not_found")
    );
    assert_eq!(raw(&d, r#"{"cmd":"addbr","bridge":"br0"}"#)["ok"], true);
    assert_eq!(
        kind(r#"{"cmd":"addbr","bridge":"br0"}"#).as_deref(),
        Some("already_exists")
    );
    assert_eq!(
        kind(r#"{"cmd":"setfd","bridge":"br0","secs":99}"#).as_deref(),
        Some("invalid_argument")
    );
    assert_eq!(
        kind(r#"{"cmd":"addif","bridge":"br0","port":"lo"}"#).as_deref(),
        Some("conflict")
    );
    assert_eq!(
        kind(r#"{"version":2,"cmd":"show"}"#).as_deref(),
        Some("version")
    );
    let v = raw(&d, r#"{"version":1,"cmd":"show"}"#);
    assert_eq!(v["version"], 1);
    assert_eq!(v["result"][0]["name"], "br0");
    assert!(v["result"][0]["ports"].is_array());
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn topology_files_are_read_only_when_small_regular_files() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let fifo = d.dir.join("fifo.toml");
    ok(&format!("mkfifo {}", fifo.display()));
    let big = d.dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; 9 << 20]).unwrap();
    for (file, needle) in [
        ("/dev/zero".to_owned(), "not a regular file"),
        (fifo.display().to_string(), "not a regular file"),
        (big.display().to_string(), "more than"),
        ("/nonexistent.toml".to_owned(), "No such file"),
    ] {
        let start = Instant::now();
        let out = d.vbr(&format!("up {file}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(err.contains(needle), "{file}: {err}");
        assert!(start.elapsed() < Duration::from_secs(5), "{file} took long");
    }
}
