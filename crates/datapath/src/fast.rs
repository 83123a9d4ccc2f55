//! One bridge's kernel fast path: which flows it handed to the kernel, and keeping them
//! true. A flow (ingress port, destination, source) is offered after the core forwarded
//! one of its frames as known unicast between two veth ports and says every further
//! untagged frame would go the same way, unchanged, in the same VLAN
//! ([`Bridge::offload_target`]; the kernel leaves tagged frames to us); it is checked again on every
//! housekeeping tick, after every control change and spanning-tree timer, at once on a
//! station move (before the moved frame goes out), and removed the moment the core would decide otherwise. What the kernel carried is
//! added to the core's counters and keeps the source's FDB entry fresh.

use std::collections::HashMap;

use vbridge_core::{Bridge, Instant, MacAddr, Offload, PortId};
use vbridge_ports::{FastPath, FastPort, FlowKey, FlowStats, PortIo};

use crate::bridge_rt::PortRt;

/// Flows one bridge may hand to the kernel at most.
const MAX_FLOWS: u32 = 16 * 1024;

/// A flow in the kernel, as we know it.
#[derive(Debug, Clone, Copy)]
struct FlowRec {
    ingress: PortId,
    /// Where the core sends it, and in which VLAN.
    to: Offload,
    egress_ifindex: u32,
    seen: FlowStats,
}

/// The fast path of one bridge.
#[derive(Debug)]
pub(crate) struct Fast {
    fp: FastPath,
    flows: HashMap<FlowKey, FlowRec>,
}

/// Whether the fast path may be used at all (`VBR_FASTPATH=0` turns it off).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("VBR_FASTPATH").map_or(true, |v| v != "0"))
}

impl Fast {
    /// A fast path for bridge `bridge`, or `None` (switched off, or no BPF here: said once).
    pub(crate) fn new(bridge: &str) -> Option<Fast> {
        if !enabled() {
            return None;
        }
        match FastPath::new(MAX_FLOWS, vbridge_core::bridge::DEFAULT_MAX_FRAME as u32) {
            Ok(fp) => Some(Fast {
                fp,
                flows: HashMap::new(),
            }),
            Err(e) => {
                tracing::info!(bridge, error = %e, "kernel fast path unavailable; every frame goes through the switch");
                None
            }
        }
    }

    /// Attaches a port whose netdev is a veth; `None` if it cannot be.
    pub(crate) fn attach(&self, name: &str, io: &dyn PortIo) -> Option<FastPort> {
        match io.attach_fast(&self.fp) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(port = name, error = %e, "port stays off the kernel fast path");
                None
            }
        }
    }

    /// Flows in the kernel now.
    pub(crate) fn len(&self) -> usize {
        self.flows.len()
    }

    /// Hands the flow of `frame` (just forwarded from `ingress` to `egress` alone,
    /// unchanged) to the kernel if both ports are on the fast path and the core agrees.
    pub(crate) fn offer(
        &mut self,
        core: &Bridge,
        ports: &[Option<PortRt>],
        ingress: PortId,
        egress: PortId,
        frame: &[u8],
    ) {
        let (Some(dst), Some(src)) = (
            frame.get(..6).and_then(MacAddr::from_bytes),
            frame.get(6..12).and_then(MacAddr::from_bytes),
        ) else {
            return;
        };
        let (Some(in_if), Some(out_if)) =
            (fast_ifindex(ports, ingress), fast_ifindex(ports, egress))
        else {
            return;
        };
        let key = FlowKey {
            ingress: in_if,
            dst: dst.0,
            src: src.0,
        };
        if self.flows.contains_key(&key) || self.flows.len() >= MAX_FLOWS as usize {
            return;
        }
        let Some(to) = core.offload_target(ingress, src, dst) else {
            return;
        };
        if to.egress != egress {
            return;
        }
        match self.fp.insert(key, out_if) {
            Ok(()) => {
                tracing::debug!(?key, egress = out_if, "flow handed to the kernel");
                self.flows.insert(
                    key,
                    FlowRec {
                        ingress,
                        to,
                        egress_ifindex: out_if,
                        seen: FlowStats::default(),
                    },
                );
            }
            Err(e) => tracing::debug!(error = %e, "flow not handed to the kernel"),
        }
    }

    /// Brings what the kernel carried into the core, then takes back every flow the core
    /// would no longer send the same way. With `only`, just the flows to or from that
    /// station (a station move: cheap enough to do before the moved frame goes out).
    pub(crate) fn revalidate(
        &mut self,
        now: Instant,
        core: &mut Bridge,
        ports: &[Option<PortRt>],
        only: Option<MacAddr>,
    ) {
        let fp = &self.fp;
        self.flows.retain(|key, rec| {
            if only.is_some_and(|m| m.0 != key.src && m.0 != key.dst) {
                return true;
            }
            let flow = match fp.get(*key) {
                Ok(Some(f)) => f,
                // Gone from the map: nothing to take back.
                Ok(None) => return false,
                Err(_) => return fp.remove(*key).is_err(),
            };
            let (dp, db) = (
                flow.stats.packets.saturating_sub(rec.seen.packets),
                flow.stats.bytes.saturating_sub(rec.seen.bytes),
            );
            rec.seen = flow.stats;
            let (src, dst) = (MacAddr(key.src), MacAddr(key.dst));
            core.account_offloaded(now, rec.ingress, src, rec.to, dp, db);
            let keep = core.offload_target(rec.ingress, src, dst) == Some(rec.to)
                && fast_ifindex(ports, rec.ingress) == Some(key.ingress)
                && fast_ifindex(ports, rec.to.egress) == Some(rec.egress_ifindex);
            if keep {
                return true;
            }
            tracing::debug!(?key, "flow taken back from the kernel");
            // Kept (and tried again next time) only if the kernel would not let go.
            fp.remove(*key).is_err()
        });
    }
}

/// Whether a link may carry the fast path: a veth whose peer is in another namespace,
/// the only place `bpf_redirect_peer` can deliver to.
fn fast_capable(l: &vbridge_host::Link) -> bool {
    l.link_elsewhere && l.kind.as_deref() == Some("veth")
}

/// Whether netdev `name` (in the calling thread's namespace) is [`fast_capable`].
pub(crate) fn is_veth(name: &str) -> bool {
    vbridge_host::Netlink::new()
        .and_then(|mut nl| nl.link(name))
        .ok()
        .flatten()
        .is_some_and(|l| fast_capable(&l))
}

/// Names of the [`fast_capable`] netdevs in the calling thread's namespace (one dump);
/// `None` if netlink could not say.
pub(crate) fn veths() -> Option<std::collections::HashSet<String>> {
    let links = vbridge_host::Netlink::new()
        .and_then(|mut nl| nl.links())
        .ok()?;
    Some(
        links
            .into_iter()
            .filter(fast_capable)
            .map(|l| l.name)
            .collect(),
    )
}

/// The ifindex of port `id` if it is attached and on the fast path.
fn fast_ifindex(ports: &[Option<PortRt>], id: PortId) -> Option<u32> {
    let p = ports.get(usize::from(id.0))?.as_ref()?;
    p.fast.as_ref()?;
    p.io.as_ref()?;
    p.ifindex
}
