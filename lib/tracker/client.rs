//! The tracker client: blocking `announce` and `scrape` against `http://` (BEP 3/23/7/48,
//! through ureq) and `udp://` (BEP 15) tracker URLs.
//!
//! Invariants: every call returns within its `timeout` (plus a DNS lookup for host names);
//! the HTTP query string is built here byte for byte (ureq sends it as is: it only holds
//! RFC 3986 unreserved characters and `%XX` escapes); responses are size-limited and decoded
//! by the pure codecs in [`super::http`] and [`super::udp`]. UDP retransmits after 2 s,
//! 4 s, 8 s… bounded by the deadline, and caches a tracker's connection id for 60 s (the
//! protocol allows one minute).

use super::{http, udp};
use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An announce's `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Completed,
    Stopped,
}

/// What a client tells the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub numwant: Option<u32>,
    pub key: u32,
}

/// What the tracker answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    pub peers: Vec<SocketAddr>,
    /// Seeders, when the tracker says.
    pub complete: Option<u32>,
    /// Leechers, when the tracker says.
    pub incomplete: Option<u32>,
}

/// One torrent's swarm counts from a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrapeStats {
    pub complete: u32,
    pub incomplete: u32,
    pub downloaded: u32,
}

/// Why an announce or scrape failed. Every variant names the tracker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not an `http://` or `udp://` URL we can use.
    BadUrl { url: String, why: String },
    /// Name resolution, connection or socket errors.
    Io { url: String, why: String },
    /// No (complete) answer within the timeout.
    Timeout { url: String },
    /// An HTTP status other than 200 without a bencoded failure reason.
    Status { url: String, code: u16 },
    /// The answer does not follow the protocol.
    Malformed { url: String, why: String },
    /// The tracker refused: its `failure reason` (HTTP) or error message (UDP).
    Failure { url: String, reason: String },
}

impl Error {
    pub fn url(&self) -> &str {
        match self {
            Error::BadUrl { url, .. }
            | Error::Io { url, .. }
            | Error::Timeout { url }
            | Error::Status { url, .. }
            | Error::Malformed { url, .. }
            | Error::Failure { url, .. } => url,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one_line = |s: &str| s.replace(['\n', '\r'], " ");
        match self {
            Error::BadUrl { url, why } => write!(f, "tracker {url}: unusable URL: {}", one_line(why)),
            Error::Io { url, why } => write!(f, "tracker {url}: {}", one_line(why)),
            Error::Timeout { url } => write!(f, "tracker {url}: no answer (timed out)"),
            Error::Status { url, code } => write!(f, "tracker {url}: HTTP status {code}"),
            Error::Malformed { url, why } => write!(f, "tracker {url}: malformed response: {}", one_line(why)),
            Error::Failure { url, reason } => write!(f, "tracker {url}: refused: {}", one_line(reason)),
        }
    }
}

impl std::error::Error for Error {}

/// Largest HTTP response body read from a tracker.
const MAX_BODY: u64 = 4 << 20;

/// Announces to a tracker. `url`: `http://host:port/path` or `udp://host:port[/path]`;
/// blocking, bounded by `timeout`.
pub fn announce(url: &str, req: &AnnounceRequest, timeout: Duration) -> Result<AnnounceResponse, Error> {
    match scheme(url)? {
        Scheme::Http => {
            let full = http::with_query(url, &http::announce_query(req));
            let body = http_get(url, &full, timeout)?;
            http::decode_announce_response(&body).map_err(|e| response_error(url, e))
        }
        Scheme::Udp => udp_announce(url, req, timeout),
    }
}

/// Scrapes one torrent. HTTP: the scrape URL is derived per the BEP 48 convention (last
/// path component `announce` → `scrape`); UDP: a BEP 15 scrape.
pub fn scrape(url: &str, info_hash: &[u8; 20], timeout: Duration) -> Result<ScrapeStats, Error> {
    match scheme(url)? {
        Scheme::Http => {
            let surl = http::scrape_url(url)
                .ok_or_else(|| Error::BadUrl { url: url.into(), why: "no scrape URL (path does not end in 'announce')".into() })?;
            let full = http::with_query(&surl, &http::scrape_query(&[*info_hash]));
            let body = http_get(url, &full, timeout)?;
            http::decode_scrape_response(&body, info_hash).map_err(|e| response_error(url, e))
        }
        Scheme::Udp => udp_scrape(url, info_hash, timeout),
    }
}

enum Scheme {
    Http,
    Udp,
}

fn scheme(url: &str) -> Result<Scheme, Error> {
    let lower = url.get(..6).unwrap_or("").to_ascii_lowercase();
    if lower.starts_with("http:/") {
        Ok(Scheme::Http)
    } else if lower.starts_with("udp://") {
        Ok(Scheme::Udp)
    } else if lower.starts_with("https:") {
        Err(Error::BadUrl { url: url.into(), why: "https is not supported (the tracker is internal: use http)".into() })
    } else {
        Err(Error::BadUrl { url: url.into(), why: "expected an http:// or udp:// URL".into() })
    }
}

fn response_error(url: &str, e: http::ResponseError) -> Error {
    match e {
        http::ResponseError::Failure(reason) => Error::Failure { url: url.into(), reason },
        http::ResponseError::Malformed(why) => Error::Malformed { url: url.into(), why },
    }
}

fn http_get(url: &str, full: &str, timeout: Duration) -> Result<Vec<u8>, Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(3)
        .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let map = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) => Error::Timeout { url: url.into() },
        ureq::Error::BadUri(why) => Error::BadUrl { url: url.into(), why },
        ureq::Error::BodyExceedsLimit(_) => Error::Malformed { url: url.into(), why: format!("response larger than {MAX_BODY} bytes") },
        other => Error::Io { url: url.into(), why: other.to_string() },
    };
    let mut resp = agent.get(full).call().map_err(map)?;
    let code = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(MAX_BODY).read_to_vec().map_err(map)?;
    if code != 200 {
        // Some trackers send their failure reason with an error status.
        if let Err(http::ResponseError::Failure(reason)) = http::decode_announce_response(&body) {
            return Err(Error::Failure { url: url.into(), reason });
        }
        return Err(Error::Status { url: url.into(), code });
    }
    Ok(body)
}

