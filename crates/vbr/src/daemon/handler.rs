//! Carries out one API request on the calling (API) thread: host work here, switch
//! state through the datapath's typed operations. Every refusal names the object and
//! what to do, with an error kind; nothing is changed when one is returned.

use std::time::Duration;

use serde::Serialize;
use vbridge_core::{BridgeConfig, MacAddr, Vid};
use vbridge_datapath::{Change, Changed, Datapath, PortEdit, PortKind, PortSpec, VlanCfg};

use super::errors::dp;
use crate::api::{ApiError, Done, ErrorKind, Flushed, Pong, Request};

/// A request's result, ready to be sent.
pub(crate) type Outcome = Result<serde_json::Value, ApiError>;

fn ok(v: impl Serialize) -> Outcome {
    serde_json::to_value(v).map_err(|e| ApiError::new(ErrorKind::Unavailable, e.to_string()))
}

fn done() -> Outcome {
    ok(Done {})
}

fn parse_mac(s: &str) -> Result<MacAddr, ApiError> {
    s.parse::<MacAddr>()
        .map_err(|e| ApiError::invalid(format!("{s:?}: {e}")))
}

/// Longest frame `vbr trace --frame` takes.
const MAX_TRACE_FRAME: usize = 65535;

/// A frame given as hex (spaces, colons and a `0x` prefix allowed between bytes).
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, ApiError> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'\n' | b'\t' | b'-'))
        .collect();
    if let Some(bad) = digits.iter().find(|b| !b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(format!(
            "frame: {:?} is not a hex digit (give the frame as hex, e.g. ffffffffffff0200000000010800...)",
            char::from(*bad)
        )));
    }
    if digits.len() % 2 != 0 {
        return Err(ApiError::invalid(format!(
            "frame: {} hex digits, an odd number (two per byte)",
            digits.len()
        )));
    }
    if digits.len() / 2 > MAX_TRACE_FRAME {
        return Err(ApiError::invalid(format!(
            "frame: {} bytes, more than the {MAX_TRACE_FRAME} a frame may have",
            digits.len() / 2
        )));
    }
    if digits.len() < 28 {
        return Err(ApiError::invalid(format!(
            "frame: {} bytes, shorter than an Ethernet header (14 bytes)",
            digits.len() / 2
        )));
    }
    Ok(digits
        .chunks(2)
        .map(|p| {
            let hi = char::from(p[0]).to_digit(16).unwrap_or(0);
            let lo = char::from(p[1]).to_digit(16).unwrap_or(0);
            (hi * 16 + lo) as u8
        })
        .collect())
}

fn vid(v: Option<u16>) -> Result<Vid, ApiError> {
    let v = v.unwrap_or(1);
    Vid::new(v).map_err(|_| ApiError::invalid(format!("invalid VLAN id {v}: use 1..=4094")))
}

/// Seconds as a duration; the range is the core's to check.
fn secs(what: &str, s: f64) -> Result<Duration, ApiError> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| ApiError::invalid(format!("{what} {s} is not a number of seconds")))
}

fn change(dp_: &Datapath, bridge: &str, c: Change) -> Result<Changed, ApiError> {
    dp_.change(bridge, c).map_err(dp)
}

