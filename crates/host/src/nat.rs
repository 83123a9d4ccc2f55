//! NAT for a bridge's network, as Docker's bridge network does it, in an nftables table
//! of vbridge's own, `ip vbridge_<bridge>`: source NAT (masquerade) for the bridge's
//! subnets leaving by any other interface, and published ports (DNAT of a host port to
//! an address and port behind the bridge, for traffic from outside, from the host
//! itself and from the bridge's own network, whose hairpinned connections are
//! masqueraded so the replies come back the same way). The table is vbridge's alone:
//! [`apply`] rewrites it whole, [`remove`] deletes it, and [`intact`] tells whether
//! someone changed it. Uses the `nft` program through the `nftables` crate's JSON API.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::expr::{
    CT, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, SetItem,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::{Deserialize, Serialize};

use crate::error::HostError;

/// The name of the table that holds a bridge's NAT rules.
pub fn table_name(bridge: &str) -> String {
    format!("vbridge_{bridge}")
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A published port: `host_ip:host_port/proto` (any local address when `host_ip` is
/// `None`) forwarded to `to:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Publish {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub to: Ipv4Addr,
    pub port: u16,
}

impl Publish {
    /// Whether `self` and `other` claim the same host port (same protocol and port, and
    /// the same address or either on every address).
    pub fn clashes(&self, other: &Publish) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }

    /// Parses Docker's `-p` form: `[HOSTIP:]HOSTPORT:PORT[/tcp|/udp]` (tcp by default),
    /// forwarding to `to`.
    pub fn parse(s: &str, to: Ipv4Addr) -> Result<Publish, String> {
        let (ports, proto) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, Proto::Tcp),
            Some((p, "udp")) => (p, Proto::Udp),
            Some((_, other)) => return Err(format!("{s:?}: protocol {other:?}: use tcp or udp")),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let port = |p: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{s:?}: {p:?} is not a port (1-65535)"))
        };
        let (host_ip, host_port, inner) = match parts.as_slice() {
            [h, p] => (None, port(h)?, port(p)?),
            [ip, h, p] => (
                Some(
                    ip.parse::<Ipv4Addr>()
                        .map_err(|_| format!("{s:?}: {ip:?} is not an IPv4 address"))?,
                ),
                port(h)?,
                port(p)?,
            ),
            _ => {
                return Err(format!(
                    "{s:?}: write HOSTPORT:PORT[/PROTO] or HOSTIP:HOSTPORT:PORT[/PROTO], e.g. 8080:80/tcp"
                ));
            }
        };
        Ok(Publish {
            host_ip,
            host_port,
            proto,
            to,
            port: inner,
        })
    }
}

impl std::fmt::Display for Publish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}/{} -> {}:{}",
            self.host_port,
            self.proto.name(),
            self.to,
            self.port
        )
    }
}

/// Everything a bridge's table holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    /// The bridge's IPv4 subnets (network, prefix length).
    pub subnets: Vec<(Ipv4Addr, u8)>,
    /// Other interfaces of the same switch (a bridge's VLAN gateways): traffic to them
    /// is routed, not masqueraded.
    #[serde(default)]
    pub also: Vec<String>,
    /// Masquerade the subnets on their way out of the host.
    pub masquerade: bool,
    pub publish: Vec<Publish>,
}

impl Rules {
    /// Whether the table would hold nothing.
    pub fn is_empty(&self) -> bool {
        !self.masquerade && self.publish.is_empty()
    }

