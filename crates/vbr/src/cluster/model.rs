//! What cluster mode keeps in etcd, under `/vbridge/`: the keys, the records' JSON
//! shapes, a network definition's rules, and [`View`], this node's picture of it all,
//! built from a full read and kept current by the watch. A value in a bad shape
//! (written by someone else) is set aside with its reason, never applied.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::etcd::{Event, Kv};

pub(crate) const PREFIX: &str = "/vbridge/";

pub(crate) fn node_key(name: &str) -> String {
    format!("{PREFIX}nodes/{name}")
}
pub(crate) fn network_key(name: &str) -> String {
    format!("{PREFIX}networks/{name}")
}
/// Which network holds a VNI: only one may (a txn creates it with the network).
pub(crate) fn vni_key(vni: u32) -> String {
    format!("{PREFIX}vni/{vni}")
}
pub(crate) fn mac_key(network: &str, mac: &str) -> String {
    format!("{PREFIX}macs/{network}/{mac}")
}
pub(crate) fn ip_prefix(network: &str) -> String {
    format!("{PREFIX}ipam/{network}/")
}
pub(crate) fn ip_key(network: &str, ip: Ipv4Addr) -> String {
    format!("{}{ip}", ip_prefix(network))
}

/// A node, under its lease: gone from etcd when it stops renewing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    pub(crate) name: String,
    /// Its VTEP: the underlay address its tunnels send from.
    pub(crate) underlay: Ipv4Addr,
}

/// A MAC address on a node's local port, under that node's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MacRecord {
    pub(crate) node: String,
    pub(crate) vtep: Ipv4Addr,
}

/// An address given to a namespace on some node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Allocation {
    pub(crate) node: String,
    pub(crate) netns: String,
}

/// A range of addresses, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Range {
    pub(crate) start: Ipv4Addr,
    pub(crate) end: Ipv4Addr,
}

/// A network of the cluster: a bridge of its name on every node, joined by VXLAN `vni`.
/// Read from etcd leniently (fields a newer vbridge adds are ignored); `cluster apply`
/// files are read strictly (see [`super::ApplyFile`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetworkDef {
    pub(crate) name: String,
    pub(crate) vni: u32,
    pub(crate) subnet: Ipv4Net,
    /// The default route of namespaces connected to it (a router the user provides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) gateway: Option<Ipv4Addr>,
    /// Where namespaces' addresses come from (default: the whole subnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) dhcp: Option<Range>,
}

impl NetworkDef {
    /// The definition's own rules: a bridge name, a VNI, a gateway and range in the
    /// subnet.
    pub(crate) fn check(&self) -> Result<(), String> {
        let n = &self.name;
        crate::names::check_ifname(n).map_err(|e| format!("network {n:?}: {e}"))?;
        if !(1..=vbridge_host::MAX_VNI).contains(&self.vni) {
            return Err(format!(
                "network {n}: vni {}: use 1..={}",
                self.vni,
                vbridge_host::MAX_VNI
            ));
        }
        if self.subnet != self.subnet.trunc() || self.subnet.prefix_len() > 30 {
            return Err(format!(
                "network {n}: subnet {}: a network address with a prefix of /30 or shorter (e.g. {})",
                self.subnet,
                self.subnet.trunc()
            ));
        }
        let usable = |a: Ipv4Addr| {
            self.subnet.contains(&a) && a != self.subnet.network() && a != self.subnet.broadcast()
        };
        if let Some(g) = self.gateway.filter(|g| !usable(*g)) {
            return Err(format!(
                "network {n}: gateway {g} is not a host address of {}",
                self.subnet
            ));
        }
        if let Some(r) = self.dhcp {
            if !usable(r.start) || !usable(r.end) || r.start > r.end {
                return Err(format!(
                    "network {n}: dhcp range {}-{} must be host addresses of {}, start first",
                    r.start, r.end, self.subnet
                ));
            }
        }
        Ok(())
    }

