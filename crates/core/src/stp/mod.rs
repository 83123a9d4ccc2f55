//! Spanning tree, sans-IO: IEEE 802.1D-2004 clause 17 (RSTP) with its ForceVersion
//! switch, so one engine runs both the rapid protocol (ForceVersion 2) and the
//! STP-compatible one (ForceVersion 0) that interoperates with 802.1D-1998 bridges such
//! as the Linux kernel bridge. This module owns the public types; the engine is split by
//! state machine:
//!
//! | file             | owns                                                          |
//! |------------------|---------------------------------------------------------------|
//! | `engine.rs`      | bridge-wide variables, BEGIN, the run-to-completion loop, ticks |
//! | `port.rs`        | per-port variables and machine states                          |
//! | `vector.rs`      | priority vectors, timer sets, path costs                       |
//! | `rx.rs`          | BPDU validation, Port Receive, Protocol Migration, Bridge Detection |
//! | `info.rs`        | Port Information                                               |
//! | `roles.rs`       | Port Role Selection (with root guard)                          |
//! | `transitions.rs` | Port Role Transitions (proposal / agreement, sync), allSynced  |
//! | `topology.rs`    | Port State Transition, Topology Change, FDB flushes            |
//! | `tx.rs`          | Port Transmit and the BPDUs it builds                          |
//! | `status.rs`      | what `brctl showstp` prints, events for what changed           |
//! | `api.rs`         | the [`crate::Bridge`] methods drivers call                     |
//!
//! Timers count whole seconds, ticked once a second from [`crate::Bridge::handle_timeout`];
//! everything else (received BPDUs, configuration, link changes) runs the machines to
//! completion at once, which is what makes the proposal / agreement handshake converge in
//! the time BPDUs take to cross the links.

mod api;
mod engine;
mod info;
mod port;
mod roles;
mod rx;
mod status;
mod topology;
mod transitions;
mod tx;
mod vector;

use core::fmt;
use core::time::Duration;

pub use vbridge_wire::bpdu::BridgeId;

pub(crate) use engine::Stp;
pub use status::{StpPortCounters, StpPortStatus, StpStatus};
pub use vector::path_cost_for_speed;

use crate::error::ConfigError;
use crate::port::{PortId, StpState};

/// Which spanning tree protocol the bridge runs.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StpMode {
    /// None: every port forwards and BPDUs are flooded like any frame (as Linux does).
    #[default]
    Off,
    /// 802.1D STP behaviour (clause 17 with ForceVersion 0): Config and TCN BPDUs, ports
    /// pass through listening and learning for a forward delay each.
    Stp,
    /// 802.1w / 802.1D-2004 RSTP (ForceVersion 2), falling back to STP BPDUs per port
    /// when the peer speaks 802.1D.
    Rstp,
}

impl StpMode {
    /// `off`, `stp`, `rstp`.
    pub const fn name(self) -> &'static str {
        match self {
            StpMode::Off => "off",
            StpMode::Stp => "stp",
            StpMode::Rstp => "rstp",
        }
    }
}

impl fmt::Display for StpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Default bridge priority.
pub const DEFAULT_BRIDGE_PRIORITY: u16 = 0x8000;
/// Default port priority.
pub const DEFAULT_PORT_PRIORITY: u8 = 0x80;
/// Default Transmit Hold Count (BPDUs a port may send per second).
pub const DEFAULT_TX_HOLD_COUNT: u8 = 6;

/// Bridge-wide spanning tree parameters (802.1D-2004 17.13, Table 17-1).
///
/// Timers are rounded to whole seconds, the unit clause 17 counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StpParams {
    /// Bridge priority, 0..=61440 in steps of 4096 (default 32768).
    pub priority: u16,
    /// 1..=10 s (default 2 s).
    pub hello_time: Duration,
    /// 6..=40 s (default 20 s).
    pub max_age: Duration,
    /// 4..=30 s (default 15 s).
    pub forward_delay: Duration,
    /// 1..=10 BPDUs per second and port (default 6).
    pub tx_hold_count: u8,
}

