//! Namespaces on bridges: `vbr netns`, `vbr connect`/`disconnect`, and `vbr up`/`down`,
//! which apply a topology plan idempotently and record what they made so `down` removes
//! exactly that.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vbridge_core::{BridgeConfig, MacAddr};
use vbridge_datapath::{Change, Connection, Datapath, PortKind, PortSpec, VlanCfg};
use vbridge_host::{Netlink, nat, netns, sysctl};

use super::errors::{dp, host};
use super::handler::Outcome;
use crate::api::{ApiError, Connected, Done, ErrorKind};
use crate::topology::{Plan, parse_cidr};

fn ok(v: impl Serialize) -> Outcome {
    serde_json::to_value(v).map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::invalid(m)
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
    /// A TAP held by vbridge instead of a veth pair (the default).
    #[serde(default)]
    pub(crate) tap: bool,
    /// More routes inside the namespace: (destination CIDR, next hop).
    #[serde(default)]
    pub(crate) routes: Vec<(String, String)>,
}

pub(crate) fn netns_add(name: &str) -> Outcome {
    crate::names::check_netns(name).map_err(invalid)?;
    netns::add(name).map_err(host)?;
    ok(Done {})
}

pub(crate) fn netns_del(d: &Datapath, name: &str) -> Outcome {
    netns::check_name(name).map_err(host)?;
    // Ports connecting it go first (their TAPs live in it).
    for (bridge, port, c) in d.connections().map_err(dp)? {
        if c.netns == name {
            let _ = d.del_port(&bridge, &port);
        }
    }
    netns::del(name).map_err(host)?;
    ok(Done {})
}

pub(crate) fn netns_list() -> Outcome {
    ok(netns::list().map_err(host)?)
}

/// `vbr connect`: a port for namespace `a.netns` on `a.bridge`.
pub(crate) fn connect(d: &Datapath, a: &ConnectArgs) -> Result<Connected, ApiError> {
    d.bridges(Some(&a.bridge)).map_err(dp)?;
    crate::names::check_netns(&a.netns).map_err(invalid)?;
    let mut addresses = Vec::new();
    for ip in &a.ips {
        let (addr, p) = parse_cidr(ip).map_err(|m| invalid(format!("--ip {ip}: {m}")))?;
        addresses.push(format!("{addr}/{p}"));
    }
    if let Some(g) = &a.gateway {
        g.parse::<IpAddr>()
            .map_err(|_| invalid(format!("--gateway {g:?} is not an IP address")))?;
    }
    let mut routes = Vec::new();
    for (to, via) in &a.routes {
        routes.push(
            crate::topology::check_route(to, via)
                .map_err(|m| invalid(format!("route {to} via {via}: {m}")))?,
        );
    }
    if let Some(m) = &a.mac {
        let mac = m
            .parse::<MacAddr>()
            .map_err(|x| invalid(format!("--mac {m:?}: {x}")))?;
        if !mac.is_unicast() {
            return Err(invalid(format!("--mac {m} must be a unicast address")));
        }
    }
    if let Err(x) = netns::open(&a.netns) {
        return Err(
            if x.kind() == vbridge_host::ErrorKind::NotFound && a.netns.contains('/') {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!("namespace path {} does not exist", a.netns),
                )
            } else if x.kind() == vbridge_host::ErrorKind::NotFound {
                ApiError::new(
                    ErrorKind::NotFound,
                    format!(
                        "network namespace {} does not exist (create it with `vbr netns add {}`, or give a path like /proc/PID/ns/net)",
                        a.netns, a.netns
                    ),
                )
            } else {
                host(x)
            },
        );
    }
    let ifname = a.ifname.clone().unwrap_or_else(|| "eth0".into());
    crate::names::check_ifname(&ifname).map_err(invalid)?;
    placement(d, &a.netns, &ifname, None)?;
    let conn = Connection {
        netns: a.netns.clone(),
        ifname,
        addresses,
        gateway: a.gateway.clone(),
        routes,
        mac: a.mac.clone(),
        veth: !a.tap,
        netns_id: if a.netns.contains('/') {
            vbridge_datapath::netns_identity(&a.netns)
        } else {
            None
        },
        ifindex: None,
    };
    let name = conn.port_name();
    let kind = if a.tap {
        PortKind::Tap
    } else {
        PortKind::Interface
    };
    let mut spec = PortSpec::new(&name, kind);
    spec.conn = Some(conn);
    let id = d.add_port(&a.bridge, &spec, false).map_err(dp)?;
    Ok(Connected {
        bridge: a.bridge.clone(),
        port: name,
        port_no: id.0,
        netns: a.netns.clone(),
    })
}

