//! One peer connection: a thread that does the handshake and then reads, and a writer
//! thread that owns the sending half.
//!
//! Design: blocking sockets with timeouts, two threads per connection. The reader decodes
//! messages (bounded: see `wire::MAX_MESSAGE`) and forwards them to the session thread over a
//! bounded crossbeam channel (so a flooding peer is slowed by TCP back-pressure, not by
//! our memory); the one exception is `request`, which it hands straight to its own writer,
//! so serving uploads costs the session nothing (BEP 9 `ut_metadata` requests likewise: the
//! reader answers them from [`Context::info_bytes`] through the writer, a bounded number
//! per connection). The writer receives [`Cmd`]s from a [`crate::mailbox`] (it sleeps at once
//! when there are none), serves
//! requests from storage (positional reads; the page cache does the caching) through the
//! session's upload token bucket, and flushes when its queue is empty. State the two
//! threads share with the session lives in [`PeerShared`] atomics, written only by the
//! connection's own threads: the writer sets `am_choking` when the session's
//! [`Cmd::Choke`] reaches it and adds to `outstanding` when it sends requests; the reader
//! takes from `outstanding` as blocks, rejects and chokes arrive. Why a connection ended is
//! a [`CloseReason`], never text to be matched.

use super::close::CloseReason;
use super::metadata;
use super::wire::{self, Handshake, Message};
use crate::picker::BlockRef;
pub use crate::picker::PeerKey;
use crate::rate::Bucket;
use crate::mailbox;
use crate::storage::Storage;
use crossbeam::channel::Sender;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Requests a peer may queue with us before it is dropped as a flood.
const MAX_QUEUED_REQUESTS: usize = 2048;
/// A peer that says nothing (not even keep-alive) for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(150);
/// The whole handshake must arrive within this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const KEEPALIVE: Duration = Duration::from_secs(60);

/// What the session tells a connection's writer.
pub enum Cmd {
    /// Send these messages, in order.
    Send(Vec<Message>),
    /// Request these blocks (counted as outstanding: only that many blocks are accepted).
    Request(Vec<BlockRef>),
    /// Choke (true) or unchoke the peer.
    Choke(bool),
    /// Serve blocks the peer requested (queued by the reader: the requests of one socket
    /// read together, so the writer wakes and sends once for them all).
    Serve(Vec<Serve>),
    Close,
}

