//! The lease table: who holds which address until when, addresses taken out of use by
//! a DECLINE, and the search for a free address. An address has at most one holder;
//! a client at most one address, so the table never grows past the addresses it has
//! handed out. Expired leases stay as history (a client coming back gets its old
//! address if nobody took it) until their address goes to someone else.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::Config;

/// A lease as the daemon persists and lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The client's identifier (option 61, or 01 and its MAC), as hex.
    pub client: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// Seconds since the Unix epoch.
    pub expires: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) mac: [u8; 6],
    pub(crate) ip: Ipv4Addr,
    pub(crate) expires: u64,
    /// Acknowledged (not just offered).
    pub(crate) bound: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    by_client: HashMap<Vec<u8>, Lease>,
    by_ip: HashMap<Ipv4Addr, Vec<u8>>,
    /// Addresses a client declined (in use by someone unknown), until when.
    declined: HashMap<Ipv4Addr, u64>,
    /// Where the search for a free address goes on from (an offset into the range).
    cursor: u32,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Table {
    pub(crate) fn get(&self, client: &[u8]) -> Option<&Lease> {
        self.by_client.get(client)
    }

    /// The client holding `ip` now (an unexpired lease or offer), if any.
    pub(crate) fn holder(&self, now: u64, ip: Ipv4Addr) -> Option<&[u8]> {
        let c = self.by_ip.get(&ip)?;
        let l = self.by_client.get(c)?;
        (l.expires > now).then_some(c.as_slice())
    }

    pub(crate) fn declined(&self, now: u64, ip: Ipv4Addr) -> bool {
        self.declined.get(&ip).is_some_and(|until| *until > now)
    }

    /// Whether `client` (with `mac`) may have `ip` now.
    pub(crate) fn usable(
        &self,
        cfg: &Config,
        now: u64,
        ip: Ipv4Addr,
        client: &[u8],
        mac: [u8; 6],
    ) -> bool {
        if let Some(s) = cfg.statics.iter().find(|s| s.ip == ip) {
            return s.mac == mac;
        }
        cfg.in_range(ip)
            && !self.declined(now, ip)
            && self.holder(now, ip).is_none_or(|h| h == client)
    }

    /// Gives `ip` to `client` (its previous address, and the address's previous
    /// holder's record, are let go).
    pub(crate) fn set(&mut self, client: &[u8], lease: Lease) {
        if let Some(old) = self.by_client.get(client) {
            if old.ip != lease.ip {
                self.by_ip.remove(&old.ip);
            }
        }
        if let Some(prev) = self.by_ip.insert(lease.ip, client.to_vec()) {
            if prev != client {
                self.by_client.remove(&prev);
            }
        }
        self.by_client.insert(client.to_vec(), lease);
    }

    /// Ends `client`'s lease now (the record stays as history).
    pub(crate) fn end(&mut self, client: &[u8], now: u64) -> Option<Lease> {
        let l = self.by_client.get_mut(client)?;
        l.expires = l.expires.min(now);
        l.bound = false;
        Some(l.clone())
    }

    /// Forgets an offer `client` did not take.
    pub(crate) fn drop_offer(&mut self, client: &[u8]) {
        if self.by_client.get(client).is_some_and(|l| !l.bound) {
            if let Some(l) = self.by_client.remove(client) {
                self.by_ip.remove(&l.ip);
            }
        }
    }

    pub(crate) fn decline(&mut self, ip: Ipv4Addr, until: u64) {
        self.declined.insert(ip, until);
        if let Some(c) = self.by_ip.remove(&ip) {
            self.by_client.remove(&c);
        }
    }

    /// The next address of the range `client` may have, searching on from where the
    /// last search stopped.
    pub(crate) fn next_free(
        &mut self,
        cfg: &Config,
        now: u64,
        client: &[u8],
        mac: [u8; 6],
    ) -> Option<Ipv4Addr> {
        let n = cfg.range_len();
        let start = u32::from(cfg.range.0);
        for i in 0..n {
            let off = (self.cursor + i) % n;
            let ip = Ipv4Addr::from(start + off);
            if self.usable(cfg, now, ip, client, mac) {
                self.cursor = (off + 1) % n;
                return Some(ip);
            }
        }
        None
    }

    /// Acknowledged, unexpired leases, by address.
    pub(crate) fn records(&self, now: u64) -> Vec<LeaseRecord> {
        let mut v: Vec<LeaseRecord> = self
            .by_client
            .iter()
            .filter(|(_, l)| l.bound && l.expires > now)
            .map(|(c, l)| LeaseRecord {
                client: hex(c),
                mac: l.mac,
                ip: l.ip,
                expires: l.expires,
            })
            .collect();
        v.sort_by_key(|r| u32::from(r.ip));
        v
    }

    /// Takes back persisted leases: those still valid for `cfg` (in its range or a
    /// static lease of their MAC, unexpired, one per address and client). Returns how
    /// many were left out.
    pub(crate) fn restore(&mut self, cfg: &Config, now: u64, records: &[LeaseRecord]) -> usize {
        let mut left = 0;
        for r in records {
            let Some(client) = unhex(&r.client) else {
                left += 1;
                continue;
            };
            let ok = r.expires > now
                && self.usable(cfg, now, r.ip, &client, r.mac)
                && self.get(&client).is_none();
            if ok {
                self.set(
                    &client,
                    Lease {
                        mac: r.mac,
                        ip: r.ip,
                        expires: r.expires,
                        bound: true,
                    },
                );
            } else {
                left += 1;
            }
        }
        left
    }
}
