//! `[bridge.dhcp]` in a topology file: the range, lease time, DNS servers and static
//! leases of a bridge's DHCP server, checked with the file's line numbers. The server's
//! address (and the clients' router) is the bridge's IPv4 address in the range's
//! network.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use vbridge_core::MacAddr;
use vbridge_dhcp::{Config, ConfigError, Static};

use super::TopologyError;
use super::check::Checker;

/// Default lease time, seconds.
const LEASE: u32 = 3600;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DhcpDef {
    range: Spanned<String>,
    lease: Option<Spanned<u32>>,
    #[serde(default)]
    dns: Vec<Spanned<String>>,
    #[serde(default, rename = "static")]
    statics: Vec<Spanned<StaticDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticDef {
    mac: String,
    ip: String,
}

fn v4(s: &str) -> Result<Ipv4Addr, String> {
    s.trim()
        .parse::<Ipv4Addr>()
        .map_err(|_| format!("{s:?} is not an IPv4 address"))
}

/// The server settings of `def`, for a bridge with `addresses`; `at` names the bridge's
/// entry (`bridge[0]`).
pub(super) fn plan(
    c: &Checker<'_>,
    def: &DhcpDef,
    at: &str,
    addresses: &[IpNet],
) -> Result<Config, TopologyError> {
    let f = |x: &str| format!("{at}.dhcp.{x}");
    let r = &def.range;
    let Some((a, b)) = r.get_ref().split_once('-') else {
        return c.err(
            r.span(),
            f("range"),
            format!(
                "{:?}: write FIRST-LAST, e.g. 192.168.88.100-192.168.88.200",
                r.get_ref()
            ),
        );
    };
    let (first, last) = match (v4(a), v4(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(m), _) | (_, Err(m)) => return c.err(r.span(), f("range"), m),
    };
    let Some(net) = addresses.iter().find_map(|n| match n {
        IpNet::V4(n) if n.contains(&first) => Some(*n),
        _ => None,
    }) else {
        return c.err(
            r.span(),
            f("range"),
            format!(
                "no address of the bridge is in the network of {first}: give the bridge one there (it is the DHCP server's and the clients' gateway)"
            ),
        );
    };
    let mut dns = Vec::new();
    for (i, d) in def.dns.iter().enumerate() {
        match v4(d.get_ref()) {
            Ok(ip) => dns.push(ip),
            Err(m) => return c.err(d.span(), format!("{}[{i}]", f("dns")), m),
        }
    }
    let mut statics = Vec::new();
    for (i, s) in def.statics.iter().enumerate() {
        let field = format!("{}[{i}]", f("static"));
        let mac = match s.get_ref().mac.parse::<MacAddr>() {
            Ok(m) if m.is_unicast() => m,
            Ok(_) => return c.err(s.span(), field, "mac must be a unicast address".into()),
            Err(e) => return c.err(s.span(), field, format!("mac: {e}")),
        };
        let ip = match v4(&s.get_ref().ip) {
            Ok(ip) => ip,
            Err(m) => return c.err(s.span(), field, format!("ip: {m}")),
        };
        statics.push(Static {
            mac: mac.octets(),
            ip,
        });
    }
    let config = Config {
        server: net.addr(),
        prefix: net.prefix_len(),
        range: (first, last),
        lease_secs: def.lease.as_ref().map_or(LEASE, |l| *l.get_ref()),
        router: None,
        no_router: false,
        dns,
        statics,
    };
    match config.check() {
        Ok(()) => Ok(config),
        Err(e) => {
            let (span, field) = match &e {
                ConfigError::Lease(_) => (
                    def.lease.as_ref().map_or(r.span(), Spanned::span),
                    f("lease"),
                ),
                ConfigError::Static(_) => (
                    def.statics.first().map_or(r.span(), Spanned::span),
                    f("static"),
                ),
                _ => (r.span(), f("range")),
            };
            let m = e.to_string();
            let m = m
                .split_once(": ")
                .map_or(m.as_str(), |(_, rest)| rest)
                .to_owned();
            c.err(span, field, m)
        }
    }
}

/// A namespace's `dhcp = true`: no addresses or gateway of its own, and a bridge (or the
/// namespace's VLAN of it) that serves DHCP.
pub(super) fn check_client(
    c: &Checker<'_>,
    at: &str,
    dhcp: &Spanned<bool>,
    addresses: &[IpNet],
    gateway: Option<IpAddr>,
    serves: bool,
    what: &str,
) -> Result<(), TopologyError> {
    if !*dhcp.get_ref() {
        return Ok(());
    }
    let field = format!("{at}.dhcp");
    if !addresses.is_empty() || gateway.is_some() {
        return c.err(
            dhcp.span(),
            field,
            "give either addresses (and a gateway) or dhcp = true, not both".into(),
        );
    }
    if !serves {
        return c.err(
            dhcp.span(),
            field,
            format!(
                "{what} has no DHCP server: give it a [bridge.dhcp] section (for a VLAN: dhcp = {{ range = \"...\" }} in its [[bridge.vlan]])"
            ),
        );
    }
    Ok(())
}
