//! btrack's tracker logic: HTTP announce/scrape answers (bencoded bodies) and the BEP 15
//! UDP loop, over the sharded [`Store`].
//!
//! Invariants:
//! - every request gets a bencoded `failure reason` (HTTP) or an error packet (UDP, when the
//!   packet carries a transaction id) or is dropped; nothing a client sends can panic a
//!   worker or grow memory beyond the store's caps;
//! - UDP connection ids are the first 8 bytes of SHA-1(server secret ‖ client IP ‖
//!   minute): they cannot be forged without the secret and expire after one to two minutes;
//!   the server keeps no per-connection state;
//! - in closed mode only registered torrents are tracked (`unregistered torrent`); with a
//!   token, announces must come to `/announce/<token>` (UDP: BEP 41 URL data); tokens are
//!   compared as SHA-1 digests in constant time, so neither content nor length leaks;
//! - a peer's address is the announce's source IP; the `ip=` parameter (UDP: the IP field)
//!   is honoured only with `accept_ip_param` (a trusted network, or a proxy in front);
//! - HTTP announces are limited to `http_rate_limit` per second from one source IP (UDP
//!   packets to `udp_rate_limit`); beyond that the answer is a `failure reason`.

use super::client::{Event, ScrapeStats};
use super::http::{self, PeerOut};
use super::store::{self, PeerStore, Refusal, Sites, Store};
use super::udp;
use crate::hashing::sha1;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the tracker behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Track any info-hash, not only registered ones.
    pub open: bool,
    /// Announces must come to `/announce/<token>`.
    pub token: Option<String>,
    /// Seconds between announces that clients are told to keep.
    pub interval: u32,
    pub min_interval: u32,
    /// Peers returned when the client does not say.
    pub default_numwant: u32,
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
    /// Peers stored over all torrents.
    pub max_peers_total: usize,
    /// UDP packets accepted per second from one address (0: no limit).
    pub udp_rate_limit: u32,
    /// HTTP announces accepted per second from one address (0: no limit).
    pub http_rate_limit: u32,
    /// Take the peer's address from `ip=` (UDP: the IP field) instead of the source.
    pub accept_ip_param: bool,
    /// Site-aware peer lists (`None`: every peer is alike).
    pub sites: Option<Sites>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            open: false,
            token: None,
            interval: 300,
            min_interval: 30,
            default_numwant: 50,
            max_torrents: 100_000,
            max_peers_per_torrent: 10_000,
            max_peers_total: 1_000_000,
            udp_rate_limit: 0,
            http_rate_limit: 0,
            accept_ip_param: false,
            sites: None,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    /// Indexed by [proto: 0 http, 1 udp][event: none, started, completed, stopped].
    pub announces: [[AtomicU64; 4]; 2],
    pub scrapes: [AtomicU64; 2],
    pub udp_connects: AtomicU64,
    pub unregistered: [AtomicU64; 2],
    pub bad_token: [AtomicU64; 2],
    pub bad_requests: [AtomicU64; 2],
    pub udp_rate_limited: AtomicU64,
    pub http_rate_limited: AtomicU64,
    pub peer_id_taken: [AtomicU64; 2],
    pub udp_bad_connection_id: AtomicU64,
    pub http_requests: AtomicU64,
    pub http_connections_refused: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub uploads_ok: AtomicU64,
    pub uploads_failed: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn event_index(e: Event) -> usize {
    match e {
        Event::None => 0,
        Event::Started => 1,
        Event::Completed => 2,
        Event::Stopped => 3,
    }
}

pub struct Tracker {
    pub cfg: Config,
    /// The in-memory store, or a shared one (Redis) for several btracks.
    pub store: Box<dyn PeerStore>,
    pub metrics: Metrics,
    secret: [u8; 20],
    rate: Vec<AtomicU64>,
    http_rate: Vec<AtomicU64>,
}

const RATE_SLOTS: usize = 4096;

