//! A small blocking HTTP/1.1 server: btrack's one front door for the tracker, the pages and
//! the API.
//!
//! Why not tiny_http: it grows one thread per connection without limit and has no read
//! timeouts, so a flood of idle connections (or a slow client) would grow memory without
//! bound; and the tracker's hot path wants one parse and one write per request.
//!
//! Design: an acceptor thread hands each connection to an idle worker over a rendezvous
//! channel, or starts a new worker while fewer than `max_workers` exist; workers that stay
//! idle for a minute exit. Each worker serves one keep-alive connection at a time with
//! blocking reads. Invariants:
//! - at most `max_workers` connections are served and `max_per_ip` per client address;
//!   beyond that a connection gets `503` and is closed;
//! - a request head is at most [`MAX_HEAD`] bytes and must arrive within
//!   `head_deadline`; an idle keep-alive connection is closed after `idle_timeout`;
//! - request bodies are streamed to the handler ([`Body`] implements `Read`, with
//!   `Content-Length` or chunked framing); nothing buffers a whole body here. A body must
//!   keep up an average of `body_min_rate` bytes per second after a grace of
//!   `body_grace` (so a 2-byte body trickled over minutes is cut off after the grace, and a
//!   large upload may take as long as its size needs); every read waits at most until that
//!   budget runs out. A body the handler did not read in full is not drained: the
//!   connection is closed after the response;
//! - framing is strict: one `Content-Length` of plain digits, `Transfer-Encoding` exactly
//!   `chunked`, never both; anything else is `400` (request smuggling needs two parsers
//!   to disagree about where a body ends).

use crossbeam::channel::{bounded, RecvTimeoutError};
use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MAX_HEAD: usize = 16 << 10;
/// Default time a request head may take to arrive, from its first byte.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(20);
/// Longest single pause allowed inside a request body (the rate budget usually ends it sooner).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);

/// A parsed request; `body` streams the request body.
pub struct Request<'a> {
    pub method: String,
    /// The raw path, before `?` (still percent-encoded).
    pub path: String,
    /// The raw query after `?` (empty if none).
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub remote: SocketAddr,
    pub body: Body<'a>,
}

impl Request<'_> {
    /// A header's value (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A response; the body is sent with `Content-Length`.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type, headers: Vec::new(), body: body.into() }
    }
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut b = body.into();
        if !b.ends_with('\n') {
            b.push('\n');
        }
        Response::new(status, "text/plain; charset=utf-8", b)
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Status",
    }
}

/// A request body: `Content-Length` or chunked. Reading it the first time sends
/// `100 Continue` when the client asked for it.
pub struct Body<'a> {
    reader: &'a mut BufReader<TcpStream>,
    /// Bytes left of a `Content-Length` body, or of the current chunk.
    left: u64,
    chunked: bool,
    done: bool,
    continue_pending: bool,
    pub content_length: Option<u64>,
    read_total: u64,
    failed: bool,
    /// The body timeout is in force (the idle timeout is restored after the request).
    slow_ok: bool,
    /// When the first body byte was asked for; the rate budget runs from here.
    started: Option<Instant>,
    grace: Duration,
    min_rate: u64,
}

