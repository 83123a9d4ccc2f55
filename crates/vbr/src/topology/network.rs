//! The networks of a topology beyond a plain bridge: VLAN gateways (`[[bridge.vlan]]`: a
//! host interface `BR.VID` on one VLAN with addresses, NAT and DHCP, so the host routes
//! between VLANs) and Neutron's network types (`type = "local" | "flat" | "vlan"` with
//! `uplink` and `segmentation_id`). Networks of type vlan sharing an uplink reach it
//! through a provider bridge that holds the uplink as a trunk, joined to each network's
//! bridge by a veth pair whose provider end is an access port of the network's segment
//! (as Neutron's Open vSwitch agent joins its integration bridge to a physical one).
//! A flat network alone on its uplink takes the uplink as a port of its own.

use std::collections::BTreeMap;
use std::ops::Range;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use toml::Spanned;
use vbridge_core::Vid;
use vbridge_datapath::VlanCfg;

use super::check::Checker;
use super::{BridgePlan, Plan, TopologyError};

/// `[[bridge.vlan]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VlanDef {
    vid: Spanned<u16>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    nat: Option<Spanned<bool>>,
    dhcp: Option<super::dhcp::DhcpDef>,
}

/// A VLAN of a bridge with a host interface on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct VlanPlan {
    pub(crate) vid: Vid,
    /// The host interface on the VLAN, `BR.VID`.
    pub(crate) ifname: String,
    pub(crate) addresses: Vec<IpNet>,
    /// Forward and masquerade the VLAN's IPv4 subnets on their way out of the host.
    pub(crate) nat: bool,
    pub(crate) dhcp: Option<vbridge_dhcp::Config>,
}

/// Neutron's network type of a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub(crate) enum NetType {
    /// Reaches nothing beyond its bridge.
    Local,
    /// The uplink's untagged frames.
    Flat { uplink: String },
    /// The uplink's frames tagged `segmentation_id`.
    Vlan {
        uplink: String,
        segmentation_id: Vid,
    },
}

/// A veth pair joining a network's bridge to its uplink's provider bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PatchPlan {
    /// The network's bridge and its end of the pair (untagged).
    pub(crate) bridge: String,
    pub(crate) port: String,
    /// The provider bridge and its end, an access port of the network's segment.
    pub(crate) provider: String,
    pub(crate) peer: String,
    pub(crate) vid: Vid,
}

/// A network type read from a bridge, with where its fields are for later checks.
pub(super) struct Pending {
    bridge: String,
    at: String,
    ty: NetType,
    uplink: Range<usize>,
    segment: Option<Range<usize>>,
}

impl Pending {
    pub(super) fn ty(&self) -> NetType {
        self.ty.clone()
    }
}

/// The VLAN gateways of bridge `bridge` (`at` names its entry).
pub(super) fn vlans(
    c: &Checker<'_>,
    defs: &[VlanDef],
    at: &str,
    bridge: &str,
    subnets: &mut Vec<Subnet>,
) -> Result<Vec<VlanPlan>, TopologyError> {
    let mut out: Vec<VlanPlan> = Vec::new();
    for (i, v) in defs.iter().enumerate() {
        let vat = format!("{at}.vlan[{i}]");
        let vid = c.vid(&v.vid, format!("{vat}.vid"))?;
        if out.iter().any(|o| o.vid == vid) {
            return c.err(
                v.vid.span(),
                format!("{vat}.vid"),
                format!("VLAN {vid} of {bridge} is given twice"),
            );
        }
        let ifname = format!("{bridge}.{vid}");
        if let Err(m) = crate::names::check_ifname(&ifname) {
            return c.err(
                v.vid.span(),
                format!("{vat}.vid"),
                format!("its host interface {ifname}: {m} (give the bridge a shorter name)"),
            );
        }
        let addresses = c.cidrs(&v.addresses, &format!("{vat}.addresses"))?;
        for (j, (a, s)) in addresses.iter().zip(&v.addresses).enumerate() {
            subnets.push((
                *a,
                ifname.clone(),
                format!("{vat}.addresses[{j}]"),
                s.span(),
            ));
        }
        let nat = v.nat.as_ref().is_some_and(|n| *n.get_ref());
        if let Some(n) = v.nat.as_ref().filter(|_| nat) {
            if !addresses.iter().any(|a| a.addr().is_ipv4()) {
                return c.err(
                    n.span(),
                    format!("{vat}.nat"),
                    "needs an IPv4 address in the VLAN's addresses (the subnet to masquerade)"
                        .into(),
                );
            }
        }
        let dhcp = v
            .dhcp
            .as_ref()
            .map(|d| super::dhcp::plan(c, d, &vat, &addresses))
            .transpose()?;
        out.push(VlanPlan {
            vid,
            ifname,
            addresses,
            nat,
            dhcp,
        });
    }
    Ok(out)
}

