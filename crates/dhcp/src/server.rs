//! The server: one request in, at most one reply out, with what happened for the log
//! and counters. The fixed header is checked on the raw bytes before `dhcproto` reads
//! the rest.

use std::net::Ipv4Addr;

use dhcproto::v4::{DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use crate::config::{Config, ConfigError};
use crate::leases::{Lease, LeaseRecord, Table};

/// Seconds an offered address is held for the client it was offered to.
pub const OFFER_HOLD: u64 = 60;

/// The magic cookie that starts the options of a DHCP message.
const COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Bytes before the options: the BOOTP header and the cookie.
const FIXED: usize = 240;

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// 255.255.255.255:68 on the network's interface.
    Broadcast,
    /// The client's address, port 68 (it has one: renewing, INFORM).
    Unicast(Ipv4Addr),
}

/// What a request led to, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An address acknowledged (`renewed`: the client had it already).
    Leased {
        mac: [u8; 6],
        ip: Ipv4Addr,
        renewed: bool,
    },
    Released {
        mac: [u8; 6],
        ip: Ipv4Addr,
    },
    /// The client found the address in use: it is taken out of use for a lease time.
    Declined {
        mac: [u8; 6],
        ip: Ipv4Addr,
    },
    /// No free address for this client.
    Exhausted {
        mac: [u8; 6],
    },
    Nak {
        mac: [u8; 6],
        ip: Ipv4Addr,
        why: &'static str,
    },
    /// Not a request this server answers (malformed, relayed, for another server).
    Dropped {
        why: &'static str,
    },
}

/// The reply to send, if any, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Option<(Vec<u8>, Dest)>,
    pub event: Option<Event>,
}

impl Outcome {
    fn dropped(why: &'static str) -> Outcome {
        Outcome {
            reply: None,
            event: Some(Event::Dropped { why }),
        }
    }
}

/// Requests and replies by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub received: u64,
    /// Not a DHCP request (short, wrong header, unreadable options).
    pub malformed: u64,
    /// Relayed, for another server, or of a kind a server does not answer.
    pub ignored: u64,
    pub discovers: u64,
    pub offers: u64,
    pub requests: u64,
    pub acks: u64,
    pub naks: u64,
    pub declines: u64,
    pub releases: u64,
    pub informs: u64,
    /// DISCOVERs left without an offer: no free address.
    pub exhausted: u64,
}

/// A DHCP server for one network.
#[derive(Debug)]
pub struct Server {
    cfg: Config,
    table: Table,
    counters: Counters,
}

/// The parts of a request the server uses.
struct Req {
    msg: Message,
    kind: MessageType,
    mac: [u8; 6],
    /// Option 61, or 01 and the MAC.
    client: Vec<u8>,
    /// Option 61 as sent, to echo (RFC 6842).
    client_opt: Option<Vec<u8>>,
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
}

/// The options the server reads, with the lengths their formats have.
fn wanted(code: u8, len: usize) -> Option<bool> {
    match code {
        53 => Some(len == 1),                // message type
        50 | 54 => Some(len == 4),           // requested address, server identifier
        61 => Some((1..=64).contains(&len)), // client identifier
        _ => None,
    }
}

/// The request with only the options the server reads (each checked to have its
/// format's length), so the decoder never meets an option it would misread: walks the
/// options (pad, end, code-length-value) and refuses options that run past the end.
fn options_used(packet: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = packet[..FIXED].to_vec();
    let mut i = FIXED;
    while i < packet.len() {
        match packet[i] {
            0 => i += 1,
            255 => break,
            code => {
                let len = usize::from(*packet.get(i + 1).ok_or("an option without its length")?);
                let value = packet
                    .get(i + 2..i + 2 + len)
                    .ok_or("an option runs past the end")?;
                match wanted(code, len) {
                    Some(true) => {
                        out.extend_from_slice(&[code, len as u8]);
                        out.extend_from_slice(value);
                    }
                    Some(false) => return Err("an option of the wrong length"),
                    None => {}
                }
                i += 2 + len;
            }
        }
    }
    out.push(255);
    Ok(out)
}

/// Reads a request: the fixed header checked on the raw bytes (a BOOTREQUEST from an
/// Ethernet client, the cookie), then the rest by `dhcproto`.
fn parse(packet: &[u8]) -> Result<Req, &'static str> {
    if packet.len() < FIXED {
        return Err("shorter than a DHCP message");
    }
    if packet[0] != 1 {
        return Err("not a BOOTREQUEST");
    }
    if packet[1] != 1 || packet[2] != 6 {
        return Err("not an Ethernet client (htype 1, hlen 6)");
    }
    if packet[236..240] != COOKIE {
        return Err("no DHCP magic cookie");
    }
    let clean = options_used(packet)?;
    let msg = Message::decode(&mut Decoder::new(&clean)).map_err(|_| "unreadable options")?;
    let kind = match msg.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(k)) => *k,
        _ => return Err("no message type"),
    };
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&packet[28..34]);
    let client_opt = match msg.opts().get(OptionCode::ClientIdentifier) {
        Some(DhcpOption::ClientIdentifier(id)) if !id.is_empty() && id.len() <= 64 => {
            Some(id.clone())
        }
        _ => None,
    };
    let client = client_opt.clone().unwrap_or_else(|| {
        let mut c = vec![1];
        c.extend_from_slice(&mac);
        c
    });
    let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    Ok(Req {
        msg,
        kind,
        mac,
        client,
        client_opt,
        requested,
        server_id,
    })
}

