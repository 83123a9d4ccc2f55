//! One port as the spanning tree engine sees it: its settings, the clause 17 per-port
//! variables (17.19) and timers (17.17), the state of each per-port machine, and its
//! counters. The machines themselves live in the sibling files.

use vbridge_wire::bpdu::{self, Flags};

use super::status::StpPortCounters;
use super::vector::{DEFAULT_PATH_COST, Priority, Times, path_cost_for_speed};
use super::{PointToPoint, StpPortConfig, StpRole};
use crate::port::{PortId, StpState};

/// Where the port's priority vector came from (17.19.10 `infoIs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InfoIs {
    Received,
    Mine,
    Aged,
    Disabled,
}

/// What a received message was, relative to what the port holds (17.19.22 `rcvdInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RcvdInfo {
    SuperiorDesignated,
    RepeatedDesignated,
    InferiorDesignated,
    InferiorRootAlternate,
    Other,
}

/// The kind of a received BPDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RcvdKind {
    Config,
    Tcn,
    Rst,
}

/// A validated received BPDU, waiting for the Port Information machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rcvd {
    pub(crate) kind: RcvdKind,
    pub(crate) flags: Flags,
    pub(crate) priority: Priority,
    pub(crate) times: Times,
}

/// Port Receive machine states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prx {
    Discard,
    Receive,
}

/// Port Protocol Migration machine states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ppm {
    CheckingRstp,
    SelectingStp,
    Sensing,
}

/// Port Transmit machine states (the transient ones are folded into their actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ptx {
    Init,
    Idle,
}

/// Port Information machine states (transient ones folded into `Current`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pim {
    Disabled,
    Aged,
    Current,
}

/// Port Role Transitions machine: which role branch the port is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prt {
    Init,
    Disable,
    Disabled,
    Root,
    Designated,
    Block,
    Alternate,
}

/// Port State Transition machine states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pst {
    Discarding,
    Learning,
    Forwarding,
}

/// Topology Change machine states (transient ones folded into `Active`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tcm {
    Inactive,
    Learning,
    Active,
}

/// A bridge port in the spanning tree.
#[derive(Debug, Clone)]
pub(crate) struct StpPort {
    pub(crate) id: PortId,
    pub(crate) cfg: StpPortConfig,
    pub(crate) speed_mbps: Option<u32>,
    pub(crate) full_duplex: bool,
    /// Administratively and physically up.
    pub(crate) up: bool,
    /// Disabled by BPDU guard.
    pub(crate) guard_tripped: bool,
    /// Root guard is keeping the port from the root role.
    pub(crate) root_guard_blocking: bool,

    // 17.19 variables
    pub(crate) port_id: bpdu::PortId,
    pub(crate) path_cost: u32,
    pub(crate) port_enabled: bool,
    pub(crate) oper_p2p: bool,
    pub(crate) agree: bool,
    pub(crate) agreed: bool,
    pub(crate) disputed: bool,
    pub(crate) fdb_flush: bool,
    pub(crate) forward: bool,
    pub(crate) forwarding: bool,
    pub(crate) learn: bool,
    pub(crate) learning: bool,
    pub(crate) mcheck: bool,
    pub(crate) new_info: bool,
    pub(crate) oper_edge: bool,
    pub(crate) proposed: bool,
    pub(crate) proposing: bool,
    pub(crate) rcvd_bpdu: bool,
    pub(crate) rcvd_msg: bool,
    pub(crate) rcvd_rstp: bool,
    pub(crate) rcvd_stp: bool,
    pub(crate) rcvd_tc: bool,
    pub(crate) rcvd_tc_ack: bool,
    pub(crate) rcvd_tcn: bool,
    pub(crate) re_root: bool,
    pub(crate) reselect: bool,
    pub(crate) selected: bool,
    pub(crate) send_rstp: bool,
    pub(crate) sync: bool,
    pub(crate) synced: bool,
    pub(crate) tc_ack: bool,
    pub(crate) tc_prop: bool,
    pub(crate) updt_info: bool,
    pub(crate) info_is: InfoIs,
    pub(crate) rcvd_info: RcvdInfo,
    pub(crate) role: StpRole,
    pub(crate) selected_role: StpRole,
    pub(crate) port_priority: Priority,
    pub(crate) designated_priority: Priority,
    pub(crate) msg_priority: Priority,
    pub(crate) port_times: Times,
    pub(crate) designated_times: Times,
    pub(crate) msg_times: Times,
    pub(crate) rcvd: Option<Rcvd>,

    // 17.17 timers, in seconds
    pub(crate) edge_delay_while: u16,
    pub(crate) fd_while: u16,
    pub(crate) hello_when: u16,
    pub(crate) mdelay_while: u16,
    pub(crate) rb_while: u16,
    pub(crate) rcvd_info_while: u16,
    pub(crate) rr_while: u16,
    pub(crate) tc_while: u16,
    pub(crate) tx_count: u16,