    /// The addresses namespaces may get, in order (the gateway left out).
    pub(crate) fn pool(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let (lo, hi) = match self.dhcp {
            Some(r) => (u32::from(r.start), u32::from(r.end)),
            None => (
                u32::from(self.subnet.network()) + 1,
                u32::from(self.subnet.broadcast()) - 1,
            ),
        };
        (lo..=hi)
            .map(Ipv4Addr::from)
            .filter(move |a| Some(*a) != self.gateway)
    }

    /// The VXLAN port's (and netdev's) name on each node.
    pub(crate) fn vxlan_port(&self) -> String {
        format!("vx{}", self.vni)
    }
}

/// Why a set of definitions cannot stand together: a name twice, a VNI or subnet two
/// networks share.
pub(crate) fn check_together<'a>(
    defs: impl IntoIterator<Item = &'a NetworkDef>,
) -> Result<(), String> {
    let defs: Vec<&NetworkDef> = defs.into_iter().collect();
    for (i, a) in defs.iter().enumerate() {
        for b in &defs[i + 1..] {
            if a.name == b.name {
                return Err(format!("network {} is defined twice", a.name));
            }
            if a.vni == b.vni {
                return Err(format!(
                    "networks {} and {} both use vni {}",
                    a.name, b.name, a.vni
                ));
            }
            if a.subnet.contains(&b.subnet.network()) || b.subnet.contains(&a.subnet.network()) {
                return Err(format!(
                    "networks {} ({}) and {} ({}) overlap",
                    a.name, a.subnet, b.name, b.subnet
                ));
            }
        }
    }
    Ok(())
}

/// This node's picture of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct View {
    pub(crate) nodes: BTreeMap<String, NodeRecord>,
    pub(crate) networks: BTreeMap<String, NetworkDef>,
    /// (network, MAC as `MacAddr` prints it) → whose it is.
    pub(crate) macs: BTreeMap<(String, String), MacRecord>,
    /// Keys whose value is in a bad shape, and why.
    pub(crate) bad: BTreeMap<String, String>,
}

impl View {
    /// The view a full read gives.
    pub(crate) fn from_kvs(kvs: Vec<Kv>) -> View {
        let mut v = View::default();
        for kv in kvs {
            v.apply(Event::Put(kv));
        }
        v
    }

    /// Takes in one change. A value in a bad shape is set aside with its reason and
    /// changes nothing: what the key held before stays in use.
    pub(crate) fn apply(&mut self, e: Event) {
        let (key, value) = match e {
            Event::Put(kv) if kv.key.as_bytes() != kv.raw => {
                self.bad.insert(kv.key, "a key that is not UTF-8".into());
                return;
            }
            Event::Put(kv) => (kv.key, Some(kv.value)),
            Event::Delete(k) => (k, None),
        };
        self.bad.remove(&key);
        let Some(rest) = key.strip_prefix(PREFIX) else {
            return;
        };
        let (kind, name) = rest.split_once('/').unwrap_or((rest, ""));
        let is_put = value.is_some();
        let bad = match kind {
            "nodes" => put_or_remove(&mut self.nodes, name.to_owned(), value, |r: &NodeRecord| {
                r.name == name && !r.underlay.is_unspecified() && !r.underlay.is_multicast()
            }),
            "networks" => put_or_remove(
                &mut self.networks,
                name.to_owned(),
                value,
                |d: &NetworkDef| d.name == name && d.check().is_ok(),
            ),
            "macs" => match name.split_once('/') {
                Some((net, mac)) => match mac.parse::<vbridge_core::MacAddr>() {
                    // One spelling of each MAC: the one the switch prints.
                    Ok(m) if m.is_unicast() && m.to_string() == mac => put_or_remove(
                        &mut self.macs,
                        (net.to_owned(), mac.to_owned()),
                        value,
                        |_: &MacRecord| true,
                    ),
                    _ => Some("not a unicast MAC in lower-case colon form".to_owned()),
                },
                None => Some("not /vbridge/macs/NETWORK/MAC".to_owned()),
            },
            // Read where they are used (allocation, uniqueness).
            "vni" | "ipam" => None,
            _ => Some("not a key vbridge uses".to_owned()),
        };
        if let Some(why) = bad.filter(|_| is_put) {
            self.bad.insert(key, why);
        }
    }

