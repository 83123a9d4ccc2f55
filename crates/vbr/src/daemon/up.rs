//! `vbr up` and `vbr down`: a topology plan applied idempotently, each object recorded in
//! the ledger *before* it is made (a bridge, a port, a namespace, an address, a NAT
//! table, `ip_forward`), under its topology and the run that makes it. A run that fails
//! is undone at once; one cut short by a crash is undone at the next start; one that
//! finishes is committed, and `vbr down` later removes exactly what the topology's runs
//! made, newest first. Objects that existed before are never recorded, so never removed.

use std::collections::BTreeSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use vbridge_datapath::{Change, Datapath, DpError, PortKind, PortSpec, VlanCfg};
use vbridge_host::ledger::{self, Ledger, Object, Owner, Record};
use vbridge_host::{Netlink, nat, netns};

use super::dhcp::Dhcp;
use super::errors::{describe, dp, host};
use super::nat::Nat;
use super::wiring::{ConnectArgs, connect, placement};
use crate::api::{ApiError, ErrorKind, UpDone};
use crate::topology::{BridgePlan, PatchPlan, Plan, VlanPlan};

use super::nat::IP_FORWARD;

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::invalid(m)
}

/// One run of `vbr up`: records what it is about to make.
struct Run<'a> {
    ledger: &'a Ledger,
    owner: Owner,
    made_any: bool,
}

impl Run<'_> {
    /// Records `object` before it is made; `false` if something else recorded it already
    /// (it is then not this run's to undo).
    fn record(&mut self, object: Object, original: Option<String>) -> Result<bool, ApiError> {
        let fresh = self
            .ledger
            .put(self.owner.clone(), object, original)
            .map_err(host)?;
        self.made_any |= fresh;
        Ok(fresh)
    }
}

/// `vbr up`: applies `plan` as topology `name`. On failure what this run made is taken
/// away again before the error is returned.
pub(crate) fn up(
    d: &Datapath,
    dhcp: &Dhcp,
    nat: &Nat,
    name: &str,
    plan: &Plan,
) -> Result<UpDone, ApiError> {
    preflight(d, name, plan)?;
    let ledger = d.ledger();
    let run = ledger.new_run();
    let owner = Owner::Topology {
        name: name.to_owned(),
        run: Some(run),
    };
    let mut r = Run {
        ledger,
        owner: owner.clone(),
        made_any: false,
    };
    match apply(d, dhcp, nat, plan, &mut r) {
        Ok(()) => {
            // A run that recorded nothing has nothing to commit.
            if r.made_any {
                ledger.commit(name, run).map_err(host)?;
            }
            Ok(UpDone {
                topology: name.to_owned(),
                changed: r.made_any,
            })
        }
        Err(e) => {
            let problems = undo_all(d, dhcp, nat, &owner);
            let mut message = e.message;
            if !problems.is_empty() {
                message.push_str(&format!(
                    " (and undoing what was made failed: {}; `vbr down` retries)",
                    problems.join("; ")
                ));
                // What is left belongs to the topology, for `vbr down`.
                let _ = ledger.commit(name, run);
            }
            Err(ApiError::new(e.kind, message))
        }
    }
}

