//! Metadata exchange (BEP 9, `ut_metadata` over the BEP 10 extension protocol): fetching a
//! torrent's info dictionary from peers when all we have is its info-hash (a magnet link),
//! and the pure pieces that serve it to others.
//!
//! Pure functions over bytes: [`encode`] / [`decode`] for the `request` / `data` / `reject`
//! messages, [`ext_handshake`] / [`parse_ext_handshake`] for the extension handshake,
//! [`serve`] for the answer to a request, and [`Assembler`] for putting the pieces together.
//! [`fetch`] wraps them in blocking sockets.
//!
//! Invariants: a `metadata_size` above [`MAX_METADATA_SIZE`] is refused before anything is
//! allocated; every piece but the last is exactly [`PIECE`] bytes and the last is what is
//! left; assembled bytes are handed out only when their SHA-1 equals the info-hash (a peer
//! whose bytes do not hash is dropped and another is tried); every socket operation and the
//! whole fetch are bounded in time.

use super::wire::{self, Handshake, Message};
use crate::bencode::{self, Owned};
use crate::tracker::client as tracker;
use crossbeam::channel;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Size of a metadata piece (BEP 9): 16 KiB.
pub const PIECE: usize = 16 * 1024;
/// Largest info dictionary we fetch: 16 MiB (a 20 GB image with 16 KiB pieces has 25 MB of
/// piece hashes; with the 256 KiB pieces mktorrent picks, 1.6 MB).
pub const MAX_METADATA_SIZE: usize = 16 << 20;
/// The extended message id we ask peers to use for `ut_metadata` messages sent to us.
pub const UT_METADATA_ID: u8 = 3;
/// Time allowed for one peer to connect, handshake and hand over the whole dictionary
/// (a silent peer is given up after [`PEER_READ_TIMEOUT`]).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(60);
const PEER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Peers asked at once.
const PARALLEL: usize = 8;
/// Requests kept in flight with one peer.
const PIPELINE: u32 = 16;
/// Re-announce this often while no peer has given the metadata.
const REANNOUNCE: Duration = Duration::from_secs(5);
const TRACKER_TIMEOUT: Duration = Duration::from_secs(10);

/// A `ut_metadata` message (the payload of an extended message, after its id byte).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Request { piece: u32 },
    Data { piece: u32, total_size: u64, data: Vec<u8> },
    Reject { piece: u32 },
}

/// Why a message, a handshake or a fetch was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not a bencoded dictionary with the fields BEP 9 requires.
    Malformed(String),
    /// A `msg_type` other than 0, 1 or 2.
    UnknownType(i64),
    /// The peer's `metadata_size` is 0 or above [`MAX_METADATA_SIZE`].
    Size(u64),
    /// A piece index or length that does not fit the announced size.
    BadPiece { piece: u32, len: usize },
    /// The assembled bytes do not hash to the info-hash.
    HashMismatch,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(why) => write!(f, "malformed ut_metadata message: {why}"),
            Error::UnknownType(t) => write!(f, "unknown ut_metadata msg_type {t}"),
            Error::Size(n) => write!(f, "metadata_size {n} outside 1..={MAX_METADATA_SIZE}"),
            Error::BadPiece { piece, len } => write!(f, "metadata piece {piece} of {len} bytes does not fit"),
            Error::HashMismatch => write!(f, "metadata does not hash to the info-hash"),
        }
    }
}

impl std::error::Error for Error {}

/// Encodes a `ut_metadata` message (without the extended message id).
pub fn encode(m: &Msg) -> Vec<u8> {
    let (kind, piece) = match m {
        Msg::Request { piece } => (0, *piece),
        Msg::Data { piece, .. } => (1, *piece),
        Msg::Reject { piece } => (2, *piece),
    };
    let mut d = bencode::dict([("msg_type", Owned::Int(kind)), ("piece", Owned::Int(piece as i64))]);
    if let (Msg::Data { total_size, .. }, Owned::Dict(map)) = (m, &mut d) {
        map.insert(b"total_size".to_vec(), Owned::Int(*total_size as i64));
    }
    let mut out = d.encode();
    if let Msg::Data { data, .. } = m {
        out.extend_from_slice(data);
    }
    out
}

