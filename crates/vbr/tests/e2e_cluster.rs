//! Cluster mode on etcd: three "nodes" (namespaces, each with its own daemon and an
//! underlay address on a kernel bridge), etcd (Debian's etcd-server) started by the test
//! in the underlay namespace. Networks applied once appear on every node; namespaces
//! get cluster-wide addresses and reach each other across nodes over VXLAN with the
//! network's VNI; a node killed disappears within its lease; a restarted one comes back
//! without duplicates; etcd gone leaves forwarding alone; a 3-member etcd survives one
//! member lost; bad input is refused.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// An etcd member run by the test in `ns`, stopped (and its data removed) on drop.
struct Etcd {
    child: Option<Child>,
    ns: String,
    dir: std::path::PathBuf,
    args: Vec<String>,
}

impl Etcd {
    /// One member serving clients on `ip:client`, peers on 127.0.0.1:`peer`, part of
    /// `cluster` (`name=http://127.0.0.1:PORT,...`; `None`: alone).
    fn start(ns: &Netns, ip: &str, client: u16, peer: u16, cluster: Option<&str>) -> Etcd {
        let name = format!("m{peer}");
        let dir = std::env::temp_dir().join(format!("vbr-etcd-{}", uniq(&name)));
        let mut args = vec![
            format!("--name={name}"),
            format!("--data-dir={}", dir.display()),
            format!("--listen-client-urls=http://{ip}:{client}"),
            format!("--advertise-client-urls=http://{ip}:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        ];
        if let Some(c) = cluster {
            args.push(format!("--initial-cluster={c}"));
            args.push("--initial-cluster-state=new".into());
        } else {
            args.push(format!("--initial-cluster={name}=http://127.0.0.1:{peer}"));
        }
        let mut e = Etcd {
            child: None,
            ns: ns.name.clone(),
            dir,
            args,
        };
        e.spawn();
        if cluster.is_none() {
            e.wait_healthy(ns, &format!("http://{ip}:{client}"));
        }
        e
    }

    /// Waits until the member answers (a member of a cluster answers once a quorum is up).
    fn wait_healthy(&self, ns: &Netns, endpoint: &str) {
        let healthy = eventually(Duration::from_secs(20), || {
            ns.exec(&format!(
                "env ETCDCTL_API=3 etcdctl --endpoints={endpoint} --command-timeout=1s endpoint health"
            ))
            .status
            .success()
        });
        assert!(healthy, "etcd at {endpoint} did not come up");
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{}.log", self.dir.display()))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["setpriv", "--pdeathsig", "KILL", "etcd"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server) is installed");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(format!("{}.log", self.dir.display()));
            let tail: String = log
                .unwrap_or_default()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- etcd log (last lines, newest first) ---\n{tail}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(format!("{}.log", self.dir.display()));
    }
}

/// The underlay: a namespace with a kernel bridge (10.77.0.100/24) and nodes joined
/// to it by veth, node i at 10.77.0.i.
struct Underlay {
    ns: Netns,
    nodes: Vec<Netns>,
}

impl Underlay {
    fn new(n: usize) -> Underlay {
        let ns = Netns::new("u");
        ns.ok("ip link set lo up");
        ns.ok("ip link add br0 type bridge");
        ns.ok("ip addr add 10.77.0.100/24 dev br0");
        ns.ok("ip link set br0 up");
        let mut nodes = Vec::new();
        for i in 1..=n {
            let node = Netns::new("n");
            ns.ok(&format!("ip link add p{i} type veth peer name u{i}"));
            ns.ok(&format!("ip link set u{i} netns {}", node.name));
            ns.ok(&format!("ip link set p{i} master br0 up"));
            node.ok(&format!("ip addr add 10.77.0.{i}/24 dev u{i}"));
            node.ok(&format!("ip link set u{i} up"));
            node.ok("ip link set lo up");
            nodes.push(node);
        }
        Underlay { ns, nodes }
    }

