//! What the bridge does with a frame, step by step ([`Bridge::explain`], behind `vbr
//! trace`). The steps come from the very code that forwards: [`Bridge::process`] and
//! [`Bridge::explain`] run one decision function, generic over a [`Probe`]. Forwarding's
//! probe records nothing and changes state (learning, the spanning tree, counters);
//! explaining's records every step and changes nothing. The recording compiles away
//! when forwarding.

use core::fmt;
use core::time::Duration;

use vbridge_wire::{MacAddr, Vid};

use crate::bridge::Bridge;
use crate::decision::{Decision, Delivery, Verdict};
use crate::fdb::EntryKind;
use crate::port::{PortFlags, PortId, StpState};
use crate::time::Instant;
use crate::vlan::TagOp;

/// What learning the source address did (or, explained, would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learning {
    /// The port is locked: only sources with a static entry on it may send.
    Locked { allowed: bool },
    /// The port's `learning` flag is off.
    FlagOff,
    /// A new entry.
    New,
    /// Known already on this port: its age starts again.
    Refreshed,
    /// A static or local entry holds the address: unchanged.
    Kept,
    /// The bridge's own address coming back: never learned.
    Own,
    /// Ageing time 0: the bridge learns nothing.
    Off,
    /// The address moves here from another port.
    Moved { from: PortId },
    /// Not learned: a learning limit (the port's or the bridge's) is reached.
    LimitReached,
    /// Known on `from`, but the port's limit keeps it from moving here: the entry goes.
    Left { from: PortId },
}

/// Where the destination lookup led.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Broadcast,
    Multicast,
    /// An FDB entry: the port behind it, its kind, how long since it was refreshed.
    Hit {
        port: PortId,
        kind: EntryKind,
        age: Option<Duration>,
    },
    /// One of the bridge's own addresses.
    Local,
    /// Not in the FDB: flooded.
    Miss,
}

/// Why a port gets no copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// It is the ingress port and hairpin is off.
    Ingress,
    /// Both ports are isolated.
    Isolated,
    /// The port is administratively down (or its device gone).
    Down,
    /// Spanning tree keeps the port from forwarding.
    Blocked(StpState),
    /// The port is not a member of the frame's VLAN.
    NotInVlan(Vid),
    /// The port takes no floods of this kind (its `flood`, `mcast_flood` or
    /// `bcast_flood` flag is off).
    FloodOff(Delivery),
}

/// One step of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The ingress port as the frame finds it.
    Ingress {
        port: PortId,
        up: bool,
        stp: StpState,
        flags: PortFlags,
    },
    /// A frame to a reserved IEEE group address `01:80:c2:00:00:0X`.
    Reserved {
        index: u8,
        forwarded: bool,
    },
    /// A BPDU taken by the running spanning tree.
    SpanningTree,
    /// The VLAN the frame is classified into.
    Vlan {
        filtering: bool,
        vid: Vid,
        tagged: bool,
    },
    Learning(Learning),
    Lookup {
        dst: MacAddr,
        vid: Vid,
        found: Lookup,
    },
    /// A copy leaves by `port`, with this tag operation.
    Egress {
        port: PortId,
        op: TagOp,
    },
    /// `port` gets no copy.
    Excluded {
        port: PortId,
        why: Exclusion,
    },
}

/// A decision with the steps that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub steps: Vec<Step>,
    pub decision: Decision,
}

/// Watches a decision being made (see the module documentation).
pub(crate) trait Probe {
    /// Whether the decision changes state (learns, feeds the spanning tree, counts).
    const APPLY: bool;
    /// Notes a step; `step` is only called when the probe records.
    fn step(&mut self, step: impl FnOnce() -> Step);
}

/// Forwarding: records nothing, changes state.
pub(crate) struct Forwarding;

impl Probe for Forwarding {
    const APPLY: bool = true;
    #[inline(always)]
    fn step(&mut self, _: impl FnOnce() -> Step) {}
}

/// Explaining: records every step, changes nothing.
pub(crate) struct Recorder(pub(crate) Vec<Step>);

impl Probe for Recorder {
    const APPLY: bool = false;
    fn step(&mut self, step: impl FnOnce() -> Step) {
        self.0.push(step());
    }
}

impl Bridge {
    /// What [`Bridge::process`] would do with `frame` arriving on `ingress` at `now`, step
    /// by step, without changing anything (no learning, no counters, no spanning-tree
    /// input).
    pub fn explain(&mut self, now: Instant, ingress: PortId, frame: &[u8]) -> Explanation {
        let mut d = Decision::new();
        let mut rec = Recorder(Vec::new());
        self.decide_into(now, ingress, frame, frame.len(), &mut d, &mut rec);
        Explanation {
            steps: rec.0,
            decision: d,
        }
    }
}

fn flag_names(f: PortFlags) -> String {
    let all = [
        (f.learning, "learning"),
        (f.flood, "flood"),
        (f.mcast_flood, "mcast_flood"),
        (f.bcast_flood, "bcast_flood"),
        (f.hairpin, "hairpin"),
        (f.isolated, "isolated"),
        (f.locked, "locked"),
    ];
    let on: Vec<&str> = all.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(" ")
    }
}

fn op_text(op: TagOp) -> String {
    match op {
        TagOp::Keep => "frame unchanged".into(),
        TagOp::Push(t) => format!("tag {} pushed (TPID {:#06x})", t.vid, t.tpid),
        TagOp::Pop => "tag popped (leaves untagged)".into(),
        TagOp::SetVid(v) => format!("VLAN id rewritten to {v}"),
    }
}