fn apply(
    d: &Datapath,
    dhcp: &Dhcp,
    nat: &Nat,
    plan: &Plan,
    r: &mut Run<'_>,
) -> Result<(), ApiError> {
    let mut nl = Netlink::new().map_err(host)?;
    for b in &plan.bridges {
        if d.bridges(Some(&b.name)).is_err() {
            crate::names::check_ifname(&b.name).map_err(invalid)?;
            r.record(
                Object::Bridge {
                    name: b.name.clone(),
                },
                None,
            )?;
            d.add_bridge(
                &b.name,
                vbridge_core::BridgeConfig::new(crate::mac::random()),
            )
            .map_err(dp)?;
        }
        addresses_on(&mut nl, &b.name, &b.addresses, r)?;
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
            nat_up(nat, &b.name, &b.addresses, &interfaces(b), r)?;
        }
        if let Some(cfg) = &b.dhcp {
            if !dhcp.running(&b.name) {
                r.record(
                    Object::Dhcp {
                        bridge: b.name.clone(),
                    },
                    None,
                )?;
            }
            dhcp.start(&b.name, cfg.clone())?;
        }
        for (port, vlan) in &b.ports {
            if d.find_port(port).map_err(dp)?.is_none() {
                crate::names::check_ifname(port).map_err(invalid)?;
                r.record(
                    Object::Port {
                        bridge: b.name.clone(),
                        port: port.clone(),
                    },
                    None,
                )?;
                d.add_port(&b.name, &PortSpec::new(port, PortKind::Interface), false)
                    .map_err(dp)?;
            }
            set_vlan(d, port, vlan.clone())?;
        }
        for v in &b.vlans {
            gateway_up(d, dhcp, nat, &mut nl, b, v, r)?;
        }
    }
    for p in &plan.patches {
        patch_up(d, &mut nl, p, r)?;
    }
    for n in &plan.namespaces {
        if !n.name.contains('/') && !netns::exists(&n.name) {
            r.record(
                Object::Netns {
                    name: n.name.clone(),
                },
                None,
            )?;
            netns::add(&n.name).map_err(host)?;
        }
        if let Some(args) = macvlan_args(n) {
            if !super::macvlan::made(r.ledger, &args) {
                super::macvlan::connect(r.ledger, r.owner.clone(), &args)?;
                r.made_any = true;
            }
            continue;
        }
        let port = match placement(d, &n.name, &n.ifname, Some(&n.bridge))? {
            Some(port) => port,
            None => {
                let port = vbridge_datapath::port_name(&n.name, &n.ifname);
                r.record(
                    Object::Port {
                        bridge: n.bridge.clone(),
                        port: port.clone(),
                    },
                    None,
                )?;
                let args = ConnectArgs {
                    netns: n.name.clone(),
                    bridge: n.bridge.clone(),
                    ifname: Some(n.ifname.clone()),
                    ips: n.addresses.clone(),
                    gateway: n.gateway,
                    mac: n.mac,
                    tap: n.tap,
                    routes: n.routes.clone(),
                    dhcp: n.dhcp,
                    publish: Vec::new(),
                    mtu: n.mtu,
                };
                connect(d, &args)?.port
            }
        };
        set_vlan(d, &port, n.access.map(|vid| VlanCfg::Access { vid }))?;
        if !n.publish.is_empty() {
            let bridge_subnets = plan
                .bridges
                .iter()
                .find(|b| b.name == n.bridge)
                .map(|b| subnets(&b.addresses))
                .unwrap_or_default();
            nat.publish(&n.bridge, &port, &bridge_subnets, &n.publish)?;
            forwarding_on(r)?;
        }
    }
    Ok(())
}

/// The host interfaces of a bridge: its own and its VLAN gateways (their subnets reach
/// each other by routing, without NAT).
fn interfaces(b: &BridgePlan) -> Vec<String> {
    std::iter::once(b.name.clone())
        .chain(b.vlans.iter().map(|v| v.ifname.clone()))
        .collect()
}

/// Addresses `want` on `dev`, each recorded before it is added; those it has are kept.
fn addresses_on(
    nl: &mut Netlink,
    dev: &str,
    want: &[IpNet],
    r: &mut Run<'_>,
) -> Result<(), ApiError> {
    let have = nl.addresses(dev).map_err(host)?;
    for a in want {
        if !have.contains(&(a.addr(), a.prefix_len())) {
            r.record(
                Object::Address {
                    dev: dev.to_owned(),
                    net: *a,
                },
                None,
            )?;
            nl.add_address(dev, a.addr(), a.prefix_len())
                .map_err(host)?;
        }
    }
    Ok(())
}