/// Runs `req` (all but `up`/`down`, which the daemon runs itself).
pub(crate) fn apply(d: &Datapath, req: Request) -> Outcome {
    match req {
        Request::NetnsAdd { name } => super::wiring::netns_add(&name),
        Request::NetnsDel { name } => super::wiring::netns_del(d, &name),
        Request::NetnsList => super::wiring::netns_list(),
        Request::Connect(args) => super::wiring::connect(d, &args).and_then(ok),
        Request::Disconnect { netns, bridge } => super::wiring::disconnect(d, &netns, &bridge),
        Request::Up { .. } | Request::Down { .. } | Request::Topologies => Err(ApiError::invalid(
            "up/down are handled by the daemon itself",
        )),
        Request::Trace {
            bridge,
            port,
            frame,
        } => {
            let bytes = parse_hex(&frame)?;
            ok(d.trace(&bridge, &port, bytes).map_err(dp)?)
        }
        Request::MacvlanConnect(_) | Request::MacvlanDisconnect { .. } => Err(ApiError::invalid(
            "macvlan requests are answered by the daemon itself",
        )),
        Request::ClusterApply { .. } | Request::ClusterDel { .. } | Request::ClusterStatus => {
            Err(ApiError::new(
                ErrorKind::Unavailable,
                "this daemon is not in cluster mode: start it with --cluster http://HOST:2379 --node NAME --underlay IP",
            ))
        }
        Request::DhcpLeases { .. } => Err(ApiError::invalid(
            "dhcp_leases is answered by the daemon itself",
        )),
        Request::PortAdd { .. } | Request::PortDel { .. } => Err(ApiError::invalid(
            "port_add and port_del are answered by the daemon itself",
        )),
        Request::TraceLive { .. } | Request::Capture { .. } => Err(ApiError::invalid(
            "trace_live and capture are streams: the daemon answers them on their own connection",
        )),
        Request::Ping => ok(Pong {
            version: crate::api::API_VERSION,
            pid: std::process::id(),
        }),
        Request::Addbr { bridge } => {
            crate::names::check_ifname(&bridge).map_err(ApiError::invalid)?;
            d.add_bridge(&bridge, BridgeConfig::new(crate::mac::random()))
                .map_err(dp)?;
            done()
        }
        Request::Delbr { bridge } => {
            d.del_bridge(&bridge).map_err(dp)?;
            done()
        }
        Request::Addif {
            bridge,
            port,
            force,
        } => add_port(d, &bridge, &port, PortKind::Interface, force),
        Request::TapAdd { name, bridge } => add_port(d, &bridge, &name, PortKind::Tap, false),
        Request::VxlanAdd {
            name,
            bridge,
            vni,
            local,
            remotes,
            dstport,
            learning,
        } => {
            crate::names::check_ifname(&name).map_err(ApiError::invalid)?;
            if !(1..=vbridge_host::MAX_VNI).contains(&vni) {
                return Err(ApiError::invalid(format!(
                    "--vni {vni}: use 1..={}",
                    vbridge_host::MAX_VNI
                )));
            }
            if dstport == 0 {
                return Err(ApiError::invalid("--dstport 0: use a UDP port"));
            }
            if let Some(r) = remotes.iter().find(|r| {
                r.is_unspecified() || r.is_multicast() || r.is_broadcast() || **r == local
            }) {
                return Err(ApiError::invalid(format!(
                    "--remote {r}: a unicast address of another host"
                )));
            }
            let mut spec = PortSpec::new(&name, PortKind::Vxlan);
            spec.vxlan = Some(vbridge_datapath::VxlanCfg {
                vni,
                local,
                remotes,
                dstport,
                learning,
            });
            d.add_port(&bridge, &spec, false).map_err(dp)?;
            done()
        }
        Request::VxlanDel { name } => del_of_kind(d, &name, PortKind::Vxlan, "vxlan"),
        Request::Delif { bridge, port } => {
            d.del_port(&bridge, &port).map_err(dp)?;
            done()
        }
        Request::TapDel { name } => del_of_kind(d, &name, PortKind::Tap, "TAP"),
        Request::Show { bridge } | Request::Stats { bridge } => {
            ok(d.bridges(bridge.as_deref()).map_err(dp)?)
        }
        Request::Showmacs { bridge } | Request::FdbShow { bridge } => {
            ok(d.fdb(&bridge).map_err(dp)?)
        }
        Request::Showstp { bridge } => ok(d.stp(&bridge).map_err(dp)?),
        Request::Stp { bridge, mode } => {
            change(d, &bridge, Change::Stp(mode))?;
            done()
        }
        Request::Setageing { bridge, secs: s } => {
            change(d, &bridge, Change::Ageing(secs("ageing time", s)?))?;
            done()
        }
        Request::Setbridgeprio { bridge, prio } => {
            change(d, &bridge, Change::BridgePriority(prio))?;
            done()
        }
        Request::Setfd { bridge, secs: s } => {
            change(d, &bridge, Change::ForwardDelay(secs("forward delay", s)?))?;
            done()
        }
        Request::Sethello { bridge, secs: s } => {
            change(d, &bridge, Change::HelloTime(secs("hello time", s)?))?;
            done()
        }
        Request::Setmaxage { bridge, secs: s } => {
            change(d, &bridge, Change::MaxAge(secs("max age", s)?))?;
            done()
        }
        Request::Setpathcost { bridge, port, cost } => {
            change(d, &bridge, Change::PathCost { port, cost })?;
            done()
        }
        Request::Setportprio { bridge, port, prio } => {
            change(
                d,
                &bridge,
                Change::PortPriority {
                    port,
                    priority: prio,
                },
            )?;
            done()
        }
        Request::Hairpin { bridge, port, on } => {
            let edit = PortEdit {
                flags: vec![(vbridge_datapath::PortFlag::Hairpin, on)],
                vlan: None,
            };
            let edit = Box::new(edit);
            change(d, &bridge, Change::Port { port, edit })?;
            done()
        }
        Request::FdbAdd {
            bridge,
            mac,
            port,
            vlan,
        } => {
            let (mac, vid) = (parse_mac(&mac)?, vid(vlan)?);
            change(d, &bridge, Change::FdbAdd { mac, vid, port })?;
            done()
        }
        Request::FdbDel { bridge, mac, vlan } => {
            let (mac, vid) = (parse_mac(&mac)?, vid(vlan)?);
            change(d, &bridge, Change::FdbDel { mac, vid })?;
            done()
        }
        Request::FdbFlush { bridge } => match change(d, &bridge, Change::FdbFlush)? {
            Changed::Flushed(n) => ok(Flushed { flushed: n }),
            Changed::Done => ok(Flushed { flushed: 0 }),
        },
        Request::LinkSet { port, flags, vlan } => {
            link_set(d, &port, flags.into_iter().collect(), vlan)?;
            done()
        }
    }
}

