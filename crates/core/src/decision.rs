//! What the bridge decided for one frame: forward (to which ports, with which tag
//! operation), hand to the control plane, or drop — and why. A `Decision` is reused
//! across frames so deciding never allocates once it has grown to the port count.

use core::fmt;

use vbridge_wire::Vid;

use crate::counters::DropReason;
use crate::port::PortId;
use crate::vlan::TagOp;

/// The outcome for the frame as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send a copy to every port in [`Decision::egress`].
    Forward,
    /// A link-local frame for the control plane (STP BPDUs, LLDP, ...); not forwarded.
    Control,
    /// Not forwarded anywhere, for this reason.
    Drop(DropReason),
}

/// Why the frame went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The destination was in the FDB.
    KnownUnicast,
    /// The destination is one of the bridge's own addresses: delivered to the host port.
    Local,
    /// Sent to every eligible port: unknown unicast.
    FloodUnknown,
    /// Sent to every eligible port: multicast.
    FloodMulticast,
    /// Sent to every eligible port: broadcast.
    FloodBroadcast,
}

impl Delivery {
    /// Whether this is one of the flood kinds.
    pub const fn is_flood(self) -> bool {
        matches!(
            self,
            Delivery::FloodUnknown | Delivery::FloodMulticast | Delivery::FloodBroadcast
        )
    }
}

/// One copy of the frame leaving one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    pub port: PortId,
    /// What to do with the outer VLAN tag on the way out.
    pub op: TagOp,
}

/// The bridge's answer for one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// How the destination was resolved (for forwarded frames).
    pub delivery: Option<Delivery>,
    /// The VLAN the frame was classified into.
    pub vid: Option<Vid>,
    /// Ports to send to, each with its tag operation.
    pub egress: Vec<Egress>,
    /// The source address was known on another port before this frame: it moved here
    /// (or left that port and a learning limit kept it from being learned here).
    pub moved_from: Option<PortId>,
}

impl Default for Decision {
    fn default() -> Self {
        Decision::new()
    }
}

impl Decision {
    /// An empty decision, ready to be filled by [`crate::Bridge::process`].
    pub fn new() -> Decision {
        Decision {
            verdict: Verdict::Drop(DropReason::UnknownPort),
            delivery: None,
            vid: None,
            egress: Vec::with_capacity(16),
            moved_from: None,
        }
    }

    #[inline]
    pub(crate) fn reset(&mut self) {
        self.verdict = Verdict::Forward;
        self.delivery = None;
        self.vid = None;
        self.egress.clear();
        self.moved_from = None;
    }

    /// The reason, when the frame was dropped.
    pub fn drop_reason(&self) -> Option<DropReason> {
        match self.verdict {
            Verdict::Drop(r) => Some(r),
            _ => None,
        }
    }
}

impl Decision {
    /// The decision in one line with ports called by `name`: `vlan 10 flood-broadcast ->
    /// eth1 (push 10), eth2` (`Display` calls them `#2`, `#3`).
    pub fn describe(&self, name: &dyn Fn(PortId) -> String) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_with(&mut s, name);
        s
    }

    fn write_with(&self, f: &mut dyn fmt::Write, name: &dyn Fn(PortId) -> String) -> fmt::Result {
        if let Some(v) = self.vid {
            write!(f, "vlan {v} ")?;
        }
        match self.verdict {
            Verdict::Drop(r) => return write!(f, "drop: {r}"),
            Verdict::Control => return f.write_str("control plane"),
            Verdict::Forward => {}
        }
        let how = match self.delivery {
            Some(Delivery::KnownUnicast) => "known-unicast",
            Some(Delivery::Local) => "local",
            Some(Delivery::FloodUnknown) => "flood-unknown",
            Some(Delivery::FloodMulticast) => "flood-multicast",
            Some(Delivery::FloodBroadcast) => "flood-broadcast",
            None => "forward",
        };
        write!(f, "{how} ->")?;
        for (i, e) in self.egress.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{}", name(e.port))?;
            match e.op {
                TagOp::Keep => {}
                TagOp::Push(t) => write!(f, " (push {})", t.vid)?,
                TagOp::Pop => f.write_str(" (pop)")?,
                TagOp::SetVid(v) => write!(f, " (set vid {v})")?,
            }
        }
        if let Some(p) = self.moved_from {
            write!(f, "; source moved from {}", name(p))?;
        }
        Ok(())
    }
}

impl fmt::Display for Decision {
    /// One line, as `vbr trace` prints it: `vlan 10 flood-broadcast -> #2 (push 10), #3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_with(f, &|p| p.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports are named one by one: `#1` never matches inside `#12`, the VLAN number is
    /// never taken for a port, and the port a station moved from is named too.
    #[test]
    fn describe_names_each_port_once() {
        let mut d = Decision::new();
        d.verdict = Verdict::Forward;
        d.delivery = Some(Delivery::FloodBroadcast);
        d.vid = Vid::new(1).ok();
        for p in [12, 1] {
            d.egress.push(Egress {
                port: PortId(p),
                op: TagOp::Keep,
            });
        }
        d.moved_from = Some(PortId(1));
        let name = |p: PortId| format!("eth{}", p.0);
        assert_eq!(
            d.describe(&name),
            "vlan 1 flood-broadcast -> eth12, eth1; source moved from eth1"
        );
        assert_eq!(
            d.to_string(),
            "vlan 1 flood-broadcast -> #12, #1; source moved from #1"
        );
    }
}
