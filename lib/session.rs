//! One torrent's swarm session: the threaded driver around the swarm core.
//!
//! Every decision lives in [`crate::swarm::Core`], a state machine without I/O; this file
//! carries its outputs out and feeds it what happened. Threads and who owns what:
//! - the session thread (the caller of [`run`]) owns the core. It reacts to events from
//!   three crossbeam channels (connections: bounded, so a flood is slowed by TCP
//!   back-pressure; the disk pool; the announcer) and sends the core a tick once a second;
//! - two threads per peer connection (see `peer::conn`), which forward messages here, serve
//!   uploads themselves from storage, and own their socket-side state (choked or not,
//!   blocks outstanding), changed only through the commands the core's outputs become;
//! - a disk pool (one thread per core) that writes received blocks with positional writes,
//!   one thread per file, hashes each piece on the thread of the file it starts in (several
//!   pieces at once when several wait), saves the resume file and finalizes the content
//!   — so neither network threads nor this thread wait on disk;
//! - the acceptor (`peer::accept`: one listening port for every session of the process,
//!   woken and joined when the last session ends), short-lived dialler threads, and the
//!   announcer thread.

use crate::announce::{self, Announcer, Stats};
use crate::hashing;
use crate::mailbox;
use crate::metainfo::Metainfo;
use crate::peer::accept::Acceptor;
use crate::peer::conn::{self, Cmd, Context, Event, PeerShared};
use crate::picker::{BlockRef, PeerKey};
use crate::progress::Progress;
use crate::rate::Bucket;
use crate::storage::{self, Storage};
use crate::swarm::{self, Core, End, Input, Output};
use crate::webseed;
pub use crate::swarm::{Lifecycle, PeerReport};
use crate::congestion::Congestion;
use crossbeam::channel::{self, select, Receiver, Sender};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Received bytes that may wait for the disk before sockets are left unread.
const UNWRITTEN_BUDGET: usize = 24 << 20;
/// While events keep coming, the session thread sleeps between passes and then takes
/// everything queued, instead of being woken for each event: on the 32-host testbed
/// wake-ups were a quarter of all CPU. The pause is what the core allows
/// ([`Core::pass_pause`]: short against the time any peer's requests in flight last, so the
/// pipelines stay full), at most this long; on the 100 Mbit/s testbed that is the whole of
/// it (2 ms: 5.63–5.76 CPU-s per GB at 32 hosts, 20 ms: 5.02–5.17, same times).
const COALESCE: Duration = Duration::from_millis(20);
/// Received blocks coming faster than this (bytes a second) are hashed on every disk worker;
/// slower, on the worker that writes them (see [`Session::hash_worker`]). One worker writes
/// and hashes about a gigabyte a second on the machines measured.
const SPREAD_HASHING_AT: f64 = 200e6;
/// Pauses shorter than this are not taken (the next pass follows at once).
const MIN_PAUSE: Duration = Duration::from_micros(500);
/// A pass that found this many events is followed by the next at once.
const DENSE: usize = 32;
/// Events handled in one pass at most (then the loop ticks, checks for the end, and goes on).
const MAX_DRAIN: usize = 4096;
/// Connections (in handshake or running) beyond `max_peers` that the acceptor lets in; the
/// core refuses the extra ones after their handshake, the acceptor refuses the rest at once.
const ACCEPT_SLACK: usize = 16;

pub struct Config {
    /// Program name for log lines.
    pub prog: &'static str,
    /// Port to listen on: `Some(p)` exactly (0: any free port), `None` the first free of
    /// 6881–6889, then any (see [`crate::listen`]).
    pub port: Option<u16>,
    /// Peers given by hand.
    pub peers: Vec<SocketAddr>,
    pub trackers: Vec<Vec<String>>,
    pub max_peers: usize,
    /// Peers unchoked at once (upload slots).
    pub upload_slots: usize,
    pub max_upload_rate: u64,
    pub max_download_rate: u64,
    /// What to do once our copy is complete.
    pub lifecycle: Lifecycle,
    /// Give up after this long without completing.
    pub timeout: Option<Duration>,
    /// Give up when no peer is connected for this long.
    pub stall_timeout: Option<Duration>,
    /// Reveal pieces one peer at a time so each byte leaves us about once (BEP 16 style).
    pub super_seed: bool,
    pub quiet: bool,
    pub threads: usize,
    /// Web seeds (BEP 19): http:// URLs asked for the pieces the swarm lacks.
    pub web_seeds: Vec<String>,
    /// TCP congestion control of peer connections (see [`crate::congestion`]).
    pub tcp_congestion: Congestion,
}

