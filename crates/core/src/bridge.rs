//! The bridge: its ports, FDB, VLAN switch, the bridge MAC rule, configuration calls and
//! timers. Frame handling is in `forward.rs`.
//!
//! # Call order (for drivers)
//! 1. Create with [`Bridge::new`], add ports with [`Bridge::add_port`]; for spanning tree
//!    call [`Bridge::set_stp_mode`] (and the `set_stp_*` / [`Bridge::set_port_stp_config`]
//!    / [`Bridge::set_port_link`] settings, in any order).
//! 2. For every received frame call [`Bridge::process`] with the current time; act on the
//!    [`Decision`] (send copies, apply tag operations). BPDUs are consumed there while a
//!    protocol runs (`Verdict::Control`): the driver does nothing more with them.
//! 3. Call [`Bridge::handle_timeout`] when [`Bridge::poll_at`] says (or periodically);
//!    spanning tree ticks once a second through it.
//! 4. After any of the above, send what [`Bridge::poll_transmit`] returns until `None`
//!    (BPDUs, each on its port), and drain [`Bridge::poll_event`] (bridge MAC changes,
//!    ...) and [`Bridge::poll_stp_event`] (port states, roles, topology changes, ...).
//!    Port states are already applied; report link changes with [`Bridge::set_port_up`].

use core::time::Duration;
use std::collections::VecDeque;

use vbridge_wire::{MacAddr, Vid};

use crate::counters::{DropCounters, DropReason, PortCounters};
use crate::decision::Decision;
use crate::error::ConfigError;
use crate::fdb::{BRIDGE_SELF, Fdb, FdbEntry, FlushFilter};
use crate::port::{Port, PortConfig, PortFlags, PortId, PortKind, StpState};
use crate::stp::Stp;
use crate::time::Instant;
use crate::vlan::VlanMode;

/// Highest port number (STP port numbers are 12 bits).
pub const MAX_PORT_ID: u16 = 4095;
/// Default FDB ageing time, as in 802.1D and the Linux bridge.
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);
/// Default bridge-wide limit of learned entries.
pub const DEFAULT_MAX_LEARNED: u32 = 128 * 1024;
/// Default largest frame accepted: a 64 KiB GSO segment plus headers.
pub const DEFAULT_MAX_FRAME: usize = 65_535 + 18;
/// `group_fwd_mask` bits that may never be set: STP, pause, LACP (as in Linux).
const RESTRICTED_GROUP_FWD: u16 = 0x0007;

/// Bridge-wide settings at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The MAC the bridge has until it has ports (then the lowest port MAC, unless fixed).
    pub mac: MacAddr,
    /// Whether `mac` was set by hand: it then stays whatever ports come and go.
    pub mac_fixed: bool,
    pub ageing: Duration,
    pub max_learned: u32,
    /// Bit N lets frames to `01:80:c2:00:00:0N` be forwarded.
    pub group_fwd_mask: u16,
    pub max_frame_len: usize,
    /// Off: tags are not looked at and everything is VLAN 1, like a plain Linux bridge.
    /// Turned on by the first VLAN setting of a port.
    pub vlan_filtering: bool,
    /// Key of the FDB's hash. The driver gives each bridge a random one, so that MAC
    /// addresses chosen to collide (by a guest, say) collide only by chance; tests may fix
    /// it. 0 by default.
    pub fdb_seed: u64,
}

impl BridgeConfig {
    /// Defaults with the given initial MAC.
    pub fn new(mac: MacAddr) -> BridgeConfig {
        BridgeConfig {
            mac,
            mac_fixed: false,
            ageing: DEFAULT_AGEING,
            max_learned: DEFAULT_MAX_LEARNED,
            group_fwd_mask: 0,
            max_frame_len: DEFAULT_MAX_FRAME,
            vlan_filtering: false,
            fdb_seed: 0,
        }
    }
}

/// Something the driver should know about, raised by configuration or timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The bridge MAC changed (the host port's netdev should take it).
    MacChanged { old: MacAddr, new: MacAddr },
    /// Dynamic entries aged out.
    Aged { count: usize },
}

