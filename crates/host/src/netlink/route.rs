//! Route requests on [`Netlink`]: adding, deleting and listing routes of
//! the main table, IPv4 and IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    RouteNetlinkMessage,
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};

use super::{IpFamily, Netlink, What, addr};
use crate::HostError;

/// A route of the main table, as listed by [`Netlink::routes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network (the unspecified address for a default route).
    pub dest: IpAddr,
    /// Destination prefix length (0 for a default route).
    pub prefix_len: u8,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Output interface index, if any.
    pub oif: Option<u32>,
    /// Metric (`RTA_PRIORITY`), if any.
    pub metric: Option<u32>,
}

impl Route {
    /// Whether this is a default route.
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }
}

fn unspecified(family: IpFamily) -> IpAddr {
    match family {
        IpFamily::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

fn describe(dest: IpAddr, prefix_len: u8, gateway: Option<IpAddr>, dev: Option<&str>) -> String {
    let mut text = if prefix_len == 0 {
        "default route".to_owned()
    } else {
        format!("route {dest}/{prefix_len}")
    };
    if let Some(gateway) = gateway {
        text += &format!(" via {gateway}");
    }
    if let Some(dev) = dev {
        text += &format!(" dev {dev:?}");
    }
    text
}

/// The request for a route; `delete` loosens the match the way `ip route
/// del` does (any scope, protocol and type).
fn message(
    dest: IpAddr,
    prefix_len: u8,
    gateway: Option<IpAddr>,
    oif: Option<u32>,
    delete: bool,
) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = addr::family(dest);
    message.header.destination_prefix_length = prefix_len;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    if delete {
        message.header.scope = RouteScope::NoWhere;
    } else {
        message.header.protocol = RouteProtocol::Static;
        message.header.kind = RouteType::Unicast;
        // A route with no next hop is on-link.
        message.header.scope = if gateway.is_none() && oif.is_some() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
    }
    if prefix_len > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dest)));
    }
    if let Some(gateway) = gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    }
    if let Some(oif) = oif {
        message.attributes.push(RouteAttribute::Oif(oif));
    }
    message
}

impl Netlink {
    /// Adds a default route via `gateway` (IPv4 or IPv6).
    pub fn add_default_route(&mut self, gateway: IpAddr) -> Result<(), HostError> {
        self.add_route(unspecified(IpFamily::of(gateway)), 0, Some(gateway), None)
    }

    /// Adds the route `dest/prefix_len`, via `gateway` and/or out of the link
    /// `dev`. The gateway must be reachable through a connected route
    /// (an address on a link that is up), or the kernel answers
    /// `ENETUNREACH`.
    pub fn add_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        dev: Option<&str>,
    ) -> Result<(), HostError> {
        self.change_route(dest, prefix_len, gateway, dev, false)
    }

    /// Deletes the default route of `family` (the first one, if several).
    pub fn del_default_route(&mut self, family: IpFamily) -> Result<(), HostError> {
        self.del_route(unspecified(family), 0, None, None)
    }

    /// Deletes the route `dest/prefix_len`; `gateway` and `dev`, when given,
    /// must match too.
    pub fn del_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        dev: Option<&str>,
    ) -> Result<(), HostError> {
        self.change_route(dest, prefix_len, gateway, dev, true)
    }

    fn change_route(
        &mut self,
        dest: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        dev: Option<&str>,
        delete: bool,
    ) -> Result<(), HostError> {
        addr::check_prefix(dest, prefix_len)?;
        let object = describe(dest, prefix_len, gateway, dev);
        if gateway.is_some_and(|gw| gw.is_ipv4() != dest.is_ipv4()) {
            return Err(HostError::invalid(
                "route",
                object,
                "gateway and destination differ in IP version",
            ));
        }
        let action = if delete { "delete" } else { "add" };
        let oif = match dev {
            Some(dev) => Some(self.index_for(dev, action)?),
            None => None,
        };
        let what = What {
            action,
            object: &object,
        };
        let request = if delete {
            RouteNetlinkMessage::DelRoute(message(dest, prefix_len, gateway, oif, true))
        } else {
            RouteNetlinkMessage::NewRoute(message(dest, prefix_len, gateway, oif, false))
        };
        let flags = if delete { 0 } else { NLM_F_CREATE | NLM_F_EXCL };
        self.request(request, flags, what)?;
        Ok(())
    }

    /// The routes of the main table for `family`.
    pub fn routes(&mut self, family: IpFamily) -> Result<Vec<Route>, HostError> {
        let mut request = RouteMessage::default();
        request.header.address_family = addr::family(unspecified(family));
        let what = What {
            action: "list",
            object: "routes",
        };
        let replies = self.dump(RouteNetlinkMessage::GetRoute(request), what)?;
        Ok(replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewRoute(m) => from_message(m, family),
                _ => None,
            })
            .collect())
    }
}

/// The route in `message`, if it belongs to the main table.
fn from_message(message: &RouteMessage, family: IpFamily) -> Option<Route> {
    let mut table = u32::from(message.header.table);
    let mut route = Route {
        dest: unspecified(family),
        prefix_len: message.header.destination_prefix_length,
        gateway: None,
        oif: None,
        metric: None,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => route.dest = ip(a)?,
            RouteAttribute::Gateway(a) => route.gateway = ip(a),
            RouteAttribute::Oif(oif) => route.oif = Some(*oif),
            RouteAttribute::Priority(metric) => route.metric = Some(*metric),
            _ => {}
        }
    }
    (table == u32::from(RouteHeader::RT_TABLE_MAIN)).then_some(route)
}

fn ip(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_has_no_destination() {
        let gw: IpAddr = "10.0.0.1".parse().unwrap();
        let m = message(unspecified(IpFamily::V4), 0, Some(gw), None, false);
        assert_eq!(m.header.destination_prefix_length, 0);
        assert_eq!(m.header.scope, RouteScope::Universe);
        assert_eq!(
            m.attributes,
            vec![RouteAttribute::Gateway(RouteAddress::Inet(
                "10.0.0.1".parse().unwrap()
            ))]
        );
        let back = from_message(&m, IpFamily::V4).unwrap();
        assert!(back.is_default());
        assert_eq!(back.gateway, Some(gw));
    }

    #[test]
    fn on_link_route_has_link_scope_and_delete_matches_any_scope() {
        let dest: IpAddr = "192.0.2.0".parse().unwrap();
        assert_eq!(
            message(dest, 24, None, Some(3), false).header.scope,
            RouteScope::Link
        );
        let del = message(dest, 24, None, Some(3), true);
        assert_eq!(del.header.scope, RouteScope::NoWhere);
        assert_eq!(del.header.protocol, RouteProtocol::Unspec);
    }

    #[test]
    fn describes_routes() {
        let gw = Some("fd00::1".parse().unwrap());
        assert_eq!(
            describe(unspecified(IpFamily::V6), 0, gw, None),
            "default route via fd00::1"
        );
        assert_eq!(
            describe("192.0.2.0".parse().unwrap(), 24, None, Some("eth0")),
            "route 192.0.2.0/24 dev \"eth0\""
        );
    }
}
