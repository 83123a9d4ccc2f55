//! `vbr daemon`: owns the datapath, serves the JSON API on a UNIX socket, persists the
//! configuration after every change (and when the netdevs change it, e.g. a bridge MAC
//! set by hand), restores it at start, and shuts down cleanly on SIGTERM/SIGINT.

mod dhcp;
mod errors;
mod handler;
mod limits;
mod macvlan;
mod metrics;
mod nat;
mod server;
mod store;
mod stream;
mod up;
mod vmport;
mod wiring;

pub(crate) use dhcp::LeaseView;
pub(crate) use macvlan::MacvlanArgs;
pub(crate) use wiring::ConnectArgs;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use vbridge_datapath::{Config, Datapath};

use crate::api::{ApiError, ErrorKind, Request, Response};
use store::Store;

/// Where the daemon listens and keeps its state.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) socket: PathBuf,
    pub(crate) state_dir: PathBuf,
    /// Serve Prometheus metrics here (`--metrics`).
    pub(crate) metrics: Option<std::net::SocketAddr>,
    /// Cluster mode (`--cluster`).
    pub(crate) cluster: Option<crate::cluster::Options>,
}

/// What connection threads share.
pub(crate) struct Shared {
    dp: Datapath,
    store: Store,
    /// The configuration last saved; held while a change is applied and saved, so
    /// changes are made one at a time and saved in the order they were made.
    saved: Mutex<Config>,
    /// API requests counted for the metrics.
    api_metrics: metrics::ApiMetrics,
    /// The bridges' DHCP servers.
    dhcp: dhcp::Dhcp,
    /// The bridges' NAT tables, kept as they must be.
    nat: Arc<nat::Nat>,
    /// This node in its cluster (cluster mode only).
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Shared {
    /// Runs one request; saves the configuration after a change.
    pub(crate) fn execute(&self, req: Request) -> Response {
        match self.cluster.clone() {
            Some(c) => self
                .cluster_request(&c, req)
                .unwrap_or_else(|req| self.execute_local(req)),
            None => self.execute_local(req),
        }
    }

    /// Runs one request on this node alone.
    fn execute_local(&self, req: Request) -> Response {
        if self.dp.died() {
            return Response::err(ApiError::new(
                ErrorKind::Unavailable,
                "the forwarding thread has stopped (a bug: see the daemon's log); restart the daemon",
            ));
        }
        let mutates = req.mutates();
        let mut saved = if mutates {
            Some(self.saved.lock().unwrap_or_else(|p| p.into_inner()))
        } else {
            None
        };
        let out = match req {
            Request::Up { name, plan } => up::up(&self.dp, &self.dhcp, &self.nat, &name, &plan)
                .map_err(|e| ApiError::new(e.kind, format!("{name}: {}", e.message)))
                .and_then(|done| {
                    serde_json::to_value(done)
                        .map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
                }),
            Request::Down { name } => {
                up::down(&self.dp, &self.dhcp, &self.nat, &name).map(|()| serde_json::json!({}))
            }
            Request::Topologies => Ok(serde_json::json!(up::topologies(self.dp.ledger()))),
            Request::PortAdd {
                bridge,
                name,
                kind,
                mac,
                client,
            } => vmport::add(
                &self.dp,
                self.store.dir(),
                &bridge,
                &name,
                (kind, client),
                mac.as_deref(),
            ),
            Request::PortDel { bridge, name } => vmport::del(&self.dp, &bridge, &name),
            Request::DhcpLeases { bridge } => self.dhcp.leases(&bridge).and_then(|l| {
                serde_json::to_value(l)
                    .map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
            }),
            Request::Connect(args)
                if args.dhcp
                    && !self.dhcp.running(&args.bridge)
                    && !self.has_uplink(&args.bridge) =>
            {
                Err(ApiError::invalid(format!(
                    "--dhcp: bridge {} has no DHCP server (give it one with [bridge.dhcp] in a topology) and no uplink a server could be behind",
                    args.bridge
                )))
            }
            Request::Delbr { bridge } => {
                // Its NAT and DHCP go first, so the NAT keeper never fights the
                // restoring of what the bridge's removal puts back (ip_forward).
                if self.dp.bridges(Some(&bridge)).is_ok() {
                    self.nat.release_forwarding();
                    self.nat.forget(&bridge);
                    self.dhcp.stop(&bridge, true);
                }
                handler::apply(&self.dp, Request::Delbr { bridge })
            }
            Request::Delif { bridge, port } => {
                let r = handler::apply(
                    &self.dp,
                    Request::Delif {
                        bridge: bridge.clone(),
                        port: port.clone(),
                    },
                );
                if r.is_ok() {
                    self.nat.unpublish(&bridge, &port);
                }
                r
            }
            Request::Disconnect { netns, bridge } => {
                let ports = wiring::ports_of(&self.dp, &netns, &bridge);
                let r = wiring::disconnect(&self.dp, &netns, &bridge);
                if r.is_ok() {
                    for p in ports {
                        self.nat.unpublish(&bridge, &p);
                    }
                }
                r
            }
            Request::Connect(args) if !args.publish.is_empty() => self.connect_publishing(&args),
            Request::MacvlanConnect(args) => macvlan::connect(
                self.dp.ledger(),
                macvlan::owner(&args.netns, &args.ifname),
                &args,
            )
            .map(|()| serde_json::json!({})),
            Request::MacvlanDisconnect { netns, ifname } => {
                macvlan::disconnect(self.dp.ledger(), &netns, &ifname)
                    .map(|()| serde_json::json!({}))
            }
            Request::NetnsDel { name } => {
                let ports: Vec<(String, String)> = self
                    .dp
                    .connections()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, _, c)| c.netns == name)
                    .map(|(b, p, _)| (b, p))
                    .collect();
                let r = handler::apply(&self.dp, Request::NetnsDel { name });
                if r.is_ok() {
                    for (b, p) in ports {
                        self.nat.unpublish(&b, &p);
                    }
                }
                r
            }
            req => handler::apply(&self.dp, req),
        };
        if let Some(saved) = saved.as_mut() {
            if let Err(e) = self.persist(saved) {
                tracing::error!(error = %format!("{e:#}"), "cannot save configuration");
                return Response::err(ApiError::new(
                    ErrorKind::HostFailure,
                    format!("applied, but saving the configuration failed: {e:#}"),
                ));
            }
        }
        match out {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        }
    }

    /// Runs `reqs` (changes the cluster agent makes) under one hold of the configuration
    /// lock, saving once after all; the ones that failed, with why.
    pub(crate) fn execute_batch(&self, reqs: Vec<Request>) -> Vec<(Request, String)> {
        if reqs.is_empty() || self.dp.died() {
            return Vec::new();
        }
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        let mut failed = Vec::new();
        for r in reqs {
            if let Err(e) = handler::apply(&self.dp, r.clone()) {
                failed.push((r, e.message));
            }
        }
        if let Err(e) = self.persist(&mut saved) {
            tracing::error!(error = %format!("{e:#}"), "cannot save configuration");
        }
        failed
    }

    /// The datapath, for the cluster agent.
    pub(crate) fn datapath(&self) -> &Datapath {
        &self.dp
    }

    /// Requests cluster mode answers or changes: `cluster ...`, and connecting a
    /// namespace to a cluster network (its address allocated cluster-wide, its MAC
    /// chosen here so it is published at once) or taking it away (its address given
    /// back). An ordinary request is given back (moved, not copied: hence its size in
    /// `Err`).
    #[allow(clippy::result_large_err)]
    fn cluster_request(
        &self,
        c: &crate::cluster::Cluster,
        req: Request,
    ) -> Result<Response, Request> {
        let answer = |r: Result<serde_json::Value, ApiError>| match r {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        };
        fn json(v: &impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
            serde_json::to_value(v)
                .map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
        }
        match req {
            Request::ClusterApply { networks } => {
                Ok(answer(c.apply(&networks).and_then(|d| json(&d))))
            }
            Request::ClusterDel { name } => {
                Ok(answer(c.delete(&name).map(|()| serde_json::json!({}))))
            }
            Request::ClusterStatus => {
                let v = c.status(|nets| crate::cluster::health(self, nets));
                Ok(answer(json(&v)))
            }
            Request::Connect(mut args) => match c.network(&args.bridge) {
                Some(net) => Ok(self.connect_in_cluster(c, &net, &mut args)),
                None => Err(Request::Connect(args)),
            },
            Request::Disconnect { netns, bridge } if c.network(&bridge).is_some() => {
                let r = self.execute_local(Request::Disconnect {
                    netns: netns.clone(),
                    bridge: bridge.clone(),
                });
                Ok(release_after(c, r, &[bridge], &netns))
            }
            Request::NetnsDel { name } => {
                let nets: Vec<String> = self
                    .dp
                    .connections()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(b, _, conn)| conn.netns == name && c.network(b).is_some())
                    .map(|(b, _, _)| b)
                    .collect();
                if nets.is_empty() {
                    return Err(Request::NetnsDel { name });
                }
                let r = self.execute_local(Request::NetnsDel { name: name.clone() });
                Ok(release_after(c, r, &nets, &name))
            }
            req => Err(req),
        }
    }

    /// `vbr connect` to a cluster network: its MAC chosen here (so it is published at
    /// once), its address allocated cluster-wide, or the one given with `--ip` claimed
    /// (refused when another namespace holds it); what was taken is given back if the
    /// connect fails.
    fn connect_in_cluster(
        &self,
        c: &crate::cluster::Cluster,
        net: &crate::cluster::model::NetworkDef,
        args: &mut ConnectArgs,
    ) -> Response {
        if args.mac.is_none() {
            args.mac = Some(crate::mac::random());
        }
        let _busy = c.connecting(&args.netns);
        let mut taken = Vec::new();
        let got = if args.ips.is_empty() && !args.dhcp {
            c.allocate(net, &args.netns).map(|(ip, rev)| {
                taken.push((ip, rev));
                let len = net.subnet.prefix_len();
                if let Ok(n) = ipnet::Ipv4Net::new(ip, len) {
                    args.ips = vec![ipnet::IpNet::V4(n)];
                }
                if args.gateway.is_none() {
                    args.gateway = net.gateway.map(std::net::IpAddr::V4);
                }
            })
        } else {
            args.ips
                .iter()
                .filter_map(|a| match a {
                    ipnet::IpNet::V4(n) if net.subnet.contains(&n.addr()) => Some(n.addr()),
                    _ => None,
                })
                .try_for_each(|ip| {
                    c.claim(net, ip, &args.netns).map(|rev| {
                        if let Some(rev) = rev {
                            taken.push((ip, rev));
                        }
                    })
                })
        };
        let r = match got {
            Ok(()) => self.execute_local(Request::Connect(args.clone())),
            Err(e) => Response::err(e),
        };
        if !r.ok {
            for (ip, rev) in taken {
                c.unallocate(&net.name, ip, rev);
            }
        }
        r
    }

    /// Whether `bridge` has an uplink (an interface of this namespace, or the veth to a
    /// provider bridge): a DHCP server may answer from behind it.
    fn has_uplink(&self, bridge: &str) -> bool {
        self.dp.bridges(Some(bridge)).is_ok_and(|v| {
            v.iter()
                .flat_map(|b| &b.ports)
                .any(|p| p.kind == vbridge_datapath::PortKind::Interface && p.netns.is_none())
        })
    }

    /// `vbr connect --publish`: the host ports checked first, the connection made, then
    /// published (forwarding on, its original value recorded for the bridge); if
    /// publishing fails the connection is undone.
    fn connect_publishing(&self, args: &ConnectArgs) -> handler::Outcome {
        let to = args
            .ips
            .iter()
            .find_map(|a| match a {
                ipnet::IpNet::V4(n) => Some(n.addr()),
                ipnet::IpNet::V6(_) => None,
            })
            .ok_or_else(|| {
                ApiError::invalid("--publish needs an IPv4 address (--ip) for the namespace")
            })?;
        let ports: Vec<vbridge_host::nat::Publish> = args
            .publish
            .iter()
            .map(|p| vbridge_host::nat::Publish::parse(p, to).map_err(ApiError::invalid))
            .collect::<Result<_, _>>()?;
        let port =
            vbridge_datapath::port_name(&args.netns, args.ifname.as_deref().unwrap_or("eth0"));
        self.nat.check(&args.bridge, &port, &ports)?;
        let connected = handler::apply(&self.dp, Request::Connect(args.clone()))?;
        let subnets = bridge_subnets(&args.bridge);
        let published = self
            .nat
            .publish(&args.bridge, &port, &subnets, &ports)
            .and_then(|()| {
                // Put back when the bridge goes.
                let owner = vbridge_host::ledger::Owner::Bridge {
                    name: args.bridge.clone(),
                };
                nat::forwarding_on(self.dp.ledger(), owner).map(drop)
            });
        if let Err(e) = published {
            self.nat.unpublish(&args.bridge, &port);
            let _ = wiring::disconnect(&self.dp, &args.netns, &args.bridge);
            return Err(e);
        }
        Ok(connected)
    }

    /// Saves the engine's configuration if it differs from what was saved.
    fn persist(&self, saved: &mut Config) -> Result<()> {
        let now = self.dp.snapshot()?;
        if now != *saved {
            self.store.save(&now)?;
            *saved = now;
        }
        Ok(())
    }
}

