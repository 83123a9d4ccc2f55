//! `vbridge-datapath`: runs vbridge's sans-IO bridges over real ports.
//!
//! One thread owns an epoll loop over every port's descriptor. A readable port is read
//! a batch at a time (up to 32 frames per system call), the batch's FDB lookups are
//! warmed together, then each frame is decided by the core and its copies sent, with
//! VLAN tags pushed, popped or rewritten in place. Timers (FDB ageing) and a once-a-second
//! check of the netdevs (MACs, up/down, vanished and returning devices) run between
//! batches, and so do control jobs sent through [`Datapath::call`].

mod backend;
mod bridge_rt;
mod config;
mod connect;
mod engine;
mod error;
mod fast;
mod handle;
mod hostif;
mod tx;
pub mod view;
mod views;

pub use bridge_rt::{BridgeRt, PortSpec};
pub use config::{BridgeCfg, Config, PortCfg, StaticEntry, StpParams, VlanCfg};
pub use connect::{Connection, netns_identity, port_name};
pub use engine::Engine;
pub use error::DpError;
pub use handle::Datapath;
pub use vbridge_core::StpMode;
pub use view::{BridgeView, FdbRow, PortKind, PortState, PortView};