    /// A daemon on node `i` (1-based) in cluster mode.
    fn daemon(&self, i: usize, endpoints: &str, ttl: Option<u64>) -> Daemon {
        let mut d = Daemon::new(&self.nodes[i - 1], &[]);
        d.args = vec![
            format!("--cluster={endpoints}"),
            format!("--node=n{i}"),
            format!("--underlay=10.77.0.{i}"),
        ];
        if let Some(t) = ttl {
            d.args.push(format!("--lease-ttl={t}"));
        }
        d.spawn();
        d
    }
}

/// `etcdctl get --prefix KEY --keys-only`, in the underlay namespace.
fn keys(u: &Underlay, endpoints: &str, prefix: &str) -> Vec<String> {
    u.ns.ok(&format!(
        "env ETCDCTL_API=3 etcdctl --endpoints={endpoints} get --prefix {prefix} --keys-only"
    ))
    .lines()
    .filter(|l| !l.is_empty())
    .map(str::to_owned)
    .collect()
}

fn status(d: &Daemon) -> serde_json::Value {
    d.json("cluster status")
}

fn node_names(d: &Daemon) -> Vec<String> {
    status(d)["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n["name"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Writes `text` as a `cluster apply` file and applies it through `d`.
fn apply(d: &Daemon, text: &str) -> std::process::Output {
    let f = d.dir.join(format!("{}.toml", uniq("net")));
    std::fs::write(&f, text).unwrap();
    d.vbr(&format!("cluster apply {}", f.display()))
}

/// Connects a new namespace to `network` on `d`; it and its allocated address.
fn connect(d: &Daemon, network: &str) -> (Netns, String) {
    let ns = Netns::new("c");
    let v = d.json(&format!("connect {} {network}", ns.name));
    let addr = v["addresses"][0].as_str().expect("an address").to_owned();
    let ip = addr.split('/').next().unwrap().to_owned();
    (ns, ip)
}

const BLUE: &str = "[[network]]\nname = \"blue\"\nvni = 4242\nsubnet = \"10.88.0.0/24\"\n";

/// Waits until each daemon sees `nodes` nodes, etcd reachable and every network healthy.
fn all_ready(ds: &[&Daemon], nodes: usize) {
    for d in ds {
        assert!(
            eventually(Duration::from_secs(20), || ready(d, nodes)),
            "{}",
            status(d)
        );
    }
}

/// An underlay of `n` nodes with a one-member etcd at 10.77.0.100:2379.
fn one_member(n: usize) -> (Underlay, Etcd) {
    let u = Underlay::new(n);
    let e = Etcd::start(&u.ns, "10.77.0.100", 2379, 2380, None);
    (u, e)
}

const EP: &str = "http://10.77.0.100:2379";

fn ready(d: &Daemon, nodes: usize) -> bool {
    let s = status(d);
    s["etcd"] == "reachable"
        && s["nodes"].as_array().is_some_and(|a| a.len() == nodes)
        && s["networks"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|n| n["health"] == "ok"))
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, vxlan, etcd in a namespace"
)]
fn three_nodes_share_networks_and_survive_failures() {
    require_root();
    let (u, mut etcd) = one_member(3);
    let ep = EP;
    // n1 keeps the default lease TTL; n2 and n3 a short one, so the test is quick.
    let d1 = u.daemon(1, ep, None);
    let d2 = u.daemon(2, ep, Some(3));
    let mut d3 = u.daemon(3, ep, Some(3));
    assert_eq!(status(&d1)["lease_ttl"], 10, "the default TTL");
    let out = apply(&d1, BLUE);
    assert!(out.status.success(), "{out:?}");
    let wait = Duration::from_secs(15);
    all_ready(&[&d1, &d2, &d3], 3);
    // Every node has the bridge and the tunnel with the network's VNI.
    for n in &u.nodes {
        let link = n.ok("ip -d link show vx4242");
        assert!(
            link.contains("vxlan id 4242") && link.contains("nolearning"),
            "{link}"
        );
    }
    let (a1, ip1) = connect(&d1, "blue");
    let (a2, ip2) = connect(&d2, "blue");
    let (a3, ip3) = connect(&d3, "blue");
    let mut ips = vec![ip1.clone(), ip2.clone(), ip3.clone()];
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "three different addresses: {ips:?}");
    let dump = tcpdump_while(
        &u.ns,
        &["-v", "-c", "4", "-i", "br0", "udp port 4789"],
        || {
            assert!(a1.reaches(&ip2), "n1 → n2");
        },
    );
    assert!(
        dump.contains("VXLAN") && dump.contains("vni 4242"),
        "{dump}"
    );
    assert!(a1.reaches(&ip3), "n1 → n3");
    assert!(a3.reaches(&ip2), "n3 → n2");
    // The remote MACs are static entries on the tunnel port, published not learned (n1
    // may have learned a3's MAC from its frames a moment before n3's record reaches it:
    // the record then turns the entry static).
    let mac3 = a3.ok("cat /sys/class/net/eth0/address").trim().to_owned();
    let published = || {
        d1.json("fdb show blue")
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["mac"] == mac3.as_str() && r["port"] == "vx4242" && r["kind"] == "static")
    };
    assert!(
        eventually(Duration::from_secs(5), published),
        "{}",
        d1.json("fdb show blue")
    );
    assert!(
        eventually(Duration::from_secs(5), || u.nodes[0]
            .ok("bridge fdb show dev vx4242")
            .contains(&format!("{mac3} dst 10.77.0.3"))),
        "the tunnel knows where a3 is"
    );

    // n3 killed: gone from the others within its lease TTL, with its VTEP and MACs.
    d3.kill9();
    let killed = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), || node_names(&d1).len() == 2
            && !u.nodes[0]
                .ok("bridge fdb show dev vx4242")
                .contains("10.77.0.3")),
        "{}",
        status(&d1)
    );
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(3 + 3), "n3 left after {took:?}");
    assert!(
        !d1.ok("fdb show blue").contains(&mac3),
        "its MACs are gone from n1's switch"
    );

    // Restarted: back, with the same MAC and address, nothing listed twice.
    d3.spawn();
    assert!(eventually(wait, || ready(&d1, 3)), "{}", status(&d1));
    assert!(a1.reaches(&ip3), "n1 → n3 after n3's restart");
    assert!(
        eventually(wait, || keys(&u, ep, "/vbridge/macs/blue/").len() == 3),
        "{:?}",
        keys(&u, ep, "/vbridge/")
    );
    assert_eq!(keys(&u, ep, "/vbridge/nodes/").len(), 3);
    assert_eq!(keys(&u, ep, "/vbridge/ipam/blue/").len(), 3);

    // etcd gone: forwarding goes on with the last known state, and the status says so.
    etcd.kill();
    assert!(
        eventually(wait, || status(&d1)["etcd"] == "unreachable"),
        "{}",
        status(&d1)
    );
    assert!(a1.reaches(&ip2) && a2.reaches(&ip3), "forwarding goes on");
    assert!(status(&d1)["error"].as_str().is_some());
    // Back: every node reads everything again; a change made now reaches all.
    etcd.spawn();
    all_ready(&[&d1, &d2, &d3], 3);
    let (a4, ip4) = connect(&d2, "blue");
    assert!(
        a4.reaches(&ip1) && a1.reaches(&ip4),
        "n1 ↔ a new namespace on n2"
    );

    // Disconnecting gives the address back.
    d2.ok(&format!("disconnect {} blue", a4.name));
    assert!(eventually(wait, || keys(&u, ep, "/vbridge/ipam/blue/")
        .len()
        == 3));

    // A network removed from the cluster: every node removes its bridge.
    for (ns, d) in [(&a1, &d1), (&a2, &d2), (&a3, &d3)] {
        d.ok(&format!("disconnect {} blue", ns.name));
    }
    d1.ok("cluster del blue");
    for n in &u.nodes {
        assert!(
            eventually(wait, || !n.exec("ip link show blue").status.success()),
            "the bridge went on {}",
            n.name
        );
    }
    // A clean stop leaves at once.
    drop(d3);
    assert!(eventually(Duration::from_secs(3), || node_names(&d1).len() == 2));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, vxlan, etcd in a namespace"
)]
fn a_three_member_etcd_keeps_working_with_one_member_lost() {
    require_root();
    let u = Underlay::new(2);
    let members =
        "m2380=http://127.0.0.1:2380,m2382=http://127.0.0.1:2382,m2384=http://127.0.0.1:2384";
    let mut etcds: Vec<Etcd> = [(2379, 2380), (2381, 2382), (2383, 2384)]
        .into_iter()
        .map(|(c, p)| Etcd::start(&u.ns, "10.77.0.100", c, p, Some(members)))
        .collect();
    for (e, c) in etcds.iter().zip([2379, 2381, 2383]) {
        e.wait_healthy(&u.ns, &format!("http://10.77.0.100:{c}"));
    }
    let ep = "http://10.77.0.100:2379,http://10.77.0.100:2381,http://10.77.0.100:2383";
    let d1 = u.daemon(1, ep, Some(3));
    let d2 = u.daemon(2, ep, Some(3));
    let wait = Duration::from_secs(20);
    assert!(
        eventually(wait, || apply(&d1, BLUE).status.success()),
        "{}",
        d1.log()
    );
    all_ready(&[&d1, &d2], 2);
    let (a1, ip1) = connect(&d1, "blue");
    // The member the nodes talk to first goes.
    etcds[0].kill();
    let (a2, ip2) = connect(&d2, "blue");
    assert_ne!(ip1, ip2);
    all_ready(&[&d1, &d2], 2);
    assert!(a1.reaches(&ip2) && a2.reaches(&ip1));
    // Leases still run out (two of three members decide).
    let mut d2 = d2;
    d2.kill9();
    assert!(
        eventually(wait, || node_names(&d1) == ["n1"]),
        "{}",
        status(&d1)
    );
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, etcd in a namespace"
)]
fn bad_cluster_input_is_refused_and_breaks_nothing() {
    require_root();
    let (u, _etcd) = one_member(2);
    let ep = EP;
    let d1 = u.daemon(1, ep, Some(3));
    assert!(apply(&d1, BLUE).status.success());
    assert!(
        eventually(Duration::from_secs(10), || ready(&d1, 1)),
        "{}",
        status(&d1)
    );
    let refused = |text: &str, why: &str| {
        let out = apply(&d1, text);
        assert!(!out.status.success(), "accepted: {text}");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains(why), "{text}: {err}");
    };
    // A VNI or subnet another network has, in the file or in etcd.
    refused(
        "[[network]]\nname = \"red\"\nvni = 4242\nsubnet = \"10.89.0.0/24\"\n",
        "vni 4242",
    );
    refused(
        "[[network]]\nname = \"red\"\nvni = 5\nsubnet = \"10.88.0.128/25\"\n",
        "overlap",
    );
    refused(
        "[[network]]\nname = \"red\"\nvni = 5\nsubnet = \"10.89.0.0/24\"\n[[network]]\nname = \"green\"\nvni = 5\nsubnet = \"10.90.0.0/24\"\n",
        "vni 5",
    );
    refused(
        "[[network]]\nname = \"red\"\nvni = 0\nsubnet = \"10.89.0.0/24\"\n",
        "vni 0",
    );
    refused(
        "[[network]]\nname = \"red\"\nvni = 6\nsubnet = \"10.89.0.0/24\"\ngateway = \"10.1.0.1\"\n",
        "gateway 10.1.0.1",
    );
    refused("[[network]]\nname = \"red\"\n", "missing field");
    refused(
        "[[network]]\nname = \"red\"\nvni = 6\nsubnet = \"10.89.0.0/24\"\ngatway = \"10.89.0.1\"\n",
        "unknown field",
    );
    // A node name a live node holds.
    let mut dup = Daemon::new(&u.nodes[1], &[]);
    dup.args = vec![
        format!("--cluster={ep}"),
        "--node=n1".into(),
        "--underlay=10.77.0.2".into(),
    ];
    dup.spawn_only();
    assert_eq!(
        dup.wait_exit(Duration::from_secs(10)),
        Some(1),
        "{}\n---d1---\n{}",
        dup.log(),
        d1.log()
    );
    assert!(dup.log().contains("node name n1 is taken"), "{}", dup.log());
    // Someone else's writing under /vbridge/: set aside, shown, nothing breaks.
    let put = |k: &str, v: &str| {
        u.ns.ok(&format!(
            "env ETCDCTL_API=3 etcdctl --endpoints={ep} put {k} '{v}'"
        ))
    };
    put("/vbridge/nodes/zz", "{not json");
    put(
        "/vbridge/networks/red",
        r#"{"name":"red","vni":99999999,"subnet":"10.1.0.0/24"}"#,
    );
    put("/vbridge/macs/blue/not-a-mac", "{}");
    let d2 = u.daemon(2, ep, Some(3));
    for d in [&d1, &d2] {
        assert!(
            eventually(Duration::from_secs(10), || status(d)["ignored"]
                .as_array()
                .is_some_and(|a| a.len() == 3)),
            "{}",
            status(d)
        );
        assert!(
            eventually(Duration::from_secs(10), || ready(d, 2)),
            "{}",
            status(d)
        );
    }
    assert!(!u.nodes[0].exec("ip link show red").status.success());
    let (a1, ip1) = connect(&d1, "blue");
    let (_a2, ip2) = connect(&d2, "blue");
    assert!(
        a1.reaches(&ip2),
        "the good network works beside the bad keys"
    );
    // An address another namespace holds, given with --ip on another node: refused.
    let a3 = Netns::new("c");
    let out = d2.vbr(&format!("connect {} blue --ip {ip1}/24", a3.name));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("is taken by namespace"), "{err}");
    // A bad value written over the good network changes nothing on the nodes.
    put("/vbridge/networks/blue", r#"{"name":"blue","vni":0}"#);
    std::thread::sleep(Duration::from_secs(2));
    assert!(u.nodes[0].exec("ip link show blue").status.success());
    assert!(a1.reaches(&ip2));
    // VXLAN packets with a VNI no network has, truncated headers, or a truncated inner
    // frame: the kernel's vxlan driver drops them (VXLAN_VNI_NOT_FOUND, PKT_TOO_SMALL);
    // nothing is learned from them, the daemon and forwarding carry on.
    let stranger = "02:de:ad:00:00:01";
    let inner = format!(
        "ff ff ff ff ff ff {} 08 06 {}",
        stranger.replace(':', " "),
        "00 ".repeat(28)
    );
    let vxlan = |vni: u32, payload: &str| {
        format!(
            "08 00 00 00 {:02x} {:02x} {:02x} 00 {payload}",
            vni >> 16,
            (vni >> 8) & 0xff,
            vni & 0xff
        )
    };
    for p in [
        vxlan(999, &inner),
        "08 00 00".to_owned(),
        vxlan(4242, "ff ff ff"),
    ] {
        u.ns.ok(&format!(
            "python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(bytes.fromhex('{}'), ('10.77.0.1', 4789))\"",
            p.replace(' ', "")
        ));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!d1.ok("showmacs blue").contains(stranger));
    assert!(a1.reaches(&ip2), "forwarding carries on");
    // A daemon not in cluster mode says so.
    let plain = Daemon::start(&u.nodes[1]);
    let out = plain.vbr("cluster status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in cluster mode"));
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, veth, vxlan, nftables, etcd in a namespace"
)]
fn etcd_behind_a_blackhole_leaves_the_daemon_answering_and_forwarding() {
    require_root();
    let (u, _etcd) = one_member(2);
    let ep = EP;
    let mut d1 = u.daemon(1, ep, Some(3));
    let d2 = u.daemon(2, ep, Some(3));
    assert!(apply(&d1, BLUE).status.success());
    let wait = Duration::from_secs(15);
    all_ready(&[&d1, &d2], 2);
    let (a1, _) = connect(&d1, "blue");
    let (_a2, ip2) = connect(&d2, "blue");
    assert!(a1.reaches(&ip2));
    // etcd's traffic vanishes both ways for every node (no reset: requests wait until
    // they time out, watches go quiet; etcd itself runs on, and ends the leases nobody
    // renews, which the nodes learn only when it is back).
    let blackhole = || {
        u.ns.ok("nft add table inet vbrtest");
        u.ns.ok("nft add chain inet vbrtest in '{ type filter hook input priority 0; }'");
        u.ns.ok("nft add rule inet vbrtest in tcp dport 2379 drop");
        u.ns.ok("nft add chain inet vbrtest out '{ type filter hook output priority 0; }'");
        u.ns.ok("nft add rule inet vbrtest out tcp sport 2379 drop");
    };
    blackhole();
    assert!(
        eventually(wait, || status(&d1)["etcd"] == "unreachable"),
        "{}",
        status(&d1)
    );
    // The daemon answers at once and forwards on the last known state.
    let t = Instant::now();
    d1.ok("show");
    d1.ok("cluster status");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "answers took {:?}",
        t.elapsed()
    );
    assert!(a1.reaches(&ip2), "forwarding goes on");
    // etcd back: every node joins again (its lease ran out meanwhile) and republishes.
    u.ns.ok("nft delete table inet vbrtest");
    all_ready(&[&d1, &d2], 2);
    assert!(
        eventually(wait, || a1.ping(&ip2)),
        "forwarding through the cluster again"
    );
    // And a stop while etcd is unreachable ends in time.
    blackhole();
    let pid = d1.pid().expect("running");
    sh(&format!("kill -TERM {pid}"));
    assert_eq!(
        d1.wait_exit(Duration::from_secs(10)),
        Some(0),
        "{}",
        d1.log()
    );
}
