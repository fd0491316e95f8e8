//! The UDP tracker protocol (BEP 15, with BEP 41 URL data) as pure functions over bytes.
//!
//! Packets: connect (16 bytes), announce (98 bytes + options), scrape (16 + 20·n bytes)
//! requests; connect, announce, scrape and error responses. Parsing checks every length
//! before reading, never panics, and refuses trailing garbage except BEP 41 options after an
//! announce. Peers are 6 bytes (IPv4) or 18 bytes (IPv6: the tracker answers with the
//! family the request came over, as BEP 15 says).

use super::client::{Event, ScrapeStats};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The magic connection id of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;
/// Most info-hashes in one scrape (a 1500-byte datagram holds about 74).
pub const MAX_SCRAPE_HASHES: usize = 74;

/// A request, as a client sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect { transaction_id: u32 },
    Announce(Announce),
    Scrape { connection_id: u64, transaction_id: u32, info_hashes: Vec<[u8; 20]> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Event,
    /// IPv4 address the client asks to be announced as (0: the sender's).
    pub ip: u32,
    pub key: u32,
    /// -1: the tracker's default.
    pub num_want: i32,
    pub port: u16,
    /// BEP 41 URL data (path and query of the announce URL), empty when absent.
    pub url_data: Vec<u8>,
}

/// A response, as a tracker sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Connect { transaction_id: u32, connection_id: u64 },
    Announce { transaction_id: u32, interval: u32, leechers: u32, seeders: u32, peers: Vec<SocketAddr> },
    Scrape { transaction_id: u32, stats: Vec<ScrapeStats> },
    Error { transaction_id: u32, message: String },
}

/// Why a packet was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketError {
    TooShort { len: usize, need: usize },
    BadProtocolId,
    UnknownAction(u32),
    BadLength { action: u32, len: usize },
    BadEvent(u32),
    BadOption,
    TooManyHashes,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::TooShort { len, need } => write!(f, "packet of {len} bytes is too short (need {need})"),
            PacketError::BadProtocolId => write!(f, "connect request without the protocol id"),
            PacketError::UnknownAction(a) => write!(f, "unknown action {a}"),
            PacketError::BadLength { action, len } => write!(f, "packet of {len} bytes is the wrong length for action {action}"),
            PacketError::BadEvent(e) => write!(f, "unknown event {e}"),
            PacketError::BadOption => write!(f, "malformed announce options"),
            PacketError::TooManyHashes => write!(f, "too many info-hashes in one scrape"),
        }
    }
}

