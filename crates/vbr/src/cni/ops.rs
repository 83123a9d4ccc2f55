//! What `vbr-cni` does for each CNI command, through the daemon's API. An attachment
//! (container, interface) is a topology of its own, `cni:NETWORK:CONTAINER:IFNAME`, that
//! connects the container's namespace to the bridge with the IPAM plugin's addresses and
//! publishes its port mappings; the bridge, its gateway addresses and NAT belong to the
//! network's topology, `cni-net:NETWORK`, brought up (idempotently) by every ADD and
//! never taken down by DEL, as the reference plugin leaves its bridge. The daemon's
//! ledger records what each made, so DEL is `vbr down` of the attachment (nothing left:
//! success), a failed ADD is undone, and a daemon restart keeps every network.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use rscni_plugin::error::Error;
use rscni_plugin::types::Args;
use rscni_plugin::types::{CNIResult, Dns, Interface, IpConfig, Route};
use serde_json::Value;
use vbridge_host::{Netlink, netns};

use super::conf::Conf;
use super::ipam::{self, Lease};
use crate::api::{ErrorKind, Request};
use crate::topology::{BridgePlan, NsPlan, Plan};

/// The topology of a network's bridge.
pub(crate) fn network_topology(conf: &Conf) -> String {
    format!("cni-net:{}", conf.network)
}

/// The topology of one attachment.
pub(crate) fn attachment(conf: &Conf, container: &str, ifname: &str) -> String {
    format!("cni:{}:{container}:{ifname}", conf.network)
}

fn io(what: &str) -> impl Fn(vbridge_host::HostError) -> Error + '_ {
    move |e| Error::IOFailure(format!("{what}: {e}"))
}

/// The daemon's answer to `req` on `api`: its result, or its refusal.
fn ask(api: &mut Api, req: &Request) -> Result<Result<Value, crate::api::ApiError>, Error> {
    let r = api.session.call(req).map_err(|e| {
        Error::TryAgainLater(format!("the vbridge daemon on {}: {e:#}", api.socket))
    })?;
    if r.ok {
        return Ok(Ok(r.result.unwrap_or(Value::Null)));
    }
    Ok(Err(r.error.unwrap_or_else(|| {
        crate::api::ApiError::new(ErrorKind::Unavailable, "refused")
    })))
}

/// Sends `req` to the daemon; its result, or its refusal as a CNI error.
fn call(api: &mut Api, req: &Request) -> Result<Value, Error> {
    ask(api, req)?.map_err(refusal)
}

/// A refusal of the daemon as a CNI error.
fn refusal(e: crate::api::ApiError) -> Error {
    let m = format!("vbridge: {}", e.message);
    match e.kind {
        ErrorKind::InvalidArgument | ErrorKind::NotFound => Error::InvalidNetworkConfig(m),
        ErrorKind::Busy | ErrorKind::Unavailable => Error::TryAgainLater(m),
        ErrorKind::Conflict | ErrorKind::AlreadyExists => {
            Error::Custom(101, "conflict on the host".into(), m)
        }
        _ => Error::IOFailure(m),
    }
}

/// One connection to the daemon, for all of a command's requests.
pub(crate) struct Api {
    session: crate::client::Session,
    socket: String,
}

/// Connects to the daemon, starting it first (from the `vbr` beside this program, or the
/// configured one) when none answers.
pub(crate) fn start(conf: &Conf) -> Result<Api, Error> {
    if let Ok(session) = crate::client::Session::connect(&conf.socket) {
        return Ok(Api {
            session,
            socket: conf.socket.display().to_string(),
        });
    }
    let vbr = match &conf.vbr {
        Some(v) => v.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.canonicalize().ok())
            .and_then(|p| p.parent().map(|d| d.join("vbr")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("vbr")),
    };
    crate::client::ensure_daemon_with(&conf.socket, &vbr)
        .map_err(|e| Error::PluginNotAvailable(format!("{e:#}")))?;
    let session = crate::client::Session::connect(&conf.socket)
        .map_err(|e| Error::PluginNotAvailable(format!("{e:#}")))?;
    Ok(Api {
        session,
        socket: conf.socket.display().to_string(),
    })
}

