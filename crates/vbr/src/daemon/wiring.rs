//! Namespaces on bridges: `vbr netns`, `vbr connect`/`disconnect`, and `vbr up`/`down`,
//! which apply a topology plan idempotently and record what they made so `down` removes
//! exactly that.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use vbridge_core::MacAddr;
use vbridge_datapath::{Connection, Engine, PortKind, PortSpec, VlanCfg};
use vbridge_host::{Netlink, nat, netns, sysctl};

use crate::topology::{Plan, parse_cidr};

type Outcome = Result<Value, String>;

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(&format!(": {cs}"));
        }
        src = c.source();
    }
    s
}

/// What one `vbr up` made, so `vbr down` removes exactly that.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Made {
    pub(crate) bridges: Vec<String>,
    pub(crate) addresses: Vec<(String, String)>,
    pub(crate) ports: Vec<(String, String)>,
    pub(crate) netns: Vec<String>,
    /// (bridge, port) of namespace connections.
    pub(crate) connections: Vec<(String, String)>,
    /// Bridges whose NAT table `up` made.
    #[serde(default)]
    pub(crate) nat: Vec<String>,
    /// `net.ipv4.ip_forward` before `up` turned it on, if it did.
    #[serde(default)]
    pub(crate) ip_forward_was: Option<String>,
}

impl Made {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Made::default()
    }

    /// Adds what `other` made.
    pub(crate) fn merge(&mut self, other: Made) {
        fn add<T: PartialEq>(v: &mut Vec<T>, more: Vec<T>) {
            for x in more {
                if !v.contains(&x) {
                    v.push(x);
                }
            }
        }
        add(&mut self.bridges, other.bridges);
        add(&mut self.addresses, other.addresses);
        add(&mut self.ports, other.ports);
        add(&mut self.netns, other.netns);
        add(&mut self.connections, other.connections);
        add(&mut self.nat, other.nat);
        if self.ip_forward_was.is_none() {
            self.ip_forward_was = other.ip_forward_was;
        }
    }
}

/// Options of `vbr connect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectArgs {
    pub(crate) netns: String,
    pub(crate) bridge: String,
    pub(crate) ifname: Option<String>,
    #[serde(default)]
    pub(crate) ips: Vec<String>,
    pub(crate) gateway: Option<String>,
    pub(crate) mac: Option<String>,
    #[serde(default)]
    pub(crate) veth: bool,
    /// More routes inside the namespace: (destination CIDR, next hop).
    #[serde(default)]
    pub(crate) routes: Vec<(String, String)>,
}

pub(crate) fn netns_add(name: &str) -> Outcome {
    netns::add(name).map_err(|e| chain(&e))?;
    Ok(json!({ "netns": name }))
}

pub(crate) fn netns_del(e: &mut Engine, name: &str) -> Outcome {
    netns::check_name(name).map_err(|x| chain(&x))?;
    // Ports connecting it go first (their TAPs live in it).
    for b in e.bridge_names() {
        let ports = e
            .bridge(&b)
            .map(|rt| rt.connected(name))
            .unwrap_or_default();
        for p in ports {
            let _ = e.del_port(&b, &p);
        }
    }
    netns::del(name).map_err(|e| chain(&e))?;
    Ok(json!({ "netns": name }))
}

pub(crate) fn netns_list() -> Outcome {
    Ok(json!(netns::list().map_err(|e| chain(&e))?))
}