/// The network type of a bridge from `type`, `uplink` and `segmentation_id`.
pub(super) fn net_type(
    c: &Checker<'_>,
    at: &str,
    bridge: &str,
    ty: Option<&Spanned<String>>,
    uplink: Option<&Spanned<String>>,
    segment: Option<&Spanned<u16>>,
    nat: Option<&Spanned<bool>>,
) -> Result<Option<Pending>, TopologyError> {
    let Some(ty) = ty else {
        if let Some(u) = uplink {
            return c.err(
                u.span(),
                format!("{at}.uplink"),
                "an uplink is for networks of type flat or vlan: give type".into(),
            );
        }
        if let Some(s) = segment {
            return c.err(
                s.span(),
                format!("{at}.segmentation_id"),
                "a segmentation_id is for networks of type vlan: give type = \"vlan\"".into(),
            );
        }
        return Ok(None);
    };
    let kind = ty.get_ref().as_str();
    if !["local", "flat", "vlan"].contains(&kind) {
        return c.err(
            ty.span(),
            format!("{at}.type"),
            format!("{kind:?}: use local, flat or vlan"),
        );
    }
    if kind != "vlan" {
        if let Some(s) = segment {
            return c.err(
                s.span(),
                format!("{at}.segmentation_id"),
                format!("a {kind} network has no segmentation_id (only vlan networks do)"),
            );
        }
    }
    let uplink = match (kind, uplink) {
        ("local", Some(u)) => {
            return c.err(
                u.span(),
                format!("{at}.uplink"),
                "a local network has no uplink: it reaches nothing beyond its bridge".into(),
            );
        }
        ("local", None) => {
            if let Some(n) = nat.filter(|n| *n.get_ref()) {
                return c.err(
                    n.span(),
                    format!("{at}.nat"),
                    "a local network reaches nothing beyond its bridge: no nat".into(),
                );
            }
            return Ok(Some(Pending {
                bridge: bridge.to_owned(),
                at: at.to_owned(),
                ty: NetType::Local,
                uplink: ty.span(),
                segment: None,
            }));
        }
        (_, None) => {
            return c.err(
                ty.span(),
                format!("{at}.uplink"),
                format!("a {kind} network needs uplink = \"IFNAME\" (the host interface it uses)"),
            );
        }
        (_, Some(u)) => u,
    };
    let name = c.name(uplink, format!("{at}.uplink"))?;
    if name == bridge {
        return c.err(
            uplink.span(),
            format!("{at}.uplink"),
            "a bridge is not its own uplink".into(),
        );
    }
    let ty = if kind == "flat" {
        NetType::Flat { uplink: name }
    } else {
        let Some(s) = segment else {
            return c.err(
                ty.span(),
                format!("{at}.segmentation_id"),
                "a vlan network needs segmentation_id = N (its VLAN on the uplink, 1..=4094)"
                    .into(),
            );
        };
        NetType::Vlan {
            uplink: name,
            segmentation_id: c.vid(s, format!("{at}.segmentation_id"))?,
        }
    };
    Ok(Some(Pending {
        bridge: bridge.to_owned(),
        at: at.to_owned(),
        ty,
        uplink: uplink.span(),
        segment: segment.map(Spanned::span),
    }))
}

/// The name of the provider bridge of `uplink`.
pub(crate) fn provider_name(uplink: &str) -> String {
    vbridge_datapath::port_name("vbp", uplink)
}

