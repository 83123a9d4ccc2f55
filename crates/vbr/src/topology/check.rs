//! The rules every name and address in a topology file, the CLI and the API must follow,
//! and [`Checker`], which turns a broken rule in a file into an error naming the file,
//! the line and the field.

use std::net::IpAddr;

use ipnet::IpNet;

use toml::Spanned;
use vbridge_core::Vid;

use super::TopologyError;

/// Checks a route: destination `to` a network (no host bits set) and next hop `via` an
/// address of the same family.
pub(crate) fn check_route(to: &str, via: &str) -> Result<(IpNet, IpAddr), String> {
    let dest = parse_cidr(to)?;
    let gw: IpAddr = via
        .parse()
        .map_err(|_| format!("next hop {via:?} is not an IP address"))?;
    route_ok(dest, gw)?;
    Ok((dest, gw))
}

/// Checks a route already parsed (as the API carries it).
pub(crate) fn route_ok(to: IpNet, via: IpAddr) -> Result<(), String> {
    if to.addr() != to.network() {
        return Err(format!(
            "{to} is not a network: its address has bits set past the prefix length"
        ));
    }
    if via.is_ipv4() != to.addr().is_ipv4() {
        return Err(format!("next hop {via} is not of the same family as {to}"));
    }
    Ok(())
}

/// Checks an address with its prefix length, like `10.0.0.1/24` or `fd00::1/64`.
pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, String> {
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
    IpNet::new(addr, prefix).map_err(|e| e.to_string())
}

pub(super) struct Checker<'a> {
    pub(super) file: &'a str,
    /// Where each line after the first starts.
    line_starts: Vec<usize>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(file: &'a str, src: &str) -> Checker<'a> {
        let line_starts = src
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        Checker { file, line_starts }
    }

    /// The line (from 1) of byte `offset`.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|s| *s <= offset) + 1
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
    ) -> Result<Vec<IpNet>, TopologyError> {
        v.iter()
            .enumerate()
            .map(|(i, a)| match parse_cidr(a.get_ref()) {
                Ok(net) => Ok(net),
                Err(m) => self.err(a.span(), format!("{field}[{i}]"), m),
            })
            .collect()
    }

    pub(super) fn vid(&self, v: &Spanned<u16>, field: String) -> Result<Vid, TopologyError> {
        if let Ok(vid) = Vid::new(*v.get_ref()) {
            Ok(vid)
        } else {
            self.err(
                v.span(),
                field,
                format!("VLAN id {} is invalid: use 1..=4094", v.get_ref()),
            )
        }
    }
}
