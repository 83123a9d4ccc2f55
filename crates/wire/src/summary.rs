//! One-line human summaries of frames, like tcpdump's, for capture and trace.
//!
//! Any bytes give a line: a part that is cut short or makes no sense ends in a marker
//! such as `[truncated ipv4]` or `[malformed bpdu]` instead of an error. The line is
//! `src > dst, ` then the tags, the protocol, and `, length N` (the frame length).

use core::fmt::{self, Write};

use etherparse::{TcpHeaderSlice, UdpHeaderSlice};

use crate::bpdu::{Bpdu, BpduType};
use crate::ethernet::{self, EtherType};
use crate::icmp::{self, Message};
use crate::ipv4::{self, Protocol};
use crate::vlan::{self, TAG_LEN, TPID_8021AD};
use crate::{Error, arp, llc, vxlan};

/// Tags shown before giving up on a tag stack.
const MAX_TAGS: usize = 8;
/// VXLAN encapsulations followed into the inner frame.
const MAX_DEPTH: usize = 3;

/// A one-line description of `frame`.
pub fn summarize(frame: &[u8]) -> String {
    let mut line = String::new();
    // Writing to a String never fails.
    let _ = summarize_into(frame, &mut line);
    line
}

/// Writes the one-line description of `frame` to `out`, without allocating.
pub fn summarize_into(frame: &[u8], out: &mut impl Write) -> fmt::Result {
    frame_line(frame, out, 0)
}

fn frame_line<W: Write>(frame: &[u8], out: &mut W, depth: usize) -> fmt::Result {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return write!(out, "truncated ethernet frame, length {}", frame.len());
    };
    write!(out, "{} > {}, ", eth.src_addr(), eth.dst_addr())?;
    body(frame, out, depth)?;
    write!(out, ", length {}", frame.len())
}

fn body<W: Write>(frame: &[u8], out: &mut W, depth: usize) -> fmt::Result {
    let Ok((stack, inner)) = vlan::tag_stack::<MAX_TAGS>(frame) else {
        return out.write_str("[truncated vlan]");
    };
    for tag in stack.iter() {
        write!(out, "vlan {} p {}", tag.vid, tag.pcp)?;
        if tag.dei {
            out.write_str(" DEI")?;
        }
        match tag.tpid {
            TPID_8021AD => out.write_str(" (802.1ad)")?,
            vlan::TPID_8021Q => {}
            other => write!(out, " (0x{other:04x})")?,
        }
        out.write_str(", ")?;
    }
    // tag_stack checked that the EtherType after the last tag is inside the frame.
    let payload = frame
        .get(ethernet::HEADER_LEN + TAG_LEN * stack.len()..)
        .unwrap_or_default();
    match inner {
        EtherType::Arp => arp_line(payload, out),
        EtherType::Ipv4 => ipv4_line(payload, out, depth),
        EtherType::Length(len) => llc_line(payload, len, out),
        EtherType::Ipv6 => out.write_str("IPv6"),
        EtherType::Lldp => out.write_str("LLDP"),
        t if t.is_tag() => out.write_str("[too many vlan tags]"),
        t => write!(out, "ethertype 0x{:04x}", u16::from(t)),
    }
}

fn arp_line<W: Write>(payload: &[u8], out: &mut W) -> fmt::Result {
    out.write_str("ARP, ")?;
    let Ok(p) = arp::Packet::new_checked(payload) else {
        return out.write_str("[truncated arp]");
    };
    match arp::Repr::parse(&p) {
        Ok(arp::Repr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) => match operation {
            arp::Operation::Request => write!(
                out,
                "Request who-has {target_protocol_addr} tell {source_protocol_addr}"
            ),
            arp::Operation::Reply => write!(
                out,
                "Reply {source_protocol_addr} is-at {source_hardware_addr}"
            ),
            arp::Operation::Unknown(op) => write!(
                out,
                "op {op} {source_protocol_addr} > {target_protocol_addr}"
            ),
        },
        Err(_) => write!(
            out,
            "hardware type {}, protocol 0x{:04x}, op {}",
            u16::from(p.hardware_type()),
            u16::from(p.protocol_type()),
            u16::from(p.operation())
        ),
    }
}