/// Runs the daemon until a signal stops it.
pub(crate) fn run(opts: Options) -> Result<()> {
    let store = Store::open(&opts.state_dir, &opts.socket)?;
    if let Some((old, new)) = limits::raise_nofile() {
        if old != new {
            tracing::info!(from = old, to = new, "descriptor limit raised");
        }
    }
    for (cap, what) in limits::missing_capabilities() {
        tracing::warn!("missing capability {cap}: {what} will fail");
    }
    let config = store.load()?;
    let cluster = match opts.cluster.clone() {
        Some(o) => Some(Arc::new(join(o, &opts.state_dir)?)),
        None => None,
    };
    let ledger = Arc::new(store.ledger()?);
    if let Some(old) = store.take_topologies()? {
        up::migrate(&ledger, old);
    }
    let listener = server::bind(&opts.socket)?;
    let dp = Datapath::start(ledger).context("starting the datapath")?;
    let problems: Vec<String> = dp
        .restore(&config)
        .iter()
        .map(|e| errors::describe(e))
        .collect();
    if !problems.is_empty() {
        // What could not be restored would vanish from the next save: keep a copy.
        let kept = store
            .keep_copy()
            .context("keeping a copy of the configuration")?;
        for p in &problems {
            tracing::warn!("restoring configuration: {p}");
        }
        tracing::warn!(copy = %kept.display(), "part of the configuration could not be restored; the full file is kept");
    }
    // A server serves a bridge or one of its VLAN gateways.
    let dhcp = dhcp::Dhcp::open(&opts.state_dir, |dev| {
        dp.bridges(Some(dev)).is_ok()
            || matches!(
                dp.find_port(dev),
                Ok(Some((_, vbridge_datapath::PortKind::Gateway)))
            )
    });
    let nat = nat::Nat::open(&opts.state_dir);
    for line in up::recover(&dp, &dhcp, &nat) {
        tracing::info!("recovery: {line}");
    }
    nat.keep();
    let shared = Arc::new(Shared {
        dp,
        store,
        saved: Mutex::new(config),
        api_metrics: metrics::ApiMetrics::default(),
        dhcp,
        nat,
        cluster: cluster.clone(),
    });
    {
        let mut saved = shared.saved.lock().unwrap_or_else(|p| p.into_inner());
        shared.persist(&mut saved)?;
    }
    if let Some(addr) = opts.metrics {
        metrics::serve(addr, Arc::clone(&shared))?;
    }
    if let Some(c) = cluster {
        crate::cluster::spawn(c, Arc::clone(&shared));
    }
    spawn_persister(Arc::clone(&shared));
    spawn_watchdog(Arc::clone(&shared), opts.socket.clone());
    server::spawn_signal_handler(Arc::clone(&shared), opts.socket.clone())?;
    tracing::info!(socket = %opts.socket.display(), state = %opts.state_dir.display(), "vbr daemon ready");
    server::serve(listener, shared);
    Ok(())
}

