//! Text output in brctl's formats (`show`, `showmacs`, `showstp`) and for vbr's own verbs.

use serde_json::Value;

use crate::api::Request;

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
        Request::Ping => println!("{}", s(v)),
        Request::FdbFlush { .. } => println!("flushed {} entries", s(&v["flushed"])),
        Request::NetnsList => {
            for n in v.as_array().into_iter().flatten() {
                println!("{}", s(n));
            }
        }
        Request::Connect(_) => println!(
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
    println!("bridge name\tbridge id\t\tSTP enabled\tinterfaces");
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
        println!(
            "{:<16}{:<24}{:<16}{}",
            s(&b["name"]),
            s(&b["bridge_id"]),
            stp,
            first
        );
        for p in ports.iter().skip(1) {
            println!("{:56}{}", "", p);
        }
    }
}

/// `brctl showmacs`: port no, mac addr, is local?, ageing timer.
fn showmacs(v: &Value) {
    println!("port no\tmac addr\t\tis local?\tageing timer");
    for r in v.as_array().into_iter().flatten() {
        let local = if r["is_local"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        let age = r["ageing_timer"].as_f64().unwrap_or(0.0);
        println!(
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
        println!(
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
    println!("{} ({})", s(&v["bridge"]), s(&v["mode"]));
    println!(" bridge id\t\t{}", s(&v["bridge_id"]));
    println!(" designated root\t{}", s(&v["designated_root"]));
    println!(
        " root port\t\t{:>4}\t\t\tpath cost\t\t{:>4}",
        s(&v["root_port_no"]),
        s(&v["path_cost"])
    );
    println!(
        " max age\t\t{:>7.2}\t\t\tbridge max age\t\t{:>7.2}",
        f(&v["max_age"]),
        f(&v["bridge_max_age"])
    );
    println!(
        " hello time\t\t{:>7.2}\t\t\tbridge hello time\t{:>7.2}",
        f(&v["hello_time"]),
        f(&v["bridge_hello_time"])
    );
    println!(
        " forward delay\t\t{:>7.2}\t\t\tbridge forward delay\t{:>7.2}",
        f(&v["forward_delay"]),
        f(&v["bridge_forward_delay"])
    );
    println!(" ageing time\t\t{:>7.2}", f(&v["ageing_time"]));
    println!(
        " topology change count\t{:>4}",
        s(&v["topology_change_count"])
    );
    println!(
        " flags\t\t\t{}",
        flag(&v["topology_change"], "TOPOLOGY_CHANGE")
    );
    println!();
    for p in v["ports"].as_array().into_iter().flatten() {
        let c = &p["counters"];
        println!("{} ({})", s(&p["name"]), s(&p["port_no"]));
        println!(
            " port id\t\t{}\t\t\tstate\t\t{:>15}",
            s(&p["port_id"]),
            s(&p["state"])
        );
        println!(
            " designated root\t{}\tpath cost\t\t{:>4}",
            s(&p["designated_root"]),
            s(&p["path_cost"])
        );
        println!(
            " designated bridge\t{}\trole\t\t{:>15}",
            s(&p["designated_bridge"]),
            s(&p["role"])
        );
        println!(
            " designated port\t{}\t\t\tmessage age timer\t{:>7.2}",
            s(&p["designated_port"]),
            f(&p["message_age_timer"])
        );
        println!(
            " designated cost\t{:>4}\t\t\tforward delay timer\t{:>7.2}",
            s(&p["designated_cost"]),
            f(&p["forward_delay_timer"])
        );
        println!(
            " bpdus in\t\t{}\t\t\tbpdus out\t\t{}",
            c["rx_config"].as_u64().unwrap_or(0)
                + c["rx_rst"].as_u64().unwrap_or(0)
                + c["rx_tcn"].as_u64().unwrap_or(0),
            c["tx_config"].as_u64().unwrap_or(0)
                + c["tx_rst"].as_u64().unwrap_or(0)
                + c["tx_tcn"].as_u64().unwrap_or(0)
        );
        println!(
            " flags\t\t\t{}{}{}{}{}",
            flag(&p["edge"], "EDGE"),
            flag(&p["point_to_point"], "P2P"),
            flag(&p["bpdu_guard"], "BPDU_GUARD"),
            flag(&p["root_guard"], "ROOT_GUARD"),
            flag(&p["topology_change"], "TOPOLOGY_CHANGE")
        );
        println!();
    }
}

/// `vbr stats`: per-port counters and drops by reason.
fn stats(v: &Value) {
    for b in v.as_array().into_iter().flatten() {
        println!(
            "bridge {}: fdb {} entries ({} learned, {} moves, {} limit hits)",
            s(&b["name"]),
            s(&b["fdb_entries"]),
            s(&b["fdb_learned"]),
            s(&b["fdb_moves"]),
            s(&b["fdb_limit_hits"])
        );
        println!(
            "  {:<16}{:>12}{:>14}{:>12}{:>14}{:>10}{:>10}  drops",
            "port", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_flood", "tx_flood"
        );
        for p in b["ports"].as_array().into_iter().flatten() {
            let c = &p["counters"];
            let drops: Vec<String> = c["drops"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            println!(
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
