//! Property tests of the untrusted-bytes contract: on any bytes, `summarize`, every
//! `new_checked` with all getters, and every `Repr::parse` return without panicking;
//! and every `Repr` survives `emit` then `parse`.
//!
//! Besides plain random bytes, frames are generated with a valid Ethernet header, VLAN
//! tags, and the starts of IPv4 / ARP / LLC+BPDU / UDP+VXLAN payloads, so the deeper
//! parsers get exercised too.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use vbridge_wire::bpdu::{self, BridgeId, ConfigBpdu, Flags, PortId};
use vbridge_wire::vlan::{self, Tag};
use vbridge_wire::{EtherType, MacAddr, arp, ethernet, icmp, ipv4, llc, summarize, vxlan};

/// Every view and parser of the crate over `b`; the results are dropped.
fn poke_all(b: &[u8]) {
    let _ = summarize(b);
    let mut line = String::new();
    let _ = vbridge_wire::summary::summarize_into(b, &mut line);

    if let Ok(f) = ethernet::Frame::new_checked(b) {
        let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
        let _ = ethernet::Repr::parse(&f);
    }
    let _ = vlan::outer_tag(b);
    let _ = vlan::tag_stack::<4>(b);
    if let Ok(h) = vlan::TagHeader::new_checked(b) {
        let _ = (
            h.tci(),
            h.pcp(),
            h.dei(),
            h.vid(),
            h.ethertype(),
            h.payload(),
        );
        let _ = vlan::Repr::parse(0x8100, &h);
    }
    if let Ok(p) = arp::Packet::new_checked(b) {
        let _ = (p.hardware_type(), p.protocol_type(), p.operation());
        let _ = (p.hardware_len(), p.protocol_len(), p.packet_len());
        let _ = (p.source_hardware_addr(), p.source_protocol_addr());
        let _ = (p.target_hardware_addr(), p.target_protocol_addr());
        let _ = arp::Repr::parse(&p);
    }
    if let Ok(p) = ipv4::Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
        );
        let _ = (p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset());
        let _ = (
            p.ttl(),
            p.protocol(),
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
        );
        let _ = (p.options(), p.header(), p.payload(), p.verify_checksum());
        let _ = ipv4::Repr::parse(&p);
    }
    let _ = ipv4::checksum(b);
    if let Ok(p) = icmp::Packet::new_checked(b) {
        let _ = (p.msg_type(), p.msg_code(), p.checksum());
        let _ = (
            p.echo_ident(),
            p.echo_seq_no(),
            p.data(),
            p.verify_checksum(),
        );
        let _ = icmp::Repr::parse(&p);
    }
    if let Ok(p) = llc::Pdu::new_checked(b) {
        let _ = (
            p.dsap(),
            p.ssap(),
            p.control(),
            p.is_unnumbered(),
            p.is_stp(),
        );
        let _ = (p.header_len(), p.payload());
        let _ = llc::Repr::parse(&p);
    }
    if let Ok(p) = llc::from_frame(b) {
        let _ = (p.control(), p.payload());
    }
    if let Ok(p) = bpdu::Bpdu::new_checked(b) {
        let _ = (p.protocol_id(), p.version(), p.bpdu_type(), p.flags());
        let _ = (p.root_id(), p.root_path_cost(), p.bridge_id(), p.port_id());
        let _ = (
            p.message_age_ticks(),
            p.max_age_ticks(),
            p.hello_time_ticks(),
        );
        let _ = (p.forward_delay_ticks(), p.version1_length());
        let _ = (p.flags().to_string(), p.flags().port_role().to_string());
        let _ = (p.root_id().to_string(), p.port_id().to_string());
        let _ = bpdu::Repr::parse(&p);
    }
    let _ = bpdu::parse_frame(b);
    if let Ok(p) = vxlan::Packet::new_checked(b) {
        let _ = (p.flags(), p.vni_valid(), p.vni(), p.payload());
        let _ = vxlan::Repr::parse(&p);
    }
}

/// Views start at every layer's offset in a frame, so run them over the tails too.
fn poke_frame(b: &[u8]) {
    for at in [0, 14, 17, 18, 22, 34, 42] {
        poke_all(b.get(at..).unwrap_or_default());
    }
}

