//! The Port State Transition machine (802.1D-2004 17.30: discarding, learning,
//! forwarding) and the Topology Change machine (17.31): detecting a change when a port
//! starts forwarding, TCN up to the root and the TC flag down, and the FDB flushes that
//! follow — at once with RSTP, by rapid ageing (forward delay) with STP (17.19.7).

use core::time::Duration;

use super::engine::Flush;
use super::port::{Pst, Tcm};
use super::{Stp, StpEvent, StpRole};

impl Stp {
    // ----- Port State Transition -----

    pub(crate) fn pst_begin(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.pst = Pst::Discarding;
        p.learning = false;
        p.forwarding = false;
    }

    pub(crate) fn pst_step(&mut self, i: usize) -> bool {
        let p = &mut self.ports[i];
        let next = match p.pst {
            Pst::Discarding if p.learn => Pst::Learning,
            Pst::Learning if !p.learn => Pst::Discarding,
            Pst::Learning if p.forward => Pst::Forwarding,
            Pst::Forwarding if !p.forward => Pst::Discarding,
            _ => return false,
        };
        p.pst = next;
        p.learning = next != Pst::Discarding;
        p.forwarding = next == Pst::Forwarding;
        p.counters.state_transitions += 1;
        if next == Pst::Forwarding {
            p.counters.forward_transitions += 1;
        }
        true
    }

    // ----- Topology Change -----

    pub(crate) fn tcm_begin(&mut self, i: usize) {
        self.tcm_inactive(i);
    }

    fn tcm_inactive(&mut self, i: usize) {
        // The port is discarding here, so what it learned is useless whatever the
        // version: flushed at once (not STP's rapid ageing of the whole table).
        self.ports[i].fdb_flush = false;
        if !self.ports[i].oper_edge {
            self.flushes.push(Flush::Port(self.ports[i].id));
        }
        let p = &mut self.ports[i];
        p.tcm = Tcm::Inactive;
        p.tc_while = 0;
        p.tc_ack = false;
    }

    fn tcm_learning(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.tcm = Tcm::Learning;
        p.rcvd_tc = false;
        p.rcvd_tcn = false;
        p.rcvd_tc_ack = false;
        p.tc_prop = false;
    }

    pub(crate) fn tcm_step(&mut self, i: usize) -> bool {
        let p = &self.ports[i];
        let active_role = matches!(p.role, StpRole::Root | StpRole::Designated);
        let notified = p.rcvd_tc || p.rcvd_tcn || p.rcvd_tc_ack || p.tc_prop;
        match p.tcm {
            Tcm::Inactive => {
                let go = p.learn && !p.fdb_flush;
                if go {
                    self.tcm_learning(i);
                }
                go
            }
            Tcm::Learning => {
                if active_role && p.forward && !p.oper_edge {
                    // DETECTED
                    self.new_tc_while(i);
                    self.set_tc_prop_tree(i);
                    let p = &mut self.ports[i];
                    p.new_info = true;
                    p.tcm = Tcm::Active;
                    p.counters.tc_detected += 1;
                } else if notified {
                    self.tcm_learning(i);
                } else if !(active_role || p.learn || p.learning) {
                    self.tcm_inactive(i);
                } else {
                    return false;
                }
                true
            }
            Tcm::Active => {
                if !active_role || p.oper_edge {
                    self.tcm_learning(i);
                } else if p.rcvd_tcn {
                    self.new_tc_while(i); // NOTIFIED_TCN
                    self.notified_tc(i);
                } else if p.rcvd_tc {
                    self.notified_tc(i);
                } else if p.tc_prop {
                    self.new_tc_while(i); // PROPAGATING
                    self.fdb_flush(i);
                    self.ports[i].tc_prop = false;
                } else if p.rcvd_tc_ack {
                    let p = &mut self.ports[i]; // ACKNOWLEDGED
                    p.tc_while = 0;
                    p.rcvd_tc_ack = false;
                } else {
                    return false;
                }
                true
            }
        }
    }

    fn notified_tc(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.rcvd_tcn = false;
        p.rcvd_tc = false;
        if p.role == StpRole::Designated {
            p.tc_ack = true;
        }
        self.set_tc_prop_tree(i);
        if !self.rstp_version() {
            // 802.1D-1998: the whole table ages fast while the root says TC, the
            // receiving port's entries included.
            self.start_rapid_ageing();
        }
    }

    /// 17.21.7 newTcWhile; also counts a topology change when none was under way.
    fn new_tc_while(&mut self, i: usize) {
        if self.ports[i].tc_while != 0 {
            return;
        }
        let under_way = self.topology_change();
        let hello = self.bridge_times.hello;
        let root_times = self.root_times;
        let p = &mut self.ports[i];
        if p.send_rstp {
            p.tc_while = hello.saturating_add(1);
            p.new_info = true;
        } else {
            p.tc_while = root_times.max_age.saturating_add(root_times.forward_delay);
        }
        if !under_way && p.tc_while != 0 {
            let port = p.id;
            self.tc_count += 1;
            self.last_tc = Some(self.now);
            self.event(StpEvent::TopologyChange { port });
        }
    }

    /// 17.19.7 fdbFlush, carried out at once: the port's dynamic entries go now (RSTP),
    /// or entries age out after forward delay for a forward delay (STP). Edge ports have
    /// no bridges behind them and keep theirs.
    fn fdb_flush(&mut self, i: usize) {
        let rstp = self.rstp_version();
        let p = &mut self.ports[i];
        p.fdb_flush = false;
        if p.oper_edge {
            return;
        }
        p.counters.flushes += 1;
        if rstp {
            self.flushes.push(Flush::Port(p.id));
        } else {
            self.start_rapid_ageing();
        }
    }

    /// Entries age out after forward delay, for forward delay from now.
    fn start_rapid_ageing(&mut self) {
        let fd = Duration::from_secs(u64::from(self.root_times.forward_delay.max(1)));
        let until = self.now + fd;
        self.rapid_ageing_until = Some(self.rapid_ageing_until.map_or(until, |u| u.max(until)));
        self.flushes.push(Flush::RapidAgeing);
    }

    /// 17.21.18 setTcPropTree.
    pub(crate) fn set_tc_prop_tree(&mut self, except: usize) {
        for (j, p) in self.ports.iter_mut().enumerate() {
            if j != except {
                p.tc_prop = true;
            }
        }
    }
}