/// Removes port `name` (whichever bridge it is on) if it is of `kind` (`what` in words).
fn del_of_kind(d: &Datapath, name: &str, kind: PortKind, what: &str) -> Outcome {
    let (bridge, found) = d.find_port(name).map_err(dp)?.ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            format!("no {what} port {name} (see `vbr show`)"),
        )
    })?;
    if found != kind {
        return Err(ApiError::invalid(format!(
            "{name} is not a {what} port (use `vbr delif {bridge} {name}`)"
        )));
    }
    d.del_port(&bridge, name).map_err(dp)?;
    done()
}

fn add_port(d: &Datapath, bridge: &str, port: &str, kind: PortKind, force: bool) -> Outcome {
    crate::names::check_ifname(port).map_err(ApiError::invalid)?;
    let mut spec = PortSpec::new(port, kind);
    spec.force = force;
    d.add_port(bridge, &spec, false).map_err(dp)?;
    done()
}

/// `vbr link set PORT ...`: flags and VLAN of a port, on whichever bridge it is.
pub(crate) fn link_set(
    d: &Datapath,
    port: &str,
    flags: Vec<(vbridge_datapath::PortFlag, bool)>,
    vlan: Option<VlanCfg>,
) -> Result<(), ApiError> {
    let (bridge, _) = d.find_port(port).map_err(dp)?.ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            format!("{port} is not a port of any bridge (see `vbr show`)"),
        )
    })?;
    let vlan = vlan
        .map(|v| v.to_mode())
        .transpose()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let edit = PortEdit { flags, vlan };
    change(
        d,
        &bridge,
        Change::Port {
            port: port.to_owned(),
            edit: Box::new(edit),
        },
    )?;
    Ok(())
}
