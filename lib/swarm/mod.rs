//! The swarm core: every decision of one torrent's session as a state machine without I/O.
//!
//! Inputs ([`Input`]) come in with the time (`now`, a `Duration` since any fixed epoch);
//! outputs ([`Output`]) go out in the order they were decided: messages to send, chokes to
//! set, connections to close or open, blocks to write, pieces to hash, resume data to save,
//! announces, log lines. No threads, sockets, clocks or process-global randomness are used
//! here: the random numbers come from a seeded generator in [`Config`]. The threaded driver
//! (`session`) and the fleet simulator (`examples/fleetsim.rs`) both run this same code.
//!
//! Parts, one job each: [`peers`] (the peer table and the report history), [`admission`]
//! (backoff, strikes, bans), the requester around [`Picker`] (here), [`choker`] (a pure
//! function), [`superseed`] (reveals using the picker's availability counts),
//! [`webseed`] (when an HTTP server is asked for a piece) and [`lifecycle`] (what happens
//! after our copy is complete).
//!
//! Invariants:
//! - a piece counts as ours only after [`Input::Hashed`] said its SHA-1 matched; only then
//!   is it announced (HAVE), reported ([`Output::Verified`]) and saved in resume data;
//! - a block is written only if the picker had asked the sending peer for it and nobody
//!   delivered it first; every other block is discarded ([`Output::Discard`]);
//! - a piece that fails its hash is fetched again from a single peer; a peer that alone
//!   sent a failed piece gets a strike, and [`admission::MAX_STRIKES`] strikes ban it;
//! - the picker's availability counts equal the sum of the connected peers' bitfields.
//!
//! The payload type `P` is opaque: the driver passes the block bytes, the simulator passes
//! a marker of whether the block is corrupt.

pub mod admission;
pub mod choker;
pub mod lifecycle;
pub mod peers;
pub mod rng;
pub mod superseed;
pub mod webseed;

use crate::peer::close::CloseReason;
use crate::peer::wire::{self, Message};
use crate::picker::{Arrival, BlockRef, PeerKey, Picker};
use admission::Admission;
use choker::{Mode, Optimistic};
pub use lifecycle::Lifecycle;
pub use peers::PeerReport;
use peers::{Peer, PeerTable};
use rng::Rng;
use webseed::WebSeed;
pub use webseed::WebSeedReport;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

/// A peer with requests outstanding that sends nothing for this long loses them...
pub const SNUB_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and is asked for nothing more for this long.
pub const SNUB_PENALTY: Duration = Duration::from_secs(30);
/// Fewest and most bytes requested from one peer at a time (8 and 512 blocks of 16 KiB;
/// the simulator's larger blocks keep the same bytes in flight).
const MIN_DEPTH: u64 = 128 << 10;
const MAX_DEPTH: u64 = 8 << 20;
/// Requests kept in flight to a peer: this long at its recent rate (within the depths above).
/// A peer serves requests in order, so a request for a piece that just appeared waits behind
/// all of these: at 2 s (as before) each hop of a fresh piece through the fleet took up to
/// 2 s, and hosts lagged the origin by several seconds (docs/BENCHMARKS.md, "Fleet latency").
const REQUEST_AHEAD: Duration = Duration::from_millis(500);
/// Below this many blocks in flight a peer may be given endgame duplicates.
const ENDGAME_QUEUE: usize = 4;
/// Requests to a peer are topped up once this part of its depth (at least 4 blocks) has
/// arrived: fewer, larger batches, each one wake-up of the peer's reader and writer.
const REFILL_PART: usize = 4;
/// The driver's pause between passes is at most this part of the time a peer's requests in
/// flight last (see [`Core::pass_pause`]).
const PAUSE_PART: f64 = 8.0;
/// A fresh resume file (with an fsync of the data) at most this often.
const RESUME_SYNC_EVERY: Duration = Duration::from_secs(5);
/// Verified pieces are recorded in the resume file at most this often (and on every tick).
/// Each save creates, writes and renames a file: at 100 ms, 32 fetchers on one machine
/// spent 6 % of its CPU on it (ext4 inode churn). A fetcher killed between saves asks again
/// for at most a second's pieces.
pub const RESUME_EVERY: Duration = Duration::from_secs(1);
/// Verified pieces are announced (`have`) to the peers that did not send them at most this
/// often (and on every tick): see [`Input::Flush`].
pub const BATCH_EVERY: Duration = Duration::from_millis(100);

/// The pause allowed by one peer with `in_flight` bytes requested that sends `rate` bytes a
/// second (see [`Core::pass_pause`]). A peer with nothing in flight, or that has sent
/// nothing for a while (a peer that just unchoked us while others send), allows `max`: its
/// first blocks are answered at most `max` late, once. (Allowing less made the 32-host
/// testbed's sessions wake four times as often: peers are unchoked and choked all the time
/// there.)
fn pause_for(in_flight: f64, rate: f64, max: Duration) -> Duration {
    if in_flight <= 0.0 || rate <= 0.0 {
        return max;
    }
    max.min(Duration::from_secs_f64(in_flight / rate / PAUSE_PART))
}

#[derive(Debug, Clone)]
pub struct Config {
    pub peer_id: [u8; 20],
    pub max_peers: usize,
    /// Peers unchoked at once (upload slots).
    pub upload_slots: usize,
    /// Reveal pieces one peer at a time so each byte leaves us about once.
    pub super_seed: bool,
    pub lifecycle: Lifecycle,
    /// Give up after this long without completing.
    pub timeout: Option<Duration>,
    /// Give up when no peer is connected for this long.
    pub stall_timeout: Option<Duration>,
    /// Peers given by hand (dialled like tracker peers; failures to reach them are logged).
    pub peers: Vec<SocketAddr>,
    /// Seed of the core's random numbers (piece ties, optimistic unchokes, dial order).
    pub seed: u64,
    /// Bytes per requested block (16 KiB on the wire).
    pub block: u32,
    /// Piece geometry.
    pub piece_length: u64,
    pub total_length: u64,
    /// Web seeds (BEP 19), by name; inputs and outputs refer to them by index.
    pub web_seeds: Vec<String>,
}

