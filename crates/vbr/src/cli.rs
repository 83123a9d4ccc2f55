//! The command line: brctl's verbs with brctl's arguments, plus `fdb`, `link`, `stats`,
//! `tap` and `daemon`; each becomes one API request.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use std::net::IpAddr;

use ipnet::IpNet;
use vbridge_core::{MacAddr, Vid, VidSet};
use vbridge_datapath::{PortFlag, StpMode, VlanCfg};

use crate::api::Request;

/// Default API socket.
pub(crate) const DEFAULT_SOCKET: &str = "/run/vbridge/vbr.sock";
/// Default state directory.
pub(crate) const DEFAULT_STATE: &str = "/var/lib/vbridge";

/// vbridge: a userspace 802.1Q virtual switch. Verbs match brctl.
///
/// Exit codes: 0 success; 1 the daemon refused the request (the message says why);
/// 2 bad command line; 3 the daemon cannot be reached.
#[derive(Debug, Parser)]
#[command(name = "vbr", version)]
pub(crate) struct Cli {
    /// The daemon's API socket.
    #[arg(long, global = true, env = "VBR_SOCKET", default_value = DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// Print the daemon's answer as JSON.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Run the daemon in the foreground (logs to stderr).
    Daemon {
        /// Where the configuration is kept.
        #[arg(long, env = "VBR_STATE_DIR", default_value = DEFAULT_STATE)]
        state_dir: PathBuf,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9417) at /metrics.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics: Option<std::net::SocketAddr>,
        /// Cluster mode: the etcd cluster's client URLs (http://HOST:2379, comma-separated).
        #[arg(long, value_name = "URL,...", value_delimiter = ',', requires_all = ["node", "underlay"])]
        cluster: Vec<String>,
        /// This node's name in the cluster.
        #[arg(long, requires = "cluster")]
        node: Option<String>,
        /// This node's address on the underlay: its VXLAN tunnels send from it.
        #[arg(long, requires = "cluster")]
        underlay: Option<std::net::Ipv4Addr>,
        /// Seconds the cluster keeps listing this node after its daemon stops.
        #[arg(long, default_value_t = 10)]
        lease_ttl: u64,
    },
    /// Create a bridge (and its host interface of the same name).
    Addbr { bridge: String },
    /// Delete a bridge.
    Delbr { bridge: String },
    /// Attach an existing interface (veth end, NIC, tap) to a bridge.
    Addif {
        bridge: String,
        port: String,
        /// Attach it even if the host's default route goes out through it.
        #[arg(long)]
        force: bool,
    },
    /// Detach an interface from a bridge.
    Delif { bridge: String, port: String },
    /// List bridges and their interfaces (brctl's table), or draw them.
    Show {
        bridge: Option<String>,
        /// Draw the topology as text boxes: bridges, ports, the namespaces behind them.
        #[arg(long, conflicts_with = "format")]
        diagram: bool,
        /// `dot`: the topology as Graphviz (render with `dot -Tsvg`).
        #[arg(long, value_enum)]
        format: Option<ShowFormat>,
    },
    /// List a bridge's forwarding database.
    Showmacs { bridge: String },
    /// Show spanning-tree information.
    Showstp { bridge: String },
    /// Turn spanning tree on, off, or to RSTP.
    Stp { bridge: String, state: String },
    /// Set the FDB ageing time (seconds; 0 = never learn).
    Setageing { bridge: String, secs: f64 },
    /// Set the bridge priority.
    Setbridgeprio { bridge: String, prio: u16 },
    /// Set the forward delay (seconds).
    Setfd { bridge: String, secs: f64 },
    /// Set the hello time (seconds).
    Sethello { bridge: String, secs: f64 },
    /// Set the max message age (seconds).
    Setmaxage { bridge: String, secs: f64 },
    /// Set a port's path cost (1..=200000000, or `auto` for one from the link speed).
    Setpathcost {
        bridge: String,
        port: String,
        cost: String,
    },
    /// Set a port's priority.
    Setportprio {
        bridge: String,
        port: String,
        prio: u8,
    },
    /// Turn hairpin mode on or off on a port.
    Hairpin {
        bridge: String,
        port: String,
        state: String,
    },
    /// Static FDB entries: add, del, show, flush.
    #[command(subcommand)]
    Fdb(FdbCmd),
    /// Port settings: flags and VLANs.
    #[command(subcommand)]
    Link(LinkCmd),
    /// Per-port counters and drops by reason.
    Stats { bridge: Option<String> },
    /// TAP ports held by vbridge.
    #[command(subcommand)]
    Tap(TapCmd),
    /// VM ports: QEMU's stream and dgram socket netdevs (prints the QEMU arguments).
    #[command(subcommand)]
    Port(PortCmd),
    /// VXLAN tunnels to other hosts.
    #[command(subcommand)]
    Vxlan(VxlanCmd),
    /// The cluster (a daemon started with --cluster): networks on every node.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The bridges' DHCP servers.
    #[command(subcommand)]
    Dhcp(DhcpCmd),
    /// Named network namespaces (the same /run/netns names as `ip netns`).
    #[command(subcommand)]
    Netns(NetnsCmd),
    /// Put a namespace on a bridge: a veth pair (default; known flows take the kernel
    /// fast path) or a TAP held by vbridge, inside it, renamed, addressed, up, with a
    /// default route.
    Connect {
        /// A name under /run/netns, or a path like /proc/PID/ns/net.
        netns: String,
        /// The bridge (none with --macvlan).
        #[arg(required_unless_present = "macvlan")]
        bridge: Option<String>,
        /// The kernel's macvlan on this host interface instead of a bridge port (seed
        /// 002); `vbr disconnect NS --macvlan` removes it.
        #[arg(long, value_name = "PARENT", conflicts_with_all = ["bridge", "tap", "publish", "mac", "routes"])]
        macvlan: Option<String>,
        /// The macvlan's mode.
        #[arg(long, requires = "macvlan", value_parser = ["bridge", "vepa", "private", "passthru"], default_value = "bridge")]
        mode: String,
        /// Interface name inside the namespace.
        #[arg(long, default_value = "eth0")]
        ifname: String,
        /// An address with prefix length (repeatable).
        #[arg(long = "ip", value_parser = cidr_arg)]
        ips: Vec<IpNet>,
        #[arg(long)]
        gateway: Option<IpAddr>,
        /// One more route inside the namespace, as `DEST,GATEWAY` (repeatable), e.g.
        /// `--route 10.20.0.0/16,192.168.88.254`.
        #[arg(long = "route", value_parser = route_arg)]
        routes: Vec<(IpNet, IpAddr)>,
        #[arg(long)]
        mac: Option<MacAddr>,
        /// A TAP held by vbridge instead of a veth pair.
        #[arg(long, conflicts_with = "veth")]
        tap: bool,
        /// A veth pair (the default; kept for older scripts).
        #[arg(long, hide = true)]
        veth: bool,
        /// No addresses from vbridge: the namespace's own DHCP client asks the bridge's
        /// DHCP server.
        #[arg(long, conflicts_with_all = ["ips", "gateway"])]
        dhcp: bool,
        /// A host port forwarded to the namespace (repeatable), Docker's `-p` form:
        /// `8080:80/tcp` or `127.0.0.1:5353:53/udp`.
        #[arg(long = "publish", short = 'p')]
        publish: Vec<String>,
        /// The MTU of both ends (default: the kernel's, or 50 below the underlay's on a
        /// bridge with a VXLAN tunnel).
        #[arg(long, conflicts_with = "macvlan")]
        mtu: Option<u32>,
    },
    /// Undo `connect`.
    Disconnect {
        netns: String,
        #[arg(required_unless_present = "macvlan")]
        bridge: Option<String>,
        /// Remove the macvlan vbridge put in the namespace (`connect --macvlan`).
        #[arg(long, conflicts_with = "bridge")]
        macvlan: bool,
        /// With --macvlan: its name inside the namespace.
        #[arg(long, default_value = "eth0", requires = "macvlan")]
        ifname: String,
    },
    /// Bring up a topology file (or the built-in default: seed 002's br0 with ns0, ns1),
    /// starting the daemon if none runs. Applying it again changes nothing.
    Up { file: Option<PathBuf> },
    /// Remove exactly what `up` of this file (or of the default) made.
    Down { file: Option<PathBuf> },
    /// Explain what a bridge does with a frame, step by step, changing nothing
    /// (`--in PORT --src MAC --dst MAC` or `--frame HEX`); or, with `--live`, the
    /// decisions of real frames as they pass.
    Trace {
        bridge: String,
        /// The port the frame enters by.
        #[arg(long = "in", value_name = "PORT", required_unless_present = "live")]
        in_port: Option<String>,
        #[arg(long, conflicts_with = "frame", required_unless_present_any = ["frame", "live"])]
        src: Option<MacAddr>,
        #[arg(long, conflicts_with = "frame", required_unless_present_any = ["frame", "live"])]
        dst: Option<MacAddr>,
        /// An 802.1Q tag with this VLAN id.
        #[arg(long, conflicts_with = "frame", value_parser = clap::value_parser!(u16).range(0..=4095))]
        vlan: Option<u16>,
        /// The EtherType in hex (default 0x0800, IPv4).
        #[arg(long, conflicts_with = "frame", value_parser = crate::watch::ethertype_arg)]
        ethertype: Option<u16>,
        /// The whole frame in hex, from the destination MAC on.
        #[arg(long)]
        frame: Option<String>,
        /// Decisions of real frames as they pass, one line each (at most 200 a second).
        #[arg(long, conflicts_with_all = ["in_port", "src", "dst", "frame"])]
        live: bool,
        /// With --live: only frames entering this port.
        #[arg(long, requires = "live")]
        port: Option<String>,
        /// With --live: stop after this many lines.
        #[arg(short = 'c', long = "count", requires = "live")]
        count: Option<u64>,
    },
    /// A live view of the switch: per port frames and bits a second in and out, state
    /// and fast path; per bridge FDB size, fast-path share and drops by reason. `q` quits.
    Top { bridge: Option<String> },
    /// Capture a port's frames (both directions by default): into a pcap file written by
    /// the daemon (`-w`), or as one line each. While a port is captured its flows stay
    /// out of the kernel fast path, so nothing is missed. Ctrl-C stops.
    Capture {
        port: String,
        /// The pcap file to write (readable by tcpdump -r and tshark).
        #[arg(short = 'w', long = "write", value_name = "FILE")]
        file: Option<PathBuf>,
        /// Stop after this many frames.
        #[arg(short = 'c', long = "count")]
        count: Option<u64>,
        #[arg(long, value_enum, default_value = "both")]
        direction: DirectionArg,
    },
}

