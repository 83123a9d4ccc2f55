//! The datapath's state as plain data, for `vbr show`, `showmacs`, `showstp` and
//! `stats`: serialized by the daemon and read back into the same types by the CLI.

use serde::{Deserialize, Serialize};

/// What stands behind a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// The bridge's own host interface (a TAP named like the bridge).
    Host,
    /// An existing netdev attached with AF_PACKET (`vbr addif`).
    Interface,
    /// A TAP vbridge created and holds (`vbr tap add`).
    Tap,
    /// A backend the caller opened and handed over (a socket): not kept across restarts.
    Socket,
    /// The host's interface on one VLAN of the bridge (`BR.VID`, a persistent TAP
    /// vbridge made, kept across restarts with its addresses): the VLAN's gateway.
    Gateway,
    /// A VM's `-netdev stream` (QEMU connects to the UNIX socket vbridge listens on).
    Stream,
    /// A VM's `-netdev dgram` (one frame per datagram between two UNIX socket paths).
    Dgram,
    /// A VM's vhost-user NIC: vbridge listens on the UNIX socket and is the backend of
    /// the guest's virtio-net, its rings in shared guest memory.
    VhostUser,
    /// The same with QEMU listening (`server=on`) and vbridge connecting (again and
    /// again: a restarted daemon finds its guests).
    VhostUserClient,
    /// A VM's TAP (`-netdev tap`): a persistent TAP vbridge made, opened by QEMU by name
    /// and read by vbridge like an interface.
    VmTap,
    /// A VXLAN tunnel to other hosts: a kernel `vxlan` netdev vbridge made, read like an
    /// interface.
    Vxlan,
}

impl PortKind {
    /// Whether ports of this kind have a UNIX socket path a VM reaches them at.
    pub fn has_socket(self) -> bool {
        matches!(
            self,
            PortKind::Stream | PortKind::Dgram | PortKind::VhostUser | PortKind::VhostUserClient
        )
    }

    /// Whether a port of this kind is a persistent TAP in the daemon's namespace that the
    /// switch reads and writes itself (the host port, a VLAN gateway): the kernel fast
    /// path has its netdev receive the frames for it and meets the host's frames at its
    /// egress.
    pub fn reads_own_tap(self) -> bool {
        matches!(self, PortKind::Host | PortKind::Gateway)
    }
}

/// Whether a port moves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortState {
    /// Attached and administratively up.
    Up,
    /// Attached but down (the netdev or the port is down).
    Down,
    /// The netdev vanished; the port is kept and re-attached when it comes back.
    Gone,
}

/// One port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortView {
    pub name: String,
    pub port_no: u16,
    pub kind: PortKind,
    pub state: PortState,
    pub stp_state: String,
    pub mac: Option<String>,
    pub vlan: VlanView,
    pub flags: vbridge_core::PortFlags,
    pub max_learned: u32,
    pub learned: u32,
    /// For `vbr connect` ports: the namespace and the interface name inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// The addresses vbridge gave that interface, and its default route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The netdev's MTU, as last known.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// For VM socket ports: the UNIX socket path vbridge listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// On the kernel fast path (an interface port: a veth end, a NIC, someone else's TAP;
    /// the host port or a VLAN gateway once its egress link is made).
    pub fast_path: bool,
    pub counters: CountersView,
    /// Frames the port's backend received and discarded itself before the switch saw
    /// them (too long for a buffer, garbage on a VM's stream socket, a datagram from
    /// someone other than the guest), since it was attached.
    #[serde(default)]
    pub backend_drops: u64,
}

/// A port's VLAN mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum VlanView {
    Access {
        vid: u16,
    },
    Trunk {
        allowed: String,
        native: Option<u16>,
    },
}

/// A port's counters, drops by reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountersView {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_flooded: u64,
    pub tx_flooded: u64,
    pub rx_control: u64,
    pub drops: std::collections::BTreeMap<String, u64>,
}