/// A block the peer asked for.
#[derive(Clone, Copy, Debug)]
pub struct Serve {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// Counters and flags shared by a connection's threads and the session.
#[derive(Default)]
pub struct PeerShared {
    /// We are choking the peer: its requests are ignored.
    pub am_choking: AtomicBool,
    /// Payload bytes sent to the peer.
    pub uploaded: AtomicU64,
    /// Blocks we requested and have not received yet.
    pub outstanding: AtomicUsize,
    queued: AtomicUsize,
    closed: AtomicBool,
    /// The id the peer wants for `ut_metadata` messages (BEP 9), from its extension
    /// handshake; 0: none.
    ut_metadata: AtomicU8,
    /// `ut_metadata` requests answered on this connection (bounded: see `handle`).
    metadata_requests: AtomicUsize,
}

/// What a connection reports to the session.
pub enum Event {
    Connected {
        key: PeerKey,
        addr: SocketAddr,
        handshake: Handshake,
        outgoing: bool,
        cmd: mailbox::Sender<Cmd>,
        shared: Arc<PeerShared>,
        /// The pieces announced in our bitfield to this peer.
        sent_have: Vec<bool>,
    },
    Message {
        key: PeerKey,
        msg: Message,
    },
    /// Blocks that arrived together (one batch per socket read, in order).
    Blocks {
        key: PeerKey,
        blocks: Vec<(u32, u32, Vec<u8>)>,
    },
    Closed {
        key: PeerKey,
        addr: SocketAddr,
        reason: CloseReason,
    },
    ConnectFailed {
        key: PeerKey,
        addr: SocketAddr,
        reason: String,
    },
}

/// What every connection of a session needs.
pub struct Context {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub num_pieces: usize,
    pub storage: Arc<Storage>,
    /// Verified pieces, kept current by the session.
    pub have: Arc<Vec<AtomicBool>>,
    pub events: Sender<Event>,
    /// Bytes of received blocks not yet written: readers wait while it is spent.
    pub unwritten: Arc<crate::rate::ByteBudget>,
    pub upload: Arc<Bucket>,
    pub download: Arc<Bucket>,
    pub listen_port: u16,
    /// Super-seeding: announce no bitfield; the session reveals pieces a few at a time.
    pub hide_bitfield: bool,
    /// The exact bytes of the info dictionary, served to peers that ask with `ut_metadata`
    /// (BEP 9); their SHA-1 is `info_hash`.
    pub info_bytes: Arc<Vec<u8>>,
    /// Congestion control set on each connection (checked by the session beforehand: a
    /// refusal here is ignored and the connection keeps the kernel's default).
    pub congestion: crate::congestion::Congestion,
}

/// How a connection began.
pub enum Side {
    /// We dialled: we send our handshake first.
    Dialled,
    /// The peer dialled us and its handshake has been read (by the acceptor, which used its
    /// info-hash to pick this torrent).
    Accepted(Handshake),
}

/// Runs a connection to completion (call on its own thread).
pub fn run(ctx: Arc<Context>, key: PeerKey, mut stream: TcpStream, addr: SocketAddr, side: Side) {
    let shared = Arc::new(PeerShared {
        am_choking: AtomicBool::new(true),
        ..Default::default()
    });
    let reason = match connect(&ctx, key, &mut stream, addr, side, &shared) {
        Ok(()) => CloseReason::Shutdown,
        Err(e) => e,
    };
    shared.closed.store(true, Ordering::SeqCst);
    let _ = stream.shutdown(Shutdown::Both);
    let _ = ctx.events.send(Event::Closed { key, addr, reason });
}

fn connect(
    ctx: &Arc<Context>,
    key: PeerKey,
    stream: &mut TcpStream,
    addr: SocketAddr,
    side: Side,
    shared: &Arc<PeerShared>,
) -> Result<(), CloseReason> {
    let outgoing = matches!(side, Side::Dialled);
    stream.set_nodelay(true).ok();
    crate::congestion::apply(stream, &ctx.congestion).ok();
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).ok();
    stream.set_write_timeout(Some(Duration::from_secs(60))).ok();
    let ours = Handshake::new(ctx.info_hash, ctx.peer_id);
    let ioerr = CloseReason::io;
    if outgoing {
        stream
            .write_all(&ours.encode())
            .map_err(|e| ioerr("sending handshake", e))?;
    }
    let theirs = match side {
        Side::Accepted(h) => h,
        Side::Dialled => read_handshake(stream)?,
    };
    if theirs.info_hash != ctx.info_hash {
        return Err(CloseReason::OtherTorrent);
    }
    if !outgoing {
        stream
            .write_all(&ours.encode())
            .map_err(|e| ioerr("sending handshake", e))?;
    }
    if theirs.peer_id == ctx.peer_id {
        return Err(CloseReason::Ourselves);
    }

    // First messages: extension handshake, then what we have.
    let mut first = Vec::new();
    if theirs.supports_extensions() {
        // `m` offers ut_metadata, with the size of what we serve (BEP 9).
        let ext = metadata::ext_handshake(
            ctx.listen_port,
            Some(ctx.info_bytes.len()),
            MAX_QUEUED_REQUESTS / 2,
        );
        wire::encode(&Message::Extended { id: 0, payload: ext }, &mut first);
    }
    let sent_have: Vec<bool> = if ctx.hide_bitfield {
        vec![false; ctx.num_pieces]
    } else {
        ctx.have.iter().map(|h| h.load(Ordering::SeqCst)).collect()
    };
    if sent_have.iter().any(|h| *h) {
        wire::encode(
            &Message::Bitfield(wire::bitfield_bytes(&sent_have)),
            &mut first,
        );
    }
    stream
        .write_all(&first)
        .map_err(|e| ioerr("sending bitfield", e))?;

    let (cmd_tx, cmd_rx) = mailbox::unbounded();
    let writer_stream = stream.try_clone().map_err(|e| ioerr("cloning socket", e))?;
    {
        let ctx = ctx.clone();
        let shared = shared.clone();
        let payloads = Payloads::for_peer(addr);
        std::thread::Builder::new()
            .name(format!("peer-w-{key}"))
            .spawn(move || writer(ctx, writer_stream, cmd_rx, shared, payloads))
            .map_err(|e| ioerr("starting writer", e))?;
    }
    ctx.events
        .send(Event::Connected {
            key,
            addr,
            handshake: theirs,
            outgoing,
            cmd: cmd_tx.clone(),
            shared: shared.clone(),
            sent_have,
        })
        .map_err(|_| CloseReason::SessionEnded)?;
    let r = reader(ctx, key, stream, &cmd_tx, shared);
    let _ = cmd_tx.send(Cmd::Close);
    r
}

