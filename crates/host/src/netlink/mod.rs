//! [`Netlink`]: a blocking `NETLINK_ROUTE` socket and its request/reply
//! exchange (sequence numbers, acks, dumps, errors with the kernel's
//! extended-ack text). The requests themselves live beside it: links in
//! `link.rs`, addresses in `addr.rs`, routes in `route.rs`.
//!
//! A netlink socket talks to the network namespace it was opened in, for its
//! whole life: open one per namespace, inside it ([`Netlink::new_in`]).

mod addr;
mod link;
mod monitor;
mod route;
mod vxlan;

pub use vxlan::MAX_VNI;

use std::os::fd::AsFd;

pub use self::{
    link::Link,
    monitor::{LinkEvent, LinkMonitor},
    route::Route,
};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NlasIterator,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{HostError, OsError, netns};

/// Length of a netlink message header (`struct nlmsghdr`).
const NLMSG_HDRLEN: usize = 16;

/// Extended-ack attribute carrying the kernel's text (`NLMSGERR_ATTR_MSG`).
const NLMSGERR_ATTR_MSG: u16 = 1;

/// IP version of an address or a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of `addr`.
    pub fn of(addr: std::net::IpAddr) -> Self {
        if addr.is_ipv4() { Self::V4 } else { Self::V6 }
    }
}

/// What a request does, to what: the context of its errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct What<'a> {
    pub(crate) action: &'static str,
    pub(crate) object: &'a str,
}

/// A blocking `NETLINK_ROUTE` socket in one network namespace.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, HostError> {
        let fail = |e| HostError::io("open", "netlink socket", e);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket.bind_auto().map_err(fail)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(fail)?;
        // Best effort (Linux >= 4.12): short error replies that carry the
        // kernel's explanation.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Self {
            socket,
            sequence: 0,
        })
    }

    /// Opens a socket in the network namespace `ns`; it keeps acting there
    /// whichever thread uses it.
    pub fn new_in(ns: impl AsFd) -> Result<Self, HostError> {
        netns::run_in(ns, Self::new)
    }

    /// Sends a request that the kernel acknowledges and returns the messages
    /// it answered with before the ack.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: What<'_>,
    ) -> Result<Vec<RouteNetlinkMessage>, HostError> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_ACK | flags, what)
    }

    /// Sends a dump request and returns every message of the dump.
    pub(crate) fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        what: What<'_>,
    ) -> Result<Vec<RouteNetlinkMessage>, HostError> {
        self.exchange(message, NLM_F_REQUEST | NLM_F_DUMP, what)
    }

    fn exchange(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        what: What<'_>,
    ) -> Result<Vec<RouteNetlinkMessage>, HostError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|e| HostError::io(what.action, what.object, e))?;

        let mut replies = Vec::new();
        loop {
            let datagram = match self.socket.recv_from_full() {
                Ok((datagram, _)) => datagram,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HostError::io(what.action, what.object, e)),
            };
            let mut offset = 0;
            while offset < datagram.len() {
                let bytes = &datagram[offset..];
                let header = NetlinkBuffer::new_checked(bytes).map_err(|e| decode(what, e))?;
                let length = (header.length() as usize).max(NLMSG_HDRLEN);
                offset += length.next_multiple_of(4);
                if header.sequence_number() != self.sequence {
                    // Left over from an earlier request abandoned on error.
                    continue;
                }
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&bytes[..length]).map_err(|e| decode(what, e))?;
                let reply_flags = reply.header.flags;
                match reply.payload {
                    NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                    NetlinkPayload::Error(error) => match error.code {
                        None => return Ok(replies),
                        Some(code) => {
                            let text = extended_ack_text(reply_flags, &error.header);
                            let cause = OsError::from_raw(code.get()).with_kernel_message(text);
                            return Err(HostError::os(what.action, what.object, cause));
                        }
                    },
                    NetlinkPayload::Done(done) => {
                        if done.code != 0 {
                            let cause = OsError::from_raw(done.code);
                            return Err(HostError::os(what.action, what.object, cause));
                        }
                        return Ok(replies);
                    }
                    NetlinkPayload::Noop => {}
                    other => {
                        return Err(HostError::Unexpected {
                            action: what.action,
                            object: what.object.to_owned(),
                            detail: format!("message type {}", other.message_type()),
                        });
                    }
                }
            }
        }
    }
}

fn decode(what: What<'_>, source: netlink_packet_core::DecodeError) -> HostError {
    HostError::Decode {
        action: what.action,
        object: what.object.to_owned(),
        source,
    }
}

/// The kernel's text in an error reply (`NLMSGERR_ATTR_MSG`), if any.
///
/// `payload` is what follows the error code: the request's header (and its
/// body unless `NLM_F_CAPPED`), then, with `NLM_F_ACK_TLVS`, attributes.
fn extended_ack_text(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let request_len = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let len = u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
        (len as usize).next_multiple_of(4)
    };
    let attributes = payload.get(request_len..)?;
    for nla in NlasIterator::new(attributes) {
        let nla = nla.ok()?;
        if nla.kind() == NLMSGERR_ATTR_MSG {
            let text = nla.value().split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error reply's payload after the code: a capped request header,
    /// then one `NLMSGERR_ATTR_MSG` attribute.
    fn capped_payload(text: &[u8]) -> Vec<u8> {
        let mut payload = vec![0u8; NLMSG_HDRLEN];
        payload[..4].copy_from_slice(&40u32.to_ne_bytes());
        let nla_len = 4 + text.len();
        payload.extend_from_slice(&(nla_len as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        payload.resize(payload.len().next_multiple_of(4), 0);
        payload
    }

    #[test]
    fn reads_extended_ack_text() {
        let payload = capped_payload(b"Peer netns reference is invalid\0");
        let text = extended_ack_text(NLM_F_CAPPED | NLM_F_ACK_TLVS, &payload);
        assert_eq!(text.as_deref(), Some("Peer netns reference is invalid"));
    }

    #[test]
    fn no_text_without_tlv_flag_or_attribute() {
        let payload = capped_payload(b"x\0");
        assert_eq!(extended_ack_text(NLM_F_CAPPED, &payload), None);
        let header_only = vec![0u8; NLMSG_HDRLEN];
        assert_eq!(
            extended_ack_text(NLM_F_CAPPED | NLM_F_ACK_TLVS, &header_only),
            None
        );
    }

    #[test]
    fn uncapped_reply_skips_whole_request() {
        // Request of 20 bytes (header + 4 byte body), padded to 20.
        let mut payload = vec![0u8; 20];
        payload[..4].copy_from_slice(&20u32.to_ne_bytes());
        payload.extend_from_slice(&capped_payload(b"why\0")[NLMSG_HDRLEN..]);
        assert_eq!(
            extended_ack_text(NLM_F_ACK_TLVS, &payload).as_deref(),
            Some("why")
        );
    }
}