/// Something that happened, for the core to decide on.
#[derive(Debug)]
pub enum Input<P> {
    /// A connection finished its handshake. `sent_have` holds the pieces announced in the
    /// bitfield it sent (the core sends HAVEs for pieces verified since).
    Connected {
        key: PeerKey,
        addr: SocketAddr,
        peer_id: [u8; 20],
        outgoing: bool,
        sent_have: Vec<bool>,
    },
    /// A dial asked for by [`Output::Dial`] failed before a connection existed.
    ConnectFailed {
        key: PeerKey,
        addr: SocketAddr,
        reason: String,
    },
    Closed {
        key: PeerKey,
        addr: SocketAddr,
        reason: CloseReason,
    },
    Message {
        key: PeerKey,
        msg: Message,
    },
    /// Blocks that arrived from one peer, in order.
    Blocks {
        key: PeerKey,
        blocks: Vec<(BlockRef, P)>,
    },
    /// Blocks that arrived from web seed `seed` (an index into [`Config::web_seeds`]).
    WebBlocks {
        seed: usize,
        blocks: Vec<(BlockRef, P)>,
    },
    /// A web seed request (`blocks`, as asked) failed; those it had not delivered are
    /// asked of others. `retry_after`: the server said when to come back.
    WebFailed {
        seed: usize,
        blocks: Vec<BlockRef>,
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Payload bytes sent to a peer so far (its connection counts them).
    Uploaded {
        key: PeerKey,
        total: u64,
    },
    /// These blocks reached the disk.
    Written(Vec<BlockRef>),
    Hashed {
        index: u32,
        ok: bool,
    },
    /// A resume save was not queued (the disk is busy): try again later.
    ResumeSkipped,
    /// The content is in its final place and durable.
    Finalized,
    /// Peers from a tracker.
    Peers(Vec<SocketAddr>),
    /// Peers downloading, as the tracker counts them.
    SwarmIncomplete(u32),
    /// Periodic work; the driver sends one about every second.
    Tick,
    /// Announces verified pieces and saves the resume record when they have waited long
    /// enough (the driver sends one at least every [`BATCH_EVERY`] while
    /// [`Core::flush_waiting`] says so).
    Flush,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announce {
    Completed,
    /// Poll the swarm's counts often (lingering) or stop polling.
    Poll(bool),
}

/// What the core decided, for the driver to carry out.
#[derive(Debug)]
pub enum Output<P> {
    Send {
        key: PeerKey,
        msg: Message,
    },
    /// A message that may wait for whatever the connection sends next, at most about a
    /// second: a batched `have` to an interested peer we choke (it cannot ask us for the
    /// piece yet), so its writer and the peer's reader are not woken for it alone.
    Notify {
        key: PeerKey,
        msg: Message,
    },
    /// Request these blocks (the connection counts them as outstanding).
    Request {
        key: PeerKey,
        blocks: Vec<BlockRef>,
    },
    /// Choke or unchoke (the connection sends the message and then ignores or serves the
    /// peer's requests).
    SetChoke {
        key: PeerKey,
        choke: bool,
    },
    Close {
        key: PeerKey,
        reason: CloseReason,
    },
    /// Fetch these blocks from web seed `seed` (whole pieces, in order), answering with
    /// [`Input::WebBlocks`] as they arrive or [`Input::WebFailed`].
    WebRequest {
        seed: usize,
        blocks: Vec<BlockRef>,
    },
    Dial {
        key: PeerKey,
        addr: SocketAddr,
    },
    Write(Vec<(BlockRef, P)>),
    /// Bytes of received blocks that were dropped (not written).
    Discard(usize),
    Hash(u32),
    /// A piece passed its hash check: it may be served from now on.
    Verified(u32),
    /// Save resume data. `have`: verified pieces; `synced`: pieces whose data an fsync
    /// covers; with `sync`, fsync the data first, after which `synced` is `have`.
    SaveResume {
        have: Vec<bool>,
        synced: Vec<bool>,
        sync: bool,
    },
    /// Every piece is verified: move the content to its final name and make it durable,
    /// then answer [`Input::Finalized`].
    Finalize,
    Announce(Announce),
    Log(String),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Complete (and finalized), and the lifecycle says stop.
    Done,
    /// Could not finish: timed out, or stalled without peers.
    Unfinished(String),
}

pub struct Core<P> {
    cfg: Config,
    picker: Picker,
    peers: PeerTable,
    admission: Admission,
    rng: Rng,
    out: Vec<Output<P>>,
    /// A connection or a peer's choke or interest changed since the driver last asked for a
    /// pause: the next pass comes soon (see [`Core::pass_pause`]).
    prompt: bool,
    next_key: PeerKey,
    started: Duration,
    completed_at: Option<Duration>,
    finalized: bool,
    last_peer_seen: Duration,
    downloaded: u64,
    hash_failures: u32,
    resume_dirty: bool,
    synced: Vec<bool>,
    last_sync: Duration,
    /// When the resume file was last queued for saving.
    last_save: Duration,
    /// Verified pieces not yet announced to every peer, with the peers told at once.
    pending_haves: Vec<(u32, Vec<PeerKey>)>,
    /// When the oldest of `pending_haves` was verified.
    haves_since: Option<Duration>,
    last_choke: Option<Duration>,
    optimistic: Optimistic,
    swarm_incomplete: Option<u32>,
    all_seeds_since: Option<Duration>,
    end: Option<End>,
    web: Vec<WebSeed>,
    /// When a peer last sent us a block we wanted (for the web seeds' starvation rule).
    last_payload: Duration,
}

impl<P> Core<P> {
    /// A core for a torrent of which `have` is verified. Look at [`Core::outputs`] after.
    pub fn new(cfg: Config, have: Vec<bool>, now: Duration) -> Core<P> {
        let mut rng = Rng::new(cfg.seed);
        let picker = Picker::with_block(
            cfg.piece_length,
            cfg.total_length,
            &have,
            rng.next_u64(),
            cfg.block,
        );
        let mut admission = Admission::default();
        for a in &cfg.peers {
            admission.learn(*a, now);
        }
        let web: Vec<WebSeed> = cfg
            .web_seeds
            .iter()
            .enumerate()
            .map(|(i, n)| WebSeed::new(n.clone(), webseed::key(i)))
            .collect();
        let mut core = Core {
            picker,
            peers: PeerTable::default(),
            admission,
            rng,
            out: Vec::new(),
            prompt: false,
            next_key: 1,
            web,
            last_payload: now,
            started: now,
            completed_at: None,
            finalized: false,
            last_peer_seen: now,
            downloaded: 0,
            hash_failures: 0,
            resume_dirty: false,
            synced: have,
            last_sync: now,
            last_save: Duration::ZERO,
            pending_haves: Vec::new(),
            haves_since: None,
            last_choke: None,
            optimistic: Optimistic::default(),
            swarm_incomplete: None,
            all_seeds_since: None,
            end: None,
            cfg,
        };
        if core.picker.complete() {
            core.on_complete(now);
        } else {
            core.web_request_more(now);
        }
        core
    }

    /// Takes the outputs decided so far, in order.
    pub fn outputs(&mut self) -> std::vec::Drain<'_, Output<P>> {
        self.out.drain(..)
    }

    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    pub fn complete(&self) -> bool {
        self.picker.complete()
    }

    /// Verified pieces wait to be announced: send [`Input::Flush`] within [`BATCH_EVERY`].
    /// (Pieces waiting only for the resume record are saved by the next tick.)
    pub fn flush_waiting(&self) -> bool {
        !self.pending_haves.is_empty()
    }

    fn resume_waiting(&self) -> bool {
        self.resume_dirty && self.completed_at.is_none()
    }

    pub fn completed_at(&self) -> Option<Duration> {
        self.completed_at
    }

    pub fn have_bytes(&self) -> u64 {
        self.picker.have_bytes()
    }

    pub fn have_vec(&self) -> Vec<bool> {
        self.picker.have_vec()
    }

    pub fn picker(&self) -> &Picker {
        &self.picker
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    pub fn peer_ids(&self) -> Vec<[u8; 20]> {
        self.peers.values().map(|p| p.peer_id).collect()
    }

    pub fn is_banned(&self, id: &[u8; 20]) -> bool {
        self.admission.is_banned(id)
    }

    /// Payload bytes received, including blocks that were discarded.
    pub fn downloaded(&self) -> u64 {
        self.downloaded
    }

    pub fn uploaded(&self) -> u64 {
        self.peers.uploaded()
    }

    pub fn hash_failures(&self) -> u32 {
        self.hash_failures
    }

    pub fn peer_reports(&self) -> Vec<PeerReport> {
        self.peers.reports()
    }

    pub fn web_seed_reports(&self) -> Vec<WebSeedReport> {
        self.web.iter().map(|w| w.report()).collect()
    }

    /// Recounts what the core keeps counted (the picker's counts, availability as the sum
    /// of the peers' bitfields, each peer's wanted pieces) and answers whether all agree.
    /// O(peers × pieces): for tests and the simulator's invariant checks.
    pub fn consistent(&self) -> bool {
        if !self.picker.consistent() {
            return false;
        }
        let n = self.picker.num_pieces();
        let mut avail = vec![0u32; n];
        for p in self.peers.values() {
            let wanted = (0..n)
                .filter(|i| p.has[*i] && !self.picker.have(*i))
                .count();
            if wanted != p.wanted || p.has_count != p.has.iter().filter(|h| **h).count() {
                return false;
            }
            for (a, h) in avail.iter_mut().zip(&p.has) {
                *a += *h as u32;
            }
        }
        (0..n).all(|i| avail[i] == self.picker.availability(i))
    }

    /// How long the driver may let events gather before its next pass: a
    /// [`PAUSE_PART`]th of the time the requests in flight to the fastest-draining peer
    /// last at its recent rate ([`crate::rate::Meter::recent_rate`]: right from the first
    /// blocks), at most `max`. On a slow link a pass can wait long (fewer wake-ups of this
    /// thread and of every thread its outputs feed) and no pipeline runs dry meanwhile; at a
    /// gigabyte per second the answer is well under a millisecond. After a connection or a
    /// peer's choke, unchoke, interest or bitfield it is a [`PAUSE_PART`]th of `max`: what
    /// starts a transfer is answered promptly.
    pub fn pass_pause(&mut self, now: Duration, max: Duration) -> Duration {
        if std::mem::take(&mut self.prompt) {
            return max.div_f64(PAUSE_PART);
        }
        let block = self.picker.block_size() as f64;
        self.peers.values_mut().fold(max, |pause, p| {
            pause.min(pause_for(p.inflight.len() as f64 * block, p.down.recent_rate(now), max))
        })
    }

    /// Bytes a second received from all peers lately ([`crate::rate::Meter::recent_rate`]).
    pub fn recent_down_rate(&mut self, now: Duration) -> f64 {
        self.peers.values_mut().map(|p| p.down.recent_rate(now)).sum()
    }

    /// Receive and send rates summed over the connected peers, bytes per second.
    pub fn rates(&mut self, now: Duration) -> (f64, f64) {
        self.peers.values_mut().fold((0.0, 0.0), |(d, u), p| {
            (d + p.down.rate(now), u + p.up.rate(now))
        })
    }

    pub fn handle(&mut self, now: Duration, input: Input<P>) {
        self.prompt |= match &input {
            Input::Connected { .. } => true,
            Input::Message { msg, .. } => matches!(
                msg,
                Message::Choke
                    | Message::Unchoke
                    | Message::Interested
                    | Message::NotInterested
                    | Message::Bitfield(_)
                    | Message::HaveAll
                    | Message::HaveNone
            ),
            _ => false,
        };
        match input {
            Input::Connected {
                key,
                addr,
                peer_id,
                outgoing,
                sent_have,
            } => self.on_connected(now, key, addr, peer_id, outgoing, sent_have),
            Input::ConnectFailed { key, addr, reason } => {
                self.admission.dial_ended(key);
                self.admission.backoff(addr, now);
                if self.cfg.peers.contains(&addr) {
                    self.log(format!("cannot connect to {addr}: {reason}"));
                }
            }
            Input::Closed { key, addr, reason } => self.on_closed(now, key, addr, reason),
            Input::Message { key, msg } => self.on_message(now, key, msg),
            Input::Blocks { key, blocks } => self.on_blocks(now, key, blocks),
            Input::WebBlocks { seed, blocks } => self.on_web_blocks(now, seed, blocks),
            Input::WebFailed {
                seed,
                blocks,
                reason,
                retry_after,
            } => self.on_web_failed(now, seed, blocks, reason, retry_after),
            Input::Uploaded { key, total } => {
                if let Some(p) = self.peers.get_mut(key) {
                    p.up.add(now, total.saturating_sub(p.uploaded));
                    p.uploaded = p.uploaded.max(total);
                }
            }
            Input::Written(refs) => {
                for r in refs {
                    if self.picker.written(r.index) {
                        self.out.push(Output::Hash(r.index));
                    }
                }
            }
            Input::Hashed { index, ok: true } => self.on_verified(now, index),
            Input::Hashed { index, ok: false } => self.on_hash_failed(now, index),
            Input::ResumeSkipped => self.resume_dirty = true,
            Input::Finalized => {
                if !self.finalized {
                    self.finalized = true;
                    self.out.push(Output::Announce(Announce::Completed));
                    if matches!(self.cfg.lifecycle, Lifecycle::Linger { .. }) {
                        self.out.push(Output::Announce(Announce::Poll(true)));
                    }
                }
            }
            Input::Peers(list) => {
                for a in list {
                    self.admission.learn(a, now);
                }
            }
            Input::SwarmIncomplete(n) => self.swarm_incomplete = Some(n),
            Input::Tick => self.tick(now),
            Input::Flush => {
                self.flush_resume(now);
                if self.haves_since.is_some_and(|t| now.saturating_sub(t) >= BATCH_EVERY) {
                    self.flush_haves();
                }
            }
        }
    }

    fn log(&mut self, msg: String) {
        self.out.push(Output::Log(msg));
    }

    fn send(&mut self, key: PeerKey, msg: Message) {
        self.out.push(Output::Send { key, msg });
    }

    // ---- connections -----------------------------------------------------------------

    fn on_connected(
        &mut self,
        now: Duration,
        key: PeerKey,
        addr: SocketAddr,
        id: [u8; 20],
        outgoing: bool,
        sent_have: Vec<bool>,
    ) {
        if outgoing {
            self.admission.dial_ended(key);
            self.admission.reached(addr);
        }
        let refuse = if self.admission.is_banned(&id) {
            Some(CloseReason::Banned)
        } else if let Some(old) = self.peers.find_id(&id) {
            // One connection per peer: of two, keep the one opened by the lower peer id.
            let initiator = |out: bool| if out { self.cfg.peer_id } else { id };
            if initiator(outgoing)
                < initiator(self.peers.get(old).map(|p| p.outgoing).unwrap_or(false))
            {
                self.out.push(Output::Close {
                    key: old,
                    reason: CloseReason::Duplicate,
                });
                None
            } else {
                Some(CloseReason::Duplicate)
            }
        } else if self.peers.len() >= self.cfg.max_peers {
            Some(CloseReason::TooManyPeers)
        } else {
            None
        };
        if let Some(reason) = refuse {
            if outgoing {
                self.admission.backoff(addr, now);
            }
            self.out.push(Output::Close { key, reason });
            return;
        }
        let peer = Peer::new(addr, id, outgoing, self.picker.num_pieces(), now);
        self.log(format!(
            "peer {} connected ({}, {})",
            addr,
            peer.client,
            if outgoing { "outgoing" } else { "incoming" }
        ));
        self.peers.insert(key, peer);
        // Pieces verified after the bitfield was sent.
        if !self.cfg.super_seed {
            for (i, sent) in sent_have.iter().enumerate() {
                // (Pieces waiting to be announced go to this peer with the others.)
                if !sent && self.picker.have(i) && !self.pending_haves.iter().any(|(p, _)| *p as usize == i) {
                    self.send(key, Message::Have(i as u32));
                }
            }
        }
        self.last_choke = None; // run the choker at the next tick
        if self.cfg.super_seed {
            self.reveal(now, key, superseed::Reveal::Fresh);
        }
    }

    /// Drops a peer that broke the rules; it is banned and not dialled again.
    fn drop_peer(&mut self, key: PeerKey, reason: CloseReason) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        p.am_choking = true;
        let (name, id, listen) = (p.name(), p.peer_id, p.listen);
        self.log(format!("dropping peer {name}: {reason}"));
        self.admission.ban(id, listen);
        self.out.push(Output::Close { key, reason });
    }

    fn on_closed(&mut self, now: Duration, key: PeerKey, addr: SocketAddr, reason: CloseReason) {
        let dialled = self.admission.dial_ended(key).is_some();
        let Some(mut p) = self.peers.remove(key) else {
            // Closed before or without being admitted.
            if dialled {
                if reason.misbehaved() {
                    self.admission.ban_addr(addr);
                }
                if reason == CloseReason::Ourselves {
                    self.admission.own_address(addr);
                }
                self.admission.backoff(addr, now);
            }
            return;
        };
        let inflight: Vec<BlockRef> = p.inflight.drain(..).collect();
        self.picker.forget(key, &inflight);
        self.picker.remove_availability(&p.has);
        if reason == CloseReason::Ourselves {
            self.admission.own_address(addr);
        }
        if reason.misbehaved() {
            self.admission.ban(p.peer_id, p.listen);
        }
        self.log(format!("peer {} closed: {reason}", p.name()));
        if p.outgoing {
            self.admission.backoff(addr, now);
        }
        if self.optimistic.peer == Some(key) {
            self.optimistic.peer = None;
        }
    }

    fn connect_more(&mut self, now: Duration) {
        if self.completed_at.is_some() && !self.cfg.lifecycle.keeps_seeding() {
            return;
        }
        // Dial up to three quarters of the peer limit and keep the rest for peers that dial
        // us: a fleet where every host filled its table by dialling splits into groups that
        // cannot reach each other (the simulator shows it at 100 hosts).
        let dial_limit = (self.cfg.max_peers * 3 / 4).max(1);
        let busy = self.peers.len() + self.admission.dials_in_progress();
        if busy >= dial_limit {
            return;
        }
        let connected: HashSet<SocketAddr> = self
            .peers
            .values()
            .flat_map(|p| [Some(p.addr), p.listen])
            .flatten()
            .collect();
        let mut candidates = self.admission.candidates(now, &connected);
        let mut busy = busy;
        while busy < dial_limit && !candidates.is_empty() {
            let addr = candidates.swap_remove(self.rng.below(candidates.len()));
            let key = self.next_key;
            self.next_key += 1;
            self.admission.dialing(key, addr);
            self.out.push(Output::Dial { key, addr });
            busy += 1;
        }
    }

    // ---- messages ------------------------------------------------------------------------

    fn on_message(&mut self, now: Duration, key: PeerKey, msg: Message) {
        let n = self.picker.num_pieces();
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        match msg {
            Message::Choke => {
                p.peer_choking = true;
                let inflight: Vec<BlockRef> = p.inflight.drain(..).collect();
                self.picker.forget(key, &inflight);
            }
            Message::Unchoke => {
                p.peer_choking = false;
                self.request_more(now, key);
            }
            Message::Interested => {
                p.peer_interested = true;
                if self.slots_in_use() < self.cfg.upload_slots {
                    self.set_choke(now, key, false);
                }
            }
            Message::NotInterested => {
                p.peer_interested = false;
                if !p.am_choking {
                    // Its slot serves someone waiting at once (when a fleet's hosts complete
                    // together, the last ones would otherwise wait for the next tick), and
                    // the choker runs again at the next tick.
                    self.last_choke = None;
                    self.unchoke_waiting(now);
                }
            }
            Message::Have(i) => {
                if i as usize >= n {
                    return self.drop_peer(
                        key,
                        CloseReason::Protocol(format!("have for piece {i} of {n}")),
                    );
                }
                if !p.has[i as usize] {
                    p.has[i as usize] = true;
                    p.has_count += 1;
                    p.progress_at = now;
                    p.wanted += !self.picker.have(i as usize) as usize;
                    self.picker.add_have(i as usize);
                }
                if let Some(at) = p.revealed.iter().position(|r| *r == i) {
                    p.revealed.remove(at);
                } else if p.starving {
                    p.starving = false; // others feed it again
                }
                self.update_interest(now, key);
                if self.cfg.super_seed {
                    let starving = self.peers.get(key).map(|p| p.starving).unwrap_or(false);
                    self.reveal(now, key, if starving { superseed::Reveal::Any } else { superseed::Reveal::Fresh });
                }
            }
            Message::Bitfield(bytes) => match wire::parse_bitfield(&bytes, n) {
                Some(bits) => self.set_has(now, key, bits),
                None => self.drop_peer(key, CloseReason::Protocol("malformed bitfield".into())),
            },
            Message::HaveAll => self.set_has(now, key, vec![true; n]),
            Message::HaveNone => self.set_has(now, key, vec![false; n]),
            Message::Reject {
                index,
                begin,
                length,
            } => {
                let r = BlockRef {
                    index,
                    begin,
                    length,
                };
                if p.take_inflight(&r) {
                    self.picker.forget(key, &[r]);
                }
            }
            Message::Extended { id: 0, payload } => {
                let Ok(v) = crate::bencode::decode(&payload) else {
                    return;
                };
                let Some(d) = v.as_dict() else { return };
                if let Some(name) = d.get("v").and_then(|v| v.as_str()) {
                    let short: String = name.chars().take(40).collect();
                    p.client = crate::sanitize::printable(&short).into_owned();
                }
                if let Some(port) = d.get("p").and_then(|v| v.as_int()) {
                    if (1..=65535).contains(&port) && !p.outgoing {
                        p.listen = Some(SocketAddr::new(p.addr.ip(), port as u16));
                    }
                }
            }
            _ => {}
        }
    }

    fn set_has(&mut self, now: Duration, key: PeerKey, bits: Vec<bool>) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        self.picker.remove_availability(&p.has);
        p.has_count = bits.iter().filter(|b| **b).count();
        p.wanted = bits
            .iter()
            .enumerate()
            .filter(|(i, b)| **b && !self.picker.have(*i))
            .count();
        p.has = bits;
        p.gain_base = p.has_count;
        p.gain_from = now;
        self.picker.add_availability(&p.has);
        let has = &p.has;
        p.revealed.retain(|i| !has[*i as usize]);
        self.update_interest(now, key);
        if self.cfg.super_seed {
            self.reveal(now, key, superseed::Reveal::Fresh);
        }
    }

