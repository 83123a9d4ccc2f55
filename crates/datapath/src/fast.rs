//! One bridge's kernel fast path: which flows it handed to the kernel, and keeping them
//! true. A flow (ingress port, destination, source, 802.1Q tag or none) is offered after
//! the core forwarded one of its frames as known unicast (or to the host port, for the
//! bridge's own addresses) between two ports on the fast path and says every further
//! frame of it would go the same way, in the same VLAN, with the same tag operation
//! ([`Bridge::offload_target`]), which the kernel program then does (push, pop or keep
//! the tag; frames with two tags, 802.1ad or priority tags stay with us), handing the
//! frames to the peer of an egress veth whose peer is in another namespace, sending them
//! out of any other egress netdev, or having the TAP of the host port or of a VLAN
//! gateway receive them ([`Via`]). The host's own frames on those TAPs meet the program
//! at the TAP's egress, linked by the control side when asked
//! ([`crate::bridge_rt::BridgeRt::tap_links_wanted`]). Every flow is
//! checked against the core after every control change, spanning-tree timer and device
//! change, and at once on a station move (before the moved frame goes out), and removed
//! the moment the core would decide otherwise; those checks touch no kernel state but the
//! flows they remove. What the kernel carried is read a bounded number of flows at a time
//! and added to the core's counters, keeping the source's FDB entry fresh.
//!
//! Broadcasts are handed over by ingress port and tag ([`Fast::offer_flood`]) when the
//! core floods them to the same ports, with the same tags, whatever their source
//! ([`Bridge::flood_target`]) and every one of those ports is on the fast path: the
//! kernel sends the copies, and the switch learns and counts from each frame's header
//! ([`Bridge::process_head`]). They are checked with the flows, after every change.
//! The kernel delivers such a broadcast before the switch reads its header, so an answer
//! can reach the switch before the source is learned (it is then flooded as unknown
//! unicast, and offered once the header is in); and, as with flows, a frame met by an
//! entry change between the socket filter and the tcx program is delivered twice (an
//! entry just inserted) or lost (one just removed). After a flood is taken back, none is
//! handed over for [`FLOOD_QUIET_MS`]: the kernel reuses a removed entry's memory, which
//! a program still cloning from it must not see refilled.
//!
//! The flow map and programs are made by the control side ([`make`]); BPF map reads and
//! writes here never wait for the host.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use vbridge_core::{Bridge, Instant, MacAddr, Offload, PortId, Vid};
use vbridge_ports::{Egress, FastPath, Flood, FloodKey, FlowKey, FlowStats, Via};

use crate::bridge_rt::PortRt;

/// How long after a flood is taken back no other is handed over (see the module header);
/// a program run lasts microseconds.
const FLOOD_QUIET_MS: u64 = 50;

/// Flows one bridge may hand to the kernel at most.
const MAX_FLOWS: u32 = 16 * 1024;

/// A flow in the kernel, as we know it.
#[derive(Debug, Clone, Copy)]
struct FlowRec {
    ingress: PortId,
    /// Where the core sends it, and in which VLAN.
    to: Offload,
    /// How the kernel sends it: the egress netdev, its frame limit (the egress port's
    /// MTU when it was offered), the tag, and how ([`Via`]: to a veth's peer, out of the
    /// netdev, or received by a TAP's netdev).
    out: Egress,
    seen: FlowStats,
}

/// Broadcasts in the kernel, as we know them: the port they enter by and how the kernel
/// floods them (what the core's flood of them comes to on the ports' netdevs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FloodRec {
    ingress: PortId,
    out: Flood,
}

/// The fast path of one bridge.
#[derive(Debug)]
pub(crate) struct Fast {
    fp: Arc<FastPath>,
    flows: HashMap<FlowKey, FlowRec>,
    floods: HashMap<FloodKey, FloodRec>,
    /// Broadcasts the kernel cannot flood (a port off the fast path among the copies,
    /// too many copies): not offered again before the next check.
    refused: HashSet<FloodKey>,
    /// Frames and bytes (as the switch counts them, tag included) of broadcasts the
    /// kernel flooded.
    flooded: (u64, u64),
    /// No flood is handed over before this (one was just taken back).
    flood_quiet_until: Instant,
    /// The flows to account next (a snapshot, refilled when used up).
    to_account: Vec<FlowKey>,
    /// Frames and bytes the kernel forwarded, as accounted so far.
    carried: (u64, u64),
}

