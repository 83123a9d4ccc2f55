//! Frame handling: one frame in, one [`Decision`] out. Checks, VLAN classification,
//! learning, destination lookup, flooding and the egress filters, with every refusal
//! counted by reason against the ingress port. The same decision function explains a
//! frame step by step for `vbr trace` (see `trace.rs`), generic over a [`Probe`].

use vbridge_wire::vlan::outer_tag;
use vbridge_wire::{MacAddr, Vid};

use crate::bridge::Bridge;
use crate::counters::DropReason;
use crate::decision::{Decision, Delivery, Egress, Verdict};
use crate::fdb::{EntryKind, Learned};
use crate::port::{Port, PortId};
use crate::time::Instant;
use crate::trace::{Exclusion, Forwarding, Learning, Lookup, Probe, Step};
use crate::vlan::{Classified, TagOp};

/// Bytes of the Ethernet header.
const ETH_HLEN: usize = 14;

impl Bridge {
    /// Decides what to do with `frame`, received at `now` on `ingress`, into `d`.
    ///
    /// Never panics and never allocates once `d.egress` has room for every port.
    pub fn process(&mut self, now: Instant, ingress: PortId, frame: &[u8], d: &mut Decision) {
        self.decide_into(now, ingress, frame, frame.len(), d, &mut Forwarding);
    }

    /// [`Bridge::process`] for a frame a fast path already delivered (a broadcast it
    /// flooded, see [`Bridge::flood_target`]), of which the driver holds only `head`
    /// (the Ethernet header, with its 802.1Q tag if it came with one) and knows the
    /// length on the wire, `len`: the decision learns and counts as for the whole frame;
    /// the driver sends nothing.
    pub fn process_head(
        &mut self,
        now: Instant,
        ingress: PortId,
        head: &[u8],
        len: usize,
        d: &mut Decision,
    ) {
        self.decide_into(now, ingress, head, len.max(head.len()), d, &mut Forwarding);
    }