    fn update_interest(&mut self, now: Duration, key: PeerKey) {
        let complete = self.picker.complete();
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        let want = !complete && p.wanted > 0;
        if want != p.am_interested {
            p.am_interested = want;
            let peer_choking = p.peer_choking;
            self.send(
                key,
                if want {
                    Message::Interested
                } else {
                    Message::NotInterested
                },
            );
            if want && !peer_choking {
                self.request_more(now, key);
            }
        } else if want && !p.peer_choking {
            self.request_more(now, key);
        }
    }

    // ---- the requester ---------------------------------------------------------------------

    fn on_blocks(&mut self, now: Duration, key: PeerKey, blocks: Vec<(BlockRef, P)>) {
        self.take_blocks(blocks, |c, r| c.on_block(now, key, r));
        self.request_more(now, key);
    }

    /// Writes the blocks `keep` accepts and discards the rest (their bytes).
    fn take_blocks(&mut self, blocks: Vec<(BlockRef, P)>, mut keep: impl FnMut(&mut Self, &BlockRef) -> bool) {
        let mut accepted = Vec::with_capacity(blocks.len());
        let mut dropped = 0;
        for (r, data) in blocks {
            if keep(self, &r) {
                accepted.push((r, data));
            } else {
                dropped += r.length as usize;
            }
        }
        if dropped > 0 {
            self.out.push(Output::Discard(dropped));
        }
        if !accepted.is_empty() {
            self.out.push(Output::Write(accepted));
        }
    }