// ---- UDP ------------------------------------------------------------------------------------

/// Host, port and the path-and-query (BEP 41 URL data) of a `udp://` URL.
fn udp_target(url: &str) -> Result<(SocketAddr, Vec<u8>), Error> {
    let bad = |why: &str| Error::BadUrl { url: url.into(), why: why.into() };
    let rest = &url[6..];
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| Error::Io { url: url.into(), why: format!("cannot resolve {authority}: {e}") })?
        .next()
        .ok_or_else(|| bad("host has no address"))?;
    Ok((addr, path.as_bytes().to_vec()))
}

static CONNECTIONS: Mutex<Option<HashMap<SocketAddr, (u64, Instant)>>> = Mutex::new(None);
const CONNECTION_TTL: Duration = Duration::from_secs(60);

/// A fresh random 32-bit value (transaction ids); no RNG crate: SHA-1 of time, pid, counter.
pub fn random_u32() -> u32 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut seed = Vec::with_capacity(40);
    seed.extend_from_slice(&t.to_le_bytes());
    seed.extend_from_slice(&n.to_le_bytes());
    seed.extend_from_slice(&std::process::id().to_le_bytes());
    let h = crate::hashing::sha1(&seed);
    u32::from_le_bytes([h[0], h[1], h[2], h[3]])
}

struct UdpClient<'a> {
    url: &'a str,
    sock: UdpSocket,
    target: SocketAddr,
    deadline: Instant,
}

impl<'a> UdpClient<'a> {
    fn new(url: &'a str, timeout: Duration) -> Result<(UdpClient<'a>, Vec<u8>), Error> {
        let deadline = Instant::now() + timeout;
        let (target, path) = udp_target(url)?;
        let io = |e: std::io::Error| Error::Io { url: url.into(), why: e.to_string() };
        let bind: SocketAddr = if target.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
        let sock = UdpSocket::bind(bind).map_err(io)?;
        sock.connect(target).map_err(io)?;
        Ok((UdpClient { url, sock, target, deadline }, path))
    }

