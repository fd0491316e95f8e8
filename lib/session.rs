//! One torrent's swarm session: the coordinator that owns all of the torrent's state.
//!
//! Threads and who owns what:
//! - the session thread (the caller of [`run`]) owns every piece of mutable torrent state:
//!   the [`Picker`], the table of peers and what they have, the choker, the counters. It
//!   reacts to events from three crossbeam channels: connections (bounded, so a flood is
//!   slowed by TCP back-pressure), the disk pool and the announcer; and does periodic work
//!   once a second;
//! - two threads per peer connection (see `peer::conn`), which forward messages here and
//!   serve uploads themselves from storage;
//! - a disk pool (one thread per core) that writes received blocks with positional writes,
//!   hashes a piece once all its blocks are on disk (reading it back from the page cache)
//!   and saves the resume file — so neither network threads nor this thread wait on disk;
//! - an acceptor thread, short-lived dialler threads, and the announcer thread.
//!
//! A piece counts as ours only after its SHA-1 matched; only then is it announced with
//! HAVE, served, and written into the resume file. A piece that fails is fetched again and
//! the peers that sent it get a strike; two strikes ban a peer.

use crate::announce::{self, Announcer, Stats};
use crate::metainfo::Metainfo;
use crate::peer::conn::{self, Cmd, Context, Event, PeerShared};
use crate::peer::wire::{self, Message};
use crate::picker::{Arrival, BlockRef, PeerKey, Picker};
use crate::progress::Progress;
use crate::rate::{Bucket, Meter};
use crate::storage::{self, Storage};
use crossbeam::channel::{self, select, Receiver, Sender};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A peer with requests outstanding that sends nothing for this long loses them...
const SNUB_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and is asked for nothing more for this long.
const SNUB_PENALTY: Duration = Duration::from_secs(30);
/// Received bytes that may wait for the disk before sockets are left unread.
const UNWRITTEN_BUDGET: usize = 24 << 20;
/// Strikes (pieces that failed their hash check with data from a peer) before a ban.
const MAX_STRIKES: u32 = 2;

pub struct Config {
    /// Program name for log lines.
    pub prog: &'static str,
    pub port: u16,
    /// Peers given by hand.
    pub peers: Vec<SocketAddr>,
    pub trackers: Vec<Vec<String>>,
    pub max_peers: usize,
    /// Peers unchoked at once (upload slots).
    pub upload_slots: usize,
    pub max_upload_rate: u64,
    pub max_download_rate: u64,
    /// Keep seeding until stopped by a signal (bseed).
    pub seed_forever: bool,
    /// After completing, keep seeding this long.
    pub seed_time: Duration,
    /// After completing, keep seeding while the tracker reports incomplete peers
    /// (bounded by `seed_time` when that is not zero).
    pub seed_until_done: bool,
    /// Give up after this long without completing.
    pub timeout: Option<Duration>,
    /// Give up when nothing arrives and no peer is connected for this long.
    pub stall_timeout: Option<Duration>,
    /// Reveal pieces one peer at a time so each byte leaves us about once (BEP 16 style).
    pub super_seed: bool,
    pub quiet: bool,
    pub threads: usize,
}

