//! The self-explaining switch with real namespaces: `vbr trace` explains a frame step by
//! step and changes nothing, `vbr trace --live` shows real decisions, `vbr capture`
//! writes pcap that tcpdump (and tshark) read, takes a port's flows off the kernel fast
//! path while it runs and gives them back after, and bad input (unknown objects,
//! malformed hex, unwritable files, clients that vanish) gets a clear error while
//! forwarding carries on.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A daemon with br0 and namespaces a (10.70.0.1) and b (10.70.0.2) on veth ports,
/// known to each other (their flows in the kernel fast path).
struct Lab {
    a: Netns,
    b: Netns,
    d: Daemon,
    _host: Netns,
}

const MAC_A: &str = "02:00:00:00:70:01";
const MAC_B: &str = "02:00:00:00:70:02";

impl Lab {
    fn new() -> Lab {
        let host = Netns::new("h");
        let d = Daemon::start(&host);
        d.ok("addbr br0");
        let a = Netns::new("a");
        let b = Netns::new("b");
        // No IPv6 chatter (router and neighbour solicitations) among the frames counted.
        for n in [&a, &b] {
            n.ok(
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
            );
        }
        d.ok(&format!(
            "connect {} br0 --ip 10.70.0.1/24 --mac {MAC_A}",
            a.name
        ));
        d.ok(&format!(
            "connect {} br0 --ip 10.70.0.2/24 --mac {MAC_B}",
            b.name
        ));
        assert!(a.reaches("10.70.0.2"));
        // Both ports join the fast path a moment after they are added (the tcx link
        // waits for an RCU grace period, longer on a busy machine). The host port may
        // join too, or not yet: it is left out of the count.
        let joined = || {
            d.json("stats br0")[0]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["fast_path"] == true && p["kind"] != "host")
                .count()
                == 2
        };
        assert!(
            eventually(std::time::Duration::from_secs(5), joined),
            "{}",
            d.json("stats br0")
        );
        Lab {
            a,
            b,
            d,
            _host: host,
        }
    }

    fn pa(&self) -> String {
        port_of(&self.a.name, "eth0")
    }

    fn pb(&self) -> String {
        port_of(&self.b.name, "eth0")
    }

    fn fast_flows(&self) -> u64 {
        self.d.json("stats br0")[0]["fast_flows"]
            .as_u64()
            .expect("fast_flows")
    }

    /// `vbr <args>`, a capture or live trace, started in the background; returns once
    /// the daemon logs `<what> started` (a capture of a port whose flows were not yet in
    /// the kernel would otherwise look started at once).
    fn stream(&self, args: &str, what: &str) -> std::process::Child {
        let line = format!("{what} started");
        let before = self.d.log().matches(&line).count();
        let child = self.spawn(args);
        assert!(
            eventually(Duration::from_secs(10), || self
                .d
                .log()
                .matches(&line)
                .count()
                > before),
            "`vbr {args}` never started:\n{}",
            self.d.log()
        );
        child
    }

    /// `vbr <args>` started in the background.
    fn spawn(&self, args: &str) -> std::process::Child {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec {} --socket {} {args}",
                vbr_bin(),
                self.d.socket.display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn trace_explains_each_step_and_changes_nothing() {
    require_root();
    let lab = Lab::new();
    let (d, pa, pb) = (&lab.d, lab.pa(), lab.pb());
    // Known unicast: forwarded to b's port, and its flow is in the kernel.
    let t = d.json(&format!("trace br0 --in {pa} --src {MAC_A} --dst {MAC_B}"));
    let steps: Vec<&str> = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    for want in ["ingress", "vlan", "learning", "lookup", "egress"] {
        assert!(steps.contains(&want), "{want} missing: {t}");
    }
    assert!(
        t["verdict"].as_str().unwrap().contains(&pb),
        "verdict names the egress port: {t}"
    );
    let lookup = t["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "lookup")
        .unwrap();
    assert!(
        lookup["text"].as_str().unwrap().contains(&pb)
            && lookup["text"].as_str().unwrap().contains("ago"),
        "an FDB hit with port and age: {lookup}"
    );
    assert!(t["fast_path"].as_str().unwrap().contains("kernel"), "{t}");
    // An unknown source and destination: learning would happen, the frame would flood;
    // the ingress port is left out with its reason. Nothing is learned by tracing.
    let text = d.ok(&format!(
        "trace br0 --in {pa} --src 02:00:00:00:70:99 --dst 02:00:00:00:70:98"
    ));
    assert!(text.contains("flood"), "{text}");
    assert!(
        text.contains("it is the ingress port"),
        "the ingress port left out, with why: {text}"
    );
    assert!(text.contains("fast path:"), "{text}");
    let macs = d.ok("showmacs br0");
    assert!(
        !macs.contains("02:00:00:00:70:99"),
        "a trace must not learn:\n{macs}"
    );
    // A setting that excludes a port shows as the reason.
    d.ok(&format!("link set {pb} flood off"));
    let text = d.ok(&format!(
        "trace br0 --in {pa} --src {MAC_A} --dst 02:00:00:00:70:98"
    ));
    assert!(
        text.lines()
            .any(|l| l.contains("excluded") && l.contains(&pb)),
        "b's port left out for its flood flag: {text}"
    );
    d.ok(&format!("link set {pb} flood on"));
    // VLANs: a tagged frame into an access port is dropped, the reason said.
    d.ok(&format!("link set {pa} access 10"));
    let t = d.json(&format!(
        "trace br0 --in {pa} --src {MAC_A} --dst {MAC_B} --vlan 20"
    ));
    assert!(
        t["verdict"].as_str().unwrap().contains("drop"),
        "a frame tagged 20 on an access port of VLAN 10: {t}"
    );
    // A whole frame in hex (ARP broadcast).
    let arp = format!(
        "ffffffffffff{}08060001080006040001{}0a4600010000000000000a460002",
        MAC_A.replace(':', ""),
        MAC_A.replace(':', "")
    );
    d.ok(&format!("link set {pa} access 1"));
    let text = d.ok(&format!("trace br0 --in {pa} --frame {arp}"));
    assert!(text.contains("ARP"), "{text}");
    assert!(text.contains("broadcast"), "{text}");
    // Bad input: clear errors, nothing else changes.
    let o = d.vbr(&format!(
        "trace nosuch --in {pa} --src {MAC_A} --dst {MAC_B}"
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bridge nosuch does not exist"),
        "{}",
        stderr(&o)
    );
    let o = d.vbr(&format!("trace br0 --in nope0 --src {MAC_A} --dst {MAC_B}"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nope0 is not a port of bridge br0"),
        "{}",
        stderr(&o)
    );
    for (bad, says) in [
        ("0011zz", "not a hex digit"),
        ("00112", "odd number"),
        ("001122334455", "shorter than an Ethernet header"),
    ] {
        let o = d.vbr(&format!("trace br0 --in {pa} --frame {bad}"));
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
    }
    let o = d.vbr(&format!("trace br0 --in {pa} --src {MAC_A}"));
    assert_eq!(
        o.status.code(),
        Some(2),
        "--dst is required: {}",
        stderr(&o)
    );
    assert!(lab.a.reaches("10.70.0.2"));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn capture_writes_pcap_that_tcpdump_reads_and_misses_nothing() {
    require_root();
    let lab = Lab::new();
    let (d, pa) = (&lab.d, lab.pa());
    assert!(
        eventually(Duration::from_secs(5), || {
            lab.a.ping("10.70.0.2");
            lab.fast_flows() > 0
        }),
        "the flows of a and b are in the kernel"
    );
    let file = d.dir.join("a.pcap");
    let cap = lab.stream(
        &format!("capture {pa} -w {} -c 10", file.display()),
        "capture",
    );
    // While captured, a's flows leave the kernel, so every frame passes the switch.
    assert!(
        eventually(Duration::from_secs(5), || lab.fast_flows() == 0),
        "a captured port's flows leave the fast path"
    );
    lab.a.ok("ping -c 5 -i 0.05 10.70.0.2");
    let out = cap.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("10 frames captured"),
        "{}",
        stderr(&out)
    );
    let read = ok(&format!("tcpdump -nn -r {} icmp", file.display()));
    let requests = read.matches("ICMP echo request").count();
    let replies = read.matches("ICMP echo reply").count();
    assert_eq!(
        (requests, replies),
        (5, 5),
        "all of them, both ways:\n{read}"
    );
    if sh("command -v tshark").status.success() {
        let t = ok(&format!("tshark -r {} -Y icmp", file.display()));
        assert_eq!(t.lines().count(), 10, "{t}");
    }
    // After the capture the flows go back to the kernel.
    assert!(
        eventually(Duration::from_secs(5), || {
            lab.a.ping("10.70.0.2");
            lab.fast_flows() > 0
        }),
        "flows return to the fast path after the capture"
    );
    // Only frames out of the port, without a file: one line each.
    let cap = lab.stream(&format!("capture {pa} --direction out -c 3"), "capture");
    lab.a.ok("ping -c 3 -i 0.05 10.70.0.2");
    let out = cap.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    assert!(
        lines
            .lines()
            .all(|l| l.contains(" Out ") && l.contains("echo reply")),
        "only frames sent out of a's port (the replies): {lines}"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn a_capture_ends_cleanly_however_its_client_goes() {
    require_root();
    let lab = Lab::new();
    let (d, pa) = (&lab.d, lab.pa());
    assert!(
        eventually(Duration::from_secs(5), || {
            lab.a.ping("10.70.0.2");
            lab.fast_flows() > 0
        }),
        "the flows of a and b are in the kernel"
    );
    // Killed outright: the daemon notices, forwarding carries on, flows come back.
    let cap = lab.stream(&format!("capture {pa}"), "capture");
    assert!(eventually(Duration::from_secs(5), || lab.fast_flows() == 0));
    let mut cap = cap;
    cap.kill().unwrap();
    cap.wait().unwrap();
    assert!(lab.a.reaches("10.70.0.2"));
    assert!(
        eventually(Duration::from_secs(5), || {
            lab.a.ping("10.70.0.2");
            lab.fast_flows() > 0
        }),
        "flows return after the client vanished"
    );
    assert!(
        eventually(Duration::from_secs(5), || d.log().contains("capture ended")),
        "{}",
        d.log()
    );
    // Ctrl-C: the client tells the daemon and still prints the totals.
    let file = d.dir.join("int.pcap");
    let cap = lab.stream(&format!("capture {pa} -w {}", file.display()), "capture");
    lab.a.ok("ping -c 2 -i 0.05 10.70.0.2");
    sh(&format!("kill -INT {}", cap.id()));
    let out = cap.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4 frames captured"),
        "{}",
        stderr(&out)
    );
    let read = ok(&format!("tcpdump -nn -r {}", file.display()));
    assert_eq!(read.lines().count(), 4, "{read}");
    // A live trace whose client vanishes ends too.
    let mut live = lab.stream("trace br0 --live", "live trace");
    live.kill().unwrap();
    live.wait().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || {
            lab.a.ping("10.70.0.2");
            lab.fast_flows() > 0
        }),
        "flows return after a live trace's client vanished"
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn capture_refuses_what_it_cannot_do_and_the_daemon_carries_on() {
    require_root();
    let lab = Lab::new();
    let (d, pa) = (&lab.d, lab.pa());
    let o = d.vbr("capture nope0 -c 1");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope0"), "{}", stderr(&o));
    let cases: Vec<(String, &str)> = vec![
        ("/nonexistent-dir/x.pcap".into(), "No such file"),
        (d.dir.display().to_string(), "not a regular file"),
    ];
    let fifo = d.dir.join("fifo");
    ok(&format!("mkfifo {}", fifo.display()));
    let link = d.dir.join("link.pcap");
    std::os::unix::fs::symlink(d.dir.join("target.pcap"), &link).unwrap();
    let mut cases = cases;
    cases.push((fifo.display().to_string(), "not a regular file"));
    cases.push((link.display().to_string(), "symbolic link"));
    for (path, says) in &cases {
        let o = d.vbr(&format!("capture {pa} -c 1 -w {path}"));
        assert_eq!(o.status.code(), Some(1), "{path}");
        assert!(
            stderr(&o).contains("cannot write capture file") && stderr(&o).contains(says),
            "{path}: {}",
            stderr(&o)
        );
    }
    assert!(
        !d.dir.join("target.pcap").exists(),
        "nothing through the link"
    );
    // One capture of a port at a time.
    let first = lab.stream(&format!("capture {pa}"), "capture");
    assert!(eventually(Duration::from_secs(5), || lab.fast_flows() == 0));
    let o = d.vbr(&format!("capture {pa} -c 1"));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("captured already"), "{}", stderr(&o));
    let mut first = first;
    first.kill().unwrap();
    first.wait().unwrap();
    // Unknown bridge or port for a live trace.
    let o = d.vbr("trace nosuch --live -c 1");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("bridge nosuch does not exist"),
        "{}",
        stderr(&o)
    );
    let o = d.vbr("trace br0 --live --port nope0 -c 1");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("nope0 is not a port of bridge br0"),
        "{}",
        stderr(&o)
    );
    assert!(lab.a.reaches("10.70.0.2"));
    d.ok("show");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn live_trace_shows_the_decisions_of_real_frames() {
    require_root();
    let lab = Lab::new();
    let pb = lab.pb();
    let live = lab.stream(&format!("trace br0 --live --port {pb} -c 3"), "live trace");
    lab.a.ok("ping -c 3 -i 0.05 10.70.0.2");
    let out = live.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(lines.lines().count(), 3, "{lines}");
    let pa = lab.pa();
    for l in lines.lines() {
        assert!(
            l.contains(&format!("{pb}: ")) && l.contains("echo reply") && l.contains(&pa),
            "frames entering b's port, their decision naming a's port: {l}"
        );
    }
}

/// `GET path` on the daemon's metrics address inside its namespace (bash's /dev/tcp:
/// no HTTP client needed), with an extra request header line; the whole answer.
fn http_get(host: &Netns, port: u16, path: &str, header: &str) -> String {
    let out = host.exec(&format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; printf \"GET {path} HTTP/1.0\\r\\n{header}\\r\\n\" >&3; cat <&3'"
    ));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample `name{labels}` in a scrape, if present.
fn sample(scrape: &str, name_and_labels: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn prometheus_metrics_are_served_and_scraped() {
    require_root();
    let host = Netns::new("h");
    host.ok("ip link set lo up");
    let mut d = Daemon::new(&host, &[]);
    d.args = vec!["--metrics".into(), "127.0.0.1:9417".into()];
    d.spawn();
    d.ok("addbr br0");
    let a = Netns::new("a");
    let b = Netns::new("b");
    for n in [&a, &b] {
        n.ok("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    }
    d.ok(&format!("connect {} br0 --ip 10.71.0.1/24", a.name));
    d.ok(&format!("connect {} br0 --ip 10.71.0.2/24", b.name));
    assert!(a.reaches("10.71.0.2"));
    let _ = d.vbr("addbr br0"); // one refused request, counted as such
    let (pa, pb) = (port_of(&a.name, "eth0"), port_of(&b.name, "eth0"));
    let resp = http_get(&host, 9417, "/metrics", "");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("text/plain; version=0.0.4"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    let rx = sample(
        &body,
        &format!("vbr_port_rx_frames_total{{bridge=\"br0\",port=\"{pa}\"}}"),
    )
    .unwrap_or_else(|| panic!("a's port's frames:\n{body}"));
    assert!(rx >= 1.0, "{body}");
    assert!(
        sample(&body, "vbr_bridge_fdb_entries{bridge=\"br0\"}").unwrap_or(0.0) >= 2.0,
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "vbr_api_requests_total{cmd=\"connect\",outcome=\"ok\"}"
        ),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "vbr_api_requests_total{cmd=\"addbr\",outcome=\"already_exists\"}"
        ),
        Some(1.0),
        "{body}"
    );
    assert!(
        body.contains("vbr_api_request_duration_seconds_bucket{"),
        "{body}"
    );
    for name in [
        "vbr_port_tx_bytes_total",
        "vbr_bridge_fast_flows",
        "vbr_bridge_fast_frames_total",
        "vbr_bridge_fdb_limit_hits_total",
        "vbr_bridge_topology_changes_total",
        "vbr_port_stp_state",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    // Spanning tree on: ports listen, frames are dropped for it, by reason.
    d.ok("stp br0 on");
    a.ping("10.71.0.2");
    let body = http_get(&host, 9417, "/metrics", "");
    assert_eq!(
        sample(
            &body,
            &format!("vbr_port_stp_state{{bridge=\"br0\",port=\"{pb}\",state=\"listening\"}}")
        ),
        Some(1.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            &format!(
                "vbr_port_drops_total{{bridge=\"br0\",port=\"{pa}\",reason=\"port_blocked\"}}"
            )
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{body}"
    );
    // The text passes promtool's checks.
    let file = d.dir.join("scrape.txt");
    std::fs::write(&file, body.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap();
    if sh("command -v promtool").status.success() {
        let o = sh(&format!("promtool check metrics < {}", file.display()));
        assert!(
            o.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
    }
    // OpenMetrics when asked for; other paths and methods refused.
    let om = http_get(
        &host,
        9417,
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\\r\\n",
    );
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(http_get(&host, 9417, "/nope", "").starts_with("HTTP/1.1 404"));
    let post = host.exec(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/9417; printf \"POST /metrics HTTP/1.0\\r\\n\\r\\n\" >&3; cat <&3'",
    );
    assert!(String::from_utf8_lossy(&post.stdout).starts_with("HTTP/1.1 405"));
    // A client that connects and says nothing does not stop the server: the next scrape
    // is answered (each scrape has a thread of its own, at most 4).
    let idle = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.name,
            "bash",
            "-c",
            "exec 3<>/dev/tcp/127.0.0.1/9417; sleep 5",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(http_get(&host, 9417, "/metrics", "").starts_with("HTTP/1.1 200"));
    let mut idle = idle;
    let _ = idle.kill();
    let _ = idle.wait();
}

/// A tmux server of a test's own (its own socket), killed when dropped.
struct Tmux {
    sock: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux { sock: uniq("tmux") }
    }

    fn run(&self, args: &str) -> std::process::Output {
        sh(&format!("tmux -L {} {args}", self.sock))
    }

    fn pane(&self) -> String {
        String::from_utf8_lossy(&self.run("capture-pane -p -t top").stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run("kill-server");
    }
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn top_shows_live_rates_in_a_real_terminal_and_q_quits() {
    require_root();
    if !sh("command -v tmux").status.success() {
        panic!("tmux is needed for this test (.ci/run installs it)");
    }
    let lab = Lab::new();
    let t = Tmux::new();
    let pa = lab.pa();
    let started = t.run(&format!(
        "new-session -d -s top -x 130 -y 30 '{} --socket {} top br0'",
        vbr_bin(),
        lab.d.socket.display()
    ));
    assert!(started.status.success(), "{}", stderr(&started));
    // Traffic for a few seconds; the view shows a's port with a rate above zero.
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.a.name,
            "ping",
            "-c",
            "60",
            "-i",
            "0.05",
            "10.70.0.2",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let shows_rates = eventually(Duration::from_secs(8), || {
        t.pane().lines().any(|l| {
            l.contains(&pa) && {
                let cols: Vec<&str> = l.split_whitespace().collect();
                // bridge port state stp fast rx-f/s ...
                cols.iter()
                    .position(|c| *c == pa)
                    .and_then(|i| cols.get(i + 4))
                    .is_some_and(|rx| *rx != "0")
            }
        })
    });
    let pane = t.pane();
    let mut pinger = pinger;
    let _ = pinger.kill();
    let _ = pinger.wait();
    assert!(shows_rates, "a's port with its rate:\n{pane}");
    assert!(
        pane.contains("rx f/s") && pane.contains("drops by reason"),
        "{pane}"
    );
    assert!(pane.contains("fdb"), "{pane}");
    t.run("send-keys -t top q");
    assert!(
        eventually(Duration::from_secs(5), || !t
            .run("has-session -t top")
            .status
            .success()),
        "q quits:\n{}",
        t.pane()
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, the kernel fast path"
)]
fn diagrams_draw_the_live_topology_and_graphviz_renders_it() {
    require_root();
    let lab = Lab::new();
    let d = &lab.d;
    d.ok("tap add vm0 --bridge br0");
    d.ok("link set vm0 trunk 10,20");
    d.ok("stp br0 on");
    let t = d.ok("show --diagram");
    for want in [
        "bridge br0".to_owned(),
        lab.pa(),
        lab.pb(),
        format!("netns {}", lab.a.name),
        "10.70.0.1/24".to_owned(),
        "10.70.0.2/24".to_owned(),
        "veth, fast path".to_owned(),
        "tap (VM)".to_owned(),
        "trunk 10,20".to_owned(),
        "STP LISTENING".to_owned(),
    ] {
        assert!(t.contains(&want), "{want:?} missing:\n{t}");
    }
    let dot = d.ok("show --format dot");
    assert!(dot.starts_with("graph vbridge {"), "{dot}");
    assert!(dot.contains(&format!("netns {}", lab.b.name)), "{dot}");
    let svg = d.dir.join("t.svg");
    let dotfile = d.dir.join("t.dot");
    std::fs::write(&dotfile, &dot).unwrap();
    if sh("command -v dot").status.success() {
        ok(&format!(
            "dot -Tsvg -o {} {}",
            svg.display(),
            dotfile.display()
        ));
        let s = std::fs::read_to_string(&svg).unwrap();
        assert!(s.contains("<svg") && s.contains("vm0"), "{s}");
    }
    // One bridge only; an unknown one is a clear error.
    let o = d.vbr("show --diagram nosuch");
    assert_eq!(o.status.code(), Some(1));
}
