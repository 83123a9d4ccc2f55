//! Address requests on [`Netlink`]: adding, deleting and listing the IPv4
//! and IPv6 addresses of a link.

use std::net::{IpAddr, Ipv4Addr};

use super::{Netlink, What};
use crate::HostError;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
};

/// Checks a prefix length against the family of `addr`.
pub(crate) fn check_prefix(addr: IpAddr, prefix_len: u8) -> Result<(), HostError> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(HostError::invalid(
            "prefix length",
            format!("{addr}/{prefix_len}"),
            "longer than the address",
        ));
    }
    Ok(())
}

pub(crate) fn family(addr: IpAddr) -> AddressFamily {
    if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

/// The directed broadcast address of `addr/prefix_len`, for prefixes that
/// have one (shorter than /31).
fn broadcast(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Addr> {
    (prefix_len < 31).then(|| Ipv4Addr::from(u32::from(addr) | (u32::MAX >> prefix_len)))
}

fn message(index: u32, addr: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = family(addr);
    message.header.prefix_len = prefix_len;
    message.header.index = index;
    message.attributes.push(AddressAttribute::Local(addr));
    message.attributes.push(AddressAttribute::Address(addr));
    if let IpAddr::V4(v4) = addr {
        if let Some(brd) = broadcast(v4, prefix_len) {
            message.attributes.push(AddressAttribute::Broadcast(brd));
        }
    }
    message
}

impl Netlink {
    /// Adds `addr/prefix_len` to the link `name` (with the broadcast address
    /// for IPv4, as `ip addr add ... brd +` does). An address that is already
    /// there is an [`ErrorKind::AlreadyExists`](crate::ErrorKind) error.
    ///
    /// IPv6 addresses go through duplicate address detection: they stay
    /// "tentative" for a second or two once the link has carrier.
    pub fn add_address(
        &mut self,
        name: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), HostError> {
        check_prefix(addr, prefix_len)?;
        let index = self.index_for(name, "add an address to")?;
        let what = What {
            action: "add",
            object: &format!("address {addr}/{prefix_len} to link {name:?}"),
        };
        let request = RouteNetlinkMessage::NewAddress(message(index, addr, prefix_len));
        self.request(request, NLM_F_CREATE | NLM_F_EXCL, what)?;
        Ok(())
    }

    /// Removes `addr/prefix_len` from the link `name`.
    pub fn del_address(
        &mut self,
        name: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), HostError> {
        check_prefix(addr, prefix_len)?;
        let index = self.index_for(name, "remove an address from")?;
        let what = What {
            action: "remove",
            object: &format!("address {addr}/{prefix_len} from link {name:?}"),
        };
        let request = RouteNetlinkMessage::DelAddress(message(index, addr, prefix_len));
        self.request(request, 0, what)?;
        Ok(())
    }

    /// The addresses of the link `name`, IPv4 first, in the kernel's order.
    pub fn addresses(&mut self, name: &str) -> Result<Vec<(IpAddr, u8)>, HostError> {
        let index = self.index_for(name, "list the addresses of")?;
        let object = format!("addresses of link {name:?}");
        let what = What {
            action: "list",
            object: &object,
        };
        let replies = self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            what,
        )?;
        let mut found: Vec<(IpAddr, u8)> = replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewAddress(m) if m.header.index == index => {
                    local_address(m).map(|addr| (addr, m.header.prefix_len))
                }
                _ => None,
            })
            .collect();
        found.sort_by_key(|(addr, _)| addr.is_ipv6());
        Ok(found)
    }
}

/// The link's own address: `IFA_LOCAL` (IPv4, point-to-point) or else
/// `IFA_ADDRESS`.
fn local_address(message: &AddressMessage) -> Option<IpAddr> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(addr) => return Some(*addr),
            AddressAttribute::Address(addr) => address = Some(*addr),
            _ => {}
        }
    }
    address
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_addresses() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(broadcast(a, 24), Some(Ipv4Addr::new(10, 1, 2, 255)));
        assert_eq!(broadcast(a, 0), Some(Ipv4Addr::BROADCAST));
        assert_eq!(broadcast(a, 30), Some(Ipv4Addr::new(10, 1, 2, 3)));
        assert_eq!(broadcast(a, 31), None);
        assert_eq!(broadcast(a, 32), None);
    }

    #[test]
    fn prefix_lengths() {
        check_prefix("10.0.0.1".parse().unwrap(), 32).unwrap();
        check_prefix("fd00::1".parse().unwrap(), 128).unwrap();
        assert!(check_prefix("10.0.0.1".parse().unwrap(), 33).is_err());
        assert!(check_prefix("fd00::1".parse().unwrap(), 129).is_err());
    }

    #[test]
    fn v6_message_has_no_broadcast() {
        let m = message(7, "fd00::1".parse().unwrap(), 64);
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(m.header.index, 7);
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Broadcast(_)))
        );
    }
}
