//! VXLAN requests on [`Netlink`]: a kernel `vxlan` link (VNI, local address, UDP port,
//! learning remote MACs from what it decapsulates) and its head-end replication list:
//! one all-zeros FDB entry per remote VTEP (`bridge fdb append 00:00:00:00:00:00 dst IP
//! dev NAME`), where frames with no learned remote go, each remote a copy.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo},
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
};
use nix::errno::Errno;

use super::{Netlink, What};
use crate::{HostError, name};

/// The largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

impl Netlink {
    /// Creates the VXLAN link `name` for `vni`, sending from `local` to UDP port `port`,
    /// learning which remote has which MAC from what it receives.
    pub fn create_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
    ) -> Result<(), HostError> {
        name::check_link(name)?;
        if !(1..=MAX_VNI).contains(&vni) {
            return Err(HostError::invalid(
                "VNI",
                vni.to_string(),
                "use 1..=16777215",
            ));
        }
        let mut message = netlink_packet_route::link::LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(vni),
                InfoVxlan::Local(local),
                InfoVxlan::Port(port),
                InfoVxlan::Learning(true),
            ])),
        ]));
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | netlink_packet_core::NLM_F_EXCL,
            What {
                action: "create",
                object: &format!("vxlan {name:?}"),
            },
        )?;
        Ok(())
    }

    /// Adds `remote` to the head-end replication list of VXLAN link `name` (already
    /// there: fine).
    pub fn vxlan_add_remote(&mut self, name: &str, remote: Ipv4Addr) -> Result<(), HostError> {
        let index = self.index_for(name, "add a remote to")?;
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message.header.flags = NeighbourFlags::Own;
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
        message
            .attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                remote,
            )));
        let object = format!("remote {remote} of vxlan {name:?}");
        match self.request(
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | NLM_F_APPEND,
            What {
                action: "add",
                object: &object,
            },
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
