//! Cluster mode (`vbr daemon --cluster URL --node NAME --underlay IP`): the cluster's
//! shared state lives in etcd (see [`model`] for the keys), this node's daemon stays
//! the authority for its own ports. This module holds the node's session (a lease that
//! keeps its registration and its MACs alive), the cluster-wide address allocation,
//! `vbr cluster apply|del|status`; [`agent`] follows etcd and shapes the node to it.

#![warn(clippy::significant_drop_in_scrutinee)]

mod agent;
pub(crate) mod etcd;
pub(crate) mod model;
pub(crate) mod sim;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ErrorKind};
use etcd::{Etcd, EtcdError, cmp_absent, cmp_unchanged, op_delete, op_delete_prefix, op_put};
use model::{Allocation, NetworkDef, NodeRecord, View};

pub(crate) use agent::{health, spawn};

/// `vbr daemon --cluster ... --node ... --underlay ...`.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) endpoints: Vec<String>,
    pub(crate) node: String,
    pub(crate) underlay: Ipv4Addr,
    /// Seconds a node stays listed after its daemon stops renewing its lease.
    pub(crate) lease_ttl: u64,
}

/// What this node keeps between runs (`cluster.json` in the state directory): the
/// leases it held, so a restarted daemon takes its own registration back instead of
/// waiting for it to expire, and the networks whose bridges it made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    node: String,
    #[serde(default)]
    leases: Vec<i64>,
    #[serde(default)]
    made: BTreeSet<String>,
    /// The VXLAN ports it made (only those are ever taken away by it).
    #[serde(default)]
    made_ports: BTreeSet<String>,
}

/// This node in the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    opts: Options,
    etcd: Etcd,
    file: PathBuf,
    inner: Mutex<Inner>,
    /// Set once the daemon stops: the node joins no more.
    leaving: AtomicBool,
    /// Namespaces whose connect is under way (their address is not an orphan).
    connecting: Mutex<BTreeSet<String>>,
}

#[derive(Debug)]
struct Inner {
    saved: Saved,
    view: View,
    /// The lease the node's keys live under (0: none yet).
    lease: i64,
    /// The last failure talking to etcd, and since when it lasts (`None`: reachable).
    trouble: Option<(String, Instant)>,
    last_sync: Option<SystemTime>,
    /// (network, MAC) this node has published under its current lease.
    published: BTreeSet<(String, String)>,
}

/// Why a node could not join.
#[derive(Debug)]
pub(crate) enum JoinError {
    /// Another live node holds the name.
    NameTaken(String),
    Etcd(EtcdError),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::NameTaken(m) => f.write_str(m),
            JoinError::Etcd(e) => write!(f, "{e}"),
        }
    }
}

