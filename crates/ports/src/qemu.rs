//! Ports for QEMU's socket netdevs, with vbridge listening on a UNIX socket path:
//!
//! - [`QemuStream`]: `-netdev stream` (`server=off`): each frame preceded by its length
//!   as a 4-byte big-endian number. The port listens; a guest that connects (again, after
//!   a reboot or `reconnect-ms`) replaces the previous connection, and a guest that goes
//!   away leaves the port up and listening. Garbage (a length of 0 or over the largest
//!   frame) cuts that connection off, counted. A guest that stops reading never blocks
//!   the switch: what does not fit its socket waits in a bounded backlog, and frames
//!   beyond it are dropped.
//! - [`QemuDgram`]: `-netdev dgram`: one frame per datagram, from the guest's own socket
//!   path to ours (datagrams from anywhere else are dropped, counted); we send to the
//!   guest's path.
//!
//! Frames are plain (no vnet header): QEMU's socket netdevs carry none, so the guest
//! finishes checksums and segments itself.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::buf::{Batch, MAX_FRAME_LEN, PacketBuf};
use crate::error::{PortError, errno, would_block};
use crate::port::{MacAddr, PortIo, check_nonempty, check_plain};
use crate::socket::mac_from_name;
use crate::sys;
use crate::vnet::VnetHdr;

/// Bytes waiting for a slow guest at most; frames beyond it are dropped.
const TX_BACKLOG: usize = 1 << 20;
/// Bytes read from a stream at a time.
const RX_CHUNK: usize = 256 * 1024;

/// Binds a listening or datagram socket at `path`, replacing a stale socket file there
/// (a daemon that was killed leaves it); anything else at that path is refused.
pub(crate) fn free_path(name: &str, path: &Path) -> Result<(), PortError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| PortError::io(name, "remove stale socket", e))
        }
        Ok(_) => Err(PortError::io(
            name,
            "bind",
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ),
        )),
        Err(_) => Ok(()),
    }
}

/// A `-netdev stream` port: a listener and the guest's current connection.
#[derive(Debug)]
pub struct QemuStream {
    name: String,
    path: PathBuf,
    listener: UnixListener,
    conn: Option<UnixStream>,
    /// The listener and the connection, as one pollable descriptor.
    set: OwnedFd,
    rx: Vec<u8>,
    tx: VecDeque<u8>,
    /// The connection is watched for room to write (frames wait in `tx`).
    want_out: bool,
    rx_dropped: u64,
    /// Connections cut off for garbage.
    cut_off: u64,
}

impl QemuStream {
    /// Listens at `path` (a stale socket file there is replaced).
    pub fn listen(name: &str, path: &Path) -> Result<QemuStream, PortError> {
        free_path(name, path)?;
        let listener = UnixListener::bind(path).map_err(|e| PortError::io(name, "bind", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| PortError::io(name, "O_NONBLOCK", e))?;
        let set = sys::epoll::create().map_err(|e| PortError::io(name, "epoll_create", e))?;
        sys::epoll::add(set.as_fd(), listener.as_fd())
            .map_err(|e| PortError::io(name, "epoll_ctl", e))?;
        Ok(QemuStream {
            name: name.to_owned(),
            path: path.to_owned(),
            listener,
            conn: None,
            set,
            rx: Vec::new(),
            tx: VecDeque::new(),
            want_out: false,
            rx_dropped: 0,
            cut_off: 0,
        })
    }

    /// The socket path QEMU connects to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a guest is connected now.
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Connections cut off for sending garbage.
    pub fn cut_off(&self) -> u64 {
        self.cut_off
    }

    fn drop_conn(&mut self) {
        if let Some(c) = self.conn.take() {
            let _ = sys::epoll::del(self.set.as_fd(), c.as_fd());
        }
        self.rx.clear();
        self.tx.clear();
        self.want_out = false;
    }

    /// Takes the newest waiting connection: a guest that connects again replaces the old.
    fn accept(&mut self) -> Result<(), PortError> {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.drop_conn();
                    sys::epoll::add(self.set.as_fd(), s.as_fd())
                        .map_err(|e| PortError::io(&self.name, "epoll_ctl", e))?;
                    tracing::info!(port = %self.name, "guest connected");
                    self.conn = Some(s);
                }
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) if matches!(errno(&e), libc::EINTR | libc::ECONNABORTED) => {}
                // Out of descriptors, say: the current guest carries on meanwhile.
                Err(e) => {
                    tracing::warn!(port = %self.name, error = %e, "accept failed");
                    return Ok(());
                }
            }
        }
    }

    /// Writes what waits for the guest, as far as its socket takes it; while something
    /// still waits, the connection is watched for room to write, so the rest goes as
    /// soon as the guest reads (even if nothing else happens on the port).
    fn flush(&mut self) {
        let Some(c) = self.conn.as_mut() else {
            return;
        };
        while !self.tx.is_empty() {
            let (a, _) = self.tx.as_slices();
            match c.write(a) {
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if would_block(&e) => break,
                Err(e) if errno(&e) == libc::EINTR => {}
                Err(_) => {
                    self.drop_conn();
                    return;
                }
            }
        }
        let want = !self.tx.is_empty();
        if want != self.want_out {
            if let Some(c) = self.conn.as_ref() {
                if sys::epoll::modify(self.set.as_fd(), c.as_fd(), want).is_ok() {
                    self.want_out = want;
                }
            }
        }
    }
}

