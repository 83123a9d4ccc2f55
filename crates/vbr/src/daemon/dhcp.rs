//! The daemon's DHCP servers: one per bridge that has one, each on a thread of its own
//! with a UDP socket on port 67 bound to the bridge's host interface (as dnsmasq does:
//! the kernel's stack hands it the broadcasts that reach the bridge's host port, and its
//! replies go out there). Never the forwarding thread. The network's settings and its
//! leases live in `dhcp/BRIDGE.json` in the state directory, written atomically before
//! a reply that changed a lease is sent, so leases survive restarts and `kill -9`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use vbridge_dhcp::{Config, Counters, Dest, Event, LeaseRecord, Server};

use crate::api::{ApiError, ErrorKind};

/// What is kept of one network.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    config: Config,
    #[serde(default)]
    leases: Vec<LeaseRecord>,
}

/// One running server.
struct Net {
    server: Arc<Mutex<Server>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A lease as `vbr dhcp leases` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseView {
    pub(crate) ip: Ipv4Addr,
    pub(crate) mac: String,
    /// Seconds left.
    pub(crate) expires_in: u64,
    pub(crate) client: String,
}

/// A network's counters, for the metrics.
#[derive(Debug, Clone)]
pub(crate) struct NetStats {
    pub(crate) bridge: String,
    pub(crate) leases: usize,
    pub(crate) counters: Counters,
}

/// The DHCP servers of all bridges.
pub(crate) struct Dhcp {
    dir: PathBuf,
    nets: Mutex<BTreeMap<String, Net>>,
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn host_err(what: String) -> ApiError {
    ApiError::new(ErrorKind::HostFailure, what)
}

impl Dhcp {
    /// The servers kept in `state_dir/dhcp`, started again (for bridges that exist).
    pub(crate) fn open(state_dir: &Path, bridge_exists: impl Fn(&str) -> bool) -> Dhcp {
        let dhcp = Dhcp {
            dir: state_dir.join("dhcp"),
            nets: Mutex::new(BTreeMap::new()),
        };
        for (bridge, saved) in super::store::json_files::<Saved>(&dhcp.dir) {
            if !bridge_exists(&bridge) {
                tracing::warn!(bridge, "DHCP settings kept for a bridge that is not there");
                continue;
            }
            match saved {
                Ok(s) => {
                    if let Err(e) = dhcp.run(&bridge, s) {
                        tracing::warn!(bridge, error = %e, "DHCP server not started");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "DHCP settings unreadable; left as they are"),
            }
        }
        dhcp
    }

    fn file(&self, bridge: &str) -> PathBuf {
        self.dir.join(format!("{bridge}.json"))
    }

    /// Whether `bridge` has a DHCP server.
    pub(crate) fn running(&self, bridge: &str) -> bool {
        self.lock().contains_key(bridge)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Net>> {
        self.nets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `config` on `bridge` (its leases kept when it ran already); the settings
    /// are saved first.
    pub(crate) fn start(&self, bridge: &str, config: Config) -> Result<(), ApiError> {
        config
            .check()
            .map_err(|e| ApiError::invalid(format!("bridge {bridge}: dhcp: {e}")))?;
        let leases = match self.lock().get(bridge) {
            Some(n) => {
                let s = n.server.lock().unwrap_or_else(|p| p.into_inner());
                if *s.config() == config {
                    return Ok(());
                }
                s.leases(now())
            }
            None => Vec::new(),
        };
        self.stop(bridge, false);
        let saved = Saved { config, leases };
        self.save(bridge, &saved)?;
        self.run(bridge, saved)
    }

    fn save(&self, bridge: &str, saved: &Saved) -> Result<(), ApiError> {
        super::store::write_json(&self.dir, &self.file(bridge), saved)
            .map_err(|e| host_err(format!("saving the DHCP leases of {bridge}: {e}")))
    }

    /// Starts the thread of `bridge`'s server.
    fn run(&self, bridge: &str, saved: Saved) -> Result<(), ApiError> {
        let (server, left) = Server::new(saved.config, &saved.leases, now())
            .map_err(|e| ApiError::invalid(format!("bridge {bridge}: dhcp: {e}")))?;
        if left > 0 {
            tracing::info!(
                bridge,
                left,
                "DHCP leases no longer valid for the network were dropped"
            );
        }
        let sock = bind(bridge).map_err(|e| {
            host_err(format!(
                "bridge {bridge}: dhcp: cannot listen on port 67 of {bridge}: {e}"
            ))
        })?;
        let server = Arc::new(Mutex::new(server));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2, dir, file, name) = (
            Arc::clone(&server),
            Arc::clone(&stop),
            self.dir.clone(),
            self.file(bridge),
            bridge.to_owned(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("vbr-dhcp-{bridge}"))
            .spawn(move || serve(&name, &sock, &s2, &stop2, &dir, &file))
            .map_err(|e| host_err(format!("bridge {bridge}: dhcp: {e}")))?;
        tracing::info!(bridge, "DHCP server started");
        self.lock().insert(
            bridge.to_owned(),
            Net {
                server,
                stop,
                thread: Some(thread),
            },
        );
        Ok(())
    }

    /// Stops `bridge`'s server; with `forget`, its settings and leases go too.
    pub(crate) fn stop(&self, bridge: &str, forget: bool) {
        let net = self.lock().remove(bridge);
        if let Some(mut n) = net {
            n.stop.store(true, Ordering::SeqCst);
            if let Some(t) = n.thread.take() {
                let _ = t.join();
            }
            tracing::info!(bridge, "DHCP server stopped");
        }
        if forget {
            let _ = std::fs::remove_file(self.file(bridge));
        }
    }

    /// `bridge`'s leases now.
    pub(crate) fn leases(&self, bridge: &str) -> Result<Vec<LeaseView>, ApiError> {
        let nets = self.lock();
        let n = nets.get(bridge).ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                format!("bridge {bridge} has no DHCP server (give it one with [bridge.dhcp] in a topology)"),
            )
        })?;
        let t = now();
        let s = n.server.lock().unwrap_or_else(|p| p.into_inner());
        Ok(s.leases(t)
            .into_iter()
            .map(|l| LeaseView {
                ip: l.ip,
                mac: mac_text(l.mac),
                expires_in: l.expires.saturating_sub(t),
                client: l.client,
            })
            .collect())
    }

