//! The network configuration `vbr-cni` reads, in the style of the reference `bridge`
//! plugin: `bridge`, `isGateway`, `isDefaultGateway`, `ipMasq`, `mtu`, `vlan`,
//! `hairpinMode`, `ipam`, and from `runtimeConfig` the `portMappings` and `mac` (a MAC also
//! from `CNI_ARGS` as `MAC=...`); vbridge's own `socket` (the daemon's API socket) and `vbr`
//! (the program that starts the daemon when none runs). Checked before anything is done.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use rscni_plugin::error::Error;
use rscni_plugin::types::{NetConf, Protocol};
use serde_json::Value;
use vbridge_core::{MacAddr, Vid};
use vbridge_host::nat::Proto;

/// A port mapping of `runtimeConfig.portMappings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) host_ip: Option<Ipv4Addr>,
    pub(crate) host_port: u16,
    pub(crate) container_port: u16,
    pub(crate) proto: Proto,
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Conf {
    /// The network's name (`name`), part of the names of what it brings up.
    pub(crate) network: String,
    pub(crate) bridge: String,
    pub(crate) is_gateway: bool,
    pub(crate) is_default_gateway: bool,
    pub(crate) ip_masq: bool,
    pub(crate) mtu: Option<u32>,
    pub(crate) vlan: Option<Vid>,
    pub(crate) hairpin: bool,
    /// The IPAM plugin's type, if any.
    pub(crate) ipam: Option<String>,
    pub(crate) mac: Option<MacAddr>,
    pub(crate) mappings: Vec<Mapping>,
    pub(crate) socket: PathBuf,
    pub(crate) vbr: Option<PathBuf>,
}

fn bad(m: impl Into<String>) -> Error {
    Error::InvalidNetworkConfig(m.into())
}

fn flag(c: &NetConf, key: &str) -> Result<bool, Error> {
    match c.custom.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(format!("{key}: {v} is not true or false"))),
    }
}

fn text<'a>(c: &'a NetConf, key: &str) -> Result<Option<&'a str>, Error> {
    match c.custom.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(format!("{key}: {v} is not a string"))),
    }
}

fn number(c: &NetConf, key: &str) -> Result<Option<u64>, Error> {
    match c.custom.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("{key}: {v} is not a whole number"))),
    }
}

/// `MAC=...` among `CNI_ARGS` (`K=V;K=V`).
fn mac_of_args(args: Option<&str>) -> Result<Option<MacAddr>, Error> {
    let Some(a) = args else { return Ok(None) };
    for kv in a.split(';') {
        if let Some(("MAC", v)) = kv.split_once('=') {
            return v
                .parse::<MacAddr>()
                .map(Some)
                .map_err(|e| Error::InvalidEnvValue(format!("CNI_ARGS MAC={v}: {e}")));
        }
    }
    Ok(None)
}