impl Default for StpParams {
    fn default() -> Self {
        StpParams {
            priority: DEFAULT_BRIDGE_PRIORITY,
            hello_time: Duration::from_secs(2),
            max_age: Duration::from_secs(20),
            forward_delay: Duration::from_secs(15),
            tx_hold_count: DEFAULT_TX_HOLD_COUNT,
        }
    }
}

impl StpParams {
    /// Checks every range and the relation 2 × (forward delay − 1) ≥ max age ≥
    /// 2 × (hello time + 1).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.priority % 4096 != 0 {
            return Err(ConfigError::OutOfRange {
                what: "bridge priority",
                value: u64::from(self.priority),
                range: "0..=61440 in steps of 4096",
            });
        }
        let hello = check_secs("hello time (s)", self.hello_time, 1, 10, "1..=10")?;
        let max_age = check_secs("max age (s)", self.max_age, 6, 40, "6..=40")?;
        let fd = check_secs("forward delay (s)", self.forward_delay, 4, 30, "4..=30")?;
        if !(1..=10).contains(&self.tx_hold_count) {
            return Err(ConfigError::OutOfRange {
                what: "transmit hold count",
                value: u64::from(self.tx_hold_count),
                range: "1..=10",
            });
        }
        if 2 * (fd - 1) < max_age || max_age < 2 * (hello + 1) {
            return Err(ConfigError::StpTimers {
                hello_time: hello,
                max_age,
                forward_delay: fd,
            });
        }
        Ok(())
    }
}

/// `d` rounded to whole seconds, checked against `lo..=hi`.
fn check_secs(
    what: &'static str,
    d: Duration,
    lo: u64,
    hi: u64,
    range: &'static str,
) -> Result<u64, ConfigError> {
    let s = round_secs(d);
    if (lo..=hi).contains(&s) {
        Ok(s)
    } else {
        Err(ConfigError::OutOfRange {
            what,
            value: s,
            range,
        })
    }
}

/// `d` in whole seconds, rounded to the nearest.
pub(crate) fn round_secs(d: Duration) -> u64 {
    (d.as_millis().saturating_add(500) / 1000).min(u128::from(u64::MAX)) as u64
}

/// Whether a port's LAN is point-to-point (802.1D-2004 adminPointToPointMAC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PointToPoint {
    /// From the duplex the driver reports (full duplex: point-to-point).
    #[default]
    Auto,
    ForceTrue,
    ForceFalse,
}

/// Per-port spanning tree settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StpPortConfig {
    /// Port path cost, 1..=200 000 000; 0 = from the link speed (802.1D-2004 Table 17-3,
    /// 2000 while the speed is unknown, as for 10 Gb/s).
    pub path_cost: u32,
    /// Port priority, 0..=240 in steps of 16 (default 128).
    pub priority: u8,
    /// Administratively an edge port: forwards at once, until a BPDU says otherwise.
    pub admin_edge: bool,
    /// Becomes an edge port when no BPDU comes back to a proposal (bridge detection).
    pub auto_edge: bool,
    pub point_to_point: PointToPoint,
    /// A BPDU received here disables the port until it goes down and up again or the
    /// guard is turned off.
    pub bpdu_guard: bool,
    /// The port may never become root port: superior information received here leaves
    /// it discarding (alternate) instead.
    pub root_guard: bool,
}

impl Default for StpPortConfig {
    fn default() -> Self {
        StpPortConfig {
            path_cost: 0,
            priority: DEFAULT_PORT_PRIORITY,
            admin_edge: false,
            auto_edge: true,
            point_to_point: PointToPoint::Auto,
            bpdu_guard: false,
            root_guard: false,
        }
    }
}

impl StpPortConfig {
    /// Checks the cost and priority ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.path_cost > vector::MAX_PATH_COST {
            return Err(ConfigError::OutOfRange {
                what: "port path cost",
                value: u64::from(self.path_cost),
                range: "0 (auto) or 1..=200000000",
            });
        }
        if self.priority % 16 != 0 {
            return Err(ConfigError::OutOfRange {
                what: "port priority",
                value: u64::from(self.priority),
                range: "0..=240 in steps of 16",
            });
        }
        Ok(())
    }
}

