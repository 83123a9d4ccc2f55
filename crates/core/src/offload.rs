//! What a driver may hand to a faster path (the kernel, for veth ports) and what it must
//! report back: [`Bridge::offload_target`] says whether every further frame of a flow
//! (ingress port, source MAC, destination MAC) would be decided exactly like this one,
//! with learning as the only side effect; [`Bridge::account_offloaded`] adds what the
//! fast path carried to the counters and refreshes the source's FDB entry, as the frames
//! would have done here.

use vbridge_wire::{MacAddr, Vid};

use crate::bridge::{Bridge, DEFAULT_MAX_FRAME};
use crate::fdb::EntryKind;
use crate::port::{Port, PortId};
use crate::time::Instant;
use crate::vlan::{Classified, TagOp};

/// Where the frames of an offloadable flow go, and the VLAN they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// The one port every frame of the flow leaves by, unchanged.
    pub egress: PortId,
    /// The flow's VLAN (the ingress port's for untagged frames; VLAN 1 without filtering).
    pub vid: Vid,
}

impl Bridge {
    /// Where every further *untagged* frame from `ingress` with `src` -> `dst` goes:
    /// one port, unchanged (no tag pushed), with nothing else to do but refresh `src` in
    /// the FDB; `None` if anything else could happen to such a frame (unknown or local
    /// destination, a source not yet learned there, locked or isolated ports, spanning
    /// tree not forwarding, a port down, a VLAN the egress port tags or does not carry,
    /// an ingress port that takes no untagged frames), so it must keep coming here.
    /// Tagged frames are never covered: a fast path must leave them to the switch.
    pub fn offload_target(&self, ingress: PortId, src: MacAddr, dst: MacAddr) -> Option<Offload> {
        // A lowered frame limit is not something the fast path can check.
        if self.max_frame_len < DEFAULT_MAX_FRAME || !src.is_unicast() || dst.is_multicast() {
            return None;
        }
        let from = self.port(ingress)?;
        if !from.forwards() || from.config.flags.locked {
            return None;
        }
        let class = self.untagged_class(from)?;
        let vid = class.vid;
        if from.config.flags.learning {
            // A source seen elsewhere (a move) or not yet learned needs this path.
            match self.fdb.lookup(vid, src) {
                Some((p, _)) if p == ingress => {}
                _ => return None,
            }
        }
        let (to, kind) = self.fdb.lookup(vid, dst)?;
        if kind == EntryKind::Local || to == ingress {
            return None;
        }
        match self.egress_check(ingress, from, to, class) {
            Ok(TagOp::Keep) => Some(Offload { egress: to, vid }),
            _ => None,
        }
    }

    /// How an untagged frame entering `port` is classified; `None` if it is dropped.
    fn untagged_class(&self, port: &Port) -> Option<Classified> {
        if self.vlan_filtering {
            port.config.vlan.classify(None).ok()
        } else {
            Some(Classified {
                vid: Vid::DEFAULT,
                tagged: false,
                carried: 0,
            })
        }
    }

    /// Counts `packets` frames of `bytes` bytes from `ingress` with source `src` that a
    /// fast path sent as `flow` said, and refreshes `src`'s FDB entry in the flow's VLAN at
    /// `now` if it is still a dynamic entry on `ingress`: counts are old news, so they never
    /// create or move an entry (a station that moved, or a flush, stands).
    pub fn account_offloaded(
        &mut self,
        now: Instant,
        ingress: PortId,
        src: MacAddr,
        flow: Offload,
        packets: u64,
        bytes: u64,
    ) {
        if packets == 0 {
            return;
        }
        let Some(Some(p)) = self.ports.get_mut(ingress.index()) else {
            return;
        };
        p.counters.rx_packets += packets;
        p.counters.rx_bytes += bytes;
        let learns = p.config.flags.learning && p.stp.learns();
        if let Some(Some(out)) = self.ports.get_mut(flow.egress.index()) {
            out.counters.tx_packets += packets;
            out.counters.tx_bytes += bytes;
        }
        if learns {
            self.fdb.refresh(now, flow.vid, src, ingress);
        }
    }
}
