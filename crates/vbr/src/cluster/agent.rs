//! The cluster agent: a thread (never the forwarding thread) that reads etcd's
//! `/vbridge/` in full, watches it from there, and shapes this node to it: a bridge
//! and a VXLAN port per network, the other nodes' VTEPs in each tunnel's replication
//! list, their MACs as static entries (in the switch, and in the tunnel with their
//! VTEP); it publishes the MACs of its local ports. A second thread renews the node's
//! lease, whatever the first is busy with. While etcd is away nothing is taken down:
//! forwarding goes on with the last state (kept in shape from the last view), and the
//! whole state is read again when the watch ends (etcd gone, a compacted revision).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vbridge_datapath::PortKind;

use super::etcd::{Event, WatchEnd, cmp_lease, op_delete, op_put};
use super::model::{self, MacRecord, NetworkDef, View};
use super::{Cluster, NetworkHealth};
use crate::api::Request;
use crate::daemon::Shared;

/// MACs published per etcd transaction.
pub(crate) const PUBLISH_BATCH: usize = 100;

/// How often local MACs are compared with what is published.
const TICK: Duration = Duration::from_millis(500);

/// How often the node is shaped to the view with no change in it (undoing what was
/// changed by hand: an entry removed, a netdev made again).
const RESHAPE: Duration = Duration::from_secs(5);

enum Msg {
    Events(u64, Vec<Event>),
    Ended(u64, WatchEnd),
    /// The renewer found the lease gone (or the node's key is gone): join again.
    Rejoin,
}

/// Starts the agent and its lease renewer.
pub(crate) fn spawn(cluster: Arc<Cluster>, shared: Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<Msg>();
    let renewer = {
        let (c, tx) = (Arc::clone(&cluster), tx.clone());
        std::thread::Builder::new()
            .name("cluster-lease".into())
            .spawn(move || renew(&c, &tx))
    };
    let agent = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || run(&cluster, &shared, &tx, &rx));
    if let Err(e) = renewer.and(agent) {
        tracing::error!(error = %e, "cannot start the cluster agent");
    }
}

/// Renews the node's lease every TTL/3 until the daemon stops.
fn renew(c: &Cluster, tx: &mpsc::Sender<Msg>) {
    let every = Duration::from_secs(c.opts.lease_ttl).div_f64(3.0);
    while !c.leaving.load(Ordering::SeqCst) {
        std::thread::sleep(every);
        let lease = c.inner().lease;
        if lease == 0 || c.leaving.load(Ordering::SeqCst) {
            continue;
        }
        match c.etcd.lease_keepalive(lease) {
            Ok(Some(_)) => {}
            Ok(None) => {
                if tx.send(Msg::Rejoin).is_err() {
                    return;
                }
            }
            Err(e) => c.trouble(format!("renewing the lease: {e}")),
        }
    }
}

/// Waits after failures: 0.5 s, doubling to 10 s; reset by a success.
struct Backoff(Duration);

impl Backoff {
    fn sleep(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
    }
    fn reset(&mut self) {
        self.0 = Duration::from_millis(500);
    }
}

