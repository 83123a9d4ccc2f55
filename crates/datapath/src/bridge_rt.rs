//! One bridge at run time, owned by the forwarding thread: the sans-IO core, the port
//! backends behind its port numbers, and the forwarding of a received batch (decide,
//! apply tag operations, transmit).

use std::sync::Arc;

use vbridge_core::{
    Bridge, Decision, Delivery, DropReason, Instant, MacAddr, PortConfig, PortFlags, PortId, TagOp,
    Verdict, VlanMode,
};
use vbridge_ports::{Batch, FastPort, PacketBuf, PortIo};

use crate::action::Retired;
use crate::control::backend::Backend;
use crate::control::connect::Connection;
use crate::fast::Fast;
use crate::observe::{Capture, Live};
use crate::tx::{Full, TxQueues};
use crate::view::PortKind;

/// A port's backend and what the datapath knows about it.
pub(crate) struct PortRt {
    pub(crate) name: String,
    pub(crate) kind: PortKind,
    /// `None` while the netdev is gone.
    pub(crate) io: Option<Box<dyn PortIo>>,
    /// The netdev's index in the daemon's namespace while attached (interfaces and the
    /// host TAP).
    pub(crate) ifindex: Option<u32>,
    /// The netdev's MTU, as last known.
    pub(crate) mtu: Option<u32>,
    /// The namespace this port connects, if it was made by `vbr connect`.
    pub(crate) conn: Option<Connection>,
    /// A VM socket port's path.
    pub(crate) socket: Option<std::path::PathBuf>,
    /// A VXLAN port's tunnel.
    pub(crate) vxlan: Option<crate::VxlanCfg>,
    /// On the bridge's kernel fast path (a port on a netdev of this namespace): its tcx
    /// program.
    pub(crate) fast: Option<FastPort>,
    /// A veth whose peer is in another namespace: the kernel hands it frames straight to
    /// the peer rather than sending them out of the netdev.
    pub(crate) fast_peer: bool,
    /// A capture of its frames (`vbr capture`); keeps its flows off the fast path.
    pub(crate) capture: Option<Capture>,
    /// Live traces that watch it (`vbr trace --live`, of it or of the whole bridge):
    /// while any does, its flows stay off the fast path too.
    pub(crate) watchers: u16,
    /// For a TAP the switch reads in this namespace ([`PortKind::reads_own_tap`]): the
    /// netdev whose fast-path link was last asked for, and when.
    link_asked: Option<(u32, Instant)>,
}

impl PortRt {
    /// Whether its frames are being watched (captured or traced live), so that every
    /// one of them must pass through the switch.
    pub(crate) fn observed(&self) -> bool {
        self.capture.is_some() || self.watchers > 0
    }
}

impl PortRt {
    /// Takes an opened backend. Returns what it replaces (to be closed off the thread).
    pub(crate) fn attach(&mut self, b: Backend) -> (Option<Box<dyn PortIo>>, Option<FastPort>) {
        let old = (self.io.take(), self.fast.take());
        self.io = Some(b.io);
        self.fast = b.fast;
        self.fast_peer = b.peer;
        self.ifindex = b.ifindex;
        self.link_asked = None;
        self.mtu = b.mtu;
        if let Some(c) = b.conn {
            self.conn = Some(*c);
        }
        old
    }

    /// Everything this port of `bridge` holds, to be released by the control side.
    pub(crate) fn retire(self, bridge: &str) -> Retired {
        Retired {
            bridge: bridge.to_owned(),
            name: self.name,
            kind: self.kind,
            io: self.io,
            fast: self.fast,
        }
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

/// The longest frame a port's netdev takes (its MTU, the Ethernet header and one VLAN
/// tag, as the kernel bridge allows); `None` while its MTU is unknown. GSO super-frames
/// are not held to it.
pub(crate) fn frame_limit(p: &PortRt) -> Option<usize> {
    p.mtu.map(|m| m as usize + 18)
}

/// Port `p`'s name, or `#N` for a port that is not there (any more).
pub(crate) fn port_label(ports: &[Option<PortRt>], p: PortId) -> String {
    ports
        .get(usize::from(p.0))
        .and_then(Option::as_ref)
        .map_or_else(|| p.to_string(), |p| p.name.clone())
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
    /// For VM socket ports ([`PortKind::Stream`], [`PortKind::Dgram`]): the path vbridge
    /// listens on (a dgram port's guest has its socket at this path plus `.guest`).
    pub socket: Option<std::path::PathBuf>,
    /// For a [`PortKind::Vxlan`] port: its tunnel.
    pub vxlan: Option<crate::VxlanCfg>,
    /// Attach even the interface of the host's default route (`vbr addif --force`).
    pub force: bool,
    /// Restoring saved configuration (devices a configuration of an older version named
    /// are taken as made by vbridge).
    pub restoring: bool,
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
            socket: None,
            vxlan: None,
            force: false,
            restoring: false,
        }
    }
}

