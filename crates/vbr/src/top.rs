//! `vbr top [BRIDGE]`: a live terminal view of the switch (ratatui). Each second it asks
//! the daemon for its counters and shows, per port, frames and bits a second in and
//! out, its state and whether it is on the kernel fast path; per bridge, the FDB size,
//! the share of frames the kernel forwarded and drops a second by reason. `q`, Esc or
//! Ctrl-C quits.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use vbridge_datapath::{BridgeView, PortState};

use crate::api::Request;

/// How often the view is refreshed.
const REFRESH: Duration = Duration::from_secs(1);

/// A port's rates over the last refresh.
#[derive(Debug, Default, Clone)]
struct Rates {
    rx_fps: f64,
    rx_bps: f64,
    tx_fps: f64,
    tx_bps: f64,
    drops_ps: f64,
}

/// Two readings of the counters and what changed between them.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    last: Option<(Instant, Vec<BridgeView>)>,
}

/// What one refresh shows.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    bridges: Vec<BridgeView>,
    /// By (bridge, port).
    rates: BTreeMap<(String, String), Rates>,
    /// By bridge: share of frames the kernel forwarded over the last refresh.
    fast_share: BTreeMap<String, Option<f64>>,
    /// By bridge and reason: drops a second.
    drops: BTreeMap<(String, String), f64>,
}

impl Sampler {
    /// Takes a reading made at `at`; the rates since the previous one.
    pub(crate) fn sample(&mut self, at: Instant, now: Vec<BridgeView>) -> Frame {
        let mut f = Frame::default();
        if let Some((then, before)) = &self.last {
            let secs = at.duration_since(*then).as_secs_f64().max(1e-3);
            let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
            for b in &now {
                let Some(old) = before.iter().find(|o| o.name == b.name) else {
                    continue;
                };
                let mut rx_total = 0.0;
                for p in &b.ports {
                    let Some(op) = old.ports.iter().find(|o| o.name == p.name) else {
                        continue;
                    };
                    let (c, o) = (&p.counters, &op.counters);
                    let drops: u64 = c.drops.values().sum();
                    let odrops: u64 = o.drops.values().sum();
                    let r = Rates {
                        rx_fps: per(c.rx_packets, o.rx_packets),
                        rx_bps: per(c.rx_bytes, o.rx_bytes) * 8.0,
                        tx_fps: per(c.tx_packets, o.tx_packets),
                        tx_bps: per(c.tx_bytes, o.tx_bytes) * 8.0,
                        drops_ps: per(drops, odrops),
                    };
                    rx_total += r.rx_fps;
                    for (reason, n) in &c.drops {
                        let was = o.drops.get(reason).copied().unwrap_or(0);
                        *f.drops.entry((b.name.clone(), reason.clone())).or_default() +=
                            per(*n, was);
                    }
                    f.rates.insert((b.name.clone(), p.name.clone()), r);
                }
                let fast = per(b.fast_frames, old.fast_frames);
                f.fast_share.insert(
                    b.name.clone(),
                    (rx_total > 0.0).then(|| (fast / rx_total).min(1.0)),
                );
            }
        }
        f.bridges = now.clone();
        self.last = Some((at, now));
        f
    }
}

