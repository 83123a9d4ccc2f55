//! Topology files: a TOML description of bridges, their ports and VLANs, and namespaces
//! with addresses and routes, checked completely before anything is changed. Errors name
//! the file, the line and the field. The checked form, a [`Plan`], is what `vbr up` sends
//! to the daemon.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

mod check;
mod dhcp;
mod network;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod tests;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Spanned;
use vbridge_core::{MacAddr, Vid, VidSet};
use vbridge_datapath::{StpMode, VlanCfg};

use check::Checker;
pub(crate) use check::{check_route, parse_cidr, route_ok};
pub(crate) use network::{NetType, PatchPlan, VlanPlan};

/// The built-in default: seed 002's Docker-style network.
pub(crate) const DEFAULT_TOPOLOGY: &str = r#"# vbridge's default topology: seed 002's bridge network.
[[bridge]]
name = "br0"
addresses = ["192.168.88.1/24"]
# ip_forward on, and 192.168.88.0/24 masqueraded on its way out of the host.
nat = true

[[namespace]]
name = "ns0"
bridge = "br0"
addresses = ["192.168.88.2/24"]
gateway = "192.168.88.1"

[[namespace]]
name = "ns1"
bridge = "br0"
addresses = ["192.168.88.3/24"]
gateway = "192.168.88.1"
"#;

// ----- the file as written -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "bridge")]
    bridges: Vec<BridgeDef>,
    #[serde(default, rename = "namespace")]
    namespaces: Vec<NsDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeDef {
    name: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    stp: Option<Spanned<String>>,
    ageing: Option<Spanned<f64>>,
    nat: Option<Spanned<bool>>,
    #[serde(default, rename = "port")]
    ports: Vec<PortDef>,
    dhcp: Option<dhcp::DhcpDef>,
    /// VLANs with a host interface (`BR.VID`) of their own.
    #[serde(default, rename = "vlan")]
    vlans: Vec<network::VlanDef>,
    /// Neutron's network type: local, flat or vlan.
    #[serde(rename = "type")]
    net_type: Option<Spanned<String>>,
    uplink: Option<Spanned<String>>,
    segmentation_id: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortDef {
    name: Spanned<String>,
    access: Option<Spanned<u16>>,
    trunk: Option<Spanned<String>>,
    native: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NsDef {
    name: Spanned<String>,
    /// The bridge it is connected to (none with `macvlan`).
    bridge: Option<Spanned<String>>,
    ifname: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    #[serde(default)]
    routes: Vec<Spanned<RouteDef>>,
    mac: Option<Spanned<String>>,
    /// A TAP held by vbridge instead of a veth pair.
    tap: Option<Spanned<bool>>,
    /// The older spelling: `veth = false` asks for a TAP.
    veth: Option<Spanned<bool>>,
    access: Option<Spanned<u16>>,
    /// The namespace's own DHCP client asks for its address (vbridge runs none).
    dhcp: Option<Spanned<bool>>,
    /// Host ports forwarded to it, Docker's `-p` form (`8080:80/tcp`).
    #[serde(default)]
    publish: Vec<Spanned<String>>,
    /// The kernel's macvlan on a host interface instead of a bridge port.
    macvlan: Option<Spanned<MacvlanDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MacvlanDef {
    parent: String,
    #[serde(default = "bridge_mode")]
    mode: String,
}

fn bridge_mode() -> String {
    "bridge".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteDef {
    to: String,
    via: String,
}

// ----- the checked plan -----

/// A bridge to bring up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BridgePlan {
    pub(crate) name: String,
    /// Addresses (with prefix length) for the bridge's host interface.
    pub(crate) addresses: Vec<IpNet>,
    pub(crate) stp: Option<StpMode>,
    pub(crate) ageing: Option<f64>,
    /// Forward and masquerade the bridge's IPv4 subnets (Docker-style).
    #[serde(default)]
    pub(crate) nat: bool,
    /// Existing netdevs to attach, with their VLAN mode.
    pub(crate) ports: Vec<(String, Option<VlanCfg>)>,
    /// The bridge's DHCP server.
    #[serde(default)]
    pub(crate) dhcp: Option<vbridge_dhcp::Config>,
    /// VLANs with a host interface of their own (gateways).
    #[serde(default)]
    pub(crate) vlans: Vec<VlanPlan>,
    /// Neutron's network type, if given.
    #[serde(default)]
    pub(crate) network: Option<NetType>,
    /// Where in the file a port was given when it is not in `ports` by name (an
    /// uplink): `file:line: field`, for errors found later.
    #[serde(default)]
    pub(crate) sources: BTreeMap<String, String>,
}

impl BridgePlan {
    /// A bridge with nothing but its name.
    pub(crate) fn named(name: &str) -> BridgePlan {
        BridgePlan {
            name: name.to_owned(),
            addresses: Vec::new(),
            stp: None,
            ageing: None,
            nat: false,
            ports: Vec::new(),
            dhcp: None,
            vlans: Vec::new(),
            network: None,
            sources: BTreeMap::new(),
        }
    }
}

/// A namespace to create (if missing) and connect to a bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NsPlan {
    pub(crate) name: String,
    pub(crate) bridge: String,
    pub(crate) ifname: String,
    pub(crate) addresses: Vec<IpNet>,
    pub(crate) gateway: Option<IpAddr>,
    /// More routes: (destination network, next hop).
    #[serde(default)]
    pub(crate) routes: Vec<(IpNet, IpAddr)>,
    pub(crate) mac: Option<MacAddr>,
    /// A TAP held by vbridge instead of a veth pair (the default).
    pub(crate) tap: bool,
    pub(crate) access: Option<Vid>,
    /// Addressed by DHCP (its own client), not by vbridge.
    #[serde(default)]
    pub(crate) dhcp: bool,
    /// Host ports forwarded to its (first IPv4) address.
    #[serde(default)]
    pub(crate) publish: Vec<vbridge_host::nat::Publish>,
    /// On a macvlan of this host interface, in this mode, instead of a bridge (then
    /// `bridge` is empty).
    #[serde(default)]
    pub(crate) macvlan: Option<(String, String)>,
    /// The MTU of its interface (default: the kernel's, or the bridge's tunnels').
    #[serde(default)]
    pub(crate) mtu: Option<u32>,
}

/// A checked topology.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub(crate) bridges: Vec<BridgePlan>,
    pub(crate) namespaces: Vec<NsPlan>,
    /// Veth pairs joining networks to their uplinks' provider bridges.
    #[serde(default)]
    pub(crate) patches: Vec<PatchPlan>,
}

/// What is wrong with a topology file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopologyError {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) field: String,
    pub(crate) message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.message
            )
        }
    }
}