fn topologies(api: &mut Api) -> Result<Vec<String>, Error> {
    serde_json::from_value(call(api, &Request::Topologies)?)
        .map_err(|e| Error::FailedToDecode(format!("the daemon's list of topologies: {e}")))
}

/// `vbr down` of topology `name`; one that is not there is fine.
fn down(api: &mut Api, name: &str) -> Result<(), Error> {
    let req = Request::Down {
        name: name.to_owned(),
    };
    match ask(api, &req)? {
        Ok(_) => Ok(()),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(refusal(e)),
    }
}

/// The container ID, namespace path and interface name of ADD, DEL and CHECK.
fn ids(args: &Args) -> Result<(String, String, String), Error> {
    let missing = |v: &str| Error::InvalidEnvValue(format!("{v} is missing"));
    let id = args
        .container_id()
        .ok_or_else(|| missing("CNI_CONTAINERID"))?;
    let ifname = args.ifname().ok_or_else(|| missing("CNI_IFNAME"))?;
    let netns = args
        .netns()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    Ok((id.to_string(), netns, ifname.to_string()))
}

/// The address `gw` (or the first host of `addr`'s network) with `addr`'s prefix: the
/// bridge's address on that network when it is the gateway.
fn gateway_net(addr: &IpNet, gw: Option<IpAddr>) -> IpNet {
    let gw = gw.unwrap_or_else(|| match addr.network() {
        IpAddr::V4(n) => IpAddr::V4((u32::from(n) + 1).into()),
        IpAddr::V6(n) => IpAddr::V6((u128::from(n) + 1).into()),
    });
    IpNet::new(gw, addr.prefix_len()).unwrap_or(*addr)
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// The bridge of the network with the gateway addresses.
fn bridge_plan(conf: &Conf, lease: &Lease, nat: bool) -> BridgePlan {
    let mut b = BridgePlan::named(&conf.bridge);
    if conf.is_gateway {
        b.addresses = lease.ips.iter().map(|(a, g)| gateway_net(a, *g)).collect();
    }
    b.nat = nat && conf.ip_masq;
    b
}

/// The connection of the container's namespace.
fn ns_plan(conf: &Conf, netns: &str, ifname: &str, lease: &Lease) -> Result<NsPlan, Error> {
    let gw_of = |dst: IpAddr| {
        lease.ips.iter().find_map(|(a, g)| {
            let g = if conf.is_gateway {
                Some(gateway_net(a, *g).addr())
            } else {
                *g
            };
            g.filter(|g| same_family(*g, dst))
        })
    };
    let mut gateway = None;
    if conf.is_default_gateway {
        gateway = lease
            .ips
            .iter()
            .find(|(a, _)| a.addr().is_ipv4())
            .and_then(|(a, _)| gw_of(a.addr()));
    }
    let mut routes = Vec::new();
    for (dst, via) in &lease.routes {
        let Some(via) = via.or_else(|| gw_of(dst.addr())) else {
            continue;
        };
        if dst.prefix_len() == 0 && dst.addr().is_ipv4() {
            gateway.get_or_insert(via);
        } else {
            routes.push((*dst, via));
        }
    }
    let v4 = lease.ips.iter().find_map(|(a, _)| match a {
        IpNet::V4(n) => Some(n.addr()),
        IpNet::V6(_) => None,
    });
    let mut publish = Vec::new();
    for m in &conf.mappings {
        let to = v4.ok_or_else(|| {
            Error::InvalidNetworkConfig("portMappings need an IPv4 address from ipam".into())
        })?;
        publish.push(vbridge_host::nat::Publish {
            host_ip: m.host_ip,
            host_port: m.host_port,
            proto: m.proto,
            to,
            port: m.container_port,
        });
    }
    Ok(NsPlan {
        name: netns.to_owned(),
        bridge: conf.bridge.clone(),
        ifname: ifname.to_owned(),
        addresses: lease.ips.iter().map(|(a, _)| *a).collect(),
        gateway,
        routes,
        mac: conf.mac,
        tap: false,
        access: conf.vlan,
        dhcp: false,
        publish,
        macvlan: None,
        mtu: conf.mtu,
    })
}

/// ADD: the addresses from IPAM, the network's bridge, the connection; on failure what
/// was made goes again and the addresses are given back.
pub(crate) fn add(args: &Args) -> Result<CNIResult, Error> {
    let mut conf = Conf::of(args.config(), args.args())?;
    let (id, netns, ifname) = ids(args)?;
    let ns = netns::open(&netns).map_err(|e| Error::InvalidNetNS(format!("{netns}: {e}")))?;
    let name = attachment(&conf, &id, &ifname);
    let mut api = start(&conf)?;
    let taken = Netlink::new_in(&ns)
        .and_then(|mut nl| nl.link_exists(&ifname))
        .map_err(io("the container's namespace"))?;
    // An ADD again of an attachment vbridge made is answered again; any other device of
    // that name is someone else's.
    let again = taken && topologies(&mut api)?.contains(&name);
    if taken && !again {
        return Err(Error::Custom(
            102,
            "interface name taken".into(),
            format!("{ifname} exists in {netns} already"),
        ));
    }
    if !again && conf.mac.is_none() {
        // Chosen here, as the kernel would, so the result needs no question to the
        // kernel after the port is made (see `result`).
        conf.mac = Some(crate::mac::random());
    }
    let raw =
        serde_json::to_vec(args.config()).map_err(|e| Error::FailedToDecode(e.to_string()))?;
    let lease = match &conf.ipam {
        Some(kind) => match ipam::exec(kind, "ADD", &raw, args.path())? {
            Some(v) => ipam::lease(&v)?,
            None => Lease::default(),
        },
        None => Lease::default(),
    };
    let made = bring_up(&mut api, &conf, &name, &netns, &ifname, &lease).and_then(|()| {
        result(
            &mut api,
            &conf,
            again.then_some(&ns),
            &netns,
            &ifname,
            &lease,
        )
    });
    if made.is_err() && !again {
        let _ = down(&mut api, &name);
        if let Some(kind) = &conf.ipam {
            let _ = ipam::exec(kind, "DEL", &raw, args.path());
        }
    }
    made
}

fn bring_up(
    api: &mut Api,
    conf: &Conf,
    name: &str,
    netns: &str,
    ifname: &str,
    lease: &Lease,
) -> Result<(), Error> {
    let network = Plan {
        bridges: vec![bridge_plan(conf, lease, true)],
        ..Plan::default()
    };
    call(
        api,
        &Request::Up {
            name: network_topology(conf),
            plan: network,
        },
    )?;
    let container = Plan {
        // The bridge exists: named again for the subnets published ports hairpin in.
        bridges: vec![bridge_plan(conf, lease, false)],
        namespaces: vec![ns_plan(conf, netns, ifname, lease)?],
        patches: Vec::new(),
    };
    call(
        api,
        &Request::Up {
            name: name.to_owned(),
            plan: container,
        },
    )?;
    let port = vbridge_datapath::port_name(netns, ifname);
    if conf.hairpin {
        call(
            api,
            &Request::Hairpin {
                bridge: conf.bridge.clone(),
                port: port.clone(),
                on: true,
            },
        )?;
    }
    Ok(())
}

/// The ADD result: the host end and the container's interface, the addresses on the
/// latter, the routes and DNS from IPAM. The host end is as the daemon saw it when it
/// made the port, and the container's interface has the MAC the plugin chose: a new
/// port's fast-path link holds the kernel's rtnetlink lock for an RCU grace period just
/// after the daemon answers, and a netlink question now would wait that out. An ADD
/// again of an existing attachment (`again`: the container's namespace) asks the kernel.
fn result(
    api: &mut Api,
    conf: &Conf,
    again: Option<&std::os::fd::OwnedFd>,
    netns: &str,
    ifname: &str,
    lease: &Lease,
) -> Result<CNIResult, Error> {
    let port = vbridge_datapath::port_name(netns, ifname);
    let host = port_view(api, &conf.bridge, &port)?;
    let (inner_mac, inner_mtu) = match again {
        Some(ns) => {
            let l = Netlink::new_in(ns)
                .and_then(|mut nl| nl.link(ifname))
                .map_err(io("the container's interface"))?
                .ok_or_else(|| Error::IOFailure(format!("{ifname} is not in {netns}")))?;
            (l.mac.map(|m| m.to_string()), l.mtu)
        }
        // A veth pair is made with one MTU, and `mtu` sets both ends.
        None => (conf.mac.map(|m| m.to_string()), host.mtu),
    };
    let interfaces = vec![
        Interface {
            name: port,
            mac: host.mac.unwrap_or_default(),
            mtu: conf.mtu.or(host.mtu),
            sandbox: None,
            socket_path: None,
            pci_id: None,
        },
        Interface {
            name: ifname.to_owned(),
            mac: inner_mac.unwrap_or_default(),
            mtu: conf.mtu.or(inner_mtu),
            sandbox: Some(netns.to_owned()),
            socket_path: None,
            pci_id: None,
        },
    ];
    let ips = lease
        .ips
        .iter()
        .map(|(a, g)| IpConfig {
            interface: Some(1),
            address: *a,
            gateway: if conf.is_gateway {
                Some(gateway_net(a, *g).addr())
            } else {
                *g
            },
        })
        .collect();
    let routes = lease
        .routes
        .iter()
        .map(|(dst, gw)| Route {
            dst: *dst,
            gw: *gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        })
        .collect();
    let dns: Option<Dns> = lease
        .dns
        .as_ref()
        .and_then(|d| serde_json::from_value(d.clone()).ok());
    Ok(CNIResult {
        interfaces,
        ips,
        routes,
        dns,
    })
}

/// Port `port` of `bridge` as the daemon shows it.
fn port_view(api: &mut Api, bridge: &str, port: &str) -> Result<vbridge_datapath::PortView, Error> {
    let shown = call(
        api,
        &Request::Show {
            bridge: Some(bridge.to_owned()),
        },
    )?;
    let bridges: Vec<vbridge_datapath::BridgeView> = serde_json::from_value(shown)
        .map_err(|e| Error::FailedToDecode(format!("the daemon's view of {bridge}: {e}")))?;
    bridges
        .into_iter()
        .flat_map(|b| b.ports)
        .find(|p| p.name == port)
        .ok_or_else(|| Error::IOFailure(format!("port {port} is not on bridge {bridge}")))
}

/// DEL: the addresses given back to IPAM while the attachment's topology goes down (the
/// two are independent); what is gone already is fine.
pub(crate) fn del(args: &Args) -> Result<(), Error> {
    let conf = Conf::of(args.config(), args.args())?;
    let (id, _, ifname) = ids(args)?;
    let raw =
        serde_json::to_vec(args.config()).map_err(|e| Error::FailedToDecode(e.to_string()))?;
    std::thread::scope(|s| {
        let released = conf
            .ipam
            .as_ref()
            .map(|kind| s.spawn(|| ipam::exec(kind, "DEL", &raw, args.path())));
        let gone =
            start(&conf).and_then(|mut api| down(&mut api, &attachment(&conf, &id, &ifname)));
        if let Some(r) = released {
            r.join()
                .unwrap_or_else(|_| Err(Error::IOFailure("the IPAM call panicked".into())))?;
        }
        gone
    })
}

/// CHECK: the attachment is up in the daemon, its port on the bridge and the container's
/// interface there with the addresses of `prevResult`; then IPAM's own check.
pub(crate) fn check(args: &Args) -> Result<(), Error> {
    let conf = Conf::of(args.config(), args.args())?;
    let (id, netns, ifname) = ids(args)?;
    let prev = args.config().prev_result.as_ref().ok_or_else(|| {
        Error::InvalidNetworkConfig("CHECK needs prevResult (the result of ADD)".into())
    })?;
    let broken = |m: String| Error::Custom(103, "attachment broken".into(), m);
    let mut api = start(&conf)?;
    let name = attachment(&conf, &id, &ifname);
    if !topologies(&mut api)?.contains(&name) {
        return Err(broken(format!("vbridge has no attachment {name}")));
    }
    let port = vbridge_datapath::port_name(&netns, &ifname);
    let shown = call(
        &mut api,
        &Request::Show {
            bridge: Some(conf.bridge.clone()),
        },
    )?;
    let on_bridge = shown[0]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["name"] == port.as_str() && p["state"] != "gone");
    if !on_bridge {
        return Err(broken(format!(
            "port {port} is not on bridge {}",
            conf.bridge
        )));
    }
    let ns = netns::open(&netns).map_err(|e| Error::InvalidNetNS(format!("{netns}: {e}")))?;
    let mut nl = Netlink::new_in(&ns).map_err(io("the container's namespace"))?;
    if !nl
        .link_exists(&ifname)
        .map_err(io("the container's namespace"))?
    {
        return Err(broken(format!("{ifname} is not in {netns}")));
    }
    let have = nl
        .addresses(&ifname)
        .map_err(io("the container's addresses"))?;
    for ip in &prev.ips {
        if !have.contains(&(ip.address.addr(), ip.address.prefix_len())) {
            return Err(broken(format!("{ifname} in {netns} lacks {}", ip.address)));
        }
    }
    if let Some(kind) = &conf.ipam {
        let raw =
            serde_json::to_vec(args.config()).map_err(|e| Error::FailedToDecode(e.to_string()))?;
        ipam::exec(kind, "CHECK", &raw, args.path())?;
    }
    Ok(())
}