/// Where namespace `netns`'s interface `ifname` stands: `Ok(None)` if it may be connected
/// (to `bridge`; to any bridge for `None`), `Ok(Some(port))` if it is connected to
/// `bridge` already (`vbr up` again), an error if it is connected elsewhere (to any
/// bridge, for `None`) or its port name is taken by another port. An existing connection
/// is found by namespace and interface, whatever its port is called (an older vbridge
/// may have named it differently).
fn placement(
    d: &Datapath,
    netns: &str,
    ifname: &str,
    bridge: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let existing = d
        .connections()
        .map_err(dp)?
        .into_iter()
        .find(|(_, _, c)| c.netns == netns && c.ifname == ifname);
    if let Some((b, port, _)) = existing {
        return match bridge {
            Some(want) if want == b => Ok(Some(port)),
            Some(want) => Err(ApiError::new(
                ErrorKind::Conflict,
                format!("{netns} is already connected to bridge {b} as {port}, not to {want}"),
            )),
            None => Err(ApiError::new(
                ErrorKind::AlreadyExists,
                format!(
                    "{netns} is already connected to bridge {b} as port {port} (interface {ifname})"
                ),
            )),
        };
    }
    let name = vbridge_datapath::port_name(netns, ifname);
    match d.find_port(&name).map_err(dp)? {
        Some((b, _)) => Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "{netns}'s interface {ifname} would be port {name}, which bridge {b} already has; give it another --ifname"
            ),
        )),
        None => Ok(None),
    }
}

/// `vbr disconnect NS BRIDGE`.
pub(crate) fn disconnect(d: &Datapath, ns: &str, bridge: &str) -> Outcome {
    d.bridges(Some(bridge)).map_err(dp)?;
    let ports: Vec<String> = d
        .connections()
        .map_err(dp)?
        .into_iter()
        .filter(|(b, _, c)| b == bridge && c.netns == ns)
        .map(|(_, p, _)| p)
        .collect();
    if ports.is_empty() {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("{ns} is not connected to bridge {bridge} (see `vbr show {bridge}`)"),
        ));
    }
    for p in &ports {
        d.del_port(bridge, p).map_err(dp)?;
    }
    ok(Done {})
}

/// Applies a plan, noting in `made` what it made (nothing when everything already
/// existed). On error, `made` still lists what was made before it.
pub(crate) fn up(d: &Datapath, plan: &Plan, made: &mut Made) -> Result<(), ApiError> {
    preflight(d, plan)?;
    let mut nl = Netlink::new().map_err(host)?;
    for b in &plan.bridges {
        if d.bridges(Some(&b.name)).is_err() {
            crate::names::check_ifname(&b.name).map_err(invalid)?;
            d.add_bridge(&b.name, BridgeConfig::new(super::handler::random_mac()))
                .map_err(dp)?;
            made.bridges.push(b.name.clone());
        }
        let have = nl.addresses(&b.name).map_err(host)?;
        for a in &b.addresses {
            let (ip, p) = parse_cidr(a).map_err(invalid)?;
            if !have.contains(&(ip, p)) {
                nl.add_address(&b.name, ip, p).map_err(host)?;
                made.addresses.push((b.name.clone(), a.clone()));
            }
        }
        nl.set_up(&b.name).map_err(host)?;
        if let Some(mode) = b.stp {
            d.change(&b.name, Change::Stp(mode)).map_err(dp)?;
        }
        if let Some(s) = b.ageing {
            let age = std::time::Duration::try_from_secs_f64(s)
                .map_err(|_| invalid(format!("ageing {s} is not a number of seconds")))?;
            d.change(&b.name, Change::Ageing(age)).map_err(dp)?;
        }
        if b.nat {
            nat_up(&b.name, &b.addresses, made)?;
        }
        for (port, vlan) in &b.ports {
            if d.find_port(port).map_err(dp)?.is_none() {
                crate::names::check_ifname(port).map_err(invalid)?;
                d.add_port(&b.name, &PortSpec::new(port, PortKind::Interface), false)
                    .map_err(dp)?;
                made.ports.push((b.name.clone(), port.clone()));
            }
            set_vlan(d, port, vlan.clone())?;
        }
    }
    for n in &plan.namespaces {
        if !n.name.contains('/') && !netns::exists(&n.name) {
            netns::add(&n.name).map_err(host)?;
            made.netns.push(n.name.clone());
        }
        let port = match placement(d, &n.name, &n.ifname, Some(&n.bridge))? {
            Some(port) => port,
            None => {
                let args = ConnectArgs {
                    netns: n.name.clone(),
                    bridge: n.bridge.clone(),
                    ifname: Some(n.ifname.clone()),
                    ips: n.addresses.clone(),
                    gateway: n.gateway.clone(),
                    mac: n.mac.clone(),
                    tap: n.tap,
                    routes: n.routes.clone(),
                };
                let c = connect(d, &args)?;
                made.connections.push((n.bridge.clone(), c.port.clone()));
                c.port
            }
        };
        set_vlan(d, &port, n.access.map(|vid| VlanCfg::Access { vid }))?;
    }
    Ok(())
}