impl std::error::Error for PacketError {}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes(b[i..i + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(b[i..i + 8].try_into().unwrap())
}
fn h20(b: &[u8], i: usize) -> [u8; 20] {
    b[i..i + 20].try_into().unwrap()
}

pub fn event_code(e: Event) -> u32 {
    match e {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    }
}

pub fn event_from_code(c: u32) -> Option<Event> {
    Some(match c {
        0 => Event::None,
        1 => Event::Completed,
        2 => Event::Started,
        3 => Event::Stopped,
        _ => return None,
    })
}

/// The transaction id of a packet of at least 16 bytes (to answer errors), if it has one.
pub fn transaction_id(b: &[u8]) -> Option<u32> {
    (b.len() >= 16).then(|| u32_at(b, 12))
}

/// The transaction id of a response packet of at least 8 bytes.
pub fn transaction_id_of_response(b: &[u8]) -> Option<u32> {
    (b.len() >= 8).then(|| u32_at(b, 4))
}

/// Parses a request packet (server side).
pub fn parse_request(b: &[u8]) -> Result<Request, PacketError> {
    if b.len() < 16 {
        return Err(PacketError::TooShort { len: b.len(), need: 16 });
    }
    let connection_id = u64_at(b, 0);
    let action = u32_at(b, 8);
    let transaction_id = u32_at(b, 12);
    match action {
        ACTION_CONNECT => {
            if connection_id != PROTOCOL_ID {
                return Err(PacketError::BadProtocolId);
            }
            if b.len() != 16 {
                return Err(PacketError::BadLength { action, len: b.len() });
            }
            Ok(Request::Connect { transaction_id })
        }
        ACTION_ANNOUNCE => {
            if b.len() < 98 {
                return Err(PacketError::TooShort { len: b.len(), need: 98 });
            }
            let ev = u32_at(b, 80);
            let event = event_from_code(ev).ok_or(PacketError::BadEvent(ev))?;
            let url_data = parse_options(&b[98..])?;
            Ok(Request::Announce(Announce {
                connection_id,
                transaction_id,
                info_hash: h20(b, 16),
                peer_id: h20(b, 36),
                downloaded: u64_at(b, 56),
                left: u64_at(b, 64),
                uploaded: u64_at(b, 72),
                event,
                ip: u32_at(b, 84),
                key: u32_at(b, 88),
                num_want: u32_at(b, 92) as i32,
                port: u16_at(b, 96),
                url_data,
            }))
        }
        ACTION_SCRAPE => {
            let rest = b.len() - 16;
            if rest == 0 || rest % 20 != 0 {
                return Err(PacketError::BadLength { action, len: b.len() });
            }
            if rest / 20 > MAX_SCRAPE_HASHES {
                return Err(PacketError::TooManyHashes);
            }
            Ok(Request::Scrape { connection_id, transaction_id, info_hashes: b[16..].chunks_exact(20).map(|c| c.try_into().unwrap()).collect() })
        }
        a => Err(PacketError::UnknownAction(a)),
    }
}

/// BEP 41 options: 0 end, 1 no-op, 2 URL data (length byte + bytes, concatenated).
fn parse_options(mut b: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut url = Vec::new();
    while let Some(&kind) = b.first() {
        match kind {
            0 => break,
            1 => b = &b[1..],
            2 => {
                let len = *b.get(1).ok_or(PacketError::BadOption)? as usize;
                let data = b.get(2..2 + len).ok_or(PacketError::BadOption)?;
                url.extend_from_slice(data);
                b = &b[2 + len..];
            }
            _ => return Err(PacketError::BadOption),
        }
    }
    Ok(url)
}

/// Encodes a request packet (client side).
pub fn encode_request(r: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(100);
    match r {
        Request::Connect { transaction_id } => {
            out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
            out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
        }
        Request::Announce(a) => {
            out.extend_from_slice(&a.connection_id.to_be_bytes());
            out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
            out.extend_from_slice(&a.transaction_id.to_be_bytes());
            out.extend_from_slice(&a.info_hash);
            out.extend_from_slice(&a.peer_id);
            out.extend_from_slice(&a.downloaded.to_be_bytes());
            out.extend_from_slice(&a.left.to_be_bytes());
            out.extend_from_slice(&a.uploaded.to_be_bytes());
            out.extend_from_slice(&event_code(a.event).to_be_bytes());
            out.extend_from_slice(&a.ip.to_be_bytes());
            out.extend_from_slice(&a.key.to_be_bytes());
            out.extend_from_slice(&a.num_want.to_be_bytes());
            out.extend_from_slice(&a.port.to_be_bytes());
            if !a.url_data.is_empty() {
                for chunk in a.url_data.chunks(255) {
                    out.push(2);
                    out.push(chunk.len() as u8);
                    out.extend_from_slice(chunk);
                }
                out.push(0);
            }
        }
        Request::Scrape { connection_id, transaction_id, info_hashes } => {
            out.extend_from_slice(&connection_id.to_be_bytes());
            out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            for h in info_hashes {
                out.extend_from_slice(h);
            }
        }
    }
    out
}

/// Encodes a response packet (server side). Announce peers of the other address family
/// than `v6` are left out (a BEP 15 response has one fixed peer size).
pub fn encode_response(r: &Response, v6: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_response_into(r, v6, &mut out);
    out
}

/// [`encode_response`] into `out` (cleared first), so a server can reuse one buffer.
pub fn encode_response_into(r: &Response, v6: bool, out: &mut Vec<u8>) {
    out.clear();
    match r {
        Response::Connect { transaction_id, connection_id } => {
            out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            out.extend_from_slice(&connection_id.to_be_bytes());
        }
        Response::Announce { transaction_id, interval, leechers, seeders, peers } => {
            encode_announce_response_into(*transaction_id, *interval, *leechers, *seeders, peers.iter().copied(), v6, out)
        }
        Response::Scrape { transaction_id, stats } => {
            out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            for s in stats {
                out.extend_from_slice(&s.complete.to_be_bytes());
                out.extend_from_slice(&s.downloaded.to_be_bytes());
                out.extend_from_slice(&s.incomplete.to_be_bytes());
            }
        }
        Response::Error { transaction_id, message } => {
            out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
            out.extend_from_slice(&transaction_id.to_be_bytes());
            out.extend_from_slice(message.as_bytes());
        }
    }
}

/// An announce response into `out` (cleared first) straight from the peers, without a
/// [`Response`] in between; peers of the other family than `v6` are left out.
pub fn encode_announce_response_into(
    transaction_id: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: impl Iterator<Item = SocketAddr>,
    v6: bool,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&interval.to_be_bytes());
    out.extend_from_slice(&leechers.to_be_bytes());
    out.extend_from_slice(&seeders.to_be_bytes());
    for p in peers {
        match (p, v6) {
            (SocketAddr::V4(a), false) => out.extend_from_slice(&a.ip().octets()),
            (SocketAddr::V6(a), true) => out.extend_from_slice(&a.ip().octets()),
            _ => continue,
        }
        out.extend_from_slice(&p.port().to_be_bytes());
    }
}