/// A VLAN's gateway: the host interface `BR.VID` as an access port of the VLAN, its
/// addresses, NAT and DHCP server; forwarding on, for the host routes between VLANs.
fn gateway_up(
    d: &Datapath,
    dhcp: &Dhcp,
    nat: &Nat,
    nl: &mut Netlink,
    b: &BridgePlan,
    v: &VlanPlan,
    r: &mut Run<'_>,
) -> Result<(), ApiError> {
    if d.find_port(&v.ifname).map_err(dp)?.is_none() {
        r.record(
            Object::Port {
                bridge: b.name.clone(),
                port: v.ifname.clone(),
            },
            None,
        )?;
        d.add_port(&b.name, &PortSpec::new(&v.ifname, PortKind::Gateway), false)
            .map_err(dp)?;
    }
    set_vlan(d, &v.ifname, Some(VlanCfg::Access { vid: v.vid }))?;
    addresses_on(nl, &v.ifname, &v.addresses, r)?;
    nl.set_up(&v.ifname).map_err(host)?;
    if v.nat {
        nat_up(nat, &v.ifname, &v.addresses, &interfaces(b), r)?;
    } else if !v.addresses.is_empty() {
        forwarding_on(r)?;
    }
    if let Some(cfg) = &v.dhcp {
        if !dhcp.running(&v.ifname) {
            r.record(
                Object::Dhcp {
                    bridge: v.ifname.clone(),
                },
                None,
            )?;
        }
        dhcp.start(&v.ifname, cfg.clone())?;
    }
    Ok(())
}

/// A network joined to its uplink's provider bridge: the veth pair (recorded before it
/// is made) and its two ends as ports, the provider's an access port of the segment.
fn patch_up(
    d: &Datapath,
    nl: &mut Netlink,
    p: &PatchPlan,
    r: &mut Run<'_>,
) -> Result<(), ApiError> {
    if !nl.link_exists(&p.port).map_err(host)? {
        let object = Object::Netdev {
            name: p.port.clone(),
            netns: None,
        };
        r.record(object.clone(), None)?;
        nl.create_veth(&p.port, &p.peer).map_err(host)?;
        if let Some(l) = nl.link(&p.port).map_err(host)? {
            r.ledger.set_ifindex(&object, l.index).map_err(host)?;
        }
    }
    for (bridge, port, vlan) in [
        (&p.bridge, &p.port, None),
        (&p.provider, &p.peer, Some(VlanCfg::Access { vid: p.vid })),
    ] {
        if d.find_port(port).map_err(dp)?.is_none() {
            r.record(
                Object::Port {
                    bridge: bridge.clone(),
                    port: port.clone(),
                },
                None,
            )?;
            d.add_port(bridge, &PortSpec::new(port, PortKind::Interface), false)
                .map_err(dp)?;
        }
        set_vlan(d, port, vlan)?;
    }
    Ok(())
}

/// The macvlan a topology's namespace is on, if it is on one.
fn macvlan_args(n: &crate::topology::NsPlan) -> Option<super::macvlan::MacvlanArgs> {
    let (parent, mode) = n.macvlan.as_ref()?;
    Some(super::macvlan::MacvlanArgs {
        netns: n.name.clone(),
        parent: parent.clone(),
        mode: mode.clone(),
        ifname: n.ifname.clone(),
        ips: n.addresses.clone(),
        gateway: n.gateway,
        dhcp: n.dhcp,
    })
}

