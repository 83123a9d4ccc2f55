//! Port backends for vbridge: where frames enter and leave the switch.
//!
//! - [`tap::Tap`]: a TAP device we create, with virtio-net headers and TSO/checksum
//!   offloads so 64 KiB TCP super-frames pass through whole.
//! - [`packet::AfPacket`]: an `AF_PACKET` socket on an existing netdev (veth end, NIC,
//!   someone else's TAP), with vnet headers, VLAN tags put back from auxdata, promisc.
//! - [`socket::SeqpacketPort`]: an `AF_UNIX` seqpacket pair, for tests and fd-passing.
//! - [`qemu::QemuStream`], [`qemu::QemuDgram`]: QEMU's `-netdev stream` and `-netdev
//!   dgram` on a UNIX socket vbridge listens on.
//! - [`vhost::VhostUser`]: a vhost-user port: vbridge as the backend of a guest's
//!   virtio-net, its rings in shared guest memory.
//!
//! All of them implement [`PortIo`] and move frames in [`Batch`]es of reusable
//! [`PacketBuf`]s. [`netdev`] has small helpers over device ioctls. Every `unsafe` line
//! is in the private `sys` module.

pub mod buf;
pub mod error;
pub mod fastpath;
pub mod netdev;
pub mod packet;
pub mod port;
pub mod qemu;
pub mod socket;
mod sys;
pub mod tap;
pub mod vhost;
pub mod vnet;

#[cfg(test)]
mod ns_tests;

pub use buf::{Batch, BufError, HEADROOM, MAX_FRAME_LEN, PacketBuf};
pub use error::PortError;
pub use fastpath::{Egress, FastPath, FastPort, Flood, FloodKey, Flow, FlowKey, FlowStats, Via};
pub use packet::{AfPacket, AfPacketOptions, RX_RING_SLOTS};
pub use port::{MacAddr, PortIo, SendReport};
pub use qemu::{QemuDgram, QemuStream};
pub use socket::SeqpacketPort;
pub use tap::{Tap, TapOptions};
pub use vhost::{VhostMode, VhostUser};
pub use vnet::VnetHdr;