/// `1.2M`, `340k`, `12`: a rate in few characters.
fn si(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1}G", v / 1e9),
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// Draws one refresh.
fn draw(frame: &mut ratatui::Frame<'_>, f: &Frame, socket: &Path, error: Option<&str>) {
    let [head, ports, drops] = Layout::vertical([
        Constraint::Length(2 + f.bridges.len().max(1) as u16),
        Constraint::Min(4),
        Constraint::Length(6),
    ])
    .areas(frame.area());
    let mut lines: Vec<Line<'_>> = f
        .bridges
        .iter()
        .map(|b| {
            let share = f
                .fast_share
                .get(&b.name)
                .copied()
                .flatten()
                .map_or_else(|| "-".to_owned(), |s| format!("{:.0}%", s * 100.0));
            Line::from(format!(
                "{}  ports {}  fdb {}  fast-path flows {}  fast-path share {}  stp {}",
                b.name,
                b.ports.len(),
                b.fdb_entries,
                b.fast_flows,
                share,
                if b.stp { "on" } else { "off" }
            ))
        })
        .collect();
    if let Some(e) = error {
        lines.push(Line::from(format!("error: {e}")));
    }
    if f.bridges.is_empty() && error.is_none() {
        lines.push(Line::from("no bridges"));
    }
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(
            " vbr top — {} — refresh 1 s — q quits ",
            socket.display()
        ))),
        head,
    );
    let header = Row::new([
        "bridge", "port", "state", "stp", "fast", "rx f/s", "rx b/s", "tx f/s", "tx b/s", "drop/s",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = f.bridges.iter().flat_map(|b| {
        b.ports.iter().map(|p| {
            let r = f
                .rates
                .get(&(b.name.clone(), p.name.clone()))
                .cloned()
                .unwrap_or_default();
            Row::new([
                b.name.clone(),
                p.name.clone(),
                match p.state {
                    PortState::Up => "up",
                    PortState::Down => "down",
                    PortState::Gone => "gone",
                }
                .to_owned(),
                p.stp_state.clone(),
                if p.fast_path { "yes" } else { "-" }.to_owned(),
                si(r.rx_fps),
                si(r.rx_bps),
                si(r.tx_fps),
                si(r.tx_bps),
                si(r.drops_ps),
            ])
        })
    });
    let widths = [
        Constraint::Length(10),
        Constraint::Length(16),
        Constraint::Length(5),
        Constraint::Length(10),
        Constraint::Length(4),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(7),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(Block::bordered().title(" ports ")),
        ports,
    );
    let drop_rows = f.bridges.iter().flat_map(|b| {
        b.drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, total)| {
                let now = f
                    .drops
                    .get(&(b.name.clone(), reason.clone()))
                    .copied()
                    .unwrap_or(0.0);
                Row::new([b.name.clone(), reason.clone(), si(now), total.to_string()])
            })
    });
    frame.render_widget(
        Table::new(
            drop_rows,
            [
                Constraint::Length(10),
                Constraint::Length(24),
                Constraint::Length(8),
                Constraint::Length(12),
            ],
        )
        .header(
            Row::new(["bridge", "drop reason", "per s", "total"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(" drops by reason ")),
        drops,
    );
}

/// Runs the view until `q`.
pub(crate) fn run(socket: &Path, bridge: Option<&str>) -> Result<()> {
    let req = Request::Stats {
        bridge: bridge.map(str::to_owned),
    };
    // The first reading before the terminal is taken: a daemon that cannot be reached
    // or a bridge that does not exist is said plainly.
    let first = read(socket, &req)?;
    let mut sampler = Sampler::default();
    let mut shown = sampler.sample(Instant::now(), first);
    let mut terminal = ratatui::try_init().context("the terminal")?;
    let r = (|| -> Result<()> {
        let mut error: Option<String> = None;
        let mut next = Instant::now() + REFRESH;
        loop {
            terminal.draw(|fr| draw(fr, &shown, socket, error.as_deref()))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()? {
                    let quit = k.kind == KeyEventKind::Press
                        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                            || (k.code == KeyCode::Char('c')
                                && k.modifiers.contains(KeyModifiers::CONTROL)));
                    if quit {
                        return Ok(());
                    }
                }
                continue;
            }
            next = Instant::now() + REFRESH;
            match read(socket, &req) {
                Ok(now) => {
                    error = None;
                    shown = sampler.sample(Instant::now(), now);
                }
                Err(e) => error = Some(format!("{e:#}")),
            }
        }
    })();
    ratatui::restore();
    r
}

fn read(socket: &Path, req: &Request) -> Result<Vec<BridgeView>> {
    let resp = crate::client::call(socket, req)?;
    if !resp.ok {
        anyhow::bail!("{}", resp.error.map(|e| e.message).unwrap_or_default());
    }
    serde_json::from_value(resp.result.unwrap_or_default())
        .context("the daemon's answer is not what this vbr expects")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(rx: u64, fast: u64, drops: u64) -> Vec<BridgeView> {
        let json = serde_json::json!([{
            "name": "br0", "bridge_id": "8000.020000000001", "mac": "02:00:00:00:00:01",
            "mac_fixed": false, "stp": false, "vlan_filtering": false, "ageing_secs": 300.0,
            "fdb_entries": 2, "fdb_learned": 2, "fdb_moves": 0, "fdb_limit_hits": 0,
            "fast_flows": 1, "fast_frames": fast, "fast_bytes": fast * 100,
            "drops": {"vlan_filtered": drops},
            "ports": [{
                "name": "p1", "port_no": 1, "kind": "interface", "state": "up",
                "stp_state": "forwarding", "mac": null, "vlan": {"mode": "access", "vid": 1},
                "flags": {}, "max_learned": 0, "learned": 1, "fast_path": true,
                "counters": {"rx_packets": rx, "rx_bytes": rx * 100, "tx_packets": 0,
                    "tx_bytes": 0, "rx_flooded": 0, "tx_flooded": 0, "rx_control": 0,
                    "drops": {"vlan_filtered": drops}}
            }]
        }]);
        serde_json::from_value(json).expect("a BridgeView")
    }

    #[test]
    fn rates_are_differences_over_the_interval() {
        let mut s = Sampler::default();
        let t0 = Instant::now();
        let f = s.sample(t0, view(100, 50, 1));
        assert!(f.rates.is_empty(), "no rates from one reading");
        let f = s.sample(t0 + Duration::from_secs(2), view(300, 150, 5));
        let r = &f.rates[&("br0".to_owned(), "p1".to_owned())];
        assert_eq!(r.rx_fps, 100.0);
        assert_eq!(r.rx_bps, 100.0 * 100.0 * 8.0);
        assert_eq!(r.drops_ps, 2.0);
        assert_eq!(f.fast_share["br0"], Some(0.5));
        assert_eq!(
            f.drops[&("br0".to_owned(), "vlan_filtered".to_owned())],
            2.0
        );
        // Counters that went back (a restarted daemon) give zero, not a huge rate.
        let f = s.sample(t0 + Duration::from_secs(3), view(10, 0, 0));
        assert_eq!(f.rates[&("br0".to_owned(), "p1".to_owned())].rx_fps, 0.0);
    }

    #[test]
    fn rates_print_short() {
        assert_eq!(si(12.0), "12");
        assert_eq!(si(1500.0), "1.5k");
        assert_eq!(si(2_500_000.0), "2.5M");
        assert_eq!(si(9.4e9), "9.4G");
    }
}
