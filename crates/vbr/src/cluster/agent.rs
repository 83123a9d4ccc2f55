//! The cluster agent: one thread (never the forwarding thread) that reads etcd's
//! `/vbridge/` in full, watches it from there, and shapes this node to it: a bridge
//! and a VXLAN port per network, the other nodes' VTEPs in each tunnel's replication
//! list, their MACs as static entries (in the switch, and in the tunnel with their
//! VTEP); it renews the node's lease and publishes the MACs of its local ports.
//! While etcd is away nothing is taken down: forwarding goes on with the last state,
//! and the whole state is read again when etcd answers (a compacted watch too).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vbridge_datapath::PortKind;

use super::etcd::{Event, WatchEnd, cmp_lease, op_delete, op_put};

/// MACs published per etcd transaction.
pub(crate) const PUBLISH_BATCH: usize = 100;
use super::model::{self, MacRecord, NetworkDef, View};
use super::{Cluster, NetworkHealth};
use crate::api::Request;
use crate::daemon::Shared;

enum Msg {
    Events(u64, Vec<Event>),
    Ended(u64, WatchEnd),
}

/// Starts the agent.
pub(crate) fn spawn(cluster: Arc<Cluster>, shared: Arc<Shared>) {
    let spawned = std::thread::Builder::new()
        .name("cluster".into())
        .spawn(move || run(&cluster, &shared));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the cluster agent");
    }
}

