//! BPDUs at the byte level: what the bridge sends parses back and looks like a Linux
//! kernel bridge's; a peer speaking like Linux (Config, TCN, TC-ack) is understood; bad
//! BPDUs are dropped and counted and a flood of them does not wedge the engine.

use core::time::Duration;

use vbridge_core::{
    Bridge, BridgeConfig, BridgeId, Decision, DropReason, Instant, MacAddr, PortConfig, PortId,
    StpEvent, StpMode, StpRole, StpState, Verdict,
};
use vbridge_wire::bpdu::{
    self, ConfigBpdu, Flags, PortRole, Repr, emit_frame, millis_to_ticks, parse_frame,
};

const BRIDGE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x10, 0]);
const PORT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x10, 1]);
/// A better bridge than ours, as a Linux box with `brctl setbridgeprio br0 4096` would be.
const LINUX: BridgeId = BridgeId::new(0x1000, MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]));

fn bridge(mode: StpMode, ports: usize) -> (Bridge, Vec<PortId>) {
    let mut cfg = BridgeConfig::new(BRIDGE_MAC);
    cfg.mac_fixed = true;
    let mut b = Bridge::new(cfg);
    let mut p = Vec::new();
    for i in 0..ports {
        let mut m = PORT_MAC;
        m.0[5] = i as u8 + 1;
        p.push(b.add_port(PortConfig::new(Some(m))).unwrap());
    }
    b.set_stp_mode(Instant::ZERO, mode);
    (b, p)
}

fn sent(b: &mut Bridge) -> Vec<(PortId, Vec<u8>)> {
    std::iter::from_fn(|| b.poll_transmit())
        .map(|(p, f)| (p, f.to_vec()))
        .collect()
}

fn config(root: BridgeId, cost: u32, from: BridgeId, port: u16, flags: Flags) -> ConfigBpdu {
    ConfigBpdu {
        flags,
        root_id: root,
        root_path_cost: cost,
        bridge_id: from,
        port_id: bpdu::PortId(port),
        message_age_ticks: 0,
        max_age_ticks: millis_to_ticks(20_000),
        hello_time_ticks: millis_to_ticks(2_000),
        forward_delay_ticks: millis_to_ticks(15_000),
    }
}

fn frame(repr: &Repr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    let n = emit_frame(repr, src, &mut f).unwrap();
    f.truncate(n);
    f
}

fn feed(b: &mut Bridge, t_ms: u64, port: PortId, f: &[u8]) -> Decision {
    let mut d = Decision::new();
    b.process(Instant::from_millis(t_ms), port, f, &mut d);
    d
}

/// Runs timers from `from` to `to` ms, returning every BPDU sent meanwhile.
fn run(b: &mut Bridge, from: u64, to: u64) -> Vec<(u64, PortId, Vec<u8>)> {
    let mut out = Vec::new();
    let mut t = from;
    while let Some(at) = b.poll_at().map(|i| i.millis().max(t)).filter(|&a| a <= to) {
        t = at;
        b.handle_timeout(Instant::from_millis(t));
        out.extend(sent(b).into_iter().map(|(p, f)| (t, p, f)));
    }
    out
}

#[test]
fn config_bpdu_bytes_look_like_linux() {
    let (mut b, p) = bridge(StpMode::Stp, 1);
    let out = sent(&mut b);
    assert_eq!(out.len(), 1);
    let (port, f) = &out[0];
    assert_eq!(*port, p[0]);
    #[rustfmt::skip]
    let expect: [u8; 60] = [
        0x01, 0x80, 0xc2, 0x00, 0x00, 0x00, // STP group address
        0x02, 0x00, 0x00, 0x00, 0x10, 0x01, // the port's MAC
        0x00, 0x26, // 802.3 length: 3 + 35
        0x42, 0x42, 0x03, // LLC
        0x00, 0x00, 0x00, 0x00, // protocol 0, version 0, type Config
        0x00, // flags
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x10, 0x00, // root: ourselves
        0x00, 0x00, 0x00, 0x00, // root path cost
        0x80, 0x00, 0x02, 0x00, 0x00, 0x00, 0x10, 0x00, // bridge id
        0x80, 0x01, // port id: priority 128, port 1
        0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00, // age 0, max 20, hello 2, fd 15
        0, 0, 0, 0, 0, 0, 0, 0, // padding
    ];
    assert_eq!(f[..], expect[..]);
    let Repr::Config(c) = parse_frame(f).unwrap() else {
        panic!("not a config BPDU")
    };
    assert_eq!(c.bridge_id, BridgeId::new(0x8000, BRIDGE_MAC));
    // Periodic: one every hello time from the designated port.
    let later = run(&mut b, 0, 10_500);
    let times: Vec<u64> = later.iter().map(|(t, _, _)| *t).collect();
    assert_eq!(times, vec![2_000, 4_000, 6_000, 8_000, 10_000]);
}