impl Config {
    /// A session that seeds complete content until shut down (bseed, btrack --seed).
    pub fn seeder(prog: &'static str, port: impl Into<Option<u16>>, trackers: Vec<Vec<String>>) -> Config {
        Config {
            prog,
            port: port.into(),
            peers: Vec::new(),
            trackers,
            max_peers: 100,
            upload_slots: 16,
            max_upload_rate: 0,
            max_download_rate: 0,
            lifecycle: Lifecycle::Forever,
            timeout: None,
            stall_timeout: None,
            super_seed: false,
            quiet: false,
            threads: crate::hashing::default_threads(),
            web_seeds: Vec::new(),
            tcp_congestion: Congestion::default(),
        }
    }
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
    /// Web seeds and what each sent (absent when there were none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub web_seeds: Vec<swarm::WebSeedReport>,
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
    /// Blocks to write (routed by file: see [`Session::carry`]), each with the worker that
    /// hashes its piece; once written, the worker hashes those of its own pieces and the
    /// others go on as [`DiskJob::Digest`] to the worker of their piece.
    Write(Vec<(BlockRef, Vec<u8>)>, Vec<usize>),
    /// Written blocks, for their pieces' running hashes; their bytes leave the unwritten
    /// budget here.
    Digest(Vec<(BlockRef, Vec<u8>)>),
    Hash(u32),
    SaveResume {
        seq: u64,
        synced: Vec<bool>,
        have: Vec<bool>,
        sync: bool,
    },
    Finalize,
}

enum DiskDone {
    /// Blocks written (or why not), and those of them still to be hashed by their pieces'
    /// workers (given).
    Written(Vec<BlockRef>, Vec<(BlockRef, Vec<u8>)>, Vec<usize>, Result<(), storage::Error>),
    Hashed(u32, Result<bool, storage::Error>),
    Saved(Result<(), storage::Error>),
    Finalized(Result<PathBuf, storage::Error>),
}

/// A connection's command channel and shared counters.
struct Conn {
    cmd: mailbox::Sender<Cmd>,
    shared: Arc<PeerShared>,
    /// Commands wait in the writer's queue without having woken it ([`Output::Notify`]):
    /// the next tick nudges it.
    lazy: std::cell::Cell<bool>,
}

/// Everything needed to start a session.
pub struct Setup {
    pub meta: Metainfo,
    pub storage: Storage,
    pub have: Vec<bool>,
    pub config: Config,
    pub shutdown: Arc<AtomicBool>,
}

/// Limits shared by every session of a process: transfer rates and the bytes received but
/// not yet written.
#[derive(Clone)]
pub struct Limits {
    pub upload: Arc<Bucket>,
    pub download: Arc<Bucket>,
    pub unwritten: Arc<crate::rate::ByteBudget>,
}

impl Limits {
    pub fn new(max_upload_rate: u64, max_download_rate: u64) -> Limits {
        Limits {
            upload: Arc::new(Bucket::new(max_upload_rate)),
            download: Arc::new(Bucket::new(max_download_rate)),
            unwritten: Arc::new(crate::rate::ByteBudget::new(UNWRITTEN_BUDGET)),
        }
    }
}

/// Runs the session until it is done (see [`Config`]) or shut down.
pub fn run(setup: Setup) -> Result<Report, Error> {
    let asked = setup.config.port.unwrap_or(0);
    let acceptor = Acceptor::bind(setup.config.port).map_err(|e| Error::Listen(asked, e))?;
    let limits = Limits::new(setup.config.max_upload_rate, setup.config.max_download_rate);
    let result = run_on(setup, &acceptor, limits, None);
    acceptor.stop();
    result
}

/// Runs several sessions at once over one listening port (the handshake's info-hash picks
/// the torrent), sharing the rate caps and the memory budget; each session's peer limit is
/// its share of `config.max_peers`. Answers each session's outcome, in order; only a port
/// that cannot be bound fails the whole call. Log lines name the torrent.
pub fn run_many(setups: Vec<Setup>, port: Option<u16>) -> Result<Vec<Result<Report, Error>>, Error> {
    let Some(first) = setups.first() else { return Ok(Vec::new()) };
    let acceptor = Acceptor::bind(port).map_err(|e| Error::Listen(port.unwrap_or(0), e))?;
    let limits = Limits::new(first.config.max_upload_rate, first.config.max_download_rate);
    let n = setups.len();
    let results: Vec<Result<Report, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = setups
            .into_iter()
            .map(|mut setup| {
                setup.config.max_peers = (setup.config.max_peers / n).max(8);
                let label = (n > 1).then(|| crate::sanitize::printable(&setup.meta.info.name).into_owned());
                let (acceptor, limits) = (&acceptor, limits.clone());
                scope.spawn(move || run_on(setup, acceptor, limits, label))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Unfinished("session thread failed".into(), Box::default())))).collect()
    });
    acceptor.stop();
    Ok(results)
}

