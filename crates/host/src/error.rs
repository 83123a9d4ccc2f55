//! Errors of the host layer: [`HostError`] (what was being done, to which
//! object), [`OsError`] (the kernel's refusal, its errno put in words, with
//! the kernel's own extended-ack message when netlink sent one) and
//! [`ErrorKind`], the coarse class a caller matches on.

use std::{fmt, io};

use netlink_packet_core::DecodeError;
use nix::errno::Errno;

/// Everything that can go wrong in this crate.
///
/// The message names the action and the object (`cannot delete link
/// "veth0"`); the cause is the [`source`](std::error::Error::source), so print
/// the whole chain (`anyhow`'s `{:#}`) to see it once:
/// `cannot delete link "veth0": no such device (ENODEV)`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// An argument was refused before the kernel was asked anything.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// What the argument is ("link name", "prefix length", ...).
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The kernel refused a netlink request or a system call.
    #[error("cannot {action} {object}")]
    Os {
        /// The action, as a verb phrase ("delete", "add address to", ...).
        action: &'static str,
        /// The object acted on, named (`link "veth0"`, `namespace "blue"`).
        object: String,
        /// The kernel's answer.
        #[source]
        source: OsError,
    },
    /// `nft` refused or failed to change a ruleset.
    #[error("cannot {action} nftables table {table}")]
    Nft {
        /// The action.
        action: &'static str,
        /// The table.
        table: String,
        /// What `nft` (or running it) said.
        #[source]
        source: Box<nftables::helper::NftablesError>,
    },
    /// An I/O failure that carries no errno (bad data read back, ...).
    #[error("cannot {action} {object}")]
    Io {
        /// The action.
        action: &'static str,
        /// The object acted on.
        object: String,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The kernel's netlink reply could not be decoded.
    #[error("cannot {action} {object}: malformed netlink reply")]
    Decode {
        /// The action.
        action: &'static str,
        /// The object acted on.
        object: String,
        /// The decoder's complaint.
        #[source]
        source: DecodeError,
    },
    /// The kernel's netlink reply was well-formed but not what was asked for.
    #[error("cannot {action} {object}: unexpected netlink reply ({detail})")]
    Unexpected {
        /// The action.
        action: &'static str,
        /// The object acted on.
        object: String,
        /// What was wrong with it.
        detail: String,
    },
}

/// The coarse class of a [`HostError`], for callers that handle some
/// failures (an address that is already there, a link that is already gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `EEXIST`: the object is already there.
    AlreadyExists,
    /// `ENODEV`, `ENOENT`, `ESRCH`: the object is not there. (Removing a
    /// missing address answers `EADDRNOTAVAIL`, which is [`Other`](Self::Other):
    /// the same errno refuses a MAC address a device cannot take.)
    NotFound,
    /// `EPERM`, `EACCES`.
    PermissionDenied,
    /// `EBUSY`.
    Busy,
    /// `EINVAL`, `ERANGE`, or refused before asking the kernel.
    Invalid,
    /// `EOPNOTSUPP`, `EAFNOSUPPORT`, `EPROTONOSUPPORT`.
    Unsupported,
    /// Anything else.
    Other,
}

impl HostError {
    /// The class of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::Invalid,
            Self::Nft { .. } => ErrorKind::Other,
            Self::Os { source, .. } => kind_of(source.errno()),
            Self::Io { source, .. } => source
                .raw_os_error()
                .map_or(ErrorKind::Other, |code| kind_of(Errno::from_raw(code))),
            Self::Decode { .. } | Self::Unexpected { .. } => ErrorKind::Other,
        }
    }

    /// The errno the kernel answered, if it did.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Self::Os { source, .. } => Some(source.errno()),
            Self::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    pub(crate) fn os(action: &'static str, object: impl Into<String>, source: OsError) -> Self {
        Self::Os {
            action,
            object: object.into(),
            source,
        }
    }

    /// Wraps an I/O error: as [`HostError::Os`] when it carries an errno.
    pub(crate) fn io(action: &'static str, object: impl Into<String>, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(code) => Self::os(action, object, OsError::from_raw(code)),
            None => Self::Io {
                action,
                object: object.into(),
                source,
            },
        }
    }

    pub(crate) fn from_errno(
        action: &'static str,
        object: impl Into<String>,
        errno: Errno,
    ) -> Self {
        Self::os(action, object, OsError::new(errno))
    }

    pub(crate) fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: &'static str,
    ) -> Self {
        Self::Invalid {
            what,
            value: value.into(),
            reason,
        }
    }
}

