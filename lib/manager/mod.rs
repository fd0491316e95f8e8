//! btrack's manager: one HTTP front door routing the tracker (`/announce`, `/scrape`), the
//! web pages, the JSON API, uploads and `/metrics`, over the data-directory [`registry`].
//!
//! Access (see man/btrack.1, ACCESS): secrets come in headers only, as
//! `Authorization: Bearer T`, `X-Admin-Token: T` or the cookie `btrack_auth=T` (the page
//! sets it), and are compared by digest in constant time.
//! - writes (upload, register, delete) need the admin token; without one, the announce
//!   token (`--token`) when set; without either, nothing (btrack then listens on loopback
//!   only, unless started with `--open-admin`);
//! - with `--token`, anything that carries it (a .torrent download, the announce URL in the
//!   API) needs the announce token or the admin token; others see `<token>` in its place;
//! - every route but the tracker's checks `Host` (IP literals, localhost, this machine's
//!   name, `--public-url`'s host and `--allow-host` names: DNS rebinding reaches nothing),
//!   and a write whose `Origin` (or `Referer`) names another site is refused (403).
//!
//! Routes:
//! - `GET /announce[/<token>]`, `GET /scrape[/<token>]`: the HTTP tracker;
//! - `GET /`, `GET /t/<ih>`: the pages ([`pages`]);
//! - `GET /api/torrents`, `GET /api/torrents/<ih>`: JSON; `POST /api/torrents` (a .torrent
//!   body) registers; `DELETE /api/torrents/<ih>` unregisters;
//! - `PUT /api/upload?name=NAME[&piece_length=L][&web_seed=URL]...`: upload a file, answer
//!   its .torrent (with the web seeds as its BEP 19 `url-list`);
//! - `GET /torrents/<ih>.torrent`, `GET /metrics`.
//!
//! Every handler answers; errors are one-line texts (JSON `{"error": …}` on `/api/`).
//!
//! Live origin counters: the dashboard shows what peers announce. Downloading peers announce
//! at least every 30 s; a complete peer only at the tracker's interval (5 min by default),
//! which would leave the origin's uploaded bytes minutes old. So an HTTP announce from an
//! origin (nothing left, nothing downloaded: `bseed`, `btrack --seed`'s own sessions) is
//! answered with an interval of at most [`LIVE_INTERVAL`] seconds, and the origin's uploaded
//! bytes and share on the pages and in the API are that fresh while a sync runs and after
//! it. `btrack --seed` sessions announce to this btrack over HTTP for that reason (see
//! [`App::seed_source`]). Other peers get the configured interval.

pub mod httpd;
pub mod pages;
pub mod registry;
pub mod upload;

use crate::metainfo::InfoHash;
use crate::tracker::server::{canonical_ip, secret_eq, Tracker};
use httpd::{Request, Response};
use registry::{Entry, Registry};
use serde_json::json;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Announce interval, in seconds, given to this btrack's own seeding sessions.
pub const LIVE_INTERVAL: i64 = 5;

/// Whether an announce query comes from an origin: `left=0` and `downloaded=0`.
pub fn is_origin_announce(query: &str) -> bool {
    let (mut left, mut down) = (false, false);
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("left", v)) => left = v == "0",
            Some(("downloaded", v)) => down = v == "0",
            _ => {}
        }
    }
    left && down
}

/// An announce response with `interval` and `min interval` lowered to at most `secs` (a
/// failure, or anything that is not a plain dictionary, is returned as is).
pub fn with_interval(body: &[u8], secs: i64) -> Vec<u8> {
    fn own(v: &crate::bencode::Value<'_>) -> crate::bencode::Owned {
        use crate::bencode::{Owned, Value};
        match v {
            Value::Int(i) => Owned::Int(*i),
            Value::Bytes(b) => Owned::Bytes(b.to_vec()),
            Value::List(l) => Owned::List(l.iter().map(own).collect()),
            Value::Dict(d) => Owned::Dict(d.entries.iter().map(|(k, v)| (k.to_vec(), own(v))).collect()),
        }
    }
    let mut o = match crate::bencode::decode(body) {
        Ok(v) => own(&v),
        Err(_) => return body.to_vec(),
    };
    if let crate::bencode::Owned::Dict(d) = &mut o {
        if d.contains_key(b"failure reason".as_slice()) {
            return body.to_vec();
        }
        for key in [b"interval".as_slice(), b"min interval".as_slice()] {
            if let Some(crate::bencode::Owned::Int(v)) = d.get_mut(key) {
                *v = (*v).min(secs);
            }
        }
        return o.encode();
    }
    body.to_vec()
}

