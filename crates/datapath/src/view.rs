//! Serializable snapshots of the datapath's state, for `vbr show`, `showmacs`, `stats`.

use serde::Serialize;

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
}

/// Whether a port moves frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// On the kernel fast path (a veth port whose peer is in another namespace).
    pub fast_path: bool,
    pub counters: CountersView,
}

/// A port's VLAN mode.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    pub drops: std::collections::BTreeMap<String, u64>,
    pub ports: Vec<PortView>,
}

/// One FDB entry.
#[derive(Debug, Clone, Serialize)]
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