/// Decodes a `ut_metadata` message: a bencoded dictionary, followed by the piece's bytes
/// for `data`.
pub fn decode(payload: &[u8]) -> Result<Msg, Error> {
    let (v, used) = bencode::decode_prefix(payload).map_err(|e| Error::Malformed(e.to_string()))?;
    let d = v.as_dict().ok_or_else(|| Error::Malformed("not a dictionary".into()))?;
    let int = |k: &str| d.get(k).and_then(|v| v.as_int());
    let kind = int("msg_type").ok_or_else(|| Error::Malformed("no integer msg_type".into()))?;
    let piece = int("piece")
        .filter(|p| (0..=u32::MAX as i64).contains(p))
        .ok_or_else(|| Error::Malformed("no valid piece".into()))? as u32;
    let rest = &payload[used..];
    match kind {
        0 | 2 if !rest.is_empty() => Err(Error::Malformed("bytes after the dictionary".into())),
        0 => Ok(Msg::Request { piece }),
        2 => Ok(Msg::Reject { piece }),
        1 => {
            let total_size = int("total_size")
                .filter(|t| *t >= 0)
                .ok_or_else(|| Error::Malformed("data without a valid total_size".into()))?;
            Ok(Msg::Data { piece, total_size: total_size as u64, data: rest.to_vec() })
        }
        t => Err(Error::UnknownType(t)),
    }
}

/// The number of pieces of a `size`-byte dictionary.
pub fn piece_count(size: usize) -> usize {
    size.div_ceil(PIECE)
}

/// The answer to a request for `piece` of `info` (the info dictionary's exact bytes):
/// `data` with the piece, or `reject` when there is no such piece.
pub fn serve(info: &[u8], piece: u32) -> Msg {
    let start = piece as usize * PIECE;
    if info.is_empty() || start >= info.len() {
        return Msg::Reject { piece };
    }
    let end = (start + PIECE).min(info.len());
    Msg::Data { piece, total_size: info.len() as u64, data: info[start..end].to_vec() }
}

/// What a peer says in its extension handshake (BEP 10) that matters here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtHandshake {
    /// The id the peer wants for `ut_metadata` messages sent to it; `None` when it has none.
    pub ut_metadata: Option<u8>,
    pub metadata_size: Option<u64>,
}

/// Our extension handshake: `m` maps `ut_metadata` to [`UT_METADATA_ID`]; `metadata_size`
/// is sent when we have the info dictionary (`Some(len)`, len > 0).
pub fn ext_handshake(listen_port: u16, metadata_size: Option<usize>, max_requests: usize) -> Vec<u8> {
    let m = bencode::dict([("ut_metadata", Owned::Int(UT_METADATA_ID as i64))]);
    let mut d = bencode::dict([
        ("m", m),
        ("p", Owned::Int(listen_port as i64)),
        ("reqq", Owned::Int(max_requests as i64)),
        ("v", Owned::str(concat!("shoal ", env!("CARGO_PKG_VERSION")))),
    ]);
    if let (Some(n), Owned::Dict(map)) = (metadata_size.filter(|n| *n > 0), &mut d) {
        map.insert(b"metadata_size".to_vec(), Owned::Int(n as i64));
    }
    if listen_port == 0 {
        if let Owned::Dict(map) = &mut d {
            map.remove(b"p".as_slice());
        }
    }
    d.encode()
}

/// Reads a peer's extension handshake; fields that are absent or of the wrong type are
/// `None` (BEP 10: unknown keys are ignored; an id of 0 means "disabled").
pub fn parse_ext_handshake(payload: &[u8]) -> Result<ExtHandshake, Error> {
    let v = bencode::decode_lenient(payload).map_err(|e| Error::Malformed(e.to_string()))?.value;
    let d = v.as_dict().ok_or_else(|| Error::Malformed("extension handshake is not a dictionary".into()))?;
    let ut_metadata = d
        .get("m")
        .and_then(|m| m.as_dict())
        .and_then(|m| m.get("ut_metadata"))
        .and_then(|v| v.as_int())
        .filter(|id| (1..=255).contains(id))
        .map(|id| id as u8);
    let metadata_size = d.get("metadata_size").and_then(|v| v.as_int()).filter(|n| *n >= 0).map(|n| n as u64);
    Ok(ExtHandshake { ut_metadata, metadata_size })
}

/// Puts the pieces of an info dictionary together. Pure: the caller asks what to request
/// next, hands over what arrived, and gets the bytes once they are complete and hash to
/// the info-hash.
#[derive(Debug)]
pub struct Assembler {
    buf: Vec<u8>,
    got: Vec<bool>,
    next: u32,
}