impl std::error::Error for TopologyError {}

/// Parses and checks `src` (named `file` in errors).
pub(crate) fn parse(file: &str, src: &str) -> Result<Plan, TopologyError> {
    let c = Checker::new(file, src);
    let parsed: File = toml::from_str(src).map_err(|e| TopologyError {
        file: file.to_owned(),
        line: e.span().map_or(1, |s| c.line_of(s.start)),
        field: String::new(),
        message: e.message().to_owned(),
    })?;
    let mut plan = Plan::default();
    let mut bridge_lines: BTreeMap<String, usize> = BTreeMap::new();
    let mut port_lines: BTreeMap<String, usize> = BTreeMap::new();
    let mut subnets: Vec<network::Subnet> = Vec::new();
    let mut nets = Vec::new();
    for (bi, b) in parsed.bridges.iter().enumerate() {
        let at = format!("bridge[{bi}]");
        let name = c.name(&b.name, format!("{at}.name"))?;
        if bridge_lines
            .insert(name.clone(), c.line_of(b.name.span().start))
            .is_some()
        {
            return c.err(
                b.name.span(),
                format!("{at}.name"),
                format!("bridge {name} is defined twice"),
            );
        }
        let stp = match &b.stp {
            None => None,
            Some(s) => Some(match s.get_ref().as_str() {
                "off" | "no" => StpMode::Off,
                "on" | "stp" | "yes" => StpMode::Stp,
                "rstp" => StpMode::Rstp,
                other => {
                    return c.err(
                        s.span(),
                        format!("{at}.stp"),
                        format!("{other:?}: use off, stp or rstp"),
                    );
                }
            }),
        };
        let ageing = match &b.ageing {
            Some(a) if !(0.0..=1e6).contains(a.get_ref()) => {
                return c.err(
                    a.span(),
                    format!("{at}.ageing"),
                    "use 0..=1000000 seconds".into(),
                );
            }
            a => a.as_ref().map(|a| *a.get_ref()),
        };
        let mut ports = Vec::new();
        for (pi, p) in b.ports.iter().enumerate() {
            let pat = format!("{at}.port[{pi}]");
            let pname = c.name(&p.name, format!("{pat}.name"))?;
            if let Some(first) = port_lines.insert(pname.clone(), c.line_of(p.name.span().start)) {
                return c.err(
                    p.name.span(),
                    format!("{pat}.name"),
                    format!("port {pname} is listed already (line {first}): a port has one bridge"),
                );
            }
            let vlan = match (&p.access, &p.trunk) {
                (Some(_), Some(t)) => {
                    return c.err(
                        t.span(),
                        format!("{pat}.trunk"),
                        "a port is either access or trunk".into(),
                    );
                }
                (Some(a), None) => Some(VlanCfg::Access {
                    vid: c.vid(a, format!("{pat}.access"))?,
                }),
                (None, Some(t)) => {
                    if let Err(e) = VidSet::parse_list(t.get_ref()) {
                        return c.err(t.span(), format!("{pat}.trunk"), e.to_string());
                    }
                    let native = p
                        .native
                        .as_ref()
                        .map(|n| c.vid(n, format!("{pat}.native")))
                        .transpose()?;
                    Some(VlanCfg::Trunk {
                        allowed: t.get_ref().clone(),
                        native,
                    })
                }
                (None, None) => None,
            };
            ports.push((pname, vlan));
        }
        let addresses = c.cidrs(&b.addresses, &format!("{at}.addresses"))?;
        let nat = b.nat.as_ref().is_some_and(|n| *n.get_ref());
        if let Some(n) = b.nat.as_ref().filter(|_| nat) {
            let v4 = addresses.iter().any(|a| a.addr().is_ipv4());
            if !v4 {
                return c.err(
                    n.span(),
                    format!("{at}.nat"),
                    "needs an IPv4 address in the bridge's addresses (the subnet to masquerade)"
                        .into(),
                );
            }
        }
        for (j, (a, s)) in addresses.iter().zip(&b.addresses).enumerate() {
            subnets.push((*a, name.clone(), format!("{at}.addresses[{j}]"), s.span()));
        }
        let pending = network::net_type(
            &c,
            &at,
            &name,
            b.net_type.as_ref(),
            b.uplink.as_ref(),
            b.segmentation_id.as_ref(),
            b.nat.as_ref(),
        )?;
        let network = pending.as_ref().map(network::Pending::ty);
        let mut dhcp = b
            .dhcp
            .as_ref()
            .map(|d| dhcp::plan(&c, d, &at, &addresses))
            .transpose()?;
        if let (Some(d), Some(NetType::Local)) = (dhcp.as_mut(), &network) {
            d.no_router = true; // no way out to offer
        }
        let vlans = network::vlans(&c, &b.vlans, &at, &name, &mut subnets)?;
        nets.extend(pending);
        plan.bridges.push(BridgePlan {
            name,
            addresses,
            stp,
            ageing,
            nat,
            ports,
            dhcp,
            vlans,
            network,
            sources: BTreeMap::new(),
        });
    }
    network::no_overlap(&c, &subnets)?;
    network::wire_uplinks(&c, nets, &mut plan)?;
    // Port name -> (namespace, interface, line) of the connections so far.
    let mut port_names: BTreeMap<String, (String, String, usize)> = BTreeMap::new();
    for (ni, n) in parsed.namespaces.iter().enumerate() {
        let at = format!("namespace[{ni}]");
        let name = n.name.get_ref().clone();
        let checked = crate::names::check_netns(&name).map_err(|e| {
            if name.contains('/') {
                e
            } else {
                format!("{e} (or give a path like /proc/PID/ns/net)")
            }
        });
        if let Err(m) = checked {
            return c.err(n.name.span(), format!("{at}.name"), m);
        }
        let macvlan = match (&n.bridge, &n.macvlan) {
            (Some(b), Some(_)) => {
                return c.err(
                    b.span(),
                    format!("{at}.bridge"),
                    "a namespace is on a bridge or on a macvlan, not both".into(),
                );
            }
            (None, None) => {
                return c.err(
                    n.name.span(),
                    format!("{at}.bridge"),
                    "give the bridge it is on (or macvlan = { parent = \"...\" })".into(),
                );
            }
            (None, Some(m)) => {
                let def = m.get_ref();
                if let Err(e) = crate::names::check_ifname(&def.parent) {
                    return c.err(m.span(), format!("{at}.macvlan.parent"), e);
                }
                if !["bridge", "vepa", "private", "passthru"].contains(&def.mode.as_str()) {
                    return c.err(
                        m.span(),
                        format!("{at}.macvlan.mode"),
                        format!("{:?}: use bridge, vepa, private or passthru", def.mode),
                    );
                }
                if !n.publish.is_empty() || n.tap.is_some() || n.access.is_some() {
                    return c.err(
                        m.span(),
                        format!("{at}.macvlan"),
                        "publish, tap and access are for bridge ports, not macvlans".into(),
                    );
                }
                Some((def.parent.clone(), def.mode.clone()))
            }
            (Some(_), None) => None,
        };
        let bridge = n
            .bridge
            .as_ref()
            .map(|b| b.get_ref().clone())
            .unwrap_or_default();
        if let Some(b) = n
            .bridge
            .as_ref()
            .filter(|_| !bridge_lines.contains_key(&bridge))
        {
            return c.err(
                b.span(),
                format!("{at}.bridge"),
                format!("bridge {bridge:?} is not defined in this file"),
            );
        }
        let ifname = match &n.ifname {
            Some(i) => c.name(i, format!("{at}.ifname"))?,
            None => "eth0".to_owned(),
        };
        let port = vbridge_datapath::port_name(&name, &ifname);
        let line = c.line_of(n.name.span().start);
        if let Some((other, other_if, other_line)) =
            port_names.insert(port.clone(), (name.clone(), ifname.clone(), line))
        {
            let message = if (&other, &other_if) == (&name, &ifname) {
                format!("{name} already has an interface {ifname} (line {other_line})")
            } else {
                format!(
                    "{name}'s {ifname} would be port {port}, like {other}'s {other_if} (line {other_line}): give one of them another ifname"
                )
            };
            return c.err(n.name.span(), format!("{at}.name"), message);
        }
        let addresses = c.cidrs(&n.addresses, &format!("{at}.addresses"))?;
        let gateway = match &n.gateway {
            Some(g) => match g.get_ref().parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    return c.err(
                        g.span(),
                        format!("{at}.gateway"),
                        format!("{:?} is not an IP address", g.get_ref()),
                    );
                }
            },
            None => None,
        };
        let mut routes = Vec::new();
        for (ri, r) in n.routes.iter().enumerate() {
            let RouteDef { to, via } = r.get_ref();
            match check_route(to, via) {
                Ok(route) => routes.push(route),
                Err(m) => return c.err(r.span(), format!("{at}.routes[{ri}]"), m),
            }
        }
        let mac = match &n.mac {
            Some(m) => match m.get_ref().parse::<MacAddr>() {
                Ok(mac) if mac.is_unicast() => Some(mac),
                Ok(_) => {
                    return c.err(
                        m.span(),
                        format!("{at}.mac"),
                        "must be a unicast address".into(),
                    );
                }
                Err(e) => return c.err(m.span(), format!("{at}.mac"), e.to_string()),
            },
            None => None,
        };
        let access = n
            .access
            .as_ref()
            .map(|a| c.vid(a, format!("{at}.access")))
            .transpose()?;
        let tap = match (&n.tap, &n.veth) {
            (Some(t), Some(v)) if *t.get_ref() == *v.get_ref() => {
                return c.err(
                    v.span(),
                    format!("{at}.veth"),
                    "contradicts tap: give only `tap = true` (or nothing, for a veth pair)".into(),
                );
            }
            (Some(t), _) => *t.get_ref(),
            (None, Some(v)) => !*v.get_ref(),
            (None, None) => false,
        };
        if let Some(d) = &n.dhcp {
            // A macvlan's DHCP server is on its parent's network, not vbridge's.
            let on = plan.bridges.iter().find(|b| b.name == bridge);
            let (serves, what) = match access {
                Some(vid) => (
                    on.and_then(|b| b.vlans.iter().find(|v| v.vid == vid))
                        .is_some_and(|v| v.dhcp.is_some()),
                    format!("VLAN {vid} of bridge {bridge}"),
                ),
                // A flat or vlan network's server may be across its uplink, on
                // another node (as Neutron's DHCP agent is).
                None => (
                    on.is_some_and(|b| {
                        b.dhcp.is_some()
                            || matches!(
                                b.network,
                                Some(NetType::Flat { .. } | NetType::Vlan { .. })
                            )
                    }),
                    format!("bridge {bridge}"),
                ),
            };
            dhcp::check_client(
                &c,
                &at,
                d,
                &addresses,
                gateway,
                serves || macvlan.is_some(),
                &what,
            )?;
        }
        let mut publish: Vec<vbridge_host::nat::Publish> = Vec::new();
        for (pi, p) in n.publish.iter().enumerate() {
            let field = format!("{at}.publish[{pi}]");
            let Some(to) = addresses.iter().find_map(|a| match a {
                IpNet::V4(n) => Some(n.addr()),
                IpNet::V6(_) => None,
            }) else {
                return c.err(
                    p.span(),
                    field,
                    "publishing needs an IPv4 address in the namespace's addresses".into(),
                );
            };
            let parsed = vbridge_host::nat::Publish::parse(p.get_ref(), to);
            match parsed {
                Ok(x) => {
                    let clash = plan
                        .namespaces
                        .iter()
                        .flat_map(|o| o.publish.iter())
                        .chain(publish.iter())
                        .any(|q| q.clashes(&x));
                    if clash {
                        return c.err(
                            p.span(),
                            field,
                            format!(
                                "host port {}/{} is published twice in this file",
                                x.host_port,
                                x.proto.name()
                            ),
                        );
                    }
                    publish.push(x);
                }
                Err(m) => return c.err(p.span(), field, m),
            }
        }
        plan.namespaces.push(NsPlan {
            name,
            bridge,
            ifname,
            addresses,
            gateway,
            routes,
            mac,
            tap,
            access,
            dhcp: n.dhcp.as_ref().is_some_and(|d| *d.get_ref()),
            publish,
            macvlan,
            mtu: None,
        });
    }
    Ok(plan)
}
