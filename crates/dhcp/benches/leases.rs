//! Server time to lease addresses to 500 distinct clients (DISCOVER, OFFER, REQUEST,
//! ACK each), the messages built beforehand as raw frames' payloads; and one renewal.

use std::net::Ipv4Addr;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType};
use dhcproto::{Encodable, Encoder};
use vbridge_dhcp::{Config, Server};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
const T0: u64 = 1_800_000_000;

fn config() -> Config {
    Config {
        server: SERVER,
        prefix: 16,
        range: (Ipv4Addr::new(10, 20, 1, 0), Ipv4Addr::new(10, 20, 9, 255)),
        lease_secs: 3600,
        router: None,
        no_router: false,
        dns: vec![SERVER],
        statics: vec![],
    }
}

fn msg(kind: MessageType, mac: [u8; 6], opts: &[DhcpOption]) -> Vec<u8> {
    let mut m = Message::new_with_id(
        u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    m.set_flags(Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    for o in opts {
        m.opts_mut().insert(o.clone());
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf)).expect("encodes");
    buf
}

fn clients(n: u16) -> Vec<([u8; 6], Vec<u8>)> {
    (0..n)
        .map(|i| {
            let mac = [2, 0, 0, 0, (i >> 8) as u8, i as u8];
            (mac, msg(MessageType::Discover, mac, &[]))
        })
        .collect()
}

/// DISCOVER then REQUEST for every client; the number acknowledged.
fn lease_all(s: &mut Server, clients: &[([u8; 6], Vec<u8>)]) -> usize {
    let mut acked = 0;
    for (mac, discover) in clients {
        let out = s.handle(T0, discover);
        let Some((offer, _)) = out.reply else {
            continue;
        };
        let yiaddr = Ipv4Addr::new(offer[16], offer[17], offer[18], offer[19]);
        let req = msg(
            MessageType::Request,
            *mac,
            &[
                DhcpOption::RequestedIpAddress(yiaddr),
                DhcpOption::ServerIdentifier(SERVER),
            ],
        );
        if s.handle(T0, &req).event.is_some() {
            acked += 1;
        }
    }
    acked
}

fn bench(c: &mut Criterion) {
    let cl = clients(500);
    c.bench_function("lease_500_clients", |b| {
        b.iter_batched(
            || Server::new(config(), &[], T0).expect("valid").0,
            |mut s| {
                let n = lease_all(&mut s, &cl);
                assert_eq!(n, 500);
                s
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
