//! Cluster mode (`vbr daemon --cluster URL --node NAME --underlay IP`): the cluster's
//! shared state lives in etcd (see [`model`] for the keys), this node's daemon stays
//! the authority for its own ports. This module holds the node's session (a lease that
//! keeps its registration and its MACs alive), the cluster-wide address allocation,
//! `vbr cluster apply|del|status`; [`agent`] follows etcd and shapes the node to it.

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
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::api::{ApiError, ErrorKind};
use etcd::{Etcd, EtcdError, cmp_absent, cmp_unchanged, op_delete, op_put};
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
}

/// This node in the cluster.
#[derive(Debug)]
pub(crate) struct Cluster {
    opts: Options,
    etcd: Etcd,
    file: PathBuf,
    inner: Mutex<Inner>,
    /// Set once the daemon stops: the node joins no more.
    leaving: std::sync::atomic::AtomicBool,
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
            leaving: std::sync::atomic::AtomicBool::new(false),
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
        if self.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(JoinError::Etcd(EtcdError::Bad(
                "the daemon is stopping".into(),
            )));
        }
        let lease = self.inner().lease;
        if lease != 0 {
            match self.etcd.lease_keepalive(lease) {
                Ok(Some(_)) => {
                    let key = model::node_key(&self.opts.node);
                    match self.etcd.get(&key).map_err(JoinError::Etcd)? {
                        Some(kv) if kv.lease == lease => return Ok(()),
                        _ => return self.register(lease),
                    }
                }
                Ok(None) => {
                    tracing::warn!(lease, "the node's etcd lease expired; joining again");
                    let mut inner = self.inner();
                    inner.lease = 0;
                    inner.published.clear();
                }
                Err(e) => return Err(JoinError::Etcd(e)),
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
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let lease = std::mem::take(&mut self.inner().lease);
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
    /// given twice, whichever nodes ask at once).
    pub(crate) fn allocate(&self, net: &NetworkDef, netns: &str) -> Result<Ipv4Addr, ApiError> {
        let rec = serde_json::to_vec(&Allocation {
            node: self.opts.node.clone(),
            netns: netns.to_owned(),
        })
        .unwrap_or_default();
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
            if self
                .etcd
                .txn(vec![cmp_absent(&key)], vec![op_put(&key, &rec, 0)])
                .map_err(etcd_err)?
            {
                return Ok(ip);
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

    /// Gives back the addresses this node holds for `netns` on `network` (every one of
    /// this node's when `netns` is `None`).
    pub(crate) fn release(&self, network: &str, netns: Option<&str>) -> Result<(), ApiError> {
        let (kvs, _) = self
            .etcd
            .range_prefix(&model::ip_prefix(network))
            .map_err(etcd_err)?;
        for kv in kvs {
            let Ok(a) = serde_json::from_slice::<Allocation>(&kv.value) else {
                continue;
            };
            if a.node == self.opts.node && netns.is_none_or(|n| n == a.netns) {
                self.etcd
                    .txn(
                        vec![cmp_unchanged(&kv.key, kv.mod_revision)],
                        vec![op_delete(&kv.key)],
                    )
                    .map_err(etcd_err)?;
            }
        }
        Ok(())
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

    /// `vbr cluster del NETWORK`: the network, its VNI claim and its addresses.
    pub(crate) fn delete(&self, name: &str) -> Result<(), ApiError> {
        let key = model::network_key(name);
        let Some(kv) = self.etcd.get(&key).map_err(etcd_err)? else {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("network {name}: not in the cluster"),
            ));
        };
        let mut ops = vec![op_delete(&key)];
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
        let (ips, _) = self
            .etcd
            .range_prefix(&model::ip_prefix(name))
            .map_err(etcd_err)?;
        for kv in ips {
            self.etcd.delete(&kv.key).map_err(etcd_err)?;
        }
        Ok(())
    }

    /// `vbr cluster status`: this node, etcd, the nodes and networks as last read.
    pub(crate) fn status(&self, local: impl Fn(&NetworkDef) -> NetworkHealth) -> ClusterView {
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
        let networks = view
            .networks
            .values()
            .map(|d| {
                let h = local(d);
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

/// A `vbr cluster apply` file: `[[network]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplyFile {
    #[serde(default)]
    pub(crate) network: Vec<NetworkDef>,
}