/// Bridge-wide statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    pub fdb_entries: usize,
    pub fdb_learned: u32,
    pub fdb_moves: u64,
    pub fdb_limit_hits: u64,
    pub fdb_aged_out: u64,
    /// Drops by reason, over all ports (and frames for unknown ports).
    pub drops: DropCounters,
}

/// A sans-IO 802.1Q learning bridge.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub(crate) ports: Vec<Option<Port>>,
    pub(crate) fdb: Fdb,
    pub(crate) mac: MacAddr,
    pub(crate) mac_fixed: bool,
    pub(crate) group_fwd_mask: u16,
    pub(crate) max_frame_len: usize,
    pub(crate) vlan_filtering: bool,
    pub(crate) host_port: Option<PortId>,
    /// STP/RSTP consumes BPDUs; when off, BPDUs are flooded like Linux does.
    pub(crate) stp_enabled: bool,
    /// The spanning tree engine (`stp/`).
    pub(crate) stp: Stp,
    /// Drops of frames whose ingress port is unknown.
    pub(crate) orphan_drops: DropCounters,
    events: VecDeque<Event>,
}

impl Bridge {
    /// A bridge with no ports.
    pub fn new(config: BridgeConfig) -> Bridge {
        let mut b = Bridge {
            ports: vec![None],
            fdb: Fdb::new(config.ageing, config.max_learned, config.fdb_seed),
            mac: config.mac,
            mac_fixed: config.mac_fixed,
            group_fwd_mask: config.group_fwd_mask & !RESTRICTED_GROUP_FWD,
            max_frame_len: config.max_frame_len,
            vlan_filtering: config.vlan_filtering,
            host_port: None,
            stp_enabled: false,
            stp: Stp::new(config.mac),
            orphan_drops: DropCounters::default(),
            events: VecDeque::new(),
        };
        b.refresh_locals();
        b
    }

    // ----- ports -----

    /// Adds a port with the lowest free number.
    pub fn add_port(&mut self, config: PortConfig) -> Result<PortId, ConfigError> {
        let free = (1..=MAX_PORT_ID)
            .map(PortId)
            .find(|p| self.port(*p).is_none())
            .ok_or(ConfigError::TooManyPorts(usize::from(MAX_PORT_ID)))?;
        self.add_port_with_id(free, config)?;
        Ok(free)
    }

    /// Adds a port with a chosen number (restoring saved configuration).
    pub fn add_port_with_id(&mut self, id: PortId, config: PortConfig) -> Result<(), ConfigError> {
        if id.0 == 0 || id.0 > MAX_PORT_ID {
            return Err(ConfigError::OutOfRange {
                what: "port number",
                value: u64::from(id.0),
                range: "1..=4095",
            });
        }
        if self.port(id).is_some() {
            return Err(ConfigError::DuplicatePort(id));
        }
        if config.kind == PortKind::Host && self.host_port.is_some() {
            return Err(ConfigError::DuplicatePort(id));
        }
        if config.vlan != VlanMode::default() {
            self.vlan_filtering = true;
        }
        if self.ports.len() <= id.index() {
            self.ports.resize(id.index() + 1, None);
        }
        if config.kind == PortKind::Host {
            self.host_port = Some(id);
        }
        self.ports[id.index()] = Some(Port::new(config));
        self.recompute_mac();
        self.stp_port_added(id);
        Ok(())
    }

    /// Removes a port and every FDB entry pointing to it.
    pub fn remove_port(&mut self, id: PortId) -> Result<(), ConfigError> {
        self.port_ref(id)?;
        self.fdb.flush(FlushFilter {
            port: Some(id),
            vid: None,
            include_static: true,
        });
        self.fdb.forget_port(id);
        self.ports[id.index()] = None;
        self.stp.remove_port(id);
        if self.host_port == Some(id) {
            self.host_port = None;
        }
        while self.ports.len() > 1 && self.ports.last().is_some_and(Option::is_none) {
            self.ports.pop();
        }
        self.recompute_mac();
        self.stp_sync();
        Ok(())
    }