impl Assembler {
    /// Refuses a size of 0 or above [`MAX_METADATA_SIZE`] before allocating.
    pub fn new(size: u64) -> Result<Assembler, Error> {
        if size == 0 || size > MAX_METADATA_SIZE as u64 {
            return Err(Error::Size(size));
        }
        let size = size as usize;
        Ok(Assembler { buf: vec![0; size], got: vec![false; piece_count(size)], next: 0 })
    }

    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn pieces(&self) -> usize {
        self.got.len()
    }

    /// The next piece to request, if any is left to ask for.
    pub fn next_request(&mut self) -> Option<u32> {
        if (self.next as usize) < self.got.len() {
            self.next += 1;
            Some(self.next - 1)
        } else {
            None
        }
    }

    /// Stores a piece: it must be in range and exactly as long as that piece is.
    pub fn accept(&mut self, piece: u32, data: &[u8]) -> Result<(), Error> {
        let i = piece as usize;
        let start = i.saturating_mul(PIECE);
        let want = if i < self.got.len() { (self.buf.len() - start).min(PIECE) } else { 0 };
        if i >= self.got.len() || data.len() != want {
            return Err(Error::BadPiece { piece, len: data.len() });
        }
        self.buf[start..start + want].copy_from_slice(data);
        self.got[i] = true;
        Ok(())
    }

    pub fn complete(&self) -> bool {
        self.got.iter().all(|g| *g)
    }

    /// The assembled bytes, if complete and their SHA-1 is `info_hash`.
    pub fn finish(self, info_hash: &[u8; 20]) -> Result<Vec<u8>, Error> {
        if !self.complete() {
            return Err(Error::Malformed("incomplete".into()));
        }
        if crate::hashing::sha1(&self.buf) != *info_hash {
            return Err(Error::HashMismatch);
        }
        Ok(self.buf)
    }
}

/// Where to look for peers, and how long to try.
pub struct Fetch {
    pub info_hash: [u8; 20],
    pub peers: Vec<SocketAddr>,
    /// Tracker announce URLs (http:// or udp://).
    pub trackers: Vec<String>,
    pub timeout: Duration,
    /// Set by a signal: stop trying.
    pub shutdown: Arc<AtomicBool>,
    /// Called with one line per notable event (a peer refused, a tracker failed).
    pub log: Box<dyn Fn(&str) + Send + Sync>,
}

/// Why no metadata was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Neither peers nor trackers to ask.
    NoSources,
    /// Time ran out (or a signal came) before a peer gave metadata that hashes to the
    /// info-hash; what the last peer that failed did wrong, if any peer was tried.
    Timeout { secs: u64, peers_tried: usize, last: Option<String> },
    /// Every peer named failed, and there is no tracker to find others.
    AllFailed { peers_tried: usize, last: Option<String> },
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NoSources => write!(f, "no tracker and no peer to fetch the metadata from"),
            FetchError::Timeout { secs, peers_tried: 0, .. } => {
                write!(f, "no peer found to fetch the metadata from within {secs}s")
            }
            FetchError::Timeout { secs, peers_tried, last } => {
                write!(f, "no peer gave valid metadata within {secs}s ({peers_tried} tried")?;
                match last {
                    Some(l) => write!(f, "; last: {})", crate::sanitize::printable(l)),
                    None => write!(f, ")"),
                }
            }
            FetchError::AllFailed { peers_tried, last } => {
                write!(f, "no peer gave valid metadata ({peers_tried} tried, no tracker to find more")?;
                match last {
                    Some(l) => write!(f, "; last: {})", crate::sanitize::printable(l)),
                    None => write!(f, ")"),
                }
            }
        }
    }
}

impl std::error::Error for FetchError {}