fn reader(
    ctx: &Context,
    key: PeerKey,
    stream: &mut TcpStream,
    cmd: &mailbox::Sender<Cmd>,
    shared: &PeerShared,
) -> Result<(), CloseReason> {
    stream.set_read_timeout(Some(READ_TIMEOUT)).ok();
    let mut inbound = super::inbound::Inbound::new();
    let mut unrequested = 0u32;
    let mut batch = Vec::new();
    let mut serves = Vec::new();
    loop {
        // Decode everything received; blocks go to the session in one batch, requests to
        // the writer in one command.
        loop {
            match inbound.next() {
                Ok(Some(msg)) => match msg {
                    Message::Piece { .. } => handle_block(ctx, msg, shared, &mut unrequested, &mut batch)?,
                    // Requests join the writer's batch; blocks before them need not go first.
                    msg @ Message::Request { .. } => handle(ctx, key, msg, cmd, shared, &mut serves)?,
                    msg => {
                        flush_blocks(ctx, key, &mut batch)?;
                        handle(ctx, key, msg, cmd, shared, &mut serves)?;
                    }
                },
                Ok(None) => break,
                Err(e) => return Err(CloseReason::Protocol(e.to_string())),
            }
        }
        flush_blocks(ctx, key, &mut batch)?;
        if !serves.is_empty() {
            cmd.send(Cmd::Serve(std::mem::take(&mut serves)))
                .map_err(|_| CloseReason::SessionEnded)?;
        }
        if shared.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        match inbound.fill(stream) {
            Ok(0) => return Err(CloseReason::PeerClosed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CloseReason::io("read", e)),
        }
    }
}

fn flush_blocks(
    ctx: &Context,
    key: PeerKey,
    batch: &mut Vec<(u32, u32, Vec<u8>)>,
) -> Result<(), CloseReason> {
    if batch.is_empty() {
        return Ok(());
    }
    let blocks = std::mem::take(batch);
    // Released by the session (blocks it drops) or the disk pool (blocks it wrote).
    ctx.unwritten
        .acquire(blocks.iter().map(|b| b.2.len()).sum());
    ctx.events
        .send(Event::Blocks { key, blocks })
        .map_err(|_| CloseReason::SessionEnded)
}

fn handle_block(
    ctx: &Context,
    msg: Message,
    shared: &PeerShared,
    unrequested: &mut u32,
    batch: &mut Vec<(u32, u32, Vec<u8>)>,
) -> Result<(), CloseReason> {
    let Message::Piece { index, begin, data } = msg else {
        return Ok(());
    };
    let fits = (index as usize) < ctx.num_pieces
        && data.len() as u32 <= wire::MAX_BLOCK
        && begin as u64 + data.len() as u64 <= ctx.storage.info().piece_size(index as usize);
    if !fits {
        return Err(CloseReason::Protocol(format!(
            "block of {} bytes at piece {index} offset {begin} does not fit",
            data.len()
        )));
    }
    // Blocks we asked for, plus a run of at most 64 others, get past here (bounding what a
    // hostile peer can make us buffer); the core decides which to keep.
    if shared
        .outstanding
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_err()
    {
        // A few late blocks after a choke or a cancel are normal (and passed on: the core
        // keeps those it still needs); a run of them is not.
        *unrequested += 1;
        if *unrequested > 64 {
            return Err(CloseReason::UnrequestedBlocks);
        }
    } else {
        *unrequested = 0;
    }
    ctx.download.take(data.len());
    batch.push((index, begin, data));
    Ok(())
}

/// Checks a request and queues it in `serves` for the writer (or drops it: the peer is
/// choked).
fn serve(ctx: &Context, shared: &PeerShared, r: Serve, serves: &mut Vec<Serve>) -> Result<(), CloseReason> {
    let Serve { index, begin, length } = r;
    let ok = (index as usize) < ctx.num_pieces
        && length > 0
        && length <= wire::MAX_BLOCK
        && begin as u64 + length as u64 <= ctx.storage.info().piece_size(index as usize);
    if !ok {
        return Err(CloseReason::InvalidRequest(format!(
            "piece {index} offset {begin} length {length}"
        )));
    }
    if shared.am_choking.load(Ordering::SeqCst) {
        return Ok(()); // choked peers' requests are dropped (BEP 3)
    }
    if shared.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED_REQUESTS {
        return Err(CloseReason::RequestFlood);
    }
    serves.push(r);
    Ok(())
}

