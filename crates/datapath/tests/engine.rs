//! The datapath driven through its public API without privileges: a bridge without a
//! host interface and socket-pair ports, with real frames through the forwarding thread.
//! Learning, flooding, known unicast, VLAN settings applied at once, per-port counters
//! and drop reasons, the views, removing a port while frames flow, and refusals that
//! leave everything as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vbridge_core::{BridgeConfig, MacAddr, Vid, VlanMode};
use vbridge_datapath::{Change, Datapath, DpError, PortEdit, PortKind};
use vbridge_host::ledger::Ledger;
use vbridge_ports::{Batch, PacketBuf, PortIo, SeqpacketPort};

const A: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
const C: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0c]);

/// A ledger in a directory of its own, removed with the returned guard (kept until the
/// datapath has stopped).
fn ledger() -> (tempfile::TempDir, Arc<Ledger>) {
    let dir = tempfile::Builder::new()
        .prefix("vbr-engine-test-")
        .tempdir()
        .unwrap();
    let ledger = Arc::new(Ledger::open(&dir.path().join("ledger.jsonl")).unwrap());
    (dir, ledger)
}

fn frame(dst: MacAddr, src: MacAddr, id: u8) -> PacketBuf {
    let mut f = Vec::new();
    f.extend(dst.0);
    f.extend(src.0);
    f.extend([0x88, 0xb5, id]);
    f.resize(60, 0);
    PacketBuf::from_frame(&f).unwrap()
}

/// The far end of a port: what a VM or namespace would be.
struct Peer {
    io: SeqpacketPort,
    batch: Batch,
}

impl Peer {
    fn send(&mut self, f: &PacketBuf) {
        self.io.send(f).unwrap();
    }

    /// Ids of the test frames that arrive within `wait`.
    fn received(&mut self, wait: Duration) -> Vec<u8> {
        let end = Instant::now() + wait;
        let mut ids = Vec::new();
        while Instant::now() < end {
            match self.io.recv_batch(&mut self.batch) {
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(_) => ids.extend(
                    self.batch
                        .packets()
                        .iter()
                        .filter(|p| p.frame().get(12..14) == Some(&[0x88, 0xb5][..]))
                        .map(|p| p.frame()[14]),
                ),
                Err(e) => panic!("peer: {e}"),
            }
        }
        ids
    }
}

fn port(dp: &Datapath, bridge: &str, name: &str) -> Peer {
    let (ours, theirs) = SeqpacketPort::pair(name, &format!("{name}-peer")).unwrap();
    dp.add_socket_port(bridge, name, Box::new(ours)).unwrap();
    Peer {
        io: theirs,
        batch: Batch::new(32),
    }
}

const WAIT: Duration = Duration::from_millis(300);