fn delivery_text(d: Delivery) -> &'static str {
    match d {
        Delivery::KnownUnicast => "known unicast",
        Delivery::Local => "local delivery",
        Delivery::FloodUnknown => "unknown-unicast flood",
        Delivery::FloodMulticast => "multicast flood",
        Delivery::FloodBroadcast => "broadcast flood",
    }
}

impl Step {
    /// A short name of the step's kind (for JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Ingress { .. } => "ingress",
            Step::Reserved { .. } => "reserved_group",
            Step::SpanningTree => "spanning_tree",
            Step::Vlan { .. } => "vlan",
            Step::Learning(_) => "learning",
            Step::Lookup { .. } => "lookup",
            Step::Egress { .. } => "egress",
            Step::Excluded { .. } => "excluded",
        }
    }

    /// The port the step is about, if any.
    pub fn port(&self) -> Option<PortId> {
        match self {
            Step::Ingress { port, .. }
            | Step::Egress { port, .. }
            | Step::Excluded { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// The step in words, ports named by `name`.
    pub fn describe(&self, name: &dyn Fn(PortId) -> String) -> String {
        match self {
            Step::Ingress {
                port,
                up,
                stp,
                flags,
            } => format!(
                "in on {}: {}, spanning tree {}, flags {}",
                name(*port),
                if *up { "up" } else { "down" },
                stp.name(),
                flag_names(*flags)
            ),
            Step::Reserved { index, forwarded } => format!(
                "to reserved group address 01:80:c2:00:00:{index:02x}: {}",
                if *forwarded {
                    "forwarded like any frame (no spanning tree running, or group_fwd_mask)"
                } else {
                    "link-local, never forwarded"
                }
            ),
            Step::SpanningTree => "a BPDU: taken by the spanning tree".into(),
            Step::Vlan {
                filtering,
                vid,
                tagged,
            } => {
                if *filtering {
                    format!(
                        "VLAN {vid} ({} frame accepted by the ingress port)",
                        if *tagged { "tagged" } else { "untagged" }
                    )
                } else {
                    "no VLAN filtering: VLAN 1, tags passed through".into()
                }
            }
            Step::Learning(l) => match l {
                Learning::Locked { allowed: true } => {
                    "locked port: the source has a static entry here, allowed".into()
                }
                Learning::Locked { allowed: false } => {
                    "locked port: the source has no static entry here".into()
                }
                Learning::FlagOff => "learning is off on the port: nothing learned".into(),
                Learning::New => "source would be learned on the ingress port (a new entry)".into(),
                Learning::Refreshed => {
                    "source known on the ingress port: its entry would be refreshed".into()
                }
                Learning::Kept => "a static or local entry holds the source: unchanged".into(),
                Learning::Own => {
                    "the source is one of the bridge's own addresses: not learned".into()
                }
                Learning::Off => "ageing time 0: the bridge learns nothing".into(),
                Learning::Moved { from } => {
                    format!("source known on {}: it would move here", name(*from))
                }
                Learning::LimitReached => "not learned: a learning limit is reached".into(),
                Learning::Left { from } => format!(
                    "source known on {}, kept from moving here by the port's limit: that entry would go",
                    name(*from)
                ),
            },
            Step::Lookup { dst, vid, found } => match found {
                Lookup::Broadcast => format!("{dst} is broadcast"),
                Lookup::Multicast => format!("{dst} is multicast"),
                Lookup::Hit { port, kind, age } => format!(
                    "{dst} in VLAN {vid}: {} entry on {}{}",
                    kind.name(),
                    name(*port),
                    age.map_or_else(String::new, |a| format!(
                        ", refreshed {:.1} s ago",
                        a.as_secs_f64()
                    ))
                ),
                Lookup::Local => format!("{dst} is the bridge's own address: to the host port"),
                Lookup::Miss => format!("{dst} in VLAN {vid}: not in the FDB, flooded"),
            },
            Step::Egress { port, op } => format!("copy to {}: {}", name(*port), op_text(*op)),
            Step::Excluded { port, why } => {
                let why = match why {
                    Exclusion::Ingress => "it is the ingress port (hairpin off)".to_owned(),
                    Exclusion::Isolated => "both ports are isolated".to_owned(),
                    Exclusion::Down => "it is down".to_owned(),
                    Exclusion::Blocked(s) => format!("spanning tree: {}", s.name()),
                    Exclusion::NotInVlan(v) => format!("not a member of VLAN {v}"),
                    Exclusion::FloodOff(d) => format!("takes no {}", delivery_text(*d)),
                };
                format!("no copy to {}: {why}", name(*port))
            }
        }
    }
}

/// The verdict of a decision in words, ports named by `name`.
pub fn verdict_text(d: &Decision, name: &dyn Fn(PortId) -> String) -> String {
    match d.verdict {
        Verdict::Drop(r) => format!("dropped: {r}"),
        Verdict::Control => "for the control plane, not forwarded".into(),
        Verdict::Forward => {
            let to: Vec<String> = d.egress.iter().map(|e| name(e.port)).collect();
            format!(
                "forwarded ({}) to {}",
                d.delivery.map_or("forward", delivery_text),
                to.join(", ")
            )
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(&|p| p.to_string()))
    }
}