fn ipv4_line<W: Write>(payload: &[u8], out: &mut W, depth: usize) -> fmt::Result {
    out.write_str("IPv4 ")?;
    let p = match ipv4::Packet::new_checked(payload) {
        Ok(p) if p.version() == 4 => p,
        Err(Error::Truncated { .. }) => return out.write_str("[truncated ipv4]"),
        _ => return out.write_str("[malformed ipv4]"),
    };
    let (src, dst) = (p.src_addr(), p.dst_addr());
    if p.frag_offset() != 0 {
        let proto = u8::from(p.protocol());
        let offset = p.frag_offset();
        return write!(
            out,
            "{src} > {dst}: fragment of proto {proto}, offset {offset}"
        );
    }
    let data = p.payload();
    match p.protocol() {
        Protocol::Icmp => {
            write!(out, "{src} > {dst}: ICMP ")?;
            icmp_line(data, out)
        }
        Protocol::Tcp => match TcpHeaderSlice::from_slice(data) {
            Ok(t) => {
                let (sp, dp) = (t.source_port(), t.destination_port());
                write!(out, "{src}.{sp} > {dst}.{dp}: TCP")
            }
            Err(_) => write!(out, "{src} > {dst}: TCP [truncated tcp]"),
        },
        Protocol::Udp => match UdpHeaderSlice::from_slice(data) {
            Ok(u) => {
                let (sp, dp) = (u.source_port(), u.destination_port());
                write!(out, "{src}.{sp} > {dst}.{dp}: UDP")?;
                match data.get(8..) {
                    Some(rest) if dp == vxlan::UDP_PORT => vxlan_line(rest, out, depth),
                    _ => Ok(()),
                }
            }
            Err(_) => write!(out, "{src} > {dst}: UDP [truncated udp]"),
        },
        Protocol::Unknown(n) => write!(out, "{src} > {dst}: ip-proto-{n}"),
    }
}

fn icmp_line<W: Write>(data: &[u8], out: &mut W) -> fmt::Result {
    let Ok(p) = icmp::Packet::new_checked(data) else {
        return out.write_str("[truncated icmp]");
    };
    let (id, seq, code) = (p.echo_ident(), p.echo_seq_no(), p.msg_code());
    match p.msg_type() {
        Message::EchoRequest => write!(out, "echo request, id {id}, seq {seq}"),
        Message::EchoReply => write!(out, "echo reply, id {id}, seq {seq}"),
        Message::DstUnreachable => write!(out, "destination unreachable, code {code}"),
        Message::TimeExceeded => write!(out, "time exceeded, code {code}"),
        Message::Unknown(t) => write!(out, "type {t}, code {code}"),
    }
}

fn vxlan_line<W: Write>(data: &[u8], out: &mut W, depth: usize) -> fmt::Result {
    out.write_str(", VXLAN")?;
    let Ok(p) = vxlan::Packet::new_checked(data) else {
        return out.write_str(" [truncated vxlan]");
    };
    if vxlan::Repr::parse(&p).is_err() {
        return out.write_str(" [malformed vxlan]");
    }
    write!(out, " vni {}", p.vni())?;
    if depth >= MAX_DEPTH {
        return out.write_str(" (...)");
    }
    out.write_str(" (")?;
    frame_line(p.payload(), out, depth + 1)?;
    out.write_str(")")
}

fn llc_line<W: Write>(payload: &[u8], len: u16, out: &mut W) -> fmt::Result {
    let Some(pdu) = payload.get(..usize::from(len)) else {
        return write!(out, "802.3, length {len} [malformed llc]");
    };
    let Ok(pdu) = llc::Pdu::new_checked(pdu) else {
        return write!(out, "802.3, length {len} [truncated llc]");
    };
    if !pdu.is_stp() {
        let (d, s, c) = (pdu.dsap(), pdu.ssap(), pdu.control());
        return write!(out, "LLC, dsap 0x{d:02x} ssap 0x{s:02x} ctrl 0x{c:02x}");
    }
    let b = match Bpdu::new_checked(pdu.payload()) {
        Ok(b) if b.protocol_id() == 0 => b,
        Ok(_) => return out.write_str("STP [malformed bpdu]"),
        Err(_) => return out.write_str("STP [truncated bpdu]"),
    };
    match b.bpdu_type() {
        BpduType::Config => {
            out.write_str("STP 802.1d, Config, ")?;
            ids_line(&b, out)?;
            write!(out, ", flags [{}]", b.flags())
        }
        BpduType::Tcn => out.write_str("STP 802.1d, TCN"),
        BpduType::Rst if b.version() >= 2 => {
            let name = if b.version() == 2 { "RSTP" } else { "MSTP" };
            let flags = b.flags();
            write!(out, "{name}, role {}, flags [{flags}], ", flags.port_role())?;
            ids_line(&b, out)
        }
        BpduType::Rst => write!(out, "STP, RST version {} [malformed bpdu]", b.version()),
        BpduType::Unknown(t) => write!(out, "STP, unknown BPDU type 0x{t:02x}"),
    }
}

