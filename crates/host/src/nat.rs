//! Source NAT for a bridge's subnets, as Docker's bridge network does it: an nftables
//! table `ip vbridge_<bridge>` whose postrouting chain masquerades traffic from the
//! bridge's subnets leaving by any other interface, plus `net.ipv4.ip_forward`. The table
//! is vbridge's alone, so removing it removes exactly what was added. Uses the `nft`
//! program through the `nftables` crate's JSON API.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::error::HostError;

/// The name of the table that holds a bridge's NAT rules.
pub fn table_name(bridge: &str) -> String {
    format!("vbridge_{bridge}")
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

/// Masquerades IPv4 traffic from `subnets` (network, prefix length) that leaves by any
/// interface but `bridge`. Replaces whatever the bridge's table held.
pub fn masquerade(bridge: &str, subnets: &[(Ipv4Addr, u8)]) -> Result<(), HostError> {
    let table = table_name(bridge);
    let t: Cow<'_, str> = Cow::Owned(table.clone());
    let mut objects = vec![
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(Table {
            family: NfFamily::IP,
            name: t.clone(),
            ..Table::default()
        }))),
        // Re-applying starts from an empty table.
        NfObject::CmdObject(NfCmd::Flush(nftables::schema::FlushObject::Table(Table {
            family: NfFamily::IP,
            name: t.clone(),
            ..Table::default()
        }))),
        NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(Chain {
            family: NfFamily::IP,
            table: t.clone(),
            name: Cow::Borrowed("postrouting"),
            _type: Some(NfChainType::NAT),
            hook: Some(NfHook::Postrouting),
            prio: Some(100),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }))),
    ];
    for (net, len) in subnets {
        let masked = mask(*net, *len);
        objects.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(Rule {
            family: NfFamily::IP,
            table: t.clone(),
            chain: Cow::Borrowed("postrouting"),
            expr: Cow::Owned(vec![
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                        PayloadField {
                            protocol: Cow::Borrowed("ip"),
                            field: Cow::Borrowed("saddr"),
                        },
                    ))),
                    right: Expression::Named(NamedExpression::Prefix(Prefix {
                        addr: Box::new(Expression::String(Cow::Owned(masked.to_string()))),
                        len: u32::from(*len),
                    })),
                    op: Operator::EQ,
                }),
                Statement::Match(Match {
                    left: Expression::Named(NamedExpression::Meta(Meta {
                        key: MetaKey::Oifname,
                    })),
                    right: Expression::String(Cow::Owned(bridge.to_owned())),
                    op: Operator::NEQ,
                }),
                Statement::Masquerade(None),
            ]),
            ..Rule::default()
        }))));
    }
    let ruleset = Nftables {
        objects: Cow::Owned(objects),
    };
    nftables::helper::apply_ruleset(&ruleset).map_err(nft_error("set up", &table))
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
    let rules = nftables::helper::get_current_ruleset().map_err(nft_error("list", &table))?;
    Ok(rules.objects.iter().any(|o| {
        matches!(o, NfObject::ListObject(NfListObject::Table(t)) if t.name == table && t.family == NfFamily::IP)
    }))
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
}
