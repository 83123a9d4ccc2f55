//! [`PortError`]: what a port operation can fail with, sorted by what the datapath does
//! about it: remove the port (`Gone`), count a drop (`Dropped`), or report (the rest).

use std::io;

/// Errors of port creation and I/O. "Nothing to read now" is not an error: receive
/// returns `Ok(0)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The network device vanished: deleted, moved to another namespace, the TAP
    /// detached, or the peer of a socket pair closed. The port will not come back;
    /// remove it (its fd may stay readable/in error for epoll forever).
    #[error("network device {name} is gone")]
    Gone { name: String },
    /// This frame was not sent, the port is fine: queue or buffer memory full (`EAGAIN`,
    /// `ENOBUFS`, `ENOMEM`), link administratively down (`ENETDOWN`), or the frame was
    /// refused (`EMSGSIZE`: over the MTU without GSO; `EINVAL`: a vnet header the kernel
    /// rejects). Count a drop and go on. Carries no name so the hot path never allocates.
    #[error("{op}: frame dropped")]
    Dropped {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// A device with the name asked for already exists (TAP creation).
    #[error("network device {name} already exists")]
    Exists { name: String },
    /// No device of that name in the namespace.
    #[error("network device {name} does not exist")]
    NotFound { name: String },
    /// The name cannot be a Linux interface name.
    #[error("invalid network device name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// Anything else, with the failing operation and the OS error as source.
    #[error("{name}: {op} failed")]
    Io {
        name: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl PortError {
    /// The device is gone for good: remove the port.
    pub fn is_gone(&self) -> bool {
        matches!(self, PortError::Gone { .. })
    }

    /// Only this frame was lost: count it and carry on.
    pub fn is_drop(&self) -> bool {
        matches!(self, PortError::Dropped { .. })
    }

    pub(crate) fn io(name: &str, op: &'static str, source: io::Error) -> Self {
        PortError::Io {
            name: name.to_owned(),
            op,
            source,
        }
    }

    pub(crate) fn gone(name: &str) -> Self {
        PortError::Gone {
            name: name.to_owned(),
        }
    }
}

/// The raw `errno` of an I/O error (0 if it has none).
pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// "Try again later" on a nonblocking descriptor.
pub(crate) fn would_block(e: &io::Error) -> bool {
    let n = errno(e);
    n == libc::EAGAIN || n == libc::EWOULDBLOCK || n == libc::EINTR
}

/// Errors that concern one frame (or a momentary state) on send.
pub(crate) fn frame_dropped(e: &io::Error) -> bool {
    matches!(
        errno(e),
        libc::EAGAIN
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::EMSGSIZE
            | libc::EINVAL
            | libc::ENETDOWN
    ) || would_block(e)
}

/// Checks an interface name with vbridge's one rule ([`vbridge_wire::ifname`]).
pub(crate) fn check_name(name: &str) -> Result<(), PortError> {
    vbridge_wire::ifname::check(name).map_err(|e| PortError::InvalidName {
        name: name.to_owned(),
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("tap0").is_ok());
        assert!(check_name("a23456789012345").is_ok());
        for n in [
            "",
            "a234567890123456",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\0",
        ] {
            assert!(
                matches!(check_name(n), Err(PortError::InvalidName { .. })),
                "{n:?}"
            );
        }
    }

    #[test]
    fn classification() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(would_block(&e(libc::EAGAIN)));
        assert!(frame_dropped(&e(libc::ENOBUFS)));
        assert!(frame_dropped(&e(libc::EMSGSIZE)));
        assert!(!frame_dropped(&e(libc::ENXIO)));
        assert!(!frame_dropped(&e(libc::EPERM)));
        let gone = PortError::gone("va");
        assert!(gone.is_gone() && !gone.is_drop());
        assert_eq!(gone.to_string(), "network device va is gone");
        let io_err = PortError::io("va", "bind", e(libc::EPERM));
        assert_eq!(io_err.to_string(), "va: bind failed");
        assert!(std::error::Error::source(&io_err).is_some());
    }
}
