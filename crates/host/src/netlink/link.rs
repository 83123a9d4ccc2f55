//! Link requests on [`Netlink`]: look-up and listing, veth pairs, deletion,
//! moving to another namespace, renaming, MAC, MTU and up/down.
//!
//! Links are named by the caller; the kernel resolves names itself
//! (`IFLA_IFNAME` with index 0) except for a rename, which needs the index.

use std::os::fd::{AsFd, AsRawFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{
        InfoData, InfoKind, InfoMacVlan, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
        MacVlanMode,
    },
};
use nix::errno::Errno;
use vbridge_wire::MacAddr;

use super::{Netlink, What};
use crate::{HostError, name};

/// A link as listed by [`Netlink::links`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address, when it is an Ethernet one.
    pub mac: Option<MacAddr>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// The link type (`IFLA_INFO_KIND`: "veth", "bridge", "tun", ...), if it has one.
    pub kind: Option<String>,
    /// Its peer or lower device lives in another namespace (`IFLA_LINK_NETNSID`).
    pub link_elsewhere: bool,
    /// The index of the device it is enslaved to (a bridge, bond, team or VRF), if any.
    pub master: Option<u32>,
    /// The loopback device (`IFF_LOOPBACK`).
    pub loopback: bool,
}

impl Link {
    /// Whether the link is a master of other links by its kind (bridge, bond, team,
    /// VRF, ...): such a device is never a switch port.
    pub fn is_master_kind(&self) -> bool {
        matches!(
            self.kind.as_deref(),
            Some("bridge" | "bond" | "team" | "vrf" | "openvswitch" | "hsr" | "macsec")
        )
    }
}

impl Link {
    pub(crate) fn from_message(message: &LinkMessage) -> Self {
        let mut link = Self {
            index: message.header.index,
            name: String::new(),
            mac: None,
            up: message.header.flags.contains(LinkFlags::Up),
            mtu: None,
            kind: None,
            link_elsewhere: false,
            master: None,
            loopback: message.header.flags.contains(LinkFlags::Loopback),
        };
        for attribute in &message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name.clone_from(name),
                LinkAttribute::Address(bytes) => {
                    link.mac = MacAddr::from_bytes(bytes);
                }
                LinkAttribute::Mtu(mtu) => link.mtu = Some(*mtu),
                LinkAttribute::LinkNetNsId(_) => link.link_elsewhere = true,
                LinkAttribute::Controller(index) => link.master = Some(*index).filter(|i| *i != 0),
                LinkAttribute::LinkInfo(infos) => {
                    link.kind = infos.iter().find_map(|i| match i {
                        LinkInfo::Kind(k) => Some(k.to_string()),
                        _ => None,
                    });
                }
                _ => {}
            }
        }
        link
    }
}

fn object(name: &str) -> String {
    format!("link {name:?}")
}

/// A message naming the link `name` (index 0: the kernel looks the name up).
fn by_name(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    message
}

impl Netlink {
    /// The link called `name`, or `None`.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, HostError> {
        name::check_link(name)?;
        let object = object(name);
        let what = What {
            action: "look up",
            object: &object,
        };
        match self.request(RouteNetlinkMessage::GetLink(by_name(name)), 0, what) {
            Ok(replies) => match replies.first() {
                Some(RouteNetlinkMessage::NewLink(message)) => {
                    Ok(Some(Link::from_message(message)))
                }
                _ => Err(HostError::Unexpected {
                    action: what.action,
                    object,
                    detail: "no link in the reply".into(),
                }),
            },
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The index of the link called `name`; `ENODEV`, reported as `action`
    /// on it, when there is none.
    pub(super) fn index_for(&mut self, name: &str, action: &'static str) -> Result<u32, HostError> {
        self.link_index(name)?
            .ok_or_else(|| HostError::from_errno(action, object(name), Errno::ENODEV))
    }

    /// The index of the link called `name`, or `None`.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, HostError> {
        Ok(self.link(name)?.map(|link| link.index))
    }

    /// Whether a link called `name` exists.
    pub fn link_exists(&mut self, name: &str) -> Result<bool, HostError> {
        Ok(self.link(name)?.is_some())
    }

