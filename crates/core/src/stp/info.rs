//! The Port Information machine (802.1D-2004 17.27, with 802.1Q-2011's recording of
//! agreements in the designated cases): what a port holds about its LAN, compared with
//! each received message (`rcvInfo`, 17.21.8) and aged out when the sender goes quiet.

use vbridge_wire::bpdu::{Flags, PortRole};

use super::Stp;
use super::port::{InfoIs, Pim, RcvdInfo, RcvdKind};

impl Stp {
    pub(crate) fn pim_begin(&mut self, i: usize) {
        self.pim_disabled(i);
    }

    fn pim_disabled(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.pim = Pim::Disabled;
        p.rcvd_msg = false;
        p.proposing = false;
        p.proposed = false;
        p.agree = false;
        p.agreed = false;
        p.rcvd_info_while = 0;
        p.info_is = InfoIs::Disabled;
        p.reselect = true;
        p.selected = false;
    }

    fn pim_aged(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.pim = Pim::Aged;
        p.info_is = InfoIs::Aged;
        p.reselect = true;
        p.selected = false;
    }

    fn pim_update(&mut self, i: usize) {
        let mine = self.better_or_same_info(i, InfoIs::Mine);
        let p = &mut self.ports[i];
        p.pim = Pim::Current;
        p.proposing = false;
        p.proposed = false;
        p.agreed = p.agreed && mine;
        p.synced = p.synced && p.agreed;
        p.port_priority = p.designated_priority;
        p.port_times = p.designated_times;
        p.updt_info = false;
        p.info_is = InfoIs::Mine;
        p.new_info = true;
    }