fn run_on(setup: Setup, acceptor: &Arc<Acceptor>, limits: Limits, label: Option<String>) -> Result<Report, Error> {
    let Setup { meta, storage, have, mut config, shutdown } = setup;
    let port = acceptor.port();
    let (congestion, why) = crate::congestion::check(&config.tcp_congestion);
    let asked = std::mem::replace(&mut config.tcp_congestion, congestion);
    let mut s = Session::new(meta, storage, have, config, shutdown, port, limits, label);
    s.log(&format!("listening on port {port}"));
    if let Some(e) = why {
        s.log(&format!("TCP congestion control {asked} not available ({e}): peer connections use the system's"));
    }
    acceptor.add(s.ctx.clone(), s.cfg.max_peers + ACCEPT_SLACK);
    let result = s.main_loop();
    acceptor.remove(&s.ctx.info_hash);
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
    core: Core<Vec<u8>>,
    /// The clock's zero: the core's `now` is the time since.
    epoch: Instant,
    ctx: Arc<Context>,
    conns: HashMap<PeerKey, Conn>,
    net_rx: Receiver<Event>,
    /// One queue per disk thread; a piece's blocks always go to the same one, in order.
    disk_tx: Vec<mailbox::Sender<DiskJob>>,
    /// The disk worker that hashes each piece with blocks written and no Hash job yet
    /// (chosen at its first block: see [`Session::hash_worker`]).
    hash_at: HashMap<u32, usize>,
    disk_rx: Receiver<DiskDone>,
    tracker_rx: Receiver<announce::Report>,
    announcer: Announcer,
    stats: Arc<Stats>,
    shutdown: Arc<AtomicBool>,
    /// A disk thread is gone: stop (the process's other sessions go on).
    halt: bool,
    /// The torrent's name in log lines when the process runs several sessions.
    label: Option<String>,
    resume_seq: u64,
    last_status: Instant,
    status_uploaded: u64,
    progress: Progress,
    final_path: PathBuf,
    /// Inputs the driver itself produced while carrying out outputs.
    feedback: Vec<Input<Vec<u8>>>,
    /// Each web seed's worker: requests go out here, blocks and failures come back on `web_rx`.
    web_tx: Vec<Sender<Vec<BlockRef>>>,
    web_rx: Receiver<webseed::Event>,
    /// Keeps `web_rx` connected whether or not any worker runs: a disconnected channel is
    /// always ready in `select!`, and the loop would spin.
    _web_events: Sender<webseed::Event>,
}

/// Keeps freed heap memory in the process (glibc only; other allocators keep their own
/// ways). Every received block is a 16 KiB allocation freed a moment later on another
/// thread; with glibc's default trim threshold the heap top went back to the kernel again
/// and again and came back as fresh zeroed pages (`clear_page` in the readers' profile: a
/// page fault per 4 KiB, and on a VM a host fault too). What is kept is bounded by the
/// unwritten budget.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only sets allocator parameters; called once, before the session's
        // threads start allocating blocks.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        });
    }
}

fn random_peer_id() -> [u8; 20] {
    let mut id = *b"-SH0100-000000000000";
    let mut x = crate::tracker::client::random_u32() as u64
        | ((crate::tracker::client::random_u32() as u64) << 32);
    for b in id[8..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize];
    }
    id
}