    /// Accounts for one block; answers whether it is to be written.
    fn on_block(&mut self, now: Duration, key: PeerKey, r: &BlockRef) -> bool {
        let len = r.length as u64;
        self.downloaded += len;
        let Some(p) = self.peers.get_mut(key) else {
            return false;
        };
        p.downloaded += len;
        p.down.add(now, len);
        p.last_block = now;
        p.snubbed_until = None;
        // A block not in flight is late (cancelled in endgame, or given up on): normal, and
        // dropped below. A flood of blocks never asked for is cut off by the connection.
        p.take_inflight(r);
        self.arrival(now, key, r)
    }

    /// The picker's verdict on a block from `key` (a peer or a web seed): cancels the
    /// duplicates asked of other peers; answers whether it is to be written.
    fn arrival(&mut self, now: Duration, key: PeerKey, r: &BlockRef) -> bool {
        match self.picker.received(key, r) {
            Arrival::Accept { cancel } => {
                for other in cancel {
                    if let Some(o) = self.peers.get_mut(other) {
                        if o.take_inflight(r) {
                            self.send(
                                other,
                                Message::Cancel {
                                    index: r.index,
                                    begin: r.begin,
                                    length: r.length,
                                },
                            );
                        }
                    }
                }
                self.last_payload = now;
                true
            }
            Arrival::Drop => false,
        }
    }