    /// The rules of each chain, as [`apply`] writes them.
    fn chains(
        &self,
        bridge: &str,
    ) -> Vec<(&'static str, NfHook, i32, Vec<Vec<Statement<'static>>>)> {
        let mut post = Vec::new();
        let mut inside = vec![bridge.to_owned()];
        inside.extend(self.also.iter().cloned());
        for (net, len) in &self.subnets {
            let from = saddr_in(*net, *len);
            if self.masquerade {
                post.push(vec![
                    from.clone(),
                    oifname(&inside, Operator::NEQ),
                    Statement::Masquerade(None),
                ]);
            }
            if !self.publish.is_empty() {
                // Hairpin: the bridge's own network reaching a published port.
                post.push(vec![
                    from,
                    oifname(&inside, Operator::EQ),
                    ct_status_dnat(),
                    Statement::Masquerade(None),
                ]);
            }
        }
        let dnat: Vec<Vec<Statement<'static>>> = self.publish.iter().map(dnat_rule).collect();
        vec![
            ("prerouting", NfHook::Prerouting, -100, dnat.clone()),
            ("output", NfHook::Output, -100, dnat),
            ("postrouting", NfHook::Postrouting, 100, post),
        ]
    }
}

fn nft_error(
    action: &'static str,
    table: &str,
) -> impl FnOnce(nftables::helper::NftablesError) -> HostError {
    let table = table.to_owned();
    move |source| HostError::Nft {
        action,
        table,
        source: Box::new(source),
    }
}

fn field(proto: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Borrowed(proto),
            field: Cow::Borrowed(name),
        },
    )))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn saddr_in(net: Ipv4Addr, len: u8) -> Statement<'static> {
    matches(
        field("ip", "saddr"),
        Operator::EQ,
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(Expression::String(Cow::Owned(mask(net, len).to_string()))),
            len: u32::from(len),
        })),
    )
}

/// `oifname OP NAME`, or `oifname OP { NAMES }` for several (`!=`: none of them).
fn oifname(names: &[String], op: Operator) -> Statement<'static> {
    let right = match names {
        [one] => Expression::String(Cow::Owned(one.clone())),
        many => Expression::Named(NamedExpression::Set(
            many.iter()
                .map(|n| SetItem::Element(Expression::String(Cow::Owned(n.clone()))))
                .collect(),
        )),
    };
    let op = match (names.len(), op) {
        (1, op) => op,
        (_, Operator::NEQ) => Operator::NEQ,
        (_, _) => Operator::IN,
    };
    matches(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::Oifname,
        })),
        op,
        right,
    )
}

fn ct_status_dnat() -> Statement<'static> {
    matches(
        Expression::Named(NamedExpression::CT(CT {
            key: Cow::Borrowed("status"),
            family: None,
            dir: None,
        })),
        Operator::IN,
        Expression::String(Cow::Borrowed("dnat")),
    )
}

/// `fib daddr type local [ip daddr HOST] meta l4proto P th dport N dnat to TO:PORT`.
fn dnat_rule(p: &Publish) -> Vec<Statement<'static>> {
    let mut flags = std::collections::HashSet::new();
    flags.insert(FibFlag::Daddr);
    let mut v = vec![matches(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags,
        })),
        Operator::EQ,
        Expression::String(Cow::Borrowed("local")),
    )];
    if let Some(ip) = p.host_ip {
        v.push(matches(
            field("ip", "daddr"),
            Operator::EQ,
            Expression::String(Cow::Owned(ip.to_string())),
        ));
    }
    v.push(matches(
        Expression::Named(NamedExpression::Meta(Meta {
            key: MetaKey::L4proto,
        })),
        Operator::EQ,
        Expression::String(Cow::Borrowed(p.proto.name())),
    ));
    v.push(matches(
        field("th", "dport"),
        Operator::EQ,
        Expression::Number(u32::from(p.host_port)),
    ));
    v.push(Statement::DNAT(Some(NAT {
        addr: Some(Expression::String(Cow::Owned(p.to.to_string()))),
        family: Some(NATFamily::IP),
        port: Some(Expression::Number(u32::from(p.port))),
        flags: None,
    })));
    v
}