impl Server {
    /// A server for `cfg` (checked), with the leases persisted earlier; those no
    /// longer valid for `cfg` are left out (their number is the second value).
    pub fn new(
        cfg: Config,
        leases: &[LeaseRecord],
        now: u64,
    ) -> Result<(Server, usize), ConfigError> {
        cfg.check()?;
        let mut table = Table::default();
        let left = table.restore(&cfg, now, leases);
        Ok((
            Server {
                cfg,
                table,
                counters: Counters::default(),
            },
            left,
        ))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Acknowledged, unexpired leases at `now`, by address.
    pub fn leases(&self, now: u64) -> Vec<LeaseRecord> {
        self.table.records(now)
    }

    /// Answers one request payload received at `now` (seconds since the Unix epoch).
    pub fn handle(&mut self, now: u64, packet: &[u8]) -> Outcome {
        self.counters.received += 1;
        let req = match parse(packet) {
            Ok(r) => r,
            Err(why) => {
                self.counters.malformed += 1;
                return Outcome::dropped(why);
            }
        };
        if !req.msg.giaddr().is_unspecified() {
            self.counters.ignored += 1;
            return Outcome::dropped("relayed (no relay support)");
        }
        match req.kind {
            MessageType::Discover => self.discover(now, &req),
            MessageType::Request => self.request(now, &req),
            MessageType::Decline => self.decline(now, &req),
            MessageType::Release => self.release(now, &req),
            MessageType::Inform => self.inform(&req),
            _ => {
                self.counters.ignored += 1;
                Outcome::dropped("not a message a server answers")
            }
        }
    }

    /// The static address of `mac`, if it has one.
    fn static_of(&self, mac: [u8; 6]) -> Option<Ipv4Addr> {
        self.cfg.statics.iter().find(|s| s.mac == mac).map(|s| s.ip)
    }

    fn discover(&mut self, now: u64, r: &Req) -> Outcome {
        self.counters.discovers += 1;
        let usable = |t: &Table, ip: Ipv4Addr| t.usable(&self.cfg, now, ip, &r.client, r.mac);
        let current = self.table.get(&r.client).map(|l| l.ip);
        let pick = self
            .static_of(r.mac)
            .or_else(|| current.filter(|ip| usable(&self.table, *ip)))
            .or_else(|| r.requested.filter(|ip| usable(&self.table, *ip)));
        let ip = match pick {
            Some(ip) => ip,
            None => match self.table.next_free(&self.cfg, now, &r.client, r.mac) {
                Some(ip) => ip,
                None => {
                    self.counters.exhausted += 1;
                    return Outcome {
                        reply: None,
                        event: Some(Event::Exhausted { mac: r.mac }),
                    };
                }
            },
        };
        // Held for this client at least OFFER_HOLD; a bound lease on the same address
        // stays bound, and keeps its time if that is longer.
        let lease = match self
            .table
            .get(&r.client)
            .filter(|l| l.ip == ip && l.bound && l.expires > now)
        {
            Some(l) => Lease {
                expires: l.expires.max(now + OFFER_HOLD),
                ..l.clone()
            },
            None => Lease {
                mac: r.mac,
                ip,
                expires: now + OFFER_HOLD,
                bound: false,
            },
        };
        self.table.set(&r.client, lease);
        self.counters.offers += 1;
        Outcome {
            reply: Some(self.reply(r, MessageType::Offer, ip)),
            event: None,
        }
    }

    fn request(&mut self, now: u64, r: &Req) -> Outcome {
        self.counters.requests += 1;
        if let Some(sid) = r.server_id {
            if sid != self.cfg.server {
                // The client took another server's offer: ours is free again.
                self.table.drop_offer(&r.client);
                self.counters.ignored += 1;
                return Outcome::dropped("for another server");
            }
        }
        let ciaddr = r.msg.ciaddr();
        let ip = match r.requested {
            Some(ip) => ip,
            None if !ciaddr.is_unspecified() => ciaddr,
            None => {
                self.counters.malformed += 1;
                return Outcome::dropped("a REQUEST naming no address");
            }
        };
        let nak = |s: &mut Server, why: &'static str| {
            s.counters.naks += 1;
            Outcome {
                reply: Some(s.reply(r, MessageType::Nak, Ipv4Addr::UNSPECIFIED)),
                event: Some(Event::Nak {
                    mac: r.mac,
                    ip,
                    why,
                }),
            }
        };
        if !self.cfg.in_subnet(ip) {
            return nak(self, "not on this network");
        }
        if let Some(s) = self.static_of(r.mac) {
            if s != ip {
                return nak(self, "the client has another (static) address");
            }
        } else if !self.table.usable(&self.cfg, now, ip, &r.client, r.mac) {
            return nak(self, "the address is not free for this client");
        }
        let renewed = self
            .table
            .get(&r.client)
            .is_some_and(|l| l.ip == ip && l.bound && l.expires > now);
        self.table.set(
            &r.client,
            Lease {
                mac: r.mac,
                ip,
                expires: now + u64::from(self.cfg.lease_secs),
                bound: true,
            },
        );
        self.counters.acks += 1;
        Outcome {
            reply: Some(self.reply(r, MessageType::Ack, ip)),
            event: Some(Event::Leased {
                mac: r.mac,
                ip,
                renewed,
            }),
        }
    }