fn run(c: &Arc<Cluster>, shared: &Shared) {
    let (tx, rx) = mpsc::channel::<Msg>();
    let generation = Arc::new(AtomicU64::new(0));
    let tick = Duration::from_millis(500);
    let renew_every = Duration::from_secs(c.opts.lease_ttl).div_f64(3.0);
    loop {
        // Join (or stay joined), then read everything.
        if let Err(e) = c.session() {
            c.trouble(e.to_string());
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        let (kvs, rev) = match c.etcd.range_prefix(model::PREFIX) {
            Ok(r) => r,
            Err(e) => {
                c.trouble(e.to_string());
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        c.inner().view = View::from_kvs(kvs);
        c.healthy();
        reconcile(c, shared);
        if let Err(e) = publish(c, shared) {
            c.trouble(e.to_string());
            continue;
        }
        let g = generation.fetch_add(1, Ordering::SeqCst) + 1;
        start_watch(c, g, rev + 1, &generation, tx.clone());
        let mut renewed = Instant::now();
        loop {
            match rx.recv_timeout(tick) {
                Ok(Msg::Events(eg, events)) if eg == g => {
                    let mut inner = c.inner();
                    for e in events {
                        inner.view.apply(e);
                    }
                    drop(inner);
                    reconcile(c, shared);
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
                    break;
                }
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if renewed.elapsed() >= renew_every {
                match c.etcd.lease_keepalive(c.inner().lease) {
                    Ok(Some(_)) => renewed = Instant::now(),
                    Ok(None) => break, // expired: join again
                    Err(e) => {
                        c.trouble(e.to_string());
                        break;
                    }
                }
            }
            if let Err(e) = publish(c, shared) {
                c.trouble(e.to_string());
                break;
            }
            // Undo changes made by hand (an entry removed, a netdev made again).
            reconcile(c, shared);
        }
        // Ends the watch thread at its next event.
        generation.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
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
    let what = format!("{req:?}");
    let r = shared.execute(req);
    if !r.ok {
        let why = r.error.map(|e| e.message).unwrap_or_default();
        tracing::warn!(request = %what, error = %why, "cluster: cannot apply");
    }
    r.ok
}

/// Shapes this node to the view.
fn reconcile(c: &Cluster, shared: &Shared) {
    let (view, made) = {
        let inner = c.inner();
        (inner.view.clone(), inner.saved.made.clone())
    };
    let me = &c.opts.node;
    let dp = shared.datapath();
    let mut now_made = made.clone();
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
            now_made.insert(def.name.clone());
        }
        let vx = def.vxlan_port();
        // VXLAN ports of another VNI (the network's VNI changed) go.
        for (port, kind) in ports(shared, &def.name) {
            if kind == PortKind::Vxlan && port != vx {
                exec(shared, Request::VxlanDel { name: port });
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
            }
        }
        let remote_macs = view.remote_macs(&def.name, me);
        tunnel_entries(&vx, &view.remotes(me), &remote_macs);
        static_entries(shared, &def.name, &vx, &remote_macs);
    }
    // Networks gone from the cluster: the bridges this node made for them go.
    for name in made.iter().filter(|n| !view.networks.contains_key(*n)) {
        if dp.bridges(Some(name)).is_err()
            || exec(
                shared,
                Request::Delbr {
                    bridge: name.clone(),
                },
            )
        {
            now_made.remove(name);
        }
    }
    if now_made != made {
        let mut inner = c.inner();
        inner.saved.made = now_made;
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

/// The switch's static entries on the tunnel port: exactly the remote MACs.
fn static_entries(shared: &Shared, bridge: &str, vx: &str, macs: &BTreeMap<String, Ipv4Addr>) {
    let Ok(rows) = shared.datapath().fdb(bridge) else {
        return;
    };
    let have: BTreeSet<String> = rows
        .into_iter()
        .filter(|r| r.port == vx && r.kind == "static")
        .map(|r| r.mac)
        .collect();
    for mac in have.iter().filter(|m| !macs.contains_key(*m)) {
        exec(
            shared,
            Request::FdbDel {
                bridge: bridge.to_owned(),
                mac: mac.clone(),
                vlan: None,
            },
        );
    }
    for mac in macs.keys().filter(|m| !have.contains(*m)) {
        exec(
            shared,
            Request::FdbAdd {
                bridge: bridge.to_owned(),
                mac: mac.clone(),
                port: vx.to_owned(),
                vlan: None,
            },
        );
    }
}

/// The MACs on this node's ports of `def`'s bridge: its namespaces' (known as they
/// are connected) and those learned on its other ports (VMs, attached interfaces).
pub(super) fn local_macs(shared: &Shared, def: &NetworkDef) -> BTreeSet<String> {
    let dp = shared.datapath();
    let vx = def.vxlan_port();
    let mut out: BTreeSet<String> = dp
        .connections()
        .unwrap_or_default()
        .into_iter()
        .filter(|(b, _, _)| *b == def.name)
        .filter_map(|(_, _, conn)| conn.mac.map(|m| m.to_string()))
        .collect();
    if let Ok(rows) = dp.fdb(&def.name) {
        out.extend(
            rows.into_iter()
                .filter(|r| r.port != vx && r.kind == "dynamic" && !r.is_local)
                .map(|r| r.mac),
        );
    }
    out
}

/// Publishes what changed in this node's local MACs, under its lease.
fn publish(c: &Cluster, shared: &Shared) -> Result<(), super::EtcdError> {
    let (networks, published, lease) = {
        let inner = c.inner();
        (
            inner.view.networks.clone(),
            inner.published.clone(),
            inner.lease,
        )
    };
    let mut want = BTreeSet::new();
    for def in networks.values() {
        for mac in local_macs(shared, def) {
            want.insert((def.name.clone(), mac));
        }
    }
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

/// How `def` stands on this node.
pub(crate) fn health(shared: &Shared, def: &NetworkDef) -> NetworkHealth {
    let dp = shared.datapath();
    let vx = def.vxlan_port();
    let bridge = dp.bridges(Some(&def.name)).is_ok();
    let vxlan = matches!(dp.find_port(&vx), Ok(Some((b, PortKind::Vxlan))) if b == def.name);
    let remotes = if vxlan {
        vbridge_host::Netlink::new()
            .and_then(|mut nl| nl.vxlan_fdb(&vx))
            .map(|v| v.iter().filter(|(m, _)| *m == [0; 6]).count())
            .unwrap_or(0)
    } else {
        0
    };
    NetworkHealth {
        bridge,
        vxlan,
        remotes,
        local_macs: if bridge {
            local_macs(shared, def).len()
        } else {
            0
        },
    }
}