impl Config {
    /// A session that seeds complete content until shut down (bseed, btrack --seed).
    pub fn seeder(prog: &'static str, port: u16, trackers: Vec<Vec<String>>) -> Config {
        Config {
            prog,
            port,
            peers: Vec::new(),
            trackers,
            max_peers: 100,
            upload_slots: 16,
            max_upload_rate: 0,
            max_download_rate: 0,
            seed_forever: true,
            seed_time: Duration::ZERO,
            seed_until_done: false,
            timeout: None,
            stall_timeout: None,
            super_seed: false,
            quiet: false,
            threads: crate::hashing::default_threads(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub addr: String,
    pub client: String,
    pub downloaded: u64,
    pub uploaded: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub info_hash: String,
    pub name: String,
    pub path: PathBuf,
    pub complete: bool,
    /// Payload bytes received (including any that were discarded).
    pub downloaded: u64,
    pub uploaded: u64,
    pub duration_secs: f64,
    pub peers: Vec<PeerReport>,
    pub hash_failures: u32,
}

#[derive(Debug)]
pub enum Error {
    Listen(u16, std::io::Error),
    Disk(storage::Error),
    /// Could not finish: timed out or stalled without peers (with the report so far).
    Unfinished(String, Box<Report>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Listen(p, e) => write!(f, "cannot listen on port {p}: {e}"),
            Error::Disk(e) if e.is_disk_full() => write!(f, "disk full: {e}"),
            Error::Disk(e) => write!(f, "disk error: {e}"),
            Error::Unfinished(why, _) => write!(f, "could not finish: {why}"),
        }
    }
}

impl std::error::Error for Error {}

enum DiskJob {
    Write(Vec<(BlockRef, Vec<u8>)>),
    Hash(u32),
    SaveResume { seq: u64, synced: Vec<bool>, have: Vec<bool>, sync: bool },
}

enum DiskDone {
    Written(Vec<BlockRef>, Result<(), storage::Error>),
    Hashed(u32, Result<bool, storage::Error>),
    Saved(Result<(), storage::Error>),
}

struct Peer {
    addr: SocketAddr,
    listen: Option<SocketAddr>,
    client: String,
    peer_id: [u8; 20],
    outgoing: bool,
    cmd: Sender<Cmd>,
    shared: Arc<PeerShared>,
    has: Vec<bool>,
    has_count: usize,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    inflight: VecDeque<BlockRef>,
    down: Meter,
    up: Meter,
    up_seen: u64,
    downloaded: u64,
    last_block: Instant,
    unchoked_at: Option<Instant>,
    /// Super-seeding: the piece revealed to this peer and not yet seen back.
    revealed: Option<u32>,
    snubbed_until: Option<Instant>,
    unwanted: u32,
    /// When we last choked this peer (or connected): seeders serve who waited longest.
    choked_since: Instant,
}

impl Peer {
    fn name(&self) -> String {
        self.listen.unwrap_or(self.addr).to_string()
    }

    fn send(&self, m: Message) {
        let _ = self.cmd.send(Cmd::Send(m));
    }

    fn seed(&self) -> bool {
        self.has_count == self.has.len()
    }
}

/// Everything needed to start a session.
pub struct Setup {
    pub meta: Metainfo,
    pub storage: Storage,
    pub have: Vec<bool>,
    pub config: Config,
    pub shutdown: Arc<AtomicBool>,
}

/// Runs the session until it is done (see [`Config`]) or shut down.
pub fn run(setup: Setup) -> Result<Report, Error> {
    let Setup { meta, storage, have, config, shutdown } = setup;
    let listener = TcpListener::bind(("0.0.0.0", config.port)).map_err(|e| Error::Listen(config.port, e))?;
    let port = listener.local_addr().map_err(|e| Error::Listen(config.port, e))?.port();
    let mut s = Session::new(meta, storage, have, config, shutdown, port);
    s.log(&format!("listening on port {port}"));
    s.start_acceptor(listener);
    let result = s.main_loop();
    s.finish();
    match result {
        Ok(()) => Ok(s.report()),
        Err(Error::Unfinished(why, _)) => Err(Error::Unfinished(why, Box::new(s.report()))),
        Err(e) => Err(e),
    }
}

struct Session {
    cfg: Config,
    meta: Metainfo,
    storage: Arc<Storage>,
    picker: Picker,
    ctx: Arc<Context>,
    peers: HashMap<PeerKey, Peer>,
    next_key: PeerKey,
    net_rx: Receiver<Event>,
    /// One queue per disk thread; a piece's blocks always go to the same one, in order.
    disk_tx: Vec<Sender<DiskJob>>,
    disk_rx: Receiver<DiskDone>,
    tracker_rx: Receiver<announce::Report>,
    announcer: Announcer,
    stats: Arc<Stats>,
    known: HashMap<SocketAddr, (u32, Instant)>,
    connecting: HashSet<SocketAddr>,
    banned: HashSet<[u8; 20]>,
    banned_addrs: HashSet<SocketAddr>,
    strikes: HashMap<[u8; 20], u32>,
    self_addrs: HashSet<SocketAddr>,
    history: HashMap<String, PeerReport>,
    shutdown: Arc<AtomicBool>,
    started: Instant,
    completed_at: Option<Instant>,
    last_progress: Instant,
    downloaded: u64,
    hash_failures: u32,
    resume_dirty: bool,
    resume_seq: u64,
    /// Pieces whose data an fsync has covered (recorded as such in the resume file).
    synced: Vec<bool>,
    last_resume: Instant,
    last_choke: Instant,
    last_optimistic: Instant,
    optimistic: Option<PeerKey>,
    swarm_incomplete: Option<u32>,
    last_status: Instant,
    status_uploaded: u64,
    /// Since when every connected peer is a seed (lingering ends after a while of it).
    all_seeds_since: Option<Instant>,
    progress: Progress,
    final_path: PathBuf,
    rng: u64,
}

fn random_peer_id() -> [u8; 20] {
    let mut id = *b"-SH0100-000000000000";
    let mut x = crate::tracker::client::random_u32() as u64 | ((crate::tracker::client::random_u32() as u64) << 32);
    for b in id[8..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
    }
    id
}

impl Session {
    fn new(meta: Metainfo, storage: Storage, have: Vec<bool>, cfg: Config, shutdown: Arc<AtomicBool>, port: u16) -> Session {
        let info = meta.info.clone();
        let storage = Arc::new(storage);
        let peer_id = random_peer_id();
        let rng = crate::tracker::client::random_u32() as u64 | 1;
        let picker = Picker::new(info.piece_length, info.total_length, &have, rng);
        let (net_tx, net_rx) = channel::bounded(4096);
        let (disk_done, disk_rx) = channel::unbounded();
        let unwritten = Arc::new(crate::rate::ByteBudget::new(UNWRITTEN_BUDGET));
        let mut disk_tx = Vec::new();
        for n in 0..cfg.threads.max(1) {
            let (tx, jobs) = channel::bounded::<DiskJob>(1024);
            disk_tx.push(tx);
            let done = disk_done.clone();
            let st = storage.clone();
            let budget = unwritten.clone();
            std::thread::Builder::new()
                .name(format!("disk-{n}"))
                .spawn(move || disk_worker(st, budget, jobs, done))
                .expect("spawning a disk thread");
        }
        let ctx = Arc::new(Context {
            info_hash: meta.info_hash.0,
            peer_id,
            num_pieces: info.num_pieces(),
            storage: storage.clone(),
            have: Arc::new(have.iter().map(|h| AtomicBool::new(*h)).collect()),
            events: net_tx,
            unwritten,
            upload: Arc::new(Bucket::new(cfg.max_upload_rate)),
            download: Arc::new(Bucket::new(cfg.max_download_rate)),
            listen_port: port,
            hide_bitfield: cfg.super_seed,
        });
        let stats = Arc::new(Stats::default());
        let left = info.total_length - picker.have_bytes();
        stats.left.store(left, Ordering::SeqCst);
        let (tracker_tx, tracker_rx) = channel::unbounded();
        let announcer = Announcer::spawn(cfg.trackers.clone(), meta.info_hash.0, peer_id, port, stats.clone(), tracker_tx);
        let mut known = HashMap::new();
        for a in &cfg.peers {
            known.insert(*a, (0u32, Instant::now()));
        }
        let progress = Progress::new(cfg.prog, info.name.clone(), info.total_length, cfg.quiet);
        let final_path = storage.final_root().to_path_buf();
        Session {
            meta,
            storage,
            picker,
            ctx,
            peers: HashMap::new(),
            next_key: 1,
            net_rx,
            disk_tx,
            disk_rx,
            tracker_rx,
            announcer,
            stats,
            known,
            connecting: HashSet::new(),
            banned: HashSet::new(),
            banned_addrs: HashSet::new(),
            strikes: HashMap::new(),
            self_addrs: HashSet::new(),
            history: HashMap::new(),
            shutdown,
            started: Instant::now(),
            completed_at: None,
            last_progress: Instant::now(),
            downloaded: 0,
            hash_failures: 0,
            resume_dirty: false,
            resume_seq: 0,
            synced: have.clone(),
            last_resume: Instant::now(),
            last_choke: Instant::now() - Duration::from_secs(60),
            last_optimistic: Instant::now() - Duration::from_secs(60),
            optimistic: None,
            swarm_incomplete: None,
            all_seeds_since: None,
            last_status: Instant::now(),
            status_uploaded: 0,
            progress,

            final_path,
            rng,
            cfg,
        }
    }

    fn log(&self, msg: &str) {
        if !self.cfg.quiet {
            if self.progress.is_tty() {
                eprint!("\r\x1b[2K");
            }
            eprintln!("{}: {msg}", self.cfg.prog);
        }
    }

    fn start_acceptor(&mut self, listener: TcpListener) {
        let ctx = self.ctx.clone();
        let shutdown = self.shutdown.clone();
        // Keys for incoming connections count down from the top, dialled ones up from 1.
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                let mut key = u64::MAX / 2;
                for s in listener.incoming() {
                    if shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(s) = s else { continue };
                    let Ok(addr) = s.peer_addr() else { continue };
                    key += 1;
                    let ctx = ctx.clone();
                    let k = key;
                    let _ = std::thread::Builder::new().name(format!("peer-{k}")).spawn(move || conn::run(ctx, k, s, addr, false));
                }
            })
            .expect("spawning the acceptor");
    }