/// After a disconnect (`r`) from cluster networks `nets`: `netns`'s addresses there given
/// back (logged when etcd cannot take it now; the agent gives back orphans later).
fn release_after(
    c: &crate::cluster::Cluster,
    r: Response,
    nets: &[String],
    netns: &str,
) -> Response {
    if r.ok {
        for n in nets {
            if let Err(e) = c.release(n, netns) {
                tracing::warn!(error = %e, %netns, network = %n, "cannot give the address back now");
            }
        }
    }
    r
}

/// Joins the cluster before anything else starts: a node name another live node holds
/// stops the daemon here; an etcd that does not answer does not (the agent keeps
/// trying, forwarding goes on with the configuration saved last).
fn join(
    o: crate::cluster::Options,
    state_dir: &std::path::Path,
) -> Result<crate::cluster::Cluster> {
    let c = crate::cluster::Cluster::new(o, state_dir).map_err(anyhow::Error::msg)?;
    match c.session() {
        Ok(()) => {}
        Err(crate::cluster::JoinError::NameTaken(m)) => anyhow::bail!(m),
        Err(e) => tracing::warn!("cluster: {e}; starting with the configuration saved last"),
    }
    Ok(c)
}

/// Saves changes the netdevs made (MAC set by hand, ...) every two seconds.
fn spawn_persister(shared: Arc<Shared>) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(2));
            if shared.dp.died() {
                return; // what it would read now is no longer the truth
            }
            let mut saved = shared.saved.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = shared.persist(&mut saved) {
                tracing::warn!(error = %format!("{e:#}"), "cannot save configuration");
            }
        }
    });
}

