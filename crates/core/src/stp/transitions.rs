//! The Port Role Transitions machine (802.1D-2004 17.29, as 802.1Q-2011 13.37 refines
//! it): learn / forward decisions per role, the proposal / agreement handshake and the
//! sync that makes it safe, and the recent-root / recent-backup timers.
//!
//! Transient states (ROOT_PROPOSED, DESIGNATED_SYNCED, ...) perform their actions and
//! then the entry actions of the role's main state, as their unconditional transition
//! says. One transition per call; the engine loops until nothing changes.

use super::engine::MIGRATE_TIME;
use super::port::Prt;
use super::{Stp, StpRole};

/// The timer values a port's transitions use (17.20).
#[derive(Clone, Copy)]
struct Delays {
    /// FwdDelay: from designatedTimes.
    fwd_delay: u16,
    /// forwardDelay: HelloTime when talking RSTP, FwdDelay otherwise.
    forward_delay: u16,
    max_age: u16,
    hello: u16,
}

impl Stp {
    fn delays(&self, i: usize) -> Delays {
        let p = &self.ports[i];
        let hello = self.bridge_times.hello.max(1);
        let fwd_delay = p.designated_times.forward_delay;
        Delays {
            fwd_delay,
            forward_delay: if p.send_rstp { hello } else { fwd_delay },
            max_age: p.designated_times.max_age,
            hello,
        }
    }

    pub(crate) fn prt_begin(&mut self, i: usize) {
        let d = self.delays(i);
        let p = &mut self.ports[i];
        p.prt = Prt::Init;
        p.role = StpRole::Disabled;
        p.learn = false;
        p.forward = false;
        p.synced = false;
        p.sync = true;
        p.re_root = true;
        p.rr_while = d.fwd_delay;
        p.fd_while = d.max_age;
        p.rb_while = 0;
    }

    pub(crate) fn prt_step(&mut self, i: usize) -> bool {
        let d = self.delays(i);
        let p = &self.ports[i];
        if p.prt == Prt::Init {
            self.disable_port(i);
            return true;
        }
        if p.role != p.selected_role && p.selected && !p.updt_info {
            match p.selected_role {
                StpRole::Disabled => self.disable_port(i),
                StpRole::Root => self.enter_root(i, d),
                StpRole::Designated => self.enter_designated(i),
                StpRole::Alternate | StpRole::Backup => {
                    let p = &mut self.ports[i];
                    p.prt = Prt::Block;
                    p.role = p.selected_role;
                    p.learn = false;
                    p.forward = false;
                }
            }
            return true;
        }
        let ready = p.selected && !p.updt_info;
        match p.prt {
            Prt::Init => false,
            Prt::Disable => {
                let go = ready && !p.learning && !p.forwarding;
                if go {
                    self.disabled_port(i, d);
                }
                go
            }
            Prt::Disabled => {
                let go = ready && (p.sync || p.re_root || !p.synced || p.fd_while != d.max_age);
                if go {
                    self.disabled_port(i, d);
                }
                go
            }
            Prt::Block => {
                let go = ready && !p.learning && !p.forwarding;
                if go {
                    self.enter_alternate(i, d);
                }
                go
            }
            Prt::Root => ready && self.root_step(i, d),
            Prt::Designated => ready && self.designated_step(i, d),
            Prt::Alternate => ready && self.alternate_step(i, d),
        }
    }

    // ----- disabled -----

    fn disable_port(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.prt = Prt::Disable;
        // As mstpd: role Disabled here (the standard's selectedRole can wedge the machine
        // when BEGIN meets a port that stays up).
        p.role = StpRole::Disabled;
        p.learn = false;
        p.forward = false;
    }

    fn disabled_port(&mut self, i: usize, d: Delays) {
        let p = &mut self.ports[i];
        p.prt = Prt::Disabled;
        p.fd_while = d.max_age;
        p.synced = true;
        p.rr_while = 0;
        p.sync = false;
        p.re_root = false;
    }

    // ----- root port -----

    fn enter_root(&mut self, i: usize, d: Delays) {
        let p = &mut self.ports[i];
        p.prt = Prt::Root;
        p.role = StpRole::Root;
        p.rr_while = d.fwd_delay;
    }

    fn root_step(&mut self, i: usize, d: Delays) -> bool {
        // allSynced and reRooted look at every port: only worked out when they matter.
        let p = &self.ports[i];
        let all_synced = !p.agree && self.all_synced(i);
        let re_rooted = p.fd_while != 0 && !p.forward && self.re_rooted(i);
        let rstp = self.rstp_version();
        let p = &mut self.ports[i];
        if !p.forward && !p.re_root {
            self.set_re_root_tree(); // REROOT
        } else if (p.agreed && !p.synced) || (p.sync && p.synced) {
            p.synced = true; // ROOT_SYNCED
            p.sync = false;
        } else if (all_synced && !p.agree) || (p.proposed && p.agree) {
            p.proposed = false; // ROOT_AGREED
            p.sync = false;
            p.agree = true;
            p.new_info = true;
        } else if p.proposed && !p.agree {
            p.proposed = false; // ROOT_PROPOSED
            self.set_sync_tree();
        } else if (p.fd_while == 0 || (re_rooted && p.rb_while == 0 && rstp)) && !p.learn {
            p.fd_while = d.forward_delay; // ROOT_LEARN
            p.learn = true;
        } else if (p.fd_while == 0 || (re_rooted && p.rb_while == 0 && rstp))
            && p.learn
            && !p.forward
        {
            p.fd_while = 0; // ROOT_FORWARD
            p.forward = true;
        } else if p.re_root && p.forward {
            p.re_root = false; // REROOTED
        } else if p.rr_while == d.fwd_delay {
            return false;
        }
        self.enter_root(i, d);
        true
    }

