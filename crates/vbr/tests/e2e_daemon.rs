//! The daemon under stress: `kill -9` and restart (configuration and static entries come
//! back, traffic resumes), a port's netdev deleted under it, and bad input on the CLI and
//! the API socket.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn kill9_and_restart_loses_nothing() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip addr add 10.2.0.1/24 dev br0");
    host.ok("ip link set br0 up");
    let a = Endpoint::new(&host, "a", "veth10", "veth11", "10.2.0.11/24");
    let b = Endpoint::new(&host, "b", "veth20", "veth21", "10.2.0.21/24");
    d.ok("addif br0 veth10");
    d.ok("addif br0 veth20");
    d.ok("link set veth20 hairpin on");
    d.ok("fdb add br0 02:00:00:00:aa:01 veth10 vlan 1");
    d.ok("setageing br0 120");
    d.ok("setbridgeprio br0 4096");
    d.ok("setpathcost br0 veth10 300");
    d.ok("link set veth20 edge on bpdu_guard on");
    d.ok("stp br0 rstp");
    assert!(a.ns.reaches("10.2.0.21"));
    assert!(host.reaches("10.2.0.11"));
    let before = d.json("show br0");

    d.kill9();
    d.spawn();
    let after = d.json("show br0");
    let names = |v: &serde_json::Value| -> Vec<String> {
        v[0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&after), names(&before));
    assert_eq!(after[0]["mac"], before[0]["mac"], "the bridge MAC survives");
    assert_eq!(after[0]["ageing_secs"], 120.0);
    let veth20 = after[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "veth20")
        .unwrap()
        .clone();
    assert_eq!(veth20["flags"]["hairpin"], true);
    let stp = d.json("showstp br0");
    assert_eq!(stp["mode"], "rstp");
    assert!(
        stp["bridge_id"].as_str().unwrap().starts_with("1000."),
        "{stp}"
    );
    let port = |n: &str| {
        stp["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(port("veth10")["path_cost"], 300);
    assert_eq!(
        (
            port("veth20")["admin_edge"].as_bool(),
            port("veth20")["bpdu_guard"].as_bool()
        ),
        (Some(true), Some(true))
    );
    let fdb = d.ok("fdb show br0");
    assert!(
        fdb.contains("02:00:00:00:aa:01 dev veth10 vlan 1 static"),
        "{fdb}"
    );
    assert!(a.ns.reaches("10.2.0.21"), "traffic resumes after restart");
    assert!(b.ns.reaches("10.2.0.11"));
    // br0 outlived the daemon with its address: the host reaches the namespaces again.
    assert!(host.ok("ip -br addr show br0").contains("10.2.0.1/24"));
    assert!(host.reaches("10.2.0.21"), "host -> namespace after restart");
    // delbr removes the host interface for good.
    d.ok("delbr br0");
    assert!(
        !host.exec("ip link show br0").status.success(),
        "br0 left behind by delbr"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn vanished_netdev_is_reported_and_others_keep_forwarding() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let eps = d.endpoints(
        &host,
        &[
            ("a", "p1", "e", "10.3.0.1/24"),
            ("b", "p2", "e", "10.3.0.2/24"),
            ("c", "p3", "e", "10.3.0.3/24"),
        ],
    );
    let (a, c) = (&eps[0], &eps[2]);
    assert!(a.ns.reaches("10.3.0.3"));
    host.ok("ip link del p3");
    let state = |n: &str| {
        let v = d.json("show br0");
        v[0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .map(|p| p["state"].clone())
    };
    assert!(
        eventually(Duration::from_secs(5), || state("p3")
            == Some("gone".into())),
        "p3 not shown as gone"
    );
    assert!(d.ok("show br0").contains("p3 (gone)"));
    assert!(a.ns.reaches("10.3.0.2"), "the others keep forwarding");
    // The netdev comes back (same name): the port is attached again.
    host.ok("ip link add p3 type veth peer name e3");
    host.ok(&format!("ip link set e3 netns {}", c.ns.name));
    c.ns.ok("ip addr add 10.3.0.3/24 dev e3");
    c.ns.ok("ip link set e3 up");
    let back = eventually(Duration::from_secs(5), || state("p3") == Some("up".into()));
    assert!(back, "p3 not re-attached: {}", d.json("show br0"));
    // The new device has a new MAC: forget the old neighbour entry instead of waiting
    // for the kernel's unicast ARP probes to time out.
    a.ns.ok("ip neigh flush all");
    assert!(a.ns.reaches("10.3.0.3"), "traffic to the returned port");
}

fn raw_request(d: &Daemon, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?} is not JSON: {e}"))
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn bad_input_gets_clear_errors_and_loses_nothing() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip link add p1 type veth peer name p1p");
    d.ok("addif br0 p1");
    let fails = |args: &str, code: i32, needle: &str| {
        let out = d.vbr(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "`vbr {args}`: {err}");
        assert!(
            err.contains(needle),
            "`vbr {args}` said {err:?}, expected {needle:?}"
        );
    };
    fails("addif nosuch p1", 1, "bridge nosuch does not exist");
    fails("addif br0 p1", 1, "already a port of bridge br0");
    fails("addif br0 nonexistent0", 1, "nonexistent0");
    fails("addbr br0", 1, "already exists");
    fails("addbr bad/name", 1, "invalid interface name");
    fails("link set p1 access 5000", 2, "VLAN id 5000 is invalid");
    fails("link set p1 access 0", 2, "VLAN id 0 is invalid");
    fails("link set p1 trunk 10,4095", 2, "4095");
    fails("link set p1 trunk 10,abc", 2, "\"abc\" is not a VLAN id");
    fails("link set p1 wibble on", 2, "unknown port flag");
    fails("link set nosuch hairpin on", 1, "not a port of any bridge");
    fails("fdb add br0 zz:00:00:00:00:01 p1", 1, "invalid MAC address");
    fails("fdb add br0 ff:ff:ff:ff:ff:ff p1", 1, "unicast");
    fails(
        "fdb add br0 02:00:00:00:00:01 p1 vlan 9999",
        1,
        "invalid VLAN id 9999",
    );
    fails("setageing br0 2000000", 1, "out of range");
    fails("setpathcost br0 p1 0", 1, "1..=200000000");
    fails("setpathcost br0 p1 lots", 2, "auto");
    fails("hairpin br0 p1 maybe", 2, "expected on or off");
    fails("nosuchverb", 2, "unrecognized subcommand");

    // Garbage, wrong types, unknown fields and oversized lines on the socket itself.
    for junk in [
        &b"garbage\n"[..],
        b"{\"cmd\":\"addbr\"}\n",
        b"{\"cmd\":\"addbr\",\"bridge\":7}\n",
        b"{\"cmd\":\"show\",\"x\":1}\n",
        b"\xff\xfe\n",
    ] {
        let v = raw_request(&d, junk);
        assert_eq!(v["ok"], false, "{junk:?} -> {v}");
        assert_eq!(v["version"], 1, "{v}");
        assert_eq!(v["error"]["kind"], "invalid_argument", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("bad request"),
            "{v}"
        );
    }
    // Over the 4 MiB limit: refused with the limit named, the connection answered (the
    // rest of the line is read, so the client never sees a broken pipe).
    let mut huge = vec![b'x'; 5 << 20];
    huge.push(b'\n');
    let v = raw_request(&d, &huge);
    assert_eq!(v["error"]["kind"], "too_large", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("4194304"),
        "{v}"
    );
    let v = raw_request(&d, b"{\"cmd\":\"ping\",\"version\":1}\n");
    assert_eq!(v["result"]["version"], 1, "{v}");
    let v = raw_request(&d, b"{\"cmd\":\"ping\",\"version\":99}\n");
    assert_eq!(v["error"]["kind"], "version", "{v}");

    // A reader that went away (`vbr show | head -0`): a quiet end, no panic.
    for args in [&["show"][..], &["--json", "show"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(vbr_bin())
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }

    // The daemon is up and nothing was lost, also across a restart.
    assert!(d.alive(), "daemon died:\n{}", d.log());
    assert!(d.ok("show").contains("p1"));
    d.kill9();
    d.spawn();
    assert!(d.ok("show").contains("p1"));
}

#[test]
fn unreachable_daemon_exit_code() {
    let out = sh(&format!(
        "{} --socket /nonexistent/vbr.sock show",
        vbr_bin()
    ));
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the vbr daemon"));
}

#[test]
fn a_daemon_that_never_answers_does_not_hang_the_cli() {
    let dir = std::env::temp_dir().join(format!("vbr-test-{}", uniq("s")));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mute.sock");
    // Accepts, and never answers.
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mute = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(5));
        drop(conn);
    });
    let started = std::time::Instant::now();
    let out = sh(&format!(
        "VBR_TIMEOUT=1 timeout 20 {} --socket {} show",
        vbr_bin(),
        path.display()
    ));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("did not answer within 1 s"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    mute.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