    /// The decision for `frame` (`len` bytes on the wire) into `d`, watched by `probe`
    /// (which says whether it changes state: see `trace.rs`).
    #[inline(always)]
    pub(crate) fn decide_into<P: Probe>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        len: usize,
        d: &mut Decision,
        probe: &mut P,
    ) {
        d.reset();
        if let Err(r) = self.decide(now, ingress, frame, d, probe) {
            d.verdict = Verdict::Drop(r);
            d.egress.clear();
        }
        if P::APPLY {
            self.account(ingress, len, d);
        }
    }

    /// Starts bringing the FDB entries `frame` will touch into the cache, without deciding
    /// anything or waiting for memory.
    ///
    /// A driver holding a batch of received frames calls this for every frame first and
    /// then [`Bridge::process`] for each: the lookups of a large table then miss the cache
    /// in parallel instead of one after another. Bursts of about 32 frames work best;
    /// warming a few frames ahead of each decision instead measured slower.
    #[inline]
    pub fn warm(&self, ingress: PortId, frame: &[u8]) {
        let (Some(port), Some(dst), Some(src)) = (
            self.port(ingress),
            MacAddr::from_bytes(frame),
            frame.get(6..).and_then(MacAddr::from_bytes),
        ) else {
            return;
        };
        let vid = if self.vlan_filtering {
            match outer_tag(frame).map(|t| port.config.vlan.classify(t)) {
                Ok(Ok(c)) => c.vid,
                _ => return,
            }
        } else {
            Vid::DEFAULT
        };
        self.fdb.prefetch(vid, src);
        if !dst.is_multicast() {
            self.fdb.prefetch(vid, dst);
        }
    }

    /// Counters for a decided frame.
    #[inline]
    fn account(&mut self, ingress: PortId, len: usize, d: &Decision) {
        let Some(Some(p)) = self.ports.get_mut(ingress.index()) else {
            if let Verdict::Drop(r) = d.verdict {
                self.orphan_drops.bump(r);
            }
            return;
        };
        let c = &mut p.counters;
        c.rx_packets += 1;
        c.rx_bytes += len as u64;
        match d.verdict {
            Verdict::Drop(r) => c.drops.bump(r),
            Verdict::Control => c.rx_control += 1,
            Verdict::Forward => {}
        }
        let flood = d.delivery.is_some_and(Delivery::is_flood);
        if flood {
            c.rx_flooded += 1;
        }
        for e in &d.egress {
            if let Some(Some(out)) = self.ports.get_mut(e.port.index()) {
                let c = &mut out.counters;
                c.tx_packets += 1;
                c.tx_bytes += match e.op {
                    TagOp::Push(_) => len as u64 + 4,
                    TagOp::Pop => len as u64 - 4,
                    TagOp::Keep | TagOp::SetVid(_) => len as u64,
                };
                c.tx_flooded += u64::from(flood);
            }
        }
    }

    #[inline]
    fn decide<P: Probe>(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
        d: &mut Decision,
        probe: &mut P,
    ) -> Result<(), DropReason> {
        let port = self.port(ingress).ok_or(DropReason::UnknownPort)?;
        probe.step(|| Step::Ingress {
            port: ingress,
            up: port.config.up,
            stp: port.stp,
            flags: port.config.flags,
        });
        if frame.len() < ETH_HLEN {
            return Err(DropReason::Truncated);
        }
        if frame.len() > self.max_frame_len {
            return Err(DropReason::Oversized);
        }
        if !port.config.up {
            return Err(DropReason::PortDown);
        }
        let dst = MacAddr::from_bytes(frame).ok_or(DropReason::Truncated)?;
        let src = MacAddr::from_bytes(&frame[6..]).ok_or(DropReason::Truncated)?;

        if let Some(i) = dst.reserved_group_index() {
            let forwarded = self.link_local_forwarded(i);
            probe.step(|| Step::Reserved {
                index: i,
                forwarded,
            });
            if !forwarded {
                if i == 1 {
                    return Err(DropReason::ReservedGroup); // pause frames are never ours to read
                }
                if i == 0 {
                    // A BPDU while spanning tree runs: the engine takes it (never forwarded).
                    probe.step(|| Step::SpanningTree);
                    if P::APPLY {
                        self.stp_input(now, ingress, frame)?;
                    }
                }
                d.verdict = Verdict::Control;
                return Ok(());
            }
        }
        if !port.stp.learns() {
            return Err(DropReason::PortBlocked);
        }
        if !src.is_unicast() {
            return Err(DropReason::InvalidSource);
        }

        let class = if self.vlan_filtering {
            let tag = outer_tag(frame).map_err(|_| DropReason::Truncated)?;
            port.config.vlan.classify(tag)?
        } else {
            Classified {
                vid: Vid::DEFAULT,
                tagged: false,
                carried: 0,
            }
        };
        let vid = class.vid;
        d.vid = Some(vid);
        let filtering = self.vlan_filtering;
        probe.step(|| Step::Vlan {
            filtering,
            vid,
            tagged: class.tagged,
        });

        let flags = port.config.flags;
        // What learning did, when it changed the source's entry; an explained frame to
        // its own source must find the entry as processing it would have left it.
        let mut learned_here = None;
        if flags.locked {
            let allowed = matches!(self.fdb.get(vid, src),
                Some(e) if e.kind == EntryKind::Static && e.port == ingress);
            probe.step(|| Step::Learning(Learning::Locked { allowed }));
            if !allowed {
                return Err(DropReason::LockedSource);
            }
        } else if flags.learning {
            let limit = port.config.max_learned;
            let learned = self.fdb.learn(now, vid, src, ingress, limit, P::APPLY);
            if let Learned::Moved { from } | Learned::Left { from } = learned {
                d.moved_from = Some(from);
            }
            if !P::APPLY {
                learned_here = Some(learned);
            }
            probe.step(|| Step::Learning(learning_step(learned)));
        } else {
            probe.step(|| Step::Learning(Learning::FlagOff));
        }
        // Re-borrow: learning needed `self.fdb` mutably.
        let port = self.port(ingress).ok_or(DropReason::UnknownPort)?;
        if !port.stp.forwards() {
            return Err(DropReason::PortBlocked);
        }

        if dst.is_multicast() {
            let kind = if dst.is_broadcast() {
                probe.step(|| Step::Lookup {
                    dst,
                    vid,
                    found: Lookup::Broadcast,
                });
                Delivery::FloodBroadcast
            } else {
                probe.step(|| Step::Lookup {
                    dst,
                    vid,
                    found: Lookup::Multicast,
                });
                Delivery::FloodMulticast
            };
            return self.flood(ingress, port, class, kind, d, probe);
        }
        let found = if P::APPLY {
            self.fdb.lookup(vid, dst)
        } else {
            match learned_here {
                Some(Learned::New | Learned::Moved { .. } | Learned::Refreshed) if dst == src => {
                    Some((ingress, EntryKind::Dynamic))
                }
                Some(Learned::Left { .. }) if dst == src => None,
                _ => self.fdb.lookup(vid, dst),
            }
        };
        match found {
            Some((_, EntryKind::Local)) => {
                probe.step(|| Step::Lookup {
                    dst,
                    vid,
                    found: Lookup::Local,
                });
                let host = self.host_port.ok_or(DropReason::NoHostPort)?;
                d.delivery = Some(Delivery::Local);
                let op = self.egress_one(ingress, port, host, class, probe)?;
                d.egress.push(Egress { port: host, op });
                Ok(())
            }
            Some((to, kind)) => {
                probe.step(|| Step::Lookup {
                    dst,
                    vid,
                    found: Lookup::Hit {
                        port: to,
                        kind,
                        age: self.fdb.age_of(now, vid, dst),
                    },
                });
                d.delivery = Some(Delivery::KnownUnicast);
                let op = self.egress_one(ingress, port, to, class, probe)?;
                d.egress.push(Egress { port: to, op });
                Ok(())
            }
            None => {
                probe.step(|| Step::Lookup {
                    dst,
                    vid,
                    found: Lookup::Miss,
                });
                self.flood(ingress, port, class, Delivery::FloodUnknown, d, probe)
            }
        }
    }

    /// The one egress port of a unicast frame: its tag operation, or the reason it gets
    /// no copy (which drops the frame).
    #[inline(always)]
    fn egress_one<P: Probe>(
        &self,
        ingress: PortId,
        from: &Port,
        to: PortId,
        class: Classified,
        probe: &mut P,
    ) -> Result<TagOp, DropReason> {
        match self.egress_verdict(ingress, from, to, class) {
            Ok(op) => {
                probe.step(|| Step::Egress { port: to, op });
                Ok(op)
            }
            Err(why) => {
                probe.step(|| Step::Excluded { port: to, why });
                Err(exclusion_drop(why))
            }
        }
    }

    /// Whether a frame to `01:80:c2:00:00:0{index}` is forwarded like any other.
    #[inline]
    fn link_local_forwarded(&self, index: u8) -> bool {
        // With no STP running, BPDUs are forwarded so loops stay visible to outer STP
        // (the Linux bridge does the same); the rest only as group_fwd_mask allows.
        (index == 0 && !self.stp_enabled) || (index != 0 && self.group_fwd_mask & (1 << index) != 0)
    }

    /// Whether a copy may leave by `to`, and with which tag operation.
    #[inline]
    pub(crate) fn egress_check(
        &self,
        ingress: PortId,
        from: &Port,
        to: PortId,
        class: Classified,
    ) -> Result<TagOp, DropReason> {
        self.egress_verdict(ingress, from, to, class)
            .map_err(exclusion_drop)
    }

    /// [`Bridge::egress_check`] with the reason in full.
    #[inline(always)]
    fn egress_verdict(
        &self,
        ingress: PortId,
        from: &Port,
        to: PortId,
        class: Classified,
    ) -> Result<TagOp, Exclusion> {
        let out = self.port(to).ok_or(Exclusion::Down)?;
        if to == ingress && !out.config.flags.hairpin {
            return Err(Exclusion::Ingress);
        }
        if from.config.flags.isolated && out.config.flags.isolated {
            return Err(Exclusion::Isolated);
        }
        if !out.forwards() {
            return Err(if out.config.up {
                Exclusion::Blocked(out.stp)
            } else {
                Exclusion::Down
            });
        }
        if !self.vlan_filtering {
            return Ok(TagOp::Keep);
        }
        if !out.config.vlan.carries(class.vid) {
            return Err(Exclusion::NotInVlan(class.vid));
        }
        Ok(out.config.vlan.egress_op(class))
    }

    /// Sends a copy to every eligible port of the frame's VLAN.
    pub(crate) fn flood<P: Probe>(
        &self,
        ingress: PortId,
        from: &Port,
        class: Classified,
        kind: Delivery,
        d: &mut Decision,
        probe: &mut P,
    ) -> Result<(), DropReason> {
        d.delivery = Some(kind);
        for (i, slot) in self.ports.iter().enumerate() {
            let Some(out) = slot else { continue };
            let to = PortId(i as u16);
            let wants = match kind {
                Delivery::FloodBroadcast => out.config.flags.bcast_flood,
                Delivery::FloodMulticast => out.config.flags.mcast_flood,
                _ => out.config.flags.flood,
            };
            if !wants {
                probe.step(|| Step::Excluded {
                    port: to,
                    why: Exclusion::FloodOff(kind),
                });
                continue;
            }
            match self.egress_verdict(ingress, from, to, class) {
                Ok(op) => {
                    probe.step(|| Step::Egress { port: to, op });
                    d.egress.push(Egress { port: to, op });
                }
                Err(why) => probe.step(|| Step::Excluded { port: to, why }),
            }
        }
        if d.egress.is_empty() {
            Err(DropReason::NoFloodTarget)
        } else {
            Ok(())
        }
    }
}

/// The drop reason for a unicast frame whose only egress port is excluded.
#[inline]
fn exclusion_drop(why: Exclusion) -> DropReason {
    match why {
        Exclusion::Ingress => DropReason::SameSegment,
        Exclusion::Isolated => DropReason::Isolated,
        _ => DropReason::EgressUnavailable,
    }
}

/// What learning did, as a trace tells it.
fn learning_step(l: Learned) -> Learning {
    match l {
        Learned::Refreshed => Learning::Refreshed,
        Learned::Kept => Learning::Kept,
        Learned::Own => Learning::Own,
        Learned::Off => Learning::Off,
        Learned::New => Learning::New,
        Learned::Moved { from } => Learning::Moved { from },
        Learned::LimitReached => Learning::LimitReached,
        Learned::Left { from } => Learning::Left { from },
    }
}
