//! btrack's manager: one HTTP front door routing the tracker (`/announce`, `/scrape`), the
//! web pages, the JSON API, uploads and `/metrics`, over the data-directory [`registry`].
//!
//! Routes (write operations need `--admin-token` when set, as `Authorization: Bearer T`,
//! `X-Admin-Token: T` or `?admin_token=T`):
//! - `GET /announce[/<token>]`, `GET /scrape[/<token>]`: the HTTP tracker;
//! - `GET /`, `GET /t/<ih>`: the pages ([`pages`]);
//! - `GET /api/torrents`, `GET /api/torrents/<ih>`: JSON; `POST /api/torrents` (a .torrent
//!   body) registers; `DELETE /api/torrents/<ih>` unregisters;
//! - `PUT /api/upload?name=NAME[&piece_length=L]`: upload a file, answer its .torrent;
//! - `GET /torrents/<ih>.torrent`, `GET /metrics`.
//!
//! Every handler answers; errors are one-line texts (JSON `{"error": …}` on `/api/`).

pub mod httpd;
pub mod pages;
pub mod registry;
pub mod upload;

use crate::metainfo::InfoHash;
use crate::tracker::server::{canonical_ip, Tracker};
use httpd::{Request, Response};
use registry::{Entry, Registry};
use serde_json::json;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Manager settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub public_url: Option<String>,
    pub max_upload: u64,
    pub admin_token: Option<String>,
    /// The address btrack listens on (fallback host for announce URLs).
    pub listen: String,
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

    fn admin_ok(&self, req: &Request) -> bool {
        let want = match &self.cfg.admin_token {
            None => return true,
            Some(t) => t,
        };
        let given = req
            .header("x-admin-token")
            .map(str::to_string)
            .or_else(|| req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::to_string))
            .or_else(|| qvalue(&req.query, "admin_token"));
        matches!(given, Some(g) if g.len() == want.len() && g.bytes().zip(want.bytes()).fold(0, |a, (x, y)| a | (x ^ y)) == 0)
    }

    pub fn announce_url(&self, req: &Request) -> String {
        upload::announce_url(self.cfg.public_url.as_deref(), req.header("host"), &self.cfg.listen, self.tracker.cfg.token.as_deref())
    }

    /// JSON for one torrent; `peers` adds the swarm's peers and load sharing.
    pub fn torrent_json(&self, e: &Entry, peers: bool) -> serde_json::Value {
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
            "announce": e.announce,
            "added": e.added,
            "seeders": seeders,
            "leechers": leechers,
            "completed": completed,
            "torrent_url": format!("/torrents/{ih}.torrent"),
            "page_url": format!("/t/{ih}"),
            "torrent_path": self.registry.torrent_path(&e.info_hash),
            "content_path": self.registry.content_of(e),
            "bseed_command": self.registry.bseed_command(e),
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
                        "peer_id": crate::hex::encode(&p.peer_id),
                        "client": client_prefix(&p.peer_id),
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
        match (method, path.as_str()) {
            ("GET" | "HEAD", "/") => Response::new(200, "text/html; charset=utf-8", pages::index(self)),
            ("GET" | "HEAD", "/metrics") => Response::new(200, "text/plain; version=0.0.4", self.metrics()),
            ("GET" | "HEAD", "/api/torrents") => {
                let list: Vec<serde_json::Value> = self.registry.list().iter().map(|e| self.torrent_json(e, false)).collect();
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
                        Some(e) => json_response(200, self.torrent_json(&e, true)),
                        None => api_error(404, "unknown torrent"),
                    },
                    "DELETE" => {
                        if !self.admin_ok(req) {
                            return api_error(401, "admin token required");
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
                match InfoHash::from_hex(hex).and_then(|ih| self.registry.get(&ih)) {
                    Some(e) => Response::new(200, "application/x-bittorrent", e.torrent.as_slice())
                        .header("Content-Disposition", format!("attachment; filename=\"{}.torrent\"", e.name.replace(['"', '\\'], "_"))),
                    None => Response::text(404, "unknown torrent"),
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
        if !self.admin_ok(req) {
            return api_error(401, "admin token required");
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
        match self.registry.add(bytes) {
            Ok((e, new)) => {
                self.tracker.store.register(e.info_hash.0);
                if new {
                    eprintln!("btrack: registered {} ({})", e.info_hash, e.name);
                }
                json_response(if new { 201 } else { 200 }, self.torrent_json(&e, false))
            }
            Err(e) => api_error(422, e),
        }
    }

    fn upload(&self, req: &mut Request) -> Response {
        if !self.admin_ok(req) {
            return api_error(401, "admin token required");
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
        let up = upload::UploadRequest { name: &name, length, piece_length, announce: self.announce_url(req), max_upload: self.cfg.max_upload };
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
                Response::new(200, "application/x-bittorrent", e.torrent.as_slice())
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
