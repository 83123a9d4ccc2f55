//! Taking BPDUs in: validation (802.1D-2004 9.3.4, plus bounds on the timers a peer may
//! impose), the Port Receive machine (17.23), the Port Protocol Migration machine
//! (17.24) and the Bridge Detection machine (17.25).

use vbridge_wire::bpdu::{ConfigBpdu, Flags, Repr};

use super::Stp;
use super::engine::MIGRATE_TIME;
use super::port::{Ppm, Prx, Rcvd, RcvdKind};
use super::vector::{Priority, Times};

/// Timer values (whole seconds) a received BPDU may carry: Table 17-1's ranges, widened
/// to what 802.1D-1998 bridges (Linux: forward delay from 2 s) may be set to.
const MAX_AGE_RANGE: core::ops::RangeInclusive<u16> = 6..=40;
const HELLO_RANGE: core::ops::RangeInclusive<u16> = 1..=10;
const FORWARD_DELAY_RANGE: core::ops::RangeInclusive<u16> = 2..=30;

/// A parsed BPDU as the machines take it, or `None` when 9.3.4 (message age below max
/// age) or the timer bounds refuse it.
pub(crate) fn decode(repr: &Repr) -> Option<Rcvd> {
    let (kind, c) = match repr {
        Repr::Tcn => {
            return Some(Rcvd {
                kind: RcvdKind::Tcn,
                flags: Flags::default(),
                priority: Priority::default(),
                times: Times::default(),
            });
        }
        Repr::Config(c) => (RcvdKind::Config, c),
        Repr::Rst(c) => (RcvdKind::Rst, c),
    };
    let times = plausible(c)?;
    let flags = match kind {
        // Config BPDUs carry only TC and TC-ack; other bits mean nothing there.
        RcvdKind::Config => Flags(c.flags.bits() & (Flags::TC.bits() | Flags::TC_ACK.bits())),
        _ => c.flags,
    };
    Some(Rcvd {
        kind,
        flags,
        priority: Priority {
            root: c.root_id,
            cost: c.root_path_cost,
            bridge: c.bridge_id,
            port: c.port_id,
        },
        times,
    })
}

fn plausible(c: &ConfigBpdu) -> Option<Times> {
    if c.message_age_ticks >= c.max_age_ticks {
        return None;
    }
    let t = Times::from_bpdu(c);
    let ok = MAX_AGE_RANGE.contains(&t.max_age)
        && HELLO_RANGE.contains(&t.hello)
        && FORWARD_DELAY_RANGE.contains(&t.forward_delay);
    ok.then_some(t)
}

impl Stp {
    // ----- Port Receive (17.23) -----

    pub(crate) fn prx_begin(&mut self, i: usize) {
        self.prx_discard(i);
    }

    fn prx_discard(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.prx = Prx::Discard;
        p.rcvd_bpdu = false;
        p.rcvd_rstp = false;
        p.rcvd_stp = false;
        p.rcvd_msg = false;
        p.rcvd = None;
        p.edge_delay_while = MIGRATE_TIME;
    }

    fn prx_receive(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.prx = Prx::Receive;
        // updtBPDUVersion()
        match p.rcvd.map(|r| r.kind) {
            Some(RcvdKind::Rst) => p.rcvd_rstp = true,
            Some(_) => p.rcvd_stp = true,
            None => {}
        }
        p.oper_edge = false;
        p.rcvd_bpdu = false;
        p.rcvd_msg = true;
        p.edge_delay_while = MIGRATE_TIME;
    }

    pub(crate) fn prx_step(&mut self, i: usize) -> bool {
        let p = &self.ports[i];
        if (p.rcvd_bpdu || p.edge_delay_while != MIGRATE_TIME) && !p.port_enabled {
            self.prx_discard(i);
            return true;
        }
        let go = match p.prx {
            Prx::Discard => p.rcvd_bpdu && p.port_enabled,
            Prx::Receive => p.rcvd_bpdu && p.port_enabled && !p.rcvd_msg,
        };
        if go {
            self.prx_receive(i);
        }
        go
    }

    // ----- Port Protocol Migration (17.24) -----

    pub(crate) fn ppm_begin(&mut self, i: usize) {
        self.ppm_checking_rstp(i);
    }