/// An IPv4-mapped IPv6 address as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Whether a secret given by a client equals ours: compares the SHA-1 digests of both in
/// constant time, so the time taken says nothing about the secret's content or length.
pub fn secret_eq(given: &[u8], ours: &[u8]) -> bool {
    let (a, b) = (sha1(given), sha1(ours));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Per-address counters in one-second windows, in a fixed table of hashed slots (two
/// addresses may share a slot: then they share the limit, never more memory).
fn rate_ok(slots: &[AtomicU64], ip: IpAddr, limit: u32) -> bool {
    if limit == 0 {
        return true;
    }
    let h = match ip {
        IpAddr::V4(v4) => u32::from(v4) as u64,
        IpAddr::V6(v6) => (u128::from(v6) ^ (u128::from(v6) >> 64)) as u64,
    };
    let slot = &slots[(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize % slots.len()];
    let now = (unix_now() & 0xffff_ffff) << 32;
    let cur = slot.load(Ordering::Relaxed);
    if cur & !0xffff_ffff != now {
        slot.store(now | 1, Ordering::Relaxed);
        return true;
    }
    let n = slot.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff;
    n < limit as u64
}

impl Tracker {
    /// A tracker over the in-memory store.
    pub fn new(cfg: Config) -> Tracker {
        let ttl = Duration::from_secs(peer_ttl(cfg.interval));
        let store = Store::new(cfg.open, cfg.max_torrents, cfg.max_peers_per_torrent, ttl)
            .with_max_peers_total(cfg.max_peers_total)
            .with_sites(cfg.sites.clone());
        Tracker::with_store(cfg, Box::new(store))
    }

    /// A tracker over `store` (built with the same caps as `cfg`).
    pub fn with_store(cfg: Config, store: Box<dyn PeerStore>) -> Tracker {
        let mut seed = Vec::new();
        for _ in 0..8 {
            seed.extend_from_slice(&super::client::random_u32().to_le_bytes());
        }
        Tracker {
            store,
            cfg,
            metrics: Metrics::default(),
            secret: sha1(&seed),
            rate: (0..RATE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            http_rate: (0..RATE_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Checks the token part of an announce/scrape path (`None`: no token in the path).
    pub fn token_ok(&self, given: Option<&[u8]>) -> bool {
        match (&self.cfg.token, given) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(_), None) => false,
            (Some(t), Some(g)) => secret_eq(g, t.as_bytes()),
        }
    }

    fn store_announce(&self, a: &store::Announce, proto: usize) -> Result<store::AnnounceOutcome, String> {
        self.store.announce(a).map_err(|r| self.refused(r, proto))
    }

    /// Counts a refused announce; answers why, for the client.
    fn refused(&self, r: Refusal, proto: usize) -> String {
        match r {
            Refusal::Unregistered => inc(&self.metrics.unregistered[proto]),
            Refusal::PeerIdTaken => inc(&self.metrics.peer_id_taken[proto]),
            Refusal::TooManyTorrents | Refusal::StoreUnavailable => {}
        }
        r.to_string()
    }

    /// Answers `GET /announce[/<token>]?query` from `remote`: a bencoded body.
    pub fn http_announce(&self, token: Option<&[u8]>, query: &[u8], remote: IpAddr) -> Vec<u8> {
        if !self.token_ok(token) {
            inc(&self.metrics.bad_token[0]);
            return http::encode_failure(if token.is_none() { "this tracker needs a token: announce to /announce/<token>" } else { "invalid token" });
        }
        let remote = canonical_ip(remote);
        if !rate_ok(&self.http_rate, remote, self.cfg.http_rate_limit) {
            inc(&self.metrics.http_rate_limited);
            return http::encode_failure(&format!("rate limited: more than {} announces per second from {remote}; retry later", self.cfg.http_rate_limit));
        }
        let q = match http::parse_announce(query) {
            Ok(q) => q,
            Err(e) => {
                inc(&self.metrics.bad_requests[0]);
                return http::encode_failure(&e.to_string());
            }
        };
        inc(&self.metrics.announces[0][event_index(q.event)]);
        let ip = match q.ip {
            Some(ip) if self.cfg.accept_ip_param => canonical_ip(ip),
            _ => remote,
        };
        let a = store::Announce {
            info_hash: q.info_hash,
            peer_id: q.peer_id,
            addr: SocketAddr::new(ip, q.port),
            source: remote,
            uploaded: q.uploaded,
            downloaded: q.downloaded,
            left: q.left,
            event: q.event,
            numwant: q.numwant.unwrap_or(self.cfg.default_numwant),
            key: q.key,
            peer_ids: !q.compact && !q.no_peer_id,
        };
        match self.store_announce(&a, 0) {
            Ok(o) => {
                let peers: Vec<PeerOut> = o.peers.iter().map(|(addr, id)| PeerOut { addr: *addr, peer_id: *id }).collect();
                http::encode_announce(self.cfg.interval, self.cfg.min_interval, o.seeders, o.leechers, &peers, q.compact, q.no_peer_id)
            }
            Err(reason) => http::encode_failure(&reason),
        }
    }

    /// Answers `GET /scrape[/<token>]?info_hash=…`.
    pub fn http_scrape(&self, token: Option<&[u8]>, query: &[u8]) -> Vec<u8> {
        if !self.token_ok(token) {
            inc(&self.metrics.bad_token[0]);
            return http::encode_failure("invalid token");
        }
        let mut hashes = match http::parse_scrape(query) {
            Ok(h) => h,
            Err(e) => {
                inc(&self.metrics.bad_requests[0]);
                return http::encode_failure(&e.to_string());
            }
        };
        if hashes.is_empty() {
            inc(&self.metrics.bad_requests[0]);
            return http::encode_failure("scrape needs at least one info_hash (full scrapes are not served)");
        }
        inc(&self.metrics.scrapes[0]);
        hashes.sort();
        hashes.dedup();
        let files: Vec<([u8; 20], ScrapeStats)> = hashes.iter().filter_map(|h| self.store.scrape(h).map(|s| (*h, s))).collect();
        http::encode_scrape(&files)
    }

    /// The connection id for `addr`'s IP in minute `bucket`. The port is left out on
    /// purpose: libtorrent shares one connection id among all sessions (ports) of a process,
    /// as opentracker allows.
    fn connection_id(&self, addr: &SocketAddr, bucket: u64) -> u64 {
        let ip = match canonical_ip(addr.ip()) {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        // A client sends many packets a minute: each thread remembers the last id it
        // computed (keyed by the whole secret, so another tracker in the process never
        // reuses it), one per parity of the minute: an id from the previous minute is
        // checked against this minute's first, and with one place the two would evict each
        // other (two SHA-1s per announce for a minute after each minute starts).
        type Last = Option<([u8; 20], [u8; 16], u64, u64)>;
        thread_local!(static LAST: [std::cell::Cell<Last>; 2] = const { [std::cell::Cell::new(None), std::cell::Cell::new(None)] });
        let place = (bucket & 1) as usize;
        if let Some((secret, lip, lbucket, id)) = LAST.with(|l| l[place].get()) {
            if secret == self.secret && lip == ip && lbucket == bucket {
                return id;
            }
        }
        let mut m = [0u8; 44];
        m[..20].copy_from_slice(&self.secret);
        let n = match canonical_ip(addr.ip()) {
            IpAddr::V4(v4) => {
                m[20..24].copy_from_slice(&v4.octets());
                24
            }
            IpAddr::V6(v6) => {
                m[20..36].copy_from_slice(&v6.octets());
                36
            }
        };
        m[n..n + 8].copy_from_slice(&bucket.to_be_bytes());
        let h = sha1(&m[..n + 8]);
        let id = u64::from_be_bytes(h[..8].try_into().unwrap());
        LAST.with(|l| l[place].set(Some((self.secret, ip, bucket, id))));
        id
    }

    fn connection_ok(&self, addr: &SocketAddr, id: u64) -> bool {
        let bucket = unix_now() / 60;
        id == self.connection_id(addr, bucket) || id == self.connection_id(addr, bucket.wrapping_sub(1))
    }


    /// Handles one UDP datagram; answers the packet to send back, if any.
    pub fn udp_packet(&self, pkt: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.udp_packet_into(pkt, from, &mut out).then_some(out)
    }

    /// [`Tracker::udp_packet`] into `out` (a buffer the caller reuses): true when `out`
    /// holds an answer to send back, false when the packet is dropped.
    pub fn udp_packet_into(&self, pkt: &[u8], from: SocketAddr, out: &mut Vec<u8>) -> bool {
        let v6 = canonical_ip(from.ip()).is_ipv6();
        if !rate_ok(&self.rate, from.ip(), self.cfg.udp_rate_limit) {
            inc(&self.metrics.udp_rate_limited);
            return false;
        }
        let mut err = |tid: u32, message: &str| {
            udp::encode_response_into(&udp::Response::Error { transaction_id: tid, message: message.into() }, v6, out);
            true
        };
        let req = match udp::parse_request(pkt) {
            Ok(r) => r,
            Err(e) => {
                inc(&self.metrics.bad_requests[1]);
                return match udp::transaction_id(pkt) {
                    Some(tid) => err(tid, &e.to_string()),
                    None => false,
                };
            }
        };
        match req {
            udp::Request::Connect { transaction_id } => {
                inc(&self.metrics.udp_connects);
                let connection_id = self.connection_id(&from, unix_now() / 60);
                udp::encode_response_into(&udp::Response::Connect { transaction_id, connection_id }, v6, out);
                true
            }
            udp::Request::Announce(a) => {
                if !self.connection_ok(&from, a.connection_id) {
                    inc(&self.metrics.udp_bad_connection_id);
                    return err(a.transaction_id, "invalid or expired connection id");
                }
                if !self.token_ok(udp_token(&a.url_data)) {
                    inc(&self.metrics.bad_token[1]);
                    return err(a.transaction_id, "invalid token");
                }
                if a.port == 0 {
                    inc(&self.metrics.bad_requests[1]);
                    return err(a.transaction_id, "invalid port");
                }
                inc(&self.metrics.announces[1][event_index(a.event)]);
                let source = canonical_ip(from.ip());
                let ip = if a.ip != 0 && !v6 && self.cfg.accept_ip_param { IpAddr::V4(a.ip.into()) } else { source };
                let numwant = if a.num_want < 0 { self.cfg.default_numwant } else { (a.num_want as u32).min(http::MAX_NUMWANT) };
                let sa = store::Announce {
                    info_hash: a.info_hash,
                    peer_id: a.peer_id,
                    addr: SocketAddr::new(ip, a.port),
                    source,
                    uploaded: a.uploaded,
                    downloaded: a.downloaded,
                    left: a.left,
                    event: a.event,
                    numwant,
                    key: Some(a.key),
                    peer_ids: false,
                };
                if !v6 {
                    // The answer's peers are written straight from the store (no list of
                    // addresses in between); the counts go in once known.
                    udp::encode_announce_response_into(a.transaction_id, self.cfg.interval, 0, 0, std::iter::empty(), false, out);
                    return match self.store.announce_compact4(&sa, out) {
                        Ok((seeders, leechers)) => {
                            out[12..16].copy_from_slice(&leechers.to_be_bytes());
                            out[16..20].copy_from_slice(&seeders.to_be_bytes());
                            true
                        }
                        Err(r) => {
                            let message = self.refused(r, 1);
                            udp::encode_response_into(&udp::Response::Error { transaction_id: a.transaction_id, message }, v6, out);
                            true
                        }
                    };
                }
                match self.store_announce(&sa, 1) {
                    Ok(o) => {
                        let peers = o.peers.iter().map(|(addr, _)| *addr);
                        udp::encode_announce_response_into(a.transaction_id, self.cfg.interval, o.leechers, o.seeders, peers, v6, out);
                        true
                    }
                    Err(reason) => err(a.transaction_id, &reason),
                }
            }
            udp::Request::Scrape { connection_id, transaction_id, info_hashes } => {
                if !self.connection_ok(&from, connection_id) {
                    inc(&self.metrics.udp_bad_connection_id);
                    return err(transaction_id, "invalid or expired connection id");
                }
                inc(&self.metrics.scrapes[1]);
                let stats = info_hashes.iter().map(|h| self.store.scrape(h).unwrap_or_default()).collect();
                udp::encode_response_into(&udp::Response::Scrape { transaction_id, stats }, v6, out);
                true
            }
        }
    }

    /// Serves UDP on `sock` until `stop` is set (checked every 500 ms), up to
    /// [`UDP_BATCH`] datagrams per system call.
    pub fn serve_udp(&self, sock: &UdpSocket, stop: &AtomicBool) {
        self.serve_udp_batched(sock, stop, UDP_BATCH)
    }

    /// Serves UDP on `sock` until `stop` is set (checked every 500 ms): takes up to `batch`
    /// queued datagrams with one `recvmmsg`, answers each as [`Tracker::udp_packet`] does,
    /// and sends the answers with one `sendmmsg`. Each datagram is judged on its own: a
    /// malformed, refused or rate-limited one gets its error packet or nothing, and the
    /// others in its batch their answers. A thread blocked on a slow store (Redis) holds its
    /// whole batch, so such stores want a batch of 1 and more threads.
    pub fn serve_udp_batched(&self, sock: &UdpSocket, stop: &AtomicBool, batch: usize) {
        let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
        let mut io = batch_io::Batch::new(batch.clamp(1, 1024));
        while !stop.load(Ordering::Relaxed) {
            let n = match io.recv(sock) {
                Ok(n) => n,
                Err(_) => continue,
            };
            self.answer_batch(&mut io, n, sock);
        }
    }

    /// Answers the `n` datagrams `io` took from `sock` (each judged on its own) and sends
    /// the answers back through `sock`.
    fn answer_batch(&self, io: &mut batch_io::Batch, n: usize, sock: &UdpSocket) {
        for i in 0..n {
            let (pkt, from, truncated, reply) = io.slot(i);
            let answer = match (truncated, from) {
                // Truncated: larger than any valid request.
                (true, _) | (_, None) => {
                    inc(&self.metrics.bad_requests[1]);
                    false
                }
                (false, Some(from)) => self.udp_packet_into(pkt, from, reply),
            };
            io.answer(i, answer);
        }
        io.send(sock);
    }

    /// Serves UDP on `socks[own]` and, when that socket has nothing queued, on the others
    /// (one thread per socket of one `SO_REUSEPORT` group, [`bind_udp`]), until `stop` is set
    /// (checked every 500 ms). The kernel spreads clients over the sockets by address and
    /// port, which can leave one socket with most of the load (a few busy clients, or an
    /// unlucky hash): a thread whose own queue is empty takes a batch from another socket
    /// before it sleeps, and sleeps until any socket has a datagram. Batches are handled as
    /// by [`Tracker::serve_udp_batched`]; answers leave by the socket their request came in
    /// on (all have the same address).
    pub fn serve_udp_group(&self, socks: &[UdpSocket], own: usize, stop: &AtomicBool, batch: usize) {
        let mut io = batch_io::Batch::new(batch.clamp(1, 1024));
        let mut pfds: Vec<libc::pollfd> = socks.iter().map(|s| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(s), events: libc::POLLIN, revents: 0 }).collect();
        while !stop.load(Ordering::Relaxed) {
            // Our own socket first, then the others in turn from the next one.
            let mut got = None;
            for k in 0..socks.len() {
                let at = (own + k) % socks.len();
                if let Ok(n @ 1..) = io.recv_now(&socks[at]) {
                    got = Some((at, n));
                    break;
                }
            }
            let Some((at, n)) = got else {
                for p in pfds.iter_mut() {
                    p.revents = 0;
                }
                // SAFETY: `pfds` is a live array of `pfds.len()` pollfds on sockets we own.
                unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 500) };
                continue;
            };
            self.answer_batch(&mut io, n, &socks[at]);
        }
    }

    /// Expires silent peers every half TTL (at most every 30 s) until `stop` is set.
    pub fn sweeper(self: Arc<Self>, stop: Arc<AtomicBool>) {
        let every = (peer_ttl(self.cfg.interval) * 1000 / 2).clamp(500, 30_000);
        let mut waited = 0;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            waited += 250;
            if waited >= every {
                waited = 0;
                self.store.sweep();
            }
        }
    }
}

/// Datagrams taken per `recvmmsg` by [`Tracker::serve_udp`].
pub const UDP_BATCH: usize = 32;

/// Binds `n` UDP sockets to `addr`, all with `SO_REUSEPORT`, so that `n` threads each serve
/// their own receive queue (the kernel spreads clients over them by address and port).
/// Only sockets of the same user can join such a group; a port held without
/// `SO_REUSEPORT` by anyone is an error, as with a plain bind.
pub fn bind_udp(addr: SocketAddr, n: usize) -> std::io::Result<Vec<UdpSocket>> {
    let first = batch_io::bind_reuseport(addr)?;
    // Port 0: the others join the port the first one got.
    let addr = first.local_addr()?;
    let mut socks = vec![first];
    for _ in 1..n.max(1) {
        socks.push(batch_io::bind_reuseport(addr)?);
    }
    Ok(socks)
}

/// Batched datagram I/O over `recvmmsg` / `sendmmsg` (Linux), and `SO_REUSEPORT` binds.
mod batch_io {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// Receive buffer per datagram: a datagram that fills it is larger than any valid
    /// request (a scrape of 74 hashes is 1 496 bytes) and is refused as truncated.
    pub const DATAGRAM: usize = 2048;

    /// Buffers for `n` datagrams in and their answers out. The headers point into the
    /// buffers, which are allocated once and never move (only the `Vec`s holding them do).
    pub struct Batch {
        bufs: Vec<[u8; DATAGRAM]>,
        names: Vec<libc::sockaddr_storage>,
        riov: Vec<libc::iovec>,
        rhdrs: Vec<libc::mmsghdr>,
        replies: Vec<Vec<u8>>,
        /// Slots with an answer to send, in arrival order.
        answered: Vec<usize>,
        siov: Vec<libc::iovec>,
        shdrs: Vec<libc::mmsghdr>,
    }

    impl Batch {
        pub fn new(n: usize) -> Batch {
            let mut b = Batch {
                bufs: vec![[0u8; DATAGRAM]; n],
                names: vec![unsafe { zeroed() }; n],
                riov: Vec::with_capacity(n),
                rhdrs: Vec::with_capacity(n),
                replies: (0..n).map(|_| Vec::with_capacity(1500)).collect(),
                answered: Vec::with_capacity(n),
                siov: Vec::with_capacity(n),
                shdrs: Vec::with_capacity(n),
            };
            for buf in b.bufs.iter_mut() {
                b.riov.push(libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: DATAGRAM });
            }
            for i in 0..n {
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_iov = &mut b.riov[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
                b.rhdrs.push(h);
            }
            b
        }

        /// Waits for at least one datagram (up to the socket's read timeout) and takes every
        /// one queued, up to the batch size; answers how many.
        pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            self.recv_flags(sock, libc::MSG_WAITFORONE)
        }

        /// Takes every datagram queued on `sock`, up to the batch size, without waiting.
        pub fn recv_now(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            self.recv_flags(sock, libc::MSG_DONTWAIT)
        }

        fn recv_flags(&mut self, sock: &UdpSocket, flags: libc::c_int) -> io::Result<usize> {
            self.answered.clear();
            for h in self.rhdrs.iter_mut() {
                h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_hdr.msg_flags = 0;
                h.msg_len = 0;
            }
            let n = unsafe { libc::recvmmsg(sock.as_raw_fd(), self.rhdrs.as_mut_ptr(), self.rhdrs.len() as libc::c_uint, flags, std::ptr::null_mut()) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(n as usize)
        }

        /// Datagram `i` of the last [`Batch::recv`]: its bytes, its source (`None`: not an
        /// IP address), whether it was truncated, and the buffer for its answer.
        pub fn slot(&mut self, i: usize) -> (&[u8], Option<SocketAddr>, bool, &mut Vec<u8>) {
            let h = &self.rhdrs[i];
            let len = (h.msg_len as usize).min(DATAGRAM);
            let truncated = len == DATAGRAM || h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let from = sockaddr_to_std(&self.names[i], h.msg_hdr.msg_namelen);
            (&self.bufs[i][..len], from, truncated, &mut self.replies[i])
        }

        /// Whether slot `i`'s answer buffer is to be sent back to its source.
        pub fn answer(&mut self, i: usize, send: bool) {
            if send {
                self.answered.push(i);
            }
        }

        /// Sends every answer with as few `sendmmsg` calls as the kernel allows; a datagram
        /// the kernel refuses (e.g. an unreachable source) is skipped, as a lost datagram is.
        pub fn send(&mut self, sock: &UdpSocket) {
            self.siov.clear();
            self.shdrs.clear();
            for &i in &self.answered {
                self.siov.push(libc::iovec { iov_base: self.replies[i].as_mut_ptr().cast(), iov_len: self.replies[i].len() });
            }
            for (k, &i) in self.answered.iter().enumerate() {
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_iov = &mut self.siov[k];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = self.rhdrs[i].msg_hdr.msg_namelen;
                self.shdrs.push(h);
            }
            let mut off = 0;
            while off < self.shdrs.len() {
                let rest = &mut self.shdrs[off..];
                let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
                if n > 0 {
                    off += n as usize;
                } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    off += 1;
                }
            }
            self.answered.clear();
        }
    }

    fn sockaddr_to_std(ss: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
        match ss.ss_family as libc::c_int {
            libc::AF_INET if len as usize >= size_of::<libc::sockaddr_in>() => {
                let a: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
                Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()), u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len as usize >= size_of::<libc::sockaddr_in6>() => {
                let a: &libc::sockaddr_in6 = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
                Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(a.sin6_addr.s6_addr), u16::from_be(a.sin6_port), a.sin6_flowinfo, a.sin6_scope_id)))
            }
            _ => None,
        }
    }

    /// A UDP socket bound to `addr` with `SO_REUSEPORT` (and, as `UdpSocket::bind`, the
    /// system's default for `IPV6_V6ONLY`).
    pub fn bind_reuseport(addr: SocketAddr) -> io::Result<UdpSocket> {
        let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
        let fd = unsafe { libc::socket(domain, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        if unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEPORT, (&one as *const libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                let sin: &mut libc::sockaddr_in = unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                let sin6: &mut libc::sockaddr_in6 = unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        if unsafe { libc::bind(fd.as_raw_fd(), (&ss as *const libc::sockaddr_storage).cast(), len as libc::socklen_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UdpSocket::from(fd))
    }
}

/// Seconds after its last announce that a peer is dropped: two intervals plus one more
/// interval of grace, at most a minute of grace.
pub fn peer_ttl(interval: u32) -> u64 {
    interval as u64 * 2 + (interval as u64).min(60)
}

/// The token in BEP 41 URL data `/announce/<token>[?…]`; `None` for `/announce` or nothing.
fn udp_token(url_data: &[u8]) -> Option<&[u8]> {
    let path = match url_data.iter().position(|&b| b == b'?') {
        Some(i) => &url_data[..i],
        None => url_data,
    };
    let rest = path.strip_prefix(b"/announce")?;
    match rest {
        [] | [b'/'] => None,
        [b'/', t @ ..] => Some(t),
        _ => Some(rest), // e.g. "/announcefoo": a wrong token, refused when checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(ih: [u8; 20]) -> String {
        http::announce_query(&super::super::client::AnnounceRequest {
            info_hash: ih,
            peer_id: [3; 20],
            port: 7000,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: Event::Started,
            numwant: None,
            key: 5,
        })
    }

    fn failure(body: &[u8]) -> Option<String> {
        match http::decode_announce_response(body) {
            Err(http::ResponseError::Failure(r)) => Some(r),
            _ => None,
        }
    }

    #[test]
    fn closed_token_and_open() {
        let t = Tracker::new(Config { token: Some("s3".into()), ..Config::default() });
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(failure(&t.http_announce(Some(b"s3"), q([1; 20]).as_bytes(), ip)).as_deref(), Some("unregistered torrent"));
        t.store.register([1; 20]);
        assert_eq!(failure(&t.http_announce(Some(b"s3"), q([1; 20]).as_bytes(), ip)), None);
        assert_eq!(failure(&t.http_announce(Some(b"s4"), q([1; 20]).as_bytes(), ip)).as_deref(), Some("invalid token"));
        assert!(failure(&t.http_announce(None, q([1; 20]).as_bytes(), ip)).unwrap().contains("token"));
        let open = Tracker::new(Config { open: true, ..Config::default() });
        assert_eq!(failure(&open.http_announce(None, q([9; 20]).as_bytes(), ip)), None);
        assert_eq!(failure(&open.http_announce(Some(b"x"), q([9; 20]).as_bytes(), ip)).as_deref(), Some("invalid token"));
    }

    #[test]
    fn udp_connection_ids_are_bound_to_address_and_time() {
        let t = Tracker::new(Config { open: true, ..Config::default() });
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:5000".parse().unwrap();
        let same_ip: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let bucket = unix_now() / 60;
        let id = t.connection_id(&a, bucket);
        assert!(t.connection_ok(&a, id));
        assert!(!t.connection_ok(&b, id));
        assert!(t.connection_ok(&same_ip, id), "one id per client IP, whatever the port");
        assert!(!t.connection_ok(&a, t.connection_id(&a, bucket - 2)));
        let other = Tracker::new(Config::default());
        assert_ne!(other.connection_id(&a, bucket), id, "ids depend on the secret");
        // The per-thread cache answers what computing afresh (another thread) answers, in
        // any order of minutes, addresses and trackers.
        let order = [(a, 0), (a, 1), (a, 0), (b, 1), (a, 1), (a, 2), (b, 0), (a, 3), (a, 2)];
        let tr = &t;
        let fresh: Vec<u64> = std::thread::scope(|s| {
            order.iter().map(|&(x, back)| s.spawn(move || tr.connection_id(&x, bucket - back)).join().unwrap()).collect()
        });
        for ((x, back), want) in order.iter().zip(fresh) {
            assert_eq!(t.connection_id(x, bucket - back), want, "{x} {back}");
            assert_ne!(other.connection_id(x, bucket - back), want);
        }
    }

    #[test]
    fn secrets_compare_by_digest() {
        assert!(secret_eq(b"s3cret", b"s3cret"));
        assert!(!secret_eq(b"s3cre", b"s3cret"));
        assert!(!secret_eq(b"", b"s3cret"));
        assert!(!secret_eq(b"s3cret\0", b"s3cret"));
    }

    #[test]
    fn ip_param_only_behind_the_flag() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let query = format!("{}&ip=10.66.66.66", q([1; 20]));
        let t = Tracker::new(Config { open: true, ..Config::default() });
        assert_eq!(failure(&t.http_announce(None, query.as_bytes(), ip)), None);
        assert_eq!(t.store.view(&[1; 20]).unwrap().peers[0].addr, "127.0.0.1:7000".parse().unwrap());
        let trusting = Tracker::new(Config { open: true, accept_ip_param: true, ..Config::default() });
        assert_eq!(failure(&trusting.http_announce(None, query.as_bytes(), ip)), None);
        assert_eq!(trusting.store.view(&[1; 20]).unwrap().peers[0].addr, "10.66.66.66:7000".parse().unwrap());
    }

    #[test]
    fn http_announces_are_rate_limited_per_source() {
        let t = Tracker::new(Config { open: true, http_rate_limit: 5, ..Config::default() });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        // 12 in a row: at most 10 can pass even across a second boundary.
        let refused = (0..12).filter_map(|_| failure(&t.http_announce(None, q([1; 20]).as_bytes(), a))).collect::<Vec<_>>();
        assert!(refused.len() >= 2, "{refused:?}");
        assert!(refused[0].starts_with("rate limited"), "{refused:?}");
        assert_eq!(failure(&t.http_announce(None, q([2; 20]).as_bytes(), b)), None, "another source is not limited");
        assert!(t.metrics.http_rate_limited.load(Ordering::Relaxed) >= 2);
    }

    /// Sends `pkts` from `client` to a tracker socket that is not served yet, then serves it:
    /// the datagrams are all queued, so the first `recvmmsg` takes them as one batch.
    fn serve_queued(t: &Arc<Tracker>, client: &UdpSocket, pkts: &[Vec<u8>], answers: usize) -> Vec<udp::Response> {
        let sock = bind_udp("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        client.connect(sock.local_addr().unwrap()).unwrap();
        for p in pkts {
            client.send(p).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || t.serve_udp(&sock, &stop))
        };
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < answers {
            let n = client.recv(&mut buf).expect("an answer");
            got.push(udp::parse_response(&buf[..n], false).unwrap());
        }
        // Nothing more comes (the garbage is not answered).
        client.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        assert!(client.recv(&mut buf).is_err(), "an answer too many: {:?}", &buf[..20]);
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        got
    }

    fn udp_ann(cid: u64, tid: u32, ih: [u8; 20], peer: u8) -> Vec<u8> {
        udp::encode_request(&udp::Request::Announce(udp::Announce {
            connection_id: cid,
            transaction_id: tid,
            info_hash: ih,
            peer_id: [peer; 20],
            downloaded: 0,
            left: 5,
            uploaded: 0,
            event: Event::Started,
            ip: 0,
            key: peer as u32,
            num_want: -1,
            port: 7000 + peer as u16,
            url_data: Vec::new(),
        }))
    }

    #[test]
    fn a_batch_answers_every_datagram_on_its_own() {
        let t = Arc::new(Tracker::new(Config { open: true, ..Config::default() }));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let cid = t.connection_id(&client.local_addr().unwrap(), unix_now() / 60);
        let ih = [7; 20];
        let pkts = vec![
            udp_ann(cid, 1, ih, 1),
            b"hello".to_vec(),                         // no transaction id: no answer
            udp_ann(cid, 3, ih, 3)[..60].to_vec(),     // too short
            udp_ann(cid ^ 1, 4, ih, 4),                // forged connection id
            vec![0xAB; 2048],                          // truncated: larger than any request
            udp_ann(cid, 5, ih, 5),
            udp::encode_request(&udp::Request::Connect { transaction_id: 6 }),
            udp::encode_request(&udp::Request::Scrape { connection_id: cid, transaction_id: 7, info_hashes: vec![ih] }),
        ];
        let got = serve_queued(&t, &client, &pkts, 6);
        let by_tid = |tid: u32| {
            got.iter()
                .find(|r| match r {
                    udp::Response::Connect { transaction_id, .. }
                    | udp::Response::Announce { transaction_id, .. }
                    | udp::Response::Scrape { transaction_id, .. }
                    | udp::Response::Error { transaction_id, .. } => *transaction_id == tid,
                })
                .unwrap_or_else(|| panic!("no answer to {tid}: {got:?}"))
                .clone()
        };
        assert!(matches!(by_tid(1), udp::Response::Announce { leechers: 1, .. }), "{got:?}");
        assert!(matches!(by_tid(3), udp::Response::Error { ref message, .. } if message.contains("too short")), "{got:?}");
        assert!(matches!(by_tid(4), udp::Response::Error { ref message, .. } if message.contains("connection id")), "{got:?}");
        match by_tid(5) {
            udp::Response::Announce { leechers: 2, peers, .. } => assert_eq!(peers, vec!["127.0.0.1:7001".parse().unwrap()]),
            o => panic!("{o:?}"),
        }
        match by_tid(6) {
            udp::Response::Connect { connection_id, .. } => assert!(t.connection_ok(&client.local_addr().unwrap(), connection_id)),
            o => panic!("{o:?}"),
        }
        assert!(matches!(by_tid(7), udp::Response::Scrape { ref stats, .. } if stats[0].incomplete == 2), "{got:?}");
        assert_eq!(t.store.peer_count(), 2, "only the good announces are stored");
        assert_eq!(t.metrics.bad_requests[1].load(Ordering::Relaxed), 3, "hello, the short one, the truncated one");
        assert_eq!(t.metrics.udp_bad_connection_id.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_batch_keeps_the_rate_limit_per_source() {
        let t = Arc::new(Tracker::new(Config { open: true, udp_rate_limit: 3, ..Config::default() }));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let pkts: Vec<Vec<u8>> = (0..10).map(|i| udp::encode_request(&udp::Request::Connect { transaction_id: i })).collect();
        // 3 a second: at most 6 even across a second boundary.
        let limited = |t: &Tracker| t.metrics.udp_rate_limited.load(Ordering::Relaxed);
        let sock = bind_udp("127.0.0.1:0".parse().unwrap(), 1).unwrap().remove(0);
        client.connect(sock.local_addr().unwrap()).unwrap();
        for p in &pkts {
            client.send(p).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (t, stop) = (t.clone(), stop.clone());
            std::thread::spawn(move || t.serve_udp(&sock, &stop))
        };
        client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut answers = 0;
        let mut buf = [0u8; 64];
        while client.recv(&mut buf).is_ok() {
            answers += 1;
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert!((3..=6).contains(&answers), "{answers}");
        assert_eq!(limited(&t), 10 - answers);
    }

    #[test]
    fn one_thread_serves_every_socket_of_its_group() {
        // Two sockets, one thread (its own socket is the first): announces from 16 source
        // ports land on both, and all must be answered.
        let t = Arc::new(Tracker::new(Config { open: true, ..Config::default() }));
        let socks = Arc::new(bind_udp("127.0.0.1:0".parse().unwrap(), 2).unwrap());
        let addr = socks[0].local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let (t, socks, stop) = (t.clone(), socks.clone(), stop.clone());
            std::thread::spawn(move || t.serve_udp_group(&socks, 0, &stop, UDP_BATCH))
        };
        let url = format!("udp://{addr}/announce");
        for peer in 1..=16u8 {
            let r = super::super::client::announce(&url, &started(10, peer), Duration::from_secs(5)).unwrap();
            assert_eq!(r.peers.len(), peer as usize - 1, "peer {peer}");
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }

    /// A leecher's first announce to torrent `[torrent; 20]` as peer `[peer; 20]`.
    fn started(torrent: u8, peer: u8) -> super::super::client::AnnounceRequest {
        super::super::client::AnnounceRequest {
            info_hash: [torrent; 20],
            peer_id: [peer; 20],
            port: 7000 + peer as u16,
            uploaded: 0,
            downloaded: 0,
            left: 1,
            event: Event::Started,
            numwant: Some(50),
            key: peer as u32,
        }
    }

    #[test]
    fn several_reuseport_sockets_serve_one_swarm() {
        let t = Arc::new(Tracker::new(Config { open: true, ..Config::default() }));
        let socks = bind_udp("127.0.0.1:0".parse().unwrap(), 4).unwrap();
        let addr = socks[0].local_addr().unwrap();
        assert!(socks.iter().all(|s| s.local_addr().unwrap() == addr), "one port for all");
        let stop = Arc::new(AtomicBool::new(false));
        let servers: Vec<_> = socks
            .into_iter()
            .map(|sock| {
                let (t, stop) = (t.clone(), stop.clone());
                std::thread::spawn(move || t.serve_udp(&sock, &stop))
            })
            .collect();
        // Each announce comes from a new source port, so the kernel spreads them over the
        // sockets; each must be answered, and from one swarm.
        let url = format!("udp://{addr}/announce");
        for peer in 1..=24u8 {
            let r = super::super::client::announce(&url, &started(9, peer), Duration::from_secs(5)).unwrap();
            assert_eq!(r.peers.len(), peer as usize - 1, "peer {peer} sees everyone before it");
        }
        assert_eq!(t.metrics.announces[1].iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>(), 24);
        stop.store(true, Ordering::Relaxed);
        for s in servers {
            s.join().unwrap();
        }
    }

    #[test]
    fn udp_tokens() {
        assert_eq!(udp_token(b""), None);
        assert_eq!(udp_token(b"/announce"), None);
        assert_eq!(udp_token(b"/announce/abc?x=1"), Some(&b"abc"[..]));
        assert_eq!(udp_token(b"/other"), None);
    }
}
