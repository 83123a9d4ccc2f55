//! `vbr cluster simulate`: sizing etcd for cluster mode. Many lightweight simulated
//! nodes drive a real etcd the way daemons do — each holds a lease, a node key and one
//! MAC per network per node under it, and a watch on the whole cluster prefix — and the
//! tool measures how long a node joining (its key, then its MACs in transactions of up
//! to 100, as the agent publishes them) and leaving (its lease ended) takes to reach
//! every watcher, what a full
//! read costs, and etcd's own counters for writes and watch events. Everything lives
//! under a prefix of its own (`/vbridge-sim-PID/`), removed at the end; a real
//! cluster's keys are never touched.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::agent::PUBLISH_BATCH;
use super::etcd::{Etcd, Event, cmp_absent, op_put};
use super::model::{MacRecord, NodeRecord};

/// `vbr cluster simulate` options.
#[derive(Debug, Clone)]
pub(crate) struct SimArgs {
    pub(crate) endpoints: Vec<String>,
    pub(crate) nodes: usize,
    pub(crate) networks: usize,
    pub(crate) rounds: usize,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SimReport {
    pub(crate) nodes: usize,
    pub(crate) networks: usize,
    /// Keys the simulated cluster holds (nodes and MACs).
    pub(crate) keys: usize,
    /// Seconds to write them all (batched transactions, 8 writers).
    pub(crate) populate_secs: f64,
    /// One full read of the cluster's keys, as a (re)starting node does: seconds, bytes.
    pub(crate) full_read_secs: f64,
    pub(crate) full_read_bytes: usize,
    /// A node joining: from its first write until the last watcher has all its keys
    /// (median and worst round, seconds); the node's own writes alone.
    pub(crate) join_secs_median: f64,
    pub(crate) join_secs_max: f64,
    pub(crate) join_write_secs: f64,
    /// A node leaving: from its lease's end until every watcher saw its keys go.
    pub(crate) leave_secs_median: f64,
    pub(crate) leave_secs_max: f64,
    /// Watch events etcd sent, and writes it took, over the measured rounds.
    pub(crate) watch_events: f64,
    pub(crate) puts: f64,
    /// Lease renewals the nodes send per second (one per TTL/3).
    pub(crate) keepalives_per_sec: f64,
    /// etcd's resident memory and database size at the end, in MiB.
    pub(crate) etcd_rss_mib: f64,
    pub(crate) etcd_db_mib: f64,
}

/// One simulated watcher's tally of the probe node's keys.
#[derive(Default)]
struct Tally {
    puts: AtomicUsize,
    deletes: AtomicUsize,
    /// Nanoseconds since the start when the count last changed.
    last_put: AtomicU64,
    last_delete: AtomicU64,
}

/// The simulated nodes' lease TTL (daemons default to 10 s; longer here so the
/// simulation's own renewals never fall behind).
const TTL: u64 = 30;
const RENEWERS: usize = 8;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the simulation.
pub(crate) fn run(a: &SimArgs) -> Result<SimReport, String> {
    if a.nodes == 0 || a.networks == 0 || a.networks > 120 || a.rounds == 0 {
        return Err("--nodes ≥ 1, --networks 1..=120, --rounds ≥ 1".into());
    }
    let etcd = Arc::new(Etcd::new(&a.endpoints)?);
    let prefix = format!("/vbridge-sim-{}/", std::process::id());
    let start = Instant::now();
    let result = simulate(a, &etcd, &prefix, start);
    // Leaves nothing behind, whatever happened.
    let _ = etcd.delete_prefix(&prefix);
    result
}

/// A node's MAC on a network; the first octet tells the measured (probe) node apart.
fn mac(first: u8, node: usize, net: usize) -> String {
    format!(
        "{first:02x}:{:02x}:{:02x}:{:02x}:{:02x}:00",
        (node >> 16) & 0xff,
        (node >> 8) & 0xff,
        node & 0xff,
        net
    )
}

/// The first octet of the probe node's MACs.
const PROBE: u8 = 0x06;

/// The keys a node writes: its node key, then one MAC per network.
fn node_keys(
    prefix: &str,
    name: &str,
    first: u8,
    node: usize,
    networks: usize,
) -> Vec<(String, Vec<u8>)> {
    let underlay = std::net::Ipv4Addr::new(10, 0, 0, 1);
    let rec = serde_json::to_vec(&NodeRecord {
        name: name.to_owned(),
        underlay,
    })
    .unwrap_or_default();
    let m = serde_json::to_vec(&MacRecord {
        node: name.to_owned(),
        vtep: underlay,
    })
    .unwrap_or_default();
    let mut v = vec![(format!("{prefix}nodes/{name}"), rec)];
    for n in 0..networks {
        v.push((
            format!("{prefix}macs/net{n}/{}", mac(first, node, n)),
            m.clone(),
        ));
    }
    v
}

fn simulate(
    a: &SimArgs,
    etcd: &Arc<Etcd>,
    prefix: &str,
    start: Instant,
) -> Result<SimReport, String> {
    // 1. The cluster as it stands: every node's lease, key and MACs (batched: this is
    // the set-up, not what is measured).
    let t = Instant::now();
    let leases: Vec<i64> = std::thread::scope(|s| {
        let per = a.nodes.div_ceil(8);
        let handles: Vec<_> = (0..8)
            .map(|w| {
                let etcd = Arc::clone(etcd);
                s.spawn(move || -> Result<Vec<i64>, String> {
                    let mut out = Vec::new();
                    for i in (w * per)..((w + 1) * per).min(a.nodes) {
                        let lease = etcd.lease_grant(TTL).map_err(err)?;
                        let ops: Vec<_> = node_keys(prefix, &format!("sim{i}"), 2, i, a.networks)
                            .iter()
                            .map(|(k, v)| op_put(k, v, lease))
                            .collect();
                        etcd.txn(Vec::new(), ops).map_err(err)?;
                        out.push(lease);
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.join().map_err(|_| "a writer panicked".to_owned())??);
        }
        Ok::<_, String>(all)
    })?;
    let populate_secs = t.elapsed().as_secs_f64();

    // 2. A full read, as a node starting (or coming back) does.
    let t = Instant::now();
    let (kvs, rev) = etcd.range_prefix(prefix).map_err(err)?;
    let full_read_secs = t.elapsed().as_secs_f64();
    let keys = kvs.len();
    let full_read_bytes: usize = kvs.iter().map(|k| k.key.len() + k.value.len()).sum();
    drop(kvs);

    // 3. Every node watches, and renews its lease.
    let stop = Arc::new(AtomicBool::new(false));
    let tallies: Vec<Arc<Tally>> = (0..a.nodes).map(|_| Arc::default()).collect();
    let ready = Arc::new(AtomicUsize::new(0));
    let probe_mark = format!("{prefix}nodes/probe");
    let mut watchers = Vec::new();
    for tally in &tallies {
        let (etcd, tally, ready, stop) = (
            Arc::clone(etcd),
            Arc::clone(tally),
            Arc::clone(&ready),
            Arc::clone(&stop),
        );
        let (prefix, probe_mark) = (prefix.to_owned(), probe_mark.clone());
        let h = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let mut first = true;
                etcd.watch(&prefix, rev + 1, |events, _| {
                    if std::mem::take(&mut first) {
                        ready.fetch_add(1, Ordering::SeqCst);
                    }
                    let now = start.elapsed().as_nanos() as u64;
                    for e in events {
                        match e {
                            Event::Put(kv) if is_probe(&kv.key, &probe_mark) => {
                                tally.puts.fetch_add(1, Ordering::SeqCst);
                                tally.last_put.store(now, Ordering::SeqCst);
                            }
                            Event::Delete(k) if is_probe(&k, &probe_mark) => {
                                tally.deletes.fetch_add(1, Ordering::SeqCst);
                                tally.last_delete.store(now, Ordering::SeqCst);
                            }
                            _ => {}
                        }
                    }
                    !stop.load(Ordering::SeqCst)
                });
            })
            .map_err(err)?;
        watchers.push(h);
    }
    // Each lease renewed once per TTL/3 (as daemons do), spread over a few threads.
    let keepalives = Arc::new(AtomicU64::new(0));
    let renewers: Vec<_> = leases
        .chunks(a.nodes.div_ceil(RENEWERS))
        .map(|mine| {
            let (etcd, stop, mine, keepalives) = (
                Arc::clone(etcd),
                Arc::clone(&stop),
                mine.to_vec(),
                Arc::clone(&keepalives),
            );
            std::thread::spawn(move || {
                let gap = Duration::from_secs(TTL).div_f64(3.0 * mine.len() as f64);
                let mut next = Instant::now();
                for l in mine.iter().cycle() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let _ = etcd.lease_keepalive(*l);
                    keepalives.fetch_add(1, Ordering::Relaxed);
                    next += gap;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            })
        })
        .collect();
    let t = Instant::now();
    while ready.load(Ordering::SeqCst) < a.nodes {
        if t.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "only {} of {} watches were made in 2 minutes",
                ready.load(Ordering::SeqCst),
                a.nodes
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = counters(etcd);
    let ka_start = (Instant::now(), keepalives.load(Ordering::Relaxed));

    // 4. Rounds: a node joins (its writes one by one, as the agent makes them), every
    // watcher must see all of them; then its lease ends, every watcher must see it go.
    let per_node = 1 + a.networks;
    let (mut joins, mut leaves, mut writes) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..a.rounds {
        for t in &tallies {
            t.puts.store(0, Ordering::SeqCst);
            t.deletes.store(0, Ordering::SeqCst);
        }
        let t0 = start.elapsed().as_nanos() as u64;
        // As a daemon joins: a lease, its key (if absent), its MACs in batches.
        let lease = etcd.lease_grant(TTL).map_err(err)?;
        let keys = node_keys(prefix, &format!("probe{r}"), PROBE, r, a.networks);
        let (k, v) = &keys[0];
        etcd.txn(vec![cmp_absent(k)], vec![op_put(k, v, lease)])
            .map_err(err)?;
        for batch in keys[1..].chunks(PUBLISH_BATCH) {
            let ops = batch.iter().map(|(k, v)| op_put(k, v, lease)).collect();
            etcd.txn(Vec::new(), ops).map_err(err)?;
        }
        writes.push((start.elapsed().as_nanos() as u64 - t0) as f64 / 1e9);
        joins.push(wait_all(
            &tallies,
            per_node,
            |t| &t.puts,
            |t| &t.last_put,
            t0,
        )?);
        let t1 = start.elapsed().as_nanos() as u64;
        etcd.lease_revoke(lease).map_err(err)?;
        leaves.push(wait_all(
            &tallies,
            per_node,
            |t| &t.deletes,
            |t| &t.last_delete,
            t1,
        )?);
    }
    let after = counters(etcd);
    let keepalives_per_sec = (keepalives.load(Ordering::Relaxed) - ka_start.1) as f64
        / ka_start.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    // The watchers end at their next event: one more write wakes them all.
    let _ = etcd.put(&format!("{prefix}nodes/~stop"), b"{}", 0);
    for h in watchers {
        let _ = h.join();
    }
    for r in renewers {
        let _ = r.join();
    }
    for l in &leases {
        let _ = etcd.lease_revoke(*l);
    }
    let (join_secs_median, join_secs_max) = stats(&mut joins);
    let (leave_secs_median, leave_secs_max) = stats(&mut leaves);
    Ok(SimReport {
        nodes: a.nodes,
        networks: a.networks,
        keys,
        populate_secs,
        full_read_secs,
        full_read_bytes,
        join_secs_median,
        join_secs_max,
        join_write_secs: stats(&mut writes).0,
        leave_secs_median,
        leave_secs_max,
        watch_events: after.events - before.events,
        puts: after.puts - before.puts,
        keepalives_per_sec,
        etcd_rss_mib: after.rss / (1 << 20) as f64,
        etcd_db_mib: after.db / (1 << 20) as f64,
    })
}

fn is_probe(key: &str, probe_mark: &str) -> bool {
    key.starts_with(probe_mark) || key.contains("/06:")
}

fn stats(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

/// Waits until every watcher counted `want` probe events; seconds from `t0` to the
/// last one any watcher saw.
fn wait_all(
    tallies: &[Arc<Tally>],
    want: usize,
    count: impl Fn(&Tally) -> &AtomicUsize,
    last: impl Fn(&Tally) -> &AtomicU64,
    t0: u64,
) -> Result<f64, String> {
    let t = Instant::now();
    while tallies
        .iter()
        .any(|x| count(x).load(Ordering::SeqCst) < want)
    {
        if t.elapsed() > Duration::from_secs(120) {
            let behind = tallies
                .iter()
                .filter(|x| count(x).load(Ordering::SeqCst) < want)
                .count();
            return Err(format!("{behind} watchers still behind after 2 minutes"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let worst = tallies
        .iter()
        .map(|x| last(x).load(Ordering::SeqCst))
        .max()
        .unwrap_or(t0);
    Ok(worst.saturating_sub(t0) as f64 / 1e9)
}

struct Counters {
    events: f64,
    puts: f64,
    rss: f64,
    db: f64,
}

/// etcd's counters of watch events sent and puts taken, its memory and database size.
fn counters(etcd: &Etcd) -> Counters {
    let text = etcd.metrics().unwrap_or_default();
    let get = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Counters {
        events: get("etcd_debugging_mvcc_events_total"),
        puts: get("etcd_debugging_mvcc_put_total"),
        rss: get("process_resident_memory_bytes"),
        db: get("etcd_mvcc_db_total_size_in_bytes"),
    }
}