/// One bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeView {
    pub name: String,
    /// `8000.0a0000000001`, as brctl prints bridge ids.
    pub bridge_id: String,
    pub mac: String,
    pub mac_fixed: bool,
    pub stp: bool,
    pub vlan_filtering: bool,
    pub ageing_secs: f64,
    pub fdb_entries: usize,
    pub fdb_learned: u32,
    pub fdb_moves: u64,
    pub fdb_limit_hits: u64,
    /// Flows the kernel forwards between veth ports for this bridge right now.
    pub fast_flows: usize,
    /// Ports (and VLAN tags) whose broadcasts the kernel floods for this bridge now.
    #[serde(default)]
    pub fast_floods: usize,
    /// Frames and bytes the kernel forwarded on the fast path, as accounted so far
    /// (they are in the ports' counters too).
    #[serde(default)]
    pub fast_frames: u64,
    #[serde(default)]
    pub fast_bytes: u64,
    pub drops: std::collections::BTreeMap<String, u64>,
    pub ports: Vec<PortView>,
}

/// One FDB entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FdbRow {
    pub port: String,
    pub port_no: u16,
    pub mac: String,
    /// None for local entries, which match in every VLAN.
    pub vlan: Option<u16>,
    pub kind: String,
    pub is_local: bool,
    pub ageing_timer: f64,
}

/// A bridge's spanning tree, as `vbr showstp` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StpView {
    pub bridge: String,
    pub mode: vbridge_core::StpMode,
    pub bridge_id: String,
    pub designated_root: String,
    pub root_port: Option<String>,
    /// 0 when this bridge is the root.
    pub root_port_no: u16,
    pub path_cost: u32,
    pub max_age: f64,
    pub hello_time: f64,
    pub forward_delay: f64,
    pub bridge_max_age: f64,
    pub bridge_hello_time: f64,
    pub bridge_forward_delay: f64,
    pub ageing_time: f64,
    pub topology_change: bool,
    pub topology_change_count: u64,
    pub time_since_topology_change: Option<f64>,
    pub ports: Vec<StpPortView>,
}

/// One port of [`StpView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StpPortView {
    pub name: String,
    pub port_no: u16,
    pub port_id: String,
    pub state: String,
    pub role: String,
    pub path_cost: u32,
    pub designated_root: String,
    pub designated_bridge: String,
    pub designated_port: String,
    pub designated_cost: u32,
    pub edge: bool,
    pub admin_edge: bool,
    pub point_to_point: bool,
    pub send_rstp: bool,
    pub bpdu_guard: bool,
    pub bpdu_guard_tripped: bool,
    pub root_guard: bool,
    pub root_guard_blocking: bool,
    pub topology_change: bool,
    pub message_age_timer: f64,
    pub forward_delay_timer: f64,
    pub hello_timer: f64,
    pub topology_change_timer: f64,
    pub counters: vbridge_core::stp::StpPortCounters,
}

/// What the control side needs to know of a port to watch its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortInfo {
    pub(crate) bridge: String,
    pub(crate) name: String,
    pub(crate) kind: PortKind,
    /// Attached (not gone).
    pub(crate) attached: bool,
    /// Its netdev's index in the daemon's namespace, while attached.
    pub(crate) ifindex: Option<u32>,
    pub(crate) conn: Option<crate::Connection>,
    /// What opening it again needs: a VXLAN port's tunnel, a VM socket port's path.
    pub(crate) vxlan: Option<crate::VxlanCfg>,
    pub(crate) socket: Option<std::path::PathBuf>,
}

/// `vbr trace`: what the bridge does with one frame, step by step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceView {
    pub bridge: String,
    /// The ingress port.
    pub ingress: String,
    /// The frame in one line.
    pub frame: String,
    pub steps: Vec<TraceStep>,
    /// The outcome in words.
    pub verdict: String,
    /// The decision in one line, as `vbr trace --live` prints it.
    pub decision: String,
    /// Whether the frame's flow is in the kernel fast path, would be, or why not.
    pub fast_path: String,
}

/// One step of a [`TraceView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// `ingress`, `vlan`, `learning`, `lookup`, `egress`, `excluded`, ...
    pub step: String,
    /// The port the step is about, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    pub text: String,
}
