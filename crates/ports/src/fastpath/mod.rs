//! [`FastPath`]: forwarding of known unicast flows between ports on netdevs inside the
//! kernel.
//!
//! The switch keeps deciding: when it has sent a flow (ingress port, destination MAC,
//! source MAC, 802.1Q tag or none) to one egress port, it may [`FastPath::insert`] it,
//! with how the frames leave ([`Egress`]). From then on the ingress netdev's tcx program
//! gives that flow's frames their tag and hands them on: straight to the namespace behind
//! an egress veth whose peer is elsewhere (`bpf_redirect_peer`: no copy, GSO super-frames
//! kept whole, no userspace hop), or out of any other egress netdev (`bpf_redirect`),
//! counting them per flow, and the ingress port's socket filter keeps them from the
//! switch, which sees them again the moment the flow is removed. Broadcasts are flooded
//! the same way by ingress port and VLAN ([`FastPath::insert_flood`]): the kernel sends
//! the copies, and the switch gets only each frame's Ethernet header, to learn from and
//! count ([`PacketBuf::flooded_len`](crate::PacketBuf::flooded_len)). Everything is held
//! by descriptors: a daemon that exits, even by `kill -9`, leaves nothing behind. The
//! programs are in `prog`.

pub(crate) mod prog;
#[cfg(test)]
mod test_run;

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::PortError;
use crate::port::MacAddr;
use crate::sys::bpf;
use prog::{FLOOD, FLOOD_KEY_LEN, FLOOD_VALUE_LEN, KEY_LEN, MAX_CLONES, VALUE_LEN};

/// The license the kernel is told for our programs (GPL-compatible, for its helpers).
const LICENSE: &CStr = c"Dual MIT/GPL";

/// Ports and VLANs whose broadcasts one flow table can flood at most.
pub const MAX_FLOODS: u32 = 4096;

/// One flow the kernel forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// ifindex of the ingress port's netdev (a host-side veth, a NIC, a TAP the switch
    /// reads).
    pub ingress: u32,
    pub dst: MacAddr,
    pub src: MacAddr,
    /// The VID of the frames' 802.1Q tag as they arrive, 0 for untagged frames.
    pub vid: u16,
}

impl FlowKey {
    fn to_bytes(self) -> [u8; KEY_LEN] {
        let mut k = [0u8; KEY_LEN];
        k[..4].copy_from_slice(&self.ingress.to_ne_bytes());
        k[4..10].copy_from_slice(&self.dst.0);
        k[10..16].copy_from_slice(&self.src.0);
        k[16..18].copy_from_slice(&self.vid.to_ne_bytes());
        k
    }
}

/// Where and how the kernel sends a flow's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    /// ifindex of the egress port's netdev.
    pub ifindex: u32,
    /// The longest frame it may pass (GSO super-frames of any length pass).
    pub max_len: u32,
    /// The VID of the 802.1Q tag the frames leave with (0: untagged; the kernel pushes,
    /// pops or rewrites the tag they came with).
    pub tag: u16,
    /// How the frames reach the port.
    pub via: Via,
}

/// How the kernel hands a frame to an egress port's netdev.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Via {
    /// Straight to the namespace behind a veth whose peer is in another namespace
    /// (`bpf_redirect_peer`; floods send copies out of the veth instead).
    Peer,
    /// Sent out of the netdev (`bpf_redirect`): a NIC, a veth whose peer is here, a TAP
    /// someone else reads.
    Out,
    /// Received by the netdev (`bpf_redirect` with `BPF_F_INGRESS`): a TAP the switch
    /// itself reads, such as the bridge's host port, whose frames from the switch are
    /// what its netdev receives.
    In,
}

impl Via {
    /// How the program reads it: 0 peer, 1 out, 2 in.
    fn code(self) -> u32 {
        match self {
            Via::Peer => 0,
            Via::Out => 1,
            Via::In => 2,
        }
    }
}

/// How test flows leave: to the peer of netdev `ifindex`, tagged `tag` (0: untagged).
#[cfg(test)]
pub(crate) fn to_peer(ifindex: u32, tag: u16) -> Egress {
    Egress {
        ifindex,
        max_len: 1518,
        tag,
        via: Via::Peer,
    }
}

/// The broadcasts the kernel floods: those entering netdev `ingress` untagged (`vid` 0)
/// or with an 802.1Q tag of VID `vid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FloodKey {
    pub ingress: u32,
    pub vid: u16,
}

impl FloodKey {
    fn to_bytes(self) -> [u8; FLOOD_KEY_LEN] {
        let mut k = [0u8; FLOOD_KEY_LEN];
        k[..4].copy_from_slice(&self.ingress.to_ne_bytes());
        k[4..].copy_from_slice(&u32::from(self.vid).to_ne_bytes());
        k
    }
}

/// Where the kernel floods a [`FloodKey`]'s broadcasts: to each netdev in `copies` (its
/// ifindex, the VID of the tag the copy leaves with or 0 for untagged, and how it gets
/// there: [`Via::In`] has the netdev receive it, any other sends it out of the netdev).
/// Frames longer than `max_len`, and GSO super-frames, go to the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flood {
    pub max_len: u32,
    pub copies: Vec<(u32, u16, Via)>,
}