/// Joins the networks to their uplinks: a flat network alone on its uplink takes it as a
/// port; the networks of an uplink some vlan network uses reach it through its provider
/// bridge (the uplink a trunk of their segments, untagged frames the flat network's).
/// Refuses an uplink used by two flat networks, a segment used twice on one uplink, and
/// an uplink that is some bridge's port as well.
pub(super) fn wire_uplinks(
    c: &Checker<'_>,
    nets: Vec<Pending>,
    plan: &mut Plan,
) -> Result<(), TopologyError> {
    let mut by_uplink: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
    for p in nets {
        if let NetType::Flat { uplink } | NetType::Vlan { uplink, .. } = &p.ty {
            by_uplink.entry(uplink.clone()).or_default().push(p);
        }
    }
    for (uplink, nets) in by_uplink {
        let first = &nets[0];
        if let Some(b) = plan
            .bridges
            .iter()
            .find(|b| b.ports.iter().any(|(p, _)| *p == uplink))
        {
            return c.err(
                first.uplink.clone(),
                format!("{}.uplink", first.at),
                format!("{uplink} is a port of bridge {} already", b.name),
            );
        }
        let flats: Vec<&Pending> = nets
            .iter()
            .filter(|p| matches!(p.ty, NetType::Flat { .. }))
            .collect();
        if let Some(second) = flats.get(1) {
            return c.err(
                second.uplink.clone(),
                format!("{}.uplink", second.at),
                format!(
                    "{uplink} carries flat network {} already: one flat network per uplink",
                    flats[0].bridge
                ),
            );
        }
        let mut segments: BTreeMap<Vid, &Pending> = BTreeMap::new();
        for p in &nets {
            if let NetType::Vlan {
                segmentation_id, ..
            } = &p.ty
            {
                if let Some(other) = segments.insert(*segmentation_id, p) {
                    return c.err(
                        p.segment.clone().unwrap_or(p.uplink.clone()),
                        format!("{}.segmentation_id", p.at),
                        format!(
                            "segment {segmentation_id} of {uplink} is network {}'s already",
                            other.bridge
                        ),
                    );
                }
            }
        }
        let where_ =
            |p: &Pending| format!("{}:{}: {}.uplink", c.file, c.line_of(p.uplink.start), p.at);
        if segments.is_empty() {
            let flat = flats[0];
            if let Some(b) = plan.bridges.iter_mut().find(|b| b.name == flat.bridge) {
                b.ports.push((uplink.clone(), None));
                b.sources.insert(uplink.clone(), where_(flat));
            }
            continue;
        }
        // Untagged frames on the uplink are VLAN 1 of the provider: the flat network's.
        let untagged = Vid::new(1).expect("1 is a VLAN id");
        if let (Some(flat), Some(p)) = (flats.first(), segments.get(&untagged)) {
            return c.err(
                p.segment.clone().unwrap_or(p.uplink.clone()),
                format!("{}.segmentation_id", p.at),
                format!(
                    "segment 1 of {uplink} is its untagged frames, flat network {}'s",
                    flat.bridge
                ),
            );
        }
        let provider = provider_name(&uplink);
        if plan.bridges.iter().any(|b| b.name == provider) {
            return c.err(
                first.uplink.clone(),
                format!("{}.uplink", first.at),
                format!(
                    "bridge {provider} is the provider bridge of {uplink}: name yours otherwise"
                ),
            );
        }
        let allowed: Vec<String> = segments.keys().map(|v| v.to_string()).collect();
        let mut bridge = BridgePlan::named(&provider);
        bridge.ports.push((
            uplink.clone(),
            Some(VlanCfg::Trunk {
                allowed: allowed.join(","),
                native: flats.first().map(|_| untagged),
            }),
        ));
        bridge.sources.insert(uplink.clone(), where_(first));
        plan.bridges.push(bridge);
        for p in &nets {
            let vid = match &p.ty {
                NetType::Vlan {
                    segmentation_id, ..
                } => *segmentation_id,
                _ => untagged,
            };
            plan.patches.push(PatchPlan {
                bridge: p.bridge.clone(),
                port: vbridge_datapath::port_name(&p.bridge, "up"),
                provider: provider.clone(),
                peer: vbridge_datapath::port_name(&p.bridge, "pv"),
                vid,
            });
        }
    }
    Ok(())
}

/// An address of a host interface: the address, the interface, its field and where.
pub(super) type Subnet = (IpNet, String, String, Range<usize>);

/// Refuses subnets of two interfaces (bridges, VLAN gateways) that overlap: the host
/// could not tell where to route them.
pub(super) fn no_overlap(c: &Checker<'_>, nets: &[Subnet]) -> Result<(), TopologyError> {
    for (i, (a, dev_a, field_a, _)) in nets.iter().enumerate() {
        for (b, dev_b, field_b, span) in &nets[i + 1..] {
            if dev_a != dev_b && (a.contains(&b.network()) || b.contains(&a.network())) {
                return c.err(
                    span.clone(),
                    field_b.clone(),
                    format!(
                        "{b} overlaps {a} of {dev_a} ({field_a}): each interface needs a subnet of its own"
                    ),
                );
            }
        }
    }
    Ok(())
}