fn ids_line<W: Write>(b: &Bpdu<&[u8]>, out: &mut W) -> fmt::Result {
    let (root, cost) = (b.root_id(), b.root_path_cost());
    let (bridge, port) = (b.bridge_id(), b.port_id());
    write!(out, "root {root} cost {cost}, bridge {bridge} port {port}")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::bpdu::{self, BridgeId, ConfigBpdu, Flags, PortId, PortRole};
    use crate::ethernet::MacAddr;
    use crate::vlan::{Tag, Vid};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn eth(dst: MacAddr, tags: &[Tag], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = [dst.0, A.0].concat();
        tags.iter().for_each(|t| f.extend(t.to_bytes()));
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    fn ip(protocol: Protocol, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0; 20 + payload.len()];
        let repr = ipv4::Repr {
            src_addr: IP_A,
            dst_addr: IP_B,
            protocol,
            payload_len: payload.len(),
            ttl: 64,
        };
        repr.emit(&mut ipv4::Packet::new_unchecked(&mut p[..]))
            .unwrap();
        p[20..].copy_from_slice(payload);
        p
    }

    fn arp_request() -> Vec<u8> {
        let mut p = [0u8; 28];
        let repr = arp::Repr::EthernetIpv4 {
            operation: arp::Operation::Request,
            source_hardware_addr: A,
            source_protocol_addr: IP_A,
            target_hardware_addr: MacAddr::ZERO,
            target_protocol_addr: IP_B,
        };
        repr.emit(&mut arp::Packet::new_unchecked(&mut p[..]))
            .unwrap();
        eth(MacAddr::BROADCAST, &[], 0x0806, &p)
    }

    fn echo() -> Vec<u8> {
        let mut p = vec![0u8; 64];
        let repr = icmp::Repr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data_len: 56,
        };
        repr.emit(&mut icmp::Packet::new_unchecked(&mut p[..]))
            .unwrap();
        ip(Protocol::Icmp, &p)
    }

    #[test]
    fn arp() {
        assert_eq!(
            summarize(&arp_request()),
            "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ARP, Request who-has 10.0.0.2 tell 10.0.0.1, length 42"
        );
        let mut reply = arp_request();
        reply[21] = 2;
        assert!(summarize(&reply).contains("ARP, Reply 10.0.0.1 is-at 02:00:00:00:00:01,"));
        assert!(summarize(&reply[..41]).ends_with("ARP, [truncated arp], length 41"));
    }

    #[test]
    fn tagged_icmp() {
        let tag = Tag::dot1q(Vid::new(10).unwrap());
        assert_eq!(
            summarize(&eth(B, &[tag], 0x0800, &echo())),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, vlan 10 p 0, IPv4 10.0.0.1 > 10.0.0.2: ICMP echo request, id 1, seq 1, length 102"
        );
        let s_tag = Tag::dot1ad(Vid::new(100).unwrap());
        let line = summarize(&eth(B, &[s_tag, tag], 0x0800, &echo()));
        assert!(line.contains(", vlan 100 p 0 (802.1ad), vlan 10 p 0, IPv4 10.0.0.1"));
        let line = summarize(&eth(B, &[s_tag, tag], 0x0800, &echo())[..20]);
        assert!(line.ends_with(", [truncated vlan], length 20"), "{line}");
    }

    #[test]
    fn tcp_udp_and_vxlan() {
        let mut tcp = [0u8; 20];
        tcp[..4].copy_from_slice(&[0x14, 0x51, 0x9c, 0x40]); // 5201 > 40000
        tcp[12] = 0x50;
        let frame = eth(B, &[], 0x0800, &ip(Protocol::Tcp, &tcp));
        assert_eq!(
            summarize(&frame),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv4 10.0.0.1.5201 > 10.0.0.2.40000: TCP, length 54"
        );
        let cut = eth(B, &[], 0x0800, &ip(Protocol::Tcp, &tcp[..10]));
        assert!(summarize(&cut).contains("10.0.0.1 > 10.0.0.2: TCP [truncated tcp]"));

        let mut udp = vec![0x9c, 0x40, 0x12, 0xb5, 0, 0, 0, 0]; // 40000 > 4789
        udp.extend([0x08, 0, 0, 0, 0, 0, 42, 0]);
        udp.extend(arp_request());
        let len = udp.len() as u16;
        udp[4..6].copy_from_slice(&len.to_be_bytes());
        let frame = eth(B, &[], 0x0800, &ip(Protocol::Udp, &udp));
        assert_eq!(
            summarize(&frame),
            "02:00:00:00:00:01 > 02:00:00:00:00:02, IPv4 10.0.0.1.40000 > 10.0.0.2.4789: UDP, \
             VXLAN vni 42 (02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ARP, Request who-has 10.0.0.2 \
             tell 10.0.0.1, length 42), length 92"
        );
        udp[8] = 0;
        let frame = eth(B, &[], 0x0800, &ip(Protocol::Udp, &udp));
        assert!(summarize(&frame).contains("UDP, VXLAN [malformed vxlan], length 92"));
    }

    #[test]
    fn stp() {
        let id = BridgeId::new(0x8000, A);
        let config = ConfigBpdu {
            flags: Flags::TC,
            root_id: id,
            root_path_cost: 0,
            bridge_id: id,
            port_id: PortId(0x8001),
            message_age_ticks: 0,
            max_age_ticks: 0x1400,
            hello_time_ticks: 0x0200,
            forward_delay_ticks: 0x0f00,
        };
        let mut f = [0u8; 60];
        bpdu::emit_frame(&bpdu::Repr::Config(config), A, &mut f).unwrap();
        assert_eq!(
            summarize(&f),
            "02:00:00:00:00:01 > 01:80:c2:00:00:00, STP 802.1d, Config, root 8000.020000000001 \
             cost 0, bridge 8000.020000000001 port 8001, flags [TC], length 60"
        );
        let rst = ConfigBpdu {
            flags: (Flags::PROPOSAL | Flags::LEARNING).with_port_role(PortRole::Designated),
            ..config
        };
        bpdu::emit_frame(&bpdu::Repr::Rst(rst), A, &mut f).unwrap();
        assert!(
            summarize(&f).contains(
                "RSTP, role Designated, flags [proposal, learning], root 8000.020000000001 cost 0,"
            ),
            "{}",
            summarize(&f)
        );
        bpdu::emit_frame(&bpdu::Repr::Tcn, A, &mut f).unwrap();
        assert!(summarize(&f).ends_with(", STP 802.1d, TCN, length 60"));
        let mut cut = f;
        cut[13] = 6; // the BPDU ends after three bytes
        assert!(summarize(&cut).contains("STP [truncated bpdu]"));
        cut[13] = 60;
        assert!(summarize(&cut).contains("802.3, length 60 [malformed llc]"));
    }

    #[test]
    fn truncated_and_odd() {
        assert_eq!(summarize(&[0; 9]), "truncated ethernet frame, length 9");
        let echo = echo();
        let line = summarize(&eth(B, &[], 0x0800, &echo[..30]));
        assert!(
            line.ends_with(", IPv4 [truncated ipv4], length 44"),
            "{line}"
        );
        let mut v5 = echo.clone();
        v5[0] = 0x55;
        assert!(summarize(&eth(B, &[], 0x0800, &v5)).contains("IPv4 [malformed ipv4]"));
        assert!(summarize(&eth(B, &[], 0x1234, &[])).ends_with("ethertype 0x1234, length 14"));
        assert!(summarize(&eth(B, &[], 0x86dd, &[])).contains(", IPv6, "));
        let mut out = heapless_line::Line::default();
        summarize_into(&arp_request(), &mut out).unwrap();
        assert!(out.0.starts_with("02:00:00:00:00:01 > ff:ff"));
    }

    mod heapless_line {
        /// A `fmt::Write` that is not a `String`.
        #[derive(Default)]
        pub(super) struct Line(pub(super) String);
        impl core::fmt::Write for Line {
            fn write_str(&mut self, s: &str) -> core::fmt::Result {
                self.0.push_str(s);
                Ok(())
            }
        }
    }
}