/// Manager settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub public_url: Option<String>,
    pub max_upload: u64,
    pub admin_token: Option<String>,
    /// The address btrack listens on (fallback host for announce URLs).
    pub listen: String,
    /// Names (lower case, no port) that requests may give in `Host` besides IP literals,
    /// `localhost`, this machine's name and `--public-url`'s host.
    pub allowed_hosts: Vec<String>,
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No or a wrong credential (401).
    Unauthorized(&'static str),
    /// A Host or Origin that is not this btrack's (403).
    Forbidden(String),
}

impl Denied {
    fn response(&self, api: bool) -> Response {
        let (status, msg) = match self {
            Denied::Unauthorized(m) => (401, m.to_string()),
            Denied::Forbidden(m) => (403, m.clone()),
        };
        if api {
            api_error(status, msg)
        } else {
            Response::text(status, msg)
        }
    }
}

/// The host part of a `Host` header or URL authority, lower case, without port or brackets.
pub fn host_name(authority: &str) -> String {
    let a = authority.trim();
    let h = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// This machine's host name (and its first label), lower case.
pub fn machine_names() -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_ascii_lowercase();
        if !h.is_empty() {
            if let Some((short, _)) = h.split_once('.') {
                v.push(short.to_string());
            }
            v.push(h);
        }
    }
    v
}

/// The secrets a request presents: `Authorization: Bearer`, `X-Admin-Token`, the
/// `btrack_auth` cookie. Never the query string (it lands in logs and histories).
fn credentials<'r>(req: &'r Request) -> Vec<&'r str> {
    let mut v = Vec::new();
    for (k, val) in &req.headers {
        if k.eq_ignore_ascii_case("authorization") {
            if let Some(t) = val.strip_prefix("Bearer ") {
                v.push(t.trim());
            }
        } else if k.eq_ignore_ascii_case("x-admin-token") {
            v.push(val.as_str());
        } else if k.eq_ignore_ascii_case("cookie") {
            v.extend(val.split(';').filter_map(|c| c.trim().strip_prefix("btrack_auth=")));
        }
    }
    v
}

pub struct App {
    pub tracker: Arc<Tracker>,
    pub registry: Registry,
    pub cfg: Config,
}

fn json_response(status: u16, v: serde_json::Value) -> Response {
    let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    body.push(b'\n');
    Response::new(status, "application/json", body)
}

fn api_error(status: u16, msg: impl Into<String>) -> Response {
    json_response(status, json!({ "error": msg.into() }))
}

/// Percent-decodes a query value (lossy UTF-8).
fn qvalue(query: &str, key: &str) -> Option<String> {
    crate::tracker::http::pairs(query.as_bytes())
        .find(|(k, _)| *k == key.as_bytes())
        .map(|(_, v)| String::from_utf8_lossy(&crate::tracker::http::percent_decode(v).unwrap_or_default()).into_owned())
}

/// Load sharing of one swarm: each peer's share of all uploaded bytes, the origin's.
pub struct Sharing {
    pub total_uploaded: u64,
    pub origin_uploaded: u64,
    /// Origin's uploaded bytes as a multiple of the torrent's size.
    pub origin_ratio: f64,
}

/// A peer is counted as an origin when it has everything and downloaded nothing.
pub fn is_origin(p: &crate::tracker::store::Peer) -> bool {
    p.left == 0 && p.downloaded == 0
}

/// What `btrack --seed` does with a torrent, for the API: `null` when it does not seed it.
pub fn seed_status_json(ih: &InfoHash) -> serde_json::Value {
    use crate::seeder::Status;
    match crate::seeder::status(ih) {
        None => serde_json::Value::Null,
        Some(Status::Verifying) => json!({ "state": "verifying" }),
        Some(Status::Seeding { port }) => json!({ "state": "seeding", "port": port }),
        Some(Status::Failed(why)) => json!({ "state": "failed", "error": why }),
    }
}

/// Load sharing over the live peers and those that left (their last counters).
pub fn sharing(peers: &[crate::tracker::store::Peer], departed: &[crate::tracker::store::Peer], total_length: u64) -> Sharing {
    let all = || peers.iter().chain(departed);
    let total_uploaded: u64 = all().map(|p| p.uploaded).sum();
    let origin_uploaded: u64 = all().filter(|p| is_origin(p)).map(|p| p.uploaded).sum();
    Sharing { total_uploaded, origin_uploaded, origin_ratio: if total_length == 0 { 0.0 } else { origin_uploaded as f64 / total_length as f64 } }
}