fn kind_of(errno: Errno) -> ErrorKind {
    match errno {
        Errno::EEXIST => ErrorKind::AlreadyExists,
        Errno::ENODEV | Errno::ENOENT | Errno::ESRCH => ErrorKind::NotFound,
        Errno::EPERM | Errno::EACCES => ErrorKind::PermissionDenied,
        Errno::EBUSY => ErrorKind::Busy,
        Errno::EINVAL | Errno::ERANGE => ErrorKind::Invalid,
        Errno::EOPNOTSUPP | Errno::EAFNOSUPPORT | Errno::EPROTONOSUPPORT => ErrorKind::Unsupported,
        _ => ErrorKind::Other,
    }
}

/// The kernel's refusal: an errno, and for netlink requests the text the
/// kernel attached to it (extended ack), when there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsError {
    errno: Errno,
    kernel_message: Option<String>,
}

impl OsError {
    /// An error with no kernel message.
    pub fn new(errno: Errno) -> Self {
        Self {
            errno,
            kernel_message: None,
        }
    }

    /// From a positive or negative raw errno value.
    pub fn from_raw(code: i32) -> Self {
        Self::new(Errno::from_raw(code.abs()))
    }

    pub(crate) fn with_kernel_message(mut self, message: Option<String>) -> Self {
        self.kernel_message = message.filter(|m| !m.is_empty());
        self
    }

    /// The errno.
    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// The kernel's extended-ack text (`NLMSGERR_ATTR_MSG`), if any.
    pub fn kernel_message(&self) -> Option<&str> {
        self.kernel_message.as_deref()
    }
}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match describe(self.errno) {
            Some(text) => write!(f, "{text} ({:?})", self.errno)?,
            None => write!(f, "{} (errno {})", self.errno.desc(), self.errno as i32)?,
        }
        if let Some(message) = &self.kernel_message {
            write!(f, "; kernel says: {message}")?;
        }
        Ok(())
    }
}

impl std::error::Error for OsError {}

/// Plain words for the errnos that netlink and namespace calls commonly
/// answer; `None` for the rest (their `strerror` text is used instead).
fn describe(errno: Errno) -> Option<&'static str> {
    Some(match errno {
        Errno::EEXIST => "already exists",
        Errno::ENODEV => "no such device",
        Errno::ENOENT => "not found",
        Errno::ESRCH => "no such object",
        Errno::EADDRNOTAVAIL => "address not available (missing, or not one the device can take)",
        Errno::EADDRINUSE => "address already in use",
        Errno::ENETUNREACH => "network unreachable (is the gateway on a connected subnet?)",
        Errno::EHOSTUNREACH => "host unreachable",
        Errno::EPERM => "operation not permitted",
        Errno::EACCES => "permission denied",
        Errno::EBUSY => "device or resource busy",
        Errno::EINVAL => "invalid argument",
        Errno::ERANGE => "value out of range",
        Errno::ENAMETOOLONG => "name too long",
        Errno::EOPNOTSUPP => "operation not supported",
        Errno::EAFNOSUPPORT => "address family not supported (is IPv6 disabled?)",
        Errno::EPROTONOSUPPORT => "protocol not supported",
        Errno::ENOBUFS => "no buffer space available",
        Errno::ENOMEM => "out of memory",
        Errno::ENOTDIR => "not a directory",
        Errno::EISDIR => "is a directory",
        Errno::ENOTEMPTY => "not empty",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn names_object_and_keeps_cause_as_source() {
        let err = HostError::from_errno("delete", "link \"veth9\"", Errno::ENODEV);
        assert_eq!(err.to_string(), "cannot delete link \"veth9\"");
        let cause = err.source().unwrap().to_string();
        assert_eq!(cause, "no such device (ENODEV)");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.errno(), Some(Errno::ENODEV));
    }

    #[test]
    fn exists_and_kernel_message() {
        let cause = OsError::from_raw(-17).with_kernel_message(Some("Duplicate thing".into()));
        let err = HostError::os("create", "namespace \"x\"", cause);
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            err.source().unwrap().to_string(),
            "already exists (EEXIST); kernel says: Duplicate thing"
        );
    }

    #[test]
    fn io_errors_with_errno_become_os_errors() {
        let err = HostError::io("open", "namespace \"x\"", io::Error::from_raw_os_error(2));
        assert!(matches!(err, HostError::Os { .. }));
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let err = HostError::io("read", "sysctl x", io::Error::other("bad"));
        assert!(matches!(err, HostError::Io { .. }));
        assert_eq!(err.kind(), ErrorKind::Other);
    }

    #[test]
    fn unknown_errno_uses_strerror() {
        let text = OsError::new(Errno::EXDEV).to_string();
        assert!(
            text.contains(&format!("errno {}", Errno::EXDEV as i32)),
            "{text}"
        );
    }
}