    /// The numbers of all ports, in order.
    pub fn port_ids(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .map(|(i, _)| PortId(i as u16))
    }

    /// A port's configuration.
    pub fn port_config(&self, id: PortId) -> Result<&PortConfig, ConfigError> {
        Ok(&self.port_ref(id)?.config)
    }

    /// A port's counters.
    pub fn port_counters(&self, id: PortId) -> Result<&PortCounters, ConfigError> {
        Ok(&self.port_ref(id)?.counters)
    }

    /// A port's spanning-tree state.
    pub fn port_stp_state(&self, id: PortId) -> Result<StpState, ConfigError> {
        Ok(self.port_ref(id)?.stp)
    }

    /// Number of dynamic entries learned on a port.
    pub fn port_learned(&self, id: PortId) -> Result<u32, ConfigError> {
        self.port_ref(id)?;
        Ok(self.fdb.learned_on(id))
    }

    /// Brings a port up or down (administratively or its link). Going down forgets what
    /// was learned on it; spanning tree disables or enables the port.
    pub fn set_port_up(&mut self, id: PortId, up: bool) -> Result<(), ConfigError> {
        self.port_mut(id)?.config.up = up;
        if !up {
            self.flush_port_dynamic(id);
        }
        self.stp.set_port_up(id, up);
        self.stp_sync();
        Ok(())
    }

    /// Sets (or clears) the MAC of the netdev behind a port; the bridge MAC follows.
    pub fn set_port_mac(&mut self, id: PortId, mac: Option<MacAddr>) -> Result<(), ConfigError> {
        self.port_mut(id)?.config.mac = mac;
        self.recompute_mac();
        Ok(())
    }

    /// Replaces a port's flags. Turning learning off or locking forgets what it learned.
    pub fn set_port_flags(&mut self, id: PortId, flags: PortFlags) -> Result<(), ConfigError> {
        self.port_mut(id)?.config.flags = flags;
        if !flags.learning || flags.locked {
            self.flush_port_dynamic(id);
        }
        Ok(())
    }

    /// Sets a port's VLAN mode; turns VLAN filtering on. Entries learned on the port in
    /// VLANs it no longer carries are forgotten.
    pub fn set_port_vlan(&mut self, id: PortId, mode: VlanMode) -> Result<(), ConfigError> {
        self.port_mut(id)?.config.vlan = mode;
        self.vlan_filtering = true;
        self.flush_port_dynamic(id);
        Ok(())
    }

    /// Sets a port's limit of learned entries (0 = none).
    pub fn set_port_max_learned(&mut self, id: PortId, max: u32) -> Result<(), ConfigError> {
        self.port_mut(id)?.config.max_learned = max;
        Ok(())
    }

    /// Sets a port's spanning-tree state by hand. While a protocol runs, its engine sets
    /// the states itself (and overrides this at its next change).
    pub fn set_port_stp_state(&mut self, id: PortId, state: StpState) -> Result<(), ConfigError> {
        self.port_mut(id)?.stp = state;
        if !state.learns() {
            self.flush_port_dynamic(id);
        }
        Ok(())
    }

    /// The host port, if the bridge has one.
    pub fn host_port(&self) -> Option<PortId> {
        self.host_port
    }

    // ----- bridge-wide settings -----

    /// The bridge MAC.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// Whether the bridge MAC was set by hand.
    pub fn mac_fixed(&self) -> bool {
        self.mac_fixed
    }

    /// Sets the bridge MAC by hand (`Some`), or returns to the lowest-port-MAC rule (`None`).
    pub fn set_mac(&mut self, mac: Option<MacAddr>) -> Result<(), ConfigError> {
        match mac {
            Some(m) if !m.is_unicast() => return Err(ConfigError::NotUnicast(m)),
            Some(m) => {
                self.mac_fixed = true;
                self.change_mac(m);
            }
            None => {
                self.mac_fixed = false;
                self.recompute_mac();
            }
        }
        Ok(())
    }

    /// FDB ageing time; zero disables learning (and forgets what was learned).
    pub fn ageing(&self) -> Duration {
        self.fdb.ageing
    }