    // ----- designated port -----

    fn enter_designated(&mut self, i: usize) {
        let p = &mut self.ports[i];
        p.prt = Prt::Designated;
        p.role = StpRole::Designated;
    }

    fn designated_step(&mut self, i: usize, d: Delays) -> bool {
        let p = &self.ports[i];
        let all_synced = (p.proposed || !p.agree) && self.all_synced(i);
        let p = &mut self.ports[i];
        let may_advance = (p.fd_while == 0 || p.agreed || p.oper_edge)
            && (p.rr_while == 0 || !p.re_root)
            && !p.sync;
        if p.re_root && p.rr_while == 0 {
            p.re_root = false; // DESIGNATED_RETIRED
        } else if (!p.learning && !p.forwarding && !p.synced)
            || (p.agreed && !p.synced)
            || (p.oper_edge && !p.synced)
            || (p.sync && p.synced)
        {
            p.rr_while = 0; // DESIGNATED_SYNCED
            p.synced = true;
            p.sync = false;
        } else if all_synced && (p.proposed || !p.agree) {
            p.proposed = false; // DESIGNATED_AGREED
            p.sync = false;
            p.agree = true;
            p.new_info = true;
        } else if !p.forward && !p.agreed && !p.proposing && !p.oper_edge {
            p.proposing = true; // DESIGNATED_PROPOSE
            p.edge_delay_while = if p.oper_p2p { MIGRATE_TIME } else { d.max_age };
            p.new_info = true;
        } else if may_advance && !p.learn {
            p.learn = true; // DESIGNATED_LEARN
            p.fd_while = d.forward_delay;
        } else if may_advance && p.learn && !p.forward {
            p.forward = true; // DESIGNATED_FORWARD
            p.fd_while = 0;
            p.agreed = p.send_rstp;
        } else if ((p.sync && !p.synced) || (p.re_root && p.rr_while != 0) || p.disputed)
            && !p.oper_edge
            && (p.learn || p.forward)
        {
            p.learn = false; // DESIGNATED_DISCARD
            p.forward = false;
            p.disputed = false;
            p.fd_while = d.forward_delay;
        } else {
            return false;
        }
        self.enter_designated(i);
        true
    }

    // ----- alternate and backup ports -----

    fn enter_alternate(&mut self, i: usize, d: Delays) {
        let p = &mut self.ports[i];
        p.prt = Prt::Alternate;
        p.fd_while = d.forward_delay;
        p.synced = true;
        p.rr_while = 0;
        p.sync = false;
        p.re_root = false;
    }

    fn alternate_step(&mut self, i: usize, d: Delays) -> bool {
        let all_synced = !self.ports[i].agree && self.all_synced(i);
        let p = &mut self.ports[i];
        let backup_timer = d.hello.saturating_mul(2);
        if (all_synced && !p.agree) || (p.proposed && p.agree) {
            p.proposed = false; // ALTERNATE_AGREED
            p.agree = true;
            p.new_info = true;
        } else if p.proposed && !p.agree {
            p.proposed = false; // ALTERNATE_PROPOSED
            self.set_sync_tree();
        } else if p.rb_while != backup_timer && p.role == StpRole::Backup {
            p.rb_while = backup_timer; // BACKUP_PORT
        } else if !(p.fd_while != d.forward_delay || p.sync || p.re_root || !p.synced) {
            return false;
        }
        self.enter_alternate(i, d);
        true
    }

    // ----- tree-wide conditions and procedures (17.20, 17.21) -----

    pub(crate) fn set_sync_tree(&mut self) {
        for p in &mut self.ports {
            p.sync = true;
        }
    }

    pub(crate) fn set_re_root_tree(&mut self) {
        for p in &mut self.ports {
            p.re_root = true;
        }
    }

    /// 17.20.3 allSynced, as 802.1Q-2011 13.25.1 clarifies it per calling role.
    pub(crate) fn all_synced(&self, i: usize) -> bool {
        let me = &self.ports[i];
        self.ports.iter().enumerate().all(|(j, q)| {
            if !q.selected || q.role != q.selected_role || q.updt_info {
                return false;
            }
            match me.role {
                StpRole::Root | StpRole::Alternate => q.role == StpRole::Root || q.synced,
                StpRole::Designated => j == i || q.synced,
                _ => false,
            }
        })
    }

    /// 17.20.10 reRooted: no other port is a recent root.
    pub(crate) fn re_rooted(&self, i: usize) -> bool {
        self.ports
            .iter()
            .enumerate()
            .all(|(j, q)| j == i || q.rr_while == 0)
    }
}
