//! The HTTP tracker protocol as pure functions over bytes: announce query strings (BEP 3),
//! announce responses with compact IPv4 (BEP 23), IPv6 `peers6` (BEP 7) or dictionary peer
//! lists, scrape (BEP 48) and the scrape-URL convention.
//!
//! Used by both sides: the client builds query strings and decodes responses, the server
//! parses query strings and encodes responses. Invariants:
//! - parsing never panics and never allocates more than a small multiple of the input;
//! - `info_hash` and `peer_id` are exactly 20 raw bytes after percent-decoding, else an error;
//! - encoded responses are canonical bencode (keys in sorted order).

use super::client::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats};
use crate::bencode::{self, Value};
use crate::metainfo::url_encode;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Most info-hashes one scrape may ask about.
pub const MAX_SCRAPE_HASHES: usize = 74;
/// Largest `numwant` honoured (more is clamped, not refused).
pub const MAX_NUMWANT: u32 = 200;

impl Event {
    pub fn as_str(&self) -> &'static str {
        match self {
            Event::None => "",
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

// ---- client side: requests -------------------------------------------------------------------

/// The query string (without `?`) of an announce: raw bytes percent-encoded, `compact=1`.
pub fn announce_query(req: &AnnounceRequest) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
        url_encode(&req.info_hash),
        url_encode(&req.peer_id),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.key
    );
    if req.event != Event::None {
        q.push_str("&event=");
        q.push_str(req.event.as_str());
    }
    if let Some(n) = req.numwant {
        q.push_str(&format!("&numwant={n}"));
    }
    q
}

/// Appends a query string to a URL that may already have one.
pub fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// The scrape URL for an announce URL (BEP 48 convention): the last path component
/// `announce…` becomes `scrape…`. btrack's token form `/announce/<SECRET>` maps to
/// `/scrape/<SECRET>`. `None` when the URL does not follow the convention.
pub fn scrape_url(announce: &str) -> Option<String> {
    let (base, query) = match announce.find('?') {
        Some(i) => (&announce[..i], &announce[i..]),
        None => (announce, ""),
    };
    let start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = start + base[start..].find('/')?;
    let (origin, path) = base.split_at(path_start);
    let slash = path.rfind('/')?;
    let last = &path[slash + 1..];
    if let Some(rest) = last.strip_prefix("announce") {
        return Some(format!("{origin}{}scrape{rest}{query}", &path[..slash + 1]));
    }
    // Token form: .../announce/<token>
    if slash > 0 && !last.is_empty() {
        let head = &path[..slash];
        let prev = head.rfind('/')?;
        if &head[prev + 1..] == "announce" {
            return Some(format!("{origin}{}/scrape/{last}{query}", &head[..prev]));
        }
    }
    None
}

/// The query string (without `?`) of a scrape for some info-hashes.
pub fn scrape_query(hashes: &[[u8; 20]]) -> String {
    hashes.iter().map(|h| format!("info_hash={}", url_encode(h))).collect::<Vec<_>>().join("&")
}

// ---- client side: responses ------------------------------------------------------------------

/// Why a tracker's response could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The tracker answered with a `failure reason`.
    Failure(String),
    /// The body is not what the protocol says.
    Malformed(String),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Failure(r) => write!(f, "tracker refused: {r}"),
            ResponseError::Malformed(w) => write!(f, "malformed tracker response: {w}"),
        }
    }
}

fn malformed<T>(why: impl Into<String>) -> Result<T, ResponseError> {
    Err(ResponseError::Malformed(why.into()))
}

fn top_dict<'a>(body: &'a [u8]) -> Result<bencode::Dict<'a>, ResponseError> {
    let v = bencode::decode(body).map_err(|e| ResponseError::Malformed(e.to_string()))?;
    let d = match v {
        Value::Dict(d) => d,
        other => return malformed(format!("top level is a {}, not a dictionary", other.type_name())),
    };
    if let Some(r) = d.get("failure reason") {
        let reason = r.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_else(|| "(no reason given)".into());
        return Err(ResponseError::Failure(reason));
    }
    Ok(d)
}

