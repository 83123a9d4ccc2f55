//! `vbr up` / `vbr down` with the built-in default topology (seed 002's br0 with ns0 and
//! ns1), `vbr connect` / `disconnect` round trips with TAP and veth, a connected
//! namespace deleted by someone else, and a `kill -9` of the daemon `vbr up` started.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// Removes the default topology's namespaces if this test made them, pass or fail.
struct DefaultNamespaces;

impl Drop for DefaultNamespaces {
    fn drop(&mut self) {
        for n in ["ns0", "ns1"] {
            let _ = sh(&format!(
                "ip netns pids {n} 2>/dev/null | xargs -r kill -9; ip netns del {n} 2>/dev/null"
            ));
        }
    }
}

struct Cli {
    host: String,
    socket: PathBuf,
    state: PathBuf,
}

impl Cli {
    fn run(&self, args: &str) -> std::process::Output {
        sh(&format!(
            "VBR_STATE_DIR={} nsenter --net=/run/netns/{} {} --socket {} {args}",
            self.state.display(),
            self.host,
            vbr_bin(),
            self.socket.display()
        ))
    }

    fn ok(&self, args: &str) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`vbr {args}` failed:\n{}{}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.state.join("daemon.log")).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn up_default_connect_disconnect_down() {
    require_root();
    if ok("ip netns list")
        .lines()
        .any(|l| l.starts_with("ns0") || l.starts_with("ns1"))
    {
        eprintln!(
            "skipping up_default_connect_disconnect_down: namespaces ns0/ns1 already exist here"
        );
        return;
    }
    let _cleanup = DefaultNamespaces;
    let host = Netns::new("h");
    let dir = std::env::temp_dir().join(format!("vbr-test-{}", uniq("u")));
    let cli = Cli {
        host: host.name.clone(),
        socket: dir.join("vbr.sock"),
        state: dir.join("state"),
    };

    let forwarding_before = host.ok("sysctl -n net.ipv4.ip_forward");
    // No daemon runs: `vbr up` starts one, brings up seed 002's network, prints `show`.
    let out = cli.ok("up");
    assert!(
        out.contains("br0") && out.contains("ns0-eth0") && out.contains("ns1-eth0"),
        "{out}"
    );
    assert!(ok("ip netns exec ns0 ping -c1 -W2 192.168.88.3").contains("1 received"));
    assert!(host.reaches("192.168.88.2"), "host -> ns0");
    assert!(ok("ip netns exec ns0 ip route").contains("default via 192.168.88.1"));

    // Seed 002's NAT: ns0 reaches a machine outside the subnet, which sees the host's
    // address as the source (it has no route back to 192.168.88.0/24 at all).
    let outside = Netns::new("o");
    host.ok(&format!(
        "ip link add up0 type veth peer name o0 netns {}",
        outside.name
    ));
    host.ok("ip addr add 10.99.9.1/24 dev up0");
    host.ok("ip link set up0 up");
    outside.ok("ip addr add 10.99.9.2/24 dev o0");
    outside.ok("ip link set o0 up");
    let cap = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &outside.name,
            "timeout",
            "8",
            "tcpdump",
            "-l",
            "-n",
            "-c",
            "1",
            "-i",
            "o0",
            "icmp[icmptype] == icmp-echo",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        eventually(Duration::from_secs(5), || sh(
            "ip netns exec ns0 ping -c1 -W1 10.99.9.2"
        )
        .status
        .success()),
        "ns0 does not reach the outside through NAT"
    );
    let seen = String::from_utf8_lossy(&cap.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        seen.contains("10.99.9.1 > 10.99.9.2"),
        "outside saw: {seen}"
    );
    assert_eq!(host.ok("sysctl -n net.ipv4.ip_forward").trim(), "1");

    // Applying it again changes nothing.
    let config = std::fs::read(cli.state.join("config.json")).unwrap();
    let again = cli.ok("--json up");
    assert!(again.contains("\"changed\": false"), "{again}");
    assert_eq!(
        std::fs::read(cli.state.join("config.json")).unwrap(),
        config
    );

    // connect / disconnect, TAP then veth.
    cli.ok("netns add vbtestx");
    let _x = Netns {
        name: "vbtestx".into(),
    };
    cli.ok("connect vbtestx br0 --tap --ip 192.168.88.9/24 --gateway 192.168.88.1");
    assert!(ok("ip netns exec vbtestx ping -c1 -W2 192.168.88.2").contains("1 received"));
    cli.ok("link set vbtestx-eth0 isolated on");
    let v: serde_json::Value = serde_json::from_str(&cli.ok("--json show br0")).unwrap();
    let port = v[0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "vbtestx-eth0")
        .unwrap()
        .clone();
    assert_eq!(
        (port["kind"].as_str(), port["netns"].as_str()),
        (Some("tap"), Some("vbtestx"))
    );
    assert_eq!(port["flags"]["isolated"], true);
    cli.ok("disconnect vbtestx br0");
    assert!(
        !ok("ip -n vbtestx -br link").contains("eth0"),
        "eth0 left in the namespace"
    );
    cli.ok("connect vbtestx br0 --veth --ifname eth1 --ip 192.168.88.10/24");
    assert!(ok("ip netns exec vbtestx ping -c1 -W2 192.168.88.3").contains("1 received"));
    cli.ok("disconnect vbtestx br0");
    assert!(
        !host.ok("ip -br link").contains("vbtestx-eth1"),
        "veth host end left behind"
    );
    cli.ok("netns del vbtestx");
    assert!(!ok("ip netns list").contains("vbtestx"));

    // kill -9 of the daemon; `vbr up` starts it again and changes nothing; traffic flows.
    let _ = sh(&format!("ip netns pids {} | xargs -r kill -9", host.name));
    std::thread::sleep(Duration::from_millis(300));
    let again = cli.ok("--json up");
    assert!(again.contains("\"changed\": false"), "{again}");
    assert!(ok("ip netns exec ns1 ping -c1 -W2 192.168.88.2").contains("1 received"));

    // A connected namespace deleted by someone else: reported, not fatal.
    ok("ip netns del ns1");
    let gone = eventually(Duration::from_secs(5), || {
        let v: serde_json::Value = serde_json::from_str(&cli.ok("--json show br0")).unwrap();
        v[0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "ns1-eth0" && p["state"] == "gone")
    });
    assert!(gone, "ns1-eth0 not reported gone: {}", cli.ok("show"));
    assert!(host.reaches("192.168.88.2"), "the rest keeps working");

    // down removes exactly what up made.
    cli.ok("down");
    assert!(
        !host.ok("nft list tables").contains("vbridge_br0"),
        "NAT table left behind"
    );
    assert_eq!(
        host.ok("sysctl -n net.ipv4.ip_forward"),
        forwarding_before,
        "ip_forward not restored"
    );
    assert!(
        !host.exec("ip link show br0").status.success(),
        "br0 left behind"
    );
    assert!(
        !ok("ip netns list").lines().any(|l| l.starts_with("ns0")),
        "ns0 left behind"
    );
    assert!(!cli.ok("show").contains("br0"));
    let out = cli.run("down");
    assert!(!out.status.success(), "a second down has nothing to remove");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn bad_topology_files_are_refused_before_anything_changes() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let dir = d.dir.clone();
    let cases = [
        ("[[bridge]]\nname = \"brx\"\nspeed = 10\n", ":3:", "speed"),
        (
            "[[bridge]]\nname = \"brx\"\naddresses = [\"10.0.0.1/40\"]\n",
            ":3: bridge[0].addresses[0]",
            "prefix",
        ),
        (
            "[[bridge]]\nname = \"brx\"\n[[namespace]]\nname = \"n\"\nbridge = \"bry\"\n",
            ":5: namespace[0].bridge",
            "bry",
        ),
    ];
    for (i, (src, at, what)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.toml"));
        std::fs::write(&f, src).unwrap();
        let out = d.vbr(&format!("up {}", f.display()));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("bad{i}.toml{at}")) && err.contains(what),
            "{err}"
        );
    }
    assert!(!d.ok("show").contains("brx"), "nothing may change");

    // A file moved after `up`: `down` with the new path names the recorded one, which
    // still works.
    let f = dir.join("good.toml");
    std::fs::write(&f, "[[bridge]]\nname = \"brm\"\n").unwrap();
    d.ok(&format!("up {}", f.display()));
    assert!(d.ok("show").contains("brm"));
    let moved = dir.join("moved.toml");
    std::fs::rename(&f, &moved).unwrap();
    let out = d.vbr(&format!("down {}", moved.display()));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    let recorded = std::fs::canonicalize(&dir).unwrap().join("good.toml");
    assert!(err.contains(&recorded.display().to_string()), "{err}");
    d.ok(&format!("down {}", recorded.display()));
    assert!(!d.ok("show").contains("brm"));
}
