//! The daemon's NAT: what each bridge's nftables table must hold (masquerade of its
//! subnets, set by a topology's `nat = true`; ports published to its namespaces, each
//! set by the port that publishes them), kept in `state/nat/BRIDGE.json`, written to
//! the kernel whole on every change, and mended: a keeper thread looks every second and
//! writes a table back when someone removed or changed it (`nft flush ruleset`, a
//! firewall reload), and turns `ip_forward` back on when NAT needs it, logging and
//! counting each repair. A host port is published once: a second claim, or a port a
//! program on the host already listens on, is refused.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vbridge_host::nat::{self, Proto, Publish, Rules};
use vbridge_host::sysctl;

use super::errors::host;
use crate::api::{ApiError, ErrorKind};

/// The sysctl NAT needs on.
pub(crate) const IP_FORWARD: &str = "net/ipv4/ip_forward";

/// Turns `ip_forward` on for `owner`, its original value recorded in `ledger` first;
/// whether it was recorded now (it was off).
pub(crate) fn forwarding_on(
    ledger: &vbridge_host::ledger::Ledger,
    owner: vbridge_host::ledger::Owner,
) -> Result<bool, ApiError> {
    let fwd = sysctl::get(IP_FORWARD).map_err(host)?;
    if fwd.trim() == "1" {
        return Ok(false);
    }
    let fresh = ledger
        .put(
            owner,
            vbridge_host::ledger::Object::Sysctl {
                path: IP_FORWARD.into(),
            },
            Some(fwd.trim().to_owned()),
        )
        .map_err(host)?;
    sysctl::set(IP_FORWARD, "1").map_err(host)?;
    Ok(fresh)
}
/// How often the keeper looks.
const LOOK: Duration = Duration::from_secs(1);

/// What a bridge's table must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Desired {
    subnets: Vec<(Ipv4Addr, u8)>,
    /// The other host interfaces of the same switch (reached by routing, not NAT).
    #[serde(default)]
    also: Vec<String>,
    masquerade: bool,
    /// Published ports by the port (connection) that publishes them.
    publish: BTreeMap<String, Vec<Publish>>,
}

impl Desired {
    fn rules(&self) -> Rules {
        Rules {
            subnets: self.subnets.clone(),
            also: self.also.clone(),
            masquerade: self.masquerade,
            publish: self.publish.values().flatten().copied().collect(),
        }
    }
}

/// The NAT of every bridge.
pub(crate) struct Nat {
    dir: PathBuf,
    bridges: Mutex<BTreeMap<String, Desired>>,
    repairs: Mutex<BTreeMap<String, u64>>,
    /// Whether `ip_forward` is the keeper's to keep on: set when NAT rules are written,
    /// cleared when the record of turning it on is undone (so the keeper never fights
    /// the restoring of its original value).
    forward: std::sync::atomic::AtomicBool,
}

impl Nat {
    /// The tables kept in `state_dir/nat`, written again where they are not intact.
    pub(crate) fn open(state_dir: &Path) -> Arc<Nat> {
        let n = Nat {
            dir: state_dir.join("nat"),
            bridges: Mutex::new(BTreeMap::new()),
            repairs: Mutex::new(BTreeMap::new()),
            forward: std::sync::atomic::AtomicBool::new(true),
        };
        for (b, d) in super::store::json_files::<Desired>(&n.dir) {
            match d {
                Ok(d) => {
                    n.lock().insert(b, d);
                }
                Err(e) => tracing::warn!(error = %e, "NAT settings unreadable; left as they are"),
            }
        }
        let n = Arc::new(n);
        n.mend();
        n
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Desired>> {
        self.bridges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the keeper thread.
    pub(crate) fn keep(self: &Arc<Self>) {
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new()
            .name("vbr-nat".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(LOOK);
                    me.mend();
                }
            });
    }