impl Session {
    fn new(
        meta: Metainfo,
        storage: Storage,
        have: Vec<bool>,
        cfg: Config,
        shutdown: Arc<AtomicBool>,
        port: u16,
        limits: Limits,
        label: Option<String>,
    ) -> Session {
        keep_freed_memory();
        let info = meta.info.clone();
        let storage = Arc::new(storage);
        let peer_id = random_peer_id();
        let seed = crate::tracker::client::random_u32() as u64
            | ((crate::tracker::client::random_u32() as u64) << 32);
        let (net_tx, net_rx) = channel::bounded(4096);
        let (disk_done, disk_rx) = channel::unbounded();
        let unwritten = limits.unwritten.clone();
        let mut disk_tx = Vec::new();
        let workers = cfg.threads.max(1);
        let hints = writeback_thread(storage.clone());
        for n in 0..workers {
            // Unbounded: what is queued is bounded by the unwritten budget that readers take
            // before they send blocks.
            let (tx, jobs) = mailbox::unbounded::<DiskJob>();
            disk_tx.push(tx);
            let done = disk_done.clone();
            let st = storage.clone();
            let budget = unwritten.clone();
            let hints = hints.clone();
            std::thread::Builder::new()
                .name(format!("disk-{n}"))
                .spawn(move || disk_worker(st, budget, n, jobs, done, hints))
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
            upload: limits.upload,
            download: limits.download,
            listen_port: port,
            hide_bitfield: cfg.super_seed,
            info_bytes: Arc::new(meta.raw_info.clone()),
            congestion: cfg.tcp_congestion.clone(),
        });
        let (web_events, web_rx) = channel::unbounded();
        let web_tx: Vec<Sender<Vec<BlockRef>>> = cfg
            .web_seeds
            .iter()
            .enumerate()
            .map(|(seed, url)| {
                // One worker (and HTTP connection) per request the core may have in flight,
                // all taking requests from one queue. Workers that cannot start leave the
                // queue closed: the core's requests then fail (below).
                let (tx, rx) = channel::unbounded();
                let info = Arc::new(info.clone());
                for n in 0..swarm::webseed::CONNECTIONS {
                    let w = webseed::Worker {
                        seed,
                        url: url.clone(),
                        info: info.clone(),
                        events: web_events.clone(),
                        unwritten: ctx.unwritten.clone(),
                        download: ctx.download.clone(),
                    };
                    let rx = rx.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("webseed-{seed}-{n}"))
                        .spawn(move || w.run(rx));
                }
                tx
            })
            .collect();
        let epoch = Instant::now();
        let core = Core::new(
            swarm::Config {
                peer_id,
                max_peers: cfg.max_peers,
                upload_slots: cfg.upload_slots,
                super_seed: cfg.super_seed,
                lifecycle: cfg.lifecycle,
                timeout: cfg.timeout,
                stall_timeout: cfg.stall_timeout,
                peers: cfg.peers.clone(),
                seed,
                block: crate::peer::wire::BLOCK,
                piece_length: info.piece_length,
                total_length: info.total_length,
                web_seeds: cfg.web_seeds.clone(),
            },
            have,
            Duration::ZERO,
        );
        let stats = Arc::new(Stats::default());
        stats
            .left
            .store(info.total_length - core.have_bytes(), Ordering::SeqCst);
        let (tracker_tx, tracker_rx) = channel::unbounded();
        let announcer = Announcer::spawn(
            cfg.trackers.clone(),
            meta.info_hash.0,
            peer_id,
            port,
            stats.clone(),
            tracker_tx,
        );
        // One progress line per process: with several sessions, log lines only.
        let progress = Progress::new(cfg.prog, info.name.clone(), info.total_length, cfg.quiet || label.is_some());
        let final_path = storage.final_root().to_path_buf();
        Session {
            meta,
            storage,
            core,
            epoch,
            ctx,
            conns: HashMap::new(),
            net_rx,
            disk_tx,
            hash_at: HashMap::new(),
            disk_rx,
            tracker_rx,
            announcer,
            stats,
            shutdown,
            halt: false,
            label,
            resume_seq: 0,
            last_status: Instant::now(),
            status_uploaded: 0,
            progress,
            final_path,
            feedback: Vec::new(),
            web_tx,
            web_rx,
            _web_events: web_events,
            cfg,
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn log(&self, msg: &str) {
        if !self.cfg.quiet {
            if self.progress.is_tty() {
                eprint!("\r\x1b[2K");
            }
            match &self.label {
                Some(l) => eprintln!("{}: {l}: {msg}", self.cfg.prog),
                None => eprintln!("{}: {msg}", self.cfg.prog),
            }
        }
    }

    fn main_loop(&mut self) -> Result<(), Error> {
        self.carry_out()?;
        let mut last_tick = Instant::now() - Duration::from_secs(1);
        let mut busy = false;
        let mut drained = 0;
        loop {
            // Ticks first: the first one (which dials the peers given) runs at once, not
            // after the first wait below.
            if last_tick.elapsed() >= Duration::from_millis(1000) {
                last_tick = Instant::now();
                self.tick();
                self.carry_out()?;
                self.nudge_lazy();
            }
            if busy {
                // Events keep coming: let them gather for a moment without being woken by
                // each one, then take them all (one pass of the core's outputs, one command
                // per peer and per disk thread for the lot). A pass that found many needs no
                // pause: the thread is busy anyway and a pause would only drain pipelines.
                if drained < DENSE {
                    let pause = self.core.pass_pause(self.now(), COALESCE);
                    if pause >= MIN_PAUSE {
                        std::thread::sleep(pause);
                    }
                }
                drained = self.drain()?;
                busy = drained > 0;
            } else {
                let wait = if self.core.flush_waiting() {
                    swarm::BATCH_EVERY
                } else {
                    Duration::from_millis(200)
                };
                select! {
                    recv(self.net_rx) -> ev => if let Ok(ev) = ev { self.on_net(ev); busy = true; },
                    recv(self.disk_rx) -> ev => if let Ok(ev) = ev { self.on_disk(ev)?; busy = true; },
                    recv(self.tracker_rx) -> ev => if let Ok(ev) = ev { self.on_tracker(ev); },
                    recv(self.web_rx) -> ev => if let Ok(ev) = ev { self.on_web(ev); busy = true; },
                    default(wait) => {}
                }
            }
            if self.core.flush_waiting() {
                self.input(Input::Flush);
            }
            self.carry_out()?;
            match self.core.end() {
                Some(End::Done) => return Ok(()),
                Some(End::Unfinished(why)) => {
                    return Err(Error::Unfinished(why.clone(), Box::default()))
                }
                None => {}
            }
            if self.shutdown.load(Ordering::SeqCst) || self.halt {
                return Ok(());
            }
        }
    }

    /// Handles every event already queued (at most a bounded number, so ticks still run);
    /// answers how many there were.
    fn drain(&mut self) -> Result<usize, Error> {
        let mut n = 0;
        while n < MAX_DRAIN {
            let before = n;
            if let Ok(ev) = self.net_rx.try_recv() {
                self.on_net(ev);
                n += 1;
            }
            if let Ok(ev) = self.disk_rx.try_recv() {
                self.on_disk(ev)?;
                n += 1;
            }
            if let Ok(ev) = self.web_rx.try_recv() {
                self.on_web(ev);
                n += 1;
            }
            if let Ok(ev) = self.tracker_rx.try_recv() {
                self.on_tracker(ev);
            }
            if n == before {
                break;
            }
        }
        Ok(n)
    }

    fn input(&mut self, i: Input<Vec<u8>>) {
        let now = self.now();
        self.core.handle(now, i);
    }

    // ---- inputs ----------------------------------------------------------------------------

    fn on_net(&mut self, ev: Event) {
        let i = match ev {
            Event::Connected {
                key,
                addr,
                handshake,
                outgoing,
                cmd,
                shared,
                sent_have,
            } => {
                self.conns.insert(key, Conn { cmd, shared, lazy: Default::default() });
                Input::Connected {
                    key,
                    addr,
                    peer_id: handshake.peer_id,
                    outgoing,
                    sent_have,
                }
            }
            Event::Message { key, msg } => Input::Message { key, msg },
            Event::Blocks { key, blocks } => {
                let n: u64 = blocks.iter().map(|b| b.2.len() as u64).sum();
                self.stats.downloaded.fetch_add(n, Ordering::Relaxed);
                let blocks = blocks
                    .into_iter()
                    .map(|(index, begin, d)| {
                        (
                            BlockRef {
                                index,
                                begin,
                                length: d.len() as u32,
                            },
                            d,
                        )
                    })
                    .collect();
                Input::Blocks { key, blocks }
            }
            Event::Closed { key, addr, reason } => {
                if let Some(c) = self.conns.remove(&key) {
                    self.feedback.push(Input::Uploaded {
                        key,
                        total: c.shared.uploaded.load(Ordering::SeqCst),
                    });
                }
                let fb = std::mem::take(&mut self.feedback);
                fb.into_iter().for_each(|i| self.input(i));
                Input::Closed { key, addr, reason }
            }
            Event::ConnectFailed { key, addr, reason } => {
                Input::ConnectFailed { key, addr, reason }
            }
        };
        self.input(i);
    }

    fn on_disk(&mut self, ev: DiskDone) -> Result<(), Error> {
        match ev {
            DiskDone::Written(rs, blocks, to, Ok(())) => {
                // To their pieces' workers before the core sees them written: its Hash job
                // for a piece is then queued after all the piece's blocks.
                self.send_per_worker(blocks, &to, DiskJob::Digest);
                self.input(Input::Written(rs))
            }
            DiskDone::Written(_, _, _, Err(e))
            | DiskDone::Hashed(_, Err(e))
            | DiskDone::Finalized(Err(e)) => return Err(Error::Disk(e)),
            DiskDone::Hashed(index, Ok(ok)) => self.input(Input::Hashed { index, ok }),
            DiskDone::Saved(Err(e)) => self.log(&format!("cannot save resume data: {e}")),
            DiskDone::Saved(Ok(())) => {}
            DiskDone::Finalized(Ok(path)) => {
                self.final_path = path;
                self.progress.finish();
                let took = self.now();
                if self.core.downloaded() > 0 || took > Duration::from_secs(1) {
                    self.log(&format!(
                        "complete: {} verified ({} in {:.1}s)",
                        self.final_path.display(),
                        crate::units::human_bytes(self.meta.info.total_length),
                        took.as_secs_f64()
                    ));
                }
                self.stats.left.store(0, Ordering::SeqCst);
                self.input(Input::Finalized);
                // Whether the session is done now is decided on a tick: have it now rather
                // than up to a second later (bfetch --no-linger exits at once).
                self.tick();
            }
        }
        Ok(())
    }

    fn on_web(&mut self, ev: webseed::Event) {
        let i = match ev {
            webseed::Event::Blocks { seed, blocks } => {
                let n: u64 = blocks.iter().map(|b| b.1.len() as u64).sum();
                self.stats.downloaded.fetch_add(n, Ordering::Relaxed);
                Input::WebBlocks { seed, blocks }
            }
            webseed::Event::Failed { seed, blocks, reason, retry_after } => Input::WebFailed {
                seed,
                blocks,
                reason: crate::sanitize::printable(&reason).into_owned(),
                retry_after,
            },
        };
        self.input(i);
    }

    fn on_tracker(&mut self, ev: announce::Report) {
        match ev {
            announce::Report::Peers(list) => self.input(Input::Peers(list)),
            announce::Report::Swarm { incomplete, .. } => {
                self.input(Input::SwarmIncomplete(incomplete))
            }
            announce::Report::Error(e) => self.log(&e),
        }
    }

    /// Tells the core what each connection has sent so far; answers the connections.
    fn report_uploads(&mut self) -> Vec<PeerKey> {
        let counts: Vec<(PeerKey, u64)> = self
            .conns
            .iter()
            .map(|(k, c)| (*k, c.shared.uploaded.load(Ordering::SeqCst)))
            .collect();
        for (key, total) in &counts {
            self.input(Input::Uploaded {
                key: *key,
                total: *total,
            });
        }
        counts.into_iter().map(|(k, _)| k).collect()
    }

    /// Once a second: the connections' upload counters, the core's tick, and the progress
    /// line (or, while seeding, a status line now and then when something was sent).
    fn tick(&mut self) {
        self.report_uploads();
        self.input(Input::Tick);
        let uploaded = self.core.uploaded();
        self.stats.uploaded.store(uploaded, Ordering::Relaxed);
        let (down, up) = self.core.rates(self.now());
        if !self.core.complete() {
            let extra = format!(
                "{} peers, down {}/s, up {}",
                self.core.peer_count(),
                crate::units::human_bytes(down as u64),
                crate::units::human_bytes(uploaded)
            );
            self.progress.update(self.core.have_bytes(), &extra);
        } else if uploaded != self.status_uploaded
            && self.last_status.elapsed() >= Duration::from_secs(30)
        {
            self.last_status = Instant::now();
            self.status_uploaded = uploaded;
            let msg = format!(
                "seeding: {} peers, sent {} ({:.2} x the content), up {}/s",
                self.core.peer_count(),
                crate::units::human_bytes(uploaded),
                uploaded as f64 / self.meta.info.total_length.max(1) as f64,
                crate::units::human_bytes(up as u64)
            );
            self.log(&msg);
        }
    }

    // ---- outputs ---------------------------------------------------------------------------

    /// Carries out what the core decided, until it decides nothing more.
    fn carry_out(&mut self) -> Result<(), Error> {
        loop {
            let outs: Vec<Output<Vec<u8>>> = self.core.outputs().collect();
            if outs.is_empty() && self.feedback.is_empty() {
                return Ok(());
            }
            // A peer's messages in a row go to its writer as one command (one wake-up, one
            // send; none when every one of them may wait); other outputs for the peer keep
            // their place after them.
            let mut msgs: HashMap<PeerKey, (Vec<crate::peer::wire::Message>, bool)> = HashMap::new();
            for o in outs {
                match o {
                    Output::Send { key, msg } => {
                        let e = msgs.entry(key).or_insert((Vec::new(), true));
                        e.0.push(msg);
                        e.1 = false;
                    }
                    Output::Notify { key, msg } => msgs.entry(key).or_insert((Vec::new(), true)).0.push(msg),
                    o => {
                        let key = match &o {
                            Output::Request { key, .. }
                            | Output::SetChoke { key, .. }
                            | Output::Close { key, .. } => Some(*key),
                            _ => None,
                        };
                        if let Some((k, (m, lazy))) = key.and_then(|k| msgs.remove_entry(&k)) {
                            self.send_msgs(k, m, lazy);
                        }
                        self.carry(o)?;
                    }
                }
            }
            for (key, (m, lazy)) in msgs {
                self.send_msgs(key, m, lazy);
            }
            for i in std::mem::take(&mut self.feedback) {
                self.input(i);
            }
        }
    }

    fn cmd(&self, key: PeerKey, c: Cmd) {
        if let Some(conn) = self.conns.get(&key) {
            let _ = conn.cmd.send(c);
        }
    }

    /// Messages for a peer's writer; `lazy`: they may wait for its next wake-up (at the
    /// latest the next tick's [`Session::nudge_lazy`]).
    fn send_msgs(&self, key: PeerKey, msgs: Vec<crate::peer::wire::Message>, lazy: bool) {
        match self.conns.get(&key) {
            Some(conn) if lazy => {
                let _ = conn.cmd.send_lazy(Cmd::Send(msgs));
                conn.lazy.set(true);
            }
            _ => self.cmd(key, Cmd::Send(msgs)),
        }
    }

    /// Wakes the writers that have lazy messages queued (once a tick).
    fn nudge_lazy(&self) {
        for conn in self.conns.values().filter(|c| c.lazy.replace(false)) {
            conn.cmd.nudge();
        }
    }

    fn carry(&mut self, o: Output<Vec<u8>>) -> Result<(), Error> {
        match o {
            Output::Send { key, msg } => self.cmd(key, Cmd::Send(vec![msg])),
            Output::Notify { key, msg } => self.send_msgs(key, vec![msg], true),
            Output::Request { key, blocks } => self.cmd(key, Cmd::Request(blocks)),
            Output::SetChoke { key, choke } => self.cmd(key, Cmd::Choke(choke)),
            Output::Close { key, .. } => self.cmd(key, Cmd::Close),
            Output::WebRequest { seed, blocks } => {
                if let Err(e) = self.web_tx[seed].send(blocks) {
                    self.feedback.push(Input::WebFailed {
                        seed,
                        blocks: e.into_inner(),
                        reason: "its worker thread could not start".into(),
                        retry_after: Some(Duration::from_secs(3600)),
                    });
                }
            }
            Output::Dial { key, addr } => {
                let ctx = self.ctx.clone();
                if let Err(e) =
                    conn::spawn(format!("dial-{key}"), move || conn::dial(ctx, key, addr))
                {
                    self.feedback.push(Input::ConnectFailed {
                        key,
                        addr,
                        reason: e.to_string(),
                    });
                }
            }
            // By file, not by piece: writes to one file take its inode lock in turn, so two
            // threads writing one file spin on each other (a fifth of bfetch's CPU, measured
            // with perf); several files spread over the pool.
            Output::Write(blocks) => {
                let info = &self.meta.info;
                let n = self.disk_tx.len();
                let to: Vec<usize> = blocks
                    .iter()
                    .map(|(r, _)| info.file_at(r.index as u64 * info.piece_length + r.begin as u64) % n)
                    .collect();
                let spread = self.core.recent_down_rate(self.now()) >= SPREAD_HASHING_AT;
                let hash_at: Vec<usize> =
                    blocks.iter().zip(&to).map(|((r, _), w)| self.hash_worker(r.index, *w, spread)).collect();
                let blocks: Vec<_> = blocks.into_iter().zip(hash_at).collect();
                self.send_per_worker(blocks, &to, |v| {
                    let (blocks, hash_at) = v.into_iter().unzip();
                    DiskJob::Write(blocks, hash_at)
                });
            }
            Output::Discard(n) => self.ctx.unwritten.release(n),
            Output::Hash(i) => {
                let w = self.hash_at.remove(&i).unwrap_or_else(|| piece_worker(&self.meta.info, i, self.disk_tx.len()));
                let _ = self.disk_tx[w].send(DiskJob::Hash(i));
            }
            Output::Verified(i) => {
                self.ctx.have[i as usize].store(true, Ordering::SeqCst);
                self.stats
                    .left
                    .fetch_sub(self.meta.info.piece_size(i as usize), Ordering::SeqCst);
            }
            Output::SaveResume { have, synced, sync } => {
                self.resume_seq += 1;
                let job = DiskJob::SaveResume {
                    seq: self.resume_seq,
                    synced,
                    have,
                    sync,
                };
                if self.disk_tx[0].len() >= 1024 || self.disk_tx[0].send(job).is_err() {
                    self.feedback.push(Input::ResumeSkipped);
                }
            }
            Output::Finalize => {
                let _ = self.disk_tx[0].send(DiskJob::Finalize);
            }
            Output::Announce(swarm::Announce::Completed) => {
                self.announcer.send(announce::Cmd::Completed)
            }
            Output::Announce(swarm::Announce::Poll(on)) => {
                self.announcer.send(announce::Cmd::Poll(on))
            }
            Output::Log(m) => self.log(&m),
        }
        Ok(())
    }

    /// The disk worker that hashes piece `index`, one of whose blocks worker `writer`
    /// writes: chosen at the piece's first block and kept until its Hash job. While blocks
    /// come slower than [`SPREAD_HASHING_AT`] the writer hashes them, straight after
    /// writing (in cache, and without a hop through this thread to another worker); faster,
    /// hashing is spread over every worker ([`piece_worker`]).
    fn hash_worker(&mut self, index: u32, writer: usize, spread: bool) -> usize {
        let (info, n) = (&self.meta.info, self.disk_tx.len());
        *self.hash_at.entry(index).or_insert_with(|| if spread { piece_worker(info, index, n) } else { writer })
    }

    /// Sends blocks to the disk workers, block `i` to worker `to[i] % workers`.
    fn send_per_worker<T>(&mut self, blocks: Vec<T>, to: &[usize], job: impl Fn(Vec<T>) -> DiskJob) {
        let n = self.disk_tx.len();
        let mut per: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
        for (b, w) in blocks.into_iter().zip(to) {
            per[w % n].push(b);
        }
        for (w, blocks) in per.into_iter().enumerate() {
            if blocks.is_empty() {
                continue;
            }
            if let Err(e) = self.disk_tx[w].send(job(blocks)) {
                if let DiskJob::Write(b, _) | DiskJob::Digest(b) = e.into_inner() {
                    self.ctx.unwritten.release(b.iter().map(|b| b.1.len()).sum());
                }
                self.halt = true;
            }
        }
    }

    // ---- the end ----------------------------------------------------------------------------

    fn finish(&mut self) {
        self.progress.finish();
        for key in self.report_uploads() {
            self.cmd(key, Cmd::Close);
        }
        self.announcer.stop(Duration::from_secs(4));
        if !self.core.complete() {
            let have = self.core.have_vec();
            let _ = self.storage.save_resume(u64::MAX, &have, &have, true);
        }
    }

    fn report(&self) -> Report {
        let peers = self.core.peer_reports();
        Report {
            info_hash: self.meta.info_hash.hex(),
            name: self.meta.info.name.clone(),
            path: self.final_path.clone(),
            complete: self.core.complete(),
            downloaded: self.core.downloaded(),
            uploaded: peers.iter().map(|p| p.uploaded).sum(),
            duration_secs: self.epoch.elapsed().as_secs_f64(),
            peers,
            web_seeds: self.core.web_seed_reports(),
            hash_failures: self.core.hash_failures(),
        }
    }
}

