//! The daemon's API, shared by the daemon and the `vbr` client: one JSON request per
//! line on a UNIX socket, one JSON response per line back. Requests are [`Request`]s
//! (`{"cmd":"addif","bridge":"br0","port":"veth10"}`, optionally with `"version":1`);
//! a response is a [`Response`]: `{"version":1,"ok":true,"result":...}` with the typed
//! result named at each request, or `{"version":1,"ok":false,"error":{"kind":...,
//! "message":...}}`. `docs/api.md` describes every shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vbridge_datapath::{Direction, PortFlag, StpMode, VlanCfg};

/// The API version this build speaks. A client refuses answers of another version, and
/// the daemon refuses requests that name another one.
pub(crate) const API_VERSION: u32 = 1;

/// Longest request line the daemon reads: enough for a topology of well over 5,000
/// namespaces. A longer line is refused with an error naming this limit.
pub(crate) const MAX_REQUEST: usize = 4 << 20;

/// A request. `cmd` names the verb; the brctl verbs keep brctl's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
    /// Answers [`Pong`].
    Ping,
    Addbr {
        bridge: String,
    },
    Delbr {
        bridge: String,
    },
    Addif {
        bridge: String,
        port: String,
        /// Attach even the interface of the host's default route.
        #[serde(default)]
        force: bool,
    },
    Delif {
        bridge: String,
        port: String,
    },
    /// Answers `[BridgeView]`.
    Show {
        bridge: Option<String>,
    },
    /// Answers `[FdbRow]`.
    Showmacs {
        bridge: String,
    },
    /// Answers `StpView`.
    Showstp {
        bridge: String,
    },
    Stp {
        bridge: String,
        mode: StpMode,
    },
    Setageing {
        bridge: String,
        secs: f64,
    },
    Setbridgeprio {
        bridge: String,
        prio: u16,
    },
    Setfd {
        bridge: String,
        secs: f64,
    },
    Sethello {
        bridge: String,
        secs: f64,
    },
    Setmaxage {
        bridge: String,
        secs: f64,
    },
    Setpathcost {
        bridge: String,
        port: String,
        /// 1..=200000000; `null`: from the link speed again (`vbr setpathcost BR PORT auto`).
        cost: Option<u32>,
    },
    Setportprio {
        bridge: String,
        port: String,
        prio: u8,
    },
    Hairpin {
        bridge: String,
        port: String,
        on: bool,
    },
    FdbAdd {
        bridge: String,
        mac: String,
        port: String,
        vlan: Option<u16>,
    },
    FdbDel {
        bridge: String,
        mac: String,
        vlan: Option<u16>,
    },
    /// Answers `[FdbRow]`.
    FdbShow {
        bridge: String,
    },
    /// Answers [`Flushed`].
    FdbFlush {
        bridge: String,
    },
    LinkSet {
        port: String,
        #[serde(default)]
        flags: BTreeMap<PortFlag, bool>,
        vlan: Option<VlanCfg>,
    },
    /// Answers `[BridgeView]`.
    Stats {
        bridge: Option<String>,
    },
    TapAdd {
        name: String,
        bridge: String,
    },
    /// A VM port (`vbr port add`); answers [`VmPort`].
    PortAdd {
        bridge: String,
        name: String,
        kind: VmPortKind,
        mac: Option<String>,
        /// vhost-user only: QEMU listens (`server=on`) and vbridge connects.
        #[serde(default)]
        client: bool,
    },
    /// Removes a VM port (`vbr port del`).
    PortDel {
        bridge: String,
        name: String,
    },
    /// A VXLAN port (`vbr vxlan add`): a kernel vxlan netdev vbridge makes.
    VxlanAdd {
        name: String,
        bridge: String,
        vni: u32,
        local: std::net::Ipv4Addr,
        #[serde(default)]
        remotes: Vec<std::net::Ipv4Addr>,
        #[serde(default = "default_vxlan_port")]
        dstport: u16,
        /// Learn remote MACs from decapsulated frames (cluster mode gives them instead).
        #[serde(default = "yes")]
        learning: bool,
    },
    /// Removes a VXLAN port and its netdev (`vbr vxlan del`).
    VxlanDel {
        name: String,
    },
    TapDel {
        name: String,
    },
    NetnsAdd {
        name: String,
    },
    NetnsDel {
        name: String,
    },
    /// Answers `[String]`.
    NetnsList,
    /// Answers [`Connected`].
    Connect(crate::daemon::ConnectArgs),
    Disconnect {
        netns: String,
        bridge: String,
    },
    /// Apply a checked topology; `name` keys what it made (a file path, or "default").
    /// Answers [`UpDone`].
    Up {
        name: String,
        plan: crate::topology::Plan,
    },
    /// Remove what `up` with this name made.
    Down {
        name: String,
    },
    /// The names of the topologies brought up (a list of strings).
    Topologies,
    /// What `bridge` would do with `frame` (hex) entering `port`, changing nothing.
    /// Answers `TraceView`.
    Trace {
        bridge: String,
        port: String,
        frame: String,
    },
    /// A stream (see [`StreamMsg`]): the decisions of `bridge`'s frames (those entering
    /// `port`, if given) as they pass, `count` of them or until the client closes.
    TraceLive {
        bridge: String,
        port: Option<String>,
        count: Option<u64>,
    },
    /// Writes network definitions to the cluster's etcd (`vbr cluster apply`); answers
    /// `ApplyDone`.
    ClusterApply {
        networks: Vec<crate::cluster::model::NetworkDef>,
    },
    /// Removes a network from the cluster (`vbr cluster del`).
    ClusterDel {
        name: String,
    },
    /// Answers `ClusterView`.
    ClusterStatus,
    /// A namespace on a macvlan of a host interface (no bridge).
    MacvlanConnect(crate::daemon::MacvlanArgs),
    /// Removes a macvlan `macvlan_connect` made.
    MacvlanDisconnect {
        netns: String,
        ifname: String,
    },
    /// Answers `[LeaseView]`: the leases of `bridge`'s DHCP server.
    DhcpLeases {
        bridge: String,
    },
    /// A stream (see [`StreamMsg`]): the frames of `port`, into the pcap file `file`
    /// (an absolute path, written by the daemon) or, without one, as events.
    Capture {
        port: String,
        file: Option<String>,
        count: Option<u64>,
        #[serde(default = "both")]
        direction: Direction,
    },
}

