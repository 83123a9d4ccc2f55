//! The cluster's etcd transactions against a real etcd (Debian's `etcd-server`, which
//! these tests need), run by the test on loopback: addresses allocated by two nodes at
//! once are never the same, a full pool says so, a failed connect gives back only what
//! it took, orphans go; `apply` claims VNIs once; a live node's name is refused; full
//! reads span pages; a compacted watch says so.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::model::{NetworkDef, Range};
use super::{Cluster, Options};

/// An etcd on 127.0.0.1 (free ports), killed and its data removed on drop.
struct LocalEtcd {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl LocalEtcd {
    /// Starts etcd on free ports; again on others if one was taken meanwhile.
    fn start() -> LocalEtcd {
        (0..5)
            .find_map(|_| Self::try_start())
            .expect("etcd (Debian's etcd-server) comes up on free loopback ports")
    }

    fn try_start() -> Option<LocalEtcd> {
        let (client, peer) = (free_port(), free_port());
        let dir =
            std::env::temp_dir().join(format!("vbr-etcd-unit-{}-{client}", std::process::id()));
        let url = format!("http://127.0.0.1:{client}");
        let child = Command::new("etcd")
            .arg(format!("--data-dir={}", dir.display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=default=http://127.0.0.1:{peer}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (Debian's etcd-server) must be installed for these tests");
        let mut e = LocalEtcd { child, dir, url };
        let client = super::etcd::Etcd::new(std::slice::from_ref(&e.url)).unwrap();
        let end = Instant::now() + Duration::from_secs(20);
        while client.range_prefix("/").is_err() {
            // Exited (a port taken meanwhile) or stuck: the caller tries other ports.
            if Instant::now() > end || e.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(e)
    }
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A state directory, removed on drop (also when the test fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("vbr-cluster-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(etcd: &LocalEtcd, name: &str, dir: &std::path::Path) -> Cluster {
    std::fs::create_dir_all(dir).unwrap();
    Cluster::new(
        Options {
            endpoints: vec![etcd.url.clone()],
            node: name.into(),
            underlay: Ipv4Addr::new(10, 0, 0, 1),
            lease_ttl: 5,
        },
        dir,
    )
    .unwrap()
}

fn blue() -> NetworkDef {
    NetworkDef {
        name: "blue".into(),
        vni: 7,
        subnet: "10.40.0.0/24".parse().unwrap(),
        gateway: Some(Ipv4Addr::new(10, 40, 0, 1)),
        dhcp: Some(Range {
            start: Ipv4Addr::new(10, 40, 0, 1),
            end: Ipv4Addr::new(10, 40, 0, 40),
        }),
    }
}

#[test]
fn two_nodes_allocating_at_once_never_get_the_same_address() {
    let etcd = LocalEtcd::start();
    let dir = TempDir::new("alloc");
    let (a, b) = (node(&etcd, "a", &dir.0), node(&etcd, "b", &dir.0));
    a.apply(&[blue()]).unwrap();
    // 39 addresses in the pool (the gateway is left out), 2 × 25 asked for at once.
    let net = blue();
    let take = |c: &Cluster, who: &str| -> Vec<Result<Ipv4Addr, String>> {
        (0..25)
            .map(|i| {
                c.allocate(&net, &format!("{who}{i}"))
                    .map(|(ip, _)| ip)
                    .map_err(|e| e.message)
            })
            .collect()
    };
    let (got_a, got_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| take(&a, "a"));
        let tb = s.spawn(|| take(&b, "b"));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let all = || got_a.iter().chain(&got_b);
    let mut ips: Vec<Ipv4Addr> = all().filter_map(|r| r.clone().ok()).collect();
    let failures: Vec<String> = all().filter_map(|r| r.clone().err()).collect();
    assert_eq!(ips.len(), 39, "every address given: {failures:?}");
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 39, "never the same address twice");
    assert!(
        !ips.contains(&Ipv4Addr::new(10, 40, 0, 1)),
        "not the gateway"
    );
    assert_eq!(failures.len(), 11);
    assert!(
        failures.iter().all(|f| f.contains("no free address")),
        "{failures:?}"
    );

    // Given back by one node: only its own.
    a.release("blue", "a0").unwrap();
    let (again, rev) = b.allocate(&net, "b99").unwrap();
    assert_eq!(got_a[0].clone().unwrap(), again);
    // A failed connect gives back only the address it took.
    b.unallocate("blue", again, rev);
    let (ip, _) = b.allocate(&net, "b99").unwrap();
    assert_eq!(ip, again, "given back");
    // `--ip`: another namespace's address is refused, one's own is fine.
    let b0 = got_b
        .iter()
        .find_map(|r| r.clone().ok())
        .expect("b got one");
    let e = b.claim(&net, b0, "b99").unwrap_err();
    assert!(e.message.contains("is taken by namespace"), "{e}");
    assert!(b.claim(&net, b0, "b0").is_ok());
    // Orphans: this node's addresses of namespaces not connected here go; another
    // node's stay.
    let connected: BTreeSet<String> = (0..25).map(|i| format!("b{i}")).collect();
    b.release_orphans("blue", &connected);
    let (left, _) = a
        .etcd
        .range_prefix(&super::model::ip_prefix("blue"))
        .unwrap();
    assert_eq!(left.len(), 38, "b99's address went, the rest stayed");
}

#[test]
fn apply_claims_a_vni_once_and_registration_refuses_a_live_name() {
    let etcd = LocalEtcd::start();
    let dir = TempDir::new("apply");
    let (da, db) = (dir.0.join("a"), dir.0.join("b"));
    let a = node(&etcd, "a", &da);
    let done = a.apply(&[blue()]).unwrap();
    assert_eq!(done.created, ["blue"]);
    assert_eq!(a.apply(&[blue()]).unwrap().unchanged, ["blue"]);
    let mut red = blue();
    red.name = "red".into();
    red.subnet = "10.41.0.0/24".parse().unwrap();
    red.gateway = None;
    red.dhcp = None;
    let e = a.apply(&[red.clone()]).unwrap_err();
    assert!(e.message.contains("vni 7"), "{e}");
    red.vni = 8;
    assert_eq!(a.apply(&[red.clone()]).unwrap().created, ["red"]);
    // Changing a network's VNI moves its claim.
    red.vni = 9;
    assert_eq!(a.apply(&[red.clone()]).unwrap().updated, ["red"]);
    red.name = "green".into();
    red.subnet = "10.42.0.0/24".parse().unwrap();
    red.vni = 8;
    assert_eq!(
        a.apply(&[red]).unwrap().created,
        ["green"],
        "vni 8 is free again"
    );
    // A deleted network takes its VNI claim and addresses along.
    a.allocate(&blue(), "x").unwrap();
    a.delete("blue").unwrap();
    let (left, _) = a.etcd.range_prefix("/vbridge/ipam/blue/").unwrap();
    assert!(left.is_empty());
    assert!(a.etcd.get(&super::model::vni_key(7)).unwrap().is_none());

    // A node's name: taken while it lives; its own next run carries on with its lease.
    a.session().unwrap();
    let lease = a.inner().lease;
    let imposter = node(&etcd, "a", &db);
    assert!(matches!(
        imposter.session(),
        Err(super::JoinError::NameTaken(_))
    ));
    let again = node(&etcd, "a", &da);
    again
        .session()
        .expect("the same node's next run (same state) takes its name back");
    assert_eq!(again.inner().lease, lease, "the same lease, still alive");
}

#[test]
fn a_full_read_spans_pages_and_a_compacted_watch_says_so() {
    let etcd = LocalEtcd::start();
    let c = super::etcd::Etcd::new(std::slice::from_ref(&etcd.url)).unwrap();
    // More keys than one page, in batches.
    let keys: Vec<String> = (0..12_345).map(|i| format!("/p/k{i:05}")).collect();
    for batch in keys.chunks(100) {
        let ops = batch
            .iter()
            .map(|k| super::etcd::op_put(k, b"v", 0))
            .collect();
        assert!(c.txn(Vec::new(), ops).unwrap());
    }
    c.put("/q/outside", b"x", 0).unwrap();
    let (kvs, rev) = c.range_prefix("/p/").unwrap();
    let got: Vec<String> = kvs.into_iter().map(|k| k.key).collect();
    assert_eq!(got, keys, "every key once, in order");
    assert!(rev > 0);
    // A watch from a revision compaction took away ends, saying so.
    c.compact(rev).unwrap();
    let end = c.watch("/p/", 2, |_, _| true);
    assert!(
        matches!(end, super::etcd::WatchEnd::Compacted(r) if r > 2),
        "{end:?}"
    );
}