fn handle(
    ctx: &Context,
    key: PeerKey,
    msg: Message,
    cmd: &mailbox::Sender<Cmd>,
    shared: &PeerShared,
    serves: &mut Vec<Serve>,
) -> Result<(), CloseReason> {
    fn gone<T>(_: T) -> CloseReason {
        CloseReason::SessionEnded
    }
    match msg {
        Message::KeepAlive => Ok(()),
        Message::Request { index, begin, length } => serve(ctx, shared, Serve { index, begin, length }, serves),
        // The peer drops what we asked for when it chokes us; a reject takes back one.
        Message::Choke => {
            shared.outstanding.store(0, Ordering::SeqCst);
            ctx.events.send(Event::Message { key, msg }).map_err(gone)
        }
        Message::Reject { .. } => {
            let _ = shared
                .outstanding
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
            ctx.events.send(Event::Message { key, msg }).map_err(gone)
        }
        Message::Cancel { .. } => Ok(()), // served or skipped by the writer; nothing to undo
        // The peer's extension handshake: note its ut_metadata id, pass it on to the core.
        Message::Extended { id: 0, payload } => {
            if let Ok(h) = metadata::parse_ext_handshake(&payload) {
                shared.ut_metadata.store(h.ut_metadata.unwrap_or(0), Ordering::SeqCst);
            }
            let msg = Message::Extended { id: 0, payload };
            ctx.events.send(Event::Message { key, msg }).map_err(gone)
        }
        // BEP 9, served here: a request is answered with the piece or a reject; what a
        // peer answers us is ignored (a session has its metadata). A peer may ask for the
        // whole dictionary a few times over, not endlessly.
        Message::Extended { id: metadata::UT_METADATA_ID, payload } => {
            let Ok(metadata::Msg::Request { piece }) = metadata::decode(&payload) else {
                return Ok(());
            };
            let limit = 4 * metadata::piece_count(ctx.info_bytes.len()) + 64;
            if shared.metadata_requests.fetch_add(1, Ordering::SeqCst) >= limit {
                return Err(CloseReason::RequestFlood);
            }
            let their = shared.ut_metadata.load(Ordering::SeqCst);
            if their == 0 {
                return Ok(());
            }
            let payload = metadata::encode(&metadata::serve(&ctx.info_bytes, piece));
            cmd.send(Cmd::Send(vec![Message::Extended { id: their, payload }]))
                .map_err(gone)
        }
        msg => ctx.events.send(Event::Message { key, msg }).map_err(gone),
    }
}

/// A writer's output buffer. Messages are appended at `pos`; the bytes past it stay
/// allocated and initialized (zeroed once, when the buffer first grows), so a block is read
/// from storage straight into place without zeroing 16 KiB first (that `memset` was 1.2 %
/// of the 32-host testbed's CPU).
#[derive(Default)]
struct OutBuf {
    buf: Vec<u8>,
    pos: usize,
    scratch: Vec<u8>,
}

impl OutBuf {
    /// The next `n` bytes of the buffer, now part of what is sent.
    fn slot(&mut self, n: usize) -> &mut [u8] {
        let end = self.pos + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let at = std::mem::replace(&mut self.pos, end);
        &mut self.buf[at..end]
    }

    /// Appends what `encode` writes.
    fn push(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let mut tmp = std::mem::take(&mut self.scratch);
        tmp.clear();
        encode(&mut tmp);
        self.slot(tmp.len()).copy_from_slice(&tmp);
        self.scratch = tmp;
    }

    fn msg(&mut self, m: &Message) {
        self.push(|v| wire::encode(m, v));
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.pos]
    }

    fn len(&self) -> usize {
        self.pos
    }

    fn is_empty(&self) -> bool {
        self.pos == 0
    }

    fn clear(&mut self) {
        self.truncate(0);
    }

    /// Takes back what was appended after the first `len` bytes.
    fn truncate(&mut self, len: usize) {
        self.pos = self.pos.min(len);
    }
}

