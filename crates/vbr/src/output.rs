//! Text output in brctl's formats (`show`, `showmacs`, `showstp`) and for vbr's own verbs,
//! and [`say!`], the `println!` that ends quietly when the reader went away
//! (`vbr show | head`).

use serde_json::Value;

use crate::api::Request;

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

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Prints the result of `req` as text.
pub(crate) fn print(req: &Request, v: &Value) {
    match req {
        Request::Show { .. } => show(v),
        Request::Showmacs { .. } => showmacs(v),
        Request::FdbShow { .. } => fdb_show(v),
        Request::Showstp { .. } => showstp(v),
        Request::Stats { .. } => stats(v),
        Request::Ping => say!("{}", s(v)),
        Request::FdbFlush { .. } => say!("flushed {} entries", s(&v["flushed"])),
        Request::NetnsList => {
            for n in v.as_array().into_iter().flatten() {
                say!("{}", s(n));
            }
        }
        Request::Connect(_) => say!(
            "{} is port {} of {}",
            s(&v["netns"]),
            s(&v["port"]),
            s(&v["bridge"])
        ),
        _ => {}
    }
}

/// `brctl show`: bridge name, bridge id, STP enabled, interfaces (one per line).
fn show(v: &Value) {
    say!("bridge name\tbridge id\t\tSTP enabled\tinterfaces");
    for b in v.as_array().into_iter().flatten() {
        let ports: Vec<String> = b["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["kind"] != "host")
            .map(|p| {
                let name = s(&p["name"]);
                if p["state"] == "gone" {
                    format!("{name} (gone)")
                } else {
                    name
                }
            })
            .collect();
        let stp = if b["stp"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        let first = ports.first().cloned().unwrap_or_default();
        say!(
            "{:<16}{:<24}{:<16}{}",
            s(&b["name"]),
            s(&b["bridge_id"]),
            stp,
            first
        );
        for p in ports.iter().skip(1) {
            say!("{:56}{}", "", p);
        }
    }
}

/// `brctl showmacs`: port no, mac addr, is local?, ageing timer.
fn showmacs(v: &Value) {
    say!("port no\tmac addr\t\tis local?\tageing timer");
    for r in v.as_array().into_iter().flatten() {
        let local = if r["is_local"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        let age = r["ageing_timer"].as_f64().unwrap_or(0.0);
        say!(
            "{:>3}\t{}\t{}\t\t{:>7.2}",
            s(&r["port_no"]),
            s(&r["mac"]),
            local,
            age
        );
    }
}

/// `vbr fdb show`: one entry per line, like `bridge fdb show`.
fn fdb_show(v: &Value) {
    for r in v.as_array().into_iter().flatten() {
        let vlan = match &r["vlan"] {
            Value::Null => String::new(),
            x => format!(" vlan {x}"),
        };
        say!(
            "{} dev {}{} {} age {:.2}",
            s(&r["mac"]),
            s(&r["port"]),
            vlan,
            s(&r["kind"]),
            r["ageing_timer"].as_f64().unwrap_or(0.0)
        );
    }
}

/// `brctl showstp`.
fn showstp(v: &Value) {
    let f = |x: &Value| x.as_f64().unwrap_or(0.0);
    let flag = |x: &Value, name: &str| {
        if x.as_bool() == Some(true) {
            format!("{name} ")
        } else {
            String::new()
        }
    };
    say!("{} ({})", s(&v["bridge"]), s(&v["mode"]));
    say!(" bridge id\t\t{}", s(&v["bridge_id"]));
    say!(" designated root\t{}", s(&v["designated_root"]));
    say!(
        " root port\t\t{:>4}\t\t\tpath cost\t\t{:>4}",
        s(&v["root_port_no"]),
        s(&v["path_cost"])
    );
    say!(
        " max age\t\t{:>7.2}\t\t\tbridge max age\t\t{:>7.2}",
        f(&v["max_age"]),
        f(&v["bridge_max_age"])
    );
    say!(
        " hello time\t\t{:>7.2}\t\t\tbridge hello time\t{:>7.2}",
        f(&v["hello_time"]),
        f(&v["bridge_hello_time"])
    );
    say!(
        " forward delay\t\t{:>7.2}\t\t\tbridge forward delay\t{:>7.2}",
        f(&v["forward_delay"]),
        f(&v["bridge_forward_delay"])
    );
    say!(" ageing time\t\t{:>7.2}", f(&v["ageing_time"]));
    say!(
        " topology change count\t{:>4}",
        s(&v["topology_change_count"])
    );
    say!(
        " flags\t\t\t{}",
        flag(&v["topology_change"], "TOPOLOGY_CHANGE")
    );
    say!();
    for p in v["ports"].as_array().into_iter().flatten() {
        let c = &p["counters"];
        say!("{} ({})", s(&p["name"]), s(&p["port_no"]));
        say!(
            " port id\t\t{}\t\t\tstate\t\t{:>15}",
            s(&p["port_id"]),
            s(&p["state"])
        );
        say!(
            " designated root\t{}\tpath cost\t\t{:>4}",
            s(&p["designated_root"]),
            s(&p["path_cost"])
        );
        say!(
            " designated bridge\t{}\trole\t\t{:>15}",
            s(&p["designated_bridge"]),
            s(&p["role"])
        );
        say!(
            " designated port\t{}\t\t\tmessage age timer\t{:>7.2}",
            s(&p["designated_port"]),
            f(&p["message_age_timer"])
        );
        say!(
            " designated cost\t{:>4}\t\t\tforward delay timer\t{:>7.2}",
            s(&p["designated_cost"]),
            f(&p["forward_delay_timer"])
        );
        say!(
            " bpdus in\t\t{}\t\t\tbpdus out\t\t{}",
            c["rx_config"].as_u64().unwrap_or(0)
                + c["rx_rst"].as_u64().unwrap_or(0)
                + c["rx_tcn"].as_u64().unwrap_or(0),
            c["tx_config"].as_u64().unwrap_or(0)
                + c["tx_rst"].as_u64().unwrap_or(0)
                + c["tx_tcn"].as_u64().unwrap_or(0)
        );
        say!(
            " flags\t\t\t{}{}{}{}{}",
            flag(&p["edge"], "EDGE"),
            flag(&p["point_to_point"], "P2P"),
            flag(&p["bpdu_guard"], "BPDU_GUARD"),
            flag(&p["root_guard"], "ROOT_GUARD"),
            flag(&p["topology_change"], "TOPOLOGY_CHANGE")
        );
        say!();
    }
}

/// `vbr stats`: per-port counters and drops by reason.
fn stats(v: &Value) {
    for b in v.as_array().into_iter().flatten() {
        say!(
            "bridge {}: fdb {} entries ({} learned, {} moves, {} limit hits), {} flows in the kernel fast path",
            s(&b["name"]),
            s(&b["fdb_entries"]),
            s(&b["fdb_learned"]),
            s(&b["fdb_moves"]),
            s(&b["fdb_limit_hits"]),
            s(&b["fast_flows"])
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
        for p in b["ports"].as_array().into_iter().flatten() {
            let c = &p["counters"];
            let drops: Vec<String> = c["drops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            say!(
                "  {:<16}{:>12}{:>14}{:>12}{:>14}{:>10}{:>10}  {}",
                s(&p["name"]),
                s(&c["rx_packets"]),
                s(&c["rx_bytes"]),
                s(&c["tx_packets"]),
                s(&c["tx_bytes"]),
                s(&c["rx_flooded"]),
                s(&c["tx_flooded"]),
                if drops.is_empty() {
                    "-".into()
                } else {
                    drops.join(" ")
                }
            );
        }
    }
}