    /// Writes back every table that is not as it must be, and `ip_forward`.
    fn mend(&self) {
        let all: Vec<(String, Desired)> = self
            .lock()
            .iter()
            .map(|(b, d)| (b.clone(), d.clone()))
            .collect();
        let mut forward = false;
        for (b, d) in all {
            let rules = d.rules();
            if rules.is_empty() {
                continue;
            }
            forward = true;
            match nat::intact(&b, &rules) {
                Ok(true) => {}
                Ok(false) => match nat::apply(&b, &rules) {
                    Ok(()) => {
                        *self
                            .repairs
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(b.clone())
                            .or_default() += 1;
                        tracing::warn!(bridge = %b, "NAT table was removed or changed by someone else: written back");
                    }
                    Err(e) => {
                        tracing::warn!(bridge = %b, error = %e, "NAT table cannot be written back")
                    }
                },
                Err(e) => tracing::debug!(bridge = %b, error = %e, "NAT table not readable"),
            }
        }
        let ours = self.forward.load(std::sync::atomic::Ordering::SeqCst);
        if forward && ours && sysctl::get(IP_FORWARD).is_ok_and(|v| v.trim() != "1") {
            match sysctl::set(IP_FORWARD, "1") {
                Ok(()) => tracing::warn!(
                    "ip_forward was turned off by someone else: on again (NAT needs it)"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot turn ip_forward back on"),
            }
        }
    }

    /// Repairs so far, by bridge.
    pub(crate) fn repairs(&self) -> BTreeMap<String, u64> {
        self.repairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes `bridge`'s desired rules with `f`, then writes them (or removes the table
    /// when nothing is left) and saves them. On failure nothing is changed.
    fn change(&self, bridge: &str, f: impl FnOnce(&mut Desired)) -> Result<(), ApiError> {
        let mut all = self.lock();
        let before = all.get(bridge).cloned().unwrap_or_default();
        let mut d = before.clone();
        f(&mut d);
        if d == before {
            return Ok(());
        }
        let rules = d.rules();
        if rules.is_empty() {
            nat::remove(bridge).map_err(host)?;
            all.remove(bridge);
            let _ = std::fs::remove_file(self.file(bridge));
            return Ok(());
        }
        nat::apply(bridge, &rules).map_err(host)?;
        self.forward
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Err(e) = self.save(bridge, &d) {
            // Put the kernel back as it was: what is not saved is not kept.
            let _ = if before.rules().is_empty() {
                nat::remove(bridge)
            } else {
                nat::apply(bridge, &before.rules())
            };
            return Err(ApiError::new(
                ErrorKind::HostFailure,
                format!("saving the NAT settings of {bridge}: {e}"),
            ));
        }
        all.insert(bridge.to_owned(), d);
        Ok(())
    }

    fn file(&self, bridge: &str) -> PathBuf {
        self.dir.join(format!("{bridge}.json"))
    }

    fn save(&self, bridge: &str, d: &Desired) -> std::io::Result<()> {
        super::store::write_json(&self.dir, &self.file(bridge), d)
    }

    /// Masquerading of `bridge`'s `subnets` on or off.
    pub(crate) fn set_masquerade(
        &self,
        bridge: &str,
        subnets: &[(Ipv4Addr, u8)],
        also: &[String],
        on: bool,
    ) -> Result<(), ApiError> {
        self.change(bridge, |d| {
            if on {
                d.subnets = subnets.to_vec();
                d.also = also.iter().filter(|a| *a != bridge).cloned().collect();
            }
            d.masquerade = on;
        })
    }

    /// Whether `owner` (a port of `bridge`, or one about to be) may publish `ports`:
    /// no host port twice, none claimed by someone else, none a host program listens on.
    pub(crate) fn check(
        &self,
        bridge: &str,
        owner: &str,
        ports: &[Publish],
    ) -> Result<(), ApiError> {
        let all = self.lock();
        for (i, p) in ports.iter().enumerate() {
            if ports[..i].iter().any(|q| q.clashes(p)) {
                return Err(ApiError::invalid(format!(
                    "{p}: the host port is given twice"
                )));
            }
            for (b, d) in all.iter() {
                for (o, theirs) in &d.publish {
                    if b == bridge && o == owner {
                        continue;
                    }
                    if let Some(q) = theirs.iter().find(|q| q.clashes(p)) {
                        return Err(ApiError::new(
                            ErrorKind::Conflict,
                            format!(
                                "{p}: host port {}/{} is published already ({q}, by {o} on {b})",
                                p.host_port,
                                p.proto.name()
                            ),
                        ));
                    }
                }
            }
            if let Some(e) = in_use(p) {
                return Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!(
                        "{p}: host port {}/{} is in use on the host ({e})",
                        p.host_port,
                        p.proto.name()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Publishes `ports` for `owner` (a port of `bridge`), replacing what it published;
    /// refused as [`Nat::check`] says.
    pub(crate) fn publish(
        &self,
        bridge: &str,
        owner: &str,
        subnets: &[(Ipv4Addr, u8)],
        ports: &[Publish],
    ) -> Result<(), ApiError> {
        self.check(bridge, owner, ports)?;
        self.change(bridge, |d| {
            if !subnets.is_empty() {
                d.subnets = subnets.to_vec();
            }
            if ports.is_empty() {
                d.publish.remove(owner);
            } else {
                d.publish.insert(owner.to_owned(), ports.to_vec());
            }
        })
    }

    /// Whether `owner` publishes ports on `bridge`.
    pub(crate) fn publishes(&self, bridge: &str, owner: &str) -> bool {
        self.lock()
            .get(bridge)
            .is_some_and(|d| d.publish.contains_key(owner))
    }

    /// Withdraws what `owner` published (its port is going).
    pub(crate) fn unpublish(&self, bridge: &str, owner: &str) {
        if !self.publishes(bridge, owner) {
            return;
        }
        if let Err(e) = self.change(bridge, |d| {
            d.publish.remove(owner);
        }) {
            tracing::warn!(bridge, owner, error = %e, "published ports not withdrawn");
        }
    }

    /// Masquerading off (the topology that turned it on goes); a table the keeper does
    /// not know (recorded before it kept tables) is removed outright.
    pub(crate) fn release_masquerade(&self, bridge: &str) {
        let known = self.lock().contains_key(bridge);
        let r = if known {
            self.set_masquerade(bridge, &[], &[], false)
        } else {
            nat::remove(bridge).map_err(host)
        };
        if let Err(e) = r {
            tracing::warn!(bridge, error = %e, "NAT table not taken away");
        }
    }

    /// The original `ip_forward` is being put back: the keeper leaves it alone until NAT
    /// rules are written again.
    pub(crate) fn release_forwarding(&self) {
        self.forward
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forgets `bridge` (it is being deleted) and removes its table.
    pub(crate) fn forget(&self, bridge: &str) {
        if self.lock().remove(bridge).is_some() {
            let _ = std::fs::remove_file(self.file(bridge));
        }
        let _ = nat::remove(bridge);
    }
}

/// Why a program on the host already holds the port `p` publishes, if one does.
fn in_use(p: &Publish) -> Option<String> {
    let addr = SocketAddrV4::new(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
    let r = match p.proto {
        Proto::Tcp => std::net::TcpListener::bind(addr).map(drop),
        Proto::Udp => std::net::UdpSocket::bind(addr).map(drop),
    };
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Some(e.to_string()),
        _ => None,
    }
}