/// The disk worker that hashes piece `index` while blocks come fast (see
/// [`Session::hash_worker`]; its running hash and its Hash job go there).
/// Writes stay with the file's worker (two threads writing one file contend on its inode
/// lock), but hashing is spread over all workers in groups of [`hashing::LANES`] pieces (a
/// group is hashed together in lanes): with one file, one thread writing and hashing
/// everything was bfetch's limit on a 1 GB/s pair (84 % of its samples); spread, the pair
/// ran ~10 % faster, and on the 32-host testbed CPU per GB stayed within noise.
fn piece_worker(info: &crate::metainfo::Info, index: u32, workers: usize) -> usize {
    (info.file_at(index as u64 * info.piece_length) + index as usize / hashing::LANES) % workers
}

/// A disk thread: writes the blocks of its files, hashes the pieces given to it, checks
/// pieces, saves resume data. Blocks of a piece reach the piece's thread in the order they
/// arrived; the piece is hashed from the blocks themselves, those that came early waiting
/// for the gap before them ([`hashing::PieceLanes`]), and is read back and hashed only when
/// its blocks cannot be put in order that way.
///
/// Blocks are hashed several pieces at once ([`hashing::PieceLanes`]) while more jobs wait
/// (the thread is busy and lanes can fill from the jobs already queued); once the queue is
/// empty everything kept is hashed. Only when blocks come fast does a piece's Hash job wait
/// for lanes, at most [`HASH_WAIT`]; slower, it is answered at once.
fn disk_worker(
    storage: Arc<Storage>,
    unwritten: Arc<crate::rate::ByteBudget>,
    me: usize,
    jobs: mailbox::Receiver<DiskJob>,
    done: Sender<DiskDone>,
    hints: Option<Sender<()>>,
) {
    let mut buf = Vec::new();
    let mut lanes: hashing::PieceLanes<Vec<u8>> = hashing::PieceLanes::new();
    use crate::peer::buffers::give_back;
    // Blocks taken since the start of the current RATE_WINDOW; whether the last window's
    // rate was worth waiting for lanes.
    let mut rate = (Instant::now(), 0u64);
    let mut fast = false;
    // Takes blocks of this worker's pieces for hashing (their bytes are on disk: the
    // unwritten budget is theirs again).
    let digest = |lanes: &mut hashing::PieceLanes<Vec<u8>>, blocks: Vec<(BlockRef, Vec<u8>)>, rate: &mut (Instant, u64)| {
        let bytes = blocks.iter().map(|b| b.1.len()).sum();
        unwritten.release(bytes);
        rate.1 += bytes as u64;
        for (r, data) in blocks {
            lanes.add(r.index, r.begin as u64, data, &mut { give_back });
        }
    };
    // Hash jobs waiting for their pieces' blocks to go through the lanes, and since when.
    let mut waiting: Vec<(u32, Instant)> = Vec::new();
    // Written since the last write-back hint.
    let mut unhinted = 0u64;
    while let Some(job) = jobs.recv() {
        let r = match job {
            DiskJob::Write(blocks, hash_at) => {
                let res = storage.write_blocks(&blocks);
                unhinted += blocks.iter().map(|b| b.1.len() as u64).sum::<u64>();
                if unhinted >= storage::WRITEBACK_EVERY {
                    unhinted = 0;
                    match &hints {
                        // A hint already waiting covers this one too.
                        Some(h) => drop(h.try_send(())),
                        None => storage.start_writeback(),
                    }
                }
                let refs = blocks.iter().map(|(r, _)| *r).collect();
                if res.is_err() {
                    unwritten.release(blocks.iter().map(|b| b.1.len()).sum());
                    Some(DiskDone::Written(refs, Vec::new(), Vec::new(), res))
                } else {
                    // This worker's pieces are hashed here, while in cache; the others go on
                    // (through the session) to their pieces' workers.
                    let (mut mine, mut others, mut to) = (Vec::new(), Vec::new(), Vec::new());
                    for (b, w) in blocks.into_iter().zip(hash_at) {
                        if w == me {
                            mine.push(b);
                        } else {
                            others.push(b);
                            to.push(w);
                        }
                    }
                    digest(&mut lanes, mine, &mut rate);
                    Some(DiskDone::Written(refs, others, to, res))
                }
            }
            DiskJob::Digest(blocks) => {
                digest(&mut lanes, blocks, &mut rate);
                None
            }
            DiskJob::Hash(i) => {
                waiting.push((i, Instant::now()));
                None
            }
            DiskJob::SaveResume {
                seq,
                synced,
                have,
                sync,
            } => Some(DiskDone::Saved(storage.save_resume(seq, &synced, &have, sync))),
            DiskJob::Finalize => Some(DiskDone::Finalized(storage.finalize())),
        };
        if let Some(r) = r {
            if done.send(r).is_err() {
                return;
            }
        }
        // Hash what the lanes hold: all of it once no other job waits (or, when blocks come
        // fast, once a Hash job has waited long enough); before that, groups of pieces as
        // they fill. Then answer the Hash jobs: when blocks come fast, those whose blocks are
        // all hashed; otherwise every one at once (its remaining blocks hashed alone).
        if rate.0.elapsed() >= RATE_WINDOW {
            fast = rate.1 >= FAST_BYTES;
            rate = (Instant::now(), 0);
        }
        let all = jobs.is_empty() || (fast && waiting.first().is_some_and(|(_, t)| t.elapsed() >= HASH_WAIT));
        lanes.work(all, &mut { give_back });
        let mut k = 0;
        while k < waiting.len() {
            let i = waiting[k].0;
            if fast && !all && lanes.waiting(i) > 0 {
                k += 1;
                continue;
            }
            waiting.remove(k);
            let info = storage.info();
            let r = match lanes.finish(i, info.piece_size(i as usize), &mut { give_back }) {
                Some(digest) => Ok(digest == info.pieces[i as usize]),
                None => storage.check_piece(i as usize, &mut buf),
            };
            if done.send(DiskDone::Hashed(i, r)).is_err() {
                return;
            }
        }
    }
}

/// Write-back hints ([`Storage::start_writeback`]) go to a thread of their own, which ends
/// with the disk threads: with the disk busy, `sync_file_range` blocks (0.06–0.31 s of a
/// 1 GiB loopback download, in the thread that writes and hashes). `None`: no thread could
/// start, and the disk threads give the hints themselves.
fn writeback_thread(storage: Arc<Storage>) -> Option<Sender<()>> {
    let (tx, rx) = channel::bounded::<()>(1);
    std::thread::Builder::new()
        .name("writeback".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                storage.start_writeback();
            }
        })
        .ok()?;
    Some(tx)
}

/// How long a piece's Hash job may wait for lanes to fill (see [`disk_worker`]).
const HASH_WAIT: Duration = Duration::from_millis(10);

/// Blocks reaching one disk thread at [`FAST_BYTES`] per [`RATE_WINDOW`] (250 MB/s) or more
/// are worth holding for lanes; slower, hashing costs little and a piece is answered at once
/// (on the 100 Mbit/s testbed, waiting cost the 16-host fleet 2 %).
const RATE_WINDOW: Duration = Duration::from_millis(100);
/// See [`RATE_WINDOW`].
const FAST_BYTES: u64 = 25_000_000;
