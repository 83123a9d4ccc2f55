//! The reaper: a thread that finishes what the forwarding thread hands back ([`Notice`]s):
//! it closes descriptors whose closing takes the kernel's RTNL lock (TAPs, tcx links,
//! packet sockets in promiscuous mode), releases ports whose remover went away, and
//! gives a bridge's host interface the MAC the bridge MAC rule chose.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use vbridge_host::ledger::Ledger;
use vbridge_ports::netdev;

use crate::action::Notice;
use crate::control::backend;

/// Starts the reaper; it ends when every sender of `notices` is gone.
pub(crate) fn spawn(
    notices: Receiver<Notice>,
    ledger: Arc<Ledger>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vbr-reaper".into())
        .spawn(move || {
            for n in notices {
                finish(n, &ledger);
            }
        })
}

fn finish(n: Notice, ledger: &Ledger) {
    match n {
        Notice::Dispose { io, fast, release } => backend::dispose(io, fast, release),
        Notice::Unwanted(b) => backend::dispose(Some(b.io), b.fast, false),
        Notice::Retire { port, release } => {
            if release {
                backend::release(port, ledger);
            } else {
                backend::close(port, ledger);
            }
        }
        Notice::HostMac { bridge, mac } => {
            if let Err(e) = netdev::set_mac(&bridge, mac) {
                tracing::warn!(bridge = %bridge, error = %e, "cannot give the host interface the bridge MAC");
            }
        }
    }
}
