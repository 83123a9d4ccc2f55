//! TCP between two namespaces through a two-port "switch" made of our ports: the bytes
//! must arrive intact both ways, and the ports must carry GSO super-frames with partial
//! checksums (what makes TCP work without turning off offloads on the veths).
//!
//! ns1 (test thread): stack 192.0.2.1 on `left` <-> port L [forwarder] port R = b0 <->
//! b1 in ns2 (client thread): 192.0.2.2. `left` is a veth (port L = `AfPacket` on its
//! peer) or a TAP (port L = the `Tap` itself).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{in_netns, ip, veth};
use crate::packet::{AfPacket, AfPacketOptions};
use crate::port::PortIo;
use crate::sys;
use crate::tap::{Tap, TapOptions};
use crate::{Batch, PortError};

const BYTES: usize = 4 << 20;

/// What the forwarder saw coming out of one port.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    frames: usize,
    gso_frames: usize,
    partial_csum: usize,
    largest: usize,
    dropped_on_send: usize,
}

/// Moves what `from` has now to `to`; returns whether anything moved.
fn pump(
    from: &mut dyn PortIo,
    to: &mut dyn PortIo,
    batch: &mut Batch,
    seen: &mut Seen,
) -> Result<bool, PortError> {
    let n = from.recv_batch(batch)?;
    for p in batch.iter() {
        seen.frames += 1;
        seen.gso_frames += usize::from(p.hdr.is_gso());
        seen.partial_csum += usize::from(p.hdr.needs_csum());
        seen.largest = seen.largest.max(p.len());
    }
    if n > 0 {
        let refs: Vec<_> = batch.iter().collect();
        seen.dropped_on_send += to.send_batch(&refs)?.dropped;
    }
    Ok(n > 0)
}

/// Forwards between `l` and `r` until `stop` or until a port is gone (b0 goes when the
/// client thread, and with it the second namespace, ends); returns what came out of each.
fn forward(mut l: Box<dyn PortIo>, mut r: Box<dyn PortIo>, stop: Arc<AtomicBool>) -> [Seen; 2] {
    let mut seen = [Seen::default(); 2];
    let mut batch = Batch::new(32);
    while !stop.load(Ordering::Relaxed) {
        let moved = pump(l.as_mut(), r.as_mut(), &mut batch, &mut seen[0])
            .and_then(|a| Ok(a | pump(r.as_mut(), l.as_mut(), &mut batch, &mut seen[1])?));
        match moved {
            Ok(true) => {}
            Ok(false) => thread::sleep(Duration::from_micros(50)),
            Err(e) if e.is_gone() => break,
            Err(e) => panic!("switch: {e:?}"),
        }
    }
    seen
}

/// Sets the flag when dropped, so the forwarder stops even if the test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
        .collect()
}

/// The client side, run on a thread that moves itself into a second namespace, tells
/// its namespace path, waits for b1 to be moved in, then sends and receives `BYTES`.
fn client(ns_tx: mpsc::Sender<String>, go_rx: mpsc::Receiver<()>) -> Vec<u8> {
    sys::testing::unshare_net().expect("second namespace");
    let me = std::fs::read_link("/proc/thread-self").unwrap();
    ns_tx
        .send(format!("/proc/{}/ns/net", me.display()))
        .unwrap();
    go_rx.recv().unwrap();
    ip("addr add 192.0.2.2/24 dev b1");
    ip("link set b1 up");
    let server = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 5001));
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))
        .expect("connect through the switch");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&pattern(BYTES, 1)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    back
}

/// Runs the scenario with `make_left` building ns1's side (given 192.0.2.1/24) and
/// returning port L; returns what the forwarder saw from L and from R.
fn tcp_through_switch(make_left: impl FnOnce() -> Box<dyn PortIo>) -> [Seen; 2] {
    let left = make_left();
    veth("b0", "b1");
    let listener = TcpListener::bind("192.0.2.1:5001").unwrap();
    listener.set_nonblocking(true).unwrap();

    let (ns_tx, ns_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let client = thread::spawn(move || client(ns_tx, go_rx));
    let ns2: String = ns_rx.recv().unwrap();
    ip(&format!("link set b1 netns {ns2}"));

    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let right: Box<dyn PortIo> =
        Box::new(AfPacket::attach("b0", AfPacketOptions::default()).unwrap());
    let switch = {
        let stop = stop.clone();
        thread::spawn(move || forward(left, right, stop))
    };
    go_tx.send(()).unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("no connection through the switch: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert!(
        got == pattern(BYTES, 1),
        "client -> server bytes intact ({} received)",
        got.len()
    );
    conn.write_all(&pattern(BYTES, 2)).unwrap();
    drop(conn);
    let back = client.join().expect("client thread");
    assert!(
        back == pattern(BYTES, 2),
        "server -> client bytes intact ({} received)",
        back.len()
    );
    stop.store(true, Ordering::Relaxed);
    let seen = switch.join().expect("switch thread");
    eprintln!("from L: {:?}\nfrom R: {:?}", seen[0], seen[1]);
    seen
}

fn assert_offloaded(seen: &Seen, side: &str) {
    assert!(
        seen.gso_frames > 0,
        "{side}: TCP came as GSO super-frames: {seen:?}"
    );
    assert!(seen.largest > 1514, "{side}: {seen:?}");
    assert!(seen.partial_csum > 0, "{side}: {seen:?}");
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tcp_crosses_two_afpacket_ports_as_gso_superframes() {
    in_netns(|| {
        let seen = tcp_through_switch(|| {
            veth("a0", "a1");
            ip("addr add 192.0.2.1/24 dev a1");
            Box::new(AfPacket::attach("a0", AfPacketOptions::default()).unwrap())
        });
        assert_offloaded(&seen[0], "a0");
        assert_offloaded(&seen[1], "b0");
    });
}

#[test]
#[cfg_attr(
    vbr_unprivileged,
    ignore = "needs root: network namespaces, TAP, AF_PACKET"
)]
fn tcp_crosses_a_tap_and_an_afpacket_port_as_gso_superframes() {
    in_netns(|| {
        let seen = tcp_through_switch(|| {
            let tap = Tap::create("t0", TapOptions::default()).unwrap();
            tap.set_up().unwrap();
            ip("addr add 192.0.2.1/24 dev t0");
            Box::new(tap)
        });
        // The kernel hands the TAP reader TSO super-frames, and takes them back on write.
        assert_offloaded(&seen[0], "t0");
        assert_offloaded(&seen[1], "b0");
    });
}
