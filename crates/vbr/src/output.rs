//! Text output in brctl's formats (`show`, `showmacs`, `showstp`) and for vbr's own verbs,
//! from the daemon's typed answers; names from users or the kernel are escaped before
//! they reach the terminal. And [`say!`], the `println!` that ends quietly when the
//! reader went away (`vbr show | head`).

use serde::de::DeserializeOwned;
use serde_json::Value;
use vbridge_datapath::{BridgeView, FdbRow, PortKind, PortState, StpView};

use crate::api::{Connected, Flushed, Pong, Request};
use crate::names::escape;

/// `println!` to stdout that exits quietly (status 0) on a closed pipe and with status 1
/// on any other write error, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::output::stdout_failed(e)
        }
    }};
}
pub(crate) use say;

/// Ends the process after a failed write to stdout.
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("vbr: writing output: {e}");
    std::process::exit(1);
}

/// The answer read as `T`; an answer of another shape is a daemon of another version.
fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| {
        format!(
            "the daemon's answer is not what this vbr expects ({e}); are both the same version?"
        )
    })
}

/// Prints the result of `req` as text.
pub(crate) fn print(req: &Request, v: &Value) -> Result<(), String> {
    match req {
        Request::Show { .. } => show(&typed::<Vec<BridgeView>>(v)?),
        Request::Showmacs { .. } => showmacs(&typed::<Vec<FdbRow>>(v)?),
        Request::FdbShow { .. } => fdb_show(&typed::<Vec<FdbRow>>(v)?),
        Request::Showstp { .. } => showstp(&typed::<StpView>(v)?),
        Request::Stats { .. } => stats(&typed::<Vec<BridgeView>>(v)?),
        Request::Trace { .. } => crate::watch::print_trace(&typed(v)?),
        Request::DhcpLeases { .. } => {
            let leases: Vec<crate::daemon::LeaseView> = typed(v)?;
            say!(
                "{:<16} {:<18} {:>10}  client",
                "address",
                "mac",
                "expires in"
            );
            for l in leases {
                say!(
                    "{:<16} {:<18} {:>9}s  {}",
                    l.ip,
                    l.mac,
                    l.expires_in,
                    escape(&l.client)
                );
            }
        }
        Request::Ping => {
            let p: Pong = typed(v)?;
            say!("pong (daemon pid {}, API version {})", p.pid, p.version);
        }
        Request::FdbFlush { .. } => {
            let f: Flushed = typed(v)?;
            say!("flushed {} entries", f.flushed);
        }
        Request::NetnsList => {
            let names: Vec<String> = typed(v)?;
            for n in names {
                say!("{}", escape(&n));
            }
        }
        Request::PortAdd { .. } => {
            let p: crate::api::VmPort = typed(v)?;
            say!(
                "port {} of {}: QEMU reaches it at {}",
                escape(&p.port),
                escape(&p.bridge),
                escape(&p.socket)
            );
            say!("QEMU arguments (add memory, disks and the rest):");
            for pair in p.qemu.chunks(2) {
                say!("  {}", pair.join(" "));
            }
        }
        Request::Connect(_) => {
            let c: Connected = typed(v)?;
            say!(
                "{} is port {} of {}{}",
                escape(&c.netns),
                escape(&c.port),
                escape(&c.bridge),
                if c.addresses.is_empty() {
                    String::new()
                } else {
                    format!(", address {}", c.addresses.join(" "))
                }
            );
        }
        Request::ClusterApply { .. } => {
            let d: crate::cluster::ApplyDone = typed(v)?;
            for (what, names) in [
                ("created", &d.created),
                ("updated", &d.updated),
                ("unchanged", &d.unchanged),
            ] {
                if !names.is_empty() {
                    say!("{what}: {}", escape(&names.join(" ")));
                }
            }
        }
        Request::ClusterStatus => cluster_status(&typed(v)?),
        _ => {}
    }
    Ok(())
}

