//! `vbridge-dhcp`: the DHCPv4 server of a vbridge network, sans-IO in the manner of the
//! bridge core: it is fed request payloads (the UDP payload a client sent to port 67)
//! and the time, and answers the reply to send and where, keeping the leases. No socket,
//! clock or file: the daemon owns those, persists [`Server::leases`] and restores them
//! with [`Server::new`].
//!
//! What it does, after RFC 2131: DISCOVER gets an OFFER (a static address for the
//! client's MAC, else the client's current lease, else the address it asks for if free,
//! else the next free one in the range), held for [`OFFER_HOLD`] seconds so no two
//! clients are offered one address; REQUEST gets an ACK or a NAK (selecting, init-reboot,
//! renewing and rebinding; the server is authoritative for its subnet); DECLINE takes
//! the address out of use for a lease time; RELEASE frees it; INFORM gets the network's
//! options. The pool running dry gets no offer and an [`Event::Exhausted`]. Messages
//! are read with `dhcproto` after a check of the fixed header on the raw bytes (so a
//! malformed packet is counted and dropped, never a panic); relayed requests are
//! ignored (no relay support).

#![forbid(unsafe_code)]

mod config;
mod leases;
mod server;

pub use config::{Config, ConfigError, Static};
pub use leases::LeaseRecord;
pub use server::{Counters, Dest, Event, OFFER_HOLD, Outcome, Server};

/// The UDP port a DHCP server listens on.
pub const SERVER_PORT: u16 = 67;
/// The UDP port a DHCP client listens on.
pub const CLIENT_PORT: u16 = 68;