fn both() -> Direction {
    Direction::Both
}

impl Request {
    /// Whether the request changes configuration (and so is persisted after).
    pub(crate) fn mutates(&self) -> bool {
        !matches!(
            self,
            Request::Ping
                | Request::Show { .. }
                | Request::Showmacs { .. }
                | Request::Showstp { .. }
                | Request::FdbShow { .. }
                | Request::Stats { .. }
                | Request::NetnsList
                | Request::Trace { .. }
                | Request::TraceLive { .. }
                | Request::Capture { .. }
                | Request::DhcpLeases { .. }
                | Request::Topologies
                | Request::ClusterApply { .. }
                | Request::ClusterDel { .. }
                | Request::ClusterStatus
        )
    }

    /// The request's `cmd`, as metrics label it.
    pub(crate) fn cmd(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Addbr { .. } => "addbr",
            Request::Delbr { .. } => "delbr",
            Request::Addif { .. } => "addif",
            Request::Delif { .. } => "delif",
            Request::Show { .. } => "show",
            Request::Showmacs { .. } => "showmacs",
            Request::Showstp { .. } => "showstp",
            Request::Stp { .. } => "stp",
            Request::Setageing { .. } => "setageing",
            Request::Setbridgeprio { .. } => "setbridgeprio",
            Request::Setfd { .. } => "setfd",
            Request::Sethello { .. } => "sethello",
            Request::Setmaxage { .. } => "setmaxage",
            Request::Setpathcost { .. } => "setpathcost",
            Request::Setportprio { .. } => "setportprio",
            Request::Hairpin { .. } => "hairpin",
            Request::FdbAdd { .. } => "fdb_add",
            Request::FdbDel { .. } => "fdb_del",
            Request::FdbShow { .. } => "fdb_show",
            Request::FdbFlush { .. } => "fdb_flush",
            Request::LinkSet { .. } => "link_set",
            Request::Stats { .. } => "stats",
            Request::TapAdd { .. } => "tap_add",
            Request::PortAdd { .. } => "port_add",
            Request::PortDel { .. } => "port_del",
            Request::VxlanAdd { .. } => "vxlan_add",
            Request::VxlanDel { .. } => "vxlan_del",
            Request::TapDel { .. } => "tap_del",
            Request::NetnsAdd { .. } => "netns_add",
            Request::NetnsDel { .. } => "netns_del",
            Request::NetnsList => "netns_list",
            Request::Connect(_) => "connect",
            Request::Disconnect { .. } => "disconnect",
            Request::Up { .. } => "up",
            Request::Down { .. } => "down",
            Request::Topologies => "topologies",
            Request::Trace { .. } => "trace",
            Request::TraceLive { .. } => "trace_live",
            Request::Capture { .. } => "capture",
            Request::DhcpLeases { .. } => "dhcp_leases",
            Request::MacvlanConnect(_) => "macvlan_connect",
            Request::ClusterApply { .. } => "cluster_apply",
            Request::ClusterDel { .. } => "cluster_del",
            Request::ClusterStatus => "cluster_status",
            Request::MacvlanDisconnect { .. } => "macvlan_disconnect",
        }
    }

    /// Whether the answer is a stream of [`StreamMsg`] lines after the first response.
    pub(crate) fn streams(&self) -> bool {
        matches!(self, Request::TraceLive { .. } | Request::Capture { .. })
    }
}

