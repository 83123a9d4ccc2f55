//! A vhost-user port against the driver of [`super::driver`]: frames both ways with
//! their offload headers, a 64 KiB TSO frame across mergeable buffers, vbridge as
//! client, reconnects, a guest that stops reading, and guests breaking the rules.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::driver::{Driver, QUEUE_SIZE};
use super::{VhostMode, VhostUser};
use crate::buf::{Batch, PacketBuf};
use crate::port::PortIo;
use crate::vnet::VnetHdr;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("vbr-vhost-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn sock(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn until(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn frame(dst: u8, src: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[2, 0, 0, 0, 0, dst]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, src]);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    for (i, b) in f[14..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

/// A server-mode port with a driver connected and set up.
fn pair(dir: &Dir, name: &str) -> (VhostUser, Driver) {
    let path = dir.sock(name);
    let port = VhostUser::new(name, &path, VhostMode::Server).unwrap();
    let drv = Driver::connect(&path).unwrap();
    assert!(until(|| port.active()), "the port never saw rings");
    (port, drv)
}

/// Receives from `port` until `n` frames came (or 10 s passed).
fn recv_n(port: &mut VhostUser, n: usize) -> Vec<PacketBuf> {
    let mut got = Vec::new();
    let mut batch = Batch::new(32);
    until(|| {
        let k = port.recv_batch(&mut batch).unwrap();
        got.extend(batch.packets()[..k].iter().cloned());
        got.len() >= n
    });
    got
}

#[test]
fn frames_cross_both_ways_with_their_headers() {
    let dir = Dir::new("both");
    let (mut a, mut da) = pair(&dir, "a");
    let (mut b, mut db) = pair(&dir, "b");
    // Guest A sends 100 frames of every size; port A receives them.
    let sizes: Vec<usize> = (0..100).map(|i| 60 + i * 14).collect();
    for &len in &sizes {
        assert!(da.push(&VnetHdr::default(), &frame(2, 1, len)).unwrap());
    }
    da.flush().unwrap();
    let got = recv_n(&mut a, sizes.len());
    assert_eq!(got.len(), sizes.len());
    for (p, &len) in got.iter().zip(&sizes) {
        assert_eq!(p.frame(), frame(2, 1, len).as_slice());
        assert!(p.hdr.is_plain());
    }
    // Port B sends them on to guest B, which reads them whole.
    let refs: Vec<&PacketBuf> = got.iter().collect();
    let r = b.send_batch(&refs).unwrap();
    assert_eq!((r.sent, r.dropped), (sizes.len(), 0));
    let mut seen = Vec::new();
    until(|| {
        db.recv(|_, f| seen.push(f.to_vec())).unwrap();
        seen.len() >= sizes.len()
    });
    assert_eq!(seen.len(), sizes.len());
    for (f, &len) in seen.iter().zip(&sizes) {
        assert_eq!(f, &frame(2, 1, len));
    }
}

#[test]
fn a_64k_tso_frame_crosses_whole_over_mergeable_buffers() {
    let dir = Dir::new("tso");
    let (mut a, mut da) = pair(&dir, "a");
    let (mut b, mut db) = pair(&dir, "b");
    let hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        gso_type: VnetHdr::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    let big = frame(2, 1, 65_000);
    assert!(da.push(&hdr, &big).unwrap());
    da.flush().unwrap();
    let got = recv_n(&mut a, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].hdr, hdr);
    assert_eq!(got[0].frame(), big.as_slice());
    b.send(&got[0]).unwrap();
    let mut seen = Vec::new();
    until(|| {
        db.recv(|h, f| seen.push((h, f.to_vec()))).unwrap();
        !seen.is_empty()
    });
    assert_eq!(seen.len(), 1, "one frame, spread over many 4 KiB buffers");
    assert_eq!(seen[0].0, hdr);
    assert_eq!(seen[0].1, big);
}

#[test]
fn vbridge_as_client_connects_when_the_frontend_appears_and_after_it_restarts() {
    let dir = Dir::new("client");
    let path = dir.sock("q");
    // The port comes first: it keeps trying.
    let mut port = VhostUser::new("q", &path, VhostMode::Client).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let listener = UnixListener::bind(&path).unwrap();
    for round in 0..2 {
        let (s, _) = listener.accept().unwrap();
        let mut drv = Driver::over(s).unwrap();
        assert!(until(|| port.active()), "round {round}: no rings");
        assert!(drv.push(&VnetHdr::default(), &frame(9, 8, 100)).unwrap());
        drv.flush().unwrap();
        assert_eq!(recv_n(&mut port, 1).len(), 1, "round {round}");
        drop(drv);
        // The port connects again at once (waiting in the listener's backlog).
        assert!(
            until(|| port.connects() == round + 2),
            "round {round}: no new connection"
        );
    }
}

#[test]
fn a_frontend_that_goes_away_and_comes_back_gets_its_port_again() {
    let dir = Dir::new("again");
    let (mut a, da) = pair(&dir, "a");
    drop(da);
    assert!(until(|| !a.connected()));
    let mut da = Driver::connect(&dir.sock("a")).unwrap();
    assert!(until(|| a.active()));
    assert!(da.push(&VnetHdr::default(), &frame(2, 1, 64)).unwrap());
    da.flush().unwrap();
    assert_eq!(recv_n(&mut a, 1).len(), 1);
}