/// A port's spanning tree role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StpRole {
    #[default]
    Disabled,
    Root,
    Designated,
    Alternate,
    Backup,
}

impl StpRole {
    /// `disabled`, `root`, `designated`, `alternate`, `backup`.
    pub const fn name(self) -> &'static str {
        match self {
            StpRole::Disabled => "disabled",
            StpRole::Root => "root",
            StpRole::Designated => "designated",
            StpRole::Alternate => "alternate",
            StpRole::Backup => "backup",
        }
    }
}

impl fmt::Display for StpRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something the spanning tree did that a driver may log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StpEvent {
    /// A port's state changed (already applied to the port).
    PortState { port: PortId, state: StpState },
    /// A port's role changed.
    PortRole { port: PortId, role: StpRole },
    /// A topology change began, detected or first heard of on `port`.
    TopologyChange { port: PortId },
    /// The bridge elected a new root (itself when `root_port` is `None`).
    NewRoot {
        root: BridgeId,
        root_port: Option<PortId>,
    },
    /// BPDU guard disabled a port that received a BPDU.
    BpduGuard { port: PortId },
    /// Root guard kept a port offered a better root out of the root role (`true`), or
    /// the port no longer hears it (`false`).
    RootGuard { port: PortId, blocking: bool },
    /// A port now sends RST BPDUs (`true`) or, for an 802.1D peer, STP ones (`false`).
    Protocol { port: PortId, rstp: bool },
}

/// Length of every BPDU frame the bridge sends (padded to the Ethernet minimum).
pub const BPDU_FRAME_LEN: usize = vbridge_wire::bpdu::FRAME_MIN_LEN;

/// A ready-to-send BPDU frame (Ethernet, 802.3 length, LLC 42 42 03, BPDU, padding).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BpduFrame {
    len: usize,
    buf: [u8; BPDU_FRAME_LEN],
}

impl BpduFrame {
    pub(crate) fn new(buf: [u8; BPDU_FRAME_LEN], len: usize) -> BpduFrame {
        BpduFrame {
            len: len.min(BPDU_FRAME_LEN),
            buf,
        }
    }

    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::ops::Deref for BpduFrame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for BpduFrame {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for BpduFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match vbridge_wire::bpdu::parse_frame(self.as_bytes()) {
            Ok(r) => write!(f, "BpduFrame({r:?})"),
            Err(e) => write!(f, "BpduFrame({e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_ranges_and_relation() {
        assert_eq!(StpParams::default().validate(), Ok(()));
        let p = |h: u64, m: u64, f: u64| StpParams {
            hello_time: Duration::from_secs(h),
            max_age: Duration::from_secs(m),
            forward_delay: Duration::from_secs(f),
            ..StpParams::default()
        };
        assert!(matches!(
            p(2, 40, 15).validate(),
            Err(ConfigError::StpTimers { .. })
        ));
        assert!(matches!(
            p(10, 20, 15).validate(),
            Err(ConfigError::StpTimers { .. })
        ));
        assert_eq!(p(1, 6, 4).validate(), Ok(()));
        assert!(matches!(
            p(0, 20, 15).validate(),
            Err(ConfigError::OutOfRange { .. })
        ));
        assert!(matches!(
            p(2, 20, 31).validate(),
            Err(ConfigError::OutOfRange { .. })
        ));
        let odd = StpParams {
            priority: 100,
            ..StpParams::default()
        };
        assert!(odd.validate().is_err());
        // Rounded to whole seconds: 1.6 s counts as 2.
        let r = StpParams {
            hello_time: Duration::from_millis(1600),
            ..StpParams::default()
        };
        assert_eq!(r.validate(), Ok(()));
    }

    #[test]
    fn port_config_ranges() {
        assert_eq!(StpPortConfig::default().validate(), Ok(()));
        let bad = StpPortConfig {
            priority: 17,
            ..StpPortConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = StpPortConfig {
            path_cost: 200_000_001,
            ..StpPortConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