    fn decline(&mut self, now: u64, r: &Req) -> Outcome {
        self.counters.declines += 1;
        let (Some(ip), true) = (
            r.requested,
            r.server_id.is_none_or(|s| s == self.cfg.server),
        ) else {
            self.counters.ignored += 1;
            return Outcome::dropped("a DECLINE without our address");
        };
        if self.table.get(&r.client).is_none_or(|l| l.ip != ip) {
            self.counters.ignored += 1;
            return Outcome::dropped("a DECLINE of an address the client does not hold");
        }
        self.table.decline(ip, now + u64::from(self.cfg.lease_secs));
        Outcome {
            reply: None,
            event: Some(Event::Declined { mac: r.mac, ip }),
        }
    }

    fn release(&mut self, now: u64, r: &Req) -> Outcome {
        self.counters.releases += 1;
        let ip = r.msg.ciaddr();
        if self.table.get(&r.client).is_none_or(|l| l.ip != ip) {
            self.counters.ignored += 1;
            return Outcome::dropped("a RELEASE of an address the client does not hold");
        }
        self.table.end(&r.client, now);
        Outcome {
            reply: None,
            event: Some(Event::Released { mac: r.mac, ip }),
        }
    }

    fn inform(&mut self, r: &Req) -> Outcome {
        self.counters.informs += 1;
        if r.msg.ciaddr().is_unspecified() {
            self.counters.ignored += 1;
            return Outcome::dropped("an INFORM without the client's address");
        }
        self.counters.acks += 1;
        Outcome {
            reply: Some(self.reply(r, MessageType::Ack, Ipv4Addr::UNSPECIFIED)),
            event: None,
        }
    }

    /// A reply of `kind` giving `yiaddr`, and where it goes.
    fn reply(&self, r: &Req, kind: MessageType, yiaddr: Ipv4Addr) -> (Vec<u8>, Dest) {
        let c = &self.cfg;
        let mut m = Message::new_with_id(
            r.msg.xid(),
            Ipv4Addr::UNSPECIFIED,
            yiaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &r.mac,
        );
        m.set_opcode(Opcode::BootReply)
            .set_htype(HType::Eth)
            .set_flags(if r.msg.flags().broadcast() {
                Flags::default().set_broadcast()
            } else {
                Flags::default()
            });
        let inform = kind == MessageType::Ack && yiaddr.is_unspecified();
        if inform {
            m.set_ciaddr(r.msg.ciaddr());
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ServerIdentifier(c.server));
        if kind != MessageType::Nak {
            o.insert(DhcpOption::SubnetMask(c.mask()));
            if !c.no_router {
                o.insert(DhcpOption::Router(vec![c.router.unwrap_or(c.server)]));
            }
            o.insert(DhcpOption::BroadcastAddr(c.broadcast()));
            if !c.dns.is_empty() {
                o.insert(DhcpOption::DomainNameServer(c.dns.clone()));
            }
            if !inform {
                o.insert(DhcpOption::AddressLeaseTime(c.lease_secs));
                o.insert(DhcpOption::Renewal(c.lease_secs / 2));
                o.insert(DhcpOption::Rebinding(c.lease_secs / 8 * 7));
            }
        }
        if let Some(id) = &r.client_opt {
            o.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        let mut buf = Vec::with_capacity(300);
        // Encoding what this function built cannot fail (a Vec grows as needed).
        let _ = m.encode(&mut Encoder::new(&mut buf));
        let ciaddr = r.msg.ciaddr();
        let dest = if kind != MessageType::Nak && !ciaddr.is_unspecified() {
            Dest::Unicast(ciaddr)
        } else {
            Dest::Broadcast
        };
        (buf, dest)
    }
}
