//! Published ports and NAT that mends itself, with real traffic: a web server in a
//! namespace behind a bridge, reached through a published host port from an "outside"
//! namespace routed through the host, from the host itself and from a neighbour on the
//! same bridge (hairpin); a port claimed twice or already listened on is refused;
//! `nft flush ruleset` and `ip_forward=0` are undone within seconds; `down` and
//! `disconnect` take exactly their rules away.

mod common;

use std::time::Duration;

use common::*;

/// busybox httpd on port 80 in `ns`, serving `body`.
fn web(ns: &Netns, dir: &std::path::Path, body: &str) {
    let root = dir.join(format!("www-{}", ns.name));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), body).unwrap();
    ns.ok(&format!("busybox httpd -p 80 -h {}", root.display()));
}

/// `wget` of `url` from `ns`; the body, if it came.
fn get(ns: &Netns, url: &str) -> Option<String> {
    // (busybox wget -T crashes in Debian 12's busybox: `timeout` bounds it instead.)
    let o = ns.exec(&format!("timeout 3 busybox wget -q -O - {url}"));
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn nft_tables(host: &Netns) -> String {
    host.ok("nft list tables")
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, nftables"
)]
fn published_ports_reach_their_namespace_from_everywhere_and_mend_themselves() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let out = outside(&host);
    let t = uniq("p");
    let (w, c) = (format!("{t}w"), format!("{t}c"));
    let topo = d.dir.join("nat.toml");
    std::fs::write(
        &topo,
        format!(
            r#"[[bridge]]
name = "brp"
addresses = ["10.76.0.1/24"]
nat = true

[[namespace]]
name = "{w}"
bridge = "brp"
addresses = ["10.76.0.2/24"]
gateway = "10.76.0.1"
publish = ["8080:80/tcp", "5353:53/udp"]

[[namespace]]
name = "{c}"
bridge = "brp"
addresses = ["10.76.0.3/24"]
gateway = "10.76.0.1"
"#
        ),
    )
    .unwrap();
    d.ok(&format!("up {}", topo.display()));
    let (nw, nc) = (Netns::adopt(&w), Netns::adopt(&c));
    web(&nw, &d.dir, "vbridge-web");
    assert!(nc.reaches("10.76.0.2"));
    // From outside, through the host's forwarding.
    assert!(
        eventually(Duration::from_secs(5), || get(
            &out,
            "http://10.77.0.1:8080/"
        )
        .is_some_and(|b| b.contains("vbridge-web"))),
        "outside -> published port\n{}",
        d.log()
    );
    // From the host itself, to one of its addresses.
    assert_eq!(
        get(&host, "http://10.77.0.1:8080/").as_deref(),
        Some("vbridge-web"),
        "host -> published port"
    );
    // From a neighbour on the bridge, to the bridge's address (hairpin).
    assert_eq!(
        get(&nc, "http://10.76.0.1:8080/").as_deref(),
        Some("vbridge-web"),
        "neighbour -> published port (hairpin)"
    );
    // UDP: a datagram to 5353 arrives at the namespace's port 53 (tcpdump there sees
    // it with its new destination).
    let seen = std::process::Command::new("ip")
        .args([
            "netns", "exec", &w, "timeout", "5", "tcpdump", "-n", "-l", "-c", "1", "-i", "eth0",
        ])
        .args(["udp", "and", "dst", "port", "53"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        out.exec("bash -c 'printf hello-udp > /dev/udp/10.77.0.1/5353'");
        std::thread::sleep(Duration::from_millis(200));
    }
    let seen = seen.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&seen.stdout).into_owned();
    assert!(
        line.contains("10.77.0.2.") && line.contains("> 10.76.0.2.53:"),
        "the UDP datagram reached port 53: {line:?}"
    );
    // A host port published already, and one a host program listens on, are refused.
    let x = Netns::new("x");
    let o = d.vbr(&format!(
        "connect {} brp --ip 10.76.0.9/24 --publish 8080:81",
        x.name
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("published already"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let busy = std::process::Command::new("ip")
        .args([
            "netns", "exec", &host.name, "busybox", "nc", "-l", "-p", "9090",
        ])
        .spawn()
        .unwrap();
    host.wait_listening(":9090");
    let o = d.vbr(&format!(
        "connect {} brp --ip 10.76.0.9/24 --publish 9090:80",
        x.name
    ));
    let mut busy = busy;
    let _ = busy.kill();
    let _ = busy.wait();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("in use on the host"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !d.ok("show brp").contains(&port_of(&x.name, "eth0")),
        "a refused connection is not left behind"
    );
    // Someone flushes the ruleset: the table comes back, the port works again.
    host.ok("nft flush ruleset");
    assert!(
        eventually(Duration::from_secs(4), || nft_tables(&host)
            .contains("vbridge_brp")),
        "the table is written back"
    );
    assert!(
        eventually(Duration::from_secs(4), || get(
            &out,
            "http://10.77.0.1:8080/"
        )
        .is_some()),
        "published again after the flush"
    );
    assert!(d.log().contains("written back"), "{}", d.log());
    // Someone turns forwarding off: it comes back on.
    host.ok("sysctl -qw net.ipv4.ip_forward=0");
    assert!(
        eventually(Duration::from_secs(4), || host
            .ok("sysctl -n net.ipv4.ip_forward")
            .trim()
            == "1"),
        "ip_forward back on"
    );
    // `down` takes the table away and puts ip_forward back as it was (0 in a new
    // namespace); the keeper does not bring them back.
    d.ok(&format!("down {}", topo.display()));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !nft_tables(&host).contains("vbridge_brp"),
        "{}",
        nft_tables(&host)
    );
    assert_eq!(host.ok("sysctl -n net.ipv4.ip_forward").trim(), "0");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, nftables"
)]
fn connect_publish_and_disconnect_take_exactly_their_rules() {
    require_root();
    let host = Netns::new("h");
    let d = Daemon::start(&host);
    let out = outside(&host);
    d.ok("addbr brq");
    host.ok("ip addr add 10.78.0.1/24 dev brq");
    host.ok("ip link set brq up");
    let a = Netns::new("a");
    let b = Netns::new("b");
    d.ok(&format!(
        "connect {} brq --ip 10.78.0.2/24 --gateway 10.78.0.1 --publish 8081:80",
        a.name
    ));
    d.ok(&format!(
        "connect {} brq --ip 10.78.0.3/24 --gateway 10.78.0.1 -p 8082:80/tcp",
        b.name
    ));
    web(&a, &d.dir, "from-a");
    web(&b, &d.dir, "from-b");
    assert!(
        eventually(Duration::from_secs(5), || get(
            &out,
            "http://10.77.0.1:8081/"
        )
        .is_some_and(|s| s.contains("from-a"))),
        "{}",
        d.log()
    );
    assert_eq!(
        get(&out, "http://10.77.0.1:8082/").as_deref(),
        Some("from-b")
    );
    d.ok(&format!("disconnect {} brq", a.name));
    assert_eq!(
        get(&out, "http://10.77.0.1:8081/"),
        None,
        "a's port withdrawn"
    );
    assert_eq!(
        get(&out, "http://10.77.0.1:8082/").as_deref(),
        Some("from-b"),
        "b's stays"
    );
    // Bad forms are refused before anything is made.
    let c = Netns::new("c");
    for bad in ["80", "8083:80/sctp", "x:1:2"] {
        let o = d.vbr(&format!(
            "connect {} brq --ip 10.78.0.4/24 --publish {bad}",
            c.name
        ));
        assert_eq!(o.status.code(), Some(1), "{bad}");
    }
    let o = d.vbr(&format!("connect {} brq --publish 8084:80", c.name));
    assert_eq!(o.status.code(), Some(1), "no address to publish to");
    // delbr takes the table with the bridge, and forwarding back.
    d.ok(&format!("disconnect {} brq", b.name));
    d.ok("delbr brq");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!nft_tables(&host).contains("vbridge_brq"));
    assert_eq!(host.ok("sysctl -n net.ipv4.ip_forward").trim(), "0");
}
