//! VXLAN requests on [`Netlink`]: a kernel `vxlan` link (VNI, local address, UDP port,
//! learning remote MACs from what it decapsulates) and its head-end replication list:
//! one all-zeros FDB entry per remote VTEP (`bridge fdb append 00:00:00:00:00:00 dst IP
//! dev NAME`), where frames with no learned remote go, each remote a copy.

use std::net::Ipv4Addr;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
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
    /// learning which remote has which MAC from what it receives when `learning` (else
    /// only from the entries [`Netlink::vxlan_fdb_set`] gives it).
    pub fn create_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        learning: bool,
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
                InfoVxlan::Learning(learning),
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
        self.vxlan_fdb_set(name, [0; 6], remote)
    }

    /// Adds the entry "`mac` is behind VTEP `remote`" to VXLAN link `name`; the all-zeros
    /// MAC adds `remote` to the head-end replication list (already there: fine).
    pub fn vxlan_fdb_set(
        &mut self,
        name: &str,
        mac: [u8; 6],
        remote: Ipv4Addr,
    ) -> Result<(), HostError> {
        let index = self.index_for(name, "add a forwarding entry to")?;
        let message = fdb_message(index, mac, remote);
        let object = format!(
            "entry {} via {remote} of vxlan {name:?}",
            vbridge_wire::MacAddr(mac)
        );
        // The replication list takes one entry per remote (append); a MAC has one place
        // (replace).
        let how = if mac == [0; 6] {
            NLM_F_APPEND
        } else {
            NLM_F_REPLACE
        };
        match self.request(
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_CREATE | how,
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

    /// Removes the entry for `mac` via `remote` from VXLAN link `name` (gone: fine).
    pub fn vxlan_fdb_del(
        &mut self,
        name: &str,
        mac: [u8; 6],
        remote: Ipv4Addr,
    ) -> Result<(), HostError> {
        let index = self.index_for(name, "remove a forwarding entry from")?;
        let message = fdb_message(index, mac, remote);
        let object = format!(
            "entry {} via {remote} of vxlan {name:?}",
            vbridge_wire::MacAddr(mac)
        );
        match self.request(
            RouteNetlinkMessage::DelNeighbour(message),
            0,
            What {
                action: "remove",
                object: &object,
            },
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == Some(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The entries of VXLAN link `name` that name a remote VTEP: (MAC, remote), the
    /// replication list as all-zeros MACs.
    pub fn vxlan_fdb(&mut self, name: &str) -> Result<Vec<([u8; 6], Ipv4Addr)>, HostError> {
        let index = self.index_for(name, "read the forwarding entries of")?;
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = index;
        let object = format!("forwarding entries of vxlan {name:?}");
        let answers = self.dump(
            RouteNetlinkMessage::GetNeighbour(message),
            What {
                action: "read",
                object: &object,
            },
        )?;
        let mut out = Vec::new();
        for a in answers {
            let RouteNetlinkMessage::NewNeighbour(n) = a else {
                continue;
            };
            if n.header.ifindex != index {
                continue;
            }
            let mut mac = None;
            let mut dst = None;
            for attr in &n.attributes {
                match attr {
                    NeighbourAttribute::LinkLayerAddress(l) if l.len() == 6 => {
                        mac = <[u8; 6]>::try_from(l.as_slice()).ok();
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => dst = Some(*a),
                    // The bridge family's addresses come back as bytes.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                        dst = <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from);
                    }
                    _ => {}
                }
            }
            if let (Some(m), Some(d)) = (mac, dst) {
                out.push((m, d));
            }
        }
        Ok(out)
    }
}

/// An FDB entry of a VXLAN link: `mac` behind `remote`, permanent.
fn fdb_message(index: u32, mac: [u8; 6], remote: Ipv4Addr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.header.flags = NeighbourFlags::Own;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            remote,
        )));
    message
}
