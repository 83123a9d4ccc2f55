//! A DHCP network's settings and their checks: the range inside the subnet, not over
//! the server's own address or a static lease; static leases inside the subnet, each MAC
//! and address once.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A fixed address for one MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Static {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

/// One network the server hands addresses out on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The server's own address on the network (its identifier, and the default router).
    pub server: Ipv4Addr,
    /// The network's prefix length (the network is `server`'s).
    pub prefix: u8,
    /// First and last address handed out (inclusive).
    pub range: (Ipv4Addr, Ipv4Addr),
    /// Lease time, seconds.
    pub lease_secs: u32,
    /// The router clients get; `None`: the server's address.
    pub router: Option<Ipv4Addr>,
    /// Hand out no router at all (a network with no way out, such as Neutron's local).
    #[serde(default)]
    pub no_router: bool,
    /// DNS servers clients get (none: the option is left out).
    pub dns: Vec<Ipv4Addr>,
    pub statics: Vec<Static>,
}

/// Why a [`Config`] cannot be used; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("range: {0}")]
    Range(String),
    #[error("lease: {0}")]
    Lease(String),
    #[error("static: {0}")]
    Static(String),
    #[error("{0}")]
    Subnet(String),
}

fn u(a: Ipv4Addr) -> u32 {
    u32::from(a)
}

impl Config {
    /// The subnet mask.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }

    /// Whether `ip` is in the server's subnet.
    pub fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let m = u(self.mask());
        u(ip) & m == u(self.server) & m
    }

    /// The subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u(self.server) | !u(self.mask()))
    }

    /// Whether `ip` is in the range handed out.
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (u(self.range.0)..=u(self.range.1)).contains(&u(ip))
    }

    /// Checks everything a server needs of these settings.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(1..=30).contains(&self.prefix) {
            return Err(ConfigError::Subnet(format!(
                "a /{} network has no room for DHCP clients (use /1 to /30)",
                self.prefix
            )));
        }
        let (a, b) = self.range;
        if u(a) > u(b) {
            return Err(ConfigError::Range(format!(
                "{a}-{b}: the first address is above the last"
            )));
        }
        for end in [a, b] {
            if !self.in_subnet(end) {
                return Err(ConfigError::Range(format!(
                    "{a}-{b}: {end} is outside the network {}/{}",
                    Ipv4Addr::from(u(self.server) & u(self.mask())),
                    self.prefix
                )));
            }
        }
        let net = Ipv4Addr::from(u(self.server) & u(self.mask()));
        if self.in_range(net) || self.in_range(self.broadcast()) {
            return Err(ConfigError::Range(format!(
                "{a}-{b}: includes the network address {net} or the broadcast address {}",
                self.broadcast()
            )));
        }
        if self.in_range(self.server) {
            return Err(ConfigError::Range(format!(
                "{a}-{b}: includes the server's (gateway's) own address {}",
                self.server
            )));
        }
        if let Some(r) = self.router {
            if !self.in_subnet(r) {
                return Err(ConfigError::Subnet(format!(
                    "router {r} is outside the network {net}/{}",
                    self.prefix
                )));
            }
            if self.in_range(r) {
                return Err(ConfigError::Range(format!(
                    "{a}-{b}: includes the router {r}"
                )));
            }
        }
        if self.lease_secs < 60 {
            return Err(ConfigError::Lease(format!(
                "{} s is too short (at least 60)",
                self.lease_secs
            )));
        }
        for (i, s) in self.statics.iter().enumerate() {
            let mac = mac_text(s.mac);
            if !self.in_subnet(s.ip) || s.ip == net || s.ip == self.broadcast() {
                return Err(ConfigError::Static(format!(
                    "{mac}: {} is not a host address of {net}/{}",
                    s.ip, self.prefix
                )));
            }
            if s.ip == self.server || Some(s.ip) == self.router {
                return Err(ConfigError::Static(format!(
                    "{mac}: {} is the server's or router's own address",
                    s.ip
                )));
            }
            if self.in_range(s.ip) {
                return Err(ConfigError::Range(format!(
                    "{a}-{b}: overlaps the static lease {} of {mac}",
                    s.ip
                )));
            }
            if self.statics[..i].iter().any(|o| o.mac == s.mac) {
                return Err(ConfigError::Static(format!("{mac} has two static leases")));
            }
            if self.statics[..i].iter().any(|o| o.ip == s.ip) {
                return Err(ConfigError::Static(format!(
                    "{} is given to two MACs",
                    s.ip
                )));
            }
        }
        Ok(())
    }

    /// Addresses in the range.
    pub fn range_len(&self) -> u32 {
        u(self.range.1).saturating_sub(u(self.range.0)) + 1
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub(crate) fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn net() -> Config {
        Config {
            server: Ipv4Addr::new(192, 168, 88, 1),
            prefix: 24,
            range: (
                Ipv4Addr::new(192, 168, 88, 100),
                Ipv4Addr::new(192, 168, 88, 200),
            ),
            lease_secs: 3600,
            router: None,
            no_router: false,
            dns: vec![],
            statics: vec![Static {
                mac: [2, 0, 0, 0, 0, 0x10],
                ip: Ipv4Addr::new(192, 168, 88, 10),
            }],
        }
    }

    #[test]
    fn a_good_network_passes() {
        assert_eq!(net().check(), Ok(()));
        assert_eq!(net().mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(net().broadcast(), Ipv4Addr::new(192, 168, 88, 255));
        assert_eq!(net().range_len(), 101);
    }

    #[test]
    fn bad_networks_are_refused_naming_the_field() {
        let bad = |f: &dyn Fn(&mut Config), says: &str| {
            let mut c = net();
            f(&mut c);
            let e = c.check().expect_err(says).to_string();
            assert!(e.contains(says), "{e:?} should say {says:?}");
        };
        bad(
            &|c| c.range.0 = Ipv4Addr::new(192, 168, 87, 1),
            "outside the network",
        );
        bad(&|c| c.range = (c.range.1, c.range.0), "above the last");
        bad(
            &|c| c.range.0 = Ipv4Addr::new(192, 168, 88, 1),
            "server's (gateway's)",
        );
        bad(
            &|c| c.range.1 = Ipv4Addr::new(192, 168, 88, 255),
            "broadcast",
        );
        bad(
            &|c| c.statics[0].ip = Ipv4Addr::new(192, 168, 88, 150),
            "overlaps the static lease",
        );
        bad(
            &|c| c.statics[0].ip = Ipv4Addr::new(10, 0, 0, 1),
            "not a host address",
        );
        bad(&|c| c.statics.push(c.statics[0]), "two static leases");
        bad(&|c| c.lease_secs = 5, "too short");
        bad(&|c| c.prefix = 31, "no room");
        bad(
            &|c| c.router = Some(Ipv4Addr::new(192, 168, 88, 120)),
            "includes the router",
        );
    }
}