fn opt_u32(d: &bencode::Dict<'_>, key: &str) -> Result<Option<u32>, ResponseError> {
    match d.get(key) {
        None => Ok(None),
        Some(Value::Int(i)) if *i >= 0 => Ok(Some((*i).min(u32::MAX as i64) as u32)),
        Some(_) => malformed(format!("'{key}' is not a non-negative integer")),
    }
}

/// Compact peers: 6 bytes (IPv4 + port) or 18 bytes (IPv6 + port) each.
pub fn decode_compact(bytes: &[u8], v6: bool) -> Result<Vec<SocketAddr>, ResponseError> {
    let n = if v6 { 18 } else { 6 };
    if bytes.len() % n != 0 {
        return malformed(format!("compact peer list of {} bytes is not a multiple of {n}", bytes.len()));
    }
    Ok(bytes
        .chunks_exact(n)
        .map(|c| {
            let port = u16::from_be_bytes([c[n - 2], c[n - 1]]);
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&c[..16]).unwrap()))
            } else {
                IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
            };
            SocketAddr::new(ip, port)
        })
        .collect())
}

/// Decodes an announce response (compact, `peers6`, or a list of peer dictionaries).
pub fn decode_announce_response(body: &[u8]) -> Result<AnnounceResponse, ResponseError> {
    let d = top_dict(body)?;
    let interval = opt_u32(&d, "interval")?.unwrap_or(1800).max(1);
    let min_interval = opt_u32(&d, "min interval")?;
    let mut peers = Vec::new();
    match d.get("peers") {
        None => {}
        Some(Value::Bytes(b)) => peers.extend(decode_compact(b, false)?),
        Some(Value::List(list)) => {
            for p in list {
                let p = match p.as_dict() {
                    Some(p) => p,
                    None => return malformed("a peer is not a dictionary"),
                };
                let ip = p.get("ip").and_then(|v| v.as_str()).and_then(|s| s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>().ok());
                let port = p.get("port").and_then(|v| v.as_int()).filter(|p| (1..=65535).contains(p));
                // Peers named by host name, or with a bad port, are skipped, not fatal.
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port as u16));
                }
            }
        }
        Some(_) => return malformed("'peers' is neither a byte string nor a list"),
    }
    match d.get("peers6") {
        None => {}
        Some(Value::Bytes(b)) => peers.extend(decode_compact(b, true)?),
        Some(_) => return malformed("'peers6' is not a byte string"),
    }
    Ok(AnnounceResponse {
        interval: Duration::from_secs(interval as u64),
        min_interval: min_interval.map(|m| Duration::from_secs(m as u64)),
        peers,
        complete: opt_u32(&d, "complete")?,
        incomplete: opt_u32(&d, "incomplete")?,
    })
}

/// Decodes a scrape response and picks the entry for `info_hash` (zeros when absent).
pub fn decode_scrape_response(body: &[u8], info_hash: &[u8; 20]) -> Result<ScrapeStats, ResponseError> {
    let d = top_dict(body)?;
    let files = match d.get("files") {
        Some(Value::Dict(f)) => f,
        Some(_) => return malformed("'files' is not a dictionary"),
        None => return malformed("no 'files' dictionary"),
    };
    for (k, v) in &files.entries {
        if *k == &info_hash[..] {
            let s = match v.as_dict() {
                Some(s) => s,
                None => return malformed("a scrape entry is not a dictionary"),
            };
            return Ok(ScrapeStats {
                complete: opt_u32(s, "complete")?.unwrap_or(0),
                incomplete: opt_u32(s, "incomplete")?.unwrap_or(0),
                downloaded: opt_u32(s, "downloaded")?.unwrap_or(0),
            });
        }
    }
    Ok(ScrapeStats { complete: 0, incomplete: 0, downloaded: 0 })
}