/// A bridge with its ports.
#[derive(Debug)]
pub(crate) struct BridgeRt {
    pub(crate) name: String,
    /// The switch itself.
    pub(crate) core: Bridge,
    pub(crate) ports: Vec<Option<PortRt>>,
    decision: Decision,
    /// Buffer for BPDUs the spanning tree sends.
    scratch: PacketBuf,
    tx: TxQueues,
    /// Flows handed to the kernel (made with the first veth port).
    pub(crate) fast: Option<Fast>,
    /// MACs asked of the host interface and not yet seen on it: a link notification
    /// showing one of them is our own doing, not a MAC set by hand.
    pub(crate) host_mac_asked: Vec<(MacAddr, Instant)>,
    /// The MAC last seen on the host interface.
    pub(crate) host_mac: Option<MacAddr>,
    /// Live traces of this bridge's decisions (`vbr trace --live`).
    pub(crate) live: Vec<Live>,
}

/// How long a TAP port's fast-path link is waited for before it is asked again.
const TAP_LINK_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

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
            host_mac_asked: Vec::new(),
            host_mac: None,
            live: Vec::new(),
        }
    }

    /// The fast-path links of the TAPs the switch reads in this namespace (the host port,
    /// VLAN gateways) to be made by the control side, once the bridge has a fast path
    /// and such a port has none; asked once per netdev, and again after
    /// [`TAP_LINK_RETRY`] if no link came.
    pub(crate) fn tap_links_wanted(&mut self, now: Instant) -> Vec<crate::action::Notice> {
        let Some(fast) = self.fast.as_ref().map(|f| f.path().clone()) else {
            return Vec::new();
        };
        let mut wanted = Vec::new();
        for p in self.ports.iter_mut().flatten() {
            let Some(ifindex) = p.ifindex else { continue };
            let before = p.link_asked.filter(|(i, _)| *i == ifindex);
            let waiting = before.is_some_and(|(_, at)| now.saturating_since(at) < TAP_LINK_RETRY);
            if !p.kind.reads_own_tap() || p.fast.is_some() || p.io.is_none() || waiting {
                continue;
            }
            p.link_asked = Some((ifindex, now));
            wanted.push(crate::action::Notice::LinkTap {
                bridge: self.name.clone(),
                port: p.name.clone(),
                ifindex,
                fast: Arc::clone(&fast),
                again: before.is_some(),
            });
        }
        wanted
    }

    /// The bridge's name.
    pub(crate) fn name(&self) -> &str {
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
    pub(crate) fn port_id(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .enumerate()
            .find(|(_, p)| p.as_ref().is_some_and(|p| p.name == name))
            .map(|(i, _)| PortId(i as u16))
    }

    /// Names and numbers of all ports.
    pub(crate) fn port_names(&self) -> impl Iterator<Item = (PortId, &str)> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (PortId(i as u16), p.name.as_str())))
    }

    /// Adds a port to the core and keeps its backend; on error the backend comes back
    /// untouched.
    pub(crate) fn insert_port(
        &mut self,
        spec: &PortSpec,
        backend: Option<Backend>,
    ) -> Result<PortId, Box<(vbridge_core::ConfigError, Option<Backend>)>> {
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
        let added = match spec.port_no {
            Some(n) => self
                .core
                .add_port_with_id(PortId(n), cfg)
                .map(|()| PortId(n)),
            None => self.core.add_port(cfg),
        };
        let id = match added {
            Ok(id) => id,
            Err(e) => return Err(Box::new((e, backend))),
        };
        let i = usize::from(id.0);
        if self.ports.len() <= i {
            self.ports.resize_with(i + 1, || None);
        }
        let mut port = PortRt {
            name: spec.name.clone(),
            kind: spec.kind,
            io: None,
            ifindex: None,
            mtu: None,
            conn: spec.conn.clone(),
            socket: spec.socket.clone(),
            vxlan: spec.vxlan.clone(),
            fast: None,
            fast_peer: false,
            capture: None,
            watchers: self.live.iter().filter(|l| l.port.is_none()).count() as u16,
            link_asked: None,
        };
        if let Some(b) = backend {
            let _ = port.attach(b); // a new port replaces nothing
        }
        self.ports[i] = Some(port);
        Ok(id)
    }

    /// Checks every flow in the kernel against the core now (see [`Fast::check`]).
    pub(crate) fn check_fast(&mut self, now: Instant) {
        self.check_fast_only(now, None);
    }

    /// [`BridgeRt::check_fast`] for the flows of one station (all with `None`).
    fn check_fast_only(&mut self, now: Instant, only: Option<MacAddr>) {
        if let Some(f) = self.fast.as_mut() {
            f.check(now, &mut self.core, &self.ports, only);
        }
    }

    /// Flows the kernel forwards for this bridge.
    pub(crate) fn fast_flows(&self) -> usize {
        self.fast.as_ref().map_or(0, Fast::len)
    }

    /// Removes a port; returns its runtime part (to be released by the control side).
    pub(crate) fn take_port(&mut self, id: PortId) -> Option<PortRt> {
        self.core.remove_port(id).ok()?;
        self.ports.get_mut(usize::from(id.0))?.take()
    }

    /// Marks a port's device as gone: the core stops using it. Returns what it held.
    pub(crate) fn mark_gone(&mut self, id: PortId) -> (Option<Box<dyn PortIo>>, Option<FastPort>) {
        let held = match self.port_mut(id) {
            Some(p) => (p.io.take(), p.fast.take()),
            None => (None, None),
        };
        let _ = self.core.set_port_up(id, false);
        held
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
                Ok(()) => {
                    if let Some(c) = p.capture.as_mut() {
                        c.take(true, scratch.frame());
                    }
                }
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
        if let Some(c) = self.port_mut(ingress).and_then(|p| p.capture.as_mut()) {
            for pkt in rx {
                c.take(false, pkt.frame());
            }
        }
        for (i, pkt) in rx.iter().enumerate() {
            // The header of a broadcast the kernel flooded: learned from and counted here,
            // never sent.
            let flooded = pkt.flooded_len();
            match flooded {
                Some(len) => {
                    self.core
                        .process_head(now, ingress, pkt.frame(), len, &mut self.decision);
                    if let Some(f) = self.fast.as_mut()
                        && self.decision.verdict == Verdict::Forward
                    {
                        f.note_flooded(len);
                    }
                }
                None => self
                    .core
                    .process(now, ingress, pkt.frame(), &mut self.decision),
            }
            if !self.live.is_empty() {
                self.note_live(now, ingress, pkt.frame());
            }
            if self.fast.is_some() {
                if self.decision.moved_from.is_some() {
                    // A station moved: the kernel must stop sending to its old port
                    // before this frame (and the answers it draws) go out.
                    let src = pkt.frame().get(6..12).and_then(MacAddr::from_bytes);
                    self.check_fast_only(now, src);
                } else if self.decision.verdict == Verdict::Control {
                    // A BPDU may have changed port states or flushed the FDB.
                    self.check_fast(now);
                }
            }
            if self.decision.verdict == Verdict::Forward && flooded.is_none() {
                self.enqueue(i, pkt, rx, &mut gone);
                self.offer_fast(now, ingress, pkt.frame());
            }
        }
        self.tx
            .flush(rx, &mut self.ports, &mut self.core, &mut gone);
        self.transmit_bpdus(&mut gone);
        gone
    }

    /// Writes the decision just made to the live traces.
    #[cold]
    fn note_live(&mut self, now: Instant, ingress: PortId, frame: &[u8]) {
        let BridgeRt {
            live,
            ports,
            decision,
            ..
        } = self;
        let name = |p: PortId| port_label(ports, p);
        for l in live.iter_mut() {
            l.note(now, ingress, frame, decision, &name);
        }
    }

    /// After a decided frame: a known unicast to one port may be handed to the kernel
    /// (with the tag operation the core says), and so may the broadcasts of a port and
    /// tag.
    fn offer_fast(&mut self, now: Instant, ingress: PortId, frame: &[u8]) {
        let Some(fast) = self.fast.as_mut() else {
            return;
        };
        let d = &self.decision;
        match (d.egress.as_slice(), d.delivery) {
            ([e], Some(Delivery::KnownUnicast | Delivery::Local)) => {
                fast.offer(&self.core, &self.ports, ingress, e.port, frame);
            }
            (_, Some(Delivery::FloodBroadcast)) => {
                fast.offer_flood(now, &self.core, &self.ports, ingress, frame);
            }
            _ => {}
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
            let Some(p) = ports.get(usize::from(e.port.0)).and_then(Option::as_ref) else {
                continue;
            };
            let Some(io) = p.io.as_ref() else {
                continue;
            };
            // One MTU rule on every path: too long for the egress netdev is dropped and
            // counted, as the kernel bridge does (GSO super-frames are cut later).
            if let Some(limit) = frame_limit(p) {
                let len = match e.op {
                    TagOp::Push(_) => pkt.len() + 4,
                    TagOp::Pop => pkt.len().saturating_sub(4),
                    _ => pkt.len(),
                };
                if len > limit && !pkt.hdr.is_gso() {
                    core.count_drop(e.port, DropReason::MtuExceeded);
                    continue;
                }
            }
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