    fn main_loop(&mut self) -> Result<(), Error> {
        if self.picker.complete() {
            self.on_complete()?;
        }
        let mut last_tick = Instant::now() - Duration::from_secs(1);
        loop {
            select! {
                recv(self.net_rx) -> ev => if let Ok(ev) = ev { self.on_net(ev); },
                recv(self.disk_rx) -> ev => if let Ok(ev) = ev { self.on_disk(ev)?; },
                recv(self.tracker_rx) -> ev => if let Ok(ev) = ev { self.on_tracker(ev); },
                default(Duration::from_millis(200)) => {}
            }
            if last_tick.elapsed() >= Duration::from_millis(1000) {
                last_tick = Instant::now();
                if self.tick()? {
                    return Ok(());
                }
            }
            if self.shutdown.load(Ordering::SeqCst) {
                return Ok(());
            }
        }
    }

    // ---- events from connections ------------------------------------------------------

    fn on_net(&mut self, ev: Event) {
        match ev {
            Event::Connected { key, addr, handshake, outgoing, cmd, shared, sent_have } => {
                self.on_connected(key, addr, handshake, outgoing, cmd, shared, sent_have)
            }
            Event::Message { key, msg } => self.on_message(key, msg),
            Event::Blocks { key, blocks } => self.on_blocks(key, blocks),
            Event::Closed { key, addr, reason } => self.on_closed(key, addr, &reason),
            Event::ConnectFailed { addr, reason } => {
                self.connecting.remove(&addr);
                self.backoff(addr);
                if self.cfg.peers.contains(&addr) {
                    self.log(&format!("cannot connect to {addr}: {reason}"));
                }
            }
        }
    }