/// Fetches the info dictionary: announces to the trackers for peers (again every few
/// seconds while none succeeds), asks up to eight peers at once, and answers the first
/// dictionary whose SHA-1 is the info-hash. Blocking; bounded by `f.timeout`.
pub fn fetch(f: Fetch) -> Result<Vec<u8>, FetchError> {
    if f.peers.is_empty() && f.trackers.is_empty() {
        return Err(FetchError::NoSources);
    }
    let start = Instant::now();
    let deadline = start + f.timeout;
    let peer_id = peer_id();
    let (tx, rx) = channel::unbounded::<(SocketAddr, Result<Vec<u8>, String>)>();
    let stop = Arc::new(AtomicBool::new(false));
    let mut queue: Vec<SocketAddr> = Vec::new();
    let mut seen: Vec<SocketAddr> = Vec::new();
    let add = |queue: &mut Vec<SocketAddr>, seen: &mut Vec<SocketAddr>, a: SocketAddr| {
        if !seen.contains(&a) {
            seen.push(a);
            queue.push(a);
        }
    };
    for a in &f.peers {
        add(&mut queue, &mut seen, *a);
    }
    let mut running = 0usize;
    let mut tried = 0usize;
    let mut last = None;
    let mut next_announce = start;
    // Trackers that answered: told `stopped` at the end.
    let mut announced: Vec<String> = Vec::new();
    let result = loop {
        let now = Instant::now();
        if now >= deadline || f.shutdown.load(Ordering::SeqCst) {
            break Err(FetchError::Timeout { secs: f.timeout.as_secs(), peers_tried: tried, last });
        }
        if f.trackers.is_empty() && queue.is_empty() && running == 0 {
            break Err(FetchError::AllFailed { peers_tried: tried, last });
        }
        if !f.trackers.is_empty() && now >= next_announce && queue.is_empty() && running == 0 {
            for url in &f.trackers {
                let left = deadline.saturating_duration_since(Instant::now()).min(TRACKER_TIMEOUT);
                match announce(url, &f.info_hash, &peer_id, tracker::Event::Started, left) {
                    Ok(peers) => {
                        if !announced.contains(url) {
                            announced.push(url.clone());
                        }
                        peers.into_iter().for_each(|a| add(&mut queue, &mut seen, a))
                    }
                    Err(e) => (f.log)(&e),
                }
            }
            // Peers that failed may be asked again after the next announce.
            seen.retain(|a| queue.contains(a));
            next_announce = Instant::now() + REANNOUNCE;
        }
        while running < PARALLEL && !queue.is_empty() {
            let addr = queue.remove(0);
            let (tx, stop, ih) = (tx.clone(), stop.clone(), f.info_hash);
            let left = deadline.saturating_duration_since(Instant::now()).min(PEER_TIMEOUT);
            let spawned = std::thread::Builder::new()
                .name(format!("metadata-{addr}"))
                .spawn(move || {
                    let r = from_peer(addr, ih, peer_id, left, &stop);
                    let _ = tx.send((addr, r));
                });
            if spawned.is_ok() {
                running += 1;
                tried += 1;
            }
        }
        let wait = if running > 0 {
            deadline.saturating_duration_since(Instant::now())
        } else {
            next_announce.min(deadline).saturating_duration_since(Instant::now())
        };
        // Wake at least once a second to notice a signal.
        match rx.recv_timeout(wait.min(Duration::from_secs(1))) {
            Ok((_, Ok(bytes))) => break Ok(bytes),
            Ok((addr, Err(why))) => {
                running -= 1;
                (f.log)(&format!("peer {addr}: {why}"));
                last = Some(format!("{addr}: {why}"));
            }
            Err(_) => {}
        }
    };
    stop.store(true, Ordering::SeqCst);
    // Take our placeholder entry (port 1) out of the trackers' peer lists.
    for url in &announced {
        let _ = announce(url, &f.info_hash, &peer_id, tracker::Event::Stopped, Duration::from_secs(2));
    }
    result
}

fn peer_id() -> [u8; 20] {
    let mut id = *b"-SH0100-000000000000";
    for chunk in id[8..].chunks_mut(4) {
        let r = tracker::random_u32().to_be_bytes();
        for (b, r) in chunk.iter_mut().zip(r) {
            *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[(r % 36) as usize];
        }
    }
    id
}

fn announce(url: &str, ih: &[u8; 20], peer_id: &[u8; 20], event: tracker::Event, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let req = tracker::AnnounceRequest {
        info_hash: *ih,
        peer_id: *peer_id,
        // Not listening while fetching metadata: port 1 (never dialled back usefully) is
        // replaced by the session's real port on its own announce.
        port: 1,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event,
        numwant: Some(50),
        key: tracker::random_u32(),
    };
    tracker::announce(url, &req, timeout.max(Duration::from_millis(100))).map(|r| r.peers).map_err(|e| e.to_string())
}

