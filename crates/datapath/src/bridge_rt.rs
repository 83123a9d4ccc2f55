//! One bridge at run time: the sans-IO core, the port backends behind its port numbers,
//! and the forwarding of a received batch (decide, apply tag operations, transmit).

use vbridge_core::{
    Bridge, Decision, Delivery, DropReason, Instant, MacAddr, PortConfig, PortFlags, PortId, TagOp,
    Verdict, VlanMode,
};
use vbridge_ports::{Batch, FastPort, PacketBuf, PortIo};

use crate::backend::Backend;
use crate::connect::Connection;
use crate::fast::Fast;
use crate::hostif::Quieted;
use crate::tx::{Full, TxQueues};
use crate::view::PortKind;

/// A port's backend and what the datapath knows about it.
pub(crate) struct PortRt {
    pub(crate) name: String,
    pub(crate) kind: PortKind,
    /// `None` while the netdev is gone.
    pub(crate) io: Option<Box<dyn PortIo>>,
    pub(crate) quiet: Quieted,
    /// The netdev's index while attached (interfaces only).
    pub(crate) ifindex: Option<u32>,
    /// The namespace this port connects, if it was made by `vbr connect`.
    pub(crate) conn: Option<Connection>,
    /// On the bridge's kernel fast path (a veth port): its tcx program.
    pub(crate) fast: Option<FastPort>,
}

impl PortRt {
    /// Takes an opened backend.
    pub(crate) fn attach(&mut self, b: Backend) {
        self.fast = None;
        self.io = Some(b.io);
        // On a re-attach the values read now are our own: keep the originals.
        self.quiet.keep_first(b.quiet);
        self.ifindex = b.ifindex;
    }
}

impl std::fmt::Debug for PortRt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortRt")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("attached", &self.io.is_some())
            .finish()
    }
}

/// A port to add: its netdev name and how it starts.
#[derive(Debug, Clone)]
pub struct PortSpec {
    pub name: String,
    pub kind: PortKind,
    /// Keep this port number (restoring saved configuration); else the lowest free one.
    pub port_no: Option<u16>,
    pub flags: PortFlags,
    pub vlan: VlanMode,
    pub max_learned: u32,
    /// Set for ports that connect a namespace (`vbr connect`).
    pub conn: Option<Connection>,
}

impl PortSpec {
    /// A port with default flags in access VLAN 1.
    pub fn new(name: &str, kind: PortKind) -> PortSpec {
        PortSpec {
            name: name.to_owned(),
            kind,
            port_no: None,
            flags: PortFlags::default(),
            vlan: VlanMode::default(),
            max_learned: 0,
            conn: None,
        }
    }
}

/// A bridge with its ports.
#[derive(Debug)]
pub struct BridgeRt {
    pub(crate) name: String,
    /// The switch itself.
    pub core: Bridge,
    pub(crate) ports: Vec<Option<PortRt>>,
    decision: Decision,
    /// Buffer for BPDUs the spanning tree sends.
    scratch: PacketBuf,
    tx: TxQueues,
    /// Flows handed to the kernel (made with the first veth port).
    pub(crate) fast: Option<Fast>,
}

/// Ports whose device vanished while forwarding.
pub(crate) type GonePorts = Vec<PortId>;

impl BridgeRt {
    pub(crate) fn new(name: &str, core: Bridge) -> BridgeRt {
        BridgeRt {
            name: name.to_owned(),
            core,
            ports: Vec::new(),
            decision: Decision::new(),
            scratch: PacketBuf::new(),
            tx: TxQueues::default(),
            fast: None,
        }
    }

