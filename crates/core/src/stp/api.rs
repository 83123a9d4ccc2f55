//! The spanning tree methods of [`Bridge`] (the call order is in `bridge.rs`): protocol
//! and parameters, BPDUs in (from [`Bridge::process`]) and out
//! ([`Bridge::poll_transmit`]), events and status — and the glue that applies what the
//! engine decided to the bridge's ports and FDB after every input.

use core::time::Duration;

use vbridge_wire::bpdu;

use super::engine::Flush;
use super::port::RcvdKind;
use super::rx;
use super::{BPDU_FRAME_LEN, BpduFrame, StpEvent, StpMode, StpParams, StpPortConfig, StpStatus};
use crate::bridge::Bridge;
use crate::counters::DropReason;
use crate::error::ConfigError;
use crate::fdb::FlushFilter;
use crate::port::{PortId, PortKind, StpState};
use crate::time::Instant;

impl Bridge {
    // ----- protocol and parameters -----

    /// The spanning tree protocol running.
    pub fn stp_mode(&self) -> StpMode {
        self.stp.mode
    }

    /// Runs `mode`. A change restarts every port's machines: ports discard until the
    /// protocol lets them forward. `Off` makes every port forward and BPDUs flood.
    pub fn set_stp_mode(&mut self, now: Instant, mode: StpMode) {
        self.stp_enabled = mode != StpMode::Off;
        self.stp.set_mode(now, mode);
        if mode == StpMode::Off {
            for p in self.ports.iter_mut().flatten() {
                p.stp = StpState::Forwarding;
            }
        }
        self.stp_sync();
    }

    /// The bridge's spanning tree parameters.
    pub fn stp_params(&self) -> StpParams {
        self.stp.params
    }

    /// Sets all bridge parameters at once (checked together: see
    /// [`StpParams::validate`]).
    pub fn set_stp_params(&mut self, now: Instant, params: StpParams) -> Result<(), ConfigError> {
        params.validate()?;
        if params != self.stp.params {
            self.stp.set_params(now, params);
            self.stp_sync();
        }
        Ok(())
    }

    /// Bridge priority, 0..=61440 in steps of 4096.
    pub fn set_stp_priority(&mut self, now: Instant, priority: u16) -> Result<(), ConfigError> {
        let p = StpParams {
            priority,
            ..self.stp.params
        };
        self.set_stp_params(now, p)
    }

    /// Hello time, 1..=10 s, keeping max age ≥ 2 × (hello time + 1).
    pub fn set_stp_hello_time(&mut self, now: Instant, t: Duration) -> Result<(), ConfigError> {
        let p = StpParams {
            hello_time: t,
            ..self.stp.params
        };
        self.set_stp_params(now, p)
    }

    /// Max age, 6..=40 s, between 2 × (hello time + 1) and 2 × (forward delay − 1).
    pub fn set_stp_max_age(&mut self, now: Instant, t: Duration) -> Result<(), ConfigError> {
        let p = StpParams {
            max_age: t,
            ..self.stp.params
        };
        self.set_stp_params(now, p)
    }

    /// Forward delay, 4..=30 s, keeping 2 × (forward delay − 1) ≥ max age.
    pub fn set_stp_forward_delay(&mut self, now: Instant, t: Duration) -> Result<(), ConfigError> {
        let p = StpParams {
            forward_delay: t,
            ..self.stp.params
        };
        self.set_stp_params(now, p)
    }

    /// A port's spanning tree settings.
    pub fn port_stp_config(&self, id: PortId) -> Result<StpPortConfig, ConfigError> {
        let i = self.stp_index(id)?;
        Ok(self.stp.ports[i].cfg)
    }

    /// Sets a port's spanning tree settings (cost, priority, edge, point-to-point,
    /// guards). Turning BPDU guard off re-enables a port it disabled.
    pub fn set_port_stp_config(
        &mut self,
        now: Instant,
        id: PortId,
        cfg: StpPortConfig,
    ) -> Result<(), ConfigError> {
        cfg.validate()?;
        let i = self.stp_index(id)?;
        let old = self.stp.ports[i].cfg;
        if old != cfg {
            self.stp.now = self.stp.now.max(now);
            self.stp.ports[i].cfg = cfg;
            self.stp
                .port_config_changed(i, old.admin_edge != cfg.admin_edge);
            self.stp_sync();
        }
        Ok(())
    }

    /// What the driver knows of a port's link: its speed (for the automatic path cost)
    /// and duplex (full duplex: point-to-point, unless configured otherwise).
    pub fn set_port_link(
        &mut self,
        now: Instant,
        id: PortId,
        speed_mbps: Option<u32>,
        full_duplex: bool,
    ) -> Result<(), ConfigError> {
        let i = self.stp_index(id)?;
        let p = &mut self.stp.ports[i];
        if (p.speed_mbps, p.full_duplex) != (speed_mbps, full_duplex) {
            p.speed_mbps = speed_mbps;
            p.full_duplex = full_duplex;
            self.stp.now = self.stp.now.max(now);
            self.stp.port_config_changed(i, false);
            self.stp_sync();
        }
        Ok(())
    }

    /// Makes a port check again whether its peer speaks RSTP (after an 802.1D bridge
    /// was replaced by an RSTP one).
    pub fn stp_mcheck(&mut self, now: Instant, id: PortId) -> Result<(), ConfigError> {
        let i = self.stp_index(id)?;
        self.stp.now = self.stp.now.max(now);
        self.stp.mcheck(i);
        self.stp_sync();
        Ok(())
    }