impl Conf {
    /// Reads and checks `c` (with `CNI_ARGS` as `args`).
    pub(crate) fn of(c: &NetConf, args: Option<&str>) -> Result<Conf, Error> {
        if c.name.is_empty() {
            return Err(bad("name: the network needs a name"));
        }
        let bridge = text(c, "bridge")?.unwrap_or("cni0").to_owned();
        crate::names::check_ifname(&bridge).map_err(|e| bad(format!("bridge: {e}")))?;
        let is_gateway = flag(c, "isGateway")?;
        let is_default_gateway = flag(c, "isDefaultGateway")?;
        let ip_masq = c.ip_masq.unwrap_or(false);
        if ip_masq && !is_gateway {
            return Err(bad(
                "ipMasq needs isGateway: vbridge masquerades the subnets of the bridge's own addresses",
            ));
        }
        let mtu = match number(c, "mtu")? {
            None => None,
            Some(m) if (68..=65535).contains(&m) => Some(m as u32),
            Some(m) => return Err(bad(format!("mtu: {m} is not 68..=65535"))),
        };
        let vlan = match number(c, "vlan")? {
            None | Some(0) => None,
            Some(v) => Some(
                u16::try_from(v)
                    .ok()
                    .and_then(|v| Vid::new(v).ok())
                    .ok_or_else(|| bad(format!("vlan: {v} is not 1..=4094")))?,
            ),
        };
        let ipam = match &c.ipam {
            None => None,
            Some(i) if i.r#type.is_empty() => return Err(bad("ipam: give its type")),
            Some(i) => Some(i.r#type.clone()),
        };
        if ipam.is_none() && (is_gateway || ip_masq) {
            return Err(bad(
                "isGateway and ipMasq need ipam (the addresses come from it)",
            ));
        }
        let runtime = c.runtime_config.as_ref();
        let mac = match runtime.and_then(|r| r.custom.get("mac")) {
            None | Some(Value::Null) => mac_of_args(args)?,
            Some(Value::String(m)) => Some(
                m.parse::<MacAddr>()
                    .map_err(|e| bad(format!("runtimeConfig.mac: {e}")))?,
            ),
            Some(v) => return Err(bad(format!("runtimeConfig.mac: {v} is not a string"))),
        };
        if mac.is_some_and(|m| !m.is_unicast()) {
            return Err(bad("mac: not a unicast address"));
        }
        let mut mappings = Vec::new();
        for (i, m) in runtime
            .map(|r| r.port_mappings.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let at = format!("runtimeConfig.portMappings[{i}]");
            let port = |p: u32, what: &str| {
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad(format!("{at}.{what}: {p} is not 1..=65535")))
            };
            let proto = match m.protocol {
                None | Some(Protocol::Tcp) => Proto::Tcp,
                Some(Protocol::Udp) => Proto::Udp,
                Some(Protocol::Sctp) => {
                    return Err(Error::UnsupportedNetworkConfiguration(format!(
                        "{at}.protocol: sctp is not supported (tcp, udp)"
                    )));
                }
            };
            let host_ip = match m.custom.get("hostIP") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() || s == "0.0.0.0" => None,
                Some(Value::String(s)) => Some(
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| bad(format!("{at}.hostIP: {s:?} is not an IPv4 address")))?,
                ),
                Some(v) => return Err(bad(format!("{at}.hostIP: {v} is not a string"))),
            };
            mappings.push(Mapping {
                host_ip,
                host_port: port(m.host_port, "hostPort")?,
                container_port: port(m.container_port, "containerPort")?,
                proto,
            });
        }
        Ok(Conf {
            network: c.name.clone(),
            bridge,
            is_gateway,
            is_default_gateway,
            ip_masq,
            mtu,
            vlan,
            hairpin: flag(c, "hairpinMode")?,
            ipam,
            mac,
            mappings,
            socket: text(c, "socket")?
                .map_or_else(|| crate::cli::DEFAULT_SOCKET.into(), PathBuf::from),
            vbr: text(c, "vbr")?.map(PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> Result<Conf, Error> {
        let c: NetConf = serde_json::from_str(json).unwrap();
        Conf::of(&c, None)
    }

    #[test]
    fn reads_the_reference_bridge_keys() {
        let c = conf(
            r#"{"cniVersion":"1.0.0","name":"net1","type":"vbridge","bridge":"vb0",
            "isGateway":true,"isDefaultGateway":true,"ipMasq":true,"mtu":1400,"vlan":10,
            "ipam":{"type":"host-local","subnet":"10.88.0.0/16"},
            "runtimeConfig":{"mac":"02:00:00:00:00:05","portMappings":[
              {"hostPort":8080,"containerPort":80,"protocol":"tcp"},
              {"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.bridge, "vb0");
        assert!(c.is_gateway && c.is_default_gateway && c.ip_masq);
        assert_eq!((c.mtu, c.vlan.map(Vid::get)), (Some(1400), Some(10)));
        assert_eq!(c.ipam.as_deref(), Some("host-local"));
        assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:05");
        assert_eq!(c.mappings.len(), 2);
        assert_eq!(c.mappings[1].host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(c.mappings[1].proto, Proto::Udp);
        assert_eq!(c.socket, PathBuf::from(crate::cli::DEFAULT_SOCKET));
    }

    #[test]
    fn refuses_bad_values_with_their_key() {
        let base = r#""cniVersion":"1.0.0","name":"n","type":"vbridge""#;
        for (extra, says) in [
            (r#","bridge":"this-name-is-too-long""#, "bridge"),
            (r#","mtu":10"#, "mtu"),
            (r#","vlan":4095"#, "vlan"),
            (r#","isGateway":"yes""#, "isGateway"),
            (r#","ipMasq":true"#, "ipMasq needs isGateway"),
            (r#","isGateway":true"#, "need ipam"),
            (
                r#","ipam":{"type":"host-local"},"runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}"#,
                "hostPort",
            ),
            (r#","runtimeConfig":{"mac":"01:00:5e:00:00:01"}"#, "unicast"),
        ] {
            let e = conf(&format!("{{{base}{extra}}}")).unwrap_err();
            assert!(
                matches!(&e, Error::InvalidNetworkConfig(m) if m.contains(says)),
                "{extra}: {e:?}"
            );
        }
        assert_eq!(
            mac_of_args(Some("IgnoreUnknown=1;MAC=02:00:00:00:00:09"))
                .unwrap()
                .unwrap()
                .to_string(),
            "02:00:00:00:00:09"
        );
    }
}