impl Body<'_> {
    /// Whether the whole body has been read.
    pub fn finished(&self) -> bool {
        self.done
    }
    pub fn bytes_read(&self) -> u64 {
        self.read_total
    }

    /// How long the next read may wait: the time left until `read_total + 1` bytes are due
    /// (grace plus bytes at the minimum rate), at most [`BODY_TIMEOUT`].
    fn budget(&mut self) -> io::Result<Duration> {
        let start = *self.started.get_or_insert_with(Instant::now);
        let rate = self.min_rate.max(1);
        let due = self.grace.saturating_add(Duration::from_secs_f64((self.read_total + 1) as f64 / rate as f64));
        match due.checked_sub(start.elapsed()) {
            Some(left) if !left.is_zero() => Ok(left.min(BODY_TIMEOUT)),
            _ => Err(io::Error::new(io::ErrorKind::TimedOut, "request body too slow")),
        }
    }

    fn chunk_line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        (&mut *self.reader).take(1024).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk framing"));
        }
        Ok(String::from_utf8_lossy(&line).trim().to_string())
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.continue_pending {
            self.continue_pending = false;
            self.reader.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let r = (|| {
            // Each read waits only as long as the rate budget allows (the idle timeout is
            // restored after the request).
            let wait = self.budget()?;
            self.slow_ok = true;
            let _ = self.reader.get_ref().set_read_timeout(Some(wait));
            if self.chunked && self.left == 0 {
                let line = self.chunk_line()?;
                let size = line.split(';').next().unwrap_or("").trim();
                let n = u64::from_str_radix(size, 16).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
                if n == 0 {
                    // Trailers until an empty line.
                    while !self.chunk_line()?.is_empty() {}
                    self.done = true;
                    return Ok(0);
                }
                self.left = n;
            }
            let want = (buf.len() as u64).min(self.left) as usize;
            let n = self.reader.read(&mut buf[..want]).map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "request body too slow"),
                _ => e,
            })?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "client closed the connection mid-body"));
            }
            self.left -= n as u64;
            self.read_total += n as u64;
            if self.chunked && self.left == 0 {
                let end = self.chunk_line()?;
                if !end.is_empty() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "bad chunk framing"));
                }
            }
            if !self.chunked && self.left == 0 {
                self.done = true;
            }
            Ok(n)
        })();
        if r.is_err() {
            self.failed = true;
        }
        r
    }
}

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_workers: usize,
    pub max_per_ip: usize,
    pub idle_timeout: Duration,
    /// Time a request head may take from its first byte.
    pub head_deadline: Duration,
    /// Time a body may take before the minimum rate applies.
    pub body_grace: Duration,
    /// Average bytes per second a body must keep up after the grace.
    pub body_min_rate: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_workers: 512,
            max_per_ip: 32,
            idle_timeout: Duration::from_secs(15),
            head_deadline: HEAD_DEADLINE,
            body_grace: HEAD_DEADLINE,
            body_min_rate: 16 << 10,
        }
    }
}

pub type Handler = dyn Fn(&mut Request) -> Response + Send + Sync;

struct Shared {
    cfg: Config,
    handler: Box<Handler>,
    workers: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused: Box<dyn Fn() + Send + Sync>,
}

/// Serves `listener` forever (the process exits to stop it).
pub fn serve(listener: TcpListener, cfg: Config, handler: Box<Handler>, on_refused: Box<dyn Fn() + Send + Sync>) {
    let shared = Arc::new(Shared { cfg, handler, workers: AtomicUsize::new(0), per_ip: Mutex::new(HashMap::new()), refused: on_refused });
    let (tx, rx) = bounded::<TcpStream>(0);
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let ip = match stream.peer_addr() {
            Ok(a) => a.ip(),
            Err(_) => continue,
        };
        {
            let mut m = shared.per_ip.lock().unwrap();
            let n = m.entry(ip).or_insert(0);
            if *n >= shared.cfg.max_per_ip {
                drop(m);
                refuse(stream, &shared);
                continue;
            }
            *n += 1;
        }
        let stream = match tx.try_send(stream) {
            Ok(()) => continue,
            Err(e) => e.into_inner(),
        };
        if shared.workers.load(Ordering::Relaxed) >= shared.cfg.max_workers {
            release(&shared, ip);
            refuse(stream, &shared);
            continue;
        }
        shared.workers.fetch_add(1, Ordering::Relaxed);
        let sh = shared.clone();
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name("btrack-http".into()).stack_size(256 << 10).spawn(move || {
            let mut next = Some(stream);
            while let Some(s) = next.take() {
                let ip = s.peer_addr().map(|a| a.ip()).ok();
                serve_connection(s, &sh);
                if let Some(ip) = ip {
                    release(&sh, ip);
                }
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(s) => next = Some(s),
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
                }
            }
            sh.workers.fetch_sub(1, Ordering::Relaxed);
        });
        if spawned.is_err() {
            shared.workers.fetch_sub(1, Ordering::Relaxed);
            release(&shared, ip);
        }
    }
}

