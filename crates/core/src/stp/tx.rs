//! The Port Transmit machine (802.1D-2004 17.26) and the BPDUs it sends (txConfig,
//! txRstp, txTcn, 17.21.19-21): at most Transmit Hold Count per second, a periodic one
//! every hello time from designated ports, Config and TCN BPDUs towards 802.1D peers.

use vbridge_wire::bpdu::{Flags, PortRole, Repr};

use super::port::Ptx;
use super::vector::config_bpdu;
use super::{Stp, StpRole};

impl Stp {
    pub(crate) fn ptx_begin(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.ptx = Ptx::Init;
        p.new_info = true;
        p.tx_count = 0;
    }

    fn ptx_idle(&mut self, i: usize) {
        let hello = self.bridge_times.hello.max(1);
        let p = &mut self.ports[i];
        p.ptx = Ptx::Idle;
        p.hello_when = hello;
    }

    pub(crate) fn ptx_step(&mut self, i: usize) -> bool {
        let hold = u16::from(self.params.tx_hold_count);
        let p = &mut self.ports[i];
        if !p.port_enabled {
            if p.ptx != Ptx::Init || !p.new_info || p.tx_count != 0 {
                self.ptx_begin(i);
                return true;
            }
            return false;
        }
        if p.ptx == Ptx::Init {
            self.ptx_idle(i);
            return true;
        }
        if !p.selected || p.updt_info {
            return false;
        }
        if p.hello_when == 0 {
            // TRANSMIT_PERIODIC
            p.new_info = p.new_info
                || p.role == StpRole::Designated
                || (p.role == StpRole::Root && p.tc_while != 0);
            self.ptx_idle(i);
            return true;
        }
        if p.tx_count >= hold || !p.new_info {
            return false;
        }
        if p.send_rstp {
            self.tx_rstp(i);
            self.ports[i].tc_ack = false;
        } else if p.role == StpRole::Designated {
            self.tx_config(i);
            self.ports[i].tc_ack = false;
        } else if p.role == StpRole::Root && p.tc_while != 0 {
            // The standard sends a TCN on any new information at a root port; only a
            // topology change needs one, and 802.1D-1998 peers flush on each.
            self.tx_tcn(i);
        } else {
            return false;
        }
        let p = &mut self.ports[i];
        p.new_info = false;
        p.tx_count += 1;
        self.ptx_idle(i);
        true
    }

    /// txConfig: the designated priority vector and times, TC while tcWhile runs.
    fn tx_config(&mut self, i: usize) {
        let p = &mut self.ports[i];
        let mut flags = Flags::default();
        if p.tc_while != 0 {
            flags.insert(Flags::TC);
        }
        if p.tc_ack {
            flags.insert(Flags::TC_ACK);
        }
        let body = config_bpdu(flags, &p.designated_priority, &p.designated_times);
        p.counters.tx_config += 1;
        let id = p.id;
        self.transmit(id, Repr::Config(body));
    }

    /// txRstp: as txConfig plus the role, proposal, agreement, learning and forwarding.
    fn tx_rstp(&mut self, i: usize) {
        let p = &mut self.ports[i];
        let role = match p.role {
            StpRole::Root => PortRole::Root,
            StpRole::Designated => PortRole::Designated,
            StpRole::Alternate | StpRole::Backup => PortRole::AlternateOrBackup,
            StpRole::Disabled => return,
        };
        let mut flags = Flags::default().with_port_role(role);
        for (on, f) in [
            (p.tc_while != 0, Flags::TC),
            (p.proposing, Flags::PROPOSAL),
            (p.learning, Flags::LEARNING),
            (p.forwarding, Flags::FORWARDING),
            (p.agree, Flags::AGREEMENT),
        ] {
            if on {
                flags.insert(f);
            }
        }
        let body = config_bpdu(flags, &p.designated_priority, &p.designated_times);
        p.counters.tx_rst += 1;
        let id = p.id;
        self.transmit(id, Repr::Rst(body));
    }

    fn tx_tcn(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.counters.tx_tcn += 1;
        let id = p.id;
        self.transmit(id, Repr::Tcn);
    }
}