/// What `up` can find wrong before it changes anything: NAT without a working `nft`,
/// ports that are another bridge's or no network interface here, namespace paths that
/// lead nowhere, connections that exist to another bridge or whose port name is taken.
fn preflight(d: &Datapath, plan: &Plan) -> Result<(), ApiError> {
    let mut nl = Netlink::new().map_err(host)?;
    for b in &plan.bridges {
        if b.nat {
            nat::exists(&b.name).map_err(|x| {
                ApiError::new(
                    ErrorKind::HostFailure,
                    format!(
                        "bridge {}: nat: {} (NAT needs nftables' `nft` program)",
                        b.name,
                        super::errors::describe(&x)
                    ),
                )
            })?;
        }
        for (port, _) in &b.ports {
            match d.find_port(port).map_err(dp)? {
                Some((other, _)) if other != b.name => {
                    return Err(ApiError::new(
                        ErrorKind::Conflict,
                        format!("{port} is a port of bridge {other}, not of {}", b.name),
                    ));
                }
                Some(_) => {}
                None if !nl.link_exists(port).map_err(host)? => {
                    return Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!("bridge {}: port {port}: no such network interface", b.name),
                    ));
                }
                None => {}
            }
        }
    }
    for n in &plan.namespaces {
        if n.name.contains('/') {
            netns::open(&n.name).map_err(host)?;
        }
        placement(d, &n.name, &n.ifname, Some(&n.bridge))?;
    }
    Ok(())
}

/// Forwarding on and the bridge's IPv4 subnets masqueraded (its NAT table is rewritten
/// each time, so applying again changes nothing).
fn nat_up(bridge: &str, addresses: &[String], made: &mut Made) -> Result<(), ApiError> {
    let subnets: Vec<(std::net::Ipv4Addr, u8)> = addresses
        .iter()
        .filter_map(|a| match parse_cidr(a) {
            Ok((IpAddr::V4(ip), p)) => Some((ip, p)),
            _ => None,
        })
        .collect();
    if subnets.is_empty() {
        return Err(invalid(format!(
            "bridge {bridge}: nat needs an IPv4 address on the bridge"
        )));
    }
    let existed = nat::exists(bridge).map_err(host)?;
    nat::masquerade(bridge, &subnets).map_err(host)?;
    if !existed {
        made.nat.push(bridge.to_owned());
    }
    let fwd = sysctl::get("net.ipv4.ip_forward").map_err(host)?;
    if fwd.trim() != "1" {
        sysctl::set("net.ipv4.ip_forward", "1").map_err(host)?;
        made.ip_forward_was = Some(fwd.trim().to_owned());
    }
    Ok(())
}

fn set_vlan(d: &Datapath, port: &str, vlan: Option<VlanCfg>) -> Result<(), ApiError> {
    if vlan.is_some() {
        super::handler::link_set(d, port, Vec::new(), vlan)?;
    }
    Ok(())
}

/// Removes what `made` lists, newest first; returns what could not be removed.
pub(crate) fn down(d: &Datapath, made: &Made) -> Vec<String> {
    let mut problems = Vec::new();
    let mut note = |r: Result<(), ApiError>| {
        if let Err(m) = r {
            problems.push(m.message);
        }
    };
    let ports = d.connections().ok();
    let exists = |b: &str, p: &str| {
        d.find_port(p)
            .ok()
            .flatten()
            .is_some_and(|(bridge, _)| bridge == b)
    };
    let _ = ports;
    for (b, p) in made.connections.iter().chain(made.ports.iter()).rev() {
        if exists(b, p) {
            note(d.del_port(b, p).map_err(dp));
        }
    }
    if let Ok(mut nl) = Netlink::new() {
        for (b, a) in made.addresses.iter().rev() {
            if let (Ok((ip, p)), true) = (parse_cidr(a), d.bridges(Some(b)).is_ok()) {
                note(nl.del_address(b, ip, p).map_err(host));
            }
        }
    }
    for b in made.nat.iter().rev() {
        note(nat::remove(b).map_err(host));
    }
    if let Some(was) = &made.ip_forward_was {
        note(sysctl::set("net.ipv4.ip_forward", was).map_err(host));
    }
    for b in made.bridges.iter().rev() {
        if d.bridges(Some(b)).is_ok() {
            note(d.del_bridge(b).map_err(dp));
        }
    }
    for n in made.netns.iter().rev() {
        if netns::exists(n) {
            note(netns::del(n).map_err(host));
        }
    }
    problems
}