/// GC: the attachments of this network that are not among `cni.dev/valid-attachments`
/// go, their addresses given back to IPAM (a DEL for each: IPAM plugins older than 1.1
/// have no GC); then IPAM's own GC when it speaks 1.1.
pub(crate) fn gc(args: &Args) -> Result<(), Error> {
    let conf = Conf::of(args.config(), args.args())?;
    let valid: Vec<String> = args
        .config()
        .valid_attachments
        .iter()
        .flatten()
        .map(|a| attachment(&conf, &a.container_id, &a.ifname))
        .collect();
    let mut api = start(&conf)?;
    let raw =
        serde_json::to_vec(args.config()).map_err(|e| Error::FailedToDecode(e.to_string()))?;
    // GC is 1.1's; the DELs go in the newest version the IPAM plugin speaks.
    let spoken = conf
        .ipam
        .as_ref()
        .map(|k| ipam::versions(k, args.path()))
        .unwrap_or_default();
    let mut older = args.config().clone();
    older.valid_attachments = None;
    if let Some(v) = spoken.last() {
        older.cni_version.clone_from(v);
    }
    let raw_del = serde_json::to_vec(&older).map_err(|e| Error::FailedToDecode(e.to_string()))?;
    let prefix = format!("cni:{}:", conf.network);
    for t in topologies(&mut api)? {
        let Some(rest) = t.strip_prefix(&prefix) else {
            continue;
        };
        if valid.contains(&t) {
            continue;
        }
        if let (Some(kind), Some((id, ifname))) = (&conf.ipam, rest.rsplit_once(':')) {
            let env = [
                ("CNI_CONTAINERID", id),
                ("CNI_IFNAME", ifname),
                ("CNI_NETNS", ""),
            ];
            ipam::exec_with(kind, "DEL", &raw_del, args.path(), &env)?;
        }
        down(&mut api, &t)?;
    }
    if let Some(kind) = &conf.ipam {
        if spoken.iter().any(|v| v == "1.1.0") {
            ipam::exec(kind, "GC", &raw, args.path())?;
        }
    }
    Ok(())
}

/// STATUS: ready when the daemon answers (started if need be).
pub(crate) fn status(args: &Args) -> Result<(), Error> {
    let conf = Conf::of(args.config(), args.args())?;
    let mut api = start(&conf)?;
    call(&mut api, &Request::Ping).map(drop)
}