#[test]
fn rst_bpdu_bytes() {
    let (mut b, _) = bridge(StpMode::Rstp, 1);
    let out = sent(&mut b);
    let f = &out[0].1;
    assert_eq!(f.len(), 60);
    assert_eq!(
        f[12..21],
        [0x00, 0x27, 0x42, 0x42, 0x03, 0x00, 0x00, 0x02, 0x02]
    );
    let Repr::Rst(c) = parse_frame(f).unwrap() else {
        panic!("not an RST BPDU")
    };
    assert_eq!(c.flags.port_role(), PortRole::Designated);
    assert!(c.flags.contains(Flags::PROPOSAL));
    assert!(!c.flags.contains(Flags::LEARNING | Flags::FORWARDING));
    assert_eq!(f[53], 0, "version 1 length");
    assert!(f[54..].iter().all(|&x| x == 0));
}

#[test]
fn a_linux_peer_in_stp_mode() {
    let (mut b, p) = bridge(StpMode::Stp, 2);
    sent(&mut b);
    let linux_port = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
    let hello = |tc: bool, ack: bool| {
        let mut f = Flags::default();
        if tc {
            f.insert(Flags::TC);
        }
        if ack {
            f.insert(Flags::TC_ACK);
        }
        frame(
            &Repr::Config(config(LINUX, 0, LINUX, 0x8002, f)),
            linux_port,
        )
    };
    // Linux is root; our port 1 becomes root port at once and sends nothing but TCNs.
    let d = feed(&mut b, 100, p[0], &hello(false, false));
    assert_eq!(d.verdict, Verdict::Control);
    let s = b.stp_status(Instant::from_millis(100));
    assert_eq!((s.designated_root, s.root_port), (LINUX, Some(p[0])));
    assert_eq!(s.root_path_cost, 2000);
    assert_eq!(s.ports[0].role, StpRole::Root);
    // Linux repeats its hello every 2 s; after max age + forward delay both ports
    // forward, and the new forwarding port is a topology change: TCN to the root.
    let mut tcns = Vec::new();
    let mut t = 100;
    while t < 60_000 {
        t += 2_000;
        let acked = tcns.len() >= 2;
        for (at, port, f) in run(&mut b, t - 2_000, t) {
            if let Ok(Repr::Tcn) = parse_frame(&f) {
                assert_eq!(port, p[0]);
                assert_eq!(f[12..21], [0x00, 0x07, 0x42, 0x42, 0x03, 0, 0, 0, 0x80]);
                tcns.push(at);
            }
        }
        // Linux acknowledges the second TCN, then sets TC for a while.
        feed(&mut b, t, p[0], &hello(acked, acked));
        sent(&mut b);
    }
    assert_eq!(b.port_stp_state(p[0]).unwrap(), StpState::Forwarding);
    assert_eq!(b.port_stp_state(p[1]).unwrap(), StpState::Forwarding);
    assert!(
        tcns.len() >= 2 && tcns.len() <= 3,
        "TCNs until acknowledged: {tcns:?}"
    );
    assert!(tcns[0] >= 35_000, "TCN once the port forwards");
    // The root's TC flag shortens ageing.
    let s = b.stp_status(Instant::from_millis(t));
    assert_eq!(s.ageing_time, Duration::from_secs(15));
    // The designated port passes the TC flag on.
    let downstream = run(&mut b, t, t + 2_100);
    let Repr::Config(c) = parse_frame(&downstream.last().unwrap().2).unwrap() else {
        panic!()
    };
    assert_eq!(c.root_id, LINUX);
    assert_eq!(c.root_path_cost, 2000);
    assert!(c.flags.contains(Flags::TC));
    assert_eq!(c.message_age_ticks, 256, "one hop older");
}