/// Fetches the dictionary from one peer; the error says what the peer did wrong.
fn from_peer(addr: SocketAddr, ih: [u8; 20], peer_id: [u8; 20], limit: Duration, stop: &AtomicBool) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + limit;
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(PEER_READ_TIMEOUT)).ok();
    s.set_write_timeout(Some(PEER_READ_TIMEOUT)).ok();
    s.write_all(&Handshake::new(ih, peer_id).encode()).map_err(|e| format!("sending handshake: {e}"))?;
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    s.read_exact(&mut hs).map_err(|e| format!("reading handshake: {e}"))?;
    let theirs = Handshake::decode(&hs).map_err(|e| e.to_string())?;
    if theirs.info_hash != ih {
        return Err("answered for another torrent".into());
    }
    if !theirs.supports_extensions() {
        return Err("no extension protocol (BEP 10)".into());
    }
    let mut out = Vec::new();
    wire::encode(&Message::Extended { id: 0, payload: ext_handshake(0, None, 250) }, &mut out);
    s.write_all(&out).map_err(|e| format!("sending extension handshake: {e}"))?;

    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    let mut their_id = None;
    let mut asm: Option<Assembler> = None;
    let mut in_flight = 0u32;
    loop {
        // Everything buffered first.
        while let Some((msg, used)) = wire::decode(&buf).map_err(|e| e.to_string())? {
            buf.drain(..used);
            let Message::Extended { id, payload } = msg else { continue };
            if id == 0 {
                let h = parse_ext_handshake(&payload).map_err(|e| e.to_string())?;
                let tid = h.ut_metadata.ok_or("no ut_metadata (BEP 9)")?;
                let size = h.metadata_size.ok_or("no metadata_size in its extension handshake")?;
                their_id = Some(tid);
                // A repeated handshake (BEP 10 allows one) keeps what arrived so far.
                match &asm {
                    Some(a) if a.size() as u64 == size => {}
                    Some(_) => return Err("changed its metadata_size".into()),
                    None => asm = Some(Assembler::new(size).map_err(|e| e.to_string())?),
                }
            } else if id == UT_METADATA_ID {
                let a = asm.as_mut().ok_or("ut_metadata before the extension handshake")?;
                match decode(&payload).map_err(|e| e.to_string())? {
                    Msg::Data { piece, total_size, data } => {
                        if total_size != a.size() as u64 {
                            return Err(format!("total_size {total_size} differs from metadata_size {}", a.size()));
                        }
                        a.accept(piece, &data).map_err(|e| e.to_string())?;
                        in_flight = in_flight.saturating_sub(1);
                    }
                    Msg::Reject { piece } => return Err(format!("rejected metadata piece {piece}")),
                    Msg::Request { piece } => {
                        let mut out = Vec::new();
                        if let Some(tid) = their_id {
                            let payload = encode(&Msg::Reject { piece });
                            wire::encode(&Message::Extended { id: tid, payload }, &mut out);
                            s.write_all(&out).map_err(|e| format!("write: {e}"))?;
                        }
                    }
                }
            }
        }
        if let Some(a) = asm.as_mut() {
            if a.complete() {
                return asm.take().unwrap().finish(&ih).map_err(|e| e.to_string());
            }
            let mut out = Vec::new();
            while in_flight < PIPELINE {
                let Some(piece) = a.next_request() else { break };
                let payload = encode(&Msg::Request { piece });
                wire::encode(&Message::Extended { id: their_id.unwrap_or(0), payload }, &mut out);
                in_flight += 1;
            }
            if !out.is_empty() {
                s.write_all(&out).map_err(|e| format!("write: {e}"))?;
            }
        }
        if stop.load(Ordering::SeqCst) {
            return Err("another peer answered first".into());
        }
        if Instant::now() >= deadline {
            return Err(format!("no complete metadata within {}s", limit.as_secs()));
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed the connection".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if buf.len() > wire::MAX_MESSAGE + 4 + (1 << 16) {
            return Err("buffer overrun".into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reject_round_trip() {
        assert_eq!(encode(&Msg::Request { piece: 0 }), b"d8:msg_typei0e5:piecei0ee");
        assert_eq!(decode(b"d8:msg_typei0e5:piecei0ee"), Ok(Msg::Request { piece: 0 }));
        assert_eq!(encode(&Msg::Reject { piece: 7 }), b"d8:msg_typei2e5:piecei7ee");
        assert_eq!(decode(&encode(&Msg::Reject { piece: 7 })), Ok(Msg::Reject { piece: 7 }));
    }

    #[test]
    fn data_carries_bytes_after_the_dictionary() {
        let m = Msg::Data { piece: 1, total_size: 16_400, data: b"xyz".to_vec() };
        let b = encode(&m);
        assert_eq!(b, b"d8:msg_typei1e5:piecei1e10:total_sizei16400eexyz");
        assert_eq!(decode(&b), Ok(m));
    }

    #[test]
    fn bad_messages_are_refused() {
        assert!(matches!(decode(b"le"), Err(Error::Malformed(_))));
        assert!(matches!(decode(b"d5:piecei0ee"), Err(Error::Malformed(_))));
        assert!(matches!(decode(b"d8:msg_typei0e5:piecei-1ee"), Err(Error::Malformed(_))));
        assert!(matches!(decode(b"d8:msg_typei1e5:piecei0ee"), Err(Error::Malformed(_))));
        assert!(matches!(decode(b"d8:msg_typei0e5:piecei0eeXX"), Err(Error::Malformed(_))));
        assert_eq!(decode(b"d8:msg_typei9e5:piecei0ee"), Err(Error::UnknownType(9)));
        assert!(decode(b"d8:msg_typei0e5:piecei").is_err());
    }

    #[test]
    fn serve_answers_data_or_reject() {
        let info: Vec<u8> = (0..PIECE + 10).map(|i| i as u8).collect();
        assert_eq!(serve(&info, 0), Msg::Data { piece: 0, total_size: info.len() as u64, data: info[..PIECE].to_vec() });
        assert_eq!(serve(&info, 1), Msg::Data { piece: 1, total_size: info.len() as u64, data: info[PIECE..].to_vec() });
        assert_eq!(serve(&info, 2), Msg::Reject { piece: 2 });
        assert_eq!(serve(&info, u32::MAX), Msg::Reject { piece: u32::MAX });
        assert_eq!(serve(&[], 0), Msg::Reject { piece: 0 });
    }

    #[test]
    fn extension_handshake_round_trip() {
        let h = parse_ext_handshake(&ext_handshake(6881, Some(1234), 250)).unwrap();
        assert_eq!(h, ExtHandshake { ut_metadata: Some(UT_METADATA_ID), metadata_size: Some(1234) });
        let h = parse_ext_handshake(&ext_handshake(0, None, 250)).unwrap();
        assert_eq!(h, ExtHandshake { ut_metadata: Some(UT_METADATA_ID), metadata_size: None });
        let h = parse_ext_handshake(b"d1:md11:ut_metadatai0eee").unwrap();
        assert_eq!(h.ut_metadata, None, "id 0 disables");
        assert!(parse_ext_handshake(b"i3e").is_err());
    }

    #[test]
    fn fetch_without_sources_or_with_only_dead_peers_ends_at_once() {
        let f = |peers| Fetch {
            info_hash: [1; 20],
            peers,
            trackers: Vec::new(),
            timeout: Duration::from_secs(60),
            shutdown: Arc::new(AtomicBool::new(false)),
            log: Box::new(|_| {}),
        };
        assert_eq!(fetch(f(Vec::new())), Err(FetchError::NoSources));
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let start = Instant::now();
        let e = fetch(f(vec![dead])).unwrap_err();
        assert!(matches!(e, FetchError::AllFailed { peers_tried: 1, .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(10));
        let text = e.to_string();
        assert!(text.starts_with("no peer gave valid metadata (1 tried") && text.contains(&dead.to_string()), "{text}");
    }

    #[test]
    fn assembler_checks_sizes_and_hash() {
        assert_eq!(Assembler::new(0).unwrap_err(), Error::Size(0));
        assert!(Assembler::new(MAX_METADATA_SIZE as u64 + 1).is_err());
        let info: Vec<u8> = (0..2 * PIECE + 5).map(|i| (i * 7) as u8).collect();
        let ih = crate::hashing::sha1(&info);
        let mut a = Assembler::new(info.len() as u64).unwrap();
        assert_eq!(a.pieces(), 3);
        assert_eq!((a.next_request(), a.next_request(), a.next_request(), a.next_request()), (Some(0), Some(1), Some(2), None));
        assert!(a.accept(2, &info[..PIECE]).is_err(), "last piece has 5 bytes");
        assert!(a.accept(3, &info[..5]).is_err());
        for p in 0..3u32 {
            if let Msg::Data { data, .. } = serve(&info, p) {
                a.accept(p, &data).unwrap();
            }
        }
        assert_eq!(a.finish(&ih).unwrap(), info);
        let mut b = Assembler::new(5).unwrap();
        b.accept(0, b"hello").unwrap();
        assert_eq!(b.finish(&ih).unwrap_err(), Error::HashMismatch);
    }
}