/// Whether the fast path may be used at all (`VBR_FASTPATH=0` turns it off).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("VBR_FASTPATH").map_or(true, |v| v != "0"))
}

/// Makes a flow table for bridge `bridge` (control side), or `None`: switched off, or no
/// BPF here (said once).
pub(crate) fn make(bridge: &str) -> Option<Arc<FastPath>> {
    if !enabled() {
        return None;
    }
    match FastPath::new(MAX_FLOWS, vbridge_core::bridge::DEFAULT_MAX_FRAME as u32) {
        Ok(fp) => Some(Arc::new(fp)),
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::info!(bridge, error = %e, "kernel fast path unavailable; every frame goes through the switch");
            });
            None
        }
    }
}

impl Fast {
    pub(crate) fn new(fp: Arc<FastPath>) -> Fast {
        Fast {
            fp,
            flows: HashMap::new(),
            floods: HashMap::new(),
            refused: HashSet::new(),
            flooded: (0, 0),
            flood_quiet_until: Instant::ZERO,
            to_account: Vec::new(),
            carried: (0, 0),
        }
    }

    /// The flow table, for attaching more ports (control side).
    pub(crate) fn path(&self) -> &Arc<FastPath> {
        &self.fp
    }

    /// Frames and bytes the kernel has forwarded for this bridge, as accounted so far
    /// (broadcasts it flooded count once each).
    pub(crate) fn carried(&self) -> (u64, u64) {
        (
            self.carried.0 + self.flooded.0,
            self.carried.1 + self.flooded.1,
        )
    }

    /// Flows in the kernel now.
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Ports and tags whose broadcasts the kernel floods now.
    pub(crate) fn floods(&self) -> usize {
        self.floods.len()
    }

    /// Whether the kernel floods broadcasts of `len` bytes (without their tag) entering
    /// netdev `ingress` with tag VID `vid` (0: untagged).
    pub(crate) fn floods_for(&self, ingress: Option<u32>, vid: u16, len: usize) -> bool {
        ingress
            .and_then(|i| self.floods.get(&FloodKey { ingress: i, vid }))
            .is_some_and(|r| len <= r.out.max_len as usize)
    }

    /// Whether the kernel could flood broadcasts entering `ingress` with `tag` as the
    /// core does (see [`Fast::offer_flood`]).
    pub(crate) fn can_flood(
        &self,
        core: &Bridge,
        ports: &[Option<PortRt>],
        ingress: PortId,
        tag: Option<Vid>,
    ) -> bool {
        let Some(in_if) = fast_ifindex(ports, ingress) else {
            return false;
        };
        let key = FloodKey {
            ingress: in_if,
            vid: tag.map_or(0, Vid::get),
        };
        !self.refused.contains(&key) && flood_of(core, ports, ingress, tag).is_some()
    }

    /// Counts a broadcast of `len` bytes the kernel flooded.
    pub(crate) fn note_flooded(&mut self, len: usize) {
        self.flooded.0 += 1;
        self.flooded.1 += len as u64;
    }

    /// Hands the broadcasts entering `ingress` with the tag of `frame` (a broadcast the
    /// core just flooded) to the kernel, if it can flood them as the core does.
    pub(crate) fn offer_flood(
        &mut self,
        now: Instant,
        core: &Bridge,
        ports: &[Option<PortRt>],
        ingress: PortId,
        frame: &[u8],
    ) {
        if now < self.flood_quiet_until {
            return;
        }
        let (Some(in_if), Some(tag)) = (fast_ifindex(ports, ingress), kernel_tag(frame)) else {
            return;
        };
        let key = FloodKey {
            ingress: in_if,
            vid: tag.map_or(0, Vid::get),
        };
        if self.floods.contains_key(&key) || self.refused.contains(&key) {
            return;
        }
        let Some(rec) = flood_of(core, ports, ingress, tag) else {
            self.refused.insert(key);
            return;
        };
        match self.fp.insert_flood(key, &rec.out) {
            Ok(()) => {
                tracing::debug!(?key, "broadcasts handed to the kernel");
                self.floods.insert(key, rec);
            }
            Err(e) => {
                tracing::debug!(?key, error = %e, "broadcasts not handed to the kernel");
                self.refused.insert(key);
            }
        }
    }

