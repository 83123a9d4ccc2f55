//! The reaper: a thread that finishes what the forwarding thread hands back ([`Notice`]s):
//! it closes descriptors whose closing takes the kernel's RTNL lock (TAPs, tcx links,
//! packet sockets in promiscuous mode), releases ports whose remover went away, gives a
//! bridge's host interface the MAC the bridge MAC rule chose, and links host interfaces
//! to the fast path (which waits for the kernel), handing the link back.

use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;

use vbridge_host::ledger::Ledger;
use vbridge_ports::netdev;

use crate::action::{Action, Notice};
use crate::control::backend;
use crate::handle::Inbox;

/// Starts the reaper; it ends when every sender of `notices` is gone.
pub(crate) fn spawn(
    notices: Receiver<Notice>,
    ledger: Arc<Ledger>,
    inbox: Inbox,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("vbr-reaper".into())
        .spawn(move || {
            for n in notices {
                finish(n, &ledger, &inbox);
            }
        })
}

fn finish(n: Notice, ledger: &Ledger, inbox: &Inbox) {
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
        Notice::LinkTap {
            bridge,
            port,
            ifindex,
            fast,
            again,
        } => match fast.link_egress(ifindex) {
            // Refused (and closed) by the engine if the port changed meanwhile.
            Ok(f) => {
                let _ = inbox.send(Action::SetPortFast {
                    bridge,
                    port,
                    ifindex,
                    fast: f,
                    path: fast,
                });
            }
            // Said once; the retries every half minute only at debug level.
            Err(e) if again => {
                tracing::debug!(%bridge, %port, error = %e, "TAP port still off the kernel fast path");
            }
            Err(e) => {
                tracing::info!(%bridge, %port, error = %e, "TAP port stays off the kernel fast path (asked again every 30 s)");
            }
        },
    }
}