impl Flood {
    /// Whether the kernel program can flood this (see [`FastPath::insert_flood`]).
    pub fn fits(&self) -> bool {
        self.to_bytes().is_some()
    }

    /// The map value, or `None` if the kernel program cannot flood this: no copies,
    /// tagged copies with different VIDs, or more copies of one kind than it clones.
    fn to_bytes(&self) -> Option<Vec<u8>> {
        let mut untagged: Vec<u32> = Vec::new();
        let mut tagged: Vec<u32> = Vec::new();
        let mut vid = 0;
        for &(ifindex, tag, via) in &self.copies {
            // The program reads the top bit as "received by the netdev".
            if ifindex >= prog::INGRESS_BIT {
                return None;
            }
            let ifindex = if via == Via::In {
                ifindex | prog::INGRESS_BIT
            } else {
                ifindex
            };
            if tag == 0 {
                untagged.push(ifindex);
            } else if vid == 0 || vid == tag {
                vid = tag;
                tagged.push(ifindex);
            } else {
                return None;
            }
        }
        // The last copy is the frame itself (tagged if any copy is).
        let last = if tagged.is_empty() {
            &mut untagged
        } else {
            &mut tagged
        }
        .pop()?;
        if untagged.len() > MAX_CLONES || tagged.len() > MAX_CLONES {
            return None;
        }
        let mut v = vec![0u8; FLOOD_VALUE_LEN];
        let mut put = |at: usize, x: u32| v[at..at + 4].copy_from_slice(&x.to_ne_bytes());
        put(FLOOD::MAX_LEN, self.max_len);
        put(FLOOD::VID, u32::from(vid));
        put(FLOOD::N_UNTAGGED, untagged.len() as u32);
        put(FLOOD::N_TAGGED, tagged.len() as u32);
        put(FLOOD::LAST, last);
        for (i, x) in untagged.iter().enumerate() {
            put(FLOOD::UNTAGGED + 4 * i, *x);
        }
        for (i, x) in tagged.iter().enumerate() {
            put(FLOOD::TAGGED + 4 * i, *x);
        }
        Some(v)
    }
}

/// What the kernel forwarded for a flow since it was inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub packets: u64,
    pub bytes: u64,
}

/// A flow as stored: where it goes and what it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub key: FlowKey,
    /// ifindex of the egress port's netdev (how frames reach it: [`Via`]).
    pub egress: u32,
    pub stats: FlowStats,
}

fn decode_value(v: &[u8; VALUE_LEN]) -> (u32, FlowStats) {
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v[i..i + 8]);
        u64::from_ne_bytes(b)
    };
    (
        u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
        FlowStats {
            packets: u64_at(8),
            bytes: u64_at(16),
        },
    )
}

fn err(op: &'static str, e: std::io::Error) -> PortError {
    PortError::io("fastpath", op, e)
}

/// The flow table, shared by every port attached to it, with its two programs (loaded
/// once, attached to each port).
#[derive(Debug)]
pub struct FastPath {
    map: bpf::Map,
    /// The broadcasts the kernel floods.
    floods: bpf::Map,
    /// The socket filter of the ports' `AF_PACKET` sockets.
    hide: OwnedFd,
    /// The tcx program of the ports' netdevs: at their ingress, and at the egress of the
    /// TAPs the switch reads itself (the host port, VLAN gateways: the host's frames are
    /// what their netdevs transmit).
    redirect: OwnedFd,
}

/// One port's part: the tcx link on its netdev (detached when dropped; the socket
/// filter goes with the socket, or with [`FastPort::detach`]).
#[derive(Debug)]
pub struct FastPort {
    _link: OwnedFd,
}

impl FastPath {
    /// An empty flow table for up to `max_flows` flows of frames up to `max_len` bytes
    /// (GSO super-frames included; longer ones go to the switch). Fails where the kernel
    /// has no BPF for us (no `CAP_BPF`/`CAP_NET_ADMIN`, or too old: tcx needs Linux 6.6).
    pub fn new(max_flows: u32, max_len: u32) -> Result<FastPath, PortError> {
        let map = bpf::Map::hash(KEY_LEN as u32, VALUE_LEN as u32, max_flows)
            .map_err(|e| err("create flow map", e))?;
        let floods = bpf::Map::hash(FLOOD_KEY_LEN as u32, FLOOD_VALUE_LEN as u32, MAX_FLOODS)
            .map_err(|e| err("create flood map", e))?;
        let hide = bpf::prog_load(
            bpf::PROG_SOCKET_FILTER,
            0,
            &prog::hide(map.raw_fd(), floods.raw_fd(), max_len),
            LICENSE,
        )
        .map_err(|e| err("load socket filter", e))?;
        let redirect = bpf::prog_load(
            bpf::PROG_SCHED_CLS,
            bpf::ATTACH_TCX_INGRESS,
            &prog::redirect(map.raw_fd(), floods.raw_fd(), max_len),
            LICENSE,
        )
        .map_err(|e| err("load tcx program", e))?;
        Ok(FastPath {
            map,
            floods,
            hide,
            redirect,
        })
    }