    // ----- outputs -----

    /// The next BPDU to send: the port and a ready Ethernet frame (from the port's MAC,
    /// or the bridge MAC when the port has none). Call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<(PortId, BpduFrame)> {
        loop {
            let (id, repr) = self.stp.poll_transmit()?;
            let Some(port) = self.port(id).filter(|p| p.config.up) else {
                continue;
            };
            let src = port
                .config
                .mac
                .filter(|m| m.is_unicast())
                .unwrap_or(self.mac);
            let mut buf = [0u8; BPDU_FRAME_LEN];
            if let Ok(n) = bpdu::emit_frame(&repr, src, &mut buf) {
                return Some((id, BpduFrame::new(buf, n)));
            }
        }
    }

    /// The next spanning tree event, for the driver's log.
    pub fn poll_stp_event(&mut self) -> Option<StpEvent> {
        self.stp.poll_event()
    }

    /// What `brctl showstp` shows, with ages computed at `now`.
    pub fn stp_status(&self, now: Instant) -> StpStatus {
        let ageing = self.stp_ageing_override(now).unwrap_or(self.fdb.ageing);
        self.stp.status(now, ageing)
    }

    // ----- inputs from the bridge -----

    /// A frame to 01:80:c2:00:00:00 while a protocol runs. Never forwarded; refused ones
    /// are `BadBpdu` drops.
    #[cold]
    #[inline(never)]
    pub(crate) fn stp_input(
        &mut self,
        now: Instant,
        ingress: PortId,
        frame: &[u8],
    ) -> Result<(), DropReason> {
        let Some(i) = self.stp.index(ingress) else {
            return Ok(()); // the host port: not a spanning tree port
        };
        let bad = |b: &mut Bridge| {
            b.stp.ports[i].counters.rx_bad += 1;
            Err(DropReason::BadBpdu)
        };
        let Ok(repr) = bpdu::parse_frame(frame) else {
            return bad(self);
        };
        if self.stp.ports[i].cfg.bpdu_guard {
            self.stp.trip_guard(now, i);
            self.stp_sync();
            return Ok(());
        }
        let Some(rcvd) = rx::decode(&repr) else {
            return bad(self);
        };
        let p = &mut self.stp.ports[i];
        if rcvd.kind != RcvdKind::Tcn
            && rcvd.priority.bridge == self.stp.bridge_id
            && rcvd.priority.port == p.port_id
        {
            return bad(self); // our own BPDU came back (9.3.4)
        }
        match rcvd.kind {
            RcvdKind::Config => p.counters.rx_config += 1,
            RcvdKind::Rst => p.counters.rx_rst += 1,
            RcvdKind::Tcn => p.counters.rx_tcn += 1,
        }
        self.stp.receive(now, i, rcvd);
        self.stp_sync();
        Ok(())
    }

    /// A port was added: it joins the spanning tree unless it is the host port.
    pub(crate) fn stp_port_added(&mut self, id: PortId) {
        let Some(p) = self.port(id) else { return };
        if p.config.kind == PortKind::Normal {
            let up = p.config.up;
            self.stp.add_port(id, up);
            self.stp_sync();
        }
    }

    /// Ticks due at `now`, before the FDB's ageing sweep.
    pub(crate) fn stp_timeout(&mut self, now: Instant) {
        self.stp.handle_timeout(now);
        self.stp_sync();
        if let Some(a) = self.stp_ageing_override(now) {
            self.fdb.reschedule(now + a);
        }
    }

    /// The ageing time while STP's rapid ageing lasts.
    pub(crate) fn stp_ageing_override(&self, now: Instant) -> Option<Duration> {
        let until = self.stp.rapid_ageing_until?;
        if !self.stp.running() || now >= until || self.fdb.ageing.is_zero() {
            return None;
        }
        let fd = Duration::from_secs(u64::from(self.stp.root_times.forward_delay.max(1)));
        Some(fd.min(self.fdb.ageing))
    }

    /// Applies the engine's port states and flushes to the ports and the FDB.
    pub(crate) fn stp_sync(&mut self) {
        if !self.stp.running() {
            self.stp.flushes.clear();
            return;
        }
        let stp_mode = self.stp.mode == StpMode::Stp;
        for sp in &self.stp.ports {
            let state = sp.state(stp_mode);
            let Some(Some(port)) = self.ports.get_mut(sp.id.index()) else {
                continue;
            };
            if port.stp != state {
                port.stp = state;
                if !state.learns() {
                    self.fdb.flush(FlushFilter {
                        port: Some(sp.id),
                        vid: None,
                        include_static: false,
                    });
                }
            }
        }
        let now = self.stp.now;
        for f in self.stp.flushes.drain(..) {
            match f {
                Flush::Port(id) => {
                    self.fdb.flush(FlushFilter {
                        port: Some(id),
                        vid: None,
                        include_static: false,
                    });
                }
                Flush::RapidAgeing => self.fdb.reschedule(now),
            }
        }
    }

    fn stp_index(&self, id: PortId) -> Result<usize, ConfigError> {
        let p = self.port(id).ok_or(ConfigError::UnknownPort(id))?;
        if p.config.kind != PortKind::Normal {
            return Err(ConfigError::NotStpPort(id));
        }
        self.stp.index(id).ok_or(ConfigError::UnknownPort(id))
    }
}
