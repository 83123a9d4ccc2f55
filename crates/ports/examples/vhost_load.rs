//! The load generator of `bench/vm.sh`: plays two VMs' NICs and pumps frames from one to
//! the other through a switch for a while, counting what arrives.
//!
//! - `vhost_load vhost SOCK_A SOCK_B SIZE SECS`: two vhost-user frontends (the driver
//!   side, as DPDK's virtio-user: shared memory, split virtqueues, vnet headers) on two
//!   vbridge vhost-user ports;
//! - `vhost_load tap TAP_A TAP_B SIZE SECS`: two existing persistent TAPs opened the way
//!   QEMU opens them (`IFF_VNET_HDR`, offloads on), on vbridge or on the Linux bridge.
//!
//! SIZE is the Ethernet frame length; above 1514 the frames are TCP segments of that size
//! for the receiver's side to take whole (TSO, a vnet header asking for segmentation).
//! Prints `frames/s F Gbit/s G` for the frames the second NIC received.

use std::time::{Duration, Instant};

use vbridge_ports::vhost::driver::Driver;
use vbridge_ports::{Batch, PacketBuf, PortIo, Tap, TapOptions, VnetHdr};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0x4c, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0x4c, 0, 0x0b];
/// Frames in flight per burst.
const BURST: usize = 32;

/// An Ethernet/IPv4/TCP frame of `len` bytes from `src` to `dst` with its offload
/// header: the TCP checksum left partial, and segmentation asked for above 1514 bytes.
fn frame(src: [u8; 6], dst: [u8; 6], len: usize) -> (VnetHdr, Vec<u8>) {
    let len = len.max(60);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    let tot = (len - 14) as u16;
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 76, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 76, 0, 2]);
    let sum = fold(
        ip.chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum(),
    );
    ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
    let tcp_len = (len - 34) as u32;
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&5001u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // PSH, ACK
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    // The pseudo-header sum: the sender's half of a partial checksum.
    let pseudo = fold(0x0a4c + 0x0001 + 0x0a4c + 0x0002 + 6 + tcp_len);
    tcp[16..18].copy_from_slice(&pseudo.to_be_bytes());
    let mut hdr = VnetHdr {
        flags: VnetHdr::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::default()
    };
    if len > 1514 {
        hdr.gso_type = VnetHdr::GSO_TCPV4;
        hdr.gso_size = 1448;
        hdr.hdr_len = 54;
    }
    (hdr, f)
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// One NIC of the pair.
trait Nic {
    /// Queues up to `n` copies of the frame; returns how many went.
    fn send(&mut self, hdr: &VnetHdr, frame: &[u8], n: usize) -> usize;
    /// Takes what arrived: (frames, bytes).
    fn recv(&mut self) -> (u64, u64);
}

impl Nic for Driver {
    fn send(&mut self, hdr: &VnetHdr, frame: &[u8], n: usize) -> usize {
        let mut sent = 0;
        while sent < n && self.push(hdr, frame).expect("push") {
            sent += 1;
        }
        self.flush().expect("flush");
        sent
    }

    fn recv(&mut self) -> (u64, u64) {
        let mut bytes = 0u64;
        let n = self
            .recv_lengths(|_, len| bytes += len as u64)
            .expect("recv");
        (n as u64, bytes)
    }
}

struct TapNic {
    tap: Tap,
    out: PacketBuf,
    batch: Batch,
}

impl Nic for TapNic {
    fn send(&mut self, hdr: &VnetHdr, frame: &[u8], n: usize) -> usize {
        if self.out.frame() != frame {
            self.out.set_frame(frame).expect("frame fits");
        }
        self.out.hdr = *hdr;
        let pkts = vec![&self.out; n];
        self.tap.send_batch(&pkts).map(|r| r.sent).unwrap_or(0)
    }

    fn recv(&mut self) -> (u64, u64) {
        let (mut frames, mut bytes) = (0, 0);
        loop {
            let n = self.tap.recv_batch(&mut self.batch).expect("tap recv");
            if n == 0 {
                return (frames, bytes);
            }
            frames += n as u64;
            bytes += self.batch.iter().map(|p| p.len() as u64).sum::<u64>();
        }
    }
}

fn open_tap(name: &str) -> TapNic {
    let ifindex = vbridge_ports::netdev::ifindex(name).expect("the TAP exists");
    let opts = TapOptions {
        io_uring: false,
        ..TapOptions::default()
    };
    TapNic {
        tap: Tap::reopen_persistent(name, opts, ifindex).expect("open the TAP"),
        out: PacketBuf::new(),
        batch: Batch::new(64),
    }
}

fn run(a: &mut dyn Nic, b: &mut dyn Nic, size: usize, secs: f64) {
    // B speaks first, so the switch knows where it is; then A sends for `secs`.
    let (h, f) = frame(MAC_B, MAC_A, 60);
    b.send(&h, &f, 1);
    std::thread::sleep(Duration::from_millis(200));
    a.recv();
    let (hdr, f) = frame(MAC_A, MAC_B, size);
    let (mut frames, mut bytes) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        a.send(&hdr, &f, BURST);
        let (n, by) = b.recv();
        frames += n;
        bytes += by;
    }
    let t = start.elapsed().as_secs_f64();
    println!(
        "frames/s {:.0} Gbit/s {:.3}",
        frames as f64 / t,
        bytes as f64 * 8.0 / t / 1e9
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: vhost_load vhost|tap A B SIZE SECS");
        std::process::exit(2);
    }
    let size: usize = args[4].parse().expect("SIZE");
    let secs: f64 = args[5].parse().expect("SECS");
    match args[1].as_str() {
        "vhost" => {
            let mut a = Driver::connect(args[2].as_ref()).expect("connect A");
            let mut b = Driver::connect(args[3].as_ref()).expect("connect B");
            std::thread::sleep(Duration::from_millis(300));
            run(&mut a, &mut b, size, secs);
        }
        "tap" => {
            let mut a = open_tap(&args[2]);
            let mut b = open_tap(&args[3]);
            run(&mut a, &mut b, size, secs);
        }
        m => {
            eprintln!("unknown mode {m}");
            std::process::exit(2);
        }
    }
}