#[test]
fn rstp_falls_back_to_config_bpdus_for_a_linux_peer() {
    let (mut b, p) = bridge(StpMode::Rstp, 1);
    sent(&mut b);
    let linux_port = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
    // Linux, worse than us, answers our RST BPDUs (which it ignores) with its own Config
    // BPDUs as long as it thinks it is designated.
    let worse = BridgeId::new(0xf000, linux_port);
    let linux = frame(
        &Repr::Config(config(worse, 0, worse, 0x8001, Flags::default())),
        linux_port,
    );
    let mut kinds = Vec::new();
    for t in (0..10_000).step_by(1_000) {
        feed(&mut b, t, p[0], &linux);
        for (_, _, f) in run(&mut b, t, t + 999) {
            kinds.push(f[20]);
        }
    }
    let s = b.stp_status(Instant::from_secs(10));
    assert!(!s.ports[0].send_rstp);
    assert_eq!(kinds.last(), Some(&0x00), "Config BPDUs now: {kinds:?}");
    assert!(kinds.contains(&0x02), "RST BPDUs first");
    assert!(std::iter::from_fn(|| b.poll_stp_event()).any(|e| e
        == StpEvent::Protocol {
            port: p[0],
            rstp: false
        }));
}

#[test]
fn bad_bpdus_are_dropped_and_counted() {
    let (mut b, p) = bridge(StpMode::Rstp, 2);
    sent(&mut b);
    let peer = MacAddr([0x52, 0, 0, 0, 0, 1]);
    let good = config(LINUX, 0, LINUX, 0x8001, Flags::default());
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let f = frame(&Repr::Config(good), peer);
    cases.push(("truncated", f[..30].to_vec()));
    let mut proto = f.clone();
    proto[18] = 1;
    cases.push(("protocol id 1", proto));
    let mut kind = f.clone();
    kind[20] = 0x42;
    cases.push(("unknown type", kind));
    let mut llc = f.clone();
    llc[14] = 0xaa;
    cases.push(("not LLC 42 42 03", llc));
    cases.push(("not a BPDU at all", {
        let mut x = f.clone();
        x[12..14].copy_from_slice(&[0x08, 0x00]);
        x
    }));
    let mut old = good;
    old.message_age_ticks = old.max_age_ticks;
    cases.push(("message age = max age", frame(&Repr::Config(old), peer)));
    let mut absurd = good;
    absurd.max_age_ticks = u16::MAX;
    cases.push(("max age 256 s", frame(&Repr::Rst(absurd), peer)));
    let mut absurd = good;
    absurd.hello_time_ticks = 0;
    cases.push(("hello 0", frame(&Repr::Config(absurd), peer)));
    let mut absurd = good;
    absurd.forward_delay_ticks = millis_to_ticks(255_000);
    cases.push(("forward delay 255 s", frame(&Repr::Config(absurd), peer)));
    // Our own BPDU coming back on the port that sent it.
    let own = sent_after_tick(&mut b, p[0]);
    cases.push(("our own BPDU looped back", own));
    for (what, f) in &cases {
        let d = feed(&mut b, 500, p[0], f);
        assert_eq!(d.drop_reason(), Some(DropReason::BadBpdu), "{what}");
        assert!(d.egress.is_empty(), "{what}");
    }
    let s = b.stp_status(Instant::from_millis(500));
    assert_eq!(s.ports[0].counters.rx_bad, cases.len() as u64);
    assert_eq!(
        s.designated_root,
        BridgeId::new(0x8000, BRIDGE_MAC),
        "nothing accepted"
    );
    assert_eq!(b.stats().drops.get(DropReason::BadBpdu), cases.len() as u64);
    // A good one still works.
    assert_eq!(
        feed(&mut b, 600, p[0], &frame(&Repr::Config(good), peer)).verdict,
        Verdict::Control
    );
    assert_eq!(
        b.stp_status(Instant::from_millis(600)).designated_root,
        LINUX
    );
}

/// The BPDU the bridge sends on `port` at its next hello.
fn sent_after_tick(b: &mut Bridge, port: PortId) -> Vec<u8> {
    run(b, 0, 2_000)
        .into_iter()
        .find(|(_, p, _)| *p == port)
        .unwrap()
        .2
}