/// `vbr connect`: a port for namespace `a.netns` on `a.bridge`.
pub(crate) fn connect(e: &mut Engine, a: &ConnectArgs) -> Outcome {
    e.bridge(&a.bridge).map_err(|x| chain(&x))?;
    let mut addresses = Vec::new();
    for ip in &a.ips {
        let (addr, p) = parse_cidr(ip).map_err(|m| format!("--ip {ip}: {m}"))?;
        addresses.push(format!("{addr}/{p}"));
    }
    if let Some(g) = &a.gateway {
        g.parse::<IpAddr>()
            .map_err(|_| format!("--gateway {g:?} is not an IP address"))?;
    }
    let mut routes = Vec::new();
    for (to, via) in &a.routes {
        routes.push(
            crate::topology::check_route(to, via)
                .map_err(|m| format!("route {to} via {via}: {m}"))?,
        );
    }
    if let Some(m) = &a.mac {
        let mac = m.parse::<MacAddr>().map_err(|x| x.to_string())?;
        if !mac.is_unicast() {
            return Err(format!("--mac {m} must be a unicast address"));
        }
    }
    if let Err(x) = netns::open(&a.netns) {
        return Err(
            if x.kind() == vbridge_host::ErrorKind::NotFound && a.netns.contains('/') {
                format!("namespace path {} does not exist", a.netns)
            } else if x.kind() == vbridge_host::ErrorKind::NotFound {
                format!(
                    "network namespace {} does not exist (create it with `vbr netns add {}`, or give a path like /proc/PID/ns/net)",
                    a.netns, a.netns
                )
            } else {
                chain(&x)
            },
        );
    }
    let ifname = a.ifname.clone().unwrap_or_else(|| "eth0".into());
    crate::topology::check_ifname(&ifname)?;
    placement(e, &a.netns, &ifname, None)?;
    let conn = Connection {
        netns: a.netns.clone(),
        ifname,
        addresses,
        gateway: a.gateway.clone(),
        routes,
        mac: a.mac.clone(),
        veth: a.veth,
        netns_id: if a.netns.contains('/') {
            vbridge_datapath::netns_identity(&a.netns)
        } else {
            None
        },
    };
    let name = conn.port_name();
    let kind = if a.veth {
        PortKind::Interface
    } else {
        PortKind::Tap
    };
    let mut spec = PortSpec::new(&name, kind);
    spec.conn = Some(conn);
    let id = e.add_port(&a.bridge, &spec, false).map_err(|x| chain(&x))?;
    Ok(json!({ "bridge": a.bridge, "port": name, "port_no": id.0, "netns": a.netns }))
}

/// Where namespace `netns`'s interface `ifname` stands: `Ok(None)` if it may be connected
/// (to `bridge`; to any bridge for `None`), `Ok(Some(port))` if it is connected to
/// `bridge` already (`vbr up` again), an error if it is connected elsewhere (to any
/// bridge, for `None`) or its port name is taken by another port. An existing connection
/// is found by namespace and interface, whatever its port is called (an older vbridge
/// may have named it differently).
fn placement(
    e: &Engine,
    netns: &str,
    ifname: &str,
    bridge: Option<&str>,
) -> Result<Option<String>, String> {
    let existing = e.bridge_names().into_iter().find_map(|b| {
        let rt = e.bridge(&b).ok()?;
        let port = rt
            .connected(netns)
            .into_iter()
            .find(|p| rt.connection(p).is_some_and(|c| c.ifname == ifname))?;
        Some((b, port))
    });
    if let Some((b, port)) = existing {
        return match bridge {
            Some(want) if want == b => Ok(Some(port)),
            Some(want) => Err(format!(
                "{netns} is already connected to bridge {b} as {port}, not to {want}"
            )),
            None => Err(format!(
                "{netns} is already connected to bridge {b} as port {port} (interface {ifname})"
            )),
        };
    }
    let name = vbridge_datapath::port_name(netns, ifname);
    match e.find_port(&name) {
        Some((b, _)) => Err(format!(
            "{netns}'s interface {ifname} would be port {name}, which bridge {b} already has; give it another --ifname"
        )),
        None => Ok(None),
    }
}

