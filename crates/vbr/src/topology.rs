//! Topology files: a TOML description of bridges, their ports and VLANs, and namespaces
//! with addresses and routes, checked completely before anything is changed. Errors name
//! the file, the line and the field. The checked form, a [`Plan`], is what `vbr up` sends
//! to the daemon.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use vbridge_core::{MacAddr, VidSet};
use vbridge_datapath::{StpMode, VlanCfg};

/// The built-in default: seed 002's Docker-style network.
pub(crate) const DEFAULT_TOPOLOGY: &str = r#"# vbridge's default topology: seed 002's bridge network.
[[bridge]]
name = "br0"
addresses = ["192.168.88.1/24"]
# ip_forward on, and 192.168.88.0/24 masqueraded on its way out of the host.
nat = true

[[namespace]]
name = "ns0"
bridge = "br0"
addresses = ["192.168.88.2/24"]
gateway = "192.168.88.1"

[[namespace]]
name = "ns1"
bridge = "br0"
addresses = ["192.168.88.3/24"]
gateway = "192.168.88.1"
"#;

// ----- the file as written -----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "bridge")]
    bridges: Vec<BridgeDef>,
    #[serde(default, rename = "namespace")]
    namespaces: Vec<NsDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BridgeDef {
    name: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    stp: Option<Spanned<String>>,
    ageing: Option<Spanned<f64>>,
    #[serde(default)]
    nat: bool,
    #[serde(default, rename = "port")]
    ports: Vec<PortDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortDef {
    name: Spanned<String>,
    access: Option<Spanned<u16>>,
    trunk: Option<Spanned<String>>,
    native: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NsDef {
    name: Spanned<String>,
    bridge: Spanned<String>,
    ifname: Option<Spanned<String>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    veth: bool,
    access: Option<Spanned<u16>>,
}

// ----- the checked plan -----

/// A bridge to bring up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BridgePlan {
    pub(crate) name: String,
    /// CIDRs for the bridge's host interface.
    pub(crate) addresses: Vec<String>,
    pub(crate) stp: Option<StpMode>,
    pub(crate) ageing: Option<f64>,
    /// Forward and masquerade the bridge's IPv4 subnets (Docker-style).
    #[serde(default)]
    pub(crate) nat: bool,
    /// Existing netdevs to attach, with their VLAN mode.
    pub(crate) ports: Vec<(String, Option<VlanCfg>)>,
}

/// A namespace to create (if missing) and connect to a bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NsPlan {
    pub(crate) name: String,
    pub(crate) bridge: String,
    pub(crate) ifname: String,
    pub(crate) addresses: Vec<String>,
    pub(crate) gateway: Option<String>,
    pub(crate) mac: Option<String>,
    pub(crate) veth: bool,
    pub(crate) access: Option<u16>,
}

/// A checked topology.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub(crate) bridges: Vec<BridgePlan>,
    pub(crate) namespaces: Vec<NsPlan>,
}

/// What is wrong with a topology file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopologyError {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) field: String,
    pub(crate) message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.message
            )
        }
    }
}

impl std::error::Error for TopologyError {}

/// Checks a Linux interface name: 1-15 ASCII characters, no '/', ':', '%' or white
/// space, not `.` or `..`. The one rule for the CLI, the API and topology files.
pub(crate) fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.is_ascii()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(|c: char| matches!(c, '/' | ':' | '%' | '\0') || c.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid interface name {name:?}: use 1-15 ASCII characters without '/', ':', '%' or spaces"
        ))
    }
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

struct Checker<'a> {
    file: &'a str,
    src: &'a str,
}