impl Cluster {
    pub(crate) fn new(opts: Options, state_dir: &std::path::Path) -> Result<Cluster, String> {
        crate::names::check_ifname(&opts.node)
            .map_err(|e| format!("--node {}: {e} (a short name, like a host name)", opts.node))?;
        if !(2..=3600).contains(&opts.lease_ttl) {
            return Err(format!(
                "--lease-ttl {}: use 2..=3600 seconds",
                opts.lease_ttl
            ));
        }
        if opts.underlay.is_unspecified() || opts.underlay.is_multicast() {
            return Err(format!(
                "--underlay {}: this host's unicast address on the underlay",
                opts.underlay
            ));
        }
        let etcd = Etcd::new(&opts.endpoints)?;
        let file = state_dir.join("cluster.json");
        let saved = match std::fs::read(&file) {
            Ok(b) => serde_json::from_slice::<Saved>(&b)
                .ok()
                .filter(|s| s.node == opts.node)
                .unwrap_or_default(),
            Err(_) => Saved::default(),
        };
        Ok(Cluster {
            etcd,
            file,
            inner: Mutex::new(Inner {
                saved: Saved {
                    node: opts.node.clone(),
                    ..saved
                },
                view: View::default(),
                lease: 0,
                trouble: None,
                last_sync: None,
                published: BTreeSet::new(),
            }),
            leaving: AtomicBool::new(false),
            connecting: Mutex::default(),
            opts,
        })
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, saved: &Saved) {
        let write = serde_json::to_vec_pretty(saved)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                let tmp = self.file.with_extension("json.tmp");
                std::fs::write(&tmp, b)?;
                std::fs::rename(&tmp, &self.file)
            });
        if let Err(e) = write {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot save the cluster state");
        }
    }

    /// Makes sure the node is registered under a live lease: the current one renewed,
    /// or a new one granted (remembered before it is used) and the node's key written
    /// under it. A key of this node's name under a lease it held before (a restart) is
    /// taken back; under anyone else's, the name is taken.
    pub(crate) fn session(&self) -> Result<(), JoinError> {
        let stopping = || JoinError::Etcd(EtcdError::Bad("the daemon is stopping".into()));
        if self.leaving.load(Ordering::SeqCst) {
            return Err(stopping());
        }
        let key = model::node_key(&self.opts.node);
        // Read out first: a guard in an `if let` scrutinee would live through its block.
        let (lease, last) = {
            let inner = self.inner();
            (inner.lease, inner.saved.leases.last().copied())
        };
        if lease != 0 {
            match self.etcd.lease_keepalive(lease) {
                Ok(Some(_)) => {
                    return match self.etcd.get(&key).map_err(JoinError::Etcd)? {
                        Some(kv) if kv.lease == lease => Ok(()),
                        _ => self.register(lease),
                    };
                }
                Ok(None) => {
                    tracing::warn!(lease, "the node's etcd lease expired; joining again");
                    let mut inner = self.inner();
                    inner.lease = 0;
                    inner.published.clear();
                }
                Err(e) => return Err(JoinError::Etcd(e)),
            }
        } else if let Some(last) = last {
            // A restart: this node's previous run's lease still lives and holds its key,
            // so it is taken over as it is (the other nodes see no change at all).
            let held = self.etcd.get(&key).map_err(JoinError::Etcd)?;
            if held.is_some_and(|kv| kv.lease == last)
                && matches!(self.etcd.lease_keepalive(last), Ok(Some(_)))
            {
                let mut inner = self.inner();
                if self.leaving.load(Ordering::SeqCst) {
                    return Err(stopping());
                }
                inner.lease = last;
                inner.published.clear();
                tracing::info!(node = %self.opts.node, lease = last, "carrying on with this node's lease from its previous run");
                return Ok(());
            }
        }
        let id = self
            .etcd
            .lease_grant(self.opts.lease_ttl)
            .map_err(JoinError::Etcd)?;
        {
            let mut inner = self.inner();
            inner.saved.leases.push(id);
            let n = inner.saved.leases.len();
            inner.saved.leases.drain(..n.saturating_sub(4));
            let saved = inner.saved.clone();
            drop(inner);
            self.save(&saved);
        }
        match self.register(id) {
            Ok(()) => {
                let mut inner = self.inner();
                if self.leaving.load(Ordering::SeqCst) {
                    drop(inner);
                    let _ = self.etcd.lease_revoke(id);
                    return Err(stopping());
                }
                inner.lease = id;
                inner.published.clear();
                Ok(())
            }
            Err(e) => {
                let _ = self.etcd.lease_revoke(id);
                Err(e)
            }
        }
    }

    fn register(&self, lease: i64) -> Result<(), JoinError> {
        let key = model::node_key(&self.opts.node);
        let rec = NodeRecord {
            name: self.opts.node.clone(),
            underlay: self.opts.underlay,
        };
        let value = serde_json::to_vec(&rec).unwrap_or_default();
        for _ in 0..3 {
            if self
                .etcd
                .txn(vec![cmp_absent(&key)], vec![op_put(&key, &value, lease)])
                .map_err(JoinError::Etcd)?
            {
                tracing::info!(node = %self.opts.node, lease, "joined the cluster");
                return Ok(());
            }
            let Some(kv) = self.etcd.get(&key).map_err(JoinError::Etcd)? else {
                continue;
            };
            let ours = kv.lease == lease || self.inner().saved.leases.contains(&kv.lease);
            if !ours {
                let other = serde_json::from_slice::<NodeRecord>(&kv.value)
                    .map(|r| r.underlay.to_string())
                    .unwrap_or_else(|_| "?".into());
                return Err(JoinError::NameTaken(format!(
                    "node name {} is taken by a live node (underlay {other}); choose another --node, or wait until that node's lease runs out",
                    self.opts.node
                )));
            }
            if kv.lease == lease {
                // Ours already (renewed after a blip): written again, same lease.
                self.etcd
                    .txn(
                        vec![cmp_unchanged(&key, kv.mod_revision)],
                        vec![op_put(&key, &value, lease)],
                    )
                    .map_err(JoinError::Etcd)?;
                return Ok(());
            }
            // This node's previous run: its lease (and the MACs under it) go.
            tracing::info!(
                old = kv.lease,
                "taking back this node's registration from its previous run"
            );
            self.etcd.lease_revoke(kv.lease).map_err(JoinError::Etcd)?;
        }
        Err(JoinError::Etcd(EtcdError::Bad(format!(
            "{key} keeps changing; try again"
        ))))
    }

    /// Leaves the cluster (a clean stop): the lease goes, and with it the node's key
    /// and MACs, so the others take its tunnels down now instead of after the TTL.
    pub(crate) fn leave(&self) {
        let lease = {
            let mut inner = self.inner();
            self.leaving.store(true, Ordering::SeqCst);
            std::mem::take(&mut inner.lease)
        };
        if lease != 0 {
            match self.etcd.lease_revoke(lease) {
                Ok(()) => tracing::info!(node = %self.opts.node, "left the cluster"),
                Err(e) => tracing::warn!("cluster: cannot leave ({e}); the lease runs out"),
            }
        }
    }

    /// Marks etcd unreachable (or in trouble) with `why`, keeping since when.
    fn trouble(&self, why: String) {
        let mut inner = self.inner();
        if inner.trouble.as_ref().is_none_or(|t| t.0 != why) {
            tracing::warn!("cluster: {why}; forwarding goes on with the last known state");
        }
        let since = inner.trouble.as_ref().map_or_else(Instant::now, |t| t.1);
        inner.trouble = Some((why, since));
    }

    fn healthy(&self) {
        let mut inner = self.inner();
        if inner.trouble.take().is_some() {
            tracing::info!("cluster: etcd reachable again; state read afresh");
        }
        inner.last_sync = Some(SystemTime::now());
    }

    /// The network `bridge` is, if it is one of the cluster's.
    pub(crate) fn network(&self, bridge: &str) -> Option<NetworkDef> {
        self.inner().view.networks.get(bridge).cloned()
    }

    /// A free address of `net` for namespace `netns`, taken in one transaction (never
    /// given twice, whichever nodes ask at once); with the revision that took it, for
    /// [`Cluster::unallocate`].
    pub(crate) fn allocate(
        &self,
        net: &NetworkDef,
        netns: &str,
    ) -> Result<(Ipv4Addr, i64), ApiError> {
        let rec = self.allocation(netns);
        for _ in 0..32 {
            let (kvs, _) = self
                .etcd
                .range_prefix(&model::ip_prefix(&net.name))
                .map_err(etcd_err)?;
            let used: BTreeSet<String> = kvs
                .into_iter()
                .filter_map(|kv| kv.key.rsplit('/').next().map(str::to_owned))
                .collect();
            // The first free one; taken meanwhile by another node: read again.
            let Some(ip) = net.pool().find(|ip| !used.contains(&ip.to_string())) else {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!("network {}: no free address left in its pool", net.name),
                ));
            };
            let key = model::ip_key(&net.name, ip);
            let (won, rev) = self
                .etcd
                .txn_rev(vec![cmp_absent(&key)], vec![op_put(&key, &rec, 0)])
                .map_err(etcd_err)?;
            if won {
                return Ok((ip, rev));
            }
        }
        Err(ApiError::new(
            ErrorKind::Unavailable,
            format!(
                "network {}: addresses keep being taken by other nodes; try again",
                net.name
            ),
        ))
    }

    /// Claims `ip` of `net` for `netns` (an address given with `--ip`): refused when
    /// another namespace holds it; already this one's: fine. The claim's revision, if
    /// it is new.
    pub(crate) fn claim(
        &self,
        net: &NetworkDef,
        ip: Ipv4Addr,
        netns: &str,
    ) -> Result<Option<i64>, ApiError> {
        let key = model::ip_key(&net.name, ip);
        let rec = self.allocation(netns);
        for _ in 0..4 {
            let (won, rev) = self
                .etcd
                .txn_rev(vec![cmp_absent(&key)], vec![op_put(&key, &rec, 0)])
                .map_err(etcd_err)?;
            if won {
                return Ok(Some(rev));
            }
            match self.etcd.get(&key).map_err(etcd_err)? {
                Some(kv) if kv.value == rec => return Ok(None),
                Some(kv) => {
                    let who = serde_json::from_slice::<Allocation>(&kv.value)
                        .map(|a| format!("namespace {} on node {}", a.netns, a.node))
                        .unwrap_or_else(|_| "someone".into());
                    return Err(ApiError::new(
                        ErrorKind::Conflict,
                        format!("network {}: {ip} is taken by {who}", net.name),
                    ));
                }
                // Given back meanwhile: try again.
                None => {}
            }
        }
        Err(ApiError::new(
            ErrorKind::Unavailable,
            format!("network {}: {ip} keeps changing hands; try again", net.name),
        ))
    }

    fn allocation(&self, netns: &str) -> Vec<u8> {
        serde_json::to_vec(&Allocation {
            node: self.opts.node.clone(),
            netns: netns.to_owned(),
        })
        .unwrap_or_default()
    }

    /// Gives back the one address [`Cluster::allocate`] (or `claim`) took at `rev`, if
    /// nothing changed it since (a connect that failed).
    pub(crate) fn unallocate(&self, network: &str, ip: Ipv4Addr, rev: i64) {
        let key = model::ip_key(network, ip);
        if let Err(e) = self
            .etcd
            .txn(vec![cmp_unchanged(&key, rev)], vec![op_delete(&key)])
        {
            tracing::warn!(error = %e, %key, "cannot give the address back");
        }
    }

    /// Gives back the addresses this node holds for `netns` on `network`.
    pub(crate) fn release(&self, network: &str, netns: &str) -> Result<(), ApiError> {
        let (kvs, _) = self
            .etcd
            .range_prefix(&model::ip_prefix(network))
            .map_err(etcd_err)?;
        let mine = self.allocation(netns);
        for kv in kvs.into_iter().filter(|kv| kv.value == mine) {
            self.etcd
                .txn(
                    vec![cmp_unchanged(&kv.key, kv.mod_revision)],
                    vec![op_delete(&kv.key)],
                )
                .map_err(etcd_err)?;
        }
        Ok(())
    }

    /// Gives back this node's addresses on `network` that no namespace connected to it
    /// here holds any more (it vanished outside vbridge, or a release failed while etcd
    /// was away), except those of connects under way.
    pub(crate) fn release_orphans(&self, network: &str, connected: &BTreeSet<String>) {
        let Ok((kvs, _)) = self.etcd.range_prefix(&model::ip_prefix(network)) else {
            return;
        };
        let busy = self
            .connecting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for kv in kvs {
            let Ok(a) = serde_json::from_slice::<Allocation>(&kv.value) else {
                continue;
            };
            if a.node == self.opts.node && !connected.contains(&a.netns) && !busy.contains(&a.netns)
            {
                tracing::info!(key = %kv.key, netns = %a.netns, "giving back an address no namespace here holds");
                let _ = self.etcd.txn(
                    vec![cmp_unchanged(&kv.key, kv.mod_revision)],
                    vec![op_delete(&kv.key)],
                );
            }
        }
    }

    /// Marks `netns` as being connected (its address allocated, not yet in use) while
    /// the returned guard lives.
    pub(crate) fn connecting(&self, netns: &str) -> Connecting<'_> {
        self.connecting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(netns.to_owned());
        Connecting {
            cluster: self,
            netns: netns.to_owned(),
        }
    }

    /// `vbr cluster apply`: writes `defs` (new or changed networks) after checking them
    /// against each other and against every network etcd holds; each network and its
    /// VNI claim in one transaction.
    pub(crate) fn apply(&self, defs: &[NetworkDef]) -> Result<ApplyDone, ApiError> {
        for d in defs {
            d.check().map_err(ApiError::invalid)?;
        }
        model::check_together(defs).map_err(ApiError::invalid)?;
        let (kvs, _) = self
            .etcd
            .range_prefix(&format!("{}networks/", model::PREFIX))
            .map_err(etcd_err)?;
        let mut existing: BTreeMap<String, (NetworkDef, i64)> = BTreeMap::new();
        for kv in kvs {
            if let Ok(d) = serde_json::from_slice::<NetworkDef>(&kv.value) {
                existing.insert(d.name.clone(), (d, kv.mod_revision));
            }
        }
        let mut all: BTreeMap<&str, &NetworkDef> =
            existing.iter().map(|(k, (d, _))| (k.as_str(), d)).collect();
        for d in defs {
            all.insert(&d.name, d);
        }
        model::check_together(all.values().copied()).map_err(|e| {
            ApiError::new(ErrorKind::Conflict, format!("{e} (with what etcd holds)"))
        })?;
        let mut done = ApplyDone::default();
        for d in defs {
            let key = model::network_key(&d.name);
            let value = serde_json::to_vec(d).unwrap_or_default();
            let (mut cmp, mut ops) = (Vec::new(), vec![op_put(&key, &value, 0)]);
            match existing.get(&d.name) {
                Some((old, _)) if old == d => {
                    done.unchanged.push(d.name.clone());
                    continue;
                }
                Some((old, rev)) => {
                    cmp.push(cmp_unchanged(&key, *rev));
                    if old.vni != d.vni {
                        cmp.push(cmp_absent(&model::vni_key(d.vni)));
                        ops.push(op_delete(&model::vni_key(old.vni)));
                        ops.push(op_put(&model::vni_key(d.vni), d.name.as_bytes(), 0));
                    }
                    done.updated.push(d.name.clone());
                }
                None => {
                    cmp.push(cmp_absent(&key));
                    cmp.push(cmp_absent(&model::vni_key(d.vni)));
                    ops.push(op_put(&model::vni_key(d.vni), d.name.as_bytes(), 0));
                    done.created.push(d.name.clone());
                }
            }
            if !self.etcd.txn(cmp, ops).map_err(etcd_err)? {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!(
                        "network {}: changed by someone else meanwhile, or vni {} is claimed; read `vbr cluster status` and apply again",
                        d.name, d.vni
                    ),
                ));
            }
        }
        Ok(done)
    }

    /// `vbr cluster del NETWORK`: the network, its VNI claim and its addresses, in one
    /// transaction.
    pub(crate) fn delete(&self, name: &str) -> Result<(), ApiError> {
        let key = model::network_key(name);
        let Some(kv) = self.etcd.get(&key).map_err(etcd_err)? else {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("network {name}: not in the cluster"),
            ));
        };
        let mut ops = vec![op_delete(&key), op_delete_prefix(&model::ip_prefix(name))];
        if let Ok(d) = serde_json::from_slice::<NetworkDef>(&kv.value) {
            ops.push(op_delete(&model::vni_key(d.vni)));
        }
        if !self
            .etcd
            .txn(vec![cmp_unchanged(&key, kv.mod_revision)], ops)
            .map_err(etcd_err)?
        {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("network {name}: changed meanwhile; try again"),
            ));
        }
        Ok(())
    }

    /// `vbr cluster status`: this node, etcd, the nodes and networks as last read.
    pub(crate) fn status(
        &self,
        local: impl FnOnce(&BTreeMap<String, NetworkDef>) -> BTreeMap<String, NetworkHealth>,
    ) -> ClusterView {
        let inner = self.inner();
        let view = inner.view.clone();
        let me = &self.opts.node;
        let out = ClusterView {
            node: me.clone(),
            underlay: self.opts.underlay,
            endpoints: self.etcd.endpoints().to_vec(),
            etcd: if inner.trouble.is_none() && inner.last_sync.is_some() {
                "reachable".into()
            } else {
                "unreachable".into()
            },
            error: inner.trouble.as_ref().map(|t| t.0.clone()),
            unreachable_for: inner.trouble.as_ref().map(|t| t.1.elapsed().as_secs_f64()),
            lease: (inner.lease != 0).then(|| format!("{:x}", inner.lease)),
            lease_ttl: self.opts.lease_ttl,
            nodes: view
                .nodes
                .values()
                .map(|n| NodeRow {
                    name: n.name.clone(),
                    underlay: n.underlay,
                    this: &n.name == me,
                })
                .collect(),
            networks: Vec::new(),
            ignored: view
                .bad
                .iter()
                .map(|(k, why)| format!("{k}: {why}"))
                .collect(),
        };
        drop(inner);
        let remotes = view.remotes(me).len();
        let healths = local(&view.networks);
        let networks = view
            .networks
            .values()
            .map(|d| {
                let h = healths.get(&d.name).cloned().unwrap_or_default();
                let remote_macs = view.remote_macs(&d.name, me).len();
                let health = if !h.bridge {
                    "no bridge yet".to_owned()
                } else if !h.vxlan {
                    "no vxlan port yet".to_owned()
                } else if h.remotes != remotes {
                    format!("{} of {remotes} remotes programmed", h.remotes)
                } else {
                    "ok".to_owned()
                };
                NetworkRow {
                    name: d.name.clone(),
                    vni: d.vni,
                    subnet: d.subnet.to_string(),
                    gateway: d.gateway,
                    bridge: h.bridge,
                    vxlan_port: d.vxlan_port(),
                    remotes: h.remotes,
                    remote_macs,
                    local_macs: h.local_macs,
                    health,
                }
            })
            .collect();
        ClusterView { networks, ..out }
    }
}