fn release(sh: &Shared, ip: IpAddr) {
    let mut m = sh.per_ip.lock().unwrap();
    if let Some(n) = m.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

fn refuse(mut s: TcpStream, sh: &Shared) {
    (sh.refused)();
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20\r\nConnection: close\r\n\r\ntoo many connections");
}

enum Head {
    Request { method: String, target: String, headers: Vec<(String, String)>, http11: bool },
    Closed,
    Bad(u16, &'static str),
}

fn read_head(r: &mut BufReader<TcpStream>, deadline: Duration) -> Head {
    // The deadline runs from the first byte (waiting for a request is the idle timeout's
    // business) and is checked after every read, so a client trickling bytes cannot hold a
    // worker longer than the deadline plus one read timeout.
    let mut start: Option<Instant> = None;
    let mut head = Vec::with_capacity(512);
    'read: loop {
        if let Some(t) = start {
            if t.elapsed() > deadline {
                return Head::Bad(408, "request head too slow");
            }
        }
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return if head.is_empty() { Head::Closed } else { Head::Bad(408, "request head too slow") },
        };
        if buf.is_empty() {
            return if head.is_empty() { Head::Closed } else { Head::Bad(400, "incomplete request head") };
        }
        start.get_or_insert_with(Instant::now);
        let mut used = 0;
        for &byte in buf {
            used += 1;
            head.push(byte);
            if byte == b'\n' {
                // Ignore empty lines before a request (RFC 9112 §2.2).
                if head == b"\r\n" || head == b"\n" {
                    head.clear();
                    continue;
                }
                if head.ends_with(b"\n\r\n") || head.ends_with(b"\n\n") {
                    r.consume(used);
                    break 'read;
                }
            }
            if head.len() > MAX_HEAD {
                return Head::Bad(431, "request head too large");
            }
        }
        r.consume(used);
    }
    let text = match std::str::from_utf8(&head) {
        Ok(t) => t,
        Err(_) => return Head::Bad(400, "request head is not UTF-8"),
    };
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return Head::Bad(400, "malformed request line"),
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Head::Bad(400, "malformed method");
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Head::Bad(505, "unsupported HTTP version"),
    };
    if !target.starts_with('/') {
        return Head::Bad(400, "request target must be a path");
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        match l.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(' ') => headers.push((k.to_string(), v.trim().to_string())),
            _ => return Head::Bad(400, "malformed header line"),
        }
        if headers.len() > 100 {
            return Head::Bad(431, "too many headers");
        }
    }
    Head::Request { method: method.to_string(), target: target.to_string(), headers, http11 }
}

fn write_response(s: &mut TcpStream, resp: &Response, keep_alive: bool, head_only: bool, http10: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(160 + resp.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        let _ = write!(out, "{k}: {}\r\n", v.replace(['\r', '\n'], " "));
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    s.write_all(&out)
}

fn serve_connection(stream: TcpStream, sh: &Shared) {
    let remote = match stream.peer_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(sh.cfg.idle_timeout));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::with_capacity(16 << 10, stream);
    loop {
        let (method, target, headers, http11) = match read_head(&mut reader, sh.cfg.head_deadline) {
            Head::Request { method, target, headers, http11 } => (method, target, headers, http11),
            Head::Closed => return,
            Head::Bad(status, why) => {
                let _ = write_response(&mut writer, &Response::text(status, why), false, false, false);
                linger(&writer, &mut reader);
                return;
            }
        };
        let get = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_ascii_lowercase());
        let (content_length, chunked) = match framing(&headers) {
            Ok(f) => f,
            Err(why) => {
                let _ = write_response(&mut writer, &Response::text(400, why), false, false, false);
                linger(&writer, &mut reader);
                return;
            }
        };
        let conn = get("connection").unwrap_or_default();
        let mut keep_alive = if http11 { !conn.contains("close") } else { conn.contains("keep-alive") };
        let expect = get("expect").map(|v| v == "100-continue").unwrap_or(false);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let head_only = method == "HEAD";
        let body_len = content_length.unwrap_or(0);
        let mut req = Request {
            method,
            path,
            query,
            headers,
            remote,
            body: Body {
                reader: &mut reader,
                left: if chunked { 0 } else { body_len },
                chunked,
                done: !chunked && body_len == 0,
                continue_pending: expect && (chunked || body_len > 0),
                content_length,
                read_total: 0,
                failed: false,
                slow_ok: false,
                started: None,
                grace: sh.cfg.body_grace,
                min_rate: sh.cfg.body_min_rate,
            },
        };
        let resp = (sh.handler)(&mut req);
        if req.body.slow_ok {
            let _ = req.body.reader.get_ref().set_read_timeout(Some(sh.cfg.idle_timeout));
        }
        if !req.body.done {
            // Not drained: a client that sends a body nobody asked for (an upload refused
            // with 401, a trickled body) must not hold the worker. Close instead.
            keep_alive = false;
        }
        if write_response(&mut writer, &resp, keep_alive, head_only, !http11).is_err() {
            return;
        }
        if !keep_alive {
            linger(&writer, &mut reader);
            return;
        }
    }
}

