//! Namespaces on bridges: `vbr netns` and `vbr connect`/`disconnect` (which `vbr up`
//! uses for each namespace of a topology), and where a namespace's interface stands.

use std::net::IpAddr;

use ipnet::IpNet;

use serde::{Deserialize, Serialize};
use vbridge_core::MacAddr;
use vbridge_datapath::{Connection, Datapath, PortKind, PortSpec};
use vbridge_host::netns;

use super::errors::{dp, host};
use super::handler::Outcome;
use crate::api::{ApiError, Connected, Done, ErrorKind};

fn ok(v: impl Serialize) -> Outcome {
    serde_json::to_value(v).map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::invalid(m)
}

/// Options of `vbr connect`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConnectArgs {
    pub(crate) netns: String,
    pub(crate) bridge: String,
    pub(crate) ifname: Option<String>,
    /// Addresses with their prefix length, like `10.0.0.2/24`.
    #[serde(default)]
    pub(crate) ips: Vec<IpNet>,
    pub(crate) gateway: Option<IpAddr>,
    pub(crate) mac: Option<MacAddr>,
    /// A TAP held by vbridge instead of a veth pair (the default).
    #[serde(default)]
    pub(crate) tap: bool,
    /// More routes inside the namespace: (destination network, next hop).
    #[serde(default)]
    pub(crate) routes: Vec<(IpNet, IpAddr)>,
    /// Addressed by the namespace's own DHCP client (the bridge must serve DHCP).
    #[serde(default)]
    pub(crate) dhcp: bool,
    /// Host ports forwarded to its address, Docker's `-p` form (`8080:80/tcp`).
    #[serde(default)]
    pub(crate) publish: Vec<String>,
    /// The MTU of both ends (default: the kernel's, or what the bridge's VXLAN tunnels
    /// leave room for).
    #[serde(default)]
    pub(crate) mtu: Option<u32>,
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

/// The MTU a namespace on `bridge` needs for its frames to fit the bridge's VXLAN
/// tunnels (a tunnel netdev's MTU: its underlay's less VXLAN's 50), if it has any.
fn tunnel_mtu(d: &Datapath, bridge: &str) -> Option<u32> {
    d.bridges(Some(bridge))
        .ok()?
        .iter()
        .flat_map(|b| &b.ports)
        .filter(|p| p.kind == PortKind::Vxlan)
        .filter_map(|p| p.mtu)
        .min()
        .filter(|m| *m < 1500)
}

/// `vbr connect`: a port for namespace `a.netns` on `a.bridge`.
pub(crate) fn connect(d: &Datapath, a: &ConnectArgs) -> Result<Connected, ApiError> {
    d.bridges(Some(&a.bridge)).map_err(dp)?;
    crate::names::check_netns(&a.netns).map_err(invalid)?;
    for (to, via) in &a.routes {
        crate::topology::route_ok(*to, *via)
            .map_err(|m| invalid(format!("route {to} via {via}: {m}")))?;
    }
    if let Some(m) = a.mac.filter(|m| !m.is_unicast()) {
        return Err(invalid(format!("--mac {m} must be a unicast address")));
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
        addresses: a.ips.clone(),
        gateway: a.gateway,
        routes: a.routes.clone(),
        mac: a.mac,
        veth: !a.tap,
        netns_id: if a.netns.contains('/') {
            vbridge_datapath::netns_identity(&a.netns)
        } else {
            None
        },
        ifindex: None,
        mtu: a.mtu.or_else(|| tunnel_mtu(d, &a.bridge)),
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
        addresses: a.ips.iter().map(ToString::to_string).collect(),
    })
}

/// Where namespace `netns`'s interface `ifname` stands: `Ok(None)` if it may be connected
/// (to `bridge`; to any bridge for `None`), `Ok(Some(port))` if it is connected to
/// `bridge` already (`vbr up` again), an error if it is connected elsewhere (to any
/// bridge, for `None`) or its port name is taken by another port. An existing connection
/// is found by namespace and interface, whatever its port is called (an older vbridge
/// may have named it differently).
pub(super) fn placement(
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
/// The ports that connect `ns` to `bridge`.
pub(crate) fn ports_of(d: &Datapath, ns: &str, bridge: &str) -> Vec<String> {
    d.connections()
        .map(|v| {
            v.into_iter()
                .filter(|(b, _, c)| b == bridge && c.netns == ns)
                .map(|(_, p, _)| p)
                .collect()
        })
        .unwrap_or_default()
}

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
