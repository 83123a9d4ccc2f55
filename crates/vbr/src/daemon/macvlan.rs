//! Namespaces on the kernel's macvlan (seed 002): `vbr connect NS --macvlan PARENT
//! [--mode bridge|vepa|private|passthru]` and `macvlan = { parent, mode }` in a topology.
//! The macvlan is made directly inside the namespace (its name there must be free),
//! recorded in the ledger first (with its index, so only it is ever deleted), addressed
//! and given its routes there, or left to the namespace's own DHCP client. Not a port
//! of any bridge: the parent's driver switches it.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use vbridge_host::ledger::{Ledger, Object, Owner};
use vbridge_host::{ErrorKind as HostKind, Netlink, netns};

use super::errors::host;
use crate::api::{ApiError, ErrorKind};

/// Options of a macvlan connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MacvlanArgs {
    pub(crate) netns: String,
    /// The link of the daemon's namespace it sits on.
    pub(crate) parent: String,
    /// `bridge` (default), `vepa`, `private` or `passthru`.
    #[serde(default = "bridge_mode")]
    pub(crate) mode: String,
    #[serde(default = "eth0")]
    pub(crate) ifname: String,
    #[serde(default)]
    pub(crate) ips: Vec<IpNet>,
    pub(crate) gateway: Option<IpAddr>,
    /// Left to the namespace's own DHCP client (no addresses from vbridge).
    #[serde(default)]
    pub(crate) dhcp: bool,
}

fn bridge_mode() -> String {
    "bridge".into()
}

fn eth0() -> String {
    "eth0".into()
}

/// Who owns a macvlan made by `vbr connect` (a topology's belong to the topology).
pub(crate) fn owner(netns: &str, ifname: &str) -> Owner {
    Owner::Attachment {
        netns: netns.to_owned(),
        ifname: ifname.to_owned(),
    }
}

fn object(a: &MacvlanArgs) -> Object {
    Object::Netdev {
        name: a.ifname.clone(),
        netns: Some(a.netns.clone()),
    }
}

/// Whether vbridge recorded the macvlan `a` describes (it was made before).
pub(crate) fn made(ledger: &Ledger, a: &MacvlanArgs) -> bool {
    let o = object(a);
    ledger.records().iter().any(|r| r.object == o)
}

/// Checks what can be checked before anything is made: names, mode, the parent (a
/// link here, not the loopback device), the namespace, the name free inside it.
pub(crate) fn preflight(a: &MacvlanArgs) -> Result<(), ApiError> {
    crate::names::check_netns(&a.netns).map_err(ApiError::invalid)?;
    crate::names::check_ifname(&a.ifname).map_err(ApiError::invalid)?;
    if !["bridge", "vepa", "private", "passthru"].contains(&a.mode.as_str()) {
        return Err(ApiError::invalid(format!(
            "macvlan mode {:?}: use bridge, vepa, private or passthru",
            a.mode
        )));
    }
    if a.dhcp && (!a.ips.is_empty() || a.gateway.is_some()) {
        return Err(ApiError::invalid("give either addresses or --dhcp"));
    }
    let mut nl = Netlink::new().map_err(host)?;
    match nl.link(&a.parent).map_err(host)? {
        None => {
            return Err(ApiError::new(
                ErrorKind::NotFound,
                format!("macvlan parent {}: no such network interface", a.parent),
            ));
        }
        Some(l) if l.loopback => {
            return Err(ApiError::new(
                ErrorKind::Conflict,
                format!("{} is the loopback device: not a macvlan parent", a.parent),
            ));
        }
        Some(_) => {}
    }
    let fd = netns::open(&a.netns).map_err(|e| {
        if e.kind() == HostKind::NotFound {
            ApiError::new(
                ErrorKind::NotFound,
                format!("namespace {} does not exist", a.netns),
            )
        } else {
            host(e)
        }
    })?;
    let mut inner = Netlink::new_in(&fd).map_err(host)?;
    if inner.link_exists(&a.ifname).map_err(host)? {
        return Err(ApiError::new(
            ErrorKind::Conflict,
            format!(
                "{} already has a device {}; vbridge never takes over other devices (give another --ifname)",
                a.netns, a.ifname
            ),
        ));
    }
    Ok(())
}

/// Makes the macvlan under `owner` (recorded first), configured inside the namespace.
/// On failure what was made is taken away again.
pub(crate) fn connect(ledger: &Ledger, owner: Owner, a: &MacvlanArgs) -> Result<(), ApiError> {
    preflight(a)?;
    let obj = object(a);
    ledger.put(owner, obj.clone(), None).map_err(host)?;
    let r = make(ledger, a, &obj);
    if r.is_err() {
        undo(ledger, &obj);
    }
    r
}

fn make(ledger: &Ledger, a: &MacvlanArgs, obj: &Object) -> Result<(), ApiError> {
    let fd = netns::open(&a.netns).map_err(host)?;
    let mut nl = Netlink::new().map_err(host)?;
    nl.create_macvlan_in(&a.ifname, &a.parent, &a.mode, &fd)
        .map_err(host)?;
    let mut inner = Netlink::new_in(&fd).map_err(host)?;
    if let Some(i) = inner.link_index(&a.ifname).map_err(host)? {
        ledger.set_ifindex(obj, i).map_err(host)?;
    }
    let tolerate = |r: Result<(), vbridge_host::HostError>| match r {
        Err(e) if e.kind() == HostKind::AlreadyExists => Ok(()),
        other => other,
    };
    tolerate(inner.set_up("lo")).map_err(host)?;
    for ip in &a.ips {
        tolerate(inner.add_address(&a.ifname, ip.addr(), ip.prefix_len())).map_err(host)?;
    }
    inner.set_up(&a.ifname).map_err(host)?;
    if let Some(gw) = a.gateway {
        tolerate(inner.add_default_route(gw)).map_err(host)?;
    }
    Ok(())
}

/// Deletes a recorded macvlan (only the one recorded: same index) and forgets it.
fn undo(ledger: &Ledger, obj: &Object) {
    if let Some(r) = ledger.records().into_iter().find(|r| r.object == *obj) {
        match vbridge_host::ledger::undo(&r) {
            Ok(_) => {
                let _ = ledger.forget(obj);
            }
            Err(e) => tracing::warn!(error = %e, "macvlan not removed"),
        }
    }
}

/// `vbr disconnect NS --macvlan [--ifname IF]`: removes a macvlan vbridge made.
pub(crate) fn disconnect(ledger: &Ledger, netns: &str, ifname: &str) -> Result<(), ApiError> {
    let obj = Object::Netdev {
        name: ifname.to_owned(),
        netns: Some(netns.to_owned()),
    };
    if !ledger.records().iter().any(|r| r.object == obj) {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("vbridge made no macvlan {ifname} in {netns}"),
        ));
    }
    undo(ledger, &obj);
    Ok(())
}
