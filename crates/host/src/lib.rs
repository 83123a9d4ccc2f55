//! vbridge's host orchestration: network namespaces ([`netns`]), links,
//! addresses and routes over a blocking `NETLINK_ROUTE` socket ([`Netlink`]),
//! and kernel parameters ([`sysctl`]). Everything is done with system calls
//! and netlink; nothing here runs `ip`.
//!
//! Network namespaces are per thread: a [`Netlink`] acts on the namespace
//! of the thread that opened it, and [`netns::run_in`] runs code inside
//! another namespace on a thread of its own.

mod error;
pub mod ledger;
mod name;
pub mod nat;
mod netlink;
pub mod netns;
pub mod sysctl;

pub use error::{ErrorKind, HostError, OsError};
pub use netlink::{IpFamily, Link, LinkEvent, LinkMonitor, MAX_VNI, Netlink, Route};