    // ---- web seeds -------------------------------------------------------------------------

    /// Gives every idle web seed the next piece the policy allows (see [`webseed`]).
    fn web_request_more(&mut self, now: Duration) {
        if self.picker.complete() || self.web.is_empty() {
            return;
        }
        let starved = self.peers.is_empty()
            || now.saturating_sub(self.last_payload.max(self.started)) >= webseed::STARVED;
        if !starved
            && !webseed::is_fetcher(
                &self.cfg.peer_id,
                self.peers.values().filter(|p| !p.seed()).map(|p| &p.peer_id).collect::<Vec<_>>().into_iter(),
                self.swarm_incomplete,
            )
        {
            return;
        }
        let want = webseed::request_blocks(self.cfg.piece_length, self.picker.block_size());
        let mut mask: Option<Vec<bool>> = None;
        let connections = if self.peers.is_empty() { 1 } else { webseed::CONNECTIONS };
        for seed in 0..self.web.len() {
            if !self.web[seed].ready(now, connections) {
                continue;
            }
            let mask = mask.get_or_insert_with(|| webseed::eligible(&self.picker, starved));
            // Few pieces left to fetch: fewer at once, since every host picks among the same few.
            let left = (0..mask.len()).filter(|i| mask[*i] && !self.picker.have(*i)).count();
            let connections = connections.min((left / webseed::PIECES_PER_CONNECTION).max(1));
            let key = self.web[seed].key;
            while self.web[seed].ready(now, connections) {
                let blocks = self.picker.pick(key, mask, want, false);
                if blocks.is_empty() {
                    return;
                }
                let w = &mut self.web[seed];
                w.inflight.extend(blocks.iter().copied());
                for b in &blocks {
                    if w.unchecked.last() != Some(&b.index) {
                        w.unchecked.push(b.index);
                    }
                }
                self.out.push(Output::WebRequest { seed, blocks });
            }
        }
    }

