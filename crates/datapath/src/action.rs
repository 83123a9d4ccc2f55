//! The forwarding thread's inbox and outbox. Everything that reaches the engine is one
//! of these typed [`Action`]s: short, in-memory mutations and queries, carried out between
//! batches. Host work (netlink, namespaces, TAP creation, sysctls, BPF program loads) is
//! done before an action is sent, by the control side, and resources the engine lets go
//! of (descriptors whose closing takes the kernel's RTNL lock) come back to it in
//! [`Retired`] ports or [`Notice`]s, so nothing the engine does can block on the host.

use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use crate::observe::{Captured, Direction};

use vbridge_core::{BridgeConfig, MacAddr, PortId};
use vbridge_ports::{FastPath, FastPort, PortIo};

use crate::config::Config;
use crate::control::backend::Backend;
use crate::error::DpError;
use crate::settings::{Change, Changed};
use crate::view::{BridgeView, FdbRow, PortInfo, StpView, TraceView};
use crate::{PortKind, PortSpec};

/// Where the engine answers; sending never blocks (room for the one answer).
pub(crate) type Reply<T> = SyncSender<T>;

/// A refused action that carried a backend: the error, and the backend to dispose of.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: DpError,
    pub(crate) backend: Option<Box<Backend>>,
}

/// A port removed for good, with what must be undone off the forwarding thread.
pub(crate) struct Retired {
    pub(crate) bridge: String,
    pub(crate) name: String,
    pub(crate) kind: PortKind,
    pub(crate) io: Option<Box<dyn PortIo>>,
    pub(crate) fast: Option<FastPort>,
}

/// What the forwarding thread hands to the control side to finish.
pub(crate) enum Notice {
    /// Close these (a port's device went away, or left the fast path). `release`: make a
    /// connection's TAP stop persisting first, so a deleted namespace can go.
    Dispose {
        io: Option<Box<dyn PortIo>>,
        fast: Option<FastPort>,
        release: bool,
    },
    /// A backend offered for a port that no longer wants it (close it, undo nothing).
    Unwanted(Backend),
    /// A port whose remover went away before the answer: close it, and with `release`
    /// undo what it made.
    Retire { port: Retired, release: bool },
    /// Give the bridge's host interface this MAC (the bridge MAC rule moved it).
    HostMac { bridge: String, mac: MacAddr },
    /// Link a TAP port the switch reads in this namespace (netdev `ifindex`: the host
    /// port, a VLAN gateway) to the fast path at its egress, and hand the link back
    /// ([`Action::SetPortFast`]).
    LinkTap {
        bridge: String,
        port: String,
        ifindex: u32,
        fast: Arc<FastPath>,
        /// Asked before for this netdev (the first failure is logged, the rest quietly).
        again: bool,
    },
}

impl std::fmt::Debug for Retired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retired")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("attached", &self.io.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Dispose { release, .. } => write!(f, "Dispose {{ release: {release} }}"),
            Notice::Unwanted(b) => write!(f, "Unwanted({b:?})"),
            Notice::Retire { port, release } => write!(f, "Retire({port:?}, {release})"),
            Notice::HostMac { bridge, mac } => write!(f, "HostMac({bridge}, {mac})"),
            Notice::LinkTap {
                bridge, ifindex, ..
            } => write!(f, "LinkTap({bridge}, {ifindex})"),
        }
    }
}

/// A netdev as the kernel reported it (a link notification, or a re-read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkState {
    pub(crate) ifindex: u32,
    pub(crate) name: String,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) up: bool,
    pub(crate) mtu: Option<u32>,
    /// A veth whose peer is in another namespace (the kernel fast path hands its frames
    /// to the peer; any other netdev gets them sent out of it).
    pub(crate) peer_elsewhere: bool,
    /// Deleted, or moved to another namespace.
    pub(crate) removed: bool,
}

/// A mutation or query for the forwarding thread.
#[derive(Debug)]
pub(crate) enum Action {
    AddBridge {
        name: String,
        config: BridgeConfig,
        /// Its host interface; `None` for a bridge without one.
        host: Option<Backend>,
        reply: Reply<Result<(), Refused>>,
    },
    DelBridge {
        name: String,
        reply: Reply<Result<Vec<Retired>, DpError>>,
    },
    AddPort {
        bridge: String,
        spec: Box<PortSpec>,
        /// `None`: the port is kept as gone until its device appears.
        backend: Option<Backend>,
        reply: Reply<Result<PortId, Refused>>,
    },
    DelPort {
        bridge: String,
        port: String,
        reply: Reply<Result<Retired, DpError>>,
    },
    /// A gone port's device is back: attach this backend if the port is still gone.
    Reattach {
        bridge: String,
        port: String,
        backend: Backend,
    },
    /// A port's device or namespace went away (found by the control side).
    Gone {
        bridge: String,
        port: String,
    },
    /// A netdev in the daemon's namespace changed.
    Link(LinkState),
    /// A bridge or port setting.
    Change {
        bridge: String,
        change: Change,
        reply: Reply<Result<Changed, DpError>>,
    },
    /// A port's part of the fast path, linked on the control side (linking waits for the
    /// kernel): a new port's tcx ingress link, or a TAP port's egress link
    /// ([`Notice::LinkTap`]). Taken if the port is still the one on netdev `ifindex`, has
    /// no link, and `path` is still its bridge's fast path.
    SetPortFast {
        bridge: String,
        port: String,
        ifindex: u32,
        fast: FastPort,
        path: Arc<FastPath>,
    },
    /// The bridge's kernel fast path, made for its first veth port.
    SetFast {
        bridge: String,
        fast: Arc<FastPath>,
    },
    Bridges {
        bridge: Option<String>,
        reply: Reply<Result<Vec<BridgeView>, DpError>>,
    },
    Fdb {
        bridge: String,
        reply: Reply<Result<Vec<FdbRow>, DpError>>,
    },
    Stp {
        bridge: String,
        reply: Reply<Result<StpView, DpError>>,
    },
    /// What the bridge would do with `frame` on `port`, changing nothing.
    Trace {
        bridge: String,
        port: String,
        frame: Vec<u8>,
        reply: Reply<Result<TraceView, DpError>>,
    },
    Snapshot {
        reply: Reply<Config>,
    },
    /// Copies of a port's frames into `tx` from now on; answers the bridge and an id.
    CaptureStart {
        port: String,
        dir: Direction,
        tx: SyncSender<Captured>,
        reply: Reply<Result<(String, u64), DpError>>,
    },
    /// Ends capture `id` of `port`; answers the frames the queue had no room for.
    CaptureStop {
        port: String,
        id: u64,
        reply: Option<Reply<u64>>,
    },
    /// The decisions of a bridge's frames (those entering `port`, if given) into `tx`.
    LiveStart {
        bridge: String,
        port: Option<String>,
        tx: SyncSender<String>,
        reply: Reply<Result<u64, DpError>>,
    },
    LiveStop {
        bridge: String,
        id: u64,
    },
    Ports {
        reply: Reply<Vec<PortInfo>>,
    },
    Fast {
        bridge: String,
        reply: Reply<Result<Option<Arc<FastPath>>, DpError>>,
    },
    /// Daemon shutdown: every bridge closes and its ports come back to be restored.
    CloseAll {
        reply: Reply<Vec<Retired>>,
    },
    Stop,
}