// ---- server side: requests -------------------------------------------------------------------

/// Why an announce or scrape query was refused; the text is the `failure reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    Missing(&'static str),
    Invalid(&'static str),
    BadEscape,
    TooManyHashes,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Missing(k) => write!(f, "missing {k}"),
            QueryError::Invalid(k) => write!(f, "invalid {k}"),
            QueryError::BadEscape => write!(f, "malformed percent-encoding in query"),
            QueryError::TooManyHashes => write!(f, "too many info_hash values (at most {MAX_SCRAPE_HASHES})"),
        }
    }
}

/// An announce as the server understood it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAnnounce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    /// Requested number of peers, clamped to [`MAX_NUMWANT`].
    pub numwant: Option<u32>,
    pub compact: bool,
    pub no_peer_id: bool,
    /// The `ip` parameter when it is a literal address.
    pub ip: Option<IpAddr>,
    pub key: Option<u32>,
}

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes into `out` (`+` is a space); fails on a broken escape, or with
/// `too_long` when the output would exceed `max` bytes.
fn decode_into(s: &[u8], out: &mut Vec<u8>, max: usize, too_long: QueryError) -> Result<(), QueryError> {
    let mut i = 0;
    while i < s.len() {
        if out.len() >= max {
            return Err(too_long);
        }
        match s[i] {
            b'%' => {
                let h = s.get(i + 1).copied().and_then(hexval);
                let l = s.get(i + 2).copied().and_then(hexval);
                match (h, l) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(QueryError::BadEscape),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(())
}

/// Percent-decodes a query component.
pub fn percent_decode(s: &[u8]) -> Result<Vec<u8>, QueryError> {
    let mut out = Vec::with_capacity(s.len());
    decode_into(s, &mut out, usize::MAX, QueryError::BadEscape)?;
    Ok(out)
}

fn decode20(v: &[u8], what: &'static str) -> Result<[u8; 20], QueryError> {
    let mut out = Vec::with_capacity(20);
    decode_into(v, &mut out, 20, QueryError::Invalid(what))?;
    out.try_into().map_err(|_| QueryError::Invalid(what))
}

fn number<T: std::str::FromStr>(v: &[u8], what: &'static str) -> Result<T, QueryError> {
    std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or(QueryError::Invalid(what))
}

/// Splits a query string into raw `(key, value)` pairs (still percent-encoded).
pub fn pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    query.split(|&b| b == b'&').filter(|p| !p.is_empty()).map(|p| match p.iter().position(|&b| b == b'=') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => (p, &p[p.len()..]),
    })
}

/// Parses an announce query string (the part after `?`).
pub fn parse_announce(query: &[u8]) -> Result<ParsedAnnounce, QueryError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let (mut uploaded, mut downloaded, mut left) = (None, None, None);
    let mut event = Event::None;
    let mut numwant = None;
    let mut compact = true;
    let mut no_peer_id = false;
    let mut ip = None;
    let mut key = None;
    for (k, v) in pairs(query) {
        match k {
            b"info_hash" => info_hash = Some(decode20(v, "info_hash (must be 20 bytes)")?),
            b"peer_id" => peer_id = Some(decode20(v, "peer_id (must be 20 bytes)")?),
            b"port" => {
                let p: u16 = number(v, "port")?;
                if p == 0 {
                    return Err(QueryError::Invalid("port"));
                }
                port = Some(p)
            }
            b"uploaded" => uploaded = Some(number::<u64>(v, "uploaded")?),
            b"downloaded" => downloaded = Some(number::<u64>(v, "downloaded")?),
            b"left" => left = Some(number::<u64>(v, "left")?),
            b"event" => {
                event = match v {
                    b"started" => Event::Started,
                    b"completed" => Event::Completed,
                    b"stopped" => Event::Stopped,
                    b"" | b"empty" | b"paused" => Event::None,
                    _ => return Err(QueryError::Invalid("event")),
                }
            }
            b"numwant" => {
                let n: i64 = number(v, "numwant")?;
                if !(-1..=100_000).contains(&n) {
                    return Err(QueryError::Invalid("numwant"));
                }
                numwant = if n < 0 { None } else { Some((n as u32).min(MAX_NUMWANT)) };
            }
            b"compact" => compact = v != b"0",
            b"no_peer_id" => no_peer_id = v != b"0",
            b"ip" => {
                let raw = percent_decode(v).map_err(|_| QueryError::Invalid("ip"))?;
                ip = std::str::from_utf8(&raw).ok().and_then(|s| s.parse::<IpAddr>().ok());
            }
            b"key" => {
                let raw = percent_decode(v).map_err(|_| QueryError::Invalid("key"))?;
                let s = std::str::from_utf8(&raw).unwrap_or("");
                // Clients send hex (libtorrent, ours) or decimal; keep a 32-bit digest of it.
                key = Some(u32::from_str_radix(s, 16).unwrap_or_else(|_| crate::hashing::sha1(&raw)[..4].iter().fold(0, |a, b| a << 8 | *b as u32)));
            }
            _ => {}
        }
    }
    Ok(ParsedAnnounce {
        info_hash: info_hash.ok_or(QueryError::Missing("info_hash"))?,
        peer_id: peer_id.ok_or(QueryError::Missing("peer_id"))?,
        port: port.ok_or(QueryError::Missing("port"))?,
        uploaded: uploaded.unwrap_or(0),
        downloaded: downloaded.unwrap_or(0),
        left: left.ok_or(QueryError::Missing("left"))?,
        event,
        numwant,
        compact,
        no_peer_id,
        ip,
        key,
    })
}