    /// Sets the ageing time, effective for existing entries at the next sweep.
    pub fn set_ageing(&mut self, now: Instant, ageing: Duration) -> Result<(), ConfigError> {
        if ageing > Duration::from_secs(1_000_000) {
            return Err(ConfigError::OutOfRange {
                what: "ageing time (s)",
                value: ageing.as_secs(),
                range: "0..=1000000",
            });
        }
        self.fdb.ageing = ageing;
        if ageing.is_zero() {
            self.fdb.flush(FlushFilter::default());
        } else {
            self.fdb.reschedule(now);
        }
        Ok(())
    }

    /// Bridge-wide limit of learned entries.
    pub fn set_max_learned(&mut self, max: u32) {
        self.fdb.max_learned = max;
    }

    /// Lets frames to some reserved group addresses be forwarded (bit N: `...:0N`).
    pub fn set_group_fwd_mask(&mut self, mask: u16) -> Result<(), ConfigError> {
        if mask & RESTRICTED_GROUP_FWD != 0 {
            return Err(ConfigError::RestrictedGroupFwd(mask));
        }
        self.group_fwd_mask = mask;
        Ok(())
    }

    /// The current `group_fwd_mask`.
    pub fn group_fwd_mask(&self) -> u16 {
        self.group_fwd_mask
    }

    /// Largest frame accepted (bytes, without FCS).
    pub fn set_max_frame_len(&mut self, len: usize) -> Result<(), ConfigError> {
        if !(64..=65_535 + 64).contains(&len) {
            return Err(ConfigError::OutOfRange {
                what: "maximum frame length",
                value: len as u64,
                range: "64..=65599",
            });
        }
        self.max_frame_len = len;
        Ok(())
    }

    /// Whether tags are looked at.
    pub fn vlan_filtering(&self) -> bool {
        self.vlan_filtering
    }

    /// Turns VLAN filtering on or off.
    pub fn set_vlan_filtering(&mut self, on: bool) {
        if on != self.vlan_filtering {
            self.vlan_filtering = on;
            self.fdb.flush(FlushFilter::default());
        }
    }

    /// Whether a spanning-tree protocol consumes BPDUs.
    pub fn stp_enabled(&self) -> bool {
        self.stp_enabled
    }

    /// Turns spanning tree on ([`crate::StpMode::Stp`], or the protocol already running)
    /// or off, at the latest time the bridge was given; see [`Bridge::set_stp_mode`].
    pub fn set_stp_enabled(&mut self, on: bool) {
        let mode = match (on, self.stp.mode) {
            (false, _) => crate::StpMode::Off,
            (true, crate::StpMode::Off) => crate::StpMode::Stp,
            (true, running) => running,
        };
        self.set_stp_mode(self.stp.now, mode);
    }

    // ----- FDB -----

    /// Adds (or replaces) a static entry.
    pub fn fdb_add_static(
        &mut self,
        vid: Vid,
        mac: MacAddr,
        port: PortId,
    ) -> Result<(), ConfigError> {
        self.port_ref(port)?;
        if !mac.is_unicast() {
            return Err(ConfigError::NotUnicast(mac));
        }
        self.fdb.add_static(vid, mac, port);
        Ok(())
    }

    /// Removes a static or dynamic entry.
    pub fn fdb_remove(&mut self, vid: Vid, mac: MacAddr) -> Result<(), ConfigError> {
        if self.fdb.remove(vid, mac) {
            Ok(())
        } else {
            Err(ConfigError::NoSuchEntry {
                mac,
                vid: vid.get(),
            })
        }
    }

    /// Flushes entries; returns how many went.
    pub fn fdb_flush(&mut self, filter: FlushFilter) -> usize {
        self.fdb.flush(filter)
    }