    fn on_web_blocks(&mut self, now: Duration, seed: usize, blocks: Vec<(BlockRef, P)>) {
        if seed >= self.web.len() {
            return;
        }
        self.take_blocks(blocks, |c, r| {
            let w = &mut c.web[seed];
            let len = r.length as u64;
            c.downloaded += len;
            w.downloaded += len;
            w.failures = 0;
            let key = w.key;
            let asked = w.take_inflight(r);
            // Data counts as presence, like a connected peer (for the stall timeout).
            c.last_peer_seen = now;
            asked && c.arrival(now, key, r)
        });
        self.web_request_more(now);
    }

    fn on_web_failed(&mut self, now: Duration, seed: usize, blocks: Vec<BlockRef>, reason: String, retry_after: Option<Duration>) {
        let Some(w) = self.web.get_mut(seed) else { return };
        let inflight: Vec<BlockRef> = blocks.into_iter().filter(|b| w.take_inflight(b)).collect();
        inflight.iter().for_each(|b| w.checked(b.index, false));
        let key = w.key;
        let wait = w.failed(now, retry_after);
        let (name, first) = (w.name.clone(), w.failures == 1);
        self.picker.forget(key, &inflight);
        // The first failure of a run is news; the rest only say how long we wait.
        if first || wait >= webseed::MAX_BACKOFF {
            self.log(format!("web seed {name}: {reason}; trying again in {}s", wait.as_secs()));
        }
        // Its pieces go to peers that have them.
        for k in self.peers.keys() {
            self.request_more(now, k);
        }
    }

    /// A piece that failed its hash check came from web seed `seed` alone.
    fn web_strike(&mut self, seed: usize) {
        let w = &mut self.web[seed];
        w.strikes += 1;
        if w.strikes < webseed::MAX_STRIKES || w.disabled {
            return;
        }
        w.disabled = true;
        let (key, name) = (w.key, w.name.clone());
        let inflight: Vec<BlockRef> = w.inflight.drain(..).collect();
        self.picker.forget(key, &inflight);
        self.log(format!(
            "web seed {name} sent data that failed {} hash checks: no longer used",
            webseed::MAX_STRIKES
        ));
    }

    /// Tops up the requests in flight to `key`: [`REQUEST_AHEAD`] of data at the peer's
    /// recent rate, between [`MIN_DEPTH`] and [`MAX_DEPTH`] bytes.
    fn request_more(&mut self, now: Duration, key: PeerKey) {
        if self.picker.complete() {
            return;
        }
        let block = self.picker.block_size() as f64;
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        if p.peer_choking || !p.am_interested || p.snubbed_until.map(|t| t > now).unwrap_or(false) {
            return;
        }
        let (lo, hi) = (
            (MIN_DEPTH as f64 / block).ceil().max(2.0) as usize,
            (MAX_DEPTH as f64 / block).max(2.0) as usize,
        );
        let ahead = p.down.rate(now) * REQUEST_AHEAD.as_secs_f64();
        let depth = ((ahead / block) as usize).clamp(lo, hi);
        if p.inflight.len() + (depth / REFILL_PART).max(4) > depth && !p.inflight.is_empty() {
            return;
        }
        let want = depth - p.inflight.len().min(depth);
        let blocks = self
            .picker
            .pick(key, &p.has, want, p.inflight.len() < ENDGAME_QUEUE);
        if blocks.is_empty() {
            return;
        }
        if p.inflight.is_empty() {
            // The snub clock runs from the first request of a batch, not from a block
            // that came long before it (a peer unchoked after a long wait is not silent).
            p.last_block = now;
        }
        p.inflight.extend(blocks.iter().copied());
        self.out.push(Output::Request { key, blocks });
    }

    // ---- pieces ------------------------------------------------------------------------------