/// Ends the daemon (exit code 70) if the forwarding thread dies: a supervisor restarts
/// it, and the configuration saved last brings everything back.
fn spawn_watchdog(shared: Arc<Shared>, socket: std::path::PathBuf) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if shared.dp.died() {
                tracing::error!("the forwarding thread died; the daemon stops (exit code 70)");
                shared.shutdown(&socket);
            }
        }
    });
}

impl Shared {
    /// Final save, then every bridge is closed (ports detached and restored; host
    /// interfaces stay for the next start).
    /// The lock on the saved configuration is held until the process exits, so no
    /// request or periodic save can record the closed (empty) engine.
    /// Exits with 0, or with 70 when the forwarding thread had died (then nothing is
    /// saved: the last saved configuration is the truth).
    pub(crate) fn shutdown(&self, socket: &std::path::Path) -> ! {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        let died = self.dp.died();
        if let Some(c) = &self.cluster {
            c.leave();
        }
        if !died {
            if let Err(e) = self.persist(&mut saved) {
                tracing::error!(error = %format!("{e:#}"), "cannot save configuration at shutdown");
            }
            let _ = self.dp.close_all();
        }
        let _ = std::fs::remove_file(socket);
        // Let the log thread write what is queued.
        std::thread::sleep(Duration::from_millis(50));
        std::process::exit(if died { 70 } else { 0 })
    }
}

/// The IPv4 subnets on `bridge`'s host interface.
fn bridge_subnets(bridge: &str) -> Vec<(std::net::Ipv4Addr, u8)> {
    vbridge_host::Netlink::new()
        .and_then(|mut nl| nl.addresses(bridge))
        .map(|v| {
            v.into_iter()
                .filter_map(|(a, len)| match a {
                    std::net::IpAddr::V4(a) => Some((a, len)),
                    std::net::IpAddr::V6(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}