    // machine states
    pub(crate) prx: Prx,
    pub(crate) ppm: Ppm,
    pub(crate) bdm_edge: bool,
    pub(crate) ptx: Ptx,
    pub(crate) pim: Pim,
    pub(crate) prt: Prt,
    pub(crate) pst: Pst,
    pub(crate) tcm: Tcm,

    /// What was last reported (events), and applied to the bridge port.
    pub(crate) reported_state: StpState,
    pub(crate) reported_role: StpRole,
    pub(crate) reported_rstp: bool,
    pub(crate) counters: StpPortCounters,
}

impl StpPort {
    pub(crate) fn new(id: PortId, up: bool) -> StpPort {
        let cfg = StpPortConfig::default();
        let mut p = StpPort {
            id,
            cfg,
            speed_mbps: None,
            full_duplex: true,
            up,
            guard_tripped: false,
            root_guard_blocking: false,
            port_id: bpdu::PortId(0),
            path_cost: DEFAULT_PATH_COST,
            port_enabled: false,
            oper_p2p: true,
            agree: false,
            agreed: false,
            disputed: false,
            fdb_flush: false,
            forward: false,
            forwarding: false,
            learn: false,
            learning: false,
            mcheck: false,
            new_info: false,
            oper_edge: false,
            proposed: false,
            proposing: false,
            rcvd_bpdu: false,
            rcvd_msg: false,
            rcvd_rstp: false,
            rcvd_stp: false,
            rcvd_tc: false,
            rcvd_tc_ack: false,
            rcvd_tcn: false,
            re_root: false,
            reselect: false,
            selected: false,
            send_rstp: false,
            sync: false,
            synced: false,
            tc_ack: false,
            tc_prop: false,
            updt_info: false,
            info_is: InfoIs::Disabled,
            rcvd_info: RcvdInfo::Other,
            role: StpRole::Disabled,
            selected_role: StpRole::Disabled,
            port_priority: Priority::default(),
            designated_priority: Priority::default(),
            msg_priority: Priority::default(),
            port_times: Times::default(),
            designated_times: Times::default(),
            msg_times: Times::default(),
            rcvd: None,
            edge_delay_while: 0,
            fd_while: 0,
            hello_when: 0,
            mdelay_while: 0,
            rb_while: 0,
            rcvd_info_while: 0,
            rr_while: 0,
            tc_while: 0,
            tx_count: 0,
            prx: Prx::Discard,
            ppm: Ppm::CheckingRstp,
            bdm_edge: false,
            ptx: Ptx::Init,
            pim: Pim::Disabled,
            prt: Prt::Init,
            pst: Pst::Discarding,
            tcm: Tcm::Inactive,
            reported_state: StpState::Forwarding,
            reported_role: StpRole::Disabled,
            reported_rstp: false,
            counters: StpPortCounters::default(),
        };
        p.refresh_config();
        p
    }

    /// Recomputes what derives from the settings: port id, path cost, point-to-point,
    /// and whether the port takes part (`portEnabled`).
    pub(crate) fn refresh_config(&mut self) {
        let number = self.id.0 & 0x0fff;
        self.port_id = bpdu::PortId((u16::from(self.cfg.priority & 0xf0) << 8) | number);
        self.path_cost = match self.cfg.path_cost {
            0 => self
                .speed_mbps
                .map_or(DEFAULT_PATH_COST, path_cost_for_speed),
            c => c,
        };
        self.oper_p2p = match self.cfg.point_to_point {
            PointToPoint::Auto => self.full_duplex,
            PointToPoint::ForceTrue => true,
            PointToPoint::ForceFalse => false,
        };
        self.port_enabled = self.up && !self.guard_tripped;
    }

    /// Decrements every running timer (the Port Timers machine, 17.22).
    pub(crate) fn tick(&mut self) {
        for t in [
            &mut self.edge_delay_while,
            &mut self.fd_while,
            &mut self.hello_when,
            &mut self.mdelay_while,
            &mut self.rb_while,
            &mut self.rcvd_info_while,
            &mut self.rr_while,
            &mut self.tc_while,
            &mut self.tx_count,
        ] {
            *t = t.saturating_sub(1);
        }
    }

    /// The state the bridge applies: `Listening` for a discarding root or designated port
    /// in STP mode (it is on its way to forwarding), `Blocking` for other discarding ones.
    pub(crate) fn state(&self, stp_mode: bool) -> StpState {
        if !self.port_enabled {
            StpState::Disabled
        } else if self.forwarding {
            StpState::Forwarding
        } else if self.learning {
            StpState::Learning
        } else if stp_mode && matches!(self.role, StpRole::Root | StpRole::Designated) {
            StpState::Listening
        } else {
            StpState::Blocking
        }
    }
}