/// xorshift64: deterministic noise.
fn noise(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn a_flood_of_bpdus_does_not_wedge_the_engine() {
    let (mut b, p) = bridge(StpMode::Rstp, 2);
    sent(&mut b);
    let mut x = 0x1234_5678_9abc_def0u64;
    let mut sent_during = 0usize;
    let mut bad = 0u64;
    // 10 000 BPDUs in one virtual second: valid ones from ever better and worse roots,
    // with random flags, and garbage.
    for k in 0..10_000u64 {
        let r = noise(&mut x);
        let t = k / 10;
        let f = match r % 4 {
            0 => {
                let mut f = vec![0u8; 60];
                f[..6].copy_from_slice(&MacAddr::STP_GROUP.0);
                for byte in &mut f[6..] {
                    *byte = noise(&mut x) as u8;
                }
                f
            }
            _ => {
                let root = BridgeId::new((r >> 8) as u16 & 0xf000, MacAddr::from_u64(r >> 16));
                let mut c = config(
                    root,
                    (r >> 32) as u32 % 100_000,
                    root,
                    0x8001,
                    Flags(r as u8),
                );
                c.message_age_ticks = (r >> 40) as u16 % 0x1400;
                let repr = if r % 4 == 1 {
                    Repr::Config(c)
                } else {
                    Repr::Rst(c)
                };
                frame(&repr, MacAddr([0x52, 0, 0, 0, 0, 2]))
            }
        };
        let d = feed(&mut b, t, p[(r >> 60) as usize % 2], &f);
        assert_ne!(d.verdict, Verdict::Forward);
        if d.drop_reason() == Some(DropReason::BadBpdu) {
            bad += 1;
        }
        sent_during += sent(&mut b).len();
        while b.poll_stp_event().is_some() {}
    }
    assert!(bad > 2_000, "{bad} refused");
    // Transmit Hold Count: at most 6 BPDUs per port and second (plus the first ones).
    assert!(
        sent_during <= 2 * 6 * 2 + 4,
        "{sent_during} BPDUs sent during the flood"
    );
    // Then silence: the flooded information ages out, the bridge is root again, both
    // ports designated and forwarding, and hellos go out every 2 s.
    let out = run(&mut b, 1_000, 30_000);
    assert!(out.len() >= 2 * 10);
    let s = b.stp_status(Instant::from_secs(30));
    assert_eq!(s.designated_root, BridgeId::new(0x8000, BRIDGE_MAC));
    assert!(s.ports.iter().all(|p| p.role == StpRole::Designated));
    assert!(s.ports.iter().all(|p| p.state == StpState::Forwarding));
}

#[test]
fn random_bytes_to_the_stp_address_never_panic() {
    for mode in [StpMode::Stp, StpMode::Rstp] {
        let (mut b, p) = bridge(mode, 1);
        let mut x = 42u64;
        for k in 0..20_000u64 {
            let len = (noise(&mut x) % 80) as usize;
            let mut f: Vec<u8> = (0..len).map(|_| noise(&mut x) as u8).collect();
            if f.len() >= 6 {
                f[..6].copy_from_slice(&MacAddr::STP_GROUP.0);
            }
            if f.len() >= 19 && k % 2 == 0 {
                f[12] = 0;
                f[13] = (len - 14) as u8;
                f[14..17].copy_from_slice(&[0x42, 0x42, 0x03]);
                f[17] = 0;
                f[18] = 0;
            }
            let d = feed(&mut b, k, p[0], &f);
            assert_ne!(d.verdict, Verdict::Forward);
            sent(&mut b);
        }
        run(&mut b, 20_000, 25_000);
    }
}

#[test]
fn bpdus_flood_when_stp_is_off_and_never_when_on() {
    let (mut b, p) = bridge(StpMode::Off, 3);
    assert!(b.poll_transmit().is_none());
    assert_eq!(b.poll_at(), None);
    let f = frame(
        &Repr::Config(config(LINUX, 0, LINUX, 0x8001, Flags::default())),
        MacAddr([0x52, 0, 0, 0, 0, 1]),
    );
    let d = feed(&mut b, 0, p[0], &f);
    assert_eq!(d.verdict, Verdict::Forward);
    assert_eq!(d.egress.len(), 2);
    b.set_stp_enabled(true);
    assert_eq!(b.stp_mode(), StpMode::Stp);
    let d = feed(&mut b, 0, p[0], &f);
    assert_eq!(d.verdict, Verdict::Control);
    assert!(d.egress.is_empty());
    // The wrapper keeps RSTP when asked for "on" again, and turns it off.
    b.set_stp_mode(Instant::ZERO, StpMode::Rstp);
    b.set_stp_enabled(true);
    assert_eq!(b.stp_mode(), StpMode::Rstp);
    b.set_stp_enabled(false);
    assert_eq!(b.stp_mode(), StpMode::Off);
    assert!(
        p.iter()
            .all(|&q| b.port_stp_state(q).unwrap() == StpState::Forwarding)
    );
}

#[test]
fn host_port_takes_no_part() {
    let mut cfg = BridgeConfig::new(BRIDGE_MAC);
    cfg.mac_fixed = true;
    let mut b = Bridge::new(cfg);
    let host = b.add_port(PortConfig::host()).unwrap();
    let p = b.add_port(PortConfig::new(None)).unwrap();
    b.set_stp_mode(Instant::ZERO, StpMode::Stp);
    assert_eq!(b.port_stp_state(host).unwrap(), StpState::Forwarding);
    assert_eq!(b.port_stp_state(p).unwrap(), StpState::Listening);
    assert!(b.port_stp_config(host).is_err());
    let s = b.stp_status(Instant::ZERO);
    assert_eq!(s.ports.len(), 1);
    // A port without a MAC sends from the bridge MAC.
    let (_, f) = b.poll_transmit().unwrap();
    assert_eq!(f[6..12], BRIDGE_MAC.0);
    assert!(b.poll_transmit().is_none());
}

#[test]
fn configuration_is_checked() {
    use vbridge_core::{ConfigError, StpParams};
    let (mut b, p) = bridge(StpMode::Rstp, 1);
    let t = Instant::ZERO;
    assert!(matches!(
        b.set_stp_priority(t, 1000),
        Err(ConfigError::OutOfRange { .. })
    ));
    assert!(matches!(
        b.set_stp_max_age(t, Duration::from_secs(40)),
        Err(ConfigError::StpTimers { .. })
    ));
    b.set_stp_forward_delay(t, Duration::from_secs(30)).unwrap();
    b.set_stp_max_age(t, Duration::from_secs(40)).unwrap();
    assert!(matches!(
        b.set_stp_hello_time(t, Duration::from_secs(20)),
        Err(ConfigError::OutOfRange { .. })
    ));
    assert_eq!(b.stp_params().max_age, Duration::from_secs(40));
    assert_eq!(
        b.set_stp_params(t, StpParams::default()),
        Ok(()),
        "all at once"
    );
    let mut c = b.port_stp_config(p[0]).unwrap();
    c.priority = 0x81;
    assert!(b.set_port_stp_config(t, p[0], c).is_err());
    c.priority = 0x10;
    c.path_cost = 0;
    b.set_port_stp_config(t, p[0], c).unwrap();
    b.set_port_link(t, p[0], Some(1_000), true).unwrap();
    let s = b.stp_status(t);
    assert_eq!(
        (s.ports[0].path_cost, s.ports[0].port_id.0),
        (20_000, 0x1001)
    );
    c.path_cost = 7;
    b.set_port_stp_config(t, p[0], c).unwrap();
    assert_eq!(b.stp_status(t).ports[0].path_cost, 7);
    assert!(matches!(
        b.port_stp_config(PortId(99)),
        Err(ConfigError::UnknownPort(_))
    ));
}

#[test]
fn unpadded_frames_as_a_veth_delivers_them() {
    // The kernel bridge sends 52-byte Config and 21-byte TCN frames; veth does not pad.
    let (mut b, p) = bridge(StpMode::Stp, 1);
    sent(&mut b);
    let linux_port = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x57]);
    let mut c = frame(
        &Repr::Config(config(LINUX, 0, LINUX, 0x8002, Flags::default())),
        linux_port,
    );
    c.truncate(14 + 3 + 35);
    assert_eq!(feed(&mut b, 0, p[0], &c).verdict, Verdict::Control);
    assert_eq!(b.stp_status(Instant::ZERO).designated_root, LINUX);
    let mut t = frame(&Repr::Tcn, linux_port);
    t.truncate(14 + 3 + 4);
    assert_eq!(feed(&mut b, 0, p[0], &t).verdict, Verdict::Control);
    assert_eq!(b.stp_status(Instant::ZERO).ports[0].counters.rx_tcn, 1);
}