#[test]
fn forwards_learns_applies_settings_and_counts_without_privileges() {
    let (_dir, ledger) = ledger();
    let dp = Datapath::start(ledger).unwrap();
    dp.add_bridge_without_host("sw0", BridgeConfig::new(MacAddr([0x02, 0, 0, 0, 0, 1])))
        .unwrap();
    let mut a = port(&dp, "sw0", "pa");
    let mut b = port(&dp, "sw0", "pb");
    let mut c = port(&dp, "sw0", "pc");

    // Unknown destination: flooded to both others; then known: only to its port.
    a.send(&frame(B, A, 1));
    assert_eq!(b.received(WAIT), [1]);
    assert_eq!(c.received(WAIT), [1]);
    b.send(&frame(A, B, 2));
    assert_eq!(a.received(WAIT), [2]);
    assert!(c.received(WAIT).is_empty(), "known unicast is not flooded");
    a.send(&frame(B, A, 3));
    assert_eq!(b.received(WAIT), [3]);
    assert!(c.received(WAIT).is_empty());
    let fdb = dp.fdb("sw0").unwrap();
    assert!(fdb.iter().any(|r| r.mac == A.to_string() && r.port == "pa"));
    assert!(fdb.iter().any(|r| r.mac == B.to_string() && r.port == "pb"));

    // A setting applies at once: pc goes to VLAN 10, away from the others.
    let edit = PortEdit {
        flags: Vec::new(),
        vlan: Some(VlanMode::Access(Vid::new(10).unwrap())),
    };
    dp.change(
        "sw0",
        Change::Port {
            port: "pc".into(),
            edit: Box::new(edit),
        },
    )
    .unwrap();
    c.send(&frame(MacAddr::BROADCAST, C, 4));
    assert!(a.received(WAIT).is_empty(), "VLAN 10 stays apart");
    assert!(b.received(WAIT).is_empty());

    // Counters and drop reasons, as the views show them.
    let v = dp.bridges(Some("sw0")).unwrap();
    let pa = v[0].ports.iter().find(|p| p.name == "pa").unwrap();
    assert_eq!(pa.kind, PortKind::Socket);
    assert_eq!(pa.counters.rx_packets, 2);
    let pc = v[0].ports.iter().find(|p| p.name == "pc").unwrap();
    assert_eq!(pc.counters.rx_packets, 1);
    assert_eq!(
        v[0].drops.get("no_flood_target"),
        Some(&1),
        "{:?}",
        v[0].drops
    );

    // Refusals change nothing.
    let before = dp.bridges(None).unwrap();
    assert!(matches!(
        dp.add_socket_port(
            "nosuch",
            "px",
            Box::new(SeqpacketPort::pair("px", "py").unwrap().0)
        ),
        Err(DpError::NoSuchBridge(_))
    ));
    assert!(matches!(
        dp.add_socket_port(
            "sw0",
            "pa",
            Box::new(SeqpacketPort::pair("pz", "py").unwrap().0)
        ),
        Err(DpError::PortExists { .. })
    ));
    assert!(matches!(
        dp.change("sw0", Change::Ageing(Duration::from_secs(2_000_000))),
        Err(DpError::Config { .. })
    ));
    assert!(matches!(
        dp.change(
            "sw0",
            Change::PathCost {
                port: "nosuch".into(),
                cost: Some(10)
            }
        ),
        Err(DpError::NotOnBridge { .. })
    ));
    assert_eq!(dp.bridges(None).unwrap(), before);

    // A port removed while frames flow: the others carry on; socket ports are not saved.
    for i in 0..50 {
        a.send(&frame(B, A, 100 + i));
    }
    dp.del_port("sw0", "pb").unwrap();
    a.send(&frame(MacAddr::BROADCAST, A, 5));
    assert!(c.received(WAIT).is_empty(), "still in VLAN 10");
    let v = dp.bridges(Some("sw0")).unwrap();
    assert!(v[0].ports.iter().all(|p| p.name != "pb"));
    assert!(dp.snapshot().unwrap().bridges["sw0"].ports.is_empty());
    dp.del_bridge("sw0").unwrap();
    assert!(dp.bridges(None).unwrap().is_empty());
}

#[test]
fn a_peer_that_goes_away_leaves_its_port_gone_and_the_rest_forwarding() {
    let (_dir, ledger) = ledger();
    let dp = Datapath::start(ledger).unwrap();
    dp.add_bridge_without_host("sw1", BridgeConfig::new(MacAddr([0x02, 0, 0, 0, 0, 2])))
        .unwrap();
    let mut a = port(&dp, "sw1", "qa");
    let b = port(&dp, "sw1", "qb");
    let mut c = port(&dp, "sw1", "qc");
    drop(b);
    a.send(&frame(MacAddr::BROADCAST, A, 1));
    assert_eq!(c.received(WAIT), [1]);
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        dp.bridges(Some("sw1")).unwrap()[0]
            .ports
            .iter()
            .any(|p| p.name == "qb" && p.state == vbridge_datapath::PortState::Gone)
    });
    assert!(gone, "{:?}", dp.bridges(Some("sw1")));
}