impl Checker<'_> {
    fn line_of(&self, offset: usize) -> usize {
        self.src[..offset.min(self.src.len())].matches('\n').count() + 1
    }

    fn err<T>(
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

    fn name(&self, v: &Spanned<String>, field: String) -> Result<String, TopologyError> {
        match check_ifname(v.get_ref()) {
            Ok(()) => Ok(v.get_ref().clone()),
            Err(m) => self.err(v.span(), field, m),
        }
    }

    fn cidrs(&self, v: &[Spanned<String>], field: &str) -> Result<Vec<String>, TopologyError> {
        v.iter()
            .enumerate()
            .map(|(i, a)| match parse_cidr(a.get_ref()) {
                Ok((ip, p)) => Ok(format!("{ip}/{p}")),
                Err(m) => self.err(a.span(), format!("{field}[{i}]"), m),
            })
            .collect()
    }

    fn vid(&self, v: &Spanned<u16>, field: String) -> Result<u16, TopologyError> {
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

/// Parses and checks `src` (named `file` in errors).
pub(crate) fn parse(file: &str, src: &str) -> Result<Plan, TopologyError> {
    let c = Checker { file, src };
    let parsed: File = toml::from_str(src).map_err(|e| TopologyError {
        file: file.to_owned(),
        line: e.span().map_or(1, |s| c.line_of(s.start)),
        field: String::new(),
        message: e.message().to_owned(),
    })?;
    let mut plan = Plan::default();
    let mut bridge_lines: BTreeMap<String, usize> = BTreeMap::new();
    for (bi, b) in parsed.bridges.iter().enumerate() {
        let at = format!("bridge[{bi}]");
        let name = c.name(&b.name, format!("{at}.name"))?;
        if bridge_lines
            .insert(name.clone(), c.line_of(b.name.span().start))
            .is_some()
        {
            return c.err(
                b.name.span(),
                format!("{at}.name"),
                format!("bridge {name} is defined twice"),
            );
        }
        let stp = match &b.stp {
            None => None,
            Some(s) => Some(match s.get_ref().as_str() {
                "off" | "no" => StpMode::Off,
                "on" | "stp" | "yes" => StpMode::Stp,
                "rstp" => StpMode::Rstp,
                other => {
                    return c.err(
                        s.span(),
                        format!("{at}.stp"),
                        format!("{other:?}: use off, stp or rstp"),
                    );
                }
            }),
        };
        let ageing = match &b.ageing {
            Some(a) if !(0.0..=1e6).contains(a.get_ref()) => {
                return c.err(
                    a.span(),
                    format!("{at}.ageing"),
                    "use 0..=1000000 seconds".into(),
                );
            }
            a => a.as_ref().map(|a| *a.get_ref()),
        };
        let mut ports = Vec::new();
        for (pi, p) in b.ports.iter().enumerate() {
            let pat = format!("{at}.port[{pi}]");
            let pname = c.name(&p.name, format!("{pat}.name"))?;
            let vlan = match (&p.access, &p.trunk) {
                (Some(_), Some(t)) => {
                    return c.err(
                        t.span(),
                        format!("{pat}.trunk"),
                        "a port is either access or trunk".into(),
                    );
                }
                (Some(a), None) => Some(VlanCfg::Access {
                    vid: c.vid(a, format!("{pat}.access"))?,
                }),
                (None, Some(t)) => {
                    if let Err(e) = VidSet::parse_list(t.get_ref()) {
                        return c.err(t.span(), format!("{pat}.trunk"), e.to_string());
                    }
                    let native = p
                        .native
                        .as_ref()
                        .map(|n| c.vid(n, format!("{pat}.native")))
                        .transpose()?;
                    Some(VlanCfg::Trunk {
                        allowed: t.get_ref().clone(),
                        native,
                    })
                }
                (None, None) => None,
            };
            ports.push((pname, vlan));
        }
        plan.bridges.push(BridgePlan {
            name,
            addresses: c.cidrs(&b.addresses, &format!("{at}.addresses"))?,
            stp,
            ageing,
            nat: b.nat,
            ports,
        });
    }
    let mut ns_names = BTreeMap::new();
    for (ni, n) in parsed.namespaces.iter().enumerate() {
        let at = format!("namespace[{ni}]");
        let name = n.name.get_ref().clone();
        if name.is_empty() || name.contains(['/', ' ']) && !name.starts_with("/proc/") {
            return c.err(
                n.name.span(),
                format!("{at}.name"),
                format!("invalid namespace {name:?}"),
            );
        }
        let bridge = n.bridge.get_ref().clone();
        if !bridge_lines.contains_key(&bridge) {
            return c.err(
                n.bridge.span(),
                format!("{at}.bridge"),
                format!("bridge {bridge:?} is not defined in this file"),
            );
        }
        let ifname = match &n.ifname {
            Some(i) => c.name(i, format!("{at}.ifname"))?,
            None => "eth0".to_owned(),
        };
        if ns_names
            .insert((name.clone(), ifname.clone()), ())
            .is_some()
        {
            return c.err(
                n.name.span(),
                format!("{at}.name"),
                format!("{name} already has an interface {ifname}"),
            );
        }
        let addresses = c.cidrs(&n.addresses, &format!("{at}.addresses"))?;
        let gateway = match &n.gateway {
            Some(g) => match g.get_ref().parse::<IpAddr>() {
                Ok(ip) => Some(ip.to_string()),
                Err(_) => {
                    return c.err(
                        g.span(),
                        format!("{at}.gateway"),
                        format!("{:?} is not an IP address", g.get_ref()),
                    );
                }
            },
            None => None,
        };
        let mac = match &n.mac {
            Some(m) => match m.get_ref().parse::<MacAddr>() {
                Ok(mac) if mac.is_unicast() => Some(mac.to_string()),
                Ok(_) => {
                    return c.err(
                        m.span(),
                        format!("{at}.mac"),
                        "must be a unicast address".into(),
                    );
                }
                Err(e) => return c.err(m.span(), format!("{at}.mac"), e.to_string()),
            },
            None => None,
        };
        let access = n
            .access
            .as_ref()
            .map(|a| c.vid(a, format!("{at}.access")))
            .transpose()?;
        plan.namespaces.push(NsPlan {
            name,
            bridge,
            ifname,
            addresses,
            gateway,
            mac,
            veth: n.veth,
            access,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topology_is_seed_002() {
        let p = parse("default", DEFAULT_TOPOLOGY).unwrap();
        assert_eq!(p.bridges.len(), 1);
        assert_eq!(p.bridges[0].addresses, vec!["192.168.88.1/24"]);
        let ns: Vec<_> = p
            .namespaces
            .iter()
            .map(|n| (n.name.as_str(), n.addresses[0].as_str()))
            .collect();
        assert_eq!(
            ns,
            vec![("ns0", "192.168.88.2/24"), ("ns1", "192.168.88.3/24")]
        );
        assert_eq!(p.namespaces[0].ifname, "eth0");
        assert_eq!(p.namespaces[0].gateway.as_deref(), Some("192.168.88.1"));
        assert!(p.bridges[0].nat);
    }

    fn fails(src: &str) -> TopologyError {
        parse("t.toml", src).unwrap_err()
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = fails("[[bridge]]\nname = \"br0\"\ncolour = \"blue\"\n");
        assert_eq!((e.file.as_str(), e.line), ("t.toml", 3));
        assert!(e.message.contains("colour"), "{e}");

        let e = fails("[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/33\"]\n");
        assert_eq!((e.line, e.field.as_str()), (3, "bridge[0].addresses[0]"));
        assert!(
            e.to_string()
                .starts_with("t.toml:3: bridge[0].addresses[0]: prefix length"),
            "{e}"
        );

        let e =
            fails("[[bridge]]\nname = \"br0\"\n\n[[namespace]]\nname = \"a\"\nbridge = \"br9\"\n");
        assert_eq!((e.line, e.field.as_str()), (6, "namespace[0].bridge"));
        assert!(e.message.contains("br9"));

        let e = fails(
            "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\ngateway = \"10.0.0\"\n",
        );
        assert_eq!(e.field, "namespace[0].gateway");

        let e = fails("[[bridge]]\nname = \"br0\"\n[[bridge.port]]\nname = \"p\"\naccess = 4095\n");
        assert_eq!((e.line, e.field.as_str()), (5, "bridge[0].port[0].access"));

        let e = fails("[[bridge]]\nname = \"br0\"\n[[bridge]]\nname = \"br0\"\n");
        assert!(e.message.contains("twice"));
        let e = fails(
            "[[bridge]]\nname = \"br0\"\n[[namespace]]\nname = \"a\"\nbridge = \"br0\"\nmac = \"ff:ff:ff:ff:ff:ff\"\n",
        );
        assert_eq!(e.field, "namespace[0].mac");
        let e = fails("[[bridge]]\nname = \"br0\"\nstp = \"maybe\"\n");
        assert_eq!(e.field, "bridge[0].stp");
        let e = fails("[[bridge]\n");
        assert_eq!(e.line, 1);
    }

    #[test]
    fn ports_and_vlans() {
        let p = parse(
            "t",
            "[[bridge]]\nname = \"br0\"\nstp = \"rstp\"\n[[bridge.port]]\nname = \"eth1\"\ntrunk = \"10,20\"\nnative = 1\n[[bridge.port]]\nname = \"eth2\"\naccess = 10\n",
        )
        .unwrap();
        assert_eq!(p.bridges[0].stp, Some(StpMode::Rstp));
        assert_eq!(
            p.bridges[0].ports,
            vec![
                (
                    "eth1".into(),
                    Some(VlanCfg::Trunk {
                        allowed: "10,20".into(),
                        native: Some(1)
                    })
                ),
                ("eth2".into(), Some(VlanCfg::Access { vid: 10 })),
            ]
        );
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("fd00::1/64").unwrap().1, 64);
        assert!(parse_cidr("10.0.0.1").is_err());
        assert!(parse_cidr("10.0.0.300/24").is_err());
        assert!(parse_cidr("fd00::1/129").is_err());
    }
}