/// Why a request failed, for programs: what kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorKind {
    /// A bridge, port, namespace or entry that does not exist.
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// A device or name that belongs to someone else, or a setting that clashes with
    /// what exists.
    Conflict,
    /// A bad value: a name, address, range, or a malformed request.
    InvalidArgument,
    /// The daemon is at its limit of clients (try again).
    Busy,
    /// The request is larger than the daemon reads.
    TooLarge,
    /// The host refused (netlink, namespaces, nftables, files).
    HostFailure,
    /// The daemon cannot do it now (its forwarding thread stopped, or it is shutting
    /// down).
    Unavailable,
    /// Another API version.
    Version,
}

/// A failed request: its kind, and a message naming the object and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ApiError {
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidArgument, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A response: `ok` with a `result`, or not with an `error`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) version: u32,
    pub(crate) ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<ApiError>,
}

impl Response {
    pub(crate) fn ok(result: impl Serialize) -> Response {
        match serde_json::to_value(result) {
            Ok(v) => Response {
                version: API_VERSION,
                ok: true,
                result: Some(v),
                error: None,
            },
            Err(e) => Response::err(ApiError::new(
                ErrorKind::Unavailable,
                format!("cannot encode the answer: {e}"),
            )),
        }
    }

    pub(crate) fn err(e: ApiError) -> Response {
        Response {
            version: API_VERSION,
            ok: false,
            result: None,
            error: Some(e),
        }
    }
}

/// The answer to [`Request::Ping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pong {
    pub(crate) version: u32,
    pub(crate) pid: u32,
}

/// The answer to [`Request::FdbFlush`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Flushed {
    pub(crate) flushed: usize,
}

/// The answer to [`Request::Connect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Connected {
    pub(crate) bridge: String,
    pub(crate) port: String,
    pub(crate) port_no: u16,
    pub(crate) netns: String,
    /// The addresses the namespace's interface got (in cluster mode, allocated).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) addresses: Vec<String>,
}

