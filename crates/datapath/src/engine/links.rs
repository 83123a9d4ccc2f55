//! Keeping the cores in step with their netdevs, from link notifications the control
//! side passes on ([`LinkState`]): a port's MAC (the bridge MAC rule), up/down and MTU,
//! its device removed, renamed or moved away (the port is kept as gone), a veth whose
//! peer moved (its fast-path flows sent out of the netdev, or to the peer, from now on),
//! and the host interface's MAC set by hand (which fixes
//! the bridge MAC, as `ip link set br0 address ...` does on a Linux bridge).

use std::time::Duration;

use vbridge_core::{Instant, MacAddr};

use super::Engine;
use crate::action::{LinkState, Notice};
use crate::view::PortKind;

impl Engine {
    pub(super) fn link_changed(&mut self, l: LinkState) {
        let Some(&(bi, id)) = self.by_ifindex.get(&l.ifindex) else {
            return;
        };
        let now = self.now();
        let Some(rt) = self.bridges.get_mut(bi).and_then(Option::as_mut) else {
            return;
        };
        let Some(p) = rt.port_mut(id) else { return };
        if l.removed || p.name != l.name {
            if !l.removed {
                tracing::warn!(port = %p.name, now = %l.name, "netdev renamed");
            }
            self.port_gone(bi, id);
            self.sync_bridge(bi);
            return;
        }
        p.mtu = l.mtu.or(p.mtu);
        let kind = p.kind;
        let peer_moved = p.fast_peer != l.peer_elsewhere;
        p.fast_peer = l.peer_elsewhere;
        if rt.core.port_config(id).map(|c| c.up).ok() != Some(l.up) {
            let _ = rt.core.set_port_up(id, l.up);
        }
        if Some(id) == rt.core.host_port() {
            if let Some(n) = l.mac.and_then(|m| host_mac_seen(rt, m, now)) {
                let _ = self.notices.send(n);
            }
        } else if kind == PortKind::Interface {
            let cur = rt.core.port_config(id).ok().and_then(|c| c.mac);
            if l.mac.is_some() && l.mac != cur {
                let _ = rt.core.set_port_mac(id, l.mac);
            }
        }
        if peer_moved {
            // Its flows were handed over the other way: taken back, offered again.
            rt.check_fast(now);
        }
        self.sync_bridge(bi);
    }
}

/// How long a MAC asked of the host interface is waited for.
const ASK_WAIT: Duration = Duration::from_secs(2);

/// The host interface shows MAC `m`: ours if we asked for it (the bridge MAC rule; if
/// the bridge MAC moved on meanwhile, it is asked for again), stale while a MAC we asked
/// for is still on its way (it will overwrite this one), else set by hand, which fixes
/// the bridge MAC from now on.
fn host_mac_seen(rt: &mut crate::bridge_rt::BridgeRt, m: MacAddr, now: Instant) -> Option<Notice> {
    rt.host_mac = Some(m);
    rt.host_mac_asked
        .retain(|(_, at)| now.saturating_since(*at) < ASK_WAIT);
    if let Some(pos) = rt.host_mac_asked.iter().position(|(a, _)| *a == m) {
        rt.host_mac_asked.drain(..=pos);
        let want = rt.core.mac();
        if rt.host_mac_asked.is_empty() && want != m {
            rt.host_mac_asked.push((want, now));
            return Some(Notice::HostMac {
                bridge: rt.name.clone(),
                mac: want,
            });
        }
        return None;
    }
    if rt.host_mac_asked.is_empty() && m != rt.core.mac() {
        tracing::info!(bridge = %rt.name, mac = %m, "bridge MAC set by hand");
        let _ = rt.core.set_mac(Some(m));
    }
    None
}
