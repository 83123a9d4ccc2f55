//! What a driver may hand to a faster path (the kernel, for veth ports) and what it must
//! report back: [`Bridge::offload_target`] says whether every further frame of a flow
//! (ingress port, 802.1Q tag or none, source MAC, destination MAC) would be decided exactly like this one,
//! with learning as the only side effect; [`Bridge::account_offloaded`] adds what the
//! fast path carried to the counters and refreshes the source's FDB entry, as the frames
//! would have done here. [`Bridge::flood_target`] says the same of broadcasts from one
//! port and tag: which ports get a copy, with which tag. A fast path that floods them
//! still hands the switch each frame's header ([`Bridge::process_head`]), so learning
//! and counting stay here.

use vbridge_wire::{MacAddr, Tag, Vid};

use crate::bridge::{Bridge, DEFAULT_MAX_FRAME};
use crate::decision::{Decision, Delivery};
use crate::fdb::EntryKind;
use crate::port::{Port, PortId};
use crate::time::Instant;
use crate::trace::Forwarding;
use crate::vlan::{Classified, TagOp};

/// Where the frames of an offloadable flow go, the VLAN they belong to and the tag they
/// leave with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offload {
    /// The one port every frame of the flow leaves by.
    pub egress: PortId,
    /// The flow's VLAN (the ingress port's for untagged frames; VLAN 1 without filtering).
    pub vid: Vid,
    /// The 802.1Q tag the frames leave with (`None`: untagged). Against the tag they came
    /// with, this says what a fast path does: keep, push, pop or rewrite it.
    pub tag: Option<Vid>,
}

/// Where broadcasts entering one port with one tag (or none) go: every copy the switch
/// would send, with the tag each leaves with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodOffload {
    /// The frames' VLAN.
    pub vid: Vid,
    /// Each egress port and the 802.1Q tag its copy leaves with (`None`: untagged), in
    /// port order.
    pub copies: Vec<(PortId, Option<Vid>)>,
}

/// The 802.1Q tag a frame that came with `tag` leaves with after `op`; `None` if that
/// is no tag a fast path can give (a pushed VID 0).
fn tag_after(op: TagOp, tag: Option<Vid>) -> Option<Option<Vid>> {
    Some(match op {
        TagOp::Keep => tag,
        TagOp::Push(t) => Some(Vid::new(t.vid).ok()?),
        TagOp::Pop => None,
        TagOp::SetVid(v) => Some(v),
    })
}

impl Bridge {
    /// Where every further broadcast from `ingress`, untagged (`tag` `None`) or with an
    /// 802.1Q tag of VID `tag`, goes: the same copies for every such frame from any
    /// unicast source, whose learning the switch does from the frame's header
    /// ([`Bridge::process_head`]). `None` if the frames are dropped, if the answer
    /// depends on more than port and tag (locked ports, a lowered frame limit) or if no
    /// port would get a copy.
    pub fn flood_target(&self, ingress: PortId, tag: Option<Vid>) -> Option<FloodOffload> {
        if self.max_frame_len < DEFAULT_MAX_FRAME {
            return None;
        }
        let from = self.port(ingress)?;
        if !from.forwards() || from.config.flags.locked {
            return None;
        }
        let class = self.class_of(from, tag)?;
        // The copies the switch's own flood makes (none: dropped, `NoFloodTarget`).
        let mut d = Decision::new();
        let kind = Delivery::FloodBroadcast;
        self.flood(ingress, from, class, kind, &mut d, &mut Forwarding)
            .ok()?;
        let copies = d
            .egress
            .iter()
            .map(|e| Some((e.port, tag_after(e.op, tag)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(FloodOffload {
            vid: class.vid,
            copies,
        })
    }

    /// Where every further frame from `ingress` with `src` -> `dst`, untagged (`tag`
    /// `None`) or with an 802.1Q tag of VID `tag`, goes: one port (the host port for a
    /// local destination), with the tag the result says and nothing else to do but
    /// refresh `src` in the FDB; `None` if anything else could happen to such a frame
    /// (an unknown destination, a local one without a host port, a source not yet
    /// learned there, locked or isolated ports, spanning tree not forwarding, a port down,
    /// a VLAN the ingress port does not take or the egress port does not carry), so it
    /// must keep coming here. Priority-tagged frames, 802.1ad tags and frames with more
    /// than one tag are never covered: a fast path must leave them to the switch.
    pub fn offload_target(
        &self,
        ingress: PortId,
        tag: Option<Vid>,
        src: MacAddr,
        dst: MacAddr,
    ) -> Option<Offload> {
        // A lowered frame limit is not something the fast path can check.
        if self.max_frame_len < DEFAULT_MAX_FRAME || !src.is_unicast() || dst.is_multicast() {
            return None;
        }
        let from = self.port(ingress)?;
        if !from.forwards() || from.config.flags.locked {
            return None;
        }
        let class = self.class_of(from, tag)?;
        let vid = class.vid;
        if from.config.flags.learning {
            // A source seen elsewhere (a move) or not yet learned needs this path; a local
            // one (the bridge's own MAC, as the host port sends) is never learned.
            match self.fdb.lookup(vid, src) {
                Some((p, kind)) if p == ingress || kind == EntryKind::Local => {}
                _ => return None,
            }
        }
        let (to, kind) = self.fdb.lookup(vid, dst)?;
        // Frames for the bridge (its MAC or a port's) go to the host port.
        let to = if kind == EntryKind::Local {
            self.host_port?
        } else {
            to
        };
        if to == ingress {
            return None;
        }
        let out = tag_after(self.egress_check(ingress, from, to, class).ok()?, tag)?;
        Some(Offload {
            egress: to,
            vid,
            tag: out,
        })
    }

    /// How a frame entering `port` untagged or with an 802.1Q tag of VID `tag` is
    /// classified; `None` if it is dropped.
    fn class_of(&self, port: &Port, tag: Option<Vid>) -> Option<Classified> {
        if self.vlan_filtering {
            port.config.vlan.classify(tag.map(Tag::dot1q)).ok()
        } else {
            Some(Classified {
                vid: Vid::DEFAULT,
                tagged: tag.is_some(),
                carried: tag.map_or(0, Vid::get),
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