    /// Every FDB entry, ages computed at `now`, in no particular order.
    pub fn fdb_entries(&self, now: Instant) -> impl Iterator<Item = FdbEntry> + '_ {
        self.fdb.entries(now)
    }

    /// Where a frame to `mac` in `vid` would go.
    pub fn fdb_lookup(&self, vid: Vid, mac: MacAddr) -> Option<PortId> {
        self.fdb.lookup(vid, mac).map(|(p, _)| p)
    }

    /// Reserves FDB room for `n` more entries.
    pub fn fdb_reserve(&mut self, n: usize) {
        self.fdb.reserve(n);
    }

    // ----- time and events -----

    /// When [`Bridge::handle_timeout`] next has work.
    pub fn poll_at(&self) -> Option<Instant> {
        match (self.fdb.poll_at(), self.stp.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs timers due at `now` (spanning tree ticks, FDB ageing).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.stp_timeout(now);
        let n = self.fdb.age(now, self.stp_ageing_override(now));
        if n > 0 {
            self.events.push_back(Event::Aged { count: n });
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Statistics over the whole bridge.
    pub fn stats(&self) -> BridgeStats {
        let mut drops = self.orphan_drops;
        for p in self.ports.iter().flatten() {
            drops.add(&p.counters.drops);
        }
        BridgeStats {
            fdb_entries: self.fdb.len(),
            fdb_learned: self.fdb.learned_total(),
            fdb_moves: self.fdb.moves,
            fdb_limit_hits: self.fdb.limit_hits,
            fdb_aged_out: self.fdb.aged_out,
            drops,
        }
    }

    /// Counts a drop the driver made (e.g. a failed transmit) against `port`.
    pub fn count_drop(&mut self, port: PortId, reason: DropReason) {
        match self.port_mut(port) {
            Ok(p) => p.counters.drops.bump(reason),
            Err(_) => self.orphan_drops.bump(reason),
        }
    }

    /// A decision buffer sized for this bridge.
    pub fn new_decision(&self) -> Decision {
        Decision::new()
    }

    // ----- internals -----

    #[inline]
    pub(crate) fn port(&self, id: PortId) -> Option<&Port> {
        self.ports.get(id.index()).and_then(Option::as_ref)
    }

    fn port_ref(&self, id: PortId) -> Result<&Port, ConfigError> {
        self.port(id).ok_or(ConfigError::UnknownPort(id))
    }

    fn port_mut(&mut self, id: PortId) -> Result<&mut Port, ConfigError> {
        self.ports
            .get_mut(id.index())
            .and_then(Option::as_mut)
            .ok_or(ConfigError::UnknownPort(id))
    }

    fn flush_port_dynamic(&mut self, id: PortId) {
        self.fdb.flush(FlushFilter {
            port: Some(id),
            vid: None,
            include_static: false,
        });
    }

    /// The bridge MAC rule (seed 003): unless fixed, the lowest MAC among the ports (the
    /// host port excluded); with no port MAC at all, the bridge keeps the MAC it has.
    fn recompute_mac(&mut self) {
        if !self.mac_fixed {
            let lowest = self
                .ports
                .iter()
                .flatten()
                .filter(|p| p.config.kind == PortKind::Normal)
                .filter_map(|p| p.config.mac)
                .filter(MacAddr::is_unicast)
                .min();
            if let Some(m) = lowest {
                self.change_mac(m);
            }
        }
        self.refresh_locals();
    }

    fn change_mac(&mut self, new: MacAddr) {
        let old = self.mac;
        if old != new {
            self.mac = new;
            self.events.push_back(Event::MacChanged { old, new });
            self.stp.set_bridge_mac(new);
            self.stp_sync();
        }
        self.refresh_locals();
    }

    /// Local entries: the bridge MAC and every port's MAC.
    fn refresh_locals(&mut self) {
        let mut locals: Vec<(MacAddr, PortId)> = vec![(self.mac, BRIDGE_SELF)];
        for (i, p) in self.ports.iter().enumerate() {
            if let Some(m) = p.as_ref().and_then(|p| p.config.mac) {
                if m.is_unicast()
                    && p.as_ref()
                        .is_some_and(|p| p.config.kind == PortKind::Normal)
                {
                    locals.push((m, PortId(i as u16)));
                }
            }
        }
        self.fdb.set_locals(&locals);
    }
}
