//! Keeps the host's own IP stack off an attached interface, as the kernel bridge's
//! rx_handler does: while a netdev is a vbridge port, the host neither answers ARP on it
//! (`arp_ignore=8`) nor runs IPv6 on it (`disable_ipv6=1`). Old values come back on detach.

use std::fs;

/// Saved sysctl values of one interface.
#[derive(Debug, Default)]
pub(crate) struct Quieted {
    saved: Vec<(String, String)>,
}

fn knobs(dev: &str) -> [(String, &'static str); 2] {
    [
        (format!("/proc/sys/net/ipv4/conf/{dev}/arp_ignore"), "8"),
        (format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1"),
    ]
}

impl Quieted {
    /// Quiets `dev`; knobs that cannot be read or written (no IPv6, no permission) are
    /// skipped: they only keep the host from answering, forwarding works without them.
    pub(crate) fn apply(dev: &str) -> Quieted {
        let mut saved = Vec::new();
        for (path, value) in knobs(dev) {
            if let Ok(old) = fs::read_to_string(&path) {
                if fs::write(&path, value).is_ok() {
                    saved.push((path, old.trim().to_owned()));
                }
            }
        }
        Quieted { saved }
    }

    /// Takes `other`'s saved values unless this one already holds some.
    pub(crate) fn keep_first(&mut self, other: Quieted) {
        if self.saved.is_empty() {
            self.saved = other.saved;
        }
    }

    /// Puts the old values back (the device may be gone: then nothing is left to restore).
    pub(crate) fn restore(&mut self) {
        for (path, old) in self.saved.drain(..) {
            let _ = fs::write(&path, old);
        }
    }
}