    /// Whether the flow entering netdev `ingress` from `src` to `dst` with tag VID `vid`
    /// (0: untagged) is in the kernel.
    pub(crate) fn holds(&self, ingress: Option<u32>, vid: u16, src: MacAddr, dst: MacAddr) -> bool {
        ingress.is_some_and(|i| {
            self.flows.contains_key(&FlowKey {
                ingress: i,
                dst,
                src,
                vid,
            })
        })
    }

    /// Hands the flow of `frame` (just forwarded from `ingress` to `egress` alone) to the
    /// kernel if both ports are on the fast path, the frame's tags are ones the kernel
    /// program takes, and the core agrees.
    pub(crate) fn offer(
        &mut self,
        core: &Bridge,
        ports: &[Option<PortRt>],
        ingress: PortId,
        egress: PortId,
        frame: &[u8],
    ) {
        // Ports off the fast path first: this runs for every known unicast frame.
        let Some(in_if) = fast_ifindex(ports, ingress) else {
            return;
        };
        if egress_via(ports, egress).is_none() {
            return;
        }
        let (Some(dst), Some(src), Some(tag)) = (
            frame.get(..6).and_then(MacAddr::from_bytes),
            frame.get(6..12).and_then(MacAddr::from_bytes),
            kernel_tag(frame),
        ) else {
            return;
        };
        let key = FlowKey {
            ingress: in_if,
            dst,
            src,
            vid: tag.map_or(0, Vid::get),
        };
        if self.flows.contains_key(&key) || self.flows.len() >= MAX_FLOWS as usize {
            return;
        }
        let Some(to) = core.offload_target(ingress, tag, src, dst) else {
            return;
        };
        let Some(out) = egress_of(ports, ingress, to).filter(|_| to.egress == egress) else {
            return;
        };
        match self.fp.insert(key, out) {
            Ok(()) => {
                tracing::debug!(?key, ?out, "flow handed to the kernel");
                self.flows.insert(
                    key,
                    FlowRec {
                        ingress,
                        to,
                        out,
                        seen: FlowStats::default(),
                    },
                );
            }
            Err(e) => tracing::debug!(error = %e, "flow not handed to the kernel"),
        }
    }

    /// Takes back every flow the core would no longer send the same way, or whose ports
    /// left the fast path; with `only`, just the flows to or from that station (a
    /// station move: cheap enough to do before the moved frame goes out). Only removed
    /// flows touch the kernel: what they carried is read and accounted, then they go.
    pub(crate) fn check(
        &mut self,
        now: Instant,
        core: &mut Bridge,
        ports: &[Option<PortRt>],
        only: Option<MacAddr>,
    ) {
        let fp = &self.fp;
        if only.is_none() {
            // Floods do not depend on the FDB, so a station move leaves them be.
            self.refused.clear();
            let mut removed = false;
            self.floods.retain(|key, rec| {
                let tag = Vid::new(key.vid).ok();
                let keep = fast_ifindex(ports, rec.ingress) == Some(key.ingress)
                    && flood_of(core, ports, rec.ingress, tag).as_ref() == Some(rec);
                if keep {
                    return true;
                }
                tracing::debug!(?key, "broadcasts taken back from the kernel");
                removed = true;
                // Kept (and tried again next time) only if the kernel would not let go.
                fp.remove_flood(*key).is_err()
            });
            if removed {
                self.flood_quiet_until = now + std::time::Duration::from_millis(FLOOD_QUIET_MS);
            }
        }
        let carried = &mut self.carried;
        self.flows.retain(|key, rec| {
            if only.is_some_and(|m| m != key.src && m != key.dst) {
                return true;
            }
            let (src, dst, tag) = (key.src, key.dst, Vid::new(key.vid).ok());
            let keep = core.offload_target(rec.ingress, tag, src, dst) == Some(rec.to)
                && fast_ifindex(ports, rec.ingress) == Some(key.ingress)
                && egress_of(ports, rec.ingress, rec.to) == Some(rec.out);
            if keep {
                return true;
            }
            if let Ok(Some(flow)) = fp.get(*key) {
                add(carried, account_one(now, core, key, rec, flow.stats));
            }
            tracing::debug!(?key, "flow taken back from the kernel");
            // Kept (and tried again next time) only if the kernel would not let go.
            fp.remove(*key).is_err()
        });
    }

