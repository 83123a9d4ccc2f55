//! `vbridge-datapath`: runs vbridge's sans-IO bridges over real ports.
//!
//! One thread (the engine) owns every bridge and port and an epoll loop over their
//! descriptors. A readable port is read a batch at a time (up to 32 frames per system
//! call), the batch's FDB lookups are warmed together, then each frame is decided by the
//! core and its copies sent, with VLAN tags pushed, popped or rewritten in place. Between
//! batches it carries out typed [`action`]s and its bounded timers; it never waits for
//! the host. [`Datapath`] is the only way in: its operations do their host work (devices,
//! namespaces, BPF programs) on the caller's thread and hand the engine the result. A
//! monitor thread passes on the kernel's link notifications, and a reaper thread closes
//! what the engine lets go of.

mod action;
mod bridge_rt;
mod config;
mod control;
mod engine;
mod error;
mod fast;
mod handle;
mod observe;
mod restore;
mod settings;
mod tx;
pub mod view;
mod views;

pub use bridge_rt::PortSpec;
pub use config::{
    BridgeCfg, Config, ConfigProblem, PortCfg, StaticEntry, StpParams, VlanCfg, VxlanCfg,
};
pub use control::backend::undo_owned;
pub use control::connect::{Connection, netns_identity, port_name};
pub use error::DpError;
pub use handle::{CaptureSession, Datapath, LiveSession, Next};
pub use observe::{Captured, Direction};
pub use settings::{Change, Changed, PortEdit, PortFlag};
pub use vbridge_core::StpMode;
pub use view::{
    BridgeView, CountersView, FdbRow, PortKind, PortState, PortView, StpPortView, StpView,
    TraceStep, TraceView, VlanView,
};