    /// Every link of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, HostError> {
        let what = What {
            action: "list",
            object: "links",
        };
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), what)?;
        Ok(replies
            .iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewLink(message) => Some(Link::from_message(message)),
                _ => None,
            })
            .collect())
    }

    /// Creates the veth pair `name` / `peer`, both in this namespace.
    pub fn create_veth(&mut self, name: &str, peer: &str) -> Result<(), HostError> {
        self.new_veth(name, peer, None)
    }

    /// Creates the veth pair `name` (here) / `peer` (directly in the
    /// namespace `peer_ns`, where the name `peer` must be free).
    pub fn create_veth_with_peer_in(
        &mut self,
        name: &str,
        peer: &str,
        peer_ns: impl AsFd,
    ) -> Result<(), HostError> {
        self.new_veth(name, peer, Some(peer_ns.as_fd().as_raw_fd()))
    }

    fn new_veth(&mut self, name: &str, peer: &str, peer_ns: Option<i32>) -> Result<(), HostError> {
        name::check_link(name)?;
        name::check_link(peer)?;
        let mut peer_message = by_name(peer);
        if let Some(fd) = peer_ns {
            peer_message.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        let mut message = by_name(name);
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        self.new_link(message, &format!("veth pair {name:?}/{peer:?}"))
    }

    /// Creates the link `message` describes (never over an existing one).
    fn new_link(&mut self, message: LinkMessage, object: &str) -> Result<(), HostError> {
        let what = What {
            action: "create",
            object,
        };
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            what,
        )?;
        Ok(())
    }

    /// Creates the macvlan `name` on `parent` (a link of this namespace) in `mode`
    /// (`bridge`, `vepa`, `private`, `passthru`), directly in the namespace `ns`, where
    /// the name `name` must be free.
    pub fn create_macvlan_in(
        &mut self,
        name: &str,
        parent: &str,
        mode: &str,
        ns: impl AsFd,
    ) -> Result<(), HostError> {
        name::check_link(name)?;
        let mode = match mode {
            "bridge" => MacVlanMode::Bridge,
            "vepa" => MacVlanMode::Vepa,
            "private" => MacVlanMode::Private,
            "passthru" => MacVlanMode::Passthrough,
            other => {
                return Err(HostError::invalid(
                    "macvlan mode",
                    other,
                    "use bridge, vepa, private or passthru",
                ));
            }
        };
        let parent_index = self.index_for(parent, "create a macvlan on")?;
        let mut message = by_name(name);
        message.attributes.push(LinkAttribute::Link(parent_index));
        message
            .attributes
            .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::MacVlan),
            LinkInfo::Data(InfoData::MacVlan(vec![InfoMacVlan::Mode(mode)])),
        ]));
        self.new_link(message, &format!("macvlan {name:?} on {parent:?}"))
    }

    /// Deletes the link `name` (for a veth, its peer goes too).
    pub fn delete_link(&mut self, name: &str) -> Result<(), HostError> {
        name::check_link(name)?;
        let what = What {
            action: "delete",
            object: &object(name),
        };
        self.request(RouteNetlinkMessage::DelLink(by_name(name)), 0, what)?;
        Ok(())
    }

    /// Moves the link `name` into the namespace `ns`. It arrives there down,
    /// without its addresses and routes.
    pub fn set_link_netns(&mut self, name: &str, ns: impl AsFd) -> Result<(), HostError> {
        let mut message = by_name(name);
        message
            .attributes
            .push(LinkAttribute::NetNsFd(ns.as_fd().as_raw_fd()));
        self.set_link(name, "move to another namespace", message)
    }

    /// Renames the link `old` to `new`.
    pub fn rename_link(&mut self, old: &str, new: &str) -> Result<(), HostError> {
        name::check_link(old)?;
        name::check_link(new)?;
        let index = self.index_for(old, "rename")?;
        let mut message = by_name(new);
        message.header.index = index;
        let what = What {
            action: "rename",
            object: &format!("link {old:?} to {new:?}"),
        };
        self.request(RouteNetlinkMessage::SetLink(message), 0, what)?;
        Ok(())
    }

    /// Sets the hardware address of the link `name` (a unicast address).
    pub fn set_mac(&mut self, name: &str, mac: MacAddr) -> Result<(), HostError> {
        let reason = if mac.is_multicast() {
            "a multicast address"
        } else if mac.0 == [0; 6] {
            "all zeros"
        } else {
            ""
        };
        if !reason.is_empty() {
            return Err(HostError::invalid("MAC address", mac.to_string(), reason));
        }
        let mut message = by_name(name);
        message
            .attributes
            .push(LinkAttribute::Address(mac.0.to_vec()));
        self.set_link(name, "set the MAC address of", message)
    }

    /// Sets the MTU of the link `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), HostError> {
        let mut message = by_name(name);
        message.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(name, "set the MTU of", message)
    }

    /// Brings the link `name` up.
    pub fn set_up(&mut self, name: &str) -> Result<(), HostError> {
        self.set_flag_up(name, true)
    }

    /// Brings the link `name` down.
    pub fn set_down(&mut self, name: &str) -> Result<(), HostError> {
        self.set_flag_up(name, false)
    }

    fn set_flag_up(&mut self, name: &str, up: bool) -> Result<(), HostError> {
        let mut message = by_name(name);
        message.header.change_mask = LinkFlags::Up;
        if up {
            message.header.flags = LinkFlags::Up;
        }
        self.set_link(name, if up { "bring up" } else { "bring down" }, message)
    }

    fn set_link(
        &mut self,
        name: &str,
        action: &'static str,
        message: LinkMessage,
    ) -> Result<(), HostError> {
        name::check_link(name)?;
        let what = What {
            action,
            object: &object(name),
        };
        self.request(RouteNetlinkMessage::SetLink(message), 0, what)?;
        Ok(())
    }
}