fn tag() -> impl Strategy<Value = [u8; 4]> {
    (
        prop_oneof![Just(0x8100u16), Just(0x88a8), Just(0x9100)],
        any::<u16>(),
    )
        .prop_map(|(tpid, tci)| {
            let (t, c) = (tpid.to_be_bytes(), tci.to_be_bytes());
            [t[0], t[1], c[0], c[1]]
        })
}

/// The bytes after the EtherType: IPv4 (optionally with a consistent header and a UDP
/// header to the VXLAN port), ARP, an LLC+BPDU with its 802.3 length, or anything.
fn ethertype_and_payload() -> impl Strategy<Value = Vec<u8>> {
    let tail = || proptest::collection::vec(any::<u8>(), 0..150);
    prop_oneof![
        (
            tail(),
            any::<bool>(),
            prop_oneof![Just(1u8), Just(6), Just(17)]
        )
            .prop_map(|(mut t, fix, proto)| {
                if fix && t.len() >= 28 {
                    t[0] = 0x45;
                    let len = t.len() as u16;
                    t[2..4].copy_from_slice(&len.to_be_bytes());
                    t[6] &= 0xe0; // no fragment offset
                    t[7] = 0;
                    t[9] = proto;
                    if proto == 17 {
                        t[22..24].copy_from_slice(&4789u16.to_be_bytes());
                        if let Some(f) = t.get_mut(28) {
                            *f = 0x08;
                        }
                    }
                }
                [&[0x08, 0x00][..], &t].concat()
            }),
        (tail(), any::<bool>()).prop_map(|(mut t, fix)| {
            if fix && t.len() >= 8 {
                t[..7].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0]);
                t[7] %= 3;
            }
            [&[0x08, 0x06][..], &t].concat()
        }),
        (
            tail(),
            any::<bool>(),
            prop_oneof![Just(0u8), Just(2), Just(3), any::<u8>()],
            prop_oneof![Just(0u8), Just(0x80), Just(2), any::<u8>()],
        )
            .prop_map(|(t, exact, version, kind)| {
                let body = [&[0x42, 0x42, 0x03, 0, 0, version, kind][..], &t].concat();
                let len = if exact {
                    body.len() as u16
                } else {
                    t.len() as u16 * 4
                };
                [&len.min(0x5ff).to_be_bytes()[..], &body].concat()
            }),
        tail(),
    ]
}

fn structured_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 12]>(),
        proptest::collection::vec(tag(), 0..3),
        ethertype_and_payload(),
        any::<bool>(),
    )
        .prop_map(|(addrs, tags, rest, stp_dst)| {
            let mut f = addrs.to_vec();
            if stp_dst {
                f[..6].copy_from_slice(&MacAddr::STP_GROUP.0);
            }
            tags.iter().for_each(|t| f.extend(t));
            f.extend(rest);
            f
        })
}

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn bridge_id() -> impl Strategy<Value = BridgeId> {
    (any::<u16>(), mac()).prop_map(|(p, a)| BridgeId::new(p, a))
}

fn config_bpdu() -> impl Strategy<Value = ConfigBpdu> {
    (
        any::<u8>(),
        bridge_id(),
        any::<u32>(),
        bridge_id(),
        any::<u16>(),
        any::<[u16; 4]>(),
    )
        .prop_map(|(flags, root_id, cost, bridge_id, port, t)| ConfigBpdu {
            flags: Flags(flags),
            root_id,
            root_path_cost: cost,
            bridge_id,
            port_id: PortId(port),
            message_age_ticks: t[0],
            max_age_ticks: t[1],
            hello_time_ticks: t[2],
            forward_delay_ticks: t[3],
        })
}

fn bpdu_repr() -> impl Strategy<Value = bpdu::Repr> {
    prop_oneof![
        config_bpdu().prop_map(bpdu::Repr::Config),
        Just(bpdu::Repr::Tcn),
        config_bpdu().prop_map(bpdu::Repr::Rst),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        poke_frame(&b);
    }

    #[test]
    fn structured_frames_never_panic(b in structured_frame()) {
        poke_frame(&b);
        let line = summarize(&b);
        prop_assert!(line.ends_with(&format!("length {}", b.len())), "{}", line);
        prop_assert!(!line.contains('\n'));
    }
}