    fn backoff(&mut self, addr: SocketAddr) {
        let e = self.known.entry(addr).or_insert((0, Instant::now()));
        e.0 = (e.0 + 1).min(6);
        e.1 = Instant::now() + Duration::from_secs(2u64 << e.0);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_connected(
        &mut self,
        key: PeerKey,
        addr: SocketAddr,
        hs: wire::Handshake,
        outgoing: bool,
        cmd: Sender<Cmd>,
        shared: Arc<PeerShared>,
        sent_have: Vec<bool>,
    ) {
        if outgoing {
            self.connecting.remove(&addr);
            if let Some(k) = self.known.get_mut(&addr) {
                k.0 = 0;
            }
        }
        if self.banned.contains(&hs.peer_id) {
            let _ = cmd.send(Cmd::Close);
            return;
        }
        // One connection per peer: of two, keep the one opened by the lower peer id.
        if let Some((&old, _)) = self.peers.iter().find(|(_, p)| p.peer_id == hs.peer_id) {
            let initiator = |out: bool| if out { self.ctx.peer_id } else { hs.peer_id };
            let old_out = self.peers[&old].outgoing;
            if initiator(outgoing) < initiator(old_out) {
                let _ = self.peers[&old].cmd.send(Cmd::Close);
            } else {
                let _ = cmd.send(Cmd::Close);
                return;
            }
        }
        if self.peers.len() >= self.cfg.max_peers {
            let _ = cmd.send(Cmd::Close);
            return;
        }
        let n = self.picker.num_pieces();
        let client = wire::client_from_peer_id(&hs.peer_id);
        let peer = Peer {
            addr,
            listen: if outgoing { Some(addr) } else { None },
            client,
            peer_id: hs.peer_id,
            outgoing,
            cmd,
            shared,
            has: vec![false; n],
            has_count: 0,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            inflight: VecDeque::new(),
            down: Meter::new(Duration::from_secs(3)),
            up: Meter::new(Duration::from_secs(10)),
            up_seen: 0,
            downloaded: 0,
            last_block: Instant::now(),
            unchoked_at: None,
            revealed: None,
            snubbed_until: None,
            unwanted: 0,
            choked_since: Instant::now(),
        };
        self.log(&format!("peer {} connected ({}, {})", addr, peer.client, if outgoing { "outgoing" } else { "incoming" }));
        // Pieces verified after the bitfield was sent.
        if !self.cfg.super_seed {
            for (i, sent) in sent_have.iter().enumerate() {
                if !sent && self.picker.have(i) {
                    peer.send(Message::Have(i as u32));
                }
            }
        }
        self.peers.insert(key, peer);
        self.last_choke = Instant::now() - Duration::from_secs(60); // re-run the choker soon
        if self.cfg.super_seed {
            self.reveal(key);
        }
    }

    /// Drops a peer that broke the protocol; it is not dialled again.
    fn close(&mut self, key: PeerKey, why: &str) {
        if let Some(p) = self.peers.get(&key) {
            self.log(&format!("dropping peer {}: {why}", p.name()));
            self.banned.insert(p.peer_id);
            if let Some(l) = p.listen {
                self.banned_addrs.insert(l);
            }
            let _ = p.cmd.send(Cmd::Close);
            p.shared.am_choking.store(true, Ordering::SeqCst);
        }
    }

    fn on_closed(&mut self, key: PeerKey, addr: SocketAddr, reason: &str) {
        if key < u64::MAX / 2 {
            self.connecting.remove(&addr);
        }
        let Some(mut p) = self.peers.remove(&key) else {
            if key < u64::MAX / 2 {
                if misbehaved(reason) {
                    self.banned_addrs.insert(addr);
                }
                self.backoff(addr);
            }
            return;
        };
        let inflight: Vec<BlockRef> = p.inflight.drain(..).collect();
        self.picker.forget(key, &inflight);
        self.picker.remove_availability(&p.has);
        record(&mut self.history, &mut p);
        if reason == "connected to ourselves" {
            self.self_addrs.insert(addr);
        }
        if misbehaved(reason) {
            self.banned.insert(p.peer_id);
            if let Some(l) = p.listen {
                self.banned_addrs.insert(l);
            }
        }
        self.log(&format!("peer {} closed: {reason}", p.name()));
        if p.outgoing {
            self.backoff(addr);
        }
        if self.optimistic == Some(key) {
            self.optimistic = None;
        }
    }

    fn on_message(&mut self, key: PeerKey, msg: Message) {
        let n = self.picker.num_pieces();
        let Some(p) = self.peers.get_mut(&key) else { return };
        match msg {
            Message::Choke => {
                p.peer_choking = true;
                let inflight: Vec<BlockRef> = p.inflight.drain(..).collect();
                p.shared.outstanding.store(0, Ordering::SeqCst);
                self.picker.forget(key, &inflight);
            }
            Message::Unchoke => {
                p.peer_choking = false;
                self.request_more(key);
            }
            Message::Interested => {
                p.peer_interested = true;
                self.maybe_unchoke(key);
            }
            Message::NotInterested => {
                p.peer_interested = false;
            }
            Message::Have(i) => {
                if i as usize >= n {
                    return self.close(key, &format!("have for piece {i} of {n}"));
                }
                if !p.has[i as usize] {
                    p.has[i as usize] = true;
                    p.has_count += 1;
                    self.picker.add_have(i as usize);
                }
                if self.cfg.super_seed && p.revealed == Some(i) {
                    p.revealed = None;
                }
                self.update_interest(key);
                if self.cfg.super_seed {
                    self.reveal(key);
                }
            }
            Message::Bitfield(bytes) => {
                let Some(bits) = wire::parse_bitfield(&bytes, n) else {
                    return self.close(key, "malformed bitfield");
                };
                self.set_has(key, bits);
            }
            Message::HaveAll => self.set_has(key, vec![true; n]),
            Message::HaveNone => self.set_has(key, vec![false; n]),
            Message::Reject { index, begin, length } => {
                let r = BlockRef { index, begin, length };
                if let Some(pos) = p.inflight.iter().position(|b| *b == r) {
                    p.inflight.remove(pos);
                    let _ = p.shared.outstanding.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
                    self.picker.forget(key, &[r]);
                }
            }
            Message::Extended { id: 0, payload } => {
                if let Ok(v) = crate::bencode::decode(&payload) {
                    if let Some(d) = v.as_dict() {
                        if let Some(name) = d.get("v").and_then(|v| v.as_str()) {
                            p.client = name.chars().take(40).collect();
                        }
                        if let Some(port) = d.get("p").and_then(|v| v.as_int()) {
                            if (1..=65535).contains(&port) && !p.outgoing {
                                p.listen = Some(SocketAddr::new(p.addr.ip(), port as u16));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn set_has(&mut self, key: PeerKey, bits: Vec<bool>) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        self.picker.remove_availability(&p.has);
        p.has_count = bits.iter().filter(|b| **b).count();
        p.has = bits;
        self.picker.add_availability(&p.has);
        self.update_interest(key);
        if self.cfg.super_seed {
            self.reveal(key);
        }
    }

    fn update_interest(&mut self, key: PeerKey) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        let want = !self.picker.complete() && self.picker.interesting(&p.has);
        if want != p.am_interested {
            p.am_interested = want;
            p.send(if want { Message::Interested } else { Message::NotInterested });
        }
        if want && !p.peer_choking {
            self.request_more(key);
        }
    }

    fn on_blocks(&mut self, key: PeerKey, blocks: Vec<(u32, u32, Vec<u8>)>) {
        let mut accepted = Vec::with_capacity(blocks.len());
        let mut dropped = 0;
        for (index, begin, data) in blocks {
            let len = data.len();
            match self.on_block(key, index, begin, data) {
                Some(b) => accepted.push(b),
                None => dropped += len,
            }
        }
        self.ctx.unwritten.release(dropped);
        if !accepted.is_empty() {
            let n = self.disk_tx.len();
            let mut per: Vec<Vec<(BlockRef, Vec<u8>)>> = (0..n).map(|_| Vec::new()).collect();
            for b in accepted {
                per[b.0.index as usize % n].push(b);
            }
            for (w, blocks) in per.into_iter().enumerate() {
                if !blocks.is_empty() && self.disk_tx[w].send(DiskJob::Write(blocks)).is_err() {
                    self.shutdown.store(true, Ordering::SeqCst);
                }
            }
        }
        self.request_more(key);
    }

    /// Accounts for one block; answers it if it is to be written.
    fn on_block(&mut self, key: PeerKey, index: u32, begin: u32, data: Vec<u8>) -> Option<(BlockRef, Vec<u8>)> {
        let len = data.len() as u64;
        self.downloaded += len;
        self.stats.downloaded.fetch_add(len, Ordering::Relaxed);
        let r = BlockRef { index, begin, length: data.len() as u32 };
        let p = self.peers.get_mut(&key)?;
        p.downloaded += len;
        p.down.add(len);
        p.last_block = Instant::now();
        p.snubbed_until = None;
        match p.inflight.iter().position(|b| *b == r) {
            Some(pos) => {
                p.inflight.remove(pos);
            }
            // Late (cancelled in endgame, or given up on): normal, and dropped below. A flood
            // of blocks never asked for is cut off by the connection itself.
            None => p.unwanted += 1,
        }
        match self.picker.received(key, &r) {
            Arrival::Accept { cancel } => {
                for other in cancel {
                    if let Some(o) = self.peers.get_mut(&other) {
                        if let Some(pos) = o.inflight.iter().position(|b| *b == r) {
                            o.inflight.remove(pos);
                            // `outstanding` stays: the block may be on its way already.
                            o.send(Message::Cancel { index, begin, length: r.length });
                        }
                    }
                }
                Some((r, data))
            }
            Arrival::Drop => None,
        }
    }

    /// Tops up the requests in flight to `key`, sized to its measured rate.
    fn request_more(&mut self, key: PeerKey) {
        if self.picker.complete() {
            return;
        }
        let Some(p) = self.peers.get_mut(&key) else { return };
        if p.peer_choking || !p.am_interested || p.snubbed_until.map(|t| t > Instant::now()).unwrap_or(false) {
            return;
        }
        // About two seconds of data at the peer's recent rate, at least 32 blocks.
        let depth = ((p.down.rate() * 2.0 / wire::BLOCK as f64) as usize).clamp(32, 512);
        if p.inflight.len() + 4 > depth && !p.inflight.is_empty() {
            return;
        }
        let want = depth - p.inflight.len().min(depth);
        let blocks = self.picker.pick(key, &p.has, want, p.inflight.len() < 4);
        if blocks.is_empty() {
            return;
        }
        p.shared.outstanding.fetch_add(blocks.len(), Ordering::SeqCst);
        let msgs = blocks.iter().map(|b| Message::Request { index: b.index, begin: b.begin, length: b.length }).collect();
        p.inflight.extend(blocks);
        let _ = p.cmd.send(Cmd::SendAll(msgs));
    }

    // ---- disk ---------------------------------------------------------------------------

    fn on_disk(&mut self, ev: DiskDone) -> Result<(), Error> {
        match ev {
            DiskDone::Written(rs, Ok(())) => {
                for r in rs {
                    if self.picker.written(r.index) {
                        let _ = self.disk_tx[r.index as usize % self.disk_tx.len()].send(DiskJob::Hash(r.index));
                    }
                }
            }
            DiskDone::Written(_, Err(e)) => return Err(Error::Disk(e)),
            DiskDone::Hashed(i, Ok(true)) => self.on_verified(i)?,
            DiskDone::Hashed(i, Ok(false)) => {
                self.hash_failures += 1;
                let senders = self.picker.hashed(i, false);
                let names: Vec<String> = senders.iter().filter_map(|k| self.peers.get(k)).map(|p| p.name()).collect();
                self.log(&format!("piece {i} failed its hash check (data from {}); fetching it again", names.join(", ")));
                // Only a piece that came from one peer alone names a culprit (the picker
                // fetches a failed piece from a single peer next time).
                let culprit = if senders.len() == 1 { senders } else { Vec::new() };
                for k in culprit {
                    let Some(p) = self.peers.get(&k) else { continue };
                    let id = p.peer_id;
                    let s = self.strikes.entry(id).or_insert(0);
                    *s += 1;
                    if *s >= MAX_STRIKES {
                        self.banned.insert(id);
                        if let Some(l) = p.listen {
                            self.banned_addrs.insert(l);
                        }
                        self.close(k, "banned: sent corrupt data repeatedly");
                    }
                }
            }
            DiskDone::Hashed(_, Err(e)) => return Err(Error::Disk(e)),
            DiskDone::Saved(Err(e)) => self.log(&format!("cannot save resume data: {e}")),
            DiskDone::Saved(Ok(())) => {}
        }
        Ok(())
    }

    /// Queues a resume-file update; the data is fsynced along with it every few seconds.
    fn save_resume(&mut self) {
        let have = self.picker.have_vec();
        let sync = self.last_resume.elapsed() > Duration::from_secs(5);
        self.resume_seq += 1;
        let job = DiskJob::SaveResume { seq: self.resume_seq, synced: self.synced.clone(), have: have.clone(), sync };
        if self.disk_tx[0].try_send(job).is_ok() {
            self.resume_dirty = false;
            if sync {
                self.last_resume = Instant::now();
                self.synced = have;
            }
        }
    }

    fn on_verified(&mut self, i: u32) -> Result<(), Error> {
        self.picker.hashed(i, true);
        self.ctx.have[i as usize].store(true, Ordering::SeqCst);
        self.stats.left.fetch_sub(self.meta.info.piece_size(i as usize), Ordering::SeqCst);
        self.resume_dirty = true;
        if !self.picker.complete() {
            self.save_resume();
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        // To every peer, even those that have the piece: a super-seeder learns from it.
        for k in &keys {
            self.peers[k].send(Message::Have(i));
        }
        if self.picker.complete() {
            return self.on_complete();
        }
        for k in keys {
            if self.peers[&k].am_interested {
                self.update_interest(k);
            }
        }
        Ok(())
    }

    fn on_complete(&mut self) -> Result<(), Error> {
        if self.completed_at.is_some() {
            return Ok(());
        }
        self.completed_at = Some(Instant::now());
        let path = self.storage.finalize().map_err(Error::Disk)?;
        self.final_path = path.clone();
        self.progress.finish();
        if self.downloaded > 0 || self.started.elapsed() > Duration::from_secs(1) {
            self.log(&format!(
                "complete: {} verified ({} in {:.1}s)",
                path.display(),
                crate::units::human_bytes(self.meta.info.total_length),
                self.started.elapsed().as_secs_f64()
            ));
        }
        self.stats.left.store(0, Ordering::SeqCst);
        self.announcer.send(announce::Cmd::Completed);
        if self.cfg.seed_until_done {
            self.announcer.send(announce::Cmd::Poll(true));
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.update_interest(k);
        }
        Ok(())
    }

    fn on_tracker(&mut self, ev: announce::Report) {
        match ev {
            announce::Report::Peers(list) => {
                for a in list {
                    if a.port() == 0 || self.self_addrs.contains(&a) {
                        continue;
                    }
                    self.known.entry(a).or_insert((0, Instant::now()));
                }
            }
            announce::Report::Swarm { incomplete, .. } => self.swarm_incomplete = Some(incomplete),
            announce::Report::Error(e) => self.log(&e),
        }
    }

    // ---- periodic work ------------------------------------------------------------------

    /// Once a second. Answers true when the session is done.
    fn tick(&mut self) -> Result<bool, Error> {
        let now = Instant::now();
        // Snubbed peers lose their requests.
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in &keys {
            let p = self.peers.get_mut(k).unwrap();
            if !p.inflight.is_empty() && now.duration_since(p.last_block) > SNUB_TIMEOUT {
                let inflight: Vec<BlockRef> = p.inflight.drain(..).collect();
                p.last_block = now;
                p.snubbed_until = Some(now + SNUB_PENALTY);
                let name = p.name();
                self.picker.forget(*k, &inflight);
                self.log(&format!("peer {name} sent nothing for {}s: its {} requests go to others", SNUB_TIMEOUT.as_secs(), inflight.len()));
            }
            let p = self.peers.get_mut(k).unwrap();
            let up = p.shared.uploaded.load(Ordering::SeqCst);
            p.up.add(up - p.up_seen.min(up));
            record(&mut self.history, p);
        }
        for k in &keys {
            self.request_more(*k);
        }
        self.choke();
        self.connect_more();
        if self.resume_dirty && self.completed_at.is_none() {
            self.save_resume();
        }
        let uploaded = self.uploaded();
        self.stats.uploaded.store(uploaded, Ordering::Relaxed);
        if self.completed_at.is_none() {
            let rate: f64 = self.peers.values_mut().map(|p| p.down.rate()).sum();
            let extra = format!(
                "{} peers, down {}/s, up {}",
                self.peers.len(),
                crate::units::human_bytes(rate as u64),
                crate::units::human_bytes(uploaded)
            );
            let done = self.picker.have_bytes();
            self.progress.update(done, &extra);
        } else if uploaded != self.status_uploaded && self.last_status.elapsed() >= Duration::from_secs(30) {
            // Seeding: one status line now and then, when something was sent.
            self.last_status = Instant::now();
            self.status_uploaded = uploaded;
            let rate: f64 = self.peers.values_mut().map(|p| p.up.rate()).sum();
            let msg = format!(
                "seeding: {} peers, sent {} ({:.2} x the content), up {}/s",
                self.peers.len(),
                crate::units::human_bytes(uploaded),
                uploaded as f64 / self.meta.info.total_length.max(1) as f64,
                crate::units::human_bytes(rate as u64)
            );
            self.log(&msg);
        }
        // Done?
        if let Some(t) = self.completed_at {
            if self.cfg.seed_forever {
                return Ok(false);
            }
            let seeded = t.elapsed();
            if self.cfg.seed_until_done {
                // Linger until the swarm is done: the tracker reports nobody downloading; or,
                // when it gives no counts, every connected peer is a seed; or (a peer that died
                // may linger in the tracker until it expires) nobody connected has needed us
                // for a minute.
                let capped = !self.cfg.seed_time.is_zero() && seeded >= self.cfg.seed_time;
                let swarm_done = self.swarm_incomplete == Some(0) && seeded >= Duration::from_secs(2);
                let all_seeds = self.peers.values().all(|p| p.seed());
                if !all_seeds {
                    self.all_seeds_since = None;
                } else if self.all_seeds_since.is_none() {
                    self.all_seeds_since = Some(Instant::now());
                }
                let quiet_for = self.all_seeds_since.map(|t| t.elapsed()).unwrap_or(Duration::ZERO);
                let no_counts = (self.cfg.trackers.is_empty() || self.swarm_incomplete.is_none()) && quiet_for >= Duration::from_secs(5);
                let idle = quiet_for >= Duration::from_secs(60);
                return Ok(capped || swarm_done || no_counts || idle);
            }
            return Ok(seeded >= self.cfg.seed_time);
        }
        if let Some(t) = self.cfg.timeout {
            if self.started.elapsed() > t {
                return Err(self.unfinished(format!("timed out after {}s", t.as_secs())));
            }
        }
        if let Some(t) = self.cfg.stall_timeout {
            if self.peers.is_empty() && self.last_progress.elapsed() > t {
                return Err(self.unfinished(format!("no peers for {}s", t.as_secs())));
            }
            if !self.peers.is_empty() {
                self.last_progress = now;
            }
        }
        Ok(false)
    }

    fn unfinished(&self, why: String) -> Error {
        Error::Unfinished(why, Box::new(Report::default()))
    }

    fn uploaded(&self) -> u64 {
        self.history.values().map(|h| h.uploaded).sum::<u64>()
            + self.peers.values().map(|p| {
                let up = p.shared.uploaded.load(Ordering::SeqCst);
                up - p.up_seen.min(up)
            }).sum::<u64>()
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn connect_more(&mut self) {
        if self.completed_at.is_some() && !self.cfg.seed_forever && self.cfg.seed_time.is_zero() && !self.cfg.seed_until_done {
            return;
        }
        let now = Instant::now();
        let connected: HashSet<SocketAddr> = self.peers.values().flat_map(|p| [Some(p.addr), p.listen]).flatten().collect();
        let mut candidates: Vec<SocketAddr> = self
            .known
            .iter()
            .filter(|(a, (_, at))| {
                *at <= now
                    && !connected.contains(a)
                    && !self.connecting.contains(a)
                    && !self.banned_addrs.contains(a)
                    && !self.self_addrs.contains(a)
            })
            .map(|(a, _)| *a)
            .collect();
        candidates.sort();
        while self.peers.len() + self.connecting.len() < self.cfg.max_peers && !candidates.is_empty() {
            let i = (self.rand() % candidates.len() as u64) as usize;
            let addr = candidates.swap_remove(i);
            self.connecting.insert(addr);
            let key = self.next_key;
            self.next_key += 1;
            let ctx = self.ctx.clone();
            let _ = std::thread::Builder::new().name(format!("dial-{key}")).spawn(move || conn::dial(ctx, key, addr));
        }
    }

    // ---- choking --------------------------------------------------------------------------

    fn unchoked(&self) -> usize {
        self.peers.values().filter(|p| !p.shared.am_choking.load(Ordering::SeqCst)).count()
    }

    fn set_choke(&mut self, key: PeerKey, choke: bool) {
        let Some(p) = self.peers.get_mut(&key) else { return };
        let was = p.shared.am_choking.swap(choke, Ordering::SeqCst);
        if was != choke {
            p.unchoked_at = if choke { None } else { Some(Instant::now()) };
            if choke {
                p.choked_since = Instant::now();
            }
            p.send(if choke { Message::Choke } else { Message::Unchoke });
        }
    }

    fn maybe_unchoke(&mut self, key: PeerKey) {
        if self.unchoked() < self.cfg.upload_slots {
            self.set_choke(key, false);
        }
    }

    /// The choker (BitTorrent's tit-for-tat), every 10 s. While downloading: the peers that
    /// send us the most keep their slots, plus one optimistic unchoke rotated every 30 s so
    /// newcomers get their first pieces. While seeding: round robin: a peer keeps its slot
    /// for 20 s, then the slot goes to whoever has waited longest, so fast peers do not
    /// starve the rest.
    fn choke(&mut self) {
        if self.last_choke.elapsed() < Duration::from_secs(10) {
            return;
        }
        self.last_choke = Instant::now();
        let slots = self.cfg.upload_slots.max(1);
        let interested: Vec<PeerKey> = self.peers.iter().filter(|(_, p)| p.peer_interested).map(|(k, _)| *k).collect();
        let keep: HashSet<PeerKey> = if interested.len() <= slots {
            interested.into_iter().collect()
        } else if self.completed_at.is_some() {
            let now = Instant::now();
            let mut ranked: Vec<(u8, Duration, PeerKey)> = interested
                .iter()
                .map(|k| {
                    let p = &self.peers[k];
                    match p.unchoked_at {
                        Some(t) if now.duration_since(t) < Duration::from_secs(20) => (0, Duration::ZERO, *k),
                        Some(t) => (2, Duration::MAX - now.duration_since(t), *k),
                        None => (1, Duration::MAX - now.duration_since(p.choked_since), *k),
                    }
                })
                .collect();
            ranked.sort();
            ranked.into_iter().take(slots).map(|(_, _, k)| k).collect()
        } else {
            let mut ranked: Vec<(f64, PeerKey)> =
                interested.iter().map(|k| (self.peers.get_mut(k).unwrap().down.rate(), *k)).collect();
            ranked.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
            let mut keep: HashSet<PeerKey> = ranked.iter().take(slots - 1).map(|(_, k)| *k).collect();
            let stale = self.optimistic.map(|k| !self.peers.contains_key(&k) || !self.peers[&k].peer_interested).unwrap_or(true);
            if self.last_optimistic.elapsed() >= Duration::from_secs(30) || stale {
                self.last_optimistic = Instant::now();
                let rest: Vec<PeerKey> = interested.iter().copied().filter(|k| !keep.contains(k)).collect();
                if !rest.is_empty() {
                    let i = (self.rand() % rest.len() as u64) as usize;
                    self.optimistic = Some(rest[i]);
                }
            }
            if let Some(o) = self.optimistic {
                keep.insert(o);
            }
            keep
        };
        let all: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in all {
            self.set_choke(k, !keep.contains(&k));
        }
    }

    // ---- super-seeding ---------------------------------------------------------------------

    /// Reveals to `key` one piece it lacks that no peer has yet and that is not revealed to
    /// anyone else; failing that, the rarest piece it lacks. One piece at a time: the next
    /// once the peer announces it has this one.
    fn reveal(&mut self, key: PeerKey) {
        let n = self.picker.num_pieces();
        let start = (self.rand() % n.max(1) as u64) as usize;
        let Some(p) = self.peers.get(&key) else { return };
        if p.revealed.is_some() || p.seed() {
            return;
        }
        let taken: HashSet<u32> = self.peers.values().filter_map(|p| p.revealed).collect();
        let mut avail = vec![0u32; n];
        for q in self.peers.values() {
            for (i, h) in q.has.iter().enumerate() {
                avail[i] += *h as u32;
            }
        }
        let mut best: Option<(u32, bool, usize)> = None;
        for j in 0..n {
            let i = (start + j) % n;
            if p.has[i] || !self.picker.have(i) {
                continue;
            }
            let cand = (avail[i], taken.contains(&(i as u32)), i);
            if best.map(|b| (cand.0, cand.1) < (b.0, b.1)).unwrap_or(true) {
                best = Some(cand);
            }
        }
        if let Some((_, _, i)) = best {
            let p = self.peers.get_mut(&key).unwrap();
            p.revealed = Some(i as u32);
            p.send(Message::Have(i as u32));
        }
    }

    // ---- the end ----------------------------------------------------------------------------

    fn finish(&mut self) {
        self.progress.finish();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            let mut p = self.peers.remove(&k).unwrap();
            record(&mut self.history, &mut p);
            let _ = p.cmd.send(Cmd::Close);
        }
        self.shutdown.store(true, Ordering::SeqCst);
        self.announcer.stop(Duration::from_secs(4));
        if self.completed_at.is_none() {
            let have = self.picker.have_vec();
            let _ = self.storage.save_resume(u64::MAX, &have, &have, true);
        }
    }

    fn report(&self) -> Report {
        let mut peers: Vec<PeerReport> = self.history.values().filter(|p| p.downloaded > 0 || p.uploaded > 0).cloned().collect();
        peers.sort_by(|a, b| a.addr.cmp(&b.addr));
        Report {
            info_hash: self.meta.info_hash.hex(),
            name: self.meta.info.name.clone(),
            path: self.final_path.clone(),
            complete: self.picker.complete(),
            downloaded: self.downloaded,
            uploaded: peers.iter().map(|p| p.uploaded).sum(),
            duration_secs: self.started.elapsed().as_secs_f64(),
            peers,
            hash_failures: self.hash_failures,
        }
    }
}

/// Moves a peer's counters since the last call into the per-address history (the report).
fn record(history: &mut HashMap<String, PeerReport>, p: &mut Peer) {
    let up = p.shared.uploaded.load(Ordering::SeqCst);
    let e = history.entry(p.name()).or_insert_with(|| PeerReport {
        addr: p.name(),
        client: p.client.clone(),
        downloaded: 0,
        uploaded: 0,
    });
    e.downloaded += p.downloaded;
    e.uploaded += up - p.up_seen.min(up);
    p.downloaded = 0;
    p.up_seen = up;
}

/// Reasons a connection ended that mean the peer is broken or hostile (not worth redialling).
fn misbehaved(reason: &str) -> bool {
    ["protocol violation", "invalid request", "request flood", "sends blocks", "bad handshake", "another torrent"]
        .iter()
        .any(|r| reason.contains(r))
}

/// A disk thread: writes blocks, checks pieces, saves resume data. Blocks of a piece reach
/// the same thread in the order they arrived, so while they come in order the piece is
/// hashed as it is written and needs no read-back; otherwise it is read back and hashed.
fn disk_worker(storage: Arc<Storage>, unwritten: Arc<crate::rate::ByteBudget>, jobs: Receiver<DiskJob>, done: Sender<DiskDone>) {
    use sha1::{Digest, Sha1};
    let mut buf = Vec::new();
    // Per piece being written: running hash, next offset expected, still in order.
    let mut running: HashMap<u32, (Sha1, u64, bool)> = HashMap::new();
    for job in jobs {
        let r = match job {
            DiskJob::Write(blocks) => {
                let res = blocks.iter().try_for_each(|(r, data)| storage.write(r.index as usize, r.begin as u64, data));
                if res.is_ok() {
                    for (r, data) in &blocks {
                        let e = running.entry(r.index).or_insert_with(|| (Sha1::new(), 0, true));
                        if e.2 && e.1 == r.begin as u64 {
                            e.0.update(data);
                            e.1 += data.len() as u64;
                        } else {
                            e.2 = false;
                        }
                    }
                }
                unwritten.release(blocks.iter().map(|b| b.1.len()).sum());
                DiskDone::Written(blocks.into_iter().map(|(r, _)| r).collect(), res)
            }
            DiskJob::Hash(i) => {
                let info = storage.info();
                match running.remove(&i) {
                    Some((h, len, true)) if len == info.piece_size(i as usize) => {
                        let digest: [u8; 20] = h.finalize().into();
                        DiskDone::Hashed(i, Ok(digest == info.pieces[i as usize]))
                    }
                    _ => DiskDone::Hashed(i, storage.check_piece(i as usize, &mut buf)),
                }
            }
            DiskJob::SaveResume { seq, synced, have, sync } => DiskDone::Saved(storage.save_resume(seq, &synced, &have, sync)),
        };
        if done.send(r).is_err() {
            return;
        }
    }
}