/// See [`Cluster::connecting`].
#[derive(Debug)]
pub(crate) struct Connecting<'a> {
    cluster: &'a Cluster,
    netns: String,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.cluster
            .connecting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.netns);
    }
}

fn etcd_err(e: EtcdError) -> ApiError {
    let kind = match e {
        EtcdError::Unreachable(_) => ErrorKind::Unavailable,
        _ => ErrorKind::HostFailure,
    };
    ApiError::new(kind, e.to_string())
}

/// How a network stands on this node, for the status.
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkHealth {
    pub(crate) bridge: bool,
    pub(crate) vxlan: bool,
    /// Remote VTEPs in the tunnel's replication list.
    pub(crate) remotes: usize,
    pub(crate) local_macs: usize,
}

/// The answer to `cluster apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApplyDone {
    pub(crate) created: Vec<String>,
    pub(crate) updated: Vec<String>,
    pub(crate) unchanged: Vec<String>,
}

/// The answer to `cluster status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterView {
    pub(crate) node: String,
    pub(crate) underlay: Ipv4Addr,
    pub(crate) endpoints: Vec<String>,
    /// `reachable` or `unreachable`.
    pub(crate) etcd: String,
    pub(crate) error: Option<String>,
    /// Seconds since etcd stopped answering.
    pub(crate) unreachable_for: Option<f64>,
    /// The node's lease (hex, as etcdctl prints it).
    pub(crate) lease: Option<String>,
    pub(crate) lease_ttl: u64,
    pub(crate) nodes: Vec<NodeRow>,
    pub(crate) networks: Vec<NetworkRow>,
    /// Keys in a bad shape, set aside.
    pub(crate) ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRow {
    pub(crate) name: String,
    pub(crate) underlay: Ipv4Addr,
    pub(crate) this: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkRow {
    pub(crate) name: String,
    pub(crate) vni: u32,
    pub(crate) subnet: String,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) bridge: bool,
    pub(crate) vxlan_port: String,
    pub(crate) remotes: usize,
    pub(crate) remote_macs: usize,
    pub(crate) local_macs: usize,
    pub(crate) health: String,
}

/// A `vbr cluster apply` file: `[[network]]` tables, read strictly (a misspelt field is
/// an error, not ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyFile {
    #[serde(default)]
    network: Vec<NetworkEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    name: String,
    vni: u32,
    subnet: ipnet::Ipv4Net,
    gateway: Option<Ipv4Addr>,
    dhcp: Option<RangeEntry>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeEntry {
    start: Ipv4Addr,
    end: Ipv4Addr,
}

impl ApplyFile {
    pub(crate) fn networks(self) -> Vec<NetworkDef> {
        self.network
            .into_iter()
            .map(|n| NetworkDef {
                name: n.name,
                vni: n.vni,
                subnet: n.subnet,
                gateway: n.gateway,
                dhcp: n.dhcp.map(|r| model::Range {
                    start: r.start,
                    end: r.end,
                }),
            })
            .collect()
    }
}