/// What `up` can find wrong before it changes anything: NAT without a working `nft`,
/// ports that are another bridge's or no network interface here, namespace paths that
/// lead nowhere, connections that exist to another bridge or whose port name is taken.
fn preflight(d: &Datapath, topology: &str, plan: &Plan) -> Result<(), ApiError> {
    let mut nl = Netlink::new().map_err(host)?;
    for b in &plan.bridges {
        if b.nat {
            nat::exists(&b.name).map_err(|x| {
                ApiError::new(
                    ErrorKind::HostFailure,
                    format!(
                        "bridge {}: nat: {} (NAT needs nftables' `nft` program)",
                        b.name,
                        describe(&x)
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
                        match b.sources.get(port) {
                            Some(at) => format!("{at}: {port}: no such network interface"),
                            None => {
                                format!("bridge {}: port {port}: no such network interface", b.name)
                            }
                        },
                    ));
                }
                None => {}
            }
        }
        for v in &b.vlans {
            let ours = d.find_port(&v.ifname).map_err(dp)?;
            match ours {
                Some((other, PortKind::Gateway)) if other == b.name => {}
                Some((other, _)) => {
                    return Err(ApiError::new(
                        ErrorKind::Conflict,
                        format!(
                            "bridge {}: VLAN {}: {} is a port of bridge {other}",
                            b.name, v.vid, v.ifname
                        ),
                    ));
                }
                None if nl.link_exists(&v.ifname).map_err(host)? => {
                    return Err(ApiError::new(
                        ErrorKind::Conflict,
                        format!(
                            "bridge {}: VLAN {}: a network interface {} exists and is not vbridge's",
                            b.name, v.vid, v.ifname
                        ),
                    ));
                }
                None => {}
            }
            if v.nat {
                nat::exists(&v.ifname).map_err(host)?;
            }
        }
    }
    for p in &plan.patches {
        // A provider bridge serves the networks of the topology that made it.
        let made_by = d
            .ledger()
            .records()
            .into_iter()
            .find_map(|r| match (r.object, r.owner) {
                (Object::Bridge { name }, Owner::Topology { name: t, .. })
                    if name == p.provider =>
                {
                    Some(t)
                }
                _ => None,
            });
        if let Some(other) = made_by.filter(|t| t != topology) {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!(
                    "bridge {}: its uplink's provider bridge {} carries the networks of {other}: an uplink serves the networks of one topology",
                    p.bridge, p.provider
                ),
            ));
        }
        let object = Object::Netdev {
            name: p.port.clone(),
            netns: None,
        };
        for name in [&p.port, &p.peer] {
            if nl.link_exists(name).map_err(host)? && d.ledger().get(&object).is_none() {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!(
                        "bridge {}: a network interface {name} exists and is not vbridge's (the pair to {}'s uplink is made with that name)",
                        p.bridge, p.provider
                    ),
                ));
            }
        }
    }
    for n in &plan.namespaces {
        if n.name.contains('/') {
            netns::open(&n.name).map_err(host)?;
        }
        if let Some(args) = macvlan_args(n) {
            let parent = &args.parent;
            // A namespace the topology will make cannot be looked into yet.
            let exists = n.name.contains('/') || netns::exists(&n.name);
            if exists && !super::macvlan::made(d.ledger(), &args) {
                super::macvlan::preflight(&args)?;
            } else if !exists {
                let mut nl = Netlink::new().map_err(host)?;
                if !nl.link_exists(parent).map_err(host)? {
                    return Err(ApiError::new(
                        ErrorKind::NotFound,
                        format!(
                            "namespace {}: macvlan parent {parent}: no such network interface",
                            n.name
                        ),
                    ));
                }
            }
            continue;
        }
        placement(d, &n.name, &n.ifname, Some(&n.bridge))?;
    }
    Ok(())
}

/// The bridge's IPv4 subnets (network, prefix length) among `addresses`.
fn subnets(addresses: &[IpNet]) -> Vec<(std::net::Ipv4Addr, u8)> {
    addresses
        .iter()
        .filter_map(|a| match a {
            IpNet::V4(n) => Some((n.addr(), n.prefix_len())),
            IpNet::V6(_) => None,
        })
        .collect()
}

/// Forwarding on and the bridge's IPv4 subnets masqueraded (through the NAT keeper,
/// which writes the bridge's whole table, so applying again changes nothing).
fn nat_up(
    nat: &Nat,
    bridge: &str,
    addresses: &[IpNet],
    also: &[String],
    r: &mut Run<'_>,
) -> Result<(), ApiError> {
    let subnets = subnets(addresses);
    if subnets.is_empty() {
        return Err(invalid(format!(
            "bridge {bridge}: nat needs an IPv4 address on the bridge"
        )));
    }
    if !nat::exists(bridge).map_err(host)? {
        r.record(
            Object::NftTable {
                bridge: bridge.to_owned(),
            },
            None,
        )?;
    }
    nat.set_masquerade(bridge, &subnets, also, true)?;
    forwarding_on(r)
}

/// `ip_forward` on, its original value recorded for this run first.
fn forwarding_on(r: &mut Run<'_>) -> Result<(), ApiError> {
    r.made_any |= super::nat::forwarding_on(r.ledger, r.owner.clone())?;
    Ok(())
}

fn set_vlan(d: &Datapath, port: &str, vlan: Option<VlanCfg>) -> Result<(), ApiError> {
    if vlan.is_some() {
        super::handler::link_set(d, port, Vec::new(), vlan)?;
    }
    Ok(())
}

