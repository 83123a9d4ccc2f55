//! Prometheus metrics (`vbr daemon --metrics ADDR:PORT`, opt-in): a small HTTP server on
//! its own thread answering `GET /metrics` in the OpenMetrics text format written by
//! `prometheus-client`. Each scrape reads the switch's own counters through the
//! datapath (nothing is counted twice on the forwarding path); the API's request
//! counts and latencies are kept here as they happen.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use vbridge_datapath::{BridgeView, Datapath};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BridgeLabel {
    bridge: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    bridge: String,
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    bridge: String,
    port: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StpLabels {
    bridge: String,
    port: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DhcpLabels {
    bridge: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    cmd: String,
    /// `ok`, or the error kind.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CmdLabel {
    cmd: String,
}

/// What the API counts as requests are answered.
#[derive(Clone, Debug)]
pub(crate) struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<CmdLabel, Histogram>,
}

impl Default for ApiMetrics {
    fn default() -> ApiMetrics {
        ApiMetrics {
            requests: Family::default(),
            // 100 µs to about 26 s.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 4.0, 10))
            }),
        }
    }
}

impl ApiMetrics {
    /// Counts one answered request.
    pub(crate) fn observe(&self, cmd: &str, outcome: &str, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                cmd: cmd.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&CmdLabel {
                cmd: cmd.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

/// The spanning-tree states a port's `vbr_port_stp_state` reports, one series each.
const STP_STATES: [&str; 5] = [
    "disabled",
    "blocking",
    "listening",
    "learning",
    "forwarding",
];

/// The metrics now, in the OpenMetrics text format.
pub(crate) fn render(
    d: &Datapath,
    api: &ApiMetrics,
    dhcp: &super::dhcp::Dhcp,
    nat: &super::nat::Nat,
) -> String {
    let mut reg = <Registry>::with_prefix("vbr");
    let counter = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<PortLabels, Counter>::default();
        reg.register(name, help, f.clone());
        f
    };
    let rx_frames = counter(&mut reg, "port_rx_frames", "Frames received by a port");
    let rx_bytes = counter(&mut reg, "port_rx_bytes", "Bytes received by a port");
    let tx_frames = counter(&mut reg, "port_tx_frames", "Frames sent out of a port");
    let tx_bytes = counter(&mut reg, "port_tx_bytes", "Bytes sent out of a port");
    let port_up = Family::<PortLabels, Gauge>::default();
    reg.register(
        "port_up",
        "Whether a port is attached and up (0: down or its device is gone)",
        port_up.clone(),
    );
    let port_fast = Family::<PortLabels, Gauge>::default();
    reg.register(
        "port_fast_path",
        "Whether a port is on the kernel fast path",
        port_fast.clone(),
    );
    let drops = Family::<DropLabels, Counter>::default();
    reg.register(
        "port_drops",
        "Frames dropped at a port (received by it), by reason",
        drops.clone(),
    );
    let stp = Family::<StpLabels, Gauge>::default();
    reg.register(
        "port_stp_state",
        "A port's spanning-tree state (1 for the state it is in)",
        stp.clone(),
    );
    let gauge = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<BridgeLabel, Gauge>::default();
        reg.register(name, help, f.clone());
        f
    };
    let bcounter = |reg: &mut Registry, name: &str, help: &str| {
        let f = Family::<BridgeLabel, Counter>::default();
        reg.register(name, help, f.clone());
        f
    };
    let fdb = gauge(&mut reg, "bridge_fdb_entries", "FDB entries of a bridge");
    let limit = bcounter(
        &mut reg,
        "bridge_fdb_limit_hits",
        "Addresses not learned because a learning limit was reached",
    );
    let moves = bcounter(
        &mut reg,
        "bridge_fdb_moves",
        "Stations seen moving from one port to another",
    );
    let tc = bcounter(
        &mut reg,
        "bridge_topology_changes",
        "Spanning-tree topology changes of a bridge",
    );
    let flows = gauge(
        &mut reg,
        "bridge_fast_flows",
        "Flows the kernel forwards for a bridge now",
    );
    let floods = gauge(
        &mut reg,
        "bridge_fast_floods",
        "Ports and VLANs whose broadcasts the kernel floods for a bridge now",
    );
    let fast_frames = bcounter(
        &mut reg,
        "bridge_fast_frames",
        "Frames the kernel fast path forwarded (also in the ports' counters)",
    );
    let fast_bytes = bcounter(
        &mut reg,
        "bridge_fast_bytes",
        "Bytes the kernel fast path forwarded",
    );
    reg.register(
        "api_requests",
        "API requests answered, by verb and outcome",
        api.requests.clone(),
    );
    reg.register(
        "api_request_duration_seconds",
        "Time to answer an API request, by verb",
        api.latency.clone(),
    );
    let leases = gauge(
        &mut reg,
        "dhcp_leases",
        "Leases a bridge's DHCP server holds",
    );
    let dhcp_msgs = Family::<DhcpLabels, Counter>::default();
    reg.register(
        "dhcp_messages",
        "DHCP messages a bridge's server received and sent, by kind",
        dhcp_msgs.clone(),
    );
    for n in dhcp.stats() {
        let bl = BridgeLabel {
            bridge: n.bridge.clone(),
        };
        leases.get_or_create(&bl).set(n.leases as i64);
        let c = &n.counters;
        for (kind, v) in [
            ("received", c.received),
            ("malformed", c.malformed),
            ("ignored", c.ignored),
            ("discover", c.discovers),
            ("offer", c.offers),
            ("request", c.requests),
            ("ack", c.acks),
            ("nak", c.naks),
            ("decline", c.declines),
            ("release", c.releases),
            ("inform", c.informs),
            ("exhausted", c.exhausted),
        ] {
            dhcp_msgs
                .get_or_create(&DhcpLabels {
                    bridge: n.bridge.clone(),
                    kind: kind.to_owned(),
                })
                .inc_by(v);
        }
    }
    let repairs = bcounter(
        &mut reg,
        "nat_repairs",
        "NAT tables written back after someone else removed or changed them",
    );
    for (b, n) in nat.repairs() {
        repairs.get_or_create(&BridgeLabel { bridge: b }).inc_by(n);
    }
    let bridges: Vec<BridgeView> = d.bridges(None).unwrap_or_default();
    for b in &bridges {
        let bl = BridgeLabel {
            bridge: b.name.clone(),
        };
        fdb.get_or_create(&bl).set(b.fdb_entries as i64);
        limit.get_or_create(&bl).inc_by(b.fdb_limit_hits);
        moves.get_or_create(&bl).inc_by(b.fdb_moves);
        flows.get_or_create(&bl).set(b.fast_flows as i64);
        floods.get_or_create(&bl).set(b.fast_floods as i64);
        fast_frames.get_or_create(&bl).inc_by(b.fast_frames);
        fast_bytes.get_or_create(&bl).inc_by(b.fast_bytes);
        let changes = if b.stp {
            d.stp(&b.name).map_or(0, |s| s.topology_change_count)
        } else {
            0
        };
        tc.get_or_create(&bl).inc_by(changes);
        for p in &b.ports {
            let pl = PortLabels {
                bridge: b.name.clone(),
                port: p.name.clone(),
            };
            let c = &p.counters;
            rx_frames.get_or_create(&pl).inc_by(c.rx_packets);
            rx_bytes.get_or_create(&pl).inc_by(c.rx_bytes);
            tx_frames.get_or_create(&pl).inc_by(c.tx_packets);
            tx_bytes.get_or_create(&pl).inc_by(c.tx_bytes);
            port_up
                .get_or_create(&pl)
                .set(i64::from(p.state == vbridge_datapath::PortState::Up));
            port_fast.get_or_create(&pl).set(i64::from(p.fast_path));
            for (reason, n) in &c.drops {
                drops
                    .get_or_create(&DropLabels {
                        bridge: b.name.clone(),
                        port: p.name.clone(),
                        reason: reason.clone(),
                    })
                    .inc_by(*n);
            }
            for s in STP_STATES {
                stp.get_or_create(&StpLabels {
                    bridge: b.name.clone(),
                    port: p.name.clone(),
                    state: s.to_owned(),
                })
                .set(i64::from(p.stp_state == s));
            }
        }
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    out
}

/// Binds `addr` and serves `/metrics` on a thread of its own.
pub(crate) fn serve(addr: SocketAddr, dp: Arc<super::Shared>) -> anyhow::Result<()> {
    use anyhow::Context;
    let l = TcpListener::bind(addr).with_context(|| format!("binding --metrics {addr}"))?;
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    std::thread::Builder::new()
        .name("vbr-metrics".into())
        .spawn(move || {
            let busy = Arc::new(AtomicUsize::new(0));
            for s in l.incoming() {
                match s {
                    Ok(s) => {
                        // A thread per scrape, a few at once: a silent client delays
                        // no one; over the limit, a client is closed at once.
                        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_SCRAPERS {
                            busy.fetch_sub(1, Ordering::SeqCst);
                            continue;
                        }
                        let (dp, busy2) = (Arc::clone(&dp), Arc::clone(&busy));
                        let spawned = std::thread::Builder::new().name("vbr-scrape".into()).spawn(
                            move || {
                                if let Err(e) = answer(s, &dp) {
                                    tracing::debug!(error = %e, "metrics client");
                                }
                                busy2.fetch_sub(1, Ordering::SeqCst);
                            },
                        );
                        if spawned.is_err() {
                            busy.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "metrics accept");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(())
}

/// Scrapes answered at once.
const MAX_SCRAPERS: usize = 4;

/// Largest request head read from a scraper.
const MAX_HEAD: usize = 8192;

/// Answers one HTTP request (then closes): `GET /metrics`, or an error status.
fn answer(mut s: TcpStream, shared: &super::Shared) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return reply(
                &mut s,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            let body = render(&shared.dp, &shared.api_metrics, &shared.dhcp, &shared.nat);
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            if head.contains("application/openmetrics-text") {
                reply(
                    &mut s,
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    &body,
                )
            } else {
                reply(
                    &mut s,
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    &to_prometheus_text(&body),
                )
            }
        }
        ("GET", "/") => reply(
            &mut s,
            "200 OK",
            "text/plain",
            "vbridge: the metrics are at /metrics\n",
        ),
        ("GET", _) => reply(&mut s, "404 Not Found", "text/plain", "not found\n"),
        _ => reply(&mut s, "405 Method Not Allowed", "text/plain", "only GET\n"),
    }
}

/// The OpenMetrics text as Prometheus's older text format (for scrapers that do not
/// ask for OpenMetrics, and for `promtool check metrics`): a counter's HELP and TYPE
/// name its `_total` samples, and the `# EOF` and `# UNIT` lines go.
fn to_prometheus_text(open: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in open.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            if let Some(name) = rest.strip_suffix(" counter") {
                counters.insert(name.to_owned());
            }
        }
    }
    let mut out = String::with_capacity(open.len());
    for l in open.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((kw, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{kw}{name}_total {tail}\n"));
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn reply(s: &mut TcpStream, status: &str, ctype: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}