/// Parses a scrape query: every `info_hash` value (none means "all", which we refuse upstream).
pub fn parse_scrape(query: &[u8]) -> Result<Vec<[u8; 20]>, QueryError> {
    let mut out = Vec::new();
    for (k, v) in pairs(query) {
        if k == b"info_hash" {
            if out.len() == MAX_SCRAPE_HASHES {
                return Err(QueryError::TooManyHashes);
            }
            out.push(decode20(v, "info_hash (must be 20 bytes)")?);
        }
    }
    Ok(out)
}

// ---- server side: responses ------------------------------------------------------------------

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(itoa_buf(b.len() as u64).as_slice());
    out.push(b':');
    out.extend_from_slice(b);
}

fn put_int(out: &mut Vec<u8>, i: u64) {
    out.push(b'i');
    out.extend_from_slice(itoa_buf(i).as_slice());
    out.push(b'e');
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = 20;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start: i }
}

/// A peer in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerOut {
    pub addr: SocketAddr,
    pub peer_id: [u8; 20],
}

/// Encodes an announce response. Compact: IPv4 peers in `peers`, IPv6 in `peers6`;
/// otherwise one list of `{ip, peer id, port}` dictionaries.
pub fn encode_announce(
    interval: u32,
    min_interval: u32,
    complete: u32,
    incomplete: u32,
    peers: &[PeerOut],
    compact: bool,
    no_peer_id: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + peers.len() * 8);
    out.push(b'd');
    put_bytes(&mut out, b"complete");
    put_int(&mut out, complete as u64);
    put_bytes(&mut out, b"incomplete");
    put_int(&mut out, incomplete as u64);
    put_bytes(&mut out, b"interval");
    put_int(&mut out, interval as u64);
    put_bytes(&mut out, b"min interval");
    put_int(&mut out, min_interval as u64);
    put_bytes(&mut out, b"peers");
    if compact {
        let mut v4 = Vec::with_capacity(peers.len() * 6);
        let mut v6 = Vec::new();
        for p in peers {
            match p.addr {
                SocketAddr::V4(a) => {
                    v4.extend_from_slice(&a.ip().octets());
                    v4.extend_from_slice(&a.port().to_be_bytes());
                }
                SocketAddr::V6(a) => {
                    v6.extend_from_slice(&a.ip().octets());
                    v6.extend_from_slice(&a.port().to_be_bytes());
                }
            }
        }
        put_bytes(&mut out, &v4);
        if !v6.is_empty() {
            put_bytes(&mut out, b"peers6");
            put_bytes(&mut out, &v6);
        }
    } else {
        out.push(b'l');
        for p in peers {
            out.push(b'd');
            put_bytes(&mut out, b"ip");
            put_bytes(&mut out, p.addr.ip().to_string().as_bytes());
            if !no_peer_id {
                put_bytes(&mut out, b"peer id");
                put_bytes(&mut out, &p.peer_id);
            }
            put_bytes(&mut out, b"port");
            put_int(&mut out, p.addr.port() as u64);
            out.push(b'e');
        }
        out.push(b'e');
    }
    out.push(b'e');
    out
}