    fn on_hash_failed(&mut self, now: Duration, index: u32) {
        self.hash_failures += 1;
        self.web.iter_mut().for_each(|w| w.checked(index, false));
        self.blame(index);
        // After the verdict on its last piece, a web seed on probation may go on.
        self.web_request_more(now);
    }

    /// Names who sent a piece that failed its hash check; strikes a sole sender.
    fn blame(&mut self, index: u32) {
        let senders = self.picker.hashed(index, false);
        let names: Vec<String> = senders
            .iter()
            .filter_map(|k| {
                self.peers
                    .get(*k)
                    .map(|p| p.name())
                    .or_else(|| self.web.iter().find(|w| w.key == *k).map(|w| w.name.clone()))
            })
            .collect();
        self.log(format!(
            "piece {index} failed its hash check (data from {}); fetching it again",
            names.join(", ")
        ));
        // Only a piece that came from one peer alone names a culprit (the picker fetches a
        // failed piece from a single peer next time).
        if let [k] = senders[..] {
            if let Some(seed) = self.web.iter().position(|w| w.key == k) {
                return self.web_strike(seed);
            }
            let Some(p) = self.peers.get(k) else { return };
            if self.admission.strike(p.peer_id) {
                self.drop_peer(k, CloseReason::CorruptData);
            }
        }
    }

    /// Sends the `have`s that wait, each to every peer that did not get it at once: as
    /// [`Output::Notify`] to the peers we choke that are interested in us already, which
    /// cannot ask us for the piece until we unchoke them (and then get the `have`s first:
    /// the unchoke queues behind them). Seeds (a super-seeder reveals its next piece when it
    /// sees one come back) and peers not interested yet (the piece may make them so, and
    /// the choker only unchokes the interested) hear within [`BATCH_EVERY`]. On the 32-host
    /// testbed, where each host chokes most of its peers, those `have`s alone were a third
    /// of all writer and reader wake-ups.
    ///
    /// A `have` for a piece the peer has already announced cannot change what it asks or
    /// whom it is interested in (it only keeps its count of copies exact): it is a
    /// `Notify` too, unless the peer is a seed (a super-seeder counts the copies of the
    /// pieces it revealed). In a fleet where everyone fetches at once about half the
    /// `have`s are of this kind.
    fn flush_haves(&mut self) {
        let pending = std::mem::take(&mut self.pending_haves);
        self.haves_since = None;
        for k in self.peers.keys() {
            let Some(p) = self.peers.get(k) else { continue };
            let (seed, choked_wanting) = (p.seed(), p.am_choking && p.peer_interested);
            for (i, told) in &pending {
                if !told.contains(&k) {
                    let lazy = !seed && (choked_wanting || p.has[*i as usize]);
                    let msg = Message::Have(*i);
                    self.out.push(if lazy { Output::Notify { key: k, msg } } else { Output::Send { key: k, msg } });
                }
            }
        }
    }

    fn on_verified(&mut self, now: Duration, i: u32) {
        let senders = self.picker.hashed(i, true);
        self.web.iter_mut().for_each(|w| w.checked(i, true));
        self.web_request_more(now);
        self.out.push(Output::Verified(i));
        for p in self.peers.values_mut() {
            if p.has[i as usize] {
                p.wanted -= 1;
            }
        }
        // At most every RESUME_EVERY (a save is a file written and renamed, on the disk
        // thread that also writes a single-file torrent: once per piece it cost a fast fetch
        // a third of its time); what is left over is saved by a later piece or the tick.
        self.resume_dirty = true;
        if !self.picker.complete() {
            self.flush_resume(now);
        }
        // To every peer, even those that have the piece: a super-seeder learns from it. At
        // once to the peers that sent it (a super-seeder reveals the next piece when it
        // hears), to the others within BATCH_EVERY with the pieces verified meanwhile: one
        // `have` per piece and peer costs each peer a wake-up of three threads (our writer,
        // its reader and session), which at 32 hosts on two cores was the largest cost after
        // the page cache.
        let keys = self.peers.keys();
        let told: Vec<PeerKey> = senders.into_iter().filter(|k| self.peers.get(*k).is_some()).collect();
        for k in &told {
            self.send(*k, Message::Have(i));
        }
        self.pending_haves.push((i, told));
        self.haves_since.get_or_insert(now);
        if self.picker.complete() {
            self.flush_haves();
            return self.on_complete(now);
        }
        for k in keys {
            if self.peers.get(k).map(|p| p.am_interested).unwrap_or(false) {
                self.update_interest(now, k);
            }
        }
    }

    fn on_complete(&mut self, now: Duration) {
        if self.completed_at.is_some() {
            return;
        }
        self.completed_at = Some(now);
        self.out.push(Output::Finalize);
        for k in self.peers.keys() {
            self.update_interest(now, k);
        }
    }

    fn flush_resume(&mut self, now: Duration) {
        if self.resume_waiting() && now.saturating_sub(self.last_save) >= RESUME_EVERY {
            self.save_resume(now);
        }
    }

    /// Queues a resume-file update; the data is fsynced along with it every few seconds.
    fn save_resume(&mut self, now: Duration) {
        let have = self.picker.have_vec();
        let sync = now.saturating_sub(self.last_sync) > RESUME_SYNC_EVERY;
        self.out.push(Output::SaveResume {
            have: have.clone(),
            synced: self.synced.clone(),
            sync,
        });
        self.resume_dirty = false;
        self.last_save = now;
        if sync {
            self.last_sync = now;
            self.synced = have;
        }
    }

    // ---- choking -------------------------------------------------------------------------