/// The body framing of a request: (`Content-Length`, chunked). Strict on purpose: one
/// `Content-Length` of plain digits, `Transfer-Encoding` exactly `chunked`, not both.
pub fn framing(headers: &[(String, String)]) -> Result<(Option<u64>, bool), &'static str> {
    let mut lengths = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.as_str());
    let mut codings = headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding")).map(|(_, v)| v.as_str());
    let (cl, cl2) = (lengths.next(), lengths.next());
    let (te, te2) = (codings.next(), codings.next());
    if cl2.is_some() {
        return Err("bad Content-Length: more than one");
    }
    if te2.is_some() {
        return Err("bad Transfer-Encoding: more than one");
    }
    let chunked = match te {
        None => false,
        Some(v) if v.trim().eq_ignore_ascii_case("chunked") => true,
        Some(_) => return Err("bad Transfer-Encoding: only 'chunked' is supported"),
    };
    let length = match cl {
        None => None,
        Some(_) if chunked => return Err("bad Content-Length: not allowed with Transfer-Encoding"),
        Some(v) if !v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()) => Some(v.parse::<u64>().map_err(|_| "bad Content-Length")?),
        Some(_) => return Err("bad Content-Length: not a plain decimal number"),
    };
    Ok((length, chunked))
}

/// Closes gracefully after an answer sent before the request was read in full: stop
/// writing, then read and discard (at most 1 MiB, 2 s) so the client sees our answer
/// instead of a reset.
fn linger(writer: &TcpStream, reader: &mut BufReader<TcpStream>) {
    let _ = writer.shutdown(std::net::Shutdown::Write);
    let _ = writer.set_read_timeout(Some(Duration::from_millis(500)));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut sink = [0u8; 16 << 10];
    let mut total = 0usize;
    while Instant::now() < deadline && total < 1 << 20 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn framing_is_strict() {
        assert_eq!(framing(&h(&[])), Ok((None, false)));
        assert_eq!(framing(&h(&[("Content-Length", "5")])), Ok((Some(5), false)));
        assert_eq!(framing(&h(&[("transfer-encoding", "Chunked")])), Ok((None, true)));
        for bad in [
            h(&[("Content-Length", "5"), ("content-length", "5")]),
            h(&[("Content-Length", "+5")]),
            h(&[("Content-Length", "-5")]),
            h(&[("Content-Length", " ")]),
            h(&[("Content-Length", "5 5")]),
            h(&[("Content-Length", "99999999999999999999")]),
            h(&[("Transfer-Encoding", "xchunked")]),
            h(&[("Transfer-Encoding", "chunked, gzip")]),
            h(&[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")]),
            h(&[("Transfer-Encoding", "chunked"), ("Content-Length", "5")]),
        ] {
            assert!(framing(&bad).is_err(), "{bad:?}");
        }
    }
}