#[test]
fn a_guest_that_stops_reading_loses_frames_and_never_blocks() {
    let dir = Dir::new("slow");
    let (mut b, _db) = pair(&dir, "b");
    let f = PacketBuf::from_frame(&frame(2, 1, 1000)).unwrap();
    let refs = vec![&f; 64];
    let (mut sent, mut dropped) = (0, 0);
    for _ in 0..10 {
        let r = b.send_batch(&refs).unwrap();
        sent += r.sent;
        dropped += r.dropped;
    }
    assert_eq!(
        sent,
        usize::from(QUEUE_SIZE),
        "as many as the guest has buffers"
    );
    assert_eq!(dropped, 640 - usize::from(QUEUE_SIZE));
}

#[test]
fn a_guest_breaking_the_rules_is_cut_off_and_may_come_back() {
    let dir = Dir::new("bad");
    let (mut a, mut da) = pair(&dir, "a");
    let mut batch = Batch::new(32);
    // A buffer far outside guest memory.
    da.push_raw(1 << 40, 100, 0, Some(0)).unwrap();
    assert!(until(|| {
        let _ = a.recv_batch(&mut batch).unwrap();
        a.cut_off() == 1
    }));
    assert_eq!(a.rx_dropped(), 1);
    assert!(until(|| !a.connected()), "the connection is closed");
    // A new connection starts clean; then a write-only buffer on the transmit queue, a
    // chain shorter than its header, and a descriptor chained to itself (a loop, read
    // as long as the queue: over the largest frame), each cut it off again.
    for (flags, len, next) in [(2u16, 100u32, Some(0)), (0, 4, Some(0)), (1, 4096, None)] {
        let mut d = Driver::connect(&dir.sock("a")).unwrap();
        assert!(until(|| a.active()));
        assert!(d.push(&VnetHdr::default(), &frame(2, 1, 64)).unwrap());
        d.flush().unwrap();
        assert_eq!(recv_n(&mut a, 1).len(), 1);
        let before = a.cut_off();
        d.push_raw(4096, len, flags, next).unwrap();
        assert!(until(|| {
            let _ = a.recv_batch(&mut batch).unwrap();
            a.cut_off() == before + 1
        }));
    }
}

#[test]
fn garbage_on_the_socket_ends_that_connection_only() {
    use std::io::Write;
    let dir = Dir::new("garbage");
    let (mut a, mut da) = pair(&dir, "a");
    let b = VhostUser::new("b", &dir.sock("b"), VhostMode::Server).unwrap();
    // Something that is not a vhost-user frontend connects to b's socket and writes
    // noise: that connection ends; port a carries on, and b takes a real frontend next.
    let mut junk = std::os::unix::net::UnixStream::connect(dir.sock("b")).unwrap();
    let _ = junk.write_all(&[0xff; 64]);
    assert!(
        until(|| b.connects() == 1 && !b.connected()),
        "the junk is let go"
    );
    assert!(da.push(&VnetHdr::default(), &frame(2, 1, 64)).unwrap());
    da.flush().unwrap();
    assert_eq!(recv_n(&mut a, 1).len(), 1);
    let _d2 = Driver::connect(&dir.sock("b")).unwrap();
    assert!(until(|| b.active()), "b takes a frontend again");
}

#[test]
fn a_removed_port_lets_go_of_its_socket_and_thread() {
    let dir = Dir::new("gone");
    let path = dir.sock("g");
    let port = VhostUser::new("g", &path, VhostMode::Server).unwrap();
    drop(port);
    // The control thread was waiting in `accept`; it ends and closes the listener, so
    // nothing answers at the path any more.
    assert!(until(
        || std::os::unix::net::UnixStream::connect(&path).is_err()
    ));
}

#[test]
fn guest_memory_that_could_shrink_is_refused() {
    let dir = Dir::new("unsealed");
    let path = dir.sock("u");
    let port = VhostUser::new("u", &path, VhostMode::Server).unwrap();
    // Memory the frontend could cut short under the switch (a SIGBUS) is not mapped:
    // the frontend hears no, and the port never runs on it.
    assert!(Driver::connect_unsealed(&path).is_err());
    assert!(!port.active());
    // A proper frontend gets the port afterwards.
    let _d = Driver::connect(&path).unwrap();
    assert!(until(|| port.active()));
}

#[test]
fn frames_keep_coming_burst_after_burst() {
    // Each burst finds the port idle, and the port reads only when its descriptor says
    // so (as the datapath does): the guest kicks only if the port asked for a kick at
    // the index it stopped at (the event index), so a port that forgets to ask stalls.
    let dir = Dir::new("bursts");
    let (mut a, mut da) = pair(&dir, "a");
    let mut batch = Batch::new(32);
    while a.recv_batch(&mut batch).unwrap() > 0 {}
    for i in 0..20 {
        for _ in 0..3 {
            assert!(da.push(&VnetHdr::default(), &frame(2, 1, 60 + i)).unwrap());
        }
        da.flush().unwrap();
        let mut got = 0;
        while got < 3 {
            let fd = a.as_raw_fd();
            assert!(
                crate::sys::testing::wait_readable(fd, 5000),
                "burst {i}: no wake-up"
            );
            got += a.recv_batch(&mut batch).unwrap();
        }
        assert_eq!(got, 3, "burst {i}");
    }
}
