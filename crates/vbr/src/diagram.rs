//! Pictures of the live topology: `vbr show --diagram` draws it as text boxes in the
//! manner of the seed articles (a bridge, its ports side by side under it, the
//! namespace behind each connected port with its addresses), and `vbr show --format
//! dot` writes the same as Graphviz for `dot -Tsvg`. Names are escaped for each.

use vbridge_datapath::{BridgeView, PortKind, PortState, PortView, VlanView};

use crate::names::escape;

/// Widest a row of port boxes grows before the next row starts.
const MAX_WIDTH: usize = 118;

/// The lines of one box: `lines` framed by `+--+` and `|`, each as wide as the widest.
fn boxed(lines: &[String]) -> Vec<String> {
    let w = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let edge = format!("+{}+", "-".repeat(w + 2));
    let mut out = vec![edge.clone()];
    for l in lines {
        let pad = w - l.chars().count();
        out.push(format!("| {l}{} |", " ".repeat(pad)));
    }
    out.push(edge);
    out
}

fn vlan_text(v: &VlanView) -> String {
    match v {
        VlanView::Access { vid } => format!("access {vid}"),
        VlanView::Trunk { allowed, native } => match native {
            Some(n) => format!("trunk {allowed} native {n}"),
            None => format!("trunk {allowed}"),
        },
    }
}

/// What stands behind a port, in a few words.
fn kind_text(p: &PortView) -> String {
    let fast = if p.fast_path { ", fast path" } else { "" };
    match (p.kind, &p.netns) {
        (PortKind::Host, _) => "host interface".into(),
        (PortKind::Interface, Some(_)) => format!("veth{fast}"),
        (PortKind::Interface, None) => format!("interface (uplink){fast}"),
        (PortKind::Tap, Some(_)) => "tap".into(),
        (PortKind::Tap, None) => "tap (VM)".into(),
        (PortKind::Socket, _) => "socket".into(),
        (PortKind::Gateway, _) => "host interface (VLAN gateway)".into(),
        (PortKind::Stream, _) => "VM (stream socket)".into(),
        (PortKind::Dgram, _) => "VM (dgram socket)".into(),
        (PortKind::VhostUser | PortKind::VhostUserClient, _) => "VM (vhost-user)".into(),
        (PortKind::VmTap, _) => format!("VM (tap){fast}"),
        (PortKind::Vxlan, _) => format!("vxlan tunnel{fast}"),
    }
}

/// The state a port box shows: `up`, `down`, `GONE`, or its spanning-tree state in
/// capitals when that keeps it from forwarding.
fn state_text(b: &BridgeView, p: &PortView) -> String {
    match p.state {
        PortState::Gone => "GONE (device missing)".into(),
        PortState::Down => "down".into(),
        PortState::Up if b.stp && p.stp_state != "forwarding" => {
            format!("STP {}", p.stp_state.to_uppercase())
        }
        PortState::Up => "up".into(),
    }
}

/// One column: the port's box, and under it the namespace's.
fn column(b: &BridgeView, p: &PortView) -> Vec<String> {
    let mut lines = vec![
        escape(&p.name),
        kind_text(p),
        vlan_text(&p.vlan),
        state_text(b, p),
    ];
    if let Some(m) = &p.mac {
        lines.insert(1, m.clone());
    }
    let mut col = boxed(&lines);
    if let Some(ns) = &p.netns {
        let mut inner = vec![format!("netns {}", escape(ns))];
        if let Some(i) = &p.ifname {
            inner.push(escape(i));
        }
        inner.extend(p.addresses.iter().cloned());
        if let Some(g) = &p.gateway {
            inner.push(format!("via {g}"));
        }
        let nsbox = boxed(&inner);
        // Both boxes centred on one line down the column.
        let (pw, nw) = (col[0].chars().count(), nsbox[0].chars().count());
        let w = pw.max(nw);
        let indent = |b: Vec<String>, bw: usize| {
            b.into_iter()
                .map(|l| format!("{}{l}", " ".repeat((w - bw) / 2)))
                .collect::<Vec<_>>()
        };
        col = indent(col, pw);
        col.push(format!("{}|", " ".repeat(w / 2)));
        col.extend(indent(nsbox, nw));
    }
    col
}