    fn set_choke(&mut self, now: Duration, key: PeerKey, choke: bool) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        if p.am_choking == choke {
            return;
        }
        p.am_choking = choke;
        if choke {
            p.unchoked_at = None;
            p.choked_since = now;
        } else {
            p.unchoked_at = Some(now);
        }
        self.out.push(Output::SetChoke { key, choke });
    }

    /// Upload slots taken: a slot held by a peer that wants nothing is a free slot.
    fn slots_in_use(&self) -> usize {
        self.peers.values().filter(|p| !p.am_choking && p.peer_interested).count()
    }

    /// A slot is free of interested peers: the choked interested peer furthest behind gets it.
    fn unchoke_waiting(&mut self, now: Duration) {
        if self.slots_in_use() >= self.cfg.upload_slots {
            return;
        }
        let next = self
            .peers
            .iter()
            .filter(|(_, p)| p.am_choking && p.peer_interested)
            .min_by_key(|(k, p)| (p.has_count, **k))
            .map(|(k, _)| *k);
        if let Some(k) = next {
            self.set_choke(now, k, false);
        }
    }

    fn choke(&mut self, now: Duration) {
        if self
            .last_choke
            .map(|t| now.saturating_sub(t) < choker::INTERVAL)
            .unwrap_or(false)
        {
            return;
        }
        self.last_choke = Some(now);
        let views: Vec<choker::View> = self
            .peers
            .iter()
            .map(|(k, p)| choker::View {
                key: *k,
                interested: p.peer_interested,
                down_rate: 0.0,
                unchoked_at: p.unchoked_at,
                choked_since: p.choked_since,
                pieces: p.has_count,
                gain_rate: p.gain_rate(now),
            })
            .collect();
        let mut views = views;
        for v in views.iter_mut() {
            v.down_rate = self
                .peers
                .get_mut(v.key)
                .map(|p| p.down.rate(now))
                .unwrap_or(0.0);
        }
        let mode = if self.completed_at.is_some() {
            Mode::Seed
        } else {
            Mode::Download
        };
        let (keep, opt) = choker::decide(
            &views,
            mode,
            self.cfg.upload_slots,
            now,
            self.optimistic,
            &mut self.rng,
        );
        self.optimistic = opt;
        for k in self.peers.keys() {
            self.set_choke(now, k, keep.binary_search(&k).is_err());
        }
    }

    // ---- super-seeding ---------------------------------------------------------------------

    fn reveal(&mut self, now: Duration, key: PeerKey, mode: superseed::Reveal) {
        let depth = match mode {
            superseed::Reveal::Fresh => superseed::DEPTH,
            superseed::Reveal::Any => 1,
        };
        loop {
            let Some(p) = self.peers.get(key) else { return };
            if p.revealed.len() >= depth || p.seed() || !self.reveal_one(now, key, mode) {
                return;
            }
        }
    }

    /// Reveals one more piece to `key`; false: none to reveal.
    fn reveal_one(&mut self, now: Duration, key: PeerKey, mode: superseed::Reveal) -> bool {
        let start = self.rng.below(self.picker.num_pieces());
        let Some(p) = self.peers.get(key) else { return false };
        // A fresh piece shown to a peer on a much slower link reaches the others at that
        // link's pace: such peers get theirs from the swarm.
        if mode == superseed::Reveal::Fresh {
            if let (Some(r), Some(typical)) = (p.gain_rate(now), self.peers.typical_gain(now)) {
                if r < typical * superseed::SLOW_GAIN {
                    return false;
                }
            }
        }
        let taken: HashSet<u32> = self.peers.values().flat_map(|p| p.revealed.iter().copied()).collect();
        let Some(i) = superseed::pick(&self.picker, &p.has, &taken, start, mode) else {
            return false;
        };
        self.peers.get_mut(key).unwrap().revealed.push(i);
        self.send(key, Message::Have(i));
        true
    }

    /// Super-seeding: peers that made no progress for a while are shown a piece anyway.
    fn reveal_to_stalled(&mut self, now: Duration) {
        for k in self.peers.keys() {
            let p = self.peers.get_mut(k).unwrap();
            if p.revealed.is_empty() && !p.seed() && now.saturating_sub(p.progress_at) >= superseed::STALLED {
                p.progress_at = now;
                p.starving = true;
                self.reveal(now, k, superseed::Reveal::Any);
            }
        }
    }

    // ---- periodic work -----------------------------------------------------------------------

    fn tick(&mut self, now: Duration) {
        if self.end.is_some() {
            return;
        }
        if !self.pending_haves.is_empty() {
            self.flush_haves();
        }
        // Snubbed peers lose their requests.
        for k in self.peers.keys() {
            let p = self.peers.get_mut(k).unwrap();
            if !p.inflight.is_empty() && now.saturating_sub(p.last_block) > SNUB_TIMEOUT {
                let inflight: Vec<BlockRef> = p.inflight.drain(..).collect();
                p.last_block = now;
                p.snubbed_until = Some(now + SNUB_PENALTY);
                let name = p.name();
                self.picker.forget(k, &inflight);
                self.log(format!(
                    "peer {name} sent nothing for {}s: its {} requests go to others",
                    SNUB_TIMEOUT.as_secs(),
                    inflight.len()
                ));
            }
        }
        self.peers.record_all();
        for k in self.peers.keys() {
            self.request_more(now, k);
        }
        self.web_request_more(now);
        self.choke(now);
        if self.cfg.super_seed {
            self.reveal_to_stalled(now);
        }
        self.connect_more(now);
        if self.resume_dirty && self.completed_at.is_none() {
            self.save_resume(now);
        }
        self.end = self.check_end(now);
    }

    fn check_end(&mut self, now: Duration) -> Option<End> {
        if let Some(t) = self.completed_at {
            if !self.finalized {
                return None;
            }
            let all_seeds = self.peers.values().all(|p| p.seed());
            if !all_seeds {
                self.all_seeds_since = None;
            } else if self.all_seeds_since.is_none() {
                self.all_seeds_since = Some(now);
            }
            let view = lifecycle::LingerView {
                seeded: now.saturating_sub(t),
                swarm_incomplete: self.swarm_incomplete,
                all_seeds_for: self
                    .all_seeds_since
                    .map(|s| now.saturating_sub(s))
                    .unwrap_or(Duration::ZERO),
            };
            return self.cfg.lifecycle.done(&view).then_some(End::Done);
        }
        if let Some(t) = self.cfg.timeout {
            if now.saturating_sub(self.started) > t {
                return Some(End::Unfinished(format!("timed out after {}s", t.as_secs())));
            }
        }
        if !self.peers.is_empty() {
            self.last_peer_seen = now;
        } else if let Some(t) = self.cfg.stall_timeout {
            if now.saturating_sub(self.last_peer_seen) > t {
                return Some(End::Unfinished(format!("no peers for {}s", t.as_secs())));
            }
        }
        None
    }
}

/// Blocks in flight per peer, for tests.
#[cfg(test)]
impl<P> Core<P> {
    fn inflight(&self, key: PeerKey) -> usize {
        self.peers.get(key).map(|p| p.inflight.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
