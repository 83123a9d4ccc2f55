//! The client side of `vbr trace` and `vbr capture`: the frame a trace asks about
//! (built from `--src/--dst/--vlan/--ethertype`), the text form of a trace, and reading
//! a stream to its end (Ctrl-C ends it politely: the daemon is told, and its last line
//! with the totals is still read).

use std::io::BufRead;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, bail};
use vbridge_core::MacAddr;
use vbridge_datapath::{Direction, TraceView};

use crate::api::{Response, StreamEnd, StreamMsg, Streaming};
use crate::names::escape;
use crate::output::say;

/// A test frame: `dst`, `src`, an 802.1Q tag with `vlan` (any 12-bit VID: 0 and 4095
/// too), `ethertype` (IPv4 by default, then with a valid empty IPv4 header), padded to
/// the 60-byte minimum before the tag. Written with the wire crate's own emitters.
pub(crate) fn frame(dst: MacAddr, src: MacAddr, vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    use vbridge_wire::{EtherType, Tag, ethernet, ipv4, vlan as dot1q};
    const HEADROOM: usize = 4;
    let mut buf = vec![0u8; HEADROOM + 60];
    let mut eth = ethernet::Frame::new_unchecked(&mut buf[HEADROOM..]);
    let header = ethernet::Repr {
        dst,
        src,
        ethertype: EtherType::from(ethertype),
    };
    // The buffer is long enough for both headers: emitting cannot fail.
    let _ = header.emit(&mut eth);
    if ethertype == 0x0800 {
        let ip = ipv4::Repr {
            src_addr: std::net::Ipv4Addr::UNSPECIFIED,
            dst_addr: std::net::Ipv4Addr::UNSPECIFIED,
            // 253: for experiments.
            protocol: ipv4::Protocol::Unknown(253),
            payload_len: 0,
            ttl: 64,
        };
        let _ = ip.emit(&mut ipv4::Packet::new_unchecked(eth.payload_mut()));
    }
    let end = buf.len();
    let start = match vlan {
        Some(v) => dot1q::push_in_place(&mut buf, HEADROOM, end, Tag::from_tci(0x8100, v & 0x0fff))
            .unwrap_or(HEADROOM),
        None => HEADROOM,
    };
    buf.split_off(start)
}

/// Bytes as hex, for the API.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An EtherType from the command line: `0x0806`, `0806` or `806`.
pub(crate) fn ethertype_arg(s: &str) -> Result<u16, String> {
    let t = s.trim_start_matches("0x").trim_start_matches("0X");
    u16::from_str_radix(t, 16)
        .map_err(|_| format!("{s:?}: give the EtherType in hex, e.g. 0x0806"))
        .and_then(|v| {
            if v < 0x0600 {
                Err(format!(
                    "{s:?}: EtherTypes start at 0x0600 (smaller values are 802.3 lengths)"
                ))
            } else {
                Ok(v)
            }
        })
}

/// `vbr trace` as text: the frame, each step, the verdict and the fast path.
pub(crate) fn print_trace(t: &TraceView) {
    say!(
        "trace {}: {} entering {}",
        escape(&t.bridge),
        t.frame,
        escape(&t.ingress)
    );
    for s in &t.steps {
        let port = s.port.as_deref().map(escape).unwrap_or_default();
        say!("  {:<10} {:<14} {}", s.step, port, escape(&s.text));
    }
    say!("verdict:   {}", escape(&t.verdict));
    say!("fast path: {}", t.fast_path);
}