    /// Sends `packet` (rebuilt per attempt with a fresh transaction id) until an answer
    /// with that id arrives; retransmits after 2 s, 4 s, 8 s… within the deadline.
    fn exchange(&self, build: &dyn Fn(u32) -> Vec<u8>) -> Result<udp::Response, Error> {
        let io = |e: std::io::Error| Error::Io { url: self.url.into(), why: e.to_string() };
        let mut wait = Duration::from_secs(2);
        let mut buf = vec![0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return Err(Error::Timeout { url: self.url.into() });
            }
            let tid = random_u32();
            self.sock.send(&build(tid)).map_err(io)?;
            let attempt_end = (now + wait).min(self.deadline);
            loop {
                let left = attempt_end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).map_err(io)?;
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                    // ICMP port unreachable shows up as ConnectionRefused: keep waiting/retrying.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        std::thread::sleep(left.min(Duration::from_millis(200)));
                        continue;
                    }
                    Err(e) => return Err(io(e)),
                };
                match udp::parse_response(&buf[..n], self.target.is_ipv6()) {
                    Ok(r) if response_tid(&r) == tid => return Ok(r),
                    Ok(_) => continue, // a late answer to an earlier attempt
                    Err(e) if udp::transaction_id_of_response(&buf[..n]) == Some(tid) => {
                        return Err(Error::Malformed { url: self.url.into(), why: e.to_string() })
                    }
                    Err(_) => continue,
                }
            }
            wait = (wait * 2).min(Duration::from_secs(60));
        }
    }

    fn connection_id(&self, fresh: bool) -> Result<u64, Error> {
        if !fresh {
            if let Some((id, at)) = CONNECTIONS.lock().unwrap().as_ref().and_then(|m| m.get(&self.target).copied()) {
                if at.elapsed() < CONNECTION_TTL {
                    return Ok(id);
                }
            }
        }
        match self.exchange(&|tid| udp::encode_request(&udp::Request::Connect { transaction_id: tid }))? {
            udp::Response::Connect { connection_id, .. } => {
                let mut g = CONNECTIONS.lock().unwrap();
                let m = g.get_or_insert_with(HashMap::new);
                if m.len() > 1000 {
                    m.clear();
                }
                m.insert(self.target, (connection_id, Instant::now()));
                Ok(connection_id)
            }
            other => Err(self.unexpected(other)),
        }
    }

    fn forget_connection(&self) {
        if let Some(m) = CONNECTIONS.lock().unwrap().as_mut() {
            m.remove(&self.target);
        }
    }

    fn unexpected(&self, r: udp::Response) -> Error {
        match r {
            udp::Response::Error { message, .. } => Error::Failure { url: self.url.into(), reason: message },
            other => Error::Malformed { url: self.url.into(), why: format!("unexpected answer {other:?}") },
        }
    }

    /// Runs a request that needs a connection id; if the tracker refuses a cached id,
    /// connects again once.
    fn with_connection(&self, build: &dyn Fn(u64, u32) -> Vec<u8>) -> Result<udp::Response, Error> {
        for attempt in 0..2 {
            let cid = self.connection_id(attempt > 0)?;
            let r = self.exchange(&|tid| build(cid, tid))?;
            if let udp::Response::Error { message, .. } = &r {
                if attempt == 0 && message.contains("connection") {
                    self.forget_connection();
                    continue;
                }
            }
            return Ok(r);
        }
        unreachable!("the loop returns on its second pass")
    }
}

fn response_tid(r: &udp::Response) -> u32 {
    match r {
        udp::Response::Connect { transaction_id, .. }
        | udp::Response::Announce { transaction_id, .. }
        | udp::Response::Scrape { transaction_id, .. }
        | udp::Response::Error { transaction_id, .. } => *transaction_id,
    }
}

fn udp_announce(url: &str, req: &AnnounceRequest, timeout: Duration) -> Result<AnnounceResponse, Error> {
    let (c, path) = UdpClient::new(url, timeout)?;
    let r = c.with_connection(&|cid, tid| {
        udp::encode_request(&udp::Request::Announce(udp::Announce {
            connection_id: cid,
            transaction_id: tid,
            info_hash: req.info_hash,
            peer_id: req.peer_id,
            downloaded: req.downloaded,
            left: req.left,
            uploaded: req.uploaded,
            event: req.event,
            ip: 0,
            key: req.key,
            num_want: req.numwant.map(|n| n.min(i32::MAX as u32) as i32).unwrap_or(-1),
            port: req.port,
            url_data: path.clone(),
        }))
    })?;
    match r {
        udp::Response::Announce { interval, leechers, seeders, peers, .. } => Ok(AnnounceResponse {
            interval: Duration::from_secs(interval.max(1) as u64),
            min_interval: None,
            peers,
            complete: Some(seeders),
            incomplete: Some(leechers),
        }),
        other => Err(c.unexpected(other)),
    }
}

