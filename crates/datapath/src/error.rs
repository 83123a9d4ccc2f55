//! Errors of datapath operations, each naming the object it is about.

use vbridge_core::ConfigError;
use vbridge_ports::PortError;

/// Why a datapath operation was refused or failed. Nothing was changed when one is
/// returned.
#[derive(Debug, thiserror::Error)]
pub enum DpError {
    #[error("bridge {0} does not exist (see `vbr show`)")]
    NoSuchBridge(String),
    #[error("bridge {0} already exists")]
    BridgeExists(String),
    #[error("port {0} is not attached to any bridge (see `vbr show`)")]
    NoSuchPort(String),
    #[error("{port} is not a port of bridge {bridge} (see `vbr show {bridge}`)")]
    NotOnBridge { port: String, bridge: String },
    #[error("{port} is already a port of bridge {bridge}")]
    PortExists { port: String, bridge: String },
    #[error(
        "{place} already has a device {name} that vbridge did not make; vbridge never takes over other devices (remove it, or choose another name)"
    )]
    NotOurs { name: String, place: String },
    #[error("{name} cannot be a port: {why}")]
    Refused { name: String, why: String },
    #[error("invalid name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("bridge {bridge}: {source}")]
    Config {
        bridge: String,
        #[source]
        source: ConfigError,
    },
    #[error("port {port}: {source}")]
    Port {
        port: String,
        #[source]
        source: PortError,
    },
    #[error("{0}")]
    Host(#[source] Box<vbridge_host::HostError>),
    #[error("the datapath thread is not running")]
    Stopped,
    #[error("{0}")]
    Busy(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DpError {
    pub(crate) fn config(bridge: &str, source: ConfigError) -> DpError {
        DpError::Config {
            bridge: bridge.to_owned(),
            source,
        }
    }

    pub(crate) fn port(port: &str, source: PortError) -> DpError {
        DpError::Port {
            port: port.to_owned(),
            source,
        }
    }
}