/// The peer id's client prefix, e.g. `-lt2080-` or `-TR3000-`, printable.
pub fn client_prefix(id: &[u8; 20]) -> String {
    let pre: &[u8] = if id[0] == b'-' && id[7] == b'-' { &id[..8] } else { &id[..8.min(id.len())] };
    pre.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '.' }).collect()
}

impl App {
    /// Registers every torrent of the registry with the tracker.
    pub fn sync_tracker(&self) {
        for e in self.registry.list() {
            self.tracker.store.register(e.info_hash.0);
        }
    }

    fn presents(req: &Request, secret: &str) -> bool {
        credentials(req).iter().fold(false, |ok, c| secret_eq(c.as_bytes(), secret.as_bytes()) | ok)
    }

    /// May this request upload, register or delete?
    pub fn write_access(&self, req: &Request) -> Result<(), Denied> {
        match (&self.cfg.admin_token, &self.tracker.cfg.token) {
            (Some(a), _) if Self::presents(req, a) => Ok(()),
            (Some(_), _) => Err(Denied::Unauthorized("admin token required (Authorization: Bearer TOKEN)")),
            (None, Some(t)) if Self::presents(req, t) => Ok(()),
            (None, Some(_)) => Err(Denied::Unauthorized("the announce token is required (Authorization: Bearer TOKEN)")),
            (None, None) => Ok(()),
        }
    }

    /// May this request see the announce token (`--token`)?
    pub fn sees_token(&self, req: &Request) -> bool {
        match &self.tracker.cfg.token {
            None => true,
            Some(t) => Self::presents(req, t) || self.cfg.admin_token.as_deref().is_some_and(|a| Self::presents(req, a)),
        }
    }

    /// Whether a `Host` names this btrack: an IP literal, localhost, this machine's name,
    /// `--public-url`'s host or an `--allow-host` name.
    pub fn host_allowed(&self, authority: &str) -> bool {
        let h = host_name(authority);
        if h.parse::<std::net::IpAddr>().is_ok() || h == "localhost" || h.ends_with(".localhost") {
            return true;
        }
        if self.cfg.allowed_hosts.contains(&h) || machine_names().contains(&h) {
            return true;
        }
        let public = self.cfg.public_url.as_deref().and_then(|u| u.strip_prefix("http://")).map(|r| host_name(r.split('/').next().unwrap_or("")));
        public.is_some_and(|p| p == h)
    }

    /// The checks every manager request passes: a known `Host`, and for writes an
    /// `Origin`/`Referer` (when the client sent one) on the same host.
    pub fn request_allowed(&self, req: &Request) -> Result<(), Denied> {
        let host = req.header("host");
        if let Some(h) = host {
            if !self.host_allowed(h) {
                return Err(Denied::Forbidden(format!(
                    "unknown Host {:?}: btrack answers to IP addresses, localhost, this machine's name and --allow-host names",
                    h.chars().take(100).collect::<String>()
                )));
            }
        }
        if req.method == "GET" || req.method == "HEAD" {
            return Ok(());
        }
        let same = |origin: &str| {
            let origin = origin.trim().to_ascii_lowercase();
            let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
            match (rest, host) {
                (Some(r), Some(h)) => r.split('/').next() == Some(h.trim().to_ascii_lowercase().as_str()),
                _ => false,
            }
        };
        let claimed = req.header("origin").or_else(|| req.header("referer"));
        match claimed {
            Some(o) if !same(o) => Err(Denied::Forbidden(format!("cross-origin request refused: {:?} is not this btrack", o.chars().take(100).collect::<String>()))),
            _ => Ok(()),
        }
    }

    /// `s` with the announce token replaced by `<token>`.
    fn redact(&self, s: &str) -> String {
        match &self.tracker.cfg.token {
            Some(t) => s.replace(t.as_str(), "<token>"),
            None => s.to_string(),
        }
    }