/// Encodes a `failure reason` response.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(reason.len() + 24);
    out.push(b'd');
    put_bytes(&mut out, b"failure reason");
    put_bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

/// Encodes a scrape response; `files` must be sorted by info-hash with no duplicates.
pub fn encode_scrape(files: &[([u8; 20], ScrapeStats)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + files.len() * 80);
    out.push(b'd');
    put_bytes(&mut out, b"files");
    out.push(b'd');
    for (ih, s) in files {
        put_bytes(&mut out, ih);
        out.push(b'd');
        put_bytes(&mut out, b"complete");
        put_int(&mut out, s.complete as u64);
        put_bytes(&mut out, b"downloaded");
        put_int(&mut out, s.downloaded as u64);
        put_bytes(&mut out, b"incomplete");
        put_int(&mut out, s.incomplete as u64);
        out.push(b'e');
    }
    out.push(b'e');
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: *b"\x00\x01 &=%+abcdefghijklm",
            peer_id: *b"-SH0100-\xff\xfe123456789a",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: Some(50),
            key: 0xdeadbeef,
        }
    }

    #[test]
    fn query_round_trip() {
        let q = announce_query(&req());
        let p = parse_announce(q.as_bytes()).unwrap();
        let r = req();
        assert_eq!(p.info_hash, r.info_hash);
        assert_eq!(p.peer_id, r.peer_id);
        assert_eq!((p.port, p.uploaded, p.downloaded, p.left), (6881, 1, 2, 3));
        assert_eq!(p.event, Event::Started);
        assert_eq!(p.numwant, Some(50));
        assert_eq!(p.key, Some(0xdeadbeef));
        assert!(p.compact);
    }

    #[test]
    fn bad_queries() {
        let ok = announce_query(&req());
        let without = |k: &str| ok.split('&').filter(|p| !p.starts_with(k)).collect::<Vec<_>>().join("&");
        assert_eq!(parse_announce(without("info_hash=").as_bytes()), Err(QueryError::Missing("info_hash")));
        assert_eq!(parse_announce(without("peer_id=").as_bytes()), Err(QueryError::Missing("peer_id")));
        assert_eq!(parse_announce(without("port=").as_bytes()), Err(QueryError::Missing("port")));
        assert_eq!(parse_announce(without("left=").as_bytes()), Err(QueryError::Missing("left")));
        let short = format!("{}&info_hash=abc", without("info_hash="));
        assert!(matches!(parse_announce(short.as_bytes()), Err(QueryError::Invalid(_))));
        let long = format!("{}&info_hash={}", without("info_hash="), "a".repeat(21));
        assert!(matches!(parse_announce(long.as_bytes()), Err(QueryError::Invalid(_))));
        let huge = format!("{}&info_hash={}", without("info_hash="), "%41".repeat(5000));
        assert!(matches!(parse_announce(huge.as_bytes()), Err(QueryError::Invalid(_))));
        let esc = format!("{}&info_hash=%zz{}", without("info_hash="), "a".repeat(18));
        assert_eq!(parse_announce(esc.as_bytes()), Err(QueryError::BadEscape));
        assert_eq!(parse_announce(format!("{ok}&port=0").as_bytes()), Err(QueryError::Invalid("port")));
        assert_eq!(parse_announce(format!("{ok}&port=70000").as_bytes()), Err(QueryError::Invalid("port")));
        assert_eq!(parse_announce(format!("{ok}&left=-1").as_bytes()), Err(QueryError::Invalid("left")));
        assert_eq!(parse_announce(format!("{ok}&event=dance").as_bytes()), Err(QueryError::Invalid("event")));
        assert_eq!(parse_announce(format!("{ok}&numwant=999999999").as_bytes()), Err(QueryError::Invalid("numwant")));
        assert_eq!(parse_announce(format!("{ok}&numwant=5000").as_bytes()).unwrap().numwant, Some(MAX_NUMWANT));
    }

    #[test]
    fn response_round_trips() {
        let peers = [
            PeerOut { addr: "10.0.0.1:6881".parse().unwrap(), peer_id: [1; 20] },
            PeerOut { addr: "[::1]:51413".parse().unwrap(), peer_id: [2; 20] },
        ];
        for compact in [true, false] {
            let body = encode_announce(1800, 60, 3, 4, &peers, compact, false);
            assert_eq!(bencode::decode(&body).unwrap().to_owned().encode(), body, "canonical");
            let r = decode_announce_response(&body).unwrap();
            assert_eq!(r.interval, Duration::from_secs(1800));
            assert_eq!(r.min_interval, Some(Duration::from_secs(60)));
            assert_eq!((r.complete, r.incomplete), (Some(3), Some(4)));
            assert_eq!(r.peers, vec![peers[0].addr, peers[1].addr]);
        }
        assert_eq!(
            decode_announce_response(&encode_failure("unregistered torrent")),
            Err(ResponseError::Failure("unregistered torrent".into()))
        );
        assert!(matches!(decode_announce_response(b"d5:peers5:abcdee"), Err(ResponseError::Malformed(_))));
        assert!(matches!(decode_announce_response(b"le"), Err(ResponseError::Malformed(_))));
        assert!(matches!(decode_announce_response(b"<html>"), Err(ResponseError::Malformed(_))));
        let ih = [7u8; 20];
        let s = ScrapeStats { complete: 1, incomplete: 2, downloaded: 3 };
        let body = encode_scrape(&[(ih, s)]);
        assert_eq!(decode_scrape_response(&body, &ih).unwrap(), s);
        assert_eq!(decode_scrape_response(&body, &[8; 20]).unwrap(), ScrapeStats { complete: 0, incomplete: 0, downloaded: 0 });
    }

    #[test]
    fn scrape_urls() {
        assert_eq!(scrape_url("http://t:1/announce").as_deref(), Some("http://t:1/scrape"));
        assert_eq!(scrape_url("http://t:1/x/announce.php?a=b").as_deref(), Some("http://t:1/x/scrape.php?a=b"));
        assert_eq!(scrape_url("http://t:1/announce/s3cret").as_deref(), Some("http://t:1/scrape/s3cret"));
        assert_eq!(scrape_url("http://t:1/a"), None);
        assert_eq!(scrape_url("http://t:1/x/announcer").as_deref(), Some("http://t:1/x/scraper"));
    }

    #[test]
    fn scrape_query_parse() {
        let q = scrape_query(&[[1; 20], [2; 20]]);
        assert_eq!(parse_scrape(q.as_bytes()).unwrap(), vec![[1; 20], [2; 20]]);
        let many = scrape_query(&vec![[3; 20]; MAX_SCRAPE_HASHES + 1]);
        assert_eq!(parse_scrape(many.as_bytes()), Err(QueryError::TooManyHashes));
    }
}
