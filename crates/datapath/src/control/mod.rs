//! The control side of the datapath: everything that may wait for the host, done on the
//! caller's thread or on two threads of its own, never on the forwarding thread. It
//! opens and closes port backends (`backend`, `connect`, `quiet`), follows the netdevs
//! through link notifications (`monitor`), and finishes what the engine hands back
//! (`reaper`).

pub(crate) mod backend;
pub(crate) mod connect;
pub(crate) mod monitor;
pub(crate) mod quiet;
pub(crate) mod reaper;
