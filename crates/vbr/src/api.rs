//! The daemon's API: one JSON request per line on a UNIX socket, one JSON response per
//! line back. Shared by the daemon and the `vbr` client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vbridge_datapath::{StpMode, VlanCfg};

/// Longest request line the daemon reads.
pub(crate) const MAX_REQUEST: usize = 64 * 1024;

/// A request. `cmd` names the verb; the brctl verbs keep brctl's names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Request {
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
    },
    Delif {
        bridge: String,
        port: String,
    },
    Show {
        bridge: Option<String>,
    },
    Showmacs {
        bridge: String,
    },
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
        cost: u32,
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
    FdbShow {
        bridge: String,
    },
    FdbFlush {
        bridge: String,
    },
    LinkSet {
        port: String,
        #[serde(default)]
        flags: BTreeMap<String, bool>,
        vlan: Option<VlanCfg>,
    },
    Stats {
        bridge: Option<String>,
    },
    TapAdd {
        name: String,
        bridge: String,
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
    NetnsList,
    Connect(crate::daemon::ConnectArgs),
    Disconnect {
        netns: String,
        bridge: String,
    },
    /// Apply a checked topology; `name` keys what it made (a file path, or "default").
    Up {
        name: String,
        plan: crate::topology::Plan,
    },
    /// Remove what `up` with this name made.
    Down {
        name: String,
    },
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
        )
    }
}

/// A response: `ok` with a `result`, or not with an `error` saying what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Response {
    pub(crate) ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Response {
    pub(crate) fn ok(result: serde_json::Value) -> Response {
        Response {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    pub(crate) fn err(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(msg.into()),
        }
    }
}