    /// The bridge's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn port(&self, id: PortId) -> Option<&PortRt> {
        self.ports.get(usize::from(id.0)).and_then(Option::as_ref)
    }

    pub(crate) fn port_mut(&mut self, id: PortId) -> Option<&mut PortRt> {
        self.ports
            .get_mut(usize::from(id.0))
            .and_then(Option::as_mut)
    }

    /// The number of the port called `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .enumerate()
            .find(|(_, p)| p.as_ref().is_some_and(|p| p.name == name))
            .map(|(i, _)| PortId(i as u16))
    }

    /// What stands behind port `id`.
    pub fn port_kind(&self, id: PortId) -> Option<PortKind> {
        self.port(id).map(|p| p.kind)
    }

    /// The namespace connection behind port `name`, if it is one.
    pub fn connection(&self, name: &str) -> Option<&crate::Connection> {
        self.ports
            .iter()
            .flatten()
            .find(|p| p.name == name)
            .and_then(|p| p.conn.as_ref())
    }

    /// Names of the ports that connect namespace `netns` (by name or path).
    pub fn connected(&self, netns: &str) -> Vec<String> {
        self.ports
            .iter()
            .flatten()
            .filter(|p| p.conn.as_ref().is_some_and(|c| c.netns == netns))
            .map(|p| p.name.clone())
            .collect()
    }

    /// Names and numbers of all ports.
    pub fn port_names(&self) -> impl Iterator<Item = (PortId, &str)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (PortId(i as u16), p.name.as_str())))
    }

    /// Adds a port to the core and keeps its backend.
    pub(crate) fn insert_port(
        &mut self,
        spec: &PortSpec,
        backend: Option<Backend>,
    ) -> Result<PortId, vbridge_core::ConfigError> {
        let mac = backend.as_ref().and_then(|b| b.mac);
        let mut cfg = if spec.kind == PortKind::Host {
            PortConfig::host()
        } else {
            PortConfig::new(mac)
        };
        cfg.flags = spec.flags;
        cfg.vlan = spec.vlan.clone();
        cfg.max_learned = spec.max_learned;
        cfg.up = backend.is_some();
        let id = match spec.port_no {
            Some(n) => {
                self.core.add_port_with_id(PortId(n), cfg)?;
                PortId(n)
            }
            None => self.core.add_port(cfg)?,
        };
        let i = usize::from(id.0);
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
        }
        let mut port = PortRt {
            name: spec.name.clone(),
            kind: spec.kind,
            io: None,
            quiet: Quieted::default(),
            ifindex: None,
            conn: spec.conn.clone(),
            fast: None,
        };
        if let Some(b) = backend {
            port.attach(b);
        }
        self.ports[i] = Some(port);
        self.attach_fast(id);
        Ok(id)
    }

    /// Puts port `id` on the kernel fast path if its netdev is a veth.
    pub(crate) fn attach_fast(&mut self, id: PortId) {
        let Some(p) = self.ports.get(usize::from(id.0)).and_then(Option::as_ref) else {
            return;
        };
        if p.kind == PortKind::Host || p.io.is_none() || !crate::fast::is_veth(&p.name) {
            return;
        }
        if self.fast.is_none() {
            self.fast = Fast::new(&self.name);
        }
        let (Some(fast), Some(Some(p))) =
            (self.fast.as_ref(), self.ports.get_mut(usize::from(id.0)))
        else {
            return;
        };
        if let Some(io) = p.io.as_deref() {
            p.fast = fast.attach(&p.name, io);
        }
    }

    /// Checks every flow in the kernel against the core now (see [`Fast::revalidate`]).
    pub(crate) fn revalidate_fast(&mut self, now: Instant) {
        self.revalidate_fast_only(now, None);
    }

    /// [`BridgeRt::revalidate_fast`] for the flows of one station (all with `None`).
    fn revalidate_fast_only(&mut self, now: Instant, only: Option<MacAddr>) {
        if let Some(f) = self.fast.as_mut() {
            f.revalidate(now, &mut self.core, &self.ports, only);
        }
    }

    /// Takes ports whose netdev is no longer a veth with its peer elsewhere (moved, say)
    /// off the fast path; their flows go at the next check.
    pub(crate) fn recheck_fast(&mut self) {
        if !self.ports.iter().flatten().any(|p| p.fast.is_some()) {
            return;
        }
        let Some(veths) = crate::fast::veths() else {
            return;
        };
        for p in self.ports.iter_mut().flatten() {
            if p.fast.is_none() || veths.contains(&p.name) {
                continue;
            }
            tracing::info!(port = %p.name, "no longer a veth with its peer elsewhere: off the fast path");
            if let (Some(fast), Some(io)) = (p.fast.take(), p.io.as_deref()) {
                let _ = io.detach_fast(fast);
            }
        }
    }

    /// Flows the kernel forwards for this bridge.
    pub fn fast_flows(&self) -> usize {
        self.fast.as_ref().map_or(0, Fast::len)
    }

    /// Removes a port; returns its runtime part (the backend closes when dropped).
    pub(crate) fn take_port(&mut self, id: PortId) -> Option<PortRt> {
        self.core.remove_port(id).ok()?;
        self.ports.get_mut(usize::from(id.0))?.take()
    }

    /// Marks a port's device as gone: the core stops using it.
    pub(crate) fn mark_gone(&mut self, id: PortId) {
        if let Some(p) = self.port_mut(id) {
            p.io = None;
            p.fast = None;
        }
        let _ = self.core.set_port_up(id, false);
    }

    /// Sends the BPDUs the spanning tree queued.
    pub(crate) fn transmit_bpdus(&mut self, gone: &mut GonePorts) {
        let BridgeRt {
            core,
            ports,
            scratch,
            ..
        } = self;
        while let Some((port, frame)) = core.poll_transmit() {
            let Some(Some(p)) = ports.get_mut(usize::from(port.0)) else {
                continue;
            };
            let Some(io) = p.io.as_mut() else { continue };
            scratch.hdr = Default::default();
            if scratch.set_frame(&frame).is_err() {
                continue;
            }
            match io.send(scratch) {
                Ok(()) => {}
                Err(e) if e.is_gone() => gone.push(port),
                Err(_) => core.count_drop(port, DropReason::TxError),
            }
        }
    }

    /// Decides every frame of `batch`, received on `ingress`, and sends the copies, per
    /// egress port in one batch.
    pub(crate) fn forward(&mut self, now: Instant, ingress: PortId, batch: &Batch) -> GonePorts {
        let mut gone = GonePorts::new();
        let rx = batch.packets();
        for pkt in rx {
            self.core.warm(ingress, pkt.frame());
        }
        for (i, pkt) in rx.iter().enumerate() {
            self.core
                .process(now, ingress, pkt.frame(), &mut self.decision);
            if self.fast.is_some() {
                if self.decision.moved_from.is_some() {
                    // A station moved: the kernel must stop sending to its old port
                    // before this frame (and the answers it draws) go out.
                    let src = pkt.frame().get(6..12).and_then(MacAddr::from_bytes);
                    self.revalidate_fast_only(now, src);
                } else if self.decision.verdict == Verdict::Control {
                    // A BPDU may have changed port states or flushed the FDB.
                    self.revalidate_fast(now);
                }
            }
            if self.decision.verdict == Verdict::Forward {
                self.enqueue(i, pkt, rx, &mut gone);
                self.offer_fast(ingress, pkt.frame());
            }
        }
        self.tx
            .flush(rx, &mut self.ports, &mut self.core, &mut gone);
        self.transmit_bpdus(&mut gone);
        gone
    }

    /// After a decided frame: a known unicast to one port, unchanged, may be handed to
    /// the kernel.
    fn offer_fast(&mut self, ingress: PortId, frame: &[u8]) {
        let Some(fast) = self.fast.as_mut() else {
            return;
        };
        let d = &self.decision;
        if let ([e], Some(Delivery::KnownUnicast)) = (d.egress.as_slice(), d.delivery) {
            if e.op == TagOp::Keep {
                fast.offer(&self.core, &self.ports, ingress, e.port, frame);
            }
        }
    }

    /// Queues the decided copies of `pkt` (frame `i` of `rx`).
    fn enqueue(&mut self, i: usize, pkt: &PacketBuf, rx: &[PacketBuf], gone: &mut GonePorts) {
        let BridgeRt {
            core,
            ports,
            decision,
            tx,
            ..
        } = self;
        for e in &decision.egress {
            let Some(io) = ports
                .get(usize::from(e.port.0))
                .and_then(Option::as_ref)
                .and_then(|p| p.io.as_ref())
            else {
                continue;
            };
            let plain = !io.vnet_hdr() && !pkt.hdr.is_plain();
            if e.op == TagOp::Keep && !plain {
                tx.queue(e.port, i);
                continue;
            }
            let queued = match tx.queue_changed(e.port, pkt, e.op, plain) {
                Ok(q) => q,
                Err(Full) => {
                    tx.flush(rx, ports, core, gone);
                    tx.queue_changed(e.port, pkt, e.op, plain).unwrap_or(false)
                }
            };
            if !queued {
                core.count_drop(e.port, DropReason::TxError);
            }
        }
    }
}
