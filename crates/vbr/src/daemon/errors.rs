//! Errors as the API reports them: each cause said once, and a kind a program can act
//! on, from the datapath's, the host's and the ports' own errors.

use vbridge_datapath::DpError;
use vbridge_host::HostError;

use crate::api::{ApiError, ErrorKind};

/// `e` and its causes, each said once (a cause already contained in the text so far
/// is left out).
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        src = c.source();
    }
    s
}

fn host_kind(e: &HostError) -> ErrorKind {
    match e.kind() {
        vbridge_host::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        vbridge_host::ErrorKind::NotFound => ErrorKind::NotFound,
        vbridge_host::ErrorKind::Invalid => ErrorKind::InvalidArgument,
        vbridge_host::ErrorKind::Busy => ErrorKind::Conflict,
        _ => ErrorKind::HostFailure,
    }
}

/// A host error as the API reports it.
pub(crate) fn host(e: HostError) -> ApiError {
    ApiError::new(host_kind(&e), describe(&e))
}

/// A datapath error as the API reports it.
pub(crate) fn dp(e: DpError) -> ApiError {
    use vbridge_ports::PortError;
    let kind = match &e {
        DpError::NoSuchBridge(_) | DpError::NoSuchPort(_) | DpError::NotOnBridge { .. } => {
            ErrorKind::NotFound
        }
        DpError::BridgeExists(_) | DpError::PortExists { .. } => ErrorKind::AlreadyExists,
        DpError::NotOurs { .. } | DpError::Refused { .. } | DpError::Busy(_) => ErrorKind::Conflict,
        DpError::InvalidName { .. } | DpError::Config { .. } => ErrorKind::InvalidArgument,
        DpError::Port { source, .. } => match source {
            PortError::NotFound { .. } | PortError::Gone { .. } => ErrorKind::NotFound,
            PortError::Exists { .. } => ErrorKind::Conflict,
            PortError::InvalidName { .. } => ErrorKind::InvalidArgument,
            _ => ErrorKind::HostFailure,
        },
        DpError::Host(h) => host_kind(h),
        DpError::Stopped => ErrorKind::Unavailable,
        DpError::Io { .. } => ErrorKind::HostFailure,
    };
    ApiError::new(kind, describe(&e))
}