/// The answer to [`Request::Up`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UpDone {
    pub(crate) topology: String,
    /// Whether anything was made (applying a topology again makes nothing).
    pub(crate) changed: bool,
}

fn yes() -> bool {
    true
}

/// The IANA VXLAN port.
fn default_vxlan_port() -> u16 {
    4789
}

/// How a VM reaches its port (`vbr port add --type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum VmPortKind {
    /// `-netdev stream`: vbridge listens on a UNIX socket, QEMU connects (and reconnects).
    Stream,
    /// `-netdev dgram`: one frame per datagram between two UNIX socket paths.
    Dgram,
    /// vhost-user: vbridge is the backend of the guest's virtio-net, its rings in
    /// shared guest memory (QEMU needs `memory-backend-memfd,share=on`).
    VhostUser,
    /// `-netdev tap`: a persistent TAP vbridge makes and QEMU opens by name.
    Tap,
}

/// The answer to [`Request::PortAdd`]: where the VM connects and the QEMU arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VmPort {
    pub(crate) bridge: String,
    pub(crate) port: String,
    /// Where QEMU reaches the port: a UNIX socket path, or the TAP's name.
    pub(crate) socket: String,
    pub(crate) mac: String,
    /// QEMU's command-line arguments for this NIC, one per element.
    pub(crate) qemu: Vec<String>,
}

/// The answer to requests that only change something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Done {}

/// The first answer to a streaming request ([`Request::TraceLive`],
/// [`Request::Capture`]): what is watched. [`StreamMsg`] lines follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Streaming {
    pub(crate) bridge: String,
    pub(crate) port: Option<String>,
    /// The pcap file being written, if any.
    pub(crate) file: Option<String>,
}

/// One line of a stream, after its first answer: `{"frame":{...}}`, `{"line":"..."}`,
/// and last `{"end":{...}}`. A client ends a stream early by shutting down its side
/// of the connection (or closing it); it then still reads the `end` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StreamMsg {
    /// A captured frame (a capture without a file).
    Frame(FrameEvent),
    /// A decision of a live trace, in one line.
    Line(String),
    End(StreamEnd),
}

/// A captured frame as a capture without a file reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FrameEvent {
    /// Seconds since the Unix epoch.
    pub(crate) time: f64,
    pub(crate) port: String,
    /// `in` (received by the port) or `out` (sent out of it).
    pub(crate) dir: Direction,
    pub(crate) len: usize,
    /// The frame in one line.
    pub(crate) summary: String,
}

/// The last line of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamEnd {
    /// Frames (or lines) delivered.
    pub(crate) frames: u64,
    /// Frames the forwarding thread could not hand over (queue full or rate limit).
    pub(crate) dropped: u64,
    /// Why it ended: `count`, `client`, `gone` (port or bridge removed), `error`.
    pub(crate) why: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Request::cmd` (the metrics label) is the `cmd` the request is sent as.
    #[test]
    fn cmd_names_match_the_wire() {
        let b = || "br0".to_owned();
        let reqs = [
            Request::Ping,
            Request::Addbr { bridge: b() },
            Request::FdbAdd {
                bridge: b(),
                mac: "02:00:00:00:00:01".into(),
                port: "p".into(),
                vlan: None,
            },
            Request::LinkSet {
                port: "p".into(),
                flags: BTreeMap::new(),
                vlan: None,
            },
            Request::NetnsList,
            Request::Down { name: "x".into() },
            Request::Topologies,
            Request::Trace {
                bridge: b(),
                port: "p".into(),
                frame: "00".into(),
            },
            Request::TraceLive {
                bridge: b(),
                port: None,
                count: None,
            },
            Request::Capture {
                port: "p".into(),
                file: None,
                count: Some(1),
                direction: Direction::In,
            },
        ];
        for r in reqs {
            let v = serde_json::to_value(&r).unwrap();
            assert_eq!(v["cmd"], r.cmd(), "{v}");
        }
    }
}