    fn ppm_checking_rstp(&mut self, i: usize) {
        let rstp = self.rstp_version();
        let p = &mut self.ports[i];
        p.ppm = Ppm::CheckingRstp;
        p.mcheck = false;
        p.send_rstp = rstp;
        p.mdelay_while = MIGRATE_TIME;
    }

    fn ppm_sensing(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.ppm = Ppm::Sensing;
        p.rcvd_rstp = false;
        p.rcvd_stp = false;
    }

    fn ppm_selecting_stp(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.ppm = Ppm::SelectingStp;
        p.send_rstp = false;
        p.mdelay_while = MIGRATE_TIME;
        p.counters.migrations += 1;
    }

    pub(crate) fn ppm_step(&mut self, i: usize) -> bool {
        let rstp = self.rstp_version();
        let p = &self.ports[i];
        match p.ppm {
            Ppm::CheckingRstp => {
                if p.mdelay_while != MIGRATE_TIME && !p.port_enabled {
                    self.ppm_checking_rstp(i);
                    true
                } else if p.mdelay_while == 0 {
                    self.ppm_sensing(i);
                    true
                } else {
                    false
                }
            }
            Ppm::SelectingStp => {
                let go = p.mdelay_while == 0 || !p.port_enabled || p.mcheck;
                if go {
                    self.ppm_sensing(i);
                }
                go
            }
            Ppm::Sensing => {
                if !p.port_enabled || p.mcheck || (rstp && !p.send_rstp && p.rcvd_rstp) {
                    self.ppm_checking_rstp(i);
                    true
                } else if p.send_rstp && p.rcvd_stp {
                    self.ppm_selecting_stp(i);
                    true
                } else {
                    false
                }
            }
        }
    }

    // ----- Bridge Detection (17.25, with 802.1Q-2011's AutoEdge term) -----

    pub(crate) fn bdm_begin(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.bdm_edge = p.cfg.admin_edge;
        p.oper_edge = p.cfg.admin_edge;
    }

    pub(crate) fn bdm_step(&mut self, i: usize) -> bool {
        let p = &mut self.ports[i];
        let (admin, auto) = (p.cfg.admin_edge, p.cfg.auto_edge);
        if p.bdm_edge {
            if ((!p.port_enabled || !auto) && !admin) || !p.oper_edge {
                p.bdm_edge = false;
                p.oper_edge = false;
                return true;
            }
        } else if (!p.port_enabled && admin)
            || (p.edge_delay_while == 0 && auto && p.send_rstp && p.proposing)
        {
            p.bdm_edge = true;
            p.oper_edge = true;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vbridge_wire::MacAddr;
    use vbridge_wire::bpdu::{self, BridgeId, millis_to_ticks};

    fn config(age_ms: u32, max_age_ms: u32, hello_ms: u32, fd_ms: u32) -> ConfigBpdu {
        let id = BridgeId::new(0x8000, MacAddr([2, 0, 0, 0, 0, 1]));
        ConfigBpdu {
            flags: Flags(0xff),
            root_id: id,
            root_path_cost: 0,
            bridge_id: id,
            port_id: bpdu::PortId(0x8001),
            message_age_ticks: millis_to_ticks(age_ms),
            max_age_ticks: millis_to_ticks(max_age_ms),
            hello_time_ticks: millis_to_ticks(hello_ms),
            forward_delay_ticks: millis_to_ticks(fd_ms),
        }
    }

    #[test]
    fn validation() {
        let ok = config(1000, 20_000, 2000, 15_000);
        let r = decode(&Repr::Config(ok)).unwrap();
        assert_eq!(r.flags, Flags::TC | Flags::TC_ACK, "config flags masked");
        assert_eq!(decode(&Repr::Rst(ok)).unwrap().flags, Flags(0xff));
        assert_eq!(r.times.max_age, 20);
        // 9.3.4: message age must be below max age.
        assert!(decode(&Repr::Config(config(20_000, 20_000, 2000, 15_000))).is_none());
        // Absurd timers.
        assert!(decode(&Repr::Config(config(0, 255_000, 2000, 15_000))).is_none());
        assert!(decode(&Repr::Config(config(0, 20_000, 0, 15_000))).is_none());
        assert!(decode(&Repr::Rst(config(0, 20_000, 2000, 200_000))).is_none());
        assert!(decode(&Repr::Rst(config(0, 20_000, 2000, 1000))).is_none());
        assert_eq!(decode(&Repr::Tcn).unwrap().kind, RcvdKind::Tcn);
    }
}