/// `vbr disconnect NS BRIDGE`.
pub(crate) fn disconnect(e: &mut Engine, ns: &str, bridge: &str) -> Outcome {
    let ports = e.bridge(bridge).map_err(|x| chain(&x))?.connected(ns);
    if ports.is_empty() {
        return Err(format!(
            "{ns} is not connected to bridge {bridge} (see `vbr show {bridge}`)"
        ));
    }
    for p in &ports {
        e.del_port(bridge, p).map_err(|x| chain(&x))?;
    }
    Ok(json!({ "bridge": bridge, "ports": ports }))
}

/// Applies a plan, noting in `made` what it made (nothing when everything already
/// existed). On error, `made` still lists what was made before it.
pub(crate) fn up(e: &mut Engine, plan: &Plan, made: &mut Made) -> Result<(), String> {
    preflight(e, plan)?;
    let mut nl = Netlink::new().map_err(|x| chain(&x))?;
    for b in &plan.bridges {
        if e.bridge(&b.name).is_err() {
            super::handler::apply_one(
                e,
                crate::api::Request::Addbr {
                    bridge: b.name.clone(),
                },
            )?;
            made.bridges.push(b.name.clone());
        }
        let have = nl.addresses(&b.name).map_err(|x| chain(&x))?;
        for a in &b.addresses {
            let (ip, p) = parse_cidr(a)?;
            if !have.contains(&(ip, p)) {
                nl.add_address(&b.name, ip, p).map_err(|x| chain(&x))?;
                made.addresses.push((b.name.clone(), a.clone()));
            }
        }
        nl.set_up(&b.name).map_err(|x| chain(&x))?;
        if let Some(mode) = b.stp {
            super::handler::apply_one(
                e,
                crate::api::Request::Stp {
                    bridge: b.name.clone(),
                    mode,
                },
            )?;
        }
        if let Some(s) = b.ageing {
            super::handler::apply_one(
                e,
                crate::api::Request::Setageing {
                    bridge: b.name.clone(),
                    secs: s,
                },
            )?;
        }
        if b.nat {
            nat_up(&b.name, &b.addresses, made)?;
        }
        for (port, vlan) in &b.ports {
            if e.find_port(port).is_none() {
                super::handler::apply_one(
                    e,
                    crate::api::Request::Addif {
                        bridge: b.name.clone(),
                        port: port.clone(),
                    },
                )?;
                made.ports.push((b.name.clone(), port.clone()));
            }
            set_vlan(e, port, vlan.clone())?;
        }
    }
    for n in &plan.namespaces {
        if !n.name.contains('/') && !netns::exists(&n.name) {
            netns::add(&n.name).map_err(|x| chain(&x))?;
            made.netns.push(n.name.clone());
        }
        let port = match placement(e, &n.name, &n.ifname, Some(&n.bridge))? {
            Some(port) => port,
            None => {
                let args = ConnectArgs {
                    netns: n.name.clone(),
                    bridge: n.bridge.clone(),
                    ifname: Some(n.ifname.clone()),
                    ips: n.addresses.clone(),
                    gateway: n.gateway.clone(),
                    mac: n.mac.clone(),
                    veth: n.veth,
                    routes: n.routes.clone(),
                };
                connect(e, &args)?;
                let port = vbridge_datapath::port_name(&n.name, &n.ifname);
                made.connections.push((n.bridge.clone(), port.clone()));
                port
            }
        };
        set_vlan(e, &port, n.access.map(|vid| VlanCfg::Access { vid }))?;
    }
    e.sync();
    Ok(())
}

