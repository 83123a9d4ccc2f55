//! A virtual network for the spanning tree tests: `Bridge`s wired by point-to-point links
//! with a fixed delay, a virtual clock, and every frame (BPDUs from `poll_transmit`, data
//! frames the bridges forward) delivered to the peer port in time order. Deterministic;
//! minutes of virtual time run in milliseconds.
#![allow(dead_code, unreachable_pub)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use vbridge_core::{
    Bridge, BridgeConfig, Decision, Instant, MacAddr, PortConfig, PortId, StpEvent, StpMode,
    StpPortConfig, StpState, Verdict,
};

/// One bridge of the network, with a host port (not a spanning tree port) to send and
/// receive data from.
#[derive(Debug)]
pub struct Node {
    pub b: Bridge,
    pub alive: bool,
    pub host: PortId,
    /// Copies of probe broadcasts that reached the host port.
    pub host_copies: u64,
}

/// A cable between two ports.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub a: (usize, PortId),
    pub z: (usize, PortId),
    pub up: bool,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: u64,
    seq: u64,
    to: usize,
    port: PortId,
    frame: Vec<u8>,
}

/// The network and its clock (milliseconds).
#[derive(Debug)]
pub struct Net {
    pub now: u64,
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    /// Link delay, ms.
    pub delay: u64,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Data frames delivered over links since the last probe.
    pub data_hops: u64,
    /// Data frames were dropped because too many were in flight (a storm).
    pub storm: bool,
    /// Every spanning tree event: (time, bridge, event).
    pub events: Vec<(u64, usize, StpEvent)>,
    /// BPDUs delivered over links.
    pub bpdus: u64,
}

/// Most data frames in flight before the network is declared in a storm.
const STORM: usize = 20_000;

/// The MAC of bridge `i` (`02:00:00:00:<i+1>:00`); its ports are `...:<i+1>:<n>`.
pub fn bridge_mac(i: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, i as u8 + 1, 0])
}

impl Net {
    /// `n` bridges running `mode`, no links yet.
    pub fn new(n: usize, mode: StpMode) -> Net {
        let nodes = (0..n)
            .map(|i| {
                let mut cfg = BridgeConfig::new(bridge_mac(i));
                cfg.mac_fixed = true;
                let mut b = Bridge::new(cfg);
                let host = b.add_port(PortConfig::host()).unwrap();
                b.set_stp_mode(Instant::ZERO, mode);
                Node {
                    b,
                    alive: true,
                    host,
                    host_copies: 0,
                }
            })
            .collect();
        let mut net = Net {
            now: 0,
            nodes,
            links: Vec::new(),
            delay: 1,
            queue: BinaryHeap::new(),
            seq: 0,
            data_hops: 0,
            storm: false,
            events: Vec::new(),
            bpdus: 0,
        };
        for i in 0..n {
            net.drain(i);
        }
        net
    }

    /// A ring of `n` bridges (0-1, 1-2, ..., n-1 - 0).
    pub fn ring(n: usize, mode: StpMode) -> Net {
        let mut net = Net::new(n, mode);
        for i in 0..n {
            net.connect(i, (i + 1) % n);
        }
        net
    }