    /// Attaches the port on netdev `ifindex` (a host-side veth in the calling thread's
    /// namespace), whose frames the switch reads from `sock`: flows entering there may
    /// then be forwarded by the kernel.
    pub fn attach(&self, ifindex: u32, sock: BorrowedFd<'_>) -> Result<FastPort, PortError> {
        self.attach_filter(sock)?;
        self.link(ifindex).inspect_err(|_| {
            let _ = bpf::detach_socket_filter(sock);
        })
    }

    /// The socket filter on `sock` alone (quick): it hides from the switch only frames
    /// of flows in the map and cuts only broadcasts of floods in it, and neither enters
    /// by a port before [`FastPath::link`].
    pub fn attach_filter(&self, sock: BorrowedFd<'_>) -> Result<(), PortError> {
        bpf::attach_socket_filter(sock, self.hide.as_fd()).map_err(|e| err("SO_ATTACH_BPF", e))
    }

    /// The tcx program on netdev `ifindex` (in the calling thread's namespace), which
    /// waits for an RCU grace period: the port's part of the fast path.
    pub fn link(&self, ifindex: u32) -> Result<FastPort, PortError> {
        let link = bpf::tcx_ingress_link(self.redirect.as_fd(), ifindex)
            .map_err(|e| err("attach tcx ingress", e))?;
        Ok(FastPort { _link: link })
    }

    /// The tcx program on the egress of netdev `ifindex` (in the calling thread's
    /// namespace): for a TAP the switch reads itself (the host port, a VLAN gateway), whose
    /// transmitted frames are what enters the switch by that port. They need no socket
    /// filter: frames the program takes never reach the TAP's reader. Flows entering
    /// there must not use [`Via::Peer`] (`bpf_redirect_peer` works at ingress only; the
    /// kernel drops such frames), and no flood may be inserted for it (the switch would
    /// not see the frames to learn from).
    pub fn link_egress(&self, ifindex: u32) -> Result<FastPort, PortError> {
        let link = bpf::tcx_egress_link(self.redirect.as_fd(), ifindex)
            .map_err(|e| err("attach tcx egress", e))?;
        Ok(FastPort { _link: link })
    }

    /// Lets the kernel forward `key`'s frames as `to` says, with fresh counters.
    pub fn insert(&self, key: FlowKey, to: Egress) -> Result<(), PortError> {
        let mut v = [0u8; VALUE_LEN];
        v[..4].copy_from_slice(&to.ifindex.to_ne_bytes());
        v[4..8].copy_from_slice(&to.max_len.to_ne_bytes());
        v[24..28].copy_from_slice(&u32::from(to.tag).to_ne_bytes());
        v[28..32].copy_from_slice(&to.via.code().to_ne_bytes());
        self.map
            .update(&key.to_bytes(), &v)
            .map_err(|e| err("insert flow", e))
    }

    /// Gives `key` back to the switch; whether it was there.
    pub fn remove(&self, key: FlowKey) -> Result<bool, PortError> {
        self.map
            .delete(&key.to_bytes())
            .map_err(|e| err("remove flow", e))
    }

    /// Lets the kernel flood `key`'s broadcasts as `to` says. Fails with `EINVAL` when
    /// the program cannot (see [`Flood`]); the switch then floods them itself.
    pub fn insert_flood(&self, key: FloodKey, to: &Flood) -> Result<(), PortError> {
        let v = to.to_bytes().ok_or_else(|| {
            err(
                "insert flood",
                std::io::Error::from_raw_os_error(libc::EINVAL),
            )
        })?;
        self.floods
            .update(&key.to_bytes(), &v)
            .map_err(|e| err("insert flood", e))
    }

    /// Gives `key`'s broadcasts back to the switch; whether the kernel had them.
    pub fn remove_flood(&self, key: FloodKey) -> Result<bool, PortError> {
        self.floods
            .delete(&key.to_bytes())
            .map_err(|e| err("remove flood", e))
    }

    /// `key`'s flow, if the kernel has it.
    pub fn get(&self, key: FlowKey) -> Result<Option<Flow>, PortError> {
        let mut v = [0u8; VALUE_LEN];
        let found = self
            .map
            .lookup(&key.to_bytes(), &mut v)
            .map_err(|e| err("read flow", e))?;
        Ok(found.then(|| {
            let (egress, stats) = decode_value(&v);
            Flow { key, egress, stats }
        }))
    }
}

/// Takes the socket filter [`FastPath::attach`] set off `sock`; the tcx program goes when
/// the port's [`FastPort`] is dropped.
pub(crate) fn detach_filter(sock: BorrowedFd<'_>) -> Result<(), PortError> {
    bpf::detach_socket_filter(sock).map_err(|e| err("SO_DETACH_BPF", e))
}