proptest! {
    #[test]
    fn ethernet_roundtrip(dst in mac(), src in mac(), t: u16) {
        let r = ethernet::Repr { dst, src, ethertype: EtherType::from(t) };
        let mut buf = [0u8; 14];
        r.emit(&mut ethernet::Frame::new_unchecked(&mut buf[..])).unwrap();
        let f = ethernet::Frame::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ethernet::Repr::parse(&f).unwrap(), r);
    }

    #[test]
    fn vlan_roundtrip(tpid in prop_oneof![Just(0x8100u16), Just(0x88a8)], pcp in 0u8..8,
                      dei: bool, vid in 0u16..4096, inner: u16) {
        let r = vlan::Repr { tag: Tag { tpid, pcp, dei, vid }, inner: EtherType::from(inner) };
        let mut buf = [0u8; 4];
        r.emit(&mut vlan::TagHeader::new_unchecked(&mut buf[..])).unwrap();
        let h = vlan::TagHeader::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(vlan::Repr::parse(tpid, &h).unwrap(), r);
    }

    #[test]
    fn arp_roundtrip(op: u16, sha in mac(), spa: u32, tha in mac(), tpa: u32) {
        let r = arp::Repr::EthernetIpv4 {
            operation: arp::Operation::from(op),
            source_hardware_addr: sha,
            source_protocol_addr: Ipv4Addr::from(spa),
            target_hardware_addr: tha,
            target_protocol_addr: Ipv4Addr::from(tpa),
        };
        let mut buf = [0u8; 28];
        r.emit(&mut arp::Packet::new_unchecked(&mut buf[..])).unwrap();
        let p = arp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(arp::Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn ipv4_roundtrip(src: u32, dst: u32, proto: u8, ttl: u8, len in 0usize..1500) {
        let r = ipv4::Repr {
            src_addr: Ipv4Addr::from(src),
            dst_addr: Ipv4Addr::from(dst),
            protocol: ipv4::Protocol::from(proto),
            payload_len: len,
            ttl,
        };
        let mut buf = vec![0u8; r.buffer_len() + len];
        r.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..])).unwrap();
        let p = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(p.verify_checksum());
        prop_assert_eq!(ipv4::Repr::parse(&p).unwrap(), r);
    }

    #[test]
    fn bpdu_roundtrip(r in bpdu_repr(), src in mac()) {
        let mut buf = [0u8; bpdu::RST_LEN];
        r.emit(&mut bpdu::Bpdu::new_unchecked(&mut buf[..r.buffer_len()])).unwrap();
        let b = bpdu::Bpdu::new_checked(&buf[..r.buffer_len()]).unwrap();
        prop_assert_eq!(bpdu::Repr::parse(&b).unwrap(), r);

        let mut frame = [0u8; 64];
        let n = bpdu::emit_frame(&r, src, &mut frame).unwrap();
        prop_assert_eq!(n, 60);
        prop_assert_eq!(bpdu::parse_frame(&frame[..n]).unwrap(), r);
    }

    #[test]
    fn vxlan_roundtrip(v in 0u32..=vxlan::Vni::MAX) {
        let r = vxlan::Repr { vni: vxlan::Vni::new(v).unwrap() };
        let mut buf = [0xffu8; 8];
        r.emit(&mut vxlan::Packet::new_unchecked(&mut buf[..])).unwrap();
        let p = vxlan::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(vxlan::Repr::parse(&p).unwrap(), r);
    }
}

/// The structured generator must reach the deep parsers, or the tests above prove little.
#[test]
fn structured_frames_reach_deep_parsers() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = structured_frame();
    let lines: Vec<String> = (0..4000)
        .map(|_| summarize(&strategy.new_tree(&mut runner).unwrap().current()))
        .collect();
    for needle in [
        "vlan ",
        "(802.1ad)",
        "ARP, Request who-has",
        "ICMP ",
        ": TCP",
        ": UDP",
        "VXLAN vni",
        "STP 802.1d, Config, root",
        "STP 802.1d, TCN",
        "RSTP, role",
        "MSTP, role",
        "[truncated bpdu]",
        "[malformed llc]",
        "[truncated ipv4]",
        "[malformed ipv4]",
    ] {
        let n = lines.iter().filter(|l| l.contains(needle)).count();
        assert!(n > 0, "no generated frame summarized with {needle:?}");
    }
}