/// Parses a response packet (client side); `v6` says which peer size to expect.
pub fn parse_response(b: &[u8], v6: bool) -> Result<Response, PacketError> {
    if b.len() < 8 {
        return Err(PacketError::TooShort { len: b.len(), need: 8 });
    }
    let action = u32_at(b, 0);
    let transaction_id = u32_at(b, 4);
    match action {
        ACTION_CONNECT => {
            if b.len() < 16 {
                return Err(PacketError::TooShort { len: b.len(), need: 16 });
            }
            Ok(Response::Connect { transaction_id, connection_id: u64_at(b, 8) })
        }
        ACTION_ANNOUNCE => {
            if b.len() < 20 {
                return Err(PacketError::TooShort { len: b.len(), need: 20 });
            }
            let size = if v6 { 18 } else { 6 };
            let rest = &b[20..];
            if rest.len() % size != 0 {
                return Err(PacketError::BadLength { action, len: b.len() });
            }
            let peers = rest
                .chunks_exact(size)
                .map(|c| {
                    let ip = if v6 {
                        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&c[..16]).unwrap()))
                    } else {
                        IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                    };
                    SocketAddr::new(ip, u16_at(c, size - 2))
                })
                .collect();
            Ok(Response::Announce { transaction_id, interval: u32_at(b, 8), leechers: u32_at(b, 12), seeders: u32_at(b, 16), peers })
        }
        ACTION_SCRAPE => {
            let rest = &b[8..];
            if rest.len() % 12 != 0 {
                return Err(PacketError::BadLength { action, len: b.len() });
            }
            let stats = rest
                .chunks_exact(12)
                .map(|c| ScrapeStats { complete: u32_at(c, 0), downloaded: u32_at(c, 4), incomplete: u32_at(c, 8) })
                .collect();
            Ok(Response::Scrape { transaction_id, stats })
        }
        ACTION_ERROR => Ok(Response::Error { transaction_id, message: String::from_utf8_lossy(&b[8..]).into_owned() }),
        a => Err(PacketError::UnknownAction(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Announce {
        Announce {
            connection_id: 0x1122334455667788,
            transaction_id: 42,
            info_hash: [1; 20],
            peer_id: [2; 20],
            downloaded: 3,
            left: 4,
            uploaded: 5,
            event: Event::Completed,
            ip: 0,
            key: 9,
            num_want: -1,
            port: 6881,
            url_data: b"/announce/secret?x=1".to_vec(),
        }
    }

    #[test]
    fn request_round_trips() {
        for r in [
            Request::Connect { transaction_id: 7 },
            Request::Announce(ann()),
            Request::Announce(Announce { url_data: Vec::new(), ..ann() }),
            Request::Announce(Announce { url_data: vec![b'a'; 600], ..ann() }),
            Request::Scrape { connection_id: 5, transaction_id: 6, info_hashes: vec![[1; 20], [2; 20]] },
        ] {
            assert_eq!(parse_request(&encode_request(&r)).unwrap(), r);
        }
        assert_eq!(encode_request(&Request::Announce(Announce { url_data: Vec::new(), ..ann() })).len(), 98);
    }

    #[test]
    fn bad_requests() {
        assert!(matches!(parse_request(b"short"), Err(PacketError::TooShort { .. })));
        let mut c = encode_request(&Request::Connect { transaction_id: 1 });
        c[0] = 9;
        assert_eq!(parse_request(&c), Err(PacketError::BadProtocolId));
        let mut c = encode_request(&Request::Connect { transaction_id: 1 });
        c.push(0);
        assert!(matches!(parse_request(&c), Err(PacketError::BadLength { .. })));
        let mut a = encode_request(&Request::Announce(ann()));
        a[8..12].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(parse_request(&a), Err(PacketError::UnknownAction(9)));
        let a = encode_request(&Request::Announce(ann()));
        assert!(matches!(parse_request(&a[..97]), Err(PacketError::TooShort { .. })));
        let mut a = encode_request(&Request::Announce(Announce { url_data: Vec::new(), ..ann() }));
        a[80..84].copy_from_slice(&7u32.to_be_bytes());
        assert_eq!(parse_request(&a), Err(PacketError::BadEvent(7)));
        let mut a = encode_request(&Request::Announce(Announce { url_data: Vec::new(), ..ann() }));
        a.extend_from_slice(&[2, 50, b'x']);
        assert_eq!(parse_request(&a), Err(PacketError::BadOption));
        let s = encode_request(&Request::Scrape { connection_id: 5, transaction_id: 6, info_hashes: vec![[1; 20]] });
        assert!(matches!(parse_request(&s[..30]), Err(PacketError::BadLength { .. })));
        assert!(matches!(parse_request(&s[..16]), Err(PacketError::BadLength { .. })));
        let s = encode_request(&Request::Scrape { connection_id: 5, transaction_id: 6, info_hashes: vec![[1; 20]; 75] });
        assert_eq!(parse_request(&s), Err(PacketError::TooManyHashes));
    }

    #[test]
    fn response_round_trips() {
        let peers4: Vec<SocketAddr> = vec!["1.2.3.4:5".parse().unwrap(), "127.0.0.1:6881".parse().unwrap()];
        let peers6: Vec<SocketAddr> = vec!["[::1]:7".parse().unwrap()];
        let all: Vec<SocketAddr> = peers4.iter().chain(&peers6).copied().collect();
        let r = Response::Announce { transaction_id: 1, interval: 2, leechers: 3, seeders: 4, peers: all };
        let Response::Announce { peers, .. } = parse_response(&encode_response(&r, false), false).unwrap() else { panic!() };
        assert_eq!(peers, peers4);
        let Response::Announce { peers, .. } = parse_response(&encode_response(&r, true), true).unwrap() else { panic!() };
        assert_eq!(peers, peers6);
        for r in [
            Response::Connect { transaction_id: 1, connection_id: 2 },
            Response::Scrape { transaction_id: 1, stats: vec![ScrapeStats { complete: 1, incomplete: 2, downloaded: 3 }] },
            Response::Error { transaction_id: 1, message: "unregistered torrent".into() },
        ] {
            assert_eq!(parse_response(&encode_response(&r, false), false).unwrap(), r);
        }
        assert!(parse_response(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], false).is_err());
        assert!(parse_response(&[0, 0, 0, 9, 0, 0, 0, 1], false).is_err());
    }
}