/// What `up` can find wrong before it changes anything: NAT without a working `nft`,
/// ports that are another bridge's or no network interface here, namespace paths that
/// lead nowhere, connections that exist to another bridge or whose port name is taken.
fn preflight(e: &Engine, plan: &Plan) -> Result<(), String> {
    let mut nl = Netlink::new().map_err(|x| chain(&x))?;
    for b in &plan.bridges {
        if b.nat {
            nat::exists(&b.name).map_err(|x| {
                format!(
                    "bridge {}: nat: {} (NAT needs nftables' `nft` program)",
                    b.name,
                    chain(&x)
                )
            })?;
        }
        for (port, _) in &b.ports {
            match e.find_port(port) {
                Some((other, _)) if other != b.name => {
                    return Err(format!(
                        "{port} is a port of bridge {other}, not of {}",
                        b.name
                    ));
                }
                Some(_) => {}
                None if !nl.link_exists(port).map_err(|x| chain(&x))? => {
                    return Err(format!(
                        "bridge {}: port {port}: no such network interface",
                        b.name
                    ));
                }
                None => {}
            }
        }
    }
    for n in &plan.namespaces {
        if n.name.contains('/') {
            netns::open(&n.name).map_err(|x| chain(&x))?;
        }
        placement(e, &n.name, &n.ifname, Some(&n.bridge))?;
    }
    Ok(())
}

/// Forwarding on and the bridge's IPv4 subnets masqueraded (its NAT table is rewritten
/// each time, so applying again changes nothing).
fn nat_up(bridge: &str, addresses: &[String], made: &mut Made) -> Result<(), String> {
    let subnets: Vec<(std::net::Ipv4Addr, u8)> = addresses
        .iter()
        .filter_map(|a| match parse_cidr(a) {
            Ok((IpAddr::V4(ip), p)) => Some((ip, p)),
            _ => None,
        })
        .collect();
    if subnets.is_empty() {
        return Err(format!(
            "bridge {bridge}: nat needs an IPv4 address on the bridge"
        ));
    }
    let existed = nat::exists(bridge).map_err(|x| chain(&x))?;
    nat::masquerade(bridge, &subnets).map_err(|x| chain(&x))?;
    if !existed {
        made.nat.push(bridge.to_owned());
    }
    let fwd = sysctl::get("net.ipv4.ip_forward").map_err(|x| chain(&x))?;
    if fwd.trim() != "1" {
        sysctl::set("net.ipv4.ip_forward", "1").map_err(|x| chain(&x))?;
        made.ip_forward_was = Some(fwd.trim().to_owned());
    }
    Ok(())
}

fn set_vlan(e: &mut Engine, port: &str, vlan: Option<VlanCfg>) -> Result<(), String> {
    if vlan.is_some() {
        super::handler::apply_one(
            e,
            crate::api::Request::LinkSet {
                port: port.to_owned(),
                flags: Default::default(),
                vlan,
            },
        )?;
    }
    Ok(())
}

/// Removes what `made` lists, newest first; returns what could not be removed.
pub(crate) fn down(e: &mut Engine, made: &Made) -> Vec<String> {
    let mut problems = Vec::new();
    let mut note = |r: Result<(), String>| {
        if let Err(m) = r {
            problems.push(m);
        }
    };
    for (b, p) in made.connections.iter().chain(made.ports.iter()).rev() {
        if e.bridge(b).ok().and_then(|rt| rt.port_id(p)).is_some() {
            note(e.del_port(b, p).map_err(|x| chain(&x)));
        }
    }
    if let Ok(mut nl) = Netlink::new() {
        for (b, a) in made.addresses.iter().rev() {
            if let (Ok((ip, p)), true) = (parse_cidr(a), e.bridge(b).is_ok()) {
                note(nl.del_address(b, ip, p).map_err(|x| chain(&x)));
            }
        }
    }
    for b in made.nat.iter().rev() {
        note(nat::remove(b).map_err(|x| chain(&x)));
    }
    if let Some(was) = &made.ip_forward_was {
        note(sysctl::set("net.ipv4.ip_forward", was).map_err(|x| chain(&x)));
    }
    for b in made.bridges.iter().rev() {
        if e.bridge(b).is_ok() {
            note(e.del_bridge(b).map_err(|x| chain(&x)));
        }
    }
    for n in made.netns.iter().rev() {
        if netns::exists(n) {
            note(netns::del(n).map_err(|x| chain(&x)));
        }
    }
    e.sync();
    problems
}