    /// Reads what the kernel carried for up to `budget` flows (round robin over all of
    /// them), adds it to the core's counters and FDB, and forgets flows the kernel no
    /// longer has. Returns whether a full round just ended.
    pub(crate) fn account(&mut self, now: Instant, core: &mut Bridge, budget: usize) -> bool {
        if self.to_account.is_empty() {
            self.to_account.extend(self.flows.keys().copied());
        }
        let take = budget.min(self.to_account.len());
        let start = self.to_account.len() - take;
        for key in self.to_account.drain(start..) {
            let Some(rec) = self.flows.get_mut(&key) else {
                continue;
            };
            match self.fp.get(key) {
                Ok(Some(flow)) => add(
                    &mut self.carried,
                    account_one(now, core, &key, rec, flow.stats),
                ),
                Ok(None) => {
                    self.flows.remove(&key);
                }
                Err(_) => {}
            }
        }
        self.to_account.is_empty()
    }
}

/// The tag of `frame` as the kernel program keys it: `Some(None)` untagged, `Some(Some(vid))`
/// one 802.1Q tag with a VID; `None` for what the program leaves to the switch (a
/// priority tag, an 802.1ad or 0x9100 tag, a second tag, a short frame).
pub(crate) fn kernel_tag(frame: &[u8]) -> Option<Option<Vid>> {
    const TPIDS: [u16; 3] = [0x8100, 0x88a8, 0x9100];
    let at = |i: usize| {
        frame
            .get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    match at(12)? {
        0x8100 => {
            let inner = at(16)?;
            if TPIDS.contains(&inner) {
                return None;
            }
            Vid::new(at(14)? & 0x0fff).ok().map(Some)
        }
        t if TPIDS.contains(&t) => None,
        _ => Some(None),
    }
}

fn add(total: &mut (u64, u64), (packets, bytes): (u64, u64)) {
    total.0 += packets;
    total.1 += bytes;
}

/// Adds what the kernel carried for one flow since it was last read; returns it.
fn account_one(
    now: Instant,
    core: &mut Bridge,
    key: &FlowKey,
    rec: &mut FlowRec,
    stats: FlowStats,
) -> (u64, u64) {
    let packets = stats.packets.saturating_sub(rec.seen.packets);
    let bytes = stats.bytes.saturating_sub(rec.seen.bytes);
    rec.seen = stats;
    if packets > 0 {
        core.account_offloaded(now, rec.ingress, key.src, rec.to, packets, bytes);
    }
    (packets, bytes)
}

/// Whether frames for a link can go straight to its peer: a veth whose peer is in
/// another namespace, the only place `bpf_redirect_peer` can deliver to (any other
/// netdev gets them by `bpf_redirect`, sent out of it).
pub(crate) fn peer_elsewhere(l: &vbridge_host::Link) -> bool {
    l.link_elsewhere && l.kind.as_deref() == Some("veth")
}

/// Whether netdev `name` (in the calling thread's namespace) is [`peer_elsewhere`].
pub(crate) fn peer_elsewhere_of(name: &str) -> bool {
    vbridge_host::Netlink::new()
        .and_then(|mut nl| nl.link(name))
        .ok()
        .flatten()
        .is_some_and(|l| peer_elsewhere(&l))
}

/// How the kernel sends frames of flow `to` to its egress port, if it can reach that
/// port ([`egress_via`]).
fn egress_of(ports: &[Option<PortRt>], from: PortId, to: Offload) -> Option<Egress> {
    let (ifindex, via) = egress_via(ports, to.egress)?;
    // A TAP port's program runs at its egress, where `bpf_redirect_peer` is refused.
    let via = if via == Via::Peer && at_egress(ports, from) {
        Via::Out
    } else {
        via
    };
    // The kernel compares the frame's length without its tag (the kernel keeps tags in
    // the packet's metadata); the switch counts a tag the frame leaves with.
    let tag = to.tag.map_or(0, Vid::get);
    let limit = max_frame(ports, to.egress);
    Some(Egress {
        ifindex,
        max_len: if tag == 0 { limit } else { limit - 4 },
        tag,
        via,
    })
}

/// How the kernel reaches port `id` as an egress port, if it can: a port on the fast
/// path (straight to a veth's peer in another namespace, or out of its netdev), or a TAP
/// this daemon reads in its own namespace (the host port, a VLAN gateway), whose netdev
/// the kernel has receive the frames the switch would have written to it. Watched ports get
/// their frames from the switch.
pub(crate) fn egress_via(ports: &[Option<PortRt>], id: PortId) -> Option<(u32, Via)> {
    let p = ports.get(usize::from(id.0))?.as_ref()?;
    p.io.as_ref()?;
    if p.observed() {
        return None;
    }
    let via = match (&p.fast, p.kind) {
        (_, k) if k.reads_own_tap() => Via::In,
        (Some(_), _) if p.fast_peer => Via::Peer,
        (Some(_), _) => Via::Out,
        (None, _) => return None,
    };
    Some((p.ifindex?, via))
}

/// The longest frame port `id` takes (see [`crate::bridge_rt::frame_limit`]), for the
/// kernel's per-flow check.
fn max_frame(ports: &[Option<PortRt>], id: PortId) -> u32 {
    ports
        .get(usize::from(id.0))
        .and_then(Option::as_ref)
        .and_then(crate::bridge_rt::frame_limit)
        .map_or(vbridge_core::bridge::DEFAULT_MAX_FRAME as u32, |l| l as u32)
}

/// How the kernel would flood broadcasts entering `ingress` with `tag`, if it can: the
/// core floods them by port and tag alone, to ports all on the fast path, in a way the
/// kernel program does (tagged copies of one VID, at most 64 clones of each kind). The
/// host's broadcasts on its TAPs never: they meet the program before the switch's
/// reader, with no socket filter to leave the switch their headers.
fn flood_of(
    core: &Bridge,
    ports: &[Option<PortRt>],
    ingress: PortId,
    tag: Option<Vid>,
) -> Option<FloodRec> {
    if at_egress(ports, ingress) {
        return None;
    }
    let target = core.flood_target(ingress, tag)?;
    let mut out = Flood {
        max_len: u32::MAX,
        copies: Vec::with_capacity(target.copies.len()),
    };
    for &(port, leaves) in &target.copies {
        let (ifindex, via) = egress_via(ports, port)?;
        // As for flows: the kernel measures frames without their tag.
        let limit = max_frame(ports, port) - if leaves.is_some() { 4 } else { 0 };
        out.max_len = out.max_len.min(limit);
        out.copies.push((ifindex, leaves.map_or(0, Vid::get), via));
    }
    out.fits().then_some(FloodRec { ingress, out })
}

/// Whether port `id`'s frames meet the program at its netdev's egress: a TAP the switch
/// reads in this namespace ([`crate::view::PortKind::reads_own_tap`]).
pub(crate) fn at_egress(ports: &[Option<PortRt>], id: PortId) -> bool {
    ports
        .get(usize::from(id.0))
        .and_then(Option::as_ref)
        .is_some_and(|p| p.kind.reads_own_tap())
}

/// The ifindex of port `id` if it is attached and on the fast path.
pub(crate) fn fast_ifindex(ports: &[Option<PortRt>], id: PortId) -> Option<u32> {
    let p = ports.get(usize::from(id.0))?.as_ref()?;
    p.fast.as_ref()?;
    p.io.as_ref()?;
    // A watched port's frames all go through the switch, so the capture or live trace
    // misses none.
    if p.observed() {
        return None;
    }
    p.ifindex
}

#[cfg(test)]
mod tests {
    use super::kernel_tag;
    use vbridge_core::Vid;

    fn frame(tags: &[(u16, u16)]) -> Vec<u8> {
        let mut f = vec![0x02; 12];
        for (tpid, tci) in tags {
            f.extend(tpid.to_be_bytes());
            f.extend(tci.to_be_bytes());
        }
        f.extend([0x08, 0x00]);
        f.resize(f.len() + 46, 0);
        f
    }

    #[test]
    fn frames_are_keyed_by_the_tag_the_kernel_program_takes() {
        assert_eq!(kernel_tag(&frame(&[])), Some(None));
        assert_eq!(
            kernel_tag(&frame(&[(0x8100, 0x200a)])),
            Some(Some(Vid::new(10).unwrap())),
            "PCP bits aside"
        );
        for left in [
            &[(0x8100, 0)][..],
            &[(0x88a8, 10)],
            &[(0x9100, 10)],
            &[(0x8100, 10), (0x8100, 20)],
            &[(0x8100, 0x0fff)],
        ] {
            assert_eq!(kernel_tag(&frame(left)), None, "{left:x?}");
        }
        assert_eq!(kernel_tag(&[0u8; 13]), None);
    }
}