/// Reads a stream to its end, printing as it goes; returns its end line. Ctrl-C (or
/// SIGTERM) once ends the stream politely, twice quits at once.
pub(crate) fn follow(socket: &Path, line: Vec<u8>, json: bool, capture: bool) -> Result<StreamEnd> {
    let (mut r, first) = crate::client::open(socket, line)?;
    let resp: Response = serde_json::from_str(&first).context("the daemon's answer")?;
    if resp.version != crate::api::API_VERSION {
        bail!(
            "the daemon speaks API version {}, this vbr version {}",
            resp.version,
            crate::api::API_VERSION
        );
    }
    if !resp.ok {
        let e = resp.error.map(|e| e.message).unwrap_or_default();
        bail!("{}", crate::names::escape_text(&e));
    }
    let start: Streaming = serde_json::from_value(resp.result.unwrap_or_default())
        .context("the daemon's answer is not what this vbr expects")?;
    match &start.file {
        Some(f) => eprintln!(
            "vbr: capturing {} to {} (Ctrl-C stops)",
            escape(start.port.as_deref().unwrap_or("")),
            escape(f)
        ),
        None if capture => eprintln!(
            "vbr: capturing {} (on {}) (Ctrl-C stops)",
            escape(start.port.as_deref().unwrap_or("")),
            escape(&start.bridge)
        ),
        None => eprintln!(
            "vbr: watching {}{} (Ctrl-C stops)",
            escape(&start.bridge),
            start
                .port
                .as_deref()
                .map(|p| format!(" port {}", escape(p)))
                .unwrap_or_default()
        ),
    }
    stop_on_signal(r.get_ref())?;
    r.get_ref().set_read_timeout(None)?;
    let mut buf = String::new();
    loop {
        buf.clear();
        if r.read_line(&mut buf)? == 0 {
            bail!("the daemon closed the stream without its last line");
        }
        let msg: StreamMsg = serde_json::from_str(&buf).context("a line of the stream")?;
        match msg {
            StreamMsg::End(end) => return Ok(end),
            _ if json => say!("{}", buf.trim_end()),
            StreamMsg::Line(l) => say!("{}", escape(&l)),
            StreamMsg::Frame(f) => {
                let secs = f.time.rem_euclid(86400.0);
                let (h, m, s) = (
                    (secs / 3600.0) as u32,
                    ((secs % 3600.0) / 60.0) as u32,
                    secs % 60.0,
                );
                say!(
                    "{h:02}:{m:02}:{s:09.6} {} {:<3} {}",
                    escape(&f.port),
                    match f.dir {
                        Direction::In => "In",
                        _ => "Out",
                    },
                    f.summary
                );
            }
        }
    }
}

/// On the first SIGINT/SIGTERM the client shuts down its side of the connection (the
/// daemon ends the stream and sends its totals); on the second it exits.
fn stop_on_signal(stream: &UnixStream) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let s = stream.try_clone()?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("vbr-stop".into())
        .spawn(move || {
            let mut told = false;
            for _ in signals.forever() {
                if told {
                    std::process::exit(130);
                }
                told = true;
                let _ = s.shutdown(Shutdown::Write);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frames `vbr trace --src/--dst` builds read back as what was asked for.
    #[test]
    fn test_frames_are_well_formed() {
        use vbridge_wire::{EtherType, ethernet, ipv4};
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let f = frame(b, a, None, 0x0800);
        assert_eq!(f.len(), 60);
        let eth = ethernet::Frame::new_checked(&f[..]).unwrap();
        assert_eq!((eth.dst_addr(), eth.src_addr()), (b, a));
        assert_eq!(eth.ethertype(), EtherType::Ipv4);
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ipv4::Repr::parse(&ip).unwrap().ttl, 64);
        assert_eq!(ipv4::checksum(ip.header()), 0, "a valid header checksum");
        let t = frame(b, a, Some(4095), 0x0806);
        assert_eq!(t.len(), 64);
        assert_eq!(&t[12..16], &[0x81, 0x00, 0x0f, 0xff]);
        assert_eq!(&t[16..18], &[0x08, 0x06]);
        assert_eq!(ethertype_arg("0x0806"), Ok(0x0806));
        assert!(
            ethertype_arg("0x05dc").is_err(),
            "802.3 lengths are not EtherTypes"
        );
    }
}