/// `vbr show --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ShowFormat {
    /// brctl's table.
    Table,
    /// Text boxes (as `--diagram`).
    Diagram,
    /// Graphviz.
    Dot,
}

/// `vbr capture --direction`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum DirectionArg {
    In,
    Out,
    Both,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NetnsCmd {
    /// Create a named namespace.
    Add { name: String },
    /// Delete a named namespace (ports connecting it go first).
    Del { name: String },
    /// List named namespaces.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum FdbCmd {
    /// `fdb add BRIDGE MAC PORT [vlan VID]`
    Add {
        bridge: String,
        mac: String,
        port: String,
        rest: Vec<String>,
    },
    /// `fdb del BRIDGE MAC [PORT] [vlan VID]`
    Del {
        bridge: String,
        mac: String,
        rest: Vec<String>,
    },
    /// `fdb show BRIDGE`
    Show { bridge: String },
    /// `fdb flush BRIDGE`: forget learned entries.
    Flush { bridge: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LinkCmd {
    /// `link set PORT [learning|flood|mcast_flood|bcast_flood|hairpin|isolated|locked on|off]...
    /// [access VID | trunk VIDS [native VID]]`
    Set {
        port: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DhcpCmd {
    /// The leases of a bridge's DHCP server.
    Leases { bridge: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCmd {
    /// Write the networks of a TOML file (`[[network]]` with name, vni, subnet, and
    /// optionally gateway and dhcp = { start, end }) to etcd; every node follows.
    Apply { file: PathBuf },
    /// Remove a network from the cluster (every node removes its bridge).
    Del { network: String },
    /// The nodes, the networks and how they stand on this node; etcd's health.
    Status,
    /// Size etcd for cluster mode: simulated nodes (a lease, a key, one MAC per network
    /// each, and a watch) drive the etcd at --etcd; measures how fast a node joining and
    /// leaving reaches every node, and etcd's load. Runs here, no daemon; writes only
    /// under a prefix of its own, removed at the end.
    Simulate {
        /// etcd client URLs (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        etcd: Vec<String>,
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = 10)]
        networks: usize,
        /// Joins and leaves measured.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum VxlanCmd {
    /// Add a VXLAN port to BRIDGE: a kernel vxlan netdev NAME for VNI, sending from LOCAL
    /// to every REMOTE (head-end replication), learning remote MACs from what it receives.
    Add {
        name: String,
        #[arg(long)]
        bridge: String,
        #[arg(long)]
        vni: u32,
        #[arg(long)]
        local: std::net::Ipv4Addr,
        #[arg(long = "remote")]
        remotes: Vec<std::net::Ipv4Addr>,
        #[arg(long, default_value_t = 4789)]
        dstport: u16,
    },
    /// Remove a VXLAN port and its netdev.
    Del { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PortCmd {
    /// Add a VM port to BRIDGE; prints the QEMU arguments that reach it.
    Add {
        bridge: String,
        name: String,
        #[arg(long = "type", value_enum)]
        kind: crate::api::VmPortKind,
        /// The guest NIC's MAC (default: a random locally administered one).
        #[arg(long)]
        mac: Option<String>,
        /// vhost-user only: QEMU listens on the socket (`server=on`) and vbridge
        /// connects, again after a restart, so guests keep running (OVS's
        /// `dpdkvhostuserclient`).
        #[arg(long)]
        client: bool,
    },
    /// Remove a VM port.
    Del { bridge: String, name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TapCmd {
    /// Create a TAP held by vbridge and attach it.
    Add {
        name: String,
        #[arg(long)]
        bridge: String,
    },
    /// Remove a TAP port.
    Del { name: String },
}

fn on_off(s: &str) -> Result<bool> {
    match s {
        "on" | "yes" | "1" => Ok(true),
        "off" | "no" | "0" => Ok(false),
        other => bail!("expected on or off, got {other:?}"),
    }
}

/// A VLAN id from the command line, 1..=4094.
fn vid_arg(v: &str) -> Result<Vid> {
    let n: u16 = v
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid VLAN id {v:?}: use 1..=4094"))?;
    Vid::new(n).map_err(|_| anyhow::anyhow!("VLAN id {n} is invalid: use 1..=4094"))
}

fn vlan_opt(rest: &[String]) -> Result<Option<u16>> {
    match rest {
        [] => Ok(None),
        [kw, v] if kw == "vlan" => Ok(Some(
            v.parse()
                .map_err(|_| anyhow::anyhow!("invalid VLAN id {v:?}"))?,
        )),
        _ => bail!("expected `vlan VID`, got {:?}", rest.join(" ")),
    }
}

fn link_args(args: &[String]) -> Result<(BTreeMap<PortFlag, bool>, Option<VlanCfg>)> {
    let mut flags = BTreeMap::new();
    let mut vlan = None;
    let mut it = args.iter();
    while let Some(word) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{word} needs a value"))
        };
        match word.as_str() {
            "access" => {
                let vid = vid_arg(value()?)?;
                vlan = Some(VlanCfg::Access { vid });
            }
            "trunk" => {
                let allowed = value()?.clone();
                VidSet::parse_list(&allowed)
                    .map_err(|e| anyhow::anyhow!("trunk {allowed}: {e}"))?;
                vlan = Some(VlanCfg::Trunk {
                    allowed,
                    native: None,
                });
            }
            "native" => {
                let n = vid_arg(value()?)?;
                match &mut vlan {
                    Some(VlanCfg::Trunk { native, .. }) => *native = Some(n),
                    _ => bail!("`native VID` goes after `trunk VIDS`"),
                }
            }
            flag => {
                let on = on_off(value()?)?;
                let f: PortFlag = flag.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                flags.insert(f, on);
            }
        }
    }
    if flags.is_empty() && vlan.is_none() {
        bail!("nothing to set: give flags (e.g. `hairpin on`) or `access VID` / `trunk VIDS`");
    }
    Ok((flags, vlan))
}

/// The key under which a topology's objects are recorded: its canonical path, or
/// "default".
fn topology_name(file: Option<&std::path::Path>) -> Result<String> {
    match file {
        None => Ok("default".into()),
        Some(f) => Ok(std::fs::canonicalize(f)
            .unwrap_or_else(|_| f.to_owned())
            .display()
            .to_string()),
    }
}

fn topology_source(file: Option<&std::path::Path>) -> Result<(String, String)> {
    let name = topology_name(file)?;
    let src = match file {
        None => crate::topology::DEFAULT_TOPOLOGY.to_owned(),
        Some(f) => read_topology(f)?,
    };
    Ok((name, src))
}

/// Largest topology file read (a file of 5,000 namespaces is about 1 MiB).
const MAX_TOPOLOGY: u64 = 8 << 20;

/// Reads a topology file: only a regular file of at most [`MAX_TOPOLOGY`] bytes (a FIFO,
/// a device such as /dev/zero or a huge file is refused at once, never read), opened
/// without blocking.
fn read_topology(f: &std::path::Path) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("cannot read topology file {}: {e}", f.display())
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nonblock())
        .open(f)
        .map_err(|e| cannot(&e))?;
    let meta = file.metadata().map_err(|e| cannot(&e))?;
    if !meta.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    if meta.len() > MAX_TOPOLOGY {
        return Err(cannot(&format!(
            "{} bytes, more than the {MAX_TOPOLOGY} a topology file may have",
            meta.len()
        )));
    }
    let mut s = String::new();
    file.take(MAX_TOPOLOGY + 1)
        .read_to_string(&mut s)
        .map_err(|e| cannot(&e))?;
    if s.len() as u64 > MAX_TOPOLOGY {
        return Err(cannot(&"it grew past the size limit while being read"));
    }
    Ok(s)
}

/// `O_NONBLOCK`, so opening a FIFO never waits for a writer.
fn libc_o_nonblock() -> i32 {
    nix::fcntl::OFlag::O_NONBLOCK.bits()
}

impl Cmd {
    /// For `show --diagram` or `show --format diagram|dot`: the picture to draw.
    pub(crate) fn show_format(&self) -> Option<ShowFormat> {
        match self {
            Cmd::Show { diagram: true, .. } => Some(ShowFormat::Diagram),
            Cmd::Show {
                format: Some(f), ..
            } if *f != ShowFormat::Table => Some(*f),
            _ => None,
        }
    }

    /// The API request for a client command (`None` for `daemon`).
    pub(crate) fn request(&self) -> Result<Option<Request>> {
        let s = |x: &String| x.clone();
        Ok(Some(match self {
            Cmd::Daemon { .. } | Cmd::Top { .. } => return Ok(None),
            Cmd::Addbr { bridge } => Request::Addbr { bridge: s(bridge) },
            Cmd::Delbr { bridge } => Request::Delbr { bridge: s(bridge) },
            Cmd::Addif {
                bridge,
                port,
                force,
            } => Request::Addif {
                bridge: s(bridge),
                port: s(port),
                force: *force,
            },
            Cmd::Delif { bridge, port } => Request::Delif {
                bridge: s(bridge),
                port: s(port),
            },
            Cmd::Show { bridge, .. } => Request::Show {
                bridge: bridge.clone(),
            },
            Cmd::Showmacs { bridge } => Request::Showmacs { bridge: s(bridge) },
            Cmd::Showstp { bridge } => Request::Showstp { bridge: s(bridge) },
            Cmd::Stp { bridge, state } => Request::Stp {
                bridge: s(bridge),
                mode: match state.as_str() {
                    "rstp" => StpMode::Rstp,
                    other => {
                        if on_off(other)? {
                            StpMode::Stp
                        } else {
                            StpMode::Off
                        }
                    }
                },
            },
            Cmd::Setageing { bridge, secs } => Request::Setageing {
                bridge: s(bridge),
                secs: *secs,
            },
            Cmd::Setbridgeprio { bridge, prio } => Request::Setbridgeprio {
                bridge: s(bridge),
                prio: *prio,
            },
            Cmd::Setfd { bridge, secs } => Request::Setfd {
                bridge: s(bridge),
                secs: *secs,
            },
            Cmd::Sethello { bridge, secs } => Request::Sethello {
                bridge: s(bridge),
                secs: *secs,
            },
            Cmd::Setmaxage { bridge, secs } => Request::Setmaxage {
                bridge: s(bridge),
                secs: *secs,
            },
            Cmd::Setpathcost { bridge, port, cost } => Request::Setpathcost {
                bridge: s(bridge),
                port: s(port),
                cost: match cost.as_str() {
                    "auto" => None,
                    c => Some(c.parse().map_err(|_| {
                        anyhow::anyhow!("path cost {c:?}: use 1..=200000000 or auto")
                    })?),
                },
            },
            Cmd::Setportprio { bridge, port, prio } => Request::Setportprio {
                bridge: s(bridge),
                port: s(port),
                prio: *prio,
            },
            Cmd::Hairpin {
                bridge,
                port,
                state,
            } => Request::Hairpin {
                bridge: s(bridge),
                port: s(port),
                on: on_off(state)?,
            },
            Cmd::Fdb(FdbCmd::Add {
                bridge,
                mac,
                port,
                rest,
            }) => Request::FdbAdd {
                bridge: s(bridge),
                mac: s(mac),
                port: s(port),
                vlan: vlan_opt(rest)?,
            },
            Cmd::Fdb(FdbCmd::Del { bridge, mac, rest }) => {
                // An optional PORT before `vlan VID`, as in `fdb add`.
                let rest = match rest.first() {
                    Some(w) if w != "vlan" => &rest[1..],
                    _ => &rest[..],
                };
                Request::FdbDel {
                    bridge: s(bridge),
                    mac: s(mac),
                    vlan: vlan_opt(rest)?,
                }
            }
            Cmd::Fdb(FdbCmd::Show { bridge }) => Request::FdbShow { bridge: s(bridge) },
            Cmd::Fdb(FdbCmd::Flush { bridge }) => Request::FdbFlush { bridge: s(bridge) },
            Cmd::Link(LinkCmd::Set { port, args }) => {
                let (flags, vlan) = link_args(args)?;
                Request::LinkSet {
                    port: s(port),
                    flags,
                    vlan,
                }
            }
            Cmd::Stats { bridge } => Request::Stats {
                bridge: bridge.clone(),
            },
            Cmd::Tap(TapCmd::Add { name, bridge }) => Request::TapAdd {
                name: s(name),
                bridge: s(bridge),
            },
            Cmd::Tap(TapCmd::Del { name }) => Request::TapDel { name: s(name) },
            Cmd::Port(PortCmd::Add {
                bridge,
                name,
                kind,
                mac,
                client,
            }) => Request::PortAdd {
                bridge: s(bridge),
                name: s(name),
                kind: *kind,
                mac: mac.clone(),
                client: *client,
            },
            Cmd::Vxlan(VxlanCmd::Add {
                name,
                bridge,
                vni,
                local,
                remotes,
                dstport,
            }) => Request::VxlanAdd {
                name: s(name),
                bridge: s(bridge),
                vni: *vni,
                local: *local,
                remotes: remotes.clone(),
                dstport: *dstport,
                learning: true,
            },
            Cmd::Vxlan(VxlanCmd::Del { name }) => Request::VxlanDel { name: s(name) },
            Cmd::Cluster(ClusterCmd::Apply { file }) => {
                let text = read_topology(file)?;
                let parsed: crate::cluster::ApplyFile = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                let networks = parsed.networks();
                if networks.is_empty() {
                    anyhow::bail!("{}: no [[network]] in it", file.display());
                }
                Request::ClusterApply { networks }
            }
            Cmd::Cluster(ClusterCmd::Del { network }) => Request::ClusterDel { name: s(network) },
            Cmd::Cluster(ClusterCmd::Status) => Request::ClusterStatus,
            Cmd::Cluster(ClusterCmd::Simulate { .. }) => return Ok(None),
            Cmd::Port(PortCmd::Del { bridge, name }) => Request::PortDel {
                bridge: s(bridge),
                name: s(name),
            },
            Cmd::Dhcp(DhcpCmd::Leases { bridge }) => Request::DhcpLeases { bridge: s(bridge) },
            Cmd::Netns(NetnsCmd::Add { name }) => Request::NetnsAdd { name: s(name) },
            Cmd::Netns(NetnsCmd::Del { name }) => Request::NetnsDel { name: s(name) },
            Cmd::Netns(NetnsCmd::List) => Request::NetnsList,
            Cmd::Connect {
                netns,
                bridge: None,
                macvlan: Some(parent),
                mode,
                ifname,
                ips,
                gateway,
                dhcp,
                ..
            } => Request::MacvlanConnect(crate::daemon::MacvlanArgs {
                netns: s(netns),
                parent: s(parent),
                mode: s(mode),
                ifname: s(ifname),
                ips: ips.clone(),
                gateway: *gateway,
                dhcp: *dhcp,
            }),
            Cmd::Connect {
                netns,
                bridge,
                ifname,
                ips,
                gateway,
                routes,
                mac,
                tap,
                veth: _,
                dhcp,
                publish,
                mtu,
                ..
            } => Request::Connect(crate::daemon::ConnectArgs {
                netns: s(netns),
                bridge: bridge.clone().unwrap_or_default(),
                ifname: Some(s(ifname)),
                ips: ips.clone(),
                gateway: *gateway,
                mac: *mac,
                tap: *tap,
                routes: routes.clone(),
                dhcp: *dhcp,
                publish: publish.clone(),
                mtu: *mtu,
            }),
            Cmd::Disconnect {
                netns,
                macvlan: true,
                ifname,
                ..
            } => Request::MacvlanDisconnect {
                netns: s(netns),
                ifname: s(ifname),
            },
            Cmd::Disconnect { netns, bridge, .. } => Request::Disconnect {
                netns: s(netns),
                bridge: bridge.clone().unwrap_or_default(),
            },
            Cmd::Up { file } => {
                let (name, src) = topology_source(file.as_deref())?;
                let plan = crate::topology::parse(&name, &src)?;
                Request::Up { name, plan }
            }
            Cmd::Down { file } => Request::Down {
                name: topology_name(file.as_deref())?,
            },
            Cmd::Trace {
                bridge,
                in_port,
                src,
                dst,
                vlan,
                ethertype,
                frame,
                live,
                port,
                count,
            } => {
                if *live {
                    Request::TraceLive {
                        bridge: s(bridge),
                        port: port.clone(),
                        count: *count,
                    }
                } else {
                    let frame = match (frame, src, dst) {
                        (Some(f), _, _) => f.clone(),
                        (None, Some(src), Some(dst)) => crate::watch::hex(&crate::watch::frame(
                            *dst,
                            *src,
                            *vlan,
                            ethertype.unwrap_or(0x0800),
                        )),
                        _ => bail!("give --src and --dst, or --frame"),
                    };
                    Request::Trace {
                        bridge: s(bridge),
                        port: in_port.clone().unwrap_or_default(),
                        frame,
                    }
                }
            }
            Cmd::Capture {
                port,
                file,
                count,
                direction,
            } => Request::Capture {
                port: s(port),
                file: file
                    .as_deref()
                    .map(|f| {
                        std::path::absolute(f)
                            .map(|p| p.display().to_string())
                            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))
                    })
                    .transpose()?,
                count: *count,
                direction: match direction {
                    DirectionArg::In => vbridge_datapath::Direction::In,
                    DirectionArg::Out => vbridge_datapath::Direction::Out,
                    DirectionArg::Both => vbridge_datapath::Direction::Both,
                },
            },
        }))
    }
}

/// Parses `--route DEST,GATEWAY` (Podman's form).
fn route_arg(s: &str) -> Result<(IpNet, IpAddr), String> {
    let (to, via) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: use DEST,GATEWAY, e.g. 10.20.0.0/16,192.168.88.254"))?;
    crate::topology::check_route(to.trim(), via.trim())
}

/// Parses `--ip ADDRESS/PREFIX`.
fn cidr_arg(s: &str) -> Result<IpNet, String> {
    crate::topology::parse_cidr(s)
}
