//! vbridge next to other users of the host: it refuses devices the host needs, restores
//! what it changed (also after `kill -9`), never adopts or deletes what it did not make,
//! keeps one daemon per state directory, survives a crash at any point of `vbr up`
//! without leaking, bounds its clients, never dies of logging, refuses bad
//! configuration without rewriting it, and keeps names and files safe.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

fn fails(d: &Daemon, args: &str, code: i32, needle: &str) -> String {
    let out = d.vbr(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "`vbr {args}`: {err}");
    assert!(
        err.contains(needle),
        "`vbr {args}` said {err:?}, expected {needle:?}"
    );
    err
}

fn sysctl_in(host: &Netns, path: &str) -> String {
    host.ok(&format!("cat /proc/sys/{path}")).trim().to_owned()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn devices_the_host_needs_are_refused() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    // The loopback device: refused, and the host keeps ::1.
    fails(&d, "addif br0 lo", 1, "loopback");
    assert!(host.ok("ip -6 addr show dev lo").contains("::1"));
    assert_eq!(sysctl_in(&host, "net/ipv6/conf/lo/disable_ipv6"), "0");
    // A kernel bridge and its port.
    host.ok("ip link add kbr type bridge");
    host.ok("ip link add kp type veth peer name kpp");
    host.ok("ip link set kp master kbr");
    fails(&d, "addif br0 kbr", 1, "a bridge");
    fails(&d, "addif br0 kp", 1, "enslaved to kbr");
    // The interface of the default route: only with --force.
    host.ok("ip link add up0 type veth peer name up0p");
    host.ok("ip link set up0 up");
    host.ok("ip addr add 10.77.0.1/24 dev up0");
    host.ok("ip route add default via 10.77.0.2 dev up0");
    fails(&d, "addif br0 up0", 1, "default route");
    d.ok("addif br0 up0 --force");
    d.ok("delif br0 up0");
    // Nothing was attached by the refusals.
    let v = d.json("show br0");
    assert_eq!(v[0]["ports"].as_array().unwrap().len(), 1, "{v}");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn changed_sysctls_come_back_after_kill_9_and_sighup_changes_nothing() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip link add p1 type veth peer name p1p");
    host.ok("ip link add p2 type veth peer name p2p");
    let (arp, v6) = (
        "net/ipv4/conf/p1/arp_ignore",
        "net/ipv6/conf/p1/disable_ipv6",
    );
    assert_eq!(
        (sysctl_in(&host, arp), sysctl_in(&host, v6)),
        ("0".into(), "0".into())
    );
    d.ok("addif br0 p1");
    d.ok("addif br0 p2");
    assert_eq!(
        (sysctl_in(&host, arp), sysctl_in(&host, v6)),
        ("8".into(), "1".into())
    );
    // SIGHUP: documented as ignored; the daemon keeps running and forwarding.
    host.ok(&format!("kill -HUP {}", d.pid().unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.alive(), "SIGHUP killed the daemon:\n{}", d.log());
    assert!(d.log().contains("SIGHUP"), "{}", d.log());
    // kill -9, restart (the port is attached again: our values must not become the
    // originals), then delif: the values from before the first attach come back.
    d.kill9();
    d.spawn();
    assert_eq!(sysctl_in(&host, arp), "8");
    d.ok("delif br0 p1");
    assert_eq!(
        (sysctl_in(&host, arp), sysctl_in(&host, v6)),
        ("0".into(), "0".into())
    );
    // kill -9, then p2 leaves the configuration while the daemon is down: the next start
    // restores p2's values itself.
    d.kill9();
    let cfg = d.dir.join("state/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["bridges"]["br0"]["ports"] = serde_json::json!([]);
    std::fs::write(&cfg, serde_json::to_string(&v).unwrap()).unwrap();
    assert_eq!(sysctl_in(&host, "net/ipv4/conf/p2/arp_ignore"), "8");
    d.spawn();
    assert_eq!(sysctl_in(&host, "net/ipv4/conf/p2/arp_ignore"), "0");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn never_adopts_or_deletes_what_it_did_not_make() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    // Someone's persistent TAP: not taken over as a bridge, still there afterwards.
    host.ok("ip tuntap add mode tap name xt0");
    fails(&d, "addbr xt0", 1, "did not make");
    assert!(host.exec("ip link show xt0").status.success());
    // A namespace that has a TAP eth0 already: connect refuses, both ways.
    d.ok("addbr br0");
    let ns = Netns::new("n");
    ns.ok("ip tuntap add mode tap name eth0");
    fails(
        &d,
        &format!("connect {} br0 --tap", ns.name),
        1,
        "did not make",
    );
    fails(&d, &format!("connect {} br0", ns.name), 1, "did not make");
    assert!(ns.exec("ip link show eth0").status.success(), "eth0 kept");
    let v = d.json("show br0");
    assert_eq!(
        v[0]["ports"].as_array().unwrap().len(),
        1,
        "nothing attached: {v}"
    );
    // Our own connection works and goes again.
    d.ok(&format!("connect {} br0 --ifname e1", ns.name));
    d.ok(&format!("disconnect {} br0", ns.name));
    assert!(
        !ns.exec("ip link show e1").status.success(),
        "our e1 removed"
    );
    assert!(
        ns.exec("ip link show eth0").status.success(),
        "their eth0 kept"
    );
    // A regular file where the socket should be: refused, the file kept.
    let file = d.dir.join("not-a-socket");
    std::fs::write(&file, "precious").unwrap();
    let out = host.exec(&format!(
        "{} daemon --socket {} --state-dir {}",
        vbr_bin(),
        file.display(),
        d.dir.join("state2").display()
    ));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn one_daemon_per_state_directory_and_private_files() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    d.ok("addbr br0");
    let pid = d.pid().unwrap();
    let out = host.exec(&format!(
        "{} daemon --socket {} --state-dir {}",
        vbr_bin(),
        d.dir.join("other.sock").display(),
        d.dir.join("state").display()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains(&d.socket.display().to_string()), "{err}");
    assert!(
        d.ok("show").contains("br0"),
        "the first daemon is untouched"
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let state = d.dir.join("state");
    assert_eq!(mode(&state), 0o700);
    for f in ["config.json", "ledger.jsonl", "lock"] {
        assert_eq!(mode(&state.join(f)), 0o600, "{f}");
    }
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn an_auto_started_daemon_keeps_its_state_beside_its_socket() {
    require_root();
    let host = Netns::new("h");
    let dir = std::env::temp_dir().join(format!("vbr-test-{}", uniq("a")));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("x.sock");
    let topo = dir.join("t.toml");
    std::fs::write(&topo, "[[bridge]]\nname = \"bra\"\n").unwrap();
    let out = host.exec(&format!(
        "env -u VBR_STATE_DIR {} --socket {} up {}",
        vbr_bin(),
        socket.display(),
        topo.display()
    ));
    let lock = dir.join("x.sock.state/lock");
    let holder = std::fs::read_to_string(&lock).unwrap_or_default();
    // Stop it whatever happened.
    if let Some(pid) = holder
        .strip_prefix("pid ")
        .and_then(|s| s.split(',').next())
    {
        let _ = sh(&format!("kill -TERM {pid}"));
        let _ = eventually(Duration::from_secs(5), || !socket.exists());
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        holder.contains("x.sock"),
        "state beside the socket: {holder:?}"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn a_crash_at_any_point_of_up_leaves_nothing_behind() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::new(&host, &[]);
    let n = uniq("c");
    let topo = d.dir.join("crash.toml");
    let mut src =
        String::from("[[bridge]]\nname = \"brc\"\naddresses = [\"10.91.0.1/24\"]\nnat = true\n");
    for i in 0..3 {
        src.push_str(&format!(
            "[[namespace]]\nname = \"{n}{i}\"\nbridge = \"brc\"\naddresses = [\"10.91.0.{}/24\"]\ngateway = \"10.91.0.1\"\n{}",
            i + 2,
            if i == 2 { "tap = true\n" } else { "" }
        ));
    }
    std::fs::write(&topo, src).unwrap();
    let nss = || {
        ok("ip netns list")
            .lines()
            .filter(|l| l.starts_with(&n))
            .count()
    };
    let forward_before = host
        .ok("cat /proc/sys/net/ipv4/ip_forward")
        .trim()
        .to_owned();
    let leftovers = |d: &Daemon| -> Vec<String> {
        let mut left = Vec::new();
        if nss() > 0 {
            left.push(format!("{} namespaces", nss()));
        }
        let links = host.ok("ip -br link");
        for l in links.lines() {
            let name = l.split_whitespace().next().unwrap_or("");
            if name != "lo" {
                left.push(format!("link {name}"));
            }
        }
        if host.ok("nft list tables").contains("vbridge_brc") {
            left.push("nft table".into());
        }
        if host.ok("cat /proc/sys/net/ipv4/ip_forward").trim() != forward_before {
            left.push("ip_forward changed".into());
        }
        let shown = d.ok("show");
        if shown.contains("brc") {
            left.push("bridge in vbr show".into());
        }
        left
    };
    let mut crashed_at = Vec::new();
    for at in 1..=60 {
        // The daemon of the round before (or none).
        d.kill9();
        d.set_env(&[("VBR_CRASH_AT", &at.to_string())]);
        d.spawn();
        let out = d.vbr(&format!("up {}", topo.display()));
        if d.wait_exit(Duration::from_secs(3)).is_none() {
            // No crash point left: the whole `up` went through.
            assert!(out.status.success(), "{}", d.log());
            break;
        }
        crashed_at.push(at);
        d.set_env(&[]);
        d.spawn();
        let left = leftovers(&d);
        assert!(
            left.is_empty(),
            "after a crash at record {at}: {left:?}\n{}",
            d.log()
        );
    }
    assert!(crashed_at.len() > 10, "crash points tried: {crashed_at:?}");
    // With everything up, `down` leaves nothing either.
    d.kill9();
    d.set_env(&[]);
    d.spawn();
    d.ok(&format!("up {}", topo.display()));
    assert_eq!(nss(), 3);
    d.ok(&format!("down {}", topo.display()));
    assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn clients_are_bounded_and_slow_ones_cut_off() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start_with_env(&host, &[("VBR_REQUEST_TIMEOUT", "5")]);
    d.ok("addbr br0");
    // 40 idle clients: 32 are served, the rest told "busy"; so is `vbr show`. (The
    // request timeout leaves a loaded machine seconds to start `vbr show` before the
    // first idle client is cut off and its slot is free again.)
    let idle: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let out = d.vbr("show");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("try again"));
    let threads = std::fs::read_to_string(format!("/proc/{}/status", d.pid().unwrap()))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Threads:")
                .map(|n| n.trim().parse::<u32>().unwrap())
        })
        .unwrap();
    assert!(threads < 48, "{threads} threads for 40 idle clients");
    // Idle clients are cut off after the request timeout; then all is well again.
    let ok_again = eventually(Duration::from_secs(10), || d.vbr("show").status.success());
    assert!(ok_again, "idle clients were not cut off");
    drop(idle);
    // A slow client (half a request, then nothing) is cut off too.
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    slow.write_all(b"{\"cmd\":\"sh").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let r = slow.read_to_end(&mut buf);
    assert!(r.is_ok(), "closed by the daemon, not by our timeout: {r:?}");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn out_of_descriptors_the_daemon_backs_off_and_recovers() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::new(&host, &[]);
    // Few descriptors, soft and hard: accept fails with EMFILE under many clients.
    d.prefix = vec!["prlimit".into(), "--nofile=40:40".into()];
    d.spawn();
    let mut clients = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = UnixStream::connect(&d.socket) {
            clients.push(s);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(d.alive());
    let log = d.log();
    assert!(log.len() < 20_000, "the log grew to {} bytes", log.len());
    drop(clients);
    assert!(eventually(Duration::from_secs(5), || d
        .vbr("show")
        .status
        .success()));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn large_topologies_are_read_or_refused_with_the_limit_never_a_broken_pipe() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let topo = |n: usize| {
        let mut s = String::from("[[bridge]]\nname = \"brl\"\n");
        for i in 0..n {
            s.push_str(&format!(
                "[[namespace]]\nname = \"/nonexistent/{i}\"\nbridge = \"brl\"\n"
            ));
        }
        let p = d.dir.join(format!("large{n}.toml"));
        std::fs::write(&p, s).unwrap();
        p
    };
    // 5,000 namespaces arrive whole: the daemon answers about them (they do not exist).
    let out = d.vbr(&format!("up {}", topo(5000).display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/0"), "{err}");
    // 40,000 are more than the daemon reads: refused before sending, naming the limit.
    let out = d.vbr(&format!("up {}", topo(40_000).display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("4194304"), "{err}");
    assert!(d.ok("show").lines().count() == 1, "nothing made");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn logging_to_a_closed_pipe_never_kills_and_sigterm_stops_cleanly() {
    require_root();
    let host = Netns::new("h");
    let dir = std::env::temp_dir().join(format!("vbr-test-{}", uniq("l")));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("s");
    let mut child = std::process::Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", host.name))
        .args([vbr_bin(), "--socket"])
        .arg(&socket)
        .arg("daemon")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The log's reader goes away.
    drop(child.stderr.take());
    let vbr = |args: &str| {
        sh(&format!(
            "{} --socket {} {args}",
            vbr_bin(),
            socket.display()
        ))
    };
    assert!(eventually(Duration::from_secs(10), || vbr("show")
        .status
        .success()));
    host.ok("ip link add q1 type veth peer name q1p");
    for _ in 0..20 {
        // Each logs lines ("bridge added", "port added", ...).
        assert!(vbr("addbr brq").status.success());
        assert!(vbr("addif brq q1").status.success());
        assert!(vbr("delbr brq").status.success());
    }
    assert!(vbr("show").status.success(), "still answering");
    let _ = sh(&format!("kill -TERM {}", child.id()));
    let st = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            child.try_wait().ok().flatten()
        })
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("SIGTERM did not stop the daemon");
        });
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(st.code(), Some(0));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn invalid_configuration_stops_the_start_and_is_kept_as_it_was() {
    require_root();
    let host = Netns::new("h");
    let mut d = Daemon::start(&host);
    d.ok("addbr br0");
    host.ok("ip link add p1 type veth peer name p1p");
    d.ok("addif br0 p1");
    d.ok("link set p1 access 10");
    d.ok("fdb add br0 02:00:00:00:00:09 p1 vlan 10");
    d.kill9();
    let cfg = d.dir.join("state/config.json");
    let good = std::fs::read_to_string(&cfg).unwrap();
    for (from, to, field) in [
        ("\"vid\": 10", "\"vid\": 5000", "vlan"),
        (
            "\"02:00:00:00:00:09\"",
            "\"zz:00:00:00:00:09\"",
            "static_fdb[0].mac",
        ),
        (
            "\"ageing_secs\": 300.0",
            "\"ageing_secs\": -1.0",
            "ageing_secs",
        ),
    ] {
        let bad = good.replacen(from, to, 1);
        assert_ne!(bad, good, "{from} not in {good}");
        std::fs::write(&cfg, &bad).unwrap();
        d.spawn_only();
        let code = d.wait_exit(Duration::from_secs(10));
        assert_eq!(code, Some(1), "{}", d.log());
        let log = d.log();
        assert!(
            log.contains("config.json") && log.contains(field),
            "{field}: {log}"
        );
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), bad, "not rewritten");
    }
    std::fs::write(&cfg, &good).unwrap();
    d.spawn();
    assert!(d.ok("show").contains("p1"));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn names_with_control_characters_are_refused_and_output_escaped() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    for args in [
        "addbr $'br\\e[31m'",
        "netns add $'n\\e[2J'",
        "addbr $'a\\nb'",
    ] {
        let out = sh(&format!(
            "bash -c \"{} --socket {} {args}\"",
            vbr_bin(),
            d.socket.display()
        ));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args}");
        assert!(!err.contains('\u{1b}'), "raw escape printed: {err:?}");
        assert!(err.contains("control"), "{args}: {err}");
    }
    assert_eq!(d.ok("show").lines().count(), 1);
}