/// Writes the bridge's table to hold exactly `rules` (created if missing, emptied
/// first), in one transaction.
pub fn apply(bridge: &str, rules: &Rules) -> Result<(), HostError> {
    let table = table_name(bridge);
    let t: Cow<'_, str> = Cow::Owned(table.clone());
    let mut objects = vec![
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(Table {
            family: NfFamily::IP,
            name: t.clone(),
            ..Table::default()
        }))),
        NfObject::CmdObject(NfCmd::Flush(nftables::schema::FlushObject::Table(Table {
            family: NfFamily::IP,
            name: t.clone(),
            ..Table::default()
        }))),
    ];
    for (name, hook, prio, rules) in rules.chains(bridge) {
        objects.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(
            Chain {
                family: NfFamily::IP,
                table: t.clone(),
                name: Cow::Borrowed(name),
                _type: Some(NfChainType::NAT),
                hook: Some(hook),
                prio: Some(prio),
                policy: Some(NfChainPolicy::Accept),
                ..Chain::default()
            },
        ))));
        for expr in rules {
            objects.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(Rule {
                family: NfFamily::IP,
                table: t.clone(),
                chain: Cow::Borrowed(name),
                expr: Cow::Owned(expr),
                ..Rule::default()
            }))));
        }
    }
    let ruleset = Nftables {
        objects: Cow::Owned(objects),
    };
    nftables::helper::apply_ruleset(&ruleset).map_err(nft_error("set up", &table))
}

/// Masquerades IPv4 traffic from `subnets` (network, prefix length) that leaves by any
/// interface but `bridge`, and nothing else. Replaces whatever the bridge's table held.
pub fn masquerade(bridge: &str, subnets: &[(Ipv4Addr, u8)]) -> Result<(), HostError> {
    apply(
        bridge,
        &Rules {
            subnets: subnets.to_vec(),
            also: Vec::new(),
            masquerade: true,
            publish: Vec::new(),
        },
    )
}

/// Removes the bridge's NAT table; not an error when there is none.
pub fn remove(bridge: &str) -> Result<(), HostError> {
    let table = table_name(bridge);
    if !exists(bridge)? {
        return Ok(());
    }
    let ruleset = Nftables {
        objects: Cow::Owned(vec![NfObject::CmdObject(NfCmd::Delete(
            NfListObject::Table(Table {
                family: NfFamily::IP,
                name: Cow::Owned(table.clone()),
                ..Table::default()
            }),
        ))]),
    };
    nftables::helper::apply_ruleset(&ruleset).map_err(nft_error("delete", &table))
}

/// Whether the bridge's NAT table exists.
pub fn exists(bridge: &str) -> Result<bool, HostError> {
    let table = table_name(bridge);
    let tables = nftables::helper::get_current_ruleset_with_args(
        nftables::helper::DEFAULT_NFT,
        &["list", "tables"],
    )
    .map_err(nft_error("list", &table))?;
    Ok(tables.objects.iter().any(|o| {
        matches!(o, NfObject::ListObject(NfListObject::Table(t)) if t.name == table && t.family == NfFamily::IP)
    }))
}