fn run(c: &Arc<Cluster>, shared: &Shared, tx: &mpsc::Sender<Msg>, rx: &mpsc::Receiver<Msg>) {
    let generation = Arc::new(AtomicU64::new(0));
    let mut backoff = Backoff(Duration::from_millis(500));
    let (mut need_read, mut have_view, mut g) = (true, false, 0);
    loop {
        // Join (or stay joined): a new lease, or this node's key written again.
        if let Err(e) = c.session() {
            c.trouble(e.to_string());
            if have_view {
                reconcile(c, shared);
            }
            backoff.sleep();
            continue;
        }
        if need_read {
            let (kvs, rev) = match c.etcd.range_prefix(model::PREFIX) {
                Ok(r) => r,
                Err(e) => {
                    c.trouble(e.to_string());
                    if have_view {
                        reconcile(c, shared);
                    }
                    backoff.sleep();
                    continue;
                }
            };
            let view = View::from_kvs(kvs);
            {
                let mut inner = c.inner();
                // What this node has published, as etcd has it: what is no longer
                // local goes at the next publication.
                inner.published = view
                    .macs
                    .iter()
                    .filter(|(_, r)| r.node == c.opts.node)
                    .map(|(k, _)| k.clone())
                    .collect();
                inner.view = view;
            }
            have_view = true;
            need_read = false;
            // The old watch thread ends at its next event.
            g = generation.fetch_add(1, Ordering::SeqCst) + 1;
            start_watch(c, g, rev + 1, &generation, tx.clone());
            release_orphans(c, shared);
        }
        c.healthy();
        reconcile(c, shared);
        let mut reshaped = Instant::now();
        if let Err(e) = publish(c, shared) {
            c.trouble(e.to_string());
            backoff.sleep();
            continue;
        }
        backoff.reset();
        loop {
            let mut changed = false;
            match rx.recv_timeout(TICK) {
                Ok(Msg::Events(eg, events)) if eg == g => {
                    let mine = model::node_key(&c.opts.node);
                    let lost = events
                        .iter()
                        .any(|e| matches!(e, Event::Delete(k) if *k == mine));
                    let mut inner = c.inner();
                    for e in events {
                        inner.view.apply(e);
                    }
                    drop(inner);
                    if lost {
                        tracing::warn!("this node's key was deleted; registering again");
                        break;
                    }
                    changed = true;
                }
                Ok(Msg::Ended(eg, why)) if eg == g => {
                    match why {
                        WatchEnd::Compacted(r) => {
                            tracing::info!(
                                compacted = r,
                                "cluster watch compacted; reading all again"
                            )
                        }
                        WatchEnd::Broken(e) => c.trouble(format!("watch: {e}")),
                    }
                    need_read = true;
                    break;
                }
                Ok(Msg::Rejoin) => break,
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if changed || reshaped.elapsed() >= RESHAPE {
                reconcile(c, shared);
                reshaped = Instant::now();
            }
            if let Err(e) = publish(c, shared) {
                c.trouble(e.to_string());
                break;
            }
        }
    }
}

fn start_watch(
    c: &Arc<Cluster>,
    g: u64,
    from: i64,
    generation: &Arc<AtomicU64>,
    tx: mpsc::Sender<Msg>,
) {
    let c = Arc::clone(c);
    let generation = Arc::clone(generation);
    let spawned = std::thread::Builder::new()
        .name("cluster-watch".into())
        .spawn(move || {
            let end = c.etcd.watch(model::PREFIX, from, |events, _| {
                generation.load(Ordering::SeqCst) == g
                    && (events.is_empty() || tx.send(Msg::Events(g, events)).is_ok())
            });
            let _ = tx.send(Msg::Ended(g, end));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the cluster watch");
    }
}

/// Runs `req` as if a client sent it; logs a failure.
fn exec(shared: &Shared, req: Request) -> bool {
    let r = shared.execute(req.clone());
    if !r.ok {
        let why = r.error.map(|e| e.message).unwrap_or_default();
        tracing::warn!(request = ?req, error = %why, "cluster: cannot apply");
    }
    r.ok
}

/// Shapes this node to the view.
fn reconcile(c: &Cluster, shared: &Shared) {
    let (view, saved) = {
        let inner = c.inner();
        (inner.view.clone(), inner.saved.clone())
    };
    let me = &c.opts.node;
    let dp = shared.datapath();
    let (mut made, mut made_ports) = (saved.made.clone(), saved.made_ports.clone());
    let remotes = view.remotes(me);
    for def in view.networks.values() {
        if dp.bridges(Some(&def.name)).is_err() {
            if !exec(
                shared,
                Request::Addbr {
                    bridge: def.name.clone(),
                },
            ) {
                continue;
            }
            made.insert(def.name.clone());
        }
        let vx = def.vxlan_port();
        // Tunnels this node made for another VNI (the network's VNI changed) go; anyone
        // else's VXLAN ports stay.
        for (port, kind) in ports(shared, &def.name) {
            if kind == PortKind::Vxlan
                && port != vx
                && made_ports.contains(&port)
                && exec(shared, Request::VxlanDel { name: port.clone() })
            {
                made_ports.remove(&port);
            }
        }
        match dp.find_port(&vx) {
            Ok(Some((b, PortKind::Vxlan))) if b == def.name => {}
            Ok(Some((b, _))) => {
                tracing::warn!(port = %vx, bridge = %b, network = %def.name, "cluster: a port of the tunnel's name is elsewhere");
                continue;
            }
            _ => {
                if !exec(
                    shared,
                    Request::VxlanAdd {
                        name: vx.clone(),
                        bridge: def.name.clone(),
                        vni: def.vni,
                        local: c.opts.underlay,
                        remotes: Vec::new(),
                        dstport: 4789,
                        learning: false,
                    },
                ) {
                    continue;
                }
                made_ports.insert(vx.clone());
            }
        }
        let remote_macs = view.remote_macs(&def.name, me);
        tunnel_entries(&vx, &remotes, &remote_macs);
        static_entries(shared, &def.name, &vx, &remote_macs);
    }
    // Networks gone from the cluster: the bridges this node made for them go.
    for name in saved
        .made
        .iter()
        .filter(|n| !view.networks.contains_key(*n))
    {
        if dp.bridges(Some(name)).is_err()
            || exec(
                shared,
                Request::Delbr {
                    bridge: name.clone(),
                },
            )
        {
            made.remove(name);
        }
    }
    made_ports.retain(|p| matches!(dp.find_port(p), Ok(Some(_))));
    if made != saved.made || made_ports != saved.made_ports {
        let mut inner = c.inner();
        inner.saved.made = made;
        inner.saved.made_ports = made_ports;
        let saved = inner.saved.clone();
        drop(inner);
        c.save(&saved);
    }
}

/// The ports of `bridge` with their kind.
fn ports(shared: &Shared, bridge: &str) -> Vec<(String, PortKind)> {
    shared
        .datapath()
        .bridges(Some(bridge))
        .map(|v| {
            v.into_iter()
                .flat_map(|b| b.ports)
                .map(|p| (p.name, p.kind))
                .collect()
        })
        .unwrap_or_default()
}

/// The tunnel netdev's entries: every remote VTEP in the replication list, every remote
/// MAC at its VTEP; nothing else.
fn tunnel_entries(vx: &str, remotes: &[Ipv4Addr], macs: &BTreeMap<String, Ipv4Addr>) {
    let mut want: BTreeSet<([u8; 6], Ipv4Addr)> = remotes.iter().map(|r| ([0; 6], *r)).collect();
    for (mac, vtep) in macs {
        if let Ok(m) = mac.parse::<vbridge_core::MacAddr>() {
            want.insert((m.0, *vtep));
        }
    }
    let mut nl = match vbridge_host::Netlink::new() {
        Ok(nl) => nl,
        Err(e) => {
            tracing::warn!(error = %e, "cluster: no netlink");
            return;
        }
    };
    let Ok(have) = nl.vxlan_fdb(vx) else {
        return; // being made again
    };
    let have: BTreeSet<([u8; 6], Ipv4Addr)> = have.into_iter().collect();
    for (mac, dst) in have.difference(&want) {
        if let Err(e) = nl.vxlan_fdb_del(vx, *mac, *dst) {
            tracing::warn!(error = %e, "cluster: tunnel entry");
        }
    }
    for (mac, dst) in want.difference(&have) {
        if let Err(e) = nl.vxlan_fdb_set(vx, *mac, *dst) {
            tracing::warn!(error = %e, "cluster: tunnel entry");
        }
    }
}

/// The switch's static entries on the tunnel port: exactly the remote MACs, changed in
/// one batch (one save of the configuration).
fn static_entries(shared: &Shared, bridge: &str, vx: &str, macs: &BTreeMap<String, Ipv4Addr>) {
    let Ok(rows) = shared.datapath().fdb(bridge) else {
        return;
    };
    let have: BTreeSet<String> = rows
        .into_iter()
        .filter(|r| r.port == vx && r.kind == "static")
        .map(|r| r.mac)
        .collect();
    let mut reqs: Vec<Request> = have
        .iter()
        .filter(|m| !macs.contains_key(*m))
        .map(|mac| Request::FdbDel {
            bridge: bridge.to_owned(),
            mac: mac.clone(),
            vlan: None,
        })
        .collect();
    reqs.extend(
        macs.keys()
            .filter(|m| !have.contains(*m))
            .map(|mac| Request::FdbAdd {
                bridge: bridge.to_owned(),
                mac: mac.clone(),
                port: vx.to_owned(),
                vlan: None,
            }),
    );
    for (req, why) in shared.execute_batch(reqs) {
        tracing::warn!(request = ?req, error = %why, "cluster: cannot apply");
    }
}

/// The MACs on this node's local ports, per network: its namespaces' (known as they are
/// connected) and those learned on its other ports (VMs, attached interfaces).
pub(super) fn local_macs(
    shared: &Shared,
    networks: &BTreeMap<String, NetworkDef>,
) -> BTreeMap<String, BTreeSet<String>> {
    let dp = shared.datapath();
    let mut out: BTreeMap<String, BTreeSet<String>> = networks
        .keys()
        .map(|n| (n.clone(), BTreeSet::new()))
        .collect();
    for (bridge, _, conn) in dp.connections().unwrap_or_default() {
        if let (Some(set), Some(m)) = (out.get_mut(&bridge), conn.mac) {
            set.insert(m.to_string());
        }
    }
    for (name, def) in networks {
        let vx = def.vxlan_port();
        if let (Ok(rows), Some(set)) = (dp.fdb(name), out.get_mut(name)) {
            set.extend(
                rows.into_iter()
                    .filter(|r| r.port != vx && r.kind == "dynamic" && !r.is_local)
                    .map(|r| r.mac),
            );
        }
    }
    out
}

/// Publishes what changed in this node's local MACs, under its lease (nothing without
/// one: a key with no lease would outlive the node).
fn publish(c: &Cluster, shared: &Shared) -> Result<(), super::EtcdError> {
    let (networks, published, lease) = {
        let inner = c.inner();
        (
            inner.view.networks.clone(),
            inner.published.clone(),
            inner.lease,
        )
    };
    if lease == 0 {
        return Ok(());
    }
    let want: BTreeSet<(String, String)> = local_macs(shared, &networks)
        .into_iter()
        .flat_map(|(net, macs)| macs.into_iter().map(move |m| (net.clone(), m)))
        .collect();
    let rec = serde_json::to_vec(&MacRecord {
        node: c.opts.node.clone(),
        vtep: c.opts.underlay,
    })
    .unwrap_or_default();
    // New ones in batches, one transaction each (etcd takes up to 128 operations).
    let new: Vec<&(String, String)> = want.difference(&published).collect();
    for batch in new.chunks(PUBLISH_BATCH) {
        let ops = batch
            .iter()
            .map(|(net, mac)| op_put(&model::mac_key(net, mac), &rec, lease))
            .collect();
        c.etcd.txn(Vec::new(), ops)?;
        c.inner()
            .published
            .extend(batch.iter().map(|k| (*k).clone()));
    }
    for (net, mac) in published.difference(&want) {
        // Only this node's record: another node may hold the MAC now.
        let key = model::mac_key(net, mac);
        c.etcd
            .txn(vec![cmp_lease(&key, lease)], vec![op_delete(&key)])?;
        c.inner().published.remove(&(net.clone(), mac.clone()));
    }
    Ok(())
}

/// Gives back the addresses this node holds on each network for namespaces no longer
/// connected here.
fn release_orphans(c: &Cluster, shared: &Shared) {
    let networks: Vec<String> = c.inner().view.networks.keys().cloned().collect();
    let conns = shared.datapath().connections().unwrap_or_default();
    for net in networks {
        let connected: BTreeSet<String> = conns
            .iter()
            .filter(|(b, _, _)| *b == net)
            .map(|(_, _, conn)| conn.netns.clone())
            .collect();
        c.release_orphans(&net, &connected);
    }
}

/// How each network stands on this node.
pub(crate) fn health(
    shared: &Shared,
    networks: &BTreeMap<String, NetworkDef>,
) -> BTreeMap<String, NetworkHealth> {
    let dp = shared.datapath();
    let local = local_macs(shared, networks);
    let mut nl = vbridge_host::Netlink::new().ok();
    networks
        .iter()
        .map(|(name, def)| {
            let vx = def.vxlan_port();
            let bridge = dp.bridges(Some(name)).is_ok();
            let vxlan = matches!(dp.find_port(&vx), Ok(Some((b, PortKind::Vxlan))) if b == *name);
            let remotes = match (&mut nl, vxlan) {
                (Some(nl), true) => nl
                    .vxlan_fdb(&vx)
                    .map(|v| v.iter().filter(|(m, _)| *m == [0; 6]).count())
                    .unwrap_or(0),
                _ => 0,
            };
            let h = NetworkHealth {
                bridge,
                vxlan,
                remotes,
                local_macs: local.get(name).map_or(0, BTreeSet::len),
            };
            (name.clone(), h)
        })
        .collect()
}