    /// The other live nodes' VTEPs.
    pub(crate) fn remotes(&self, me: &str) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self
            .nodes
            .values()
            .filter(|n| n.name != me)
            .map(|n| n.underlay)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The MACs of `network` on other live nodes, at the VTEP the node registered.
    pub(crate) fn remote_macs(&self, network: &str, me: &str) -> BTreeMap<String, Ipv4Addr> {
        let from = (network.to_owned(), String::new());
        self.macs
            .range(from..)
            .take_while(|((net, _), _)| net == network)
            .filter(|(_, r)| r.node != me)
            .filter_map(|((_, mac), r)| Some((mac.clone(), self.nodes.get(&r.node)?.underlay)))
            .collect()
    }
}

/// Puts the parsed `value` at `k` (or removes it when `None`); a value that does not
/// parse or fails `ok` is refused with its reason, and what was there stays.
fn put_or_remove<K: Ord, T: serde::de::DeserializeOwned>(
    map: &mut BTreeMap<K, T>,
    k: K,
    value: Option<Vec<u8>>,
    ok: impl Fn(&T) -> bool,
) -> Option<String> {
    let Some(value) = value else {
        map.remove(&k);
        return None;
    };
    match serde_json::from_slice::<T>(&value) {
        Ok(t) if ok(&t) => {
            map.insert(k, t);
            None
        }
        Ok(_) => Some("its content does not match its key or breaks the rules".into()),
        Err(e) => Some(format!("not JSON of the expected shape: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, vni: u32, subnet: &str) -> NetworkDef {
        NetworkDef {
            name: name.into(),
            vni,
            subnet: subnet.parse().unwrap(),
            gateway: None,
            dhcp: None,
        }
    }

    fn put(key: &str, value: &str) -> Event {
        Event::Put(Kv {
            key: key.into(),
            raw: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        })
    }

    #[test]
    fn definitions_are_checked() {
        assert!(net("blue", 100, "10.1.0.0/24").check().is_ok());
        assert!(net("blue", 0, "10.1.0.0/24").check().is_err());
        assert!(net("blue", 1 << 24, "10.1.0.0/24").check().is_err());
        assert!(net("blue", 100, "10.1.0.5/24").check().is_err());
        assert!(
            net("a-name-far-too-long", 100, "10.1.0.0/24")
                .check()
                .is_err()
        );
        let mut g = net("blue", 100, "10.1.0.0/24");
        g.gateway = Some("10.1.0.255".parse().unwrap());
        assert!(g.check().is_err());
        g.gateway = Some("10.1.0.1".parse().unwrap());
        g.dhcp = Some(Range {
            start: "10.1.0.20".parse().unwrap(),
            end: "10.1.0.10".parse().unwrap(),
        });
        assert!(g.check().is_err());
        g.dhcp = Some(Range {
            start: "10.1.0.1".parse().unwrap(),
            end: "10.1.0.3".parse().unwrap(),
        });
        assert!(g.check().is_ok());
        let pool: Vec<String> = g.pool().map(|a| a.to_string()).collect();
        assert_eq!(pool, ["10.1.0.2", "10.1.0.3"]);
        assert_eq!(net("n", 1, "10.2.0.0/30").pool().count(), 2);
    }

    #[test]
    fn networks_may_not_share_a_vni_or_addresses() {
        let a = net("a", 1, "10.1.0.0/24");
        assert!(check_together([&a, &net("b", 2, "10.2.0.0/24")]).is_ok());
        assert!(check_together([&a, &net("b", 1, "10.2.0.0/24")]).is_err());
        assert!(check_together([&a, &net("b", 2, "10.1.0.128/25")]).is_err());
        assert!(check_together([&a, &net("b", 2, "10.0.0.0/8")]).is_err());
        assert!(check_together([&a, &net("a", 2, "10.2.0.0/24")]).is_err());
    }

    #[test]
    fn the_view_follows_events_and_sets_bad_values_aside() {
        let mut v = View::default();
        v.apply(put(
            "/vbridge/nodes/n1",
            r#"{"name":"n1","underlay":"10.0.0.1"}"#,
        ));
        v.apply(put(
            "/vbridge/nodes/n2",
            r#"{"name":"n2","underlay":"10.0.0.2"}"#,
        ));
        v.apply(put(
            "/vbridge/networks/blue",
            r#"{"name":"blue","vni":7,"subnet":"10.9.0.0/24"}"#,
        ));
        v.apply(put(
            "/vbridge/macs/blue/02:00:00:00:00:02",
            r#"{"node":"n2","vtep":"10.0.0.2"}"#,
        ));
        v.apply(put(
            "/vbridge/macs/blue/02:00:00:00:00:01",
            r#"{"node":"n1","vtep":"10.0.0.1"}"#,
        ));
        assert_eq!(v.remotes("n1"), ["10.0.0.2".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(v.remote_macs("blue", "n1").len(), 1);
        // Someone else's writing.
        v.apply(put("/vbridge/nodes/n3", "{not json"));
        v.apply(put(
            "/vbridge/networks/red",
            r#"{"name":"green","vni":8,"subnet":"10.8.0.0/24"}"#,
        ));
        v.apply(put("/vbridge/macs/blue/zz", "{}"));
        v.apply(put("/vbridge/macs/blue/02:00:00:00:00:0A", "{}"));
        v.apply(put("/vbridge/macs/blue/01:00:5e:00:00:01", "{}"));
        v.apply(put("/vbridge/other", "x"));
        assert_eq!(v.bad.len(), 6, "{:?}", v.bad);
        assert_eq!(v.nodes.len(), 2);
        assert_eq!(v.networks.len(), 1);
        // A bad value over a good one: the good one stays in use.
        v.apply(put("/vbridge/networks/blue", r#"{"name":"blue","vni":0}"#));
        assert_eq!(v.networks["blue"].vni, 7);
        // Fields a newer vbridge adds are no reason to drop a network.
        v.apply(put(
            "/vbridge/networks/blue",
            r#"{"name":"blue","vni":7,"subnet":"10.9.0.0/24","mtu":9000}"#,
        ));
        assert!(!v.bad.contains_key("/vbridge/networks/blue"));
        // A MAC's VTEP is its node's, whatever its record says.
        v.apply(put(
            "/vbridge/macs/blue/02:00:00:00:00:03",
            r#"{"node":"n2","vtep":"10.9.9.9"}"#,
        ));
        assert_eq!(
            v.remote_macs("blue", "n1")["02:00:00:00:00:03"],
            "10.0.0.2".parse::<Ipv4Addr>().unwrap()
        );
        // A node gone takes its MACs out of use.
        v.apply(Event::Delete("/vbridge/nodes/n2".into()));
        assert!(v.remotes("n1").is_empty());
        assert!(v.remote_macs("blue", "n1").is_empty());
        // A bad value made good again; a deleted bad one is no longer listed.
        v.apply(put(
            "/vbridge/nodes/n3",
            r#"{"name":"n3","underlay":"10.0.0.3"}"#,
        ));
        v.apply(Event::Delete("/vbridge/other".into()));
        assert_eq!(v.bad.len(), 4, "{:?}", v.bad);
        assert_eq!(v.nodes.len(), 2);
    }
}