impl PortIo for QemuStream {
    fn name(&self) -> &str {
        &self.name
    }

    fn as_raw_fd(&self) -> RawFd {
        self.set.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        false
    }

    fn recv_batch(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        self.accept()?;
        self.flush();
        let bufs = batch.begin_fill();
        let mut got = 0;
        let mut closed = false;
        if let Some(c) = self.conn.as_mut() {
            let mut chunk = vec![0u8; RX_CHUNK];
            loop {
                if self.rx.len() > RX_CHUNK {
                    break;
                }
                match c.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => self.rx.extend_from_slice(&chunk[..n]),
                    Err(e) if would_block(&e) => break,
                    Err(e) if errno(&e) == libc::EINTR => continue,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        let mut at = 0;
        let mut garbage = false;
        while got < bufs.len() && self.rx.len() >= at + 4 {
            let len = u32::from_be_bytes([
                self.rx[at],
                self.rx[at + 1],
                self.rx[at + 2],
                self.rx[at + 3],
            ]) as usize;
            if len == 0 || len > MAX_FRAME_LEN {
                garbage = true;
                break;
            }
            if self.rx.len() < at + 4 + len {
                break;
            }
            let frame = &self.rx[at + 4..at + 4 + len];
            let area = bufs[got].rx_area();
            if frame.len() > area.len() {
                self.rx_dropped += 1;
            } else {
                area[..len].copy_from_slice(frame);
                bufs[got].set_received(VnetHdr::default(), len);
                got += 1;
            }
            at += 4 + len;
        }
        self.rx.drain(..at);
        batch.finish_fill(got);
        if garbage {
            tracing::warn!(port = %self.name, "garbage from the guest: connection cut off");
            self.cut_off += 1;
            self.rx_dropped += 1;
            self.drop_conn();
        } else if closed {
            tracing::info!(port = %self.name, "guest disconnected; listening");
            self.drop_conn();
        }
        Ok(got)
    }

    fn send(&mut self, pkt: &PacketBuf) -> Result<(), PortError> {
        check_nonempty(pkt)?;
        check_plain(pkt)?;
        if self.conn.is_none() {
            return Err(PortError::Dropped {
                op: "send to an unconnected guest",
                source: io::Error::from_raw_os_error(libc::ENOTCONN),
            });
        }
        let frame = pkt.frame();
        if self.tx.len() + 4 + frame.len() > TX_BACKLOG {
            self.flush();
            if self.tx.len() + 4 + frame.len() > TX_BACKLOG {
                return Err(PortError::Dropped {
                    op: "send to a guest that does not read",
                    source: io::Error::from_raw_os_error(libc::ENOBUFS),
                });
            }
        }
        self.tx.extend((frame.len() as u32).to_be_bytes());
        self.tx.extend(frame);
        self.flush();
        if self.conn.is_none() {
            return Err(PortError::Dropped {
                op: "send to a guest that went away",
                source: io::Error::from_raw_os_error(libc::EPIPE),
            });
        }
        Ok(())
    }

    fn mac(&self) -> Result<MacAddr, PortError> {
        Ok(mac_from_name(&self.name))
    }

    fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    fn release(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A `-netdev dgram` port: our socket at `path`, the guest's at `guest`.
#[derive(Debug)]
pub struct QemuDgram {
    name: String,
    path: PathBuf,
    guest: PathBuf,
    sock: UnixDatagram,
    rx_dropped: u64,
}

impl QemuDgram {
    /// Binds `path` (a stale socket file there is replaced); frames go to `guest`.
    pub fn bind(name: &str, path: &Path, guest: &Path) -> Result<QemuDgram, PortError> {
        free_path(name, path)?;
        let sock = UnixDatagram::bind(path).map_err(|e| PortError::io(name, "bind", e))?;
        sock.set_nonblocking(true)
            .map_err(|e| PortError::io(name, "O_NONBLOCK", e))?;
        Ok(QemuDgram {
            name: name.to_owned(),
            path: path.to_owned(),
            guest: guest.to_owned(),
            sock,
            rx_dropped: 0,
        })
    }
}

impl PortIo for QemuDgram {
    fn name(&self) -> &str {
        &self.name
    }

    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn vnet_hdr(&self) -> bool {
        false
    }

    fn recv_batch(&mut self, batch: &mut Batch) -> Result<usize, PortError> {
        let bufs = batch.begin_fill();
        let mut got = 0;
        while got < bufs.len() {
            let area = bufs[got].rx_area();
            match self.sock.recv_from(area) {
                // Only the guest's socket speaks on this port.
                Ok((_, from)) if from.as_pathname() != Some(self.guest.as_path()) => {
                    self.rx_dropped += 1;
                }
                Ok((0, _)) => self.rx_dropped += 1,
                Ok((n, _)) if n >= area.len() => self.rx_dropped += 1, // cut short
                Ok((n, _)) => {
                    bufs[got].set_received(VnetHdr::default(), n);
                    got += 1;
                }
                Err(e) if would_block(&e) => break,
                Err(e) if errno(&e) == libc::EINTR => {}
                Err(e) => {
                    batch.finish_fill(got);
                    return Err(PortError::io(&self.name, "recv", e));
                }
            }
        }
        batch.finish_fill(got);
        Ok(got)
    }

    fn send(&mut self, pkt: &PacketBuf) -> Result<(), PortError> {
        check_nonempty(pkt)?;
        check_plain(pkt)?;
        match self.sock.send_to(pkt.frame(), &self.guest) {
            Ok(_) => Ok(()),
            // No guest there yet, or it does not read: this frame is lost.
            Err(e) => Err(PortError::Dropped {
                op: "send to the guest's socket",
                source: e,
            }),
        }
    }

    fn mac(&self) -> Result<MacAddr, PortError> {
        Ok(mac_from_name(&self.name))
    }

    fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    fn release(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixDatagram, UnixStream};
    use std::time::Duration;

    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vbr-qemu-{}-{tag}", std::process::id()))
    }

    fn frame(id: u8, len: usize) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x88, 0xb5];
        f.resize(len, id);
        f
    }

    fn recv_all(p: &mut dyn PortIo) -> Vec<Vec<u8>> {
        let mut b = Batch::new(8);
        let mut out = Vec::new();
        for _ in 0..50 {
            let n = p.recv_batch(&mut b).unwrap();
            out.extend(b.iter().take(n).map(|p| p.frame().to_vec()));
            if n == 0 && !out.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        out
    }

    #[test]
    fn stream_frames_cross_both_ways_and_a_reconnecting_guest_takes_over() {
        let path = tmp("s");
        let mut port = QemuStream::listen("vm0", &path).unwrap();
        let mut guest = UnixStream::connect(&path).unwrap();
        // Two frames in one write, the second split across two writes.
        let (a, b) = (frame(1, 60), frame(2, 1514));
        let mut bytes = Vec::new();
        for f in [&a, &b] {
            bytes.extend((f.len() as u32).to_be_bytes());
            bytes.extend(f.iter());
        }
        guest.write_all(&bytes[..100]).unwrap();
        let got = recv_all(&mut port);
        assert_eq!(got, vec![a.clone()]);
        guest.write_all(&bytes[100..]).unwrap();
        assert_eq!(recv_all(&mut port), vec![b.clone()]);
        // Towards the guest: length-prefixed.
        port.send(&PacketBuf::from_frame(&a).unwrap()).unwrap();
        let mut head = [0u8; 4];
        guest.read_exact(&mut head).unwrap();
        assert_eq!(u32::from_be_bytes(head) as usize, a.len());
        let mut body = vec![0u8; a.len()];
        guest.read_exact(&mut body).unwrap();
        assert_eq!(body, a);

        // The guest reboots: a new connection replaces the old one.
        drop(guest);
        let mut again = UnixStream::connect(&path).unwrap();
        again.write_all(&(60u32).to_be_bytes()).unwrap();
        again.write_all(&frame(3, 60)).unwrap();
        assert_eq!(recv_all(&mut port), vec![frame(3, 60)]);
        assert!(port.connected());

        // Garbage (a zero length) cuts the guest off; the port listens on.
        again.write_all(&[0, 0, 0, 0, 1, 2, 3]).unwrap();
        let _ = recv_all(&mut port);
        assert!(!port.connected());
        assert_eq!(port.cut_off(), 1);
        let err = port.send(&PacketBuf::from_frame(&a).unwrap()).unwrap_err();
        assert!(err.is_drop(), "{err}");
        port.release();
        assert!(!path.exists());
    }

    #[test]
    fn a_guest_that_does_not_read_never_blocks_the_port() {
        let path = tmp("slow");
        let mut port = QemuStream::listen("vm1", &path).unwrap();
        let _guest = UnixStream::connect(&path).unwrap();
        let _ = recv_all(&mut port);
        let f = PacketBuf::from_frame(&frame(4, 1514)).unwrap();
        let mut dropped = 0;
        for _ in 0..5000 {
            match port.send(&f) {
                Ok(()) => {}
                Err(e) if e.is_drop() => dropped += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(dropped > 0, "frames beyond the backlog are dropped");
        port.release();
    }

    #[test]
    fn a_backlog_reaches_a_guest_that_reads_again() {
        let path = tmp("backlog");
        let mut port = QemuStream::listen("vm4", &path).unwrap();
        let mut guest = UnixStream::connect(&path).unwrap();
        let _ = recv_all(&mut port);
        // The guest does not read: frames pile up in its socket, then in the backlog.
        let f = frame(7, 1514);
        let mut sent = 0usize;
        for _ in 0..400 {
            if port.send(&PacketBuf::from_frame(&f).unwrap()).is_ok() {
                sent += 1;
            }
        }
        assert!(port.want_out, "a backlog waits for room to write");
        // The guest reads everything the port sent, the port flushing as it is serviced.
        guest
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut got = 0usize;
        let mut head = [0u8; 4];
        let mut body = vec![0u8; f.len()];
        while got < sent {
            let _ = port.recv_batch(&mut Batch::new(8));
            if guest.read_exact(&mut head).is_err() {
                break;
            }
            guest.read_exact(&mut body).unwrap();
            assert_eq!(body, f);
            got += 1;
        }
        assert_eq!(got, sent, "every frame the port took reached the guest");
        assert!(!port.want_out);
        port.release();
    }

    #[test]
    fn dgram_frames_from_anyone_but_the_guest_are_dropped() {
        let (path, gpath, other) = (tmp("d2"), tmp("d2g"), tmp("d2o"));
        for p in [&gpath, &other] {
            let _ = std::fs::remove_file(p);
        }
        let mut port = QemuDgram::bind("vm5", &path, &gpath).unwrap();
        let stranger = UnixDatagram::bind(&other).unwrap();
        stranger.send_to(&frame(8, 60), &path).unwrap();
        let guest = UnixDatagram::bind(&gpath).unwrap();
        guest.send_to(&frame(9, 60), &path).unwrap();
        assert_eq!(recv_all(&mut port), vec![frame(9, 60)]);
        assert_eq!(port.rx_dropped(), 1);
        port.release();
        for p in [&gpath, &other] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn dgram_frames_cross_both_ways() {
        let (path, gpath) = (tmp("d"), tmp("dg"));
        let _ = std::fs::remove_file(&gpath);
        let mut port = QemuDgram::bind("vm2", &path, &gpath).unwrap();
        let guest = UnixDatagram::bind(&gpath).unwrap();
        guest.send_to(&frame(5, 60), &path).unwrap();
        assert_eq!(recv_all(&mut port), vec![frame(5, 60)]);
        port.send(&PacketBuf::from_frame(&frame(6, 70)).unwrap())
            .unwrap();
        let mut buf = [0u8; 2000];
        let n = guest.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &frame(6, 70)[..]);
        port.release();
        let _ = std::fs::remove_file(&gpath);
    }

    #[test]
    fn anything_but_a_stale_socket_at_the_path_is_refused() {
        let path = tmp("f");
        std::fs::write(&path, b"not a socket").unwrap();
        assert!(QemuStream::listen("vm3", &path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
        std::fs::remove_file(&path).unwrap();
    }
}