/// `vbr show --diagram`.
pub(crate) fn text(bridges: &[BridgeView]) -> String {
    let mut out = String::new();
    for (i, b) in bridges.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let cols: Vec<Vec<String>> = b.ports.iter().map(|p| column(b, p)).collect();
        // Rows of columns no wider than MAX_WIDTH.
        let mut rows: Vec<Vec<&Vec<String>>> = vec![Vec::new()];
        let mut width = 0;
        for c in &cols {
            let w = c.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 3;
            if width + w > MAX_WIDTH && !rows.last().is_some_and(Vec::is_empty) {
                rows.push(Vec::new());
                width = 0;
            }
            width += w;
            if let Some(r) = rows.last_mut() {
                r.push(c);
            }
        }
        for (ri, row) in rows.iter().enumerate() {
            let widths: Vec<usize> = row
                .iter()
                .map(|c| c.iter().map(|l| l.chars().count()).max().unwrap_or(0))
                .collect();
            let total: usize = widths.iter().sum::<usize>() + 3 * widths.len().saturating_sub(1);
            let head = if ri == 0 {
                vec![
                    format!(
                        "bridge {}   id {}   STP {}   VLAN filtering {}",
                        escape(&b.name),
                        b.bridge_id,
                        if b.stp { "on" } else { "off" },
                        if b.vlan_filtering { "on" } else { "off" }
                    ),
                    format!(
                        "{} FDB entries   {} flows in the kernel fast path",
                        b.fdb_entries, b.fast_flows
                    ),
                ]
            } else {
                vec![format!("bridge {} (continued)", escape(&b.name))]
            };
            let mut hb = boxed(&head);
            let hw = hb[0].chars().count();
            if hw < total {
                // Stretch the bridge box over the ports.
                hb = boxed(
                    &head
                        .iter()
                        .map(|l| format!("{l:<w$}", w = total - 4))
                        .collect::<Vec<_>>(),
                );
            }
            for l in &hb {
                out.push_str(l);
                out.push('\n');
            }
            // The links from the bridge down to each port.
            let mut link = String::new();
            for (k, w) in widths.iter().enumerate() {
                if k > 0 {
                    link.push_str("   ");
                }
                let mid = w / 2;
                link.push_str(&" ".repeat(mid));
                link.push('|');
                link.push_str(&" ".repeat(w - mid - 1));
            }
            out.push_str(link.trim_end());
            out.push('\n');
            let height = row.iter().map(|c| c.len()).max().unwrap_or(0);
            for li in 0..height {
                let mut line = String::new();
                for (k, c) in row.iter().enumerate() {
                    if k > 0 {
                        line.push_str("   ");
                    }
                    let cell = c.get(li).map(String::as_str).unwrap_or("");
                    line.push_str(&format!("{cell:<w$}", w = widths[k]));
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        if b.ports.is_empty() {
            out.push_str("(no ports)\n");
        }
    }
    if bridges.is_empty() {
        out.push_str("no bridges\n");
    }
    out
}

/// A string as a Graphviz double-quoted ID.
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `vbr show --format dot`: an undirected graph, one cluster per bridge; blocked or
/// missing ports drawn dashed and red.
pub(crate) fn dot(bridges: &[BridgeView]) -> String {
    let mut o = String::from(
        "graph vbridge {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n",
    );
    for b in bridges {
        let bid = format!("bridge:{}", b.name);
        o.push_str(&format!(
            "  subgraph {} {{\n",
            q(&format!("cluster_{}", b.name))
        ));
        o.push_str("    style=rounded; color=gray;\n");
        o.push_str(&format!(
            "    {} [shape=box3d, style=bold, label={}];\n",
            q(&bid),
            q(&format!(
                "bridge {}\nid {}\nSTP {}, VLAN filtering {}\n{} FDB entries, {} fast-path flows",
                b.name,
                b.bridge_id,
                if b.stp { "on" } else { "off" },
                if b.vlan_filtering { "on" } else { "off" },
                b.fdb_entries,
                b.fast_flows
            ))
        ));
        for p in &b.ports {
            let pid = format!("port:{}:{}", b.name, p.name);
            let state = state_text(b, p);
            let bad = p.state != PortState::Up || state.starts_with("STP");
            o.push_str(&format!(
                "    {} [label={}{}];\n",
                q(&pid),
                q(&format!(
                    "{}\n{}\n{}\n{}",
                    p.name,
                    kind_text(p),
                    vlan_text(&p.vlan),
                    state
                )),
                if bad {
                    ", color=red, fontcolor=red"
                } else {
                    ""
                }
            ));
            o.push_str(&format!(
                "    {} -- {}{};\n",
                q(&bid),
                q(&pid),
                if bad {
                    " [style=dashed, color=red]"
                } else {
                    ""
                }
            ));
            if let Some(ns) = &p.netns {
                let nid = format!("netns:{ns}:{}", p.name);
                let mut label = format!("netns {ns}");
                if let Some(i) = &p.ifname {
                    label.push('\n');
                    label.push_str(i);
                }
                for a in &p.addresses {
                    label.push('\n');
                    label.push_str(a);
                }
                if let Some(g) = &p.gateway {
                    label.push_str(&format!("\nvia {g}"));
                }
                o.push_str(&format!(
                    "    {} [shape=folder, label={}];\n    {} -- {};\n",
                    q(&nid),
                    q(&label),
                    q(&pid),
                    q(&nid)
                ));
            }
        }
        o.push_str("  }\n");
    }
    o.push_str("}\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridges() -> Vec<BridgeView> {
        let port = |name: &str, kind: &str, netns: Option<&str>, stp: &str, vlan| {
            let mut p = serde_json::json!({
                "name": name, "port_no": 1, "kind": kind, "state": "up",
                "stp_state": stp, "mac": null, "vlan": vlan,
                "flags": {}, "max_learned": 0, "learned": 0, "fast_path": kind == "interface",
                "counters": {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0,
                    "tx_bytes": 0, "rx_flooded": 0, "tx_flooded": 0, "rx_control": 0,
                    "drops": {}}
            });
            if let Some(ns) = netns {
                p["netns"] = ns.into();
                p["ifname"] = "eth0".into();
                p["addresses"] = serde_json::json!(["10.0.0.1/24"]);
                p["gateway"] = "10.0.0.254".into();
            }
            p
        };
        serde_json::from_value(serde_json::json!([{
            "name": "br0", "bridge_id": "8000.020000000001", "mac": "02:00:00:00:00:01",
            "mac_fixed": false, "stp": true, "vlan_filtering": true, "ageing_secs": 300.0,
            "fdb_entries": 3, "fdb_learned": 2, "fdb_moves": 0, "fdb_limit_hits": 0,
            "fast_flows": 2, "drops": {},
            "ports": [
                port("br0", "host", None, "forwarding", serde_json::json!({"mode": "access", "vid": 1})),
                port("ns0-eth0", "interface", Some("ns0"), "forwarding", serde_json::json!({"mode": "access", "vid": 10})),
                port("eth1", "interface", None, "blocking", serde_json::json!({"mode": "trunk", "allowed": "10,20", "native": null})),
                port("vm1", "tap", None, "forwarding", serde_json::json!({"mode": "access", "vid": 20})),
            ]
        }]))
        .expect("BridgeViews")
    }

    #[test]
    fn the_text_diagram_shows_bridge_ports_namespaces_vlans_and_blocked_ports() {
        let t = text(&bridges());
        for want in [
            "bridge br0",
            "STP on",
            "| ns0-eth0",
            "veth, fast path",
            "access 10",
            "netns ns0",
            "10.0.0.1/24",
            "via 10.0.0.254",
            "interface (uplink)",
            "trunk 10,20",
            "STP BLOCKING",
            "tap (VM)",
        ] {
            assert!(t.contains(want), "{want:?} missing:\n{t}");
        }
        // Every box is closed: as many top edges as bottom ones, lines of one box aligned.
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines.iter().all(|l| l.chars().count() <= MAX_WIDTH + 20),
            "{t}"
        );
        assert!(
            lines[0].starts_with("+-") && lines[0].ends_with("-+"),
            "{t}"
        );
    }

    #[test]
    fn dot_output_names_every_node_and_marks_blocked_ports() {
        let d = dot(&bridges());
        assert!(d.starts_with("graph vbridge {"), "{d}");
        assert!(
            d.contains("\"bridge:br0\" -- \"port:br0:ns0-eth0\";"),
            "{d}"
        );
        assert!(
            d.contains("\"bridge:br0\" -- \"port:br0:eth1\" [style=dashed, color=red];"),
            "{d}"
        );
        assert!(d.contains("shape=folder"), "{d}");
        assert_eq!(d.matches('{').count(), d.matches('}').count(), "{d}");
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_for_graphviz() {
        assert_eq!(q("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }
}