/// Takes one recorded object away; objects already gone are fine.
fn undo_one(d: &Datapath, dhcp: &Dhcp, nat: &Nat, r: &Record) -> Result<(), String> {
    let fine = |e: DpError| match e {
        DpError::NoSuchBridge(_) | DpError::NoSuchPort(_) => Ok(()),
        e => Err(describe(&e)),
    };
    match &r.object {
        Object::Bridge { name } => {
            dhcp.stop(name, true);
            nat.forget(name);
            d.del_bridge(name).or_else(fine)
        }
        Object::Dhcp { bridge } => {
            dhcp.stop(bridge, true);
            Ok(())
        }
        Object::Port { bridge, port } => {
            nat.unpublish(bridge, port);
            d.del_port(bridge, port).or_else(fine)
        }
        Object::NftTable { bridge } => {
            nat.release_masquerade(bridge);
            Ok(())
        }
        Object::Sysctl { path } if path == IP_FORWARD && other_nat(d.ledger(), &r.owner) => {
            // Another topology's NAT still needs forwarding: it restores it when it goes.
            Ok(())
        }
        Object::Sysctl { path } if path == IP_FORWARD => {
            nat.release_forwarding();
            ledger::undo(r).map(drop).map_err(|e| describe(&e))
        }
        _ => ledger::undo(r).map(drop).map_err(|e| describe(&e)),
    }
}

/// Whether a topology other than `owner`'s has a NAT table recorded.
fn other_nat(ledger: &Ledger, owner: &Owner) -> bool {
    let Owner::Topology { name, .. } = owner else {
        return false;
    };
    ledger.records().iter().any(|r| {
        matches!(&r.object, Object::NftTable { .. })
            && matches!(&r.owner, Owner::Topology { name: n, .. } if n != name)
    })
}

/// Undoes everything recorded for `owner`, newest first; returns what could not be
/// undone (those records stay).
fn undo_all(d: &Datapath, dhcp: &Dhcp, nat: &Nat, owner: &Owner) -> Vec<String> {
    let ledger = d.ledger();
    let mut problems = Vec::new();
    for r in ledger.owned_by(owner) {
        let handed_over = matches!(&r.object, Object::Sysctl { path } if path == IP_FORWARD)
            && other_nat(ledger, &r.owner);
        match undo_one(d, dhcp, nat, &r) {
            Ok(()) if handed_over => {
                // Kept for the topology that still needs it.
                if let Some(next) = nat_owner(ledger, owner) {
                    let _ = ledger.forget(&r.object);
                    let _ = ledger.put(next, r.object.clone(), r.original.clone());
                }
            }
            Ok(()) => {
                let _ = ledger.forget(&r.object);
            }
            Err(m) => problems.push(m),
        }
    }
    problems
}

/// The owner of another topology's NAT table.
fn nat_owner(ledger: &Ledger, not: &Owner) -> Option<Owner> {
    let Owner::Topology { name, .. } = not else {
        return None;
    };
    ledger
        .records()
        .into_iter()
        .find_map(|r| match (&r.object, &r.owner) {
            (Object::NftTable { .. }, Owner::Topology { name: n, .. }) if n != name => {
                Some(r.owner.clone())
            }
            _ => None,
        })
}

/// The names of the topologies brought up.
pub(crate) fn topologies(ledger: &Ledger) -> BTreeSet<String> {
    ledger
        .records()
        .into_iter()
        .filter_map(|r| match r.owner {
            Owner::Topology { name, run: None } => Some(name),
            _ => None,
        })
        .collect()
}