    pub(crate) fn pim_step(&mut self, i: usize) -> bool {
        let p = &self.ports[i];
        if !p.port_enabled && p.info_is != InfoIs::Disabled {
            self.pim_disabled(i);
            return true;
        }
        match p.pim {
            Pim::Disabled => {
                if p.port_enabled {
                    self.pim_aged(i);
                    true
                } else if p.rcvd_msg {
                    self.pim_disabled(i);
                    true
                } else {
                    false
                }
            }
            Pim::Aged => {
                let go = p.selected && p.updt_info;
                if go {
                    self.pim_update(i);
                }
                go
            }
            Pim::Current => {
                if p.rcvd_msg && !p.updt_info {
                    self.pim_receive(i);
                    true
                } else if p.info_is == InfoIs::Received
                    && p.rcvd_info_while == 0
                    && !p.updt_info
                    && !p.rcvd_msg
                {
                    self.pim_aged(i);
                    true
                } else if p.selected && p.updt_info {
                    self.pim_update(i);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// RECEIVE and the state it leads to, back to CURRENT.
    fn pim_receive(&mut self, i: usize) {
        let info = self.rcv_info(i);
        self.ports[i].rcvd_info = info;
        match info {
            RcvdInfo::SuperiorDesignated => {
                let better = self.better_or_same_info(i, super::port::InfoIs::Received);
                let p = &mut self.ports[i];
                p.agreed = false;
                p.proposing = false;
                self.record_proposal(i);
                self.set_tc_flags(i);
                let p = &mut self.ports[i];
                p.agree = p.agree && better;
                self.record_agreement(i);
                let p = &mut self.ports[i];
                p.synced = p.synced && p.agreed;
                p.port_priority = p.msg_priority;
                p.port_times = p.msg_times;
                self.updt_rcvd_info_while(i);
                let p = &mut self.ports[i];
                p.info_is = InfoIs::Received;
                p.reselect = true;
                p.selected = false;
            }
            RcvdInfo::RepeatedDesignated => {
                self.record_proposal(i);
                self.set_tc_flags(i);
                self.record_agreement(i);
                self.updt_rcvd_info_while(i);
            }
            RcvdInfo::InferiorDesignated => self.record_dispute(i),
            RcvdInfo::InferiorRootAlternate => {
                self.record_agreement(i);
                self.set_tc_flags(i);
            }
            RcvdInfo::Other => {}
        }
        let p = &mut self.ports[i];
        p.rcvd_msg = false;
        p.pim = Pim::Current;
    }

    /// 17.21.1 betterorsameInfo.
    fn better_or_same_info(&self, i: usize, new_info_is: InfoIs) -> bool {
        let p = &self.ports[i];
        match (new_info_is, p.info_is) {
            (InfoIs::Received, InfoIs::Received) => p.msg_priority.better_or_same(&p.port_priority),
            (InfoIs::Mine, InfoIs::Mine) => p.designated_priority.better_or_same(&p.port_priority),
            _ => false,
        }
    }

    /// 17.21.8 rcvInfo: records the message's vector and times in msgPriority /
    /// msgTimes and says how they compare with what the port holds.
    fn rcv_info(&mut self, i: usize) -> RcvdInfo {
        let p = &mut self.ports[i];
        let Some(r) = p.rcvd else {
            return RcvdInfo::Other;
        };
        let designated = match r.kind {
            RcvdKind::Tcn => {
                p.rcvd_tcn = true;
                return RcvdInfo::Other;
            }
            // A Config BPDU conveys the Designated role; so does Unknown in an RST BPDU.
            RcvdKind::Config => true,
            RcvdKind::Rst => matches!(
                r.flags.port_role(),
                PortRole::Designated | PortRole::MasterOrUnknown
            ),
        };
        p.msg_priority = r.priority;
        p.msg_times = r.times;
        let (msg, port) = (p.msg_priority, p.port_priority);
        if designated {
            if msg.better(&port) || msg.same_sender(&port) {
                return RcvdInfo::SuperiorDesignated;
            }
            if msg == port {
                if p.msg_times != p.port_times {
                    return RcvdInfo::SuperiorDesignated;
                }
                if p.info_is == InfoIs::Received {
                    return RcvdInfo::RepeatedDesignated;
                }
            }
            RcvdInfo::InferiorDesignated
        } else if !msg.better(&port) {
            RcvdInfo::InferiorRootAlternate
        } else {
            RcvdInfo::Other
        }
    }

    fn rcvd_flags(&self, i: usize) -> (Flags, Option<RcvdKind>) {
        match self.ports[i].rcvd {
            Some(r) => (r.flags, Some(r.kind)),
            None => (Flags::default(), None),
        }
    }

    /// 17.21.11 recordProposal (called only for designated messages).
    fn record_proposal(&mut self, i: usize) {
        let (flags, _) = self.rcvd_flags(i);
        if flags.contains(Flags::PROPOSAL) {
            self.ports[i].proposed = true;
        }
    }

    /// 17.21.9 recordAgreement.
    fn record_agreement(&mut self, i: usize) {
        let (flags, kind) = self.rcvd_flags(i);
        let rstp = self.rstp_version();
        let p = &mut self.ports[i];
        if rstp && p.oper_p2p && kind == Some(RcvdKind::Rst) && flags.contains(Flags::AGREEMENT) {
            p.agreed = true;
            p.proposing = false;
        } else {
            p.agreed = false;
        }
    }

    /// 17.21.10 recordDispute: an RST BPDU from a designated port that is learning.
    fn record_dispute(&mut self, i: usize) {
        let (flags, kind) = self.rcvd_flags(i);
        if kind == Some(RcvdKind::Rst) && flags.contains(Flags::LEARNING) {
            let p = &mut self.ports[i];
            p.disputed = true;
            p.agreed = false;
        }
    }

    /// 17.21.17 setTcFlags.
    fn set_tc_flags(&mut self, i: usize) {
        let (flags, _) = self.rcvd_flags(i);
        let p = &mut self.ports[i];
        if flags.contains(Flags::TC) {
            p.rcvd_tc = true;
            p.counters.rx_tc += 1;
        }
        if flags.contains(Flags::TC_ACK) {
            p.rcvd_tc_ack = true;
        }
    }

    /// 17.21.23 updtRcvdInfoWhile: three hellos, unless the message is about to expire.
    fn updt_rcvd_info_while(&mut self, i: usize) {
        let p = &mut self.ports[i];
        let t = p.port_times;
        p.rcvd_info_while = if t.message_age.saturating_add(1) <= t.max_age {
            t.hello.saturating_mul(3)
        } else {
            0
        };
    }
}