/// How a writer sends block payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Payloads {
    /// Read from storage into the output buffer, then written with the messages around
    /// them: two copies (page cache to buffer, buffer to socket).
    Copied,
    /// Straight from the page cache to the socket (`sendfile`): no copy through user
    /// space. The socket is corked while a batch of blocks goes out, so headers and payloads
    /// fill whole segments.
    FromPageCache,
}

impl Payloads {
    /// `sendfile` for every peer but one on loopback. On the fleet testbed (32 hosts on one
    /// machine, veth links) `sendfile` used 3–7 % less CPU per GB; a remote peer's receive
    /// costs nothing here at all. A loopback peer is on this machine and reads our blocks
    /// at once: it then copies them from page-cache pages that are cold in the CPU cache
    /// instead of from socket buffers just written, and the 1 GiB pair on loopback lost
    /// 10–20 % of its rate and bfetch 0.1–0.2 CPU-s per GB (docs/BENCHMARKS.md).
    fn for_peer(addr: SocketAddr) -> Payloads {
        if addr.ip().to_canonical().is_loopback() {
            Payloads::Copied
        } else {
            Payloads::FromPageCache
        }
    }
}

/// Sets or clears `TCP_CORK` (partial segments wait until it is cleared); false if the
/// kernel refused.
fn cork(stream: &TcpStream, on: bool) -> bool {
    let v = libc::c_int::from(on);
    // SAFETY: a valid socket and an int-sized option value that outlives the call.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

fn writer(ctx: Arc<Context>, mut stream: TcpStream, cmds: mailbox::Receiver<Cmd>, shared: Arc<PeerShared>, payloads: Payloads) {
    // Messages are built in `out` (blocks read from storage straight into it: one copy from
    // the page cache) and written when it holds 256 KiB or the queue is empty. With
    // payloads from the page cache, `out` holds the messages before a block and its header,
    // and goes out corked just before the payload.
    const FLUSH_AT: usize = 1 << 18;
    let mut out = OutBuf::default();
    let mut corked = false;
    // Sends what is in `out` (false: the connection is gone).
    let flush = |stream: &mut TcpStream, out: &mut OutBuf| -> bool {
        let ok = stream.write_all(out.bytes()).is_ok();
        out.clear();
        ok
    };
    'cmds: loop {
        let c = match cmds.recv_timeout(KEEPALIVE) {
            Ok(c) => c,
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => Cmd::Send(vec![Message::KeepAlive]),
            Err(_) => break,
        };
        match c {
            Cmd::Close => break,
            Cmd::Send(ms) => ms.iter().for_each(|m| out.msg(m)),
            Cmd::Request(blocks) => {
                shared.outstanding.fetch_add(blocks.len(), Ordering::SeqCst);
                for b in blocks {
                    out.msg(&Message::Request {
                        index: b.index,
                        begin: b.begin,
                        length: b.length,
                    });
                }
            }
            Cmd::Choke(choke) => {
                shared.am_choking.store(choke, Ordering::SeqCst);
                out.msg(if choke { &Message::Choke } else { &Message::Unchoke });
            }
            Cmd::Serve(list) => {
                for Serve { index, begin, length } in list {
                    shared.queued.fetch_sub(1, Ordering::SeqCst);
                    if shared.am_choking.load(Ordering::SeqCst)
                        || !ctx.have[index as usize].load(Ordering::SeqCst)
                    {
                        continue;
                    }
                    ctx.upload.take(length as usize);
                    if payloads == Payloads::FromPageCache {
                        corked = corked || cork(&stream, true);
                        out.push(|v| wire::encode_piece_header(index, begin, length, v));
                        let sent = send_all_more(&stream, out.bytes()).is_ok()
                            && ctx.storage.send_to(index as usize, begin as u64, length as u64, &stream).is_ok();
                        out.clear();
                        if !sent {
                            // Part of the block may be out: the connection cannot go on.
                            break 'cmds;
                        }
                        shared.uploaded.fetch_add(length as u64, Ordering::SeqCst);
                        continue;
                    }
                    let start = out.len();
                    out.push(|v| wire::encode_piece_header(index, begin, length, v));
                    if ctx
                        .storage
                        .read(index as usize, begin as u64, out.slot(length as usize))
                        .is_err()
                    {
                        // What is already in `out` still goes; never this block half read.
                        out.truncate(start);
                        break 'cmds;
                    }
                    shared.uploaded.fetch_add(length as u64, Ordering::SeqCst);
                    if out.len() >= FLUSH_AT && !flush(&mut stream, &mut out) {
                        break 'cmds;
                    }
                }
            }
        }
        if (out.len() >= FLUSH_AT || cmds.is_empty()) && !out.is_empty() && !flush(&mut stream, &mut out) {
            break;
        }
        // Nothing more queued: what the cork holds goes out now.
        if corked && cmds.is_empty() {
            cork(&stream, false);
            corked = false;
        }
    }
    let _ = stream.write_all(out.bytes());
    shared.closed.store(true, Ordering::SeqCst);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Sends all of `buf` flagged as more to come (`MSG_MORE`).
fn send_all_more(stream: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        let n = crate::storage::send_more(stream.as_raw_fd(), buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads and decodes the peer's handshake.
pub fn read_handshake(stream: &mut TcpStream) -> Result<Handshake, CloseReason> {
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    stream.read_exact(&mut hs).map_err(|e| CloseReason::io("reading handshake", e))?;
    Handshake::decode(&hs).map_err(|e| CloseReason::BadHandshake(e.to_string()))
}

/// Opens an outgoing connection and runs it (call on its own thread).
pub fn dial(ctx: Arc<Context>, key: PeerKey, addr: SocketAddr) {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => run(ctx, key, s, addr, Side::Dialled),
        Err(e) => {
            let _ = ctx.events.send(Event::ConnectFailed {
                key,
                addr,
                reason: e.to_string(),
            });
        }
    }
}

/// Runs `f` on a new named thread; a failure to start one (thread exhaustion) is answered
/// as an error, never a panic.
pub fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new().name(name).spawn(f).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_buffer_sends_what_was_appended_since_the_last_clear() {
        let mut out = OutBuf::default();
        out.msg(&Message::Have(7));
        out.slot(3).copy_from_slice(b"abc");
        let mut want = Vec::new();
        wire::encode(&Message::Have(7), &mut want);
        want.extend_from_slice(b"abc");
        assert_eq!(out.bytes(), &want[..]);
        out.clear();
        assert!(out.is_empty());
        // Reused space: only what is appended now is sent, not what was there before.
        out.msg(&Message::Unchoke);
        let mut want = Vec::new();
        wire::encode(&Message::Unchoke, &mut want);
        assert_eq!(out.bytes(), &want[..]);
        let at = out.len();
        out.push(|v| wire::encode_piece_header(1, 0, 4, v));
        out.slot(4).copy_from_slice(b"data");
        out.truncate(at);
        assert_eq!(out.bytes(), &want[..], "a block taken back leaves nothing of it");
    }

    /// A seed of one 100 000-byte file in 32 KiB pieces (all held), its content, and a
    /// connection context for it; `events` is kept alive by the caller.
    fn seed_context(tag: &str) -> (std::path::PathBuf, Vec<u8>, Arc<Context>, crossbeam::channel::Receiver<Event>) {
        use crate::create::{self, Options};
        let d = std::env::temp_dir().join(format!("shoal-conn-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(d.join("f"), &data).unwrap();
        let bytes = create::create(&d.join("f"), &Options { piece_length: Some(32768), ..Default::default() }, &mut |_, _| {}).unwrap();
        let m = crate::metainfo::Metainfo::parse(&bytes).unwrap();
        let storage = Storage::open_seed(Arc::new(m.info.clone()), m.info_hash, &d.join("f")).unwrap();
        let n = m.info.num_pieces();
        let (events, events_rx) = crossbeam::channel::unbounded();
        let ctx = Arc::new(Context {
            info_hash: m.info_hash.0,
            peer_id: [1; 20],
            num_pieces: n,
            storage: Arc::new(storage),
            have: Arc::new((0..n).map(|_| AtomicBool::new(true)).collect()),
            events,
            unwritten: Arc::new(crate::rate::ByteBudget::new(1 << 20)),
            upload: Arc::new(Bucket::new(0)),
            download: Arc::new(Bucket::new(0)),
            listen_port: 0,
            hide_bitfield: false,
            info_bytes: Arc::new(Vec::new()),
            congestion: Default::default(),
        });
        (d, data, ctx, events_rx)
    }

    /// Runs a writer with `payloads` over a loopback connection, gives it `cmds` then
    /// `Close`, and answers every message the other end decoded (and whether bytes were left
    /// over that make no whole message).
    fn run_writer(ctx: &Arc<Context>, payloads: Payloads, cmds: Vec<Cmd>) -> (Vec<Message>, bool) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let (tx, rx) = mailbox::unbounded();
        let shared = Arc::new(PeerShared::default());
        // The reader counts each request it queues for the writer.
        let queued = cmds.iter().map(|c| if let Cmd::Serve(l) = c { l.len() } else { 0 }).sum();
        shared.queued.store(queued, Ordering::SeqCst);
        for cmd in cmds {
            tx.send(cmd).ok().unwrap();
        }
        tx.send(Cmd::Close).ok().unwrap();
        let w = {
            let ctx = ctx.clone();
            std::thread::spawn(move || writer(ctx, s, rx, shared, payloads))
        };
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        w.join().unwrap();
        let (mut msgs, mut at) = (Vec::new(), 0);
        while let Some((m, used)) = wire::decode(&got[at..]).unwrap() {
            msgs.push(m);
            at += used;
        }
        (msgs, at < got.len())
    }

    #[test]
    fn served_blocks_carry_the_files_bytes_between_the_other_messages_either_way() {
        let (d, data, ctx, _events) = seed_context("serve");
        let serve = |index: u32, begin: u32, length: u32| Serve { index, begin, length };
        let blocks = [(0, 0, 16384), (0, 16384, 16384), (3, 0, 100_000 - 3 * 32768), (1, 5, 3), (2, 32767, 1)];
        for payloads in [Payloads::Copied, Payloads::FromPageCache] {
            let cmds = vec![
                Cmd::Send(vec![Message::Have(2)]),
                Cmd::Choke(false),
                Cmd::Serve(blocks[..3].iter().map(|&(i, b, n)| serve(i, b, n)).collect()),
                Cmd::Send(vec![Message::Have(1)]),
                Cmd::Serve(blocks[3..].iter().map(|&(i, b, n)| serve(i, b, n)).collect()),
            ];
            let (msgs, rest) = run_writer(&ctx, payloads, cmds);
            assert!(!rest, "{payloads:?}: stray bytes after the last message");
            let mut want = vec![Message::Have(2), Message::Unchoke];
            let piece = |&(index, begin, length): &(u32, u32, u32)| {
                let at = index as usize * 32768 + begin as usize;
                Message::Piece { index, begin, data: data[at..at + length as usize].to_vec() }
            };
            want.extend(blocks[..3].iter().map(piece));
            want.push(Message::Have(1));
            want.extend(blocks[3..].iter().map(piece));
            assert_eq!(msgs, want, "{payloads:?}");
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_block_of_a_file_cut_short_is_never_sent_whole_either_way() {
        let (d, data, ctx, _events) = seed_context("cut");
        // The file loses its last piece and half of the third under the seed.
        std::fs::OpenOptions::new().write(true).open(d.join("f")).unwrap().set_len(2 * 32768 + 16384).unwrap();
        for payloads in [Payloads::Copied, Payloads::FromPageCache] {
            let cmds = vec![Cmd::Serve(vec![
                Serve { index: 0, begin: 0, length: 16384 },
                Serve { index: 2, begin: 16384, length: 16384 },
                Serve { index: 1, begin: 0, length: 16384 },
            ])];
            let (msgs, _) = run_writer(&ctx, payloads, cmds);
            // The block before the cut may go; the cut one never decodes, nor anything after.
            let want = Message::Piece { index: 0, begin: 0, data: data[..16384].to_vec() };
            assert!(msgs.len() <= 1, "{payloads:?}: {} messages", msgs.len());
            assert!(msgs.iter().all(|m| *m == want), "{payloads:?}: a block that is not the file's");
        }
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn payloads_are_copied_for_loopback_peers_only() {
        let at = |s: &str| Payloads::for_peer(s.parse().unwrap());
        assert_eq!(at("127.0.0.1:6881"), Payloads::Copied);
        assert_eq!(at("[::1]:6881"), Payloads::Copied);
        assert_eq!(at("[::ffff:127.0.0.1]:6881"), Payloads::Copied);
        assert_eq!(at("10.77.0.3:6881"), Payloads::FromPageCache);
        assert_eq!(at("[fd00::3]:6881"), Payloads::FromPageCache);
    }
}