    /// The announce URLs a seeding session of this btrack may use: `--public-url`, or else
    /// the torrent's own URLs whose port is ours and whose host is one of this machine's
    /// addresses (rebuilt with our path and token), or else our listen address. Never a
    /// tracker someone else chose.
    pub fn own_trackers(&self, theirs: &[Vec<String>]) -> Vec<Vec<String>> {
        let path = match &self.tracker.cfg.token {
            Some(t) => format!("/announce/{t}"),
            None => "/announce".to_string(),
        };
        if let Some(p) = &self.cfg.public_url {
            let base = p.trim_end_matches('/');
            return vec![vec![format!("{}{path}", base.strip_suffix("/announce").unwrap_or(base))]];
        }
        let listen: std::net::SocketAddr = match self.cfg.listen.parse() {
            Ok(a) => a,
            Err(_) => return Vec::new(),
        };
        let mut ours: Vec<String> = Vec::new();
        for url in theirs.iter().flatten() {
            let (scheme, rest) = match url.split_once("://") {
                Some((s, r)) if s == "http" || s == "udp" => (s, r),
                _ => continue,
            };
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            let port = authority.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
            if port != Some(listen.port()) {
                continue;
            }
            let local = std::net::ToSocketAddrs::to_socket_addrs(&(host_name(authority).as_str(), 0))
                .map(|addrs| {
                    let addrs: Vec<_> = addrs.collect();
                    !addrs.is_empty() && addrs.iter().all(|a| std::net::UdpSocket::bind((a.ip(), 0)).is_ok())
                })
                .unwrap_or(false);
            let u = format!("{scheme}://{authority}{path}");
            if local && !ours.contains(&u) {
                ours.push(u);
            }
        }
        if ours.is_empty() {
            let ip = match listen.ip() {
                std::net::IpAddr::V4(v) if v.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::V6(v) if v.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            ours.push(format!("http://{}{path}", std::net::SocketAddr::new(ip, listen.port())));
        }
        ours.into_iter().map(|u| vec![u]).collect()
    }

    pub fn announce_url(&self, req: &Request) -> String {
        upload::announce_url(self.cfg.public_url.as_deref(), req.header("host"), &self.cfg.listen, self.tracker.cfg.token.as_deref())
    }

    /// What a seeding session of `btrack --seed` needs for a torrent: only content this
    /// btrack's own upload created, and only this btrack as the tracker.
    pub fn seed_source(&self, ih: &InfoHash) -> Option<(crate::metainfo::Metainfo, std::path::PathBuf)> {
        let e = self.registry.get(ih)?;
        let path = self.registry.content_of(&e)?;
        let mut meta = crate::metainfo::Metainfo::parse(&self.registry.torrent_bytes(ih).ok()?).ok()?;
        // Over HTTP, where an origin is given the live interval (module doc).
        let trackers: Vec<Vec<String>> = self
            .own_trackers(&meta.trackers())
            .into_iter()
            .map(|tier| {
                tier.into_iter()
                    .map(|u| match u.strip_prefix("udp://") {
                        Some(rest) => format!("http://{rest}"),
                        None => u,
                    })
                    .collect::<Vec<String>>()
            })
            .fold(Vec::new(), |mut acc: Vec<Vec<String>>, tier| {
                if !acc.iter().flatten().any(|u| tier.contains(u)) {
                    acc.push(tier);
                }
                acc
            });
        meta.announce = trackers.first().and_then(|t| t.first()).cloned();
        meta.announce_list = trackers;
        Some((meta, path))
    }

    /// Info-hashes whose content this btrack owns (the ones `--seed` seeds).
    pub fn seedable(&self) -> Vec<InfoHash> {
        self.registry.list().into_iter().filter(|e| e.content.is_some() && self.registry.content_of(e).is_some()).map(|e| e.info_hash).collect()
    }

    /// JSON for one torrent; `peers` adds the swarm's peers and load sharing; without
    /// `secrets` the announce token is replaced by `<token>`. Peers show only the client
    /// prefix of their peer id (the whole id would let anyone speak for them).
    pub fn torrent_json(&self, e: &Entry, peers: bool, secrets: bool) -> serde_json::Value {
        let view = self.tracker.store.view(&e.info_hash.0);
        let (seeders, leechers, completed) = view.as_ref().map(|v| (v.seeders, v.leechers, v.completed)).unwrap_or((0, 0, 0));
        let ih = e.info_hash.hex();
        let mut j = json!({
            "info_hash": ih,
            "name": e.name,
            "size": e.total_length,
            "piece_length": e.piece_length,
            "pieces": e.pieces,
            "files": e.files,
            "announce": if secrets { e.announce.clone() } else { e.announce.as_deref().map(|a| self.redact(a)) },
            "added": e.added,
            "seeders": seeders,
            "leechers": leechers,
            "completed": completed,
            "torrent_url": format!("/torrents/{ih}.torrent"),
            "page_url": format!("/t/{ih}"),
            "torrent_path": self.registry.torrent_path(&e.info_hash),
            "content_path": self.registry.content_of(e),
            "bseed_command": self.registry.bseed_command(e),
            "seeded_here": seed_status_json(&e.info_hash),
        });
        if peers {
            let v = view.unwrap_or(crate::tracker::store::SwarmView {
                seeders: 0,
                leechers: 0,
                completed: 0,
                peers: Vec::new(),
                departed: Vec::new(),
                now: 0,
            });
            let s = sharing(&v.peers, &v.departed, e.total_length);
            let to_json = |p: &crate::tracker::store::Peer| {
                    json!({
                        "address": p.addr.to_string(),
                        "client": client_prefix(&p.peer_id),
                        "client_name": crate::peer::wire::client_from_peer_id(&p.peer_id),
                        "uploaded": p.uploaded,
                        "downloaded": p.downloaded,
                        "left": p.left,
                        "seeding": p.left == 0,
                        "origin": is_origin(p),
                        "last_announce_secs_ago": v.now.saturating_sub(p.last),
                        "upload_share": if s.total_uploaded == 0 { 0.0 } else { p.uploaded as f64 / s.total_uploaded as f64 },
                    })
            };
            j["peers"] = json!(v.peers.iter().map(to_json).collect::<Vec<_>>());
            j["departed_peers"] = json!(v.departed.iter().map(to_json).collect::<Vec<_>>());
            j["total_uploaded"] = json!(s.total_uploaded);
            j["origin_uploaded"] = json!(s.origin_uploaded);
            j["origin_uploaded_ratio"] = json!(s.origin_ratio);
        }
        j
    }

    /// Routes one request.
    pub fn handle(&self, req: &mut Request) -> Response {
        self.tracker.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
        let path = req.path.clone();
        let method = req.method.as_str();
        let is_get = method == "GET" || method == "HEAD";
        // The tracker first: the hot path.
        if let Some(rest) = path.strip_prefix("/announce") {
            if !is_get {
                return Response::text(405, "announce with GET");
            }
            let token = match rest {
                "" => None,
                r => Some(r.strip_prefix('/').unwrap_or(r).as_bytes()),
            };
            let body = self.tracker.http_announce(token, req.query.as_bytes(), canonical_ip(req.remote.ip()));
            let body = if is_origin_announce(&req.query) { with_interval(&body, LIVE_INTERVAL) } else { body };
            return Response::new(200, "text/plain", body);
        }
        if let Some(rest) = path.strip_prefix("/scrape") {
            if !is_get {
                return Response::text(405, "scrape with GET");
            }
            let token = match rest {
                "" => None,
                r => Some(r.strip_prefix('/').unwrap_or(r).as_bytes()),
            };
            return Response::new(200, "text/plain", self.tracker.http_scrape(token, req.query.as_bytes()));
        }
        let api = path.starts_with("/api/");
        if let Err(d) = self.request_allowed(req) {
            return d.response(api);
        }
        match (method, path.as_str()) {
            ("GET" | "HEAD", "/") => Response::new(200, "text/html; charset=utf-8", pages::index(self)),
            ("GET" | "HEAD", "/metrics") => Response::new(200, "text/plain; version=0.0.4", self.metrics()),
            ("GET" | "HEAD", "/api/torrents") => {
                let secrets = self.sees_token(req);
                let list: Vec<serde_json::Value> = self.registry.list().iter().map(|e| self.torrent_json(e, false, secrets)).collect();
                json_response(200, json!(list))
            }
            ("POST", "/api/torrents") => self.post_torrent(req),
            ("PUT" | "POST", "/api/upload") => self.upload(req),
            (m, p) if p.starts_with("/api/torrents/") => {
                let ih = match InfoHash::from_hex(&p["/api/torrents/".len()..]) {
                    Some(ih) => ih,
                    None => return api_error(400, "not an info-hash (40 hex digits)"),
                };
                match m {
                    "GET" | "HEAD" => match self.registry.get(&ih) {
                        Some(e) => json_response(200, self.torrent_json(&e, true, self.sees_token(req))),
                        None => api_error(404, "unknown torrent"),
                    },
                    "DELETE" => {
                        if let Err(d) = self.write_access(req) {
                            return d.response(true);
                        }
                        match self.registry.remove(&ih) {
                            Ok(Some(_)) => {
                                self.tracker.store.unregister(&ih.0);
                                eprintln!("btrack: unregistered {ih}");
                                json_response(200, json!({ "deleted": ih.hex() }))
                            }
                            Ok(None) => api_error(404, "unknown torrent"),
                            Err(e) => api_error(500, e),
                        }
                    }
                    _ => api_error(405, "use GET or DELETE"),
                }
            }
            ("GET" | "HEAD", p) if p.starts_with("/torrents/") && p.ends_with(".torrent") => {
                let hex = &p["/torrents/".len()..p.len() - ".torrent".len()];
                let e = match InfoHash::from_hex(hex).and_then(|ih| self.registry.get(&ih)) {
                    Some(e) => e,
                    None => return Response::text(404, "unknown torrent"),
                };
                if !self.sees_token(req) {
                    return Response::text(401, "this torrent carries the announce token: send it or the admin token (Authorization: Bearer TOKEN)");
                }
                match self.registry.torrent_bytes(&e.info_hash) {
                    Ok(bytes) => Response::new(200, "application/x-bittorrent", bytes)
                        .header("Content-Disposition", format!("attachment; filename=\"{}.torrent\"", e.name.replace(['"', '\\'], "_"))),
                    Err(err) => Response::text(500, err),
                }
            }
            ("GET" | "HEAD", p) if p.starts_with("/t/") => match InfoHash::from_hex(&p[3..]).and_then(|ih| self.registry.get(&ih)) {
                Some(e) => Response::new(200, "text/html; charset=utf-8", pages::detail(self, &e)),
                None => Response::text(404, "unknown torrent"),
            },
            ("GET" | "HEAD", "/favicon.ico") => Response::new(204, "image/x-icon", Vec::new()),
            (_, p) if p.starts_with("/api/") => api_error(404, "no such API endpoint"),
            _ => Response::text(404, "not found"),
        }
    }

    fn post_torrent(&self, req: &mut Request) -> Response {
        if let Err(d) = self.write_access(req) {
            return d.response(true);
        }
        let limit = crate::cli::MAX_INPUT;
        if req.body.content_length.map(|l| l > limit).unwrap_or(false) {
            return api_error(413, "torrent file too large");
        }
        let mut bytes = Vec::new();
        if let Err(e) = (&mut req.body).take(limit + 1).read_to_end(&mut bytes) {
            return api_error(400, format!("reading the body: {e}"));
        }
        if bytes.len() as u64 > limit {
            return api_error(413, "torrent file too large");
        }
        match self.registry.add(bytes, None) {
            Ok((e, new)) => {
                self.tracker.store.register(e.info_hash.0);
                if new {
                    eprintln!("btrack: registered {} ({})", e.info_hash, e.name);
                }
                json_response(if new { 201 } else { 200 }, self.torrent_json(&e, false, true))
            }
            Err(e) => {
                let status = match e {
                    registry::RegistryError::Invalid(_) => 422,
                    registry::RegistryError::Full(_) => 507,
                    registry::RegistryError::Io(_) => 500,
                };
                api_error(status, e.to_string())
            }
        }
    }

    fn upload(&self, req: &mut Request) -> Response {
        if let Err(d) = self.write_access(req) {
            return d.response(true);
        }
        let name = match qvalue(&req.query, "name") {
            Some(n) => n,
            None => return api_error(400, "missing ?name=FILE_NAME"),
        };
        let length = match req.body.content_length {
            Some(l) => l,
            None => return api_error(411, "upload needs a Content-Length (hashing starts before the body ends)"),
        };
        let piece_length = match qvalue(&req.query, "piece_length").filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match crate::units::parse_piece_length(&s) {
                Ok(l) => Some(l),
                Err(e) => return api_error(400, e),
            },
        };
        let web_seeds: Vec<String> = crate::tracker::http::pairs(req.query.as_bytes())
            .filter(|(k, _)| *k == b"web_seed")
            .map(|(_, v)| String::from_utf8_lossy(&crate::tracker::http::percent_decode(v).unwrap_or_default()).trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        if let Some((url, why)) = web_seeds.iter().find_map(|u| crate::webseed::unsupported(u).map(|w| (u, w))) {
            return api_error(400, format!("web seed {}: {why}", crate::sanitize::printable(url)));
        }
        let up = upload::UploadRequest {
            name: &name,
            length,
            piece_length,
            announce: self.announce_url(req),
            max_upload: self.cfg.max_upload,
            web_seeds,
        };
        let metrics = &self.tracker.metrics;
        let last = std::cell::Cell::new(0u64);
        let progress = |n: u64| {
            metrics.upload_bytes.fetch_add(n - last.get(), Ordering::Relaxed);
            last.set(n);
        };
        match upload::upload(&self.registry, &mut req.body, &up, &progress) {
            Ok(e) => {
                metrics.uploads_ok.fetch_add(1, Ordering::Relaxed);
                self.tracker.store.register(e.info_hash.0);
                let cmd = self.registry.bseed_command(&e).unwrap_or_default();
                eprintln!("btrack: uploaded {} ({} bytes, info hash {}); seed it with:\n  {cmd}", e.name, e.total_length, e.info_hash);
                let torrent = match self.registry.torrent_bytes(&e.info_hash) {
                    Ok(t) => t,
                    Err(err) => return api_error(500, err),
                };
                Response::new(200, "application/x-bittorrent", torrent)
                    .header("X-Info-Hash", e.info_hash.hex())
                    .header("X-Bseed-Command", cmd)
                    .header("Content-Disposition", format!("attachment; filename=\"{}.torrent\"", e.name.replace(['"', '\\'], "_")))
            }
            Err(err) => {
                metrics.uploads_failed.fetch_add(1, Ordering::Relaxed);
                eprintln!("btrack: upload of {name:?} refused: {err}");
                api_error(err.status, err.message)
            }
        }
    }

    /// Prometheus text format.
    pub fn metrics(&self) -> String {
        let m = &self.tracker.metrics;
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let mut s = String::new();
        s.push_str("# HELP btrack_announces_total Announces answered, by protocol and event.\n# TYPE btrack_announces_total counter\n");
        for (pi, proto) in ["http", "udp"].iter().enumerate() {
            for (ei, ev) in ["none", "started", "completed", "stopped"].iter().enumerate() {
                s.push_str(&format!("btrack_announces_total{{proto=\"{proto}\",event=\"{ev}\"}} {}\n", g(&m.announces[pi][ei])));
            }
        }
        s.push_str("# HELP btrack_scrapes_total Scrapes answered.\n# TYPE btrack_scrapes_total counter\n");
        for (pi, proto) in ["http", "udp"].iter().enumerate() {
            s.push_str(&format!("btrack_scrapes_total{{proto=\"{proto}\"}} {}\n", g(&m.scrapes[pi])));
        }
        s.push_str("# HELP btrack_udp_connects_total UDP connect requests answered.\n# TYPE btrack_udp_connects_total counter\n");
        s.push_str(&format!("btrack_udp_connects_total {}\n", g(&m.udp_connects)));
        s.push_str("# HELP btrack_errors_total Refused or malformed requests, by reason.\n# TYPE btrack_errors_total counter\n");
        for (pi, proto) in ["http", "udp"].iter().enumerate() {
            s.push_str(&format!("btrack_errors_total{{proto=\"{proto}\",reason=\"unregistered\"}} {}\n", g(&m.unregistered[pi])));
            s.push_str(&format!("btrack_errors_total{{proto=\"{proto}\",reason=\"bad_token\"}} {}\n", g(&m.bad_token[pi])));
            s.push_str(&format!("btrack_errors_total{{proto=\"{proto}\",reason=\"malformed\"}} {}\n", g(&m.bad_requests[pi])));
        }
        s.push_str(&format!("btrack_errors_total{{proto=\"udp\",reason=\"bad_connection_id\"}} {}\n", g(&m.udp_bad_connection_id)));
        s.push_str(&format!("btrack_errors_total{{proto=\"udp\",reason=\"rate_limited\"}} {}\n", g(&m.udp_rate_limited)));
        s.push_str(&format!("btrack_errors_total{{proto=\"http\",reason=\"rate_limited\"}} {}\n", g(&m.http_rate_limited)));
        for (pi, proto) in ["http", "udp"].iter().enumerate() {
            s.push_str(&format!("btrack_errors_total{{proto=\"{proto}\",reason=\"peer_id_taken\"}} {}\n", g(&m.peer_id_taken[pi])));
        }
        s.push_str(&format!("btrack_errors_total{{proto=\"http\",reason=\"connection_refused\"}} {}\n", g(&m.http_connections_refused)));
        s.push_str("# HELP btrack_http_requests_total HTTP requests received.\n# TYPE btrack_http_requests_total counter\n");
        s.push_str(&format!("btrack_http_requests_total {}\n", g(&m.http_requests)));
        s.push_str("# HELP btrack_peers Peers currently tracked.\n# TYPE btrack_peers gauge\n");
        s.push_str(&format!("btrack_peers {}\n", self.tracker.store.peer_count()));
        s.push_str("# HELP btrack_torrents Torrents with a swarm (registered or, with --open, seen).\n# TYPE btrack_torrents gauge\n");
        s.push_str(&format!("btrack_torrents {}\n", self.tracker.store.torrent_count()));
        s.push_str("# HELP btrack_registered_torrents Torrents in the data directory.\n# TYPE btrack_registered_torrents gauge\n");
        s.push_str(&format!("btrack_registered_torrents {}\n", self.registry.len()));
        s.push_str("# HELP btrack_upload_bytes_total Bytes received by uploads.\n# TYPE btrack_upload_bytes_total counter\n");
        s.push_str(&format!("btrack_upload_bytes_total {}\n", g(&m.upload_bytes)));
        s.push_str("# HELP btrack_uploads_total Uploads by result.\n# TYPE btrack_uploads_total counter\n");
        s.push_str(&format!("btrack_uploads_total{{result=\"ok\"}} {}\n", g(&m.uploads_ok)));
        s.push_str(&format!("btrack_uploads_total{{result=\"failed\"}} {}\n", g(&m.uploads_failed)));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_get_the_live_interval_others_do_not() {
        assert!(is_origin_announce("info_hash=x&peer_id=y&port=1&uploaded=5&downloaded=0&left=0&event=started"));
        assert!(!is_origin_announce("downloaded=0&left=10"));
        assert!(!is_origin_announce("downloaded=7&left=0"));
        assert!(!is_origin_announce("left=0"));
        let body = b"d8:completei1e10:incompletei2e8:intervali300e12:min intervali30e5:peers0:e";
        let got = with_interval(body, 5);
        assert_eq!(got, b"d8:completei1e10:incompletei2e8:intervali5e12:min intervali5e5:peers0:e".to_vec());
        // Never longer than configured.
        let short = b"d8:intervali1e12:min intervali1e5:peers0:e";
        assert_eq!(with_interval(short, 5), short.to_vec());
        let fail = b"d14:failure reason3:note";
        assert_eq!(with_interval(fail, 5), fail.to_vec());
        assert_eq!(with_interval(b"garbage", 5), b"garbage".to_vec());
    }

    fn app(listen: &str, token: Option<&str>, public_url: Option<&str>) -> (App, std::path::PathBuf) {
        let d = std::env::temp_dir().join(format!("shoal-manager-{}-{}", std::process::id(), crate::tracker::client::random_u32()));
        let (registry, _) = Registry::open(&d).unwrap();
        let tracker = Arc::new(Tracker::new(crate::tracker::server::Config { token: token.map(str::to_string), ..Default::default() }));
        let cfg = Config {
            public_url: public_url.map(str::to_string),
            max_upload: 1 << 20,
            admin_token: None,
            listen: listen.into(),
            allowed_hosts: vec!["tracker.example".into()],
        };
        (App { tracker, registry, cfg }, d)
    }

    #[test]
    fn host_names() {
        assert_eq!(host_name("Example.COM:6969"), "example.com");
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("localhost."), "localhost");
        let (a, d) = app("127.0.0.1:6969", None, Some("http://origin.internal:6969"));
        for ok in ["127.0.0.1:1", "[::1]:2", "localhost:3", "tracker.example", "origin.internal:6969", "a.localhost"] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example", "127.0.0.1.evil.example", "tracker.example.evil", ""] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn seeding_sessions_announce_only_here() {
        let (a, d) = app("127.0.0.1:6969", Some("tok"), None);
        let theirs = vec![
            vec!["http://10.66.66.66:6969/announce".to_string()],
            vec!["http://127.0.0.1:80/announce".to_string()],
            vec!["udp://localhost:6969/x".to_string(), "https://127.0.0.1:6969/announce".to_string()],
        ];
        assert_eq!(a.own_trackers(&theirs), vec![vec!["udp://localhost:6969/announce/tok".to_string()]]);
        assert_eq!(a.own_trackers(&theirs[..2]), vec![vec!["http://127.0.0.1:6969/announce/tok".to_string()]], "nothing of theirs: our own address");
        let (wide, d2) = app("0.0.0.0:6969", None, None);
        assert_eq!(wide.own_trackers(&[]), vec![vec!["http://127.0.0.1:6969/announce".to_string()]]);
        let (public, d3) = app("0.0.0.0:6969", None, Some("http://origin:6969/"));
        assert_eq!(public.own_trackers(&theirs), vec![vec!["http://origin:6969/announce".to_string()]]);
        for d in [d, d2, d3] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
