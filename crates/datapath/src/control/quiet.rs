//! Keeps the host's own IP stack off an attached interface, as the kernel bridge's
//! rx_handler does: while a netdev is a vbridge port, the host neither answers ARP on it
//! (`arp_ignore=8`) nor runs IPv6 on it (`disable_ipv6=1`). Each value is recorded in the
//! ledger before it is changed, so a detach, a shutdown or the start after a crash puts
//! the original back (an interface attached again keeps the original of the first time).

use vbridge_host::ledger::{Ledger, Object, Owner};
use vbridge_host::sysctl;

fn knobs(dev: &str) -> [(String, &'static str); 2] {
    [
        (format!("net/ipv4/conf/{dev}/arp_ignore"), "8"),
        (format!("net/ipv6/conf/{dev}/disable_ipv6"), "1"),
    ]
}

/// Quiets `dev` for `owner`; knobs that cannot be read or written (no IPv6, no
/// permission) are skipped: they only keep the host from answering, forwarding works
/// without them. A value the ledger cannot record is not changed.
pub(crate) fn apply(dev: &str, owner: &Owner, ledger: &Ledger) {
    for (path, value) in knobs(dev) {
        let Ok(old) = sysctl::get(&path) else {
            continue;
        };
        let object = Object::Sysctl { path: path.clone() };
        if ledger.put(owner.clone(), object, Some(old)).is_err() {
            continue;
        }
        if let Err(e) = sysctl::set(&path, value) {
            tracing::debug!(path, error = %e, "cannot quiet the interface");
        }
    }
}

/// Puts back every sysctl recorded for `owner`.
pub(crate) fn restore(owner: &Owner, ledger: &Ledger) {
    for r in ledger.owned_by(owner) {
        if matches!(r.object, Object::Sysctl { .. }) {
            if let Err(e) = vbridge_host::ledger::undo(&r) {
                tracing::warn!(error = %e, "cannot restore a sysctl");
            }
            let _ = ledger.forget(&r.object);
        }
    }
}