    /// Every network's counters and lease count.
    pub(crate) fn stats(&self) -> Vec<NetStats> {
        let t = now();
        self.lock()
            .iter()
            .map(|(b, n)| {
                let s = n.server.lock().unwrap_or_else(|p| p.into_inner());
                NetStats {
                    bridge: b.clone(),
                    leases: s.leases(t).len(),
                    counters: s.counters().clone(),
                }
            })
            .collect()
    }
}

impl Drop for Dhcp {
    fn drop(&mut self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        for b in names {
            self.stop(&b, false);
        }
    }
}

/// UDP port 67 on `dev` only, broadcasts allowed (several bridges each bind their own).
fn bind(dev: &str) -> nix::Result<UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, setsockopt, socket, sockopt,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::Broadcast, &true)?;
    setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(dev))?;
    nix::sys::socket::bind(
        fd.as_raw_fd(),
        &SockaddrIn::new(0, 0, 0, 0, vbridge_dhcp::SERVER_PORT),
    )?;
    let sock = UdpSocket::from(fd);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    Ok(sock)
}

/// The server's loop: a request in, its reply out; leases saved before a reply that
/// changed one.
fn serve(
    bridge: &str,
    sock: &UdpSocket,
    server: &Mutex<Server>,
    stop: &AtomicBool,
    dir: &Path,
    file: &Path,
) {
    let mut buf = vec![0u8; 4096];
    let mut said = crate::logging::RateLimit::new(Duration::from_secs(10));
    while !stop.load(Ordering::SeqCst) {
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => {
                if let Some(skipped) = said.allow() {
                    tracing::warn!(bridge, error = %e, skipped, "DHCP socket");
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let t = now();
        let mut s = server.lock().unwrap_or_else(|p| p.into_inner());
        let out = s.handle(t, &buf[..n]);
        let changed = matches!(
            out.event,
            Some(Event::Leased { .. } | Event::Released { .. } | Event::Declined { .. })
        );
        if changed {
            let saved = Saved {
                config: s.config().clone(),
                leases: s.leases(t),
            };
            if let Err(e) = super::store::write_json(dir, file, &saved) {
                // Not answered: a lease the daemon could lose is not given.
                tracing::error!(bridge, error = %e, "cannot save DHCP leases; request not answered");
                continue;
            }
        }
        drop(s);
        log_event(bridge, out.event.as_ref(), &mut said);
        if let Some((reply, dest)) = out.reply {
            let to = match dest {
                Dest::Broadcast => {
                    SocketAddrV4::new(Ipv4Addr::BROADCAST, vbridge_dhcp::CLIENT_PORT)
                }
                Dest::Unicast(ip) => SocketAddrV4::new(ip, vbridge_dhcp::CLIENT_PORT),
            };
            if let Err(e) = sock.send_to(&reply, to) {
                tracing::debug!(bridge, error = %e, %to, "DHCP reply not sent");
            }
        }
    }
}

fn log_event(bridge: &str, e: Option<&Event>, said: &mut crate::logging::RateLimit) {
    match e {
        Some(Event::Leased { mac, ip, renewed }) => {
            if *renewed {
                tracing::debug!(bridge, mac = %mac_text(*mac), %ip, "DHCP lease renewed");
            } else {
                tracing::info!(bridge, mac = %mac_text(*mac), %ip, "DHCP lease");
            }
        }
        Some(Event::Released { mac, ip }) => {
            tracing::info!(bridge, mac = %mac_text(*mac), %ip, "DHCP lease released")
        }
        Some(Event::Declined { mac, ip }) => {
            tracing::warn!(bridge, mac = %mac_text(*mac), %ip, "DHCP address declined (in use by someone else): withdrawn for a lease time")
        }
        Some(Event::Exhausted { mac }) => {
            if let Some(skipped) = said.allow() {
                tracing::warn!(bridge, mac = %mac_text(*mac), skipped, "DHCP pool exhausted: no address to offer");
            }
        }
        Some(Event::Nak { mac, ip, why }) => {
            tracing::info!(bridge, mac = %mac_text(*mac), %ip, why, "DHCP request refused (NAK)")
        }
        Some(Event::Dropped { why }) => tracing::debug!(bridge, why, "DHCP message dropped"),
        None => {}
    }
}