/// `vbr down`: removes exactly what the runs of topology `name` made.
pub(crate) fn down(d: &Datapath, dhcp: &Dhcp, nat: &Nat, name: &str) -> Result<(), ApiError> {
    let owner = Owner::Topology {
        name: name.to_owned(),
        run: None,
    };
    if d.ledger().owned_by(&owner).is_empty() {
        let known: Vec<String> = topologies(d.ledger()).into_iter().collect();
        return Err(ApiError::new(
            ErrorKind::NotFound,
            if known.is_empty() {
                format!("nothing was brought up from {name} (see `vbr up`)")
            } else {
                format!(
                    "nothing was brought up from {name}; brought up: {} (`vbr down` takes one of these paths, even if the file has moved)",
                    known.join(", ")
                )
            },
        ));
    }
    let problems = undo_all(d, dhcp, nat, &owner);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::HostFailure,
            format!(
                "{name}: some objects could not be removed (their record is kept; run `vbr down` again to retry): {}",
                problems.join("; ")
            ),
        ))
    }
}

/// At start, after the configuration was restored: runs of `vbr up` cut short by a crash
/// are undone, and whatever a bridge or port that no longer exists made (a device made
/// by a `connect` that died before it was saved, say) is taken away. Returns what was
/// done and what failed, for the log.
pub(crate) fn recover(d: &Datapath, dhcp: &Dhcp, nat: &Nat) -> Vec<String> {
    let ledger = d.ledger();
    let mut said = Vec::new();
    let unfinished: BTreeSet<Owner> = ledger
        .records()
        .into_iter()
        .filter(|r| matches!(r.owner, Owner::Topology { run: Some(_), .. }))
        .map(|r| r.owner)
        .collect();
    for owner in unfinished {
        let problems = undo_all(d, dhcp, nat, &owner);
        said.push(format!(
            "undid an unfinished `vbr up` ({owner:?}){}",
            if problems.is_empty() {
                String::new()
            } else {
                format!("; left: {}", problems.join("; "))
            }
        ));
    }
    let bridges: BTreeSet<String> = d
        .bridges(None)
        .map(|v| v.into_iter().map(|b| b.name).collect())
        .unwrap_or_default();
    let ports: BTreeSet<(String, String)> = d
        .bridges(None)
        .map(|v| {
            v.into_iter()
                .flat_map(|b| {
                    let n = b.name.clone();
                    b.ports.into_iter().map(move |p| (n.clone(), p.name))
                })
                .collect()
        })
        .unwrap_or_default();
    let orphans: BTreeSet<Owner> = ledger
        .records()
        .into_iter()
        .map(|r| r.owner)
        .filter(|o| match o {
            Owner::Bridge { name } => !bridges.contains(name),
            Owner::Port { bridge, port } => !ports.contains(&(bridge.clone(), port.clone())),
            Owner::Topology { .. } | Owner::Attachment { .. } => false,
        })
        .collect();
    for owner in orphans {
        vbridge_datapath::undo_owned(&owner, ledger);
        said.push(format!("removed what {owner:?} had left"));
    }
    said
}

/// What a `vbr up` of an older version recorded in `topologies.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OldMade {
    #[serde(default)]
    bridges: Vec<String>,
    #[serde(default)]
    addresses: Vec<(String, IpNet)>,
    #[serde(default)]
    ports: Vec<(String, String)>,
    #[serde(default)]
    netns: Vec<String>,
    #[serde(default)]
    connections: Vec<(String, String)>,
    #[serde(default)]
    nat: Vec<String>,
    #[serde(default)]
    ip_forward_was: Option<String>,
}

/// Moves the record of an older version (`topologies.json`) into the ledger.
pub(crate) fn migrate(ledger: &Ledger, old: std::collections::BTreeMap<String, OldMade>) {
    for (name, m) in old {
        let owner = Owner::Topology {
            name: name.clone(),
            run: None,
        };
        let put = |o: Object, orig: Option<String>| {
            let _ = ledger.put(owner.clone(), o, orig);
        };
        for n in m.netns {
            put(Object::Netns { name: n }, None);
        }
        for b in m.bridges {
            put(Object::Bridge { name: b }, None);
        }
        for (dev, net) in m.addresses {
            put(Object::Address { dev, net }, None);
        }
        for b in m.nat {
            put(Object::NftTable { bridge: b }, None);
        }
        if let Some(was) = m.ip_forward_was {
            put(
                Object::Sysctl {
                    path: IP_FORWARD.into(),
                },
                Some(was),
            );
        }
        for (bridge, port) in m.ports.into_iter().chain(m.connections) {
            put(Object::Port { bridge, port }, None);
        }
    }
}
