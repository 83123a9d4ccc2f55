//! The rules every name and address in a topology file, the CLI and the API must follow,
//! and [`Checker`], which turns a broken rule in a file into an error naming the file,
//! the line and the field.

use std::net::IpAddr;

use toml::Spanned;

use super::TopologyError;

/// Checks a route: destination `to` a network (no host bits set) and next hop `via` an
/// address of the same family. Returns both as written canonically.
pub(crate) fn check_route(to: &str, via: &str) -> Result<(String, String), String> {
    let (dest, prefix) = parse_cidr(to)?;
    let host_bits = match dest {
        IpAddr::V4(a) => u32::from(a).checked_shl(u32::from(prefix)).unwrap_or(0) != 0,
        IpAddr::V6(a) => u128::from(a).checked_shl(u32::from(prefix)).unwrap_or(0) != 0,
    };
    if host_bits {
        return Err(format!(
            "{to} is not a network: its address has bits set past the prefix length"
        ));
    }
    let gw: IpAddr = via
        .parse()
        .map_err(|_| format!("next hop {via:?} is not an IP address"))?;
    if gw.is_ipv4() != dest.is_ipv4() {
        return Err(format!("next hop {via} is not of the same family as {to}"));
    }
    Ok((format!("{dest}/{prefix}"), gw.to_string()))
}

/// Checks a CIDR like `10.0.0.1/24` or `fd00::1/64`.
pub(crate) fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not an address with a prefix length, like 10.0.0.2/24"))?;
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = p
        .parse()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("prefix length {p:?} must be 0..={max}"))?;
    Ok((addr, prefix))
}

pub(super) struct Checker<'a> {
    pub(super) file: &'a str,
    pub(super) src: &'a str,
}

impl Checker<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    pub(super) fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        field: String,
        message: String,
    ) -> Result<T, TopologyError> {
        Err(TopologyError {
            file: self.file.to_owned(),
            line: self.line_of(span.start),
            field,
            message,
        })
    }

    pub(super) fn name(&self, v: &Spanned<String>, field: String) -> Result<String, TopologyError> {
        match crate::names::check_ifname(v.get_ref()) {
            Ok(()) => Ok(v.get_ref().clone()),
            Err(m) => self.err(v.span(), field, m),
        }
    }

    pub(super) fn cidrs(
        &self,
        v: &[Spanned<String>],
        field: &str,
    ) -> Result<Vec<String>, TopologyError> {
        v.iter()
            .enumerate()
            .map(|(i, a)| match parse_cidr(a.get_ref()) {
                Ok((ip, p)) => Ok(format!("{ip}/{p}")),
                Err(m) => self.err(a.span(), format!("{field}[{i}]"), m),
            })
            .collect()
    }

    pub(super) fn vid(&self, v: &Spanned<u16>, field: String) -> Result<u16, TopologyError> {
        if (1..=4094).contains(v.get_ref()) {
            Ok(*v.get_ref())
        } else {
            self.err(
                v.span(),
                field,
                format!("VLAN id {} is invalid: use 1..=4094", v.get_ref()),
            )
        }
    }
}