    pub fn t(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    /// Adds a port to each bridge and a link between them, then brings both ends up;
    /// returns the link's index.
    pub fn connect(&mut self, a: usize, z: usize) -> usize {
        let pa = self.add_port(a);
        let pz = self.add_port(z);
        self.links.push(Link {
            a: (a, pa),
            z: (z, pz),
            up: false,
        });
        let l = self.links.len() - 1;
        self.set_link(l, true);
        l
    }

    /// A new port, down until its link is made.
    fn add_port(&mut self, i: usize) -> PortId {
        let n = self.nodes[i].b.port_ids().count() as u8;
        let mut m = bridge_mac(i);
        m.0[5] = n + 1;
        let mut cfg = PortConfig::new(Some(m));
        cfg.up = false;
        let p = self.nodes[i].b.add_port(cfg).unwrap();
        self.drain(i);
        p
    }

    /// The far end of `(bridge, port)`, if a working link leads there.
    fn peer(&self, i: usize, port: PortId) -> Option<(usize, PortId)> {
        let l = self
            .links
            .iter()
            .find(|l| l.a == (i, port) || l.z == (i, port))?;
        let far = if l.a == (i, port) { l.z } else { l.a };
        (l.up && self.nodes[i].alive && self.nodes[far.0].alive).then_some(far)
    }

    fn send(&mut self, from: usize, port: PortId, frame: Vec<u8>) {
        if let Some((to, port)) = self.peer(from, port) {
            self.seq += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + self.delay,
                seq: self.seq,
                to,
                port,
                frame,
            }));
        }
    }

    /// Sends what bridge `i` has to send and records its events.
    pub fn drain(&mut self, i: usize) {
        while let Some((port, f)) = self.nodes[i].b.poll_transmit() {
            if self.nodes[i].alive {
                self.send(i, port, f.to_vec());
            }
        }
        while let Some(e) = self.nodes[i].b.poll_stp_event() {
            self.events.push((self.now, i, e));
        }
        while self.nodes[i].b.poll_event().is_some() {}
        let s = self.nodes[i].b.stp_status(self.t());
        assert_eq!(s.unsettled_runs, 0, "bridge {i}: machines did not settle");
    }

    fn deliver(&mut self, f: InFlight) {
        let i = f.to;
        if !self.nodes[i].alive {
            return;
        }
        let bpdu = f.frame[..6] == MacAddr::STP_GROUP.0;
        let mut d = Decision::new();
        let now = self.t();
        self.nodes[i].b.process(now, f.port, &f.frame, &mut d);
        if bpdu {
            self.bpdus += 1;
            assert_ne!(d.verdict, Verdict::Forward, "a BPDU was forwarded");
        } else {
            self.data_hops += 1;
            self.forward(i, &d, &f.frame);
        }
        self.drain(i);
    }

    fn forward(&mut self, i: usize, d: &Decision, frame: &[u8]) {
        if d.verdict != Verdict::Forward {
            return;
        }
        for e in &d.egress {
            if e.port == self.nodes[i].host {
                self.nodes[i].host_copies += 1;
            } else if self.queue.len() < STORM {
                self.send(i, e.port, frame.to_vec());
            } else {
                self.storm = true;
            }
        }
    }

    /// Runs the network until `ms` milliseconds from now.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        loop {
            let next_frame = self.queue.peek().map(|Reverse(f)| f.at);
            let next_timer = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].alive)
                .filter_map(|i| self.nodes[i].b.poll_at())
                .map(|t| t.millis().max(self.now))
                .min();
            let Some(t) = [next_frame, next_timer].into_iter().flatten().min() else {
                break;
            };
            if t > end {
                break;
            }
            self.now = t;
            while self.queue.peek().is_some_and(|Reverse(f)| f.at <= self.now) {
                let Reverse(f) = self.queue.pop().unwrap();
                self.deliver(f);
            }
            for i in 0..self.nodes.len() {
                let due = self.nodes[i]
                    .b
                    .poll_at()
                    .is_some_and(|p| p.millis() <= self.now);
                if self.nodes[i].alive && due {
                    let now = self.t();
                    self.nodes[i].b.handle_timeout(now);
                    self.drain(i);
                    let again = self.nodes[i].b.poll_at();
                    assert!(
                        again.is_none_or(|p| p.millis() > self.now),
                        "bridge {i} wants a timeout at {again:?} again at {}",
                        self.now
                    );
                }
            }
        }
        self.now = end;
    }

    /// Broadcasts one frame from the host of bridge `from` and runs 100 ms; returns how
    /// many copies each bridge's host got (all 1 in a loop-free connected tree).
    pub fn probe(&mut self, from: usize) -> Vec<u64> {
        for n in &mut self.nodes {
            n.host_copies = 0;
        }
        self.data_hops = 0;
        self.storm = false;
        self.seq += 1;
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&MacAddr::BROADCAST.0);
        let src = MacAddr([0x06, 0, 0, 0, from as u8, (self.seq % 251) as u8]);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let mut d = Decision::new();
        let host = self.nodes[from].host;
        let now = self.t();
        self.nodes[from].b.process(now, host, &f, &mut d);
        self.forward(from, &d, &f);
        self.drain(from);
        self.run_for(100);
        self.nodes
            .iter()
            .map(|n| if n.alive { n.host_copies } else { 0 })
            .collect()
    }

    /// Whether a probe from every live bridge reaches every live bridge exactly once.
    pub fn tree_ok(&mut self) -> bool {
        let alive: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect();
        alive.iter().all(|&from| {
            let copies = self.probe(from);
            !self.storm
                && alive.iter().all(|&i| {
                    // The sender's own host does not get its frame back.
                    copies[i] == u64::from(i != from)
                })
        })
    }

    /// Runs in steps of `step` ms until `tree_ok` (probes take 100 ms each and count);
    /// returns the virtual ms it took, or `None` after `limit` ms.
    pub fn converge_within(&mut self, step: u64, limit: u64) -> Option<u64> {
        let start = self.now;
        while self.now - start <= limit {
            if self.settled() && self.tree_ok() {
                return Some(self.now - start);
            }
            self.run_for(step);
        }
        None
    }

    /// Every live bridge agrees on the root, and no port is still on its way (learning,
    /// listening).
    pub fn settled(&self) -> bool {
        let roots: Vec<_> = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .map(|n| n.b.stp_status(self.t()).designated_root)
            .collect();
        roots.windows(2).all(|w| w[0] == w[1])
            && self.nodes.iter().filter(|n| n.alive).all(|n| {
                n.b.port_ids().all(|p| {
                    !matches!(
                        n.b.port_stp_state(p).unwrap(),
                        StpState::Learning | StpState::Listening
                    )
                })
            })
    }

    /// How long after `since` (ms) the last port state change happened, if any did.
    pub fn last_state_change(&self, since: u64) -> Option<u64> {
        self.events
            .iter()
            .filter(|(t, _, e)| *t >= since && matches!(e, StpEvent::PortState { .. }))
            .map(|(t, _, _)| t - since)
            .max()
    }

    /// The events of bridge `i`.
    pub fn events_of(&self, i: usize) -> Vec<StpEvent> {
        self.events
            .iter()
            .filter(|(_, b, _)| *b == i)
            .map(|(_, _, e)| *e)
            .collect()
    }

    /// Takes bridge `i` off the network: its neighbours see their links go down.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        for l in self.links.clone() {
            for (me, far) in [(l.a, l.z), (l.z, l.a)] {
                if me.0 == i && self.nodes[far.0].alive {
                    self.nodes[far.0].b.set_port_up(far.1, false).unwrap();
                    self.drain(far.0);
                }
            }
        }
    }

    /// Cuts or restores link `l` (both ends see it).
    pub fn set_link(&mut self, l: usize, up: bool) {
        self.links[l].up = up;
        let Link { a, z, .. } = self.links[l];
        for (i, p) in [a, z] {
            self.nodes[i].b.set_port_up(p, up).unwrap();
            self.drain(i);
        }
    }

    /// The state of the port at end `end` (0: a, 1: z) of link `l`.
    pub fn link_state(&self, l: usize, end: usize) -> StpState {
        let (i, p) = if end == 0 {
            self.links[l].a
        } else {
            self.links[l].z
        };
        self.nodes[i].b.port_stp_state(p).unwrap()
    }

    /// Changes a port's spanning tree settings.
    pub fn port_config(&mut self, i: usize, p: PortId, f: impl FnOnce(&mut StpPortConfig)) {
        let mut c = self.nodes[i].b.port_stp_config(p).unwrap();
        f(&mut c);
        let now = self.t();
        self.nodes[i].b.set_port_stp_config(now, p, c).unwrap();
        self.drain(i);
    }

    /// Number of ports, over the network, that are blocking (discarding) on live links.
    pub fn blocked_link_ends(&self) -> usize {
        (0..self.links.len())
            .filter(|&l| self.links[l].up)
            .flat_map(|l| [(l, 0), (l, 1)])
            .filter(|&(l, e)| {
                let (i, _) = if e == 0 {
                    self.links[l].a
                } else {
                    self.links[l].z
                };
                self.nodes[i].alive && self.link_state(l, e) == StpState::Blocking
            })
            .count()
    }
}
