//! The Port Role Selection machine (802.1D-2004 17.28): `updtRolesTree` (17.21.25)
//! elects the root priority vector and gives every port its role. Root guard is
//! 802.1Q's `restrictedRole`: such a port is never chosen as root port.

use core::cmp::Ordering;

use super::port::InfoIs;
use super::vector::Priority;
use super::{Stp, StpEvent, StpRole};

impl Stp {
    pub(crate) fn prs_step(&mut self) -> bool {
        if !self.ports.iter().any(|p| p.reselect) {
            return false;
        }
        for p in &mut self.ports {
            p.reselect = false; // clearReselectTree()
        }
        self.updt_roles_tree();
        for p in &mut self.ports {
            p.selected = true; // setSelectedTree()
        }
        true
    }

    /// The root path priority vector a port offers: its port priority vector plus its
    /// path cost, unless the information is our own (17.21.25 a).
    fn root_path(&self, i: usize) -> Option<Priority> {
        let p = &self.ports[i];
        if p.info_is != InfoIs::Received || p.port_priority.bridge == self.bridge_id {
            return None;
        }
        let mut v = p.port_priority;
        v.cost = v.cost.saturating_add(p.path_cost);
        Some(v)
    }

    fn updt_roles_tree(&mut self) {
        let bridge = Priority::of_bridge(self.bridge_id);
        let mut root = bridge;
        let mut root_port_id = vbridge_wire::bpdu::PortId(0);
        let mut root_idx = None;
        for i in 0..self.ports.len() {
            let p = &self.ports[i];
            let Some(v) = self.root_path(i).filter(|_| !p.cfg.root_guard) else {
                continue;
            };
            if v.cmp_with_port(p.port_id, &root, root_port_id) == Ordering::Less {
                root = v;
                root_port_id = p.port_id;
                root_idx = Some(i);
            }
        }
        self.root_priority = root;
        self.root_port_id = root_port_id;
        self.root_times = match root_idx {
            Some(i) => {
                let mut t = self.ports[i].port_times;
                t.message_age = t.message_age.saturating_add(1);
                t
            }
            None => self.bridge_times,
        };

        let mut guard_events = Vec::new();
        for i in 0..self.ports.len() {
            // Root guard: would this port have won?
            let guarded = self.ports[i].cfg.root_guard
                && self.root_path(i).is_some_and(|v| {
                    v.cmp_with_port(self.ports[i].port_id, &root, root_port_id) == Ordering::Less
                });
            let bridge_id = self.bridge_id;
            let root_times = self.root_times;
            let hello = self.bridge_times.hello;
            let p = &mut self.ports[i];
            if guarded != p.root_guard_blocking {
                p.root_guard_blocking = guarded;
                guard_events.push(StpEvent::RootGuard {
                    port: p.id,
                    blocking: guarded,
                });
            }
            p.designated_priority = Priority {
                root: root.root,
                cost: root.cost,
                bridge: bridge_id,
                port: p.port_id,
            };
            p.designated_times = root_times;
            p.designated_times.hello = hello;

            match p.info_is {
                InfoIs::Disabled => p.selected_role = StpRole::Disabled,
                InfoIs::Aged => {
                    p.selected_role = StpRole::Designated;
                    p.updt_info = true;
                }
                InfoIs::Mine => {
                    p.selected_role = StpRole::Designated;
                    if p.port_priority != p.designated_priority
                        || p.port_times != p.designated_times
                    {
                        p.updt_info = true;
                    }
                }
                InfoIs::Received if root_idx == Some(i) => {
                    p.selected_role = StpRole::Root;
                    p.updt_info = false;
                }
                InfoIs::Received => {
                    if p.port_priority.better_or_same(&p.designated_priority) {
                        p.selected_role = if p.port_priority.bridge != bridge_id {
                            StpRole::Alternate
                        } else {
                            StpRole::Backup
                        };
                        p.updt_info = false;
                    } else {
                        p.selected_role = StpRole::Designated;
                        p.updt_info = true;
                    }
                }
            }
        }
        for e in guard_events {
            self.event(e);
        }
    }
}