/// Whether the bridge's table still holds what [`apply`] wrote for `rules`: the table,
/// its three chains on their hooks, and as many rules in each as written (a flushed,
/// deleted or edited table is not intact).
pub fn intact(bridge: &str, rules: &Rules) -> Result<bool, HostError> {
    if !exists(bridge)? {
        return Ok(false);
    }
    let table = table_name(bridge);
    let listed = nftables::helper::get_current_ruleset_with_args(
        nftables::helper::DEFAULT_NFT,
        &["list", "table", "ip", table.as_str()],
    )
    .map_err(nft_error("list", &table))?;
    for (name, hook, _, want) in rules.chains(bridge) {
        let chain_ok = listed.objects.iter().any(|o| {
            matches!(o, NfObject::ListObject(NfListObject::Chain(c))
                if c.name == name && c.hook == Some(hook))
        });
        let count = listed
            .objects
            .iter()
            .filter(|o| matches!(o, NfObject::ListObject(NfListObject::Rule(r)) if r.chain == name))
            .count();
        if !chain_ok || count != want.len() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `net` with the host bits below `len` cleared.
fn mask(net: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::from(net);
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    Ipv4Addr::from(bits & m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_host_bits() {
        assert_eq!(
            mask(Ipv4Addr::new(192, 168, 88, 1), 24),
            Ipv4Addr::new(192, 168, 88, 0)
        );
        assert_eq!(mask(Ipv4Addr::new(10, 1, 2, 3), 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            mask(Ipv4Addr::new(10, 1, 2, 3), 32),
            Ipv4Addr::new(10, 1, 2, 3)
        );
        assert_eq!(table_name("br0"), "vbridge_br0");
    }

    /// The rules as nft's JSON: masquerade out of other interfaces, the hairpin rule only
    /// with published ports, DNAT in prerouting and output alike.
    #[test]
    fn rules_become_the_chains_docker_has() {
        let r = Rules {
            subnets: vec![(Ipv4Addr::new(192, 168, 88, 1), 24)],
            also: vec![],
            masquerade: true,
            publish: vec![Publish {
                host_ip: None,
                host_port: 8080,
                proto: Proto::Tcp,
                to: Ipv4Addr::new(192, 168, 88, 2),
                port: 80,
            }],
        };
        let chains = r.chains("br0");
        let json = |v: &Vec<Statement<'_>>| serde_json::to_string(v).unwrap();
        let (name, _, _, pre) = &chains[0];
        assert_eq!(*name, "prerouting");
        assert_eq!(pre.len(), 1);
        let j = json(&pre[0]);
        for want in [
            "\"fib\"",
            "\"local\"",
            "\"th\"",
            "8080",
            "\"dnat\"",
            "192.168.88.2",
            "80",
        ] {
            assert!(j.contains(want), "{want} in {j}");
        }
        assert_eq!(chains[1].3.len(), 1, "output as prerouting");
        let post = &chains[2].3;
        assert_eq!(post.len(), 2);
        assert!(json(&post[0]).contains("\"!=\"") && json(&post[0]).contains("192.168.88.0"));
        assert!(json(&post[1]).contains("\"ct\"") && json(&post[1]).contains("dnat"));
        let plain = Rules {
            publish: vec![],
            ..r
        };
        assert_eq!(
            plain.chains("br0")[2].3.len(),
            1,
            "no hairpin rule without ports"
        );
        assert!(Rules::default().is_empty());
    }

    /// A bridge's VLAN gateways are inside: their subnets reach each other routed, and
    /// only what leaves by another interface is masqueraded.
    #[test]
    fn other_interfaces_of_the_switch_are_not_masqueraded() {
        let r = Rules {
            subnets: vec![(Ipv4Addr::new(10, 10, 0, 1), 24)],
            also: vec!["br0".into(), "br0.20".into()],
            masquerade: true,
            publish: vec![],
        };
        let post = &r.chains("br0.10")[2].3;
        assert_eq!(post.len(), 1);
        let j = serde_json::to_string(&post[0]).unwrap();
        assert!(
            j.contains(r#"{"match":{"left":{"meta":{"key":"oifname"}},"right":{"set":["br0.10","br0","br0.20"]},"op":"!="}}"#),
            "{j}"
        );
    }

    #[test]
    fn docker_publish_forms() {
        let to = Ipv4Addr::new(10, 0, 0, 2);
        let p = Publish::parse("8080:80/tcp", to).unwrap();
        assert_eq!(
            (p.host_ip, p.host_port, p.port, p.proto),
            (None, 8080, 80, Proto::Tcp)
        );
        let p = Publish::parse("127.0.0.1:5353:53/udp", to).unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.proto, Proto::Udp);
        assert_eq!(Publish::parse("8080:80", to).unwrap().proto, Proto::Tcp);
        for bad in [
            "8080",
            "0:80",
            "8080:80/sctp",
            "x:8080:80",
            "70000:80",
            "1:2:3:4",
        ] {
            assert!(Publish::parse(bad, to).is_err(), "{bad}");
        }
        let a = Publish::parse("8080:80", to).unwrap();
        assert!(a.clashes(&Publish::parse("10.0.0.1:8080:81", to).unwrap()));
        assert!(!a.clashes(&Publish::parse("8080:80/udp", to).unwrap()));
        let b = Publish::parse("10.0.0.1:9000:80", to).unwrap();
        assert!(!b.clashes(&Publish::parse("10.0.0.2:9000:80", to).unwrap()));
    }
}