/// `vbr cluster simulate`'s report: one JSON object, or lines.
pub(crate) fn sim_report(r: &crate::cluster::sim::SimReport, json: bool) {
    if json {
        say!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    say!(
        "{} nodes x {} networks: {} keys, written in {:.2} s",
        r.nodes,
        r.networks,
        r.keys,
        r.populate_secs
    );
    say!(
        "full read (a node starting): {:.3} s, {:.1} MiB",
        r.full_read_secs,
        r.full_read_bytes as f64 / (1 << 20) as f64
    );
    say!(
        "join reaches every node: median {:.3} s, worst {:.3} s (its own writes {:.3} s)",
        r.join_secs_median,
        r.join_secs_max,
        r.join_write_secs
    );
    say!(
        "leave reaches every node: median {:.3} s, worst {:.3} s (after its lease ends)",
        r.leave_secs_median,
        r.leave_secs_max
    );
    say!(
        "etcd: {:.0} watch events sent, {:.0} puts in the measured rounds; {:.1} keepalives/s; {:.0} MiB resident, {:.1} MiB database",
        r.watch_events,
        r.puts,
        r.keepalives_per_sec,
        r.etcd_rss_mib,
        r.etcd_db_mib
    );
}

/// `vbr cluster status`.
fn cluster_status(c: &crate::cluster::ClusterView) {
    say!(
        "node {} (underlay {}), lease {} ({} s)",
        escape(&c.node),
        c.underlay,
        c.lease.as_deref().unwrap_or("none"),
        c.lease_ttl
    );
    say!("etcd {}: {}", c.etcd, c.endpoints.join(","));
    if let (Some(e), Some(s)) = (&c.error, c.unreachable_for) {
        say!(
            "  for {s:.0} s: {}; forwarding goes on with the last known state",
            escape(e)
        );
    }
    say!("\nnodes:");
    for n in &c.nodes {
        say!(
            "  {:<16} {:<16}{}",
            escape(&n.name),
            n.underlay,
            if n.this { " (this node)" } else { "" }
        );
    }
    say!(
        "\n{:<16} {:>8}  {:<18} {:>7} {:>11} {:>10}  health",
        "network",
        "vni",
        "subnet",
        "remotes",
        "remote macs",
        "local macs"
    );
    for n in &c.networks {
        say!(
            "{:<16} {:>8}  {:<18} {:>7} {:>11} {:>10}  {}",
            escape(&n.name),
            n.vni,
            n.subnet,
            n.remotes,
            n.remote_macs,
            n.local_macs,
            n.health
        );
    }
    for i in &c.ignored {
        say!("ignored: {}", escape(i));
    }
}

/// `brctl show`: bridge name, bridge id, STP enabled, interfaces (one per line).
fn show(bridges: &[BridgeView]) {
    say!("bridge name\tbridge id\t\tSTP enabled\tinterfaces");
    for b in bridges {
        let ports: Vec<String> = b
            .ports
            .iter()
            .filter(|p| p.kind != PortKind::Host)
            .map(|p| match p.state {
                PortState::Gone => format!("{} (gone)", escape(&p.name)),
                _ => escape(&p.name),
            })
            .collect();
        let host_gone = b
            .ports
            .iter()
            .any(|p| p.kind == PortKind::Host && p.state == PortState::Gone);
        let stp = if b.stp { "yes" } else { "no" };
        let name = if host_gone {
            format!("{} (host interface gone)", escape(&b.name))
        } else {
            escape(&b.name)
        };
        let first = ports.first().cloned().unwrap_or_default();
        say!("{:<16}{:<24}{:<16}{}", name, b.bridge_id, stp, first);
        for p in ports.iter().skip(1) {
            say!("{:56}{}", "", p);
        }
    }
}

/// `brctl showmacs`: port no, mac addr, is local?, ageing timer.
fn showmacs(rows: &[FdbRow]) {
    say!("port no\tmac addr\t\tis local?\tageing timer");
    for r in rows {
        let local = if r.is_local { "yes" } else { "no" };
        say!(
            "{:>3}\t{}\t{}\t\t{:>7.2}",
            r.port_no,
            r.mac,
            local,
            r.ageing_timer
        );
    }
}

/// `vbr fdb show`: one entry per line, like `bridge fdb show`.
fn fdb_show(rows: &[FdbRow]) {
    for r in rows {
        let vlan = r.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default();
        say!(
            "{} dev {}{} {} age {:.2}",
            r.mac,
            escape(&r.port),
            vlan,
            r.kind,
            r.ageing_timer
        );
    }
}

/// `brctl showstp`.
fn showstp(v: &StpView) {
    let flag = |on: bool, name: &str| {
        if on {
            format!("{name} ")
        } else {
            String::new()
        }
    };
    let mode = serde_json::to_value(v.mode)
        .ok()
        .and_then(|m| m.as_str().map(str::to_owned))
        .unwrap_or_default();
    say!("{} ({})", escape(&v.bridge), mode);
    say!(" bridge id\t\t{}", v.bridge_id);
    say!(" designated root\t{}", v.designated_root);
    say!(
        " root port\t\t{:>4}\t\t\tpath cost\t\t{:>4}",
        v.root_port_no,
        v.path_cost
    );
    say!(
        " max age\t\t{:>7.2}\t\t\tbridge max age\t\t{:>7.2}",
        v.max_age,
        v.bridge_max_age
    );
    say!(
        " hello time\t\t{:>7.2}\t\t\tbridge hello time\t{:>7.2}",
        v.hello_time,
        v.bridge_hello_time
    );
    say!(
        " forward delay\t\t{:>7.2}\t\t\tbridge forward delay\t{:>7.2}",
        v.forward_delay,
        v.bridge_forward_delay
    );
    say!(" ageing time\t\t{:>7.2}", v.ageing_time);
    say!(" topology change count\t{:>4}", v.topology_change_count);
    say!(" flags\t\t\t{}", flag(v.topology_change, "TOPOLOGY_CHANGE"));
    say!();
    for p in &v.ports {
        let c = &p.counters;
        say!("{} ({})", escape(&p.name), p.port_no);
        say!(" port id\t\t{}\t\t\tstate\t\t{:>15}", p.port_id, p.state);
        say!(
            " designated root\t{}\tpath cost\t\t{:>4}",
            p.designated_root,
            p.path_cost
        );
        say!(
            " designated bridge\t{}\trole\t\t{:>15}",
            p.designated_bridge,
            p.role
        );
        say!(
            " designated port\t{}\t\t\tmessage age timer\t{:>7.2}",
            p.designated_port,
            p.message_age_timer
        );
        say!(
            " designated cost\t{:>4}\t\t\tforward delay timer\t{:>7.2}",
            p.designated_cost,
            p.forward_delay_timer
        );
        say!(
            " bpdus in\t\t{}\t\t\tbpdus out\t\t{}",
            c.rx_config + c.rx_rst + c.rx_tcn,
            c.tx_config + c.tx_rst + c.tx_tcn
        );
        say!(
            " flags\t\t\t{}{}{}{}{}",
            flag(p.edge, "EDGE"),
            flag(p.point_to_point, "P2P"),
            flag(p.bpdu_guard, "BPDU_GUARD"),
            flag(p.root_guard, "ROOT_GUARD"),
            flag(p.topology_change, "TOPOLOGY_CHANGE")
        );
        say!();
    }
}

/// `vbr stats`: per-port counters and drops by reason.
fn stats(bridges: &[BridgeView]) {
    for b in bridges {
        say!(
            "bridge {}: fdb {} entries ({} learned, {} moves, {} limit hits), {} flows and {} floods in the kernel fast path",
            escape(&b.name),
            b.fdb_entries,
            b.fdb_learned,
            b.fdb_moves,
            b.fdb_limit_hits,
            b.fast_flows,
            b.fast_floods
        );
        say!(
            "  {:<16}{:>12}{:>14}{:>12}{:>14}{:>10}{:>10}  drops",
            "port",
            "rx_packets",
            "rx_bytes",
            "tx_packets",
            "tx_bytes",
            "rx_flood",
            "tx_flood"
        );
        for p in &b.ports {
            let c = &p.counters;
            let drops: Vec<String> = c.drops.iter().map(|(k, n)| format!("{k}={n}")).collect();
            say!(
                "  {:<16}{:>12}{:>14}{:>12}{:>14}{:>10}{:>10}  {}",
                escape(&p.name),
                c.rx_packets,
                c.rx_bytes,
                c.tx_packets,
                c.tx_bytes,
                c.rx_flooded,
                c.tx_flooded,
                if drops.is_empty() {
                    "-".into()
                } else {
                    drops.join(" ")
                }
            );
        }
    }
}