fn udp_scrape(url: &str, info_hash: &[u8; 20], timeout: Duration) -> Result<ScrapeStats, Error> {
    let (c, _) = UdpClient::new(url, timeout)?;
    let r = c.with_connection(&|cid, tid| {
        udp::encode_request(&udp::Request::Scrape { connection_id: cid, transaction_id: tid, info_hashes: vec![*info_hash] })
    })?;
    match r {
        udp::Response::Scrape { stats, .. } if stats.len() == 1 => Ok(stats[0]),
        udp::Response::Scrape { stats, .. } => {
            Err(Error::Malformed { url: url.into(), why: format!("scrape answer holds {} entries, expected 1", stats.len()) })
        }
        other => Err(c.unexpected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [0xab; 20],
            peer_id: *b"-SH0100-abcdefghijkl",
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 100,
            event: Event::Started,
            numwant: Some(10),
            key: 1,
        }
    }

    /// A one-shot HTTP server answering `body` with `status`; returns the request head.
    fn fake_http(status: u16, body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).unwrap() == 0 {
                    break;
                }
                head.push(b[0]);
            }
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(&body);
            String::from_utf8_lossy(&head).into_owned()
        });
        (format!("http://127.0.0.1:{port}/announce"), h)
    }

    #[test]
    fn http_announce_sends_raw_bytes_and_decodes() {
        let peers = [http::PeerOut { addr: "127.0.0.1:7000".parse().unwrap(), peer_id: [0; 20] }];
        let (url, h) = fake_http(200, http::encode_announce(900, 30, 1, 2, &peers, true, false));
        let r = announce(&url, &req(), Duration::from_secs(10)).unwrap();
        let head = h.join().unwrap();
        let line = head.lines().next().unwrap();
        let query = line.split(' ').nth(1).unwrap().split_once('?').unwrap().1;
        let p = http::parse_announce(query.as_bytes()).unwrap();
        assert_eq!(p.info_hash, [0xab; 20], "{line}");
        assert_eq!(p.peer_id, req().peer_id);
        assert_eq!(p.event, Event::Started);
        assert_eq!(r.peers, vec![peers[0].addr]);
        assert_eq!(r.interval, Duration::from_secs(900));
    }

    #[test]
    fn http_failure_and_status() {
        let (url, h) = fake_http(200, http::encode_failure("unregistered torrent"));
        let e = announce(&url, &req(), Duration::from_secs(10)).unwrap_err();
        h.join().unwrap();
        assert_eq!(e, Error::Failure { url: url.clone(), reason: "unregistered torrent".into() });
        assert!(e.to_string().contains(&url));
        let (url, h) = fake_http(404, b"nope".to_vec());
        let e = announce(&url, &req(), Duration::from_secs(10)).unwrap_err();
        h.join().unwrap();
        assert_eq!(e, Error::Status { url, code: 404 });
        let (url, h) = fake_http(200, b"<html>".to_vec());
        assert!(matches!(announce(&url, &req(), Duration::from_secs(10)), Err(Error::Malformed { .. })));
        h.join().unwrap();
        assert!(matches!(announce("https://x/announce", &req(), Duration::from_secs(1)), Err(Error::BadUrl { .. })));
        assert!(matches!(announce("ftp://x/announce", &req(), Duration::from_secs(1)), Err(Error::BadUrl { .. })));
    }

    #[test]
    fn udp_times_out_within_bound() {
        // A bound socket that never answers.
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("udp://{}/announce", s.local_addr().unwrap());
        let t = Instant::now();
        let e = announce(&url, &req(), Duration::from_millis(2500)).unwrap_err();
        assert_eq!(e, Error::Timeout { url });
        assert!(t.elapsed() < Duration::from_secs(4));
        assert!(s.recv(&mut [0u8; 64]).is_ok(), "a connect request was sent");
    }

    #[test]
    fn udp_announce_against_fake_tracker() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let url = format!("udp://{}/announce/tok", s.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            // Drop the first connect to exercise retransmission.
            let _ = s.recv_from(&mut buf).unwrap();
            let mut seen = Vec::new();
            for _ in 0..2 {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                let r = udp::parse_request(&buf[..n]).unwrap();
                let resp = match &r {
                    udp::Request::Connect { transaction_id } => udp::Response::Connect { transaction_id: *transaction_id, connection_id: 77 },
                    udp::Request::Announce(a) => {
                        assert_eq!(a.connection_id, 77);
                        udp::Response::Announce {
                            transaction_id: a.transaction_id,
                            interval: 60,
                            leechers: 1,
                            seeders: 2,
                            peers: vec!["127.0.0.1:9".parse().unwrap()],
                        }
                    }
                    other => panic!("{other:?}"),
                };
                s.send_to(&udp::encode_response(&resp, false), from).unwrap();
                seen.push(r);
            }
            seen
        });
        let r = announce(&url, &req(), Duration::from_secs(20)).unwrap();
        let seen = h.join().unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!((r.complete, r.incomplete), (Some(2), Some(1)));
        let udp::Request::Announce(a) = &seen[1] else { panic!() };
        assert_eq!(a.url_data, b"/announce/tok");
        assert_eq!(a.info_hash, [0xab; 20]);
    }
}
