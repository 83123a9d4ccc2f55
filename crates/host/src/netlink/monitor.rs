//! [`LinkMonitor`]: the kernel's link notifications (`RTNLGRP_LINK`) in one network
//! namespace, as they happen: a device added or changed (MAC, MTU, up/down, name, its
//! peer moved) or removed. A monitor that fell behind (`ENOBUFS`: the kernel dropped
//! notifications) says so with [`LinkEvent::Overrun`], and its reader re-reads the links
//! it cares about.

use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::{Link, NLMSG_HDRLEN};
use crate::HostError;

/// The link notification group's bit (`RTMGRP_LINK`).
const RTMGRP_LINK: u32 = 1;

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The link is new or changed; this is how it is now.
    Changed(Link),
    /// The link was deleted (or moved to another namespace).
    Removed(Link),
    /// Notifications were lost: re-read what matters.
    Overrun,
}

/// A socket subscribed to link notifications in the namespace it was opened in.
#[derive(Debug)]
pub struct LinkMonitor {
    socket: Socket,
}

impl LinkMonitor {
    /// Subscribes in the calling thread's network namespace.
    pub fn new() -> Result<Self, HostError> {
        let fail = |e| HostError::io("subscribe to", "link notifications", e);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(fail)?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .map_err(fail)?;
        // Room for bursts (namespaces made by the hundred); best effort.
        let _ = socket.set_rx_buf_sz(4usize << 20);
        socket.set_non_blocking(true).map_err(fail)?;
        Ok(Self { socket })
    }

    /// Waits up to `timeout` for notifications and returns every one waiting (none when
    /// the time passed quietly).
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<LinkEvent>, HostError> {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(HostError::from_errno("wait for", "link notifications", e)),
        }
        let mut events = Vec::new();
        loop {
            let datagram = match self.socket.recv_from_full() {
                Ok((d, _)) => d,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc_enobufs()) => {
                    events.push(LinkEvent::Overrun);
                    continue;
                }
                Err(e) => return Err(HostError::io("read", "link notifications", e)),
            };
            parse(&datagram, &mut events);
        }
        Ok(events)
    }
}

fn libc_enobufs() -> i32 {
    nix::errno::Errno::ENOBUFS as i32
}

/// The link messages of one datagram; anything else (or undecodable) is skipped.
fn parse(datagram: &[u8], out: &mut Vec<LinkEvent>) {
    let mut offset = 0;
    while offset < datagram.len() {
        let bytes = &datagram[offset..];
        let Ok(header) = NetlinkBuffer::new_checked(bytes) else {
            return;
        };
        let length = (header.length() as usize).max(NLMSG_HDRLEN);
        offset += length.next_multiple_of(4);
        let Some(raw) = bytes.get(..length) else {
            return;
        };
        let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw) else {
            continue;
        };
        match message.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                out.push(LinkEvent::Changed(Link::from_message(&m)));
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
                out.push(LinkEvent::Removed(Link::from_message(&m)));
            }
            _ => {}
        }
    }
}
