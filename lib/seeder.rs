//! Seeding many torrents from one process (`btrack --seed`): one swarm session per torrent,
//! each on its own thread and TCP port (from a base port upwards), started when a torrent
//! with local content appears and stopped when it is unregistered.
//!
//! Content is verified before a session starts (on its own thread, so one large file does
//! not hold up the others); content that does not match is reported once and left alone.
//! At most `max_sessions` torrents are seeded (or held after a failed check) and at most
//! `max_verifying` checks run at once, so registrations cannot make the origin re-hash or
//! open ports without bound.

use crate::metainfo::{InfoHash, Metainfo};
use crate::session::{self, Config, Setup};
use crate::storage::Storage;
use crate::verify;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// What this process's seeding sessions are doing, per torrent, for the manager's pages and
/// API (`btrack --seed`): one process, one seeder, so a process-wide table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Waiting for or running the content check.
    Verifying,
    /// Seeding on this port (0: a port the kernel picked).
    Seeding { port: u16 },
    /// Not seeding: the content check failed or the session ended with an error.
    Failed(String),
}

static STATUS: Mutex<Option<HashMap<InfoHash, Status>>> = Mutex::new(None);

fn set_status(ih: InfoHash, s: Option<Status>) {
    let mut g = STATUS.lock().unwrap_or_else(|e| e.into_inner());
    let m = g.get_or_insert_with(HashMap::new);
    match s {
        Some(s) => {
            m.insert(ih, s);
        }
        None => {
            m.remove(&ih);
        }
    }
}

/// What this process's seeder does with `ih` (`None`: not seeding it).
pub fn status(ih: &InfoHash) -> Option<Status> {
    STATUS.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(ih).cloned())
}

pub struct Options {
    pub base_port: u16,
    pub super_seed: bool,
    pub max_upload_rate: u64,
    pub upload_slots: usize,
    pub quiet: bool,
    /// Most torrents seeded at once (0: no limit).
    pub max_sessions: usize,
    /// Most content checks running at once (at least 1).
    pub max_verifying: usize,
}

/// A counting semaphore for content checks.
struct Gate {
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Gate {
    fn enter(&self) {
        let mut n = self.busy.lock().unwrap();
        while *n >= self.max {
            n = self.freed.wait(n).unwrap();
        }
        *n += 1;
    }
    fn leave(&self) {
        *self.busy.lock().unwrap() -= 1;
        self.freed.notify_one();
    }
}

struct Running {
    stop: Arc<AtomicBool>,
    port: u16,
}

pub struct Seeder {
    opts: Options,
    /// Torrents being seeded (or whose content failed to verify: not retried until they are
    /// unregistered and registered again).
    running: Mutex<HashMap<InfoHash, Running>>,
    gate: Arc<Gate>,
    /// The session cap was reported (once until there is room again).
    full_reported: AtomicBool,
}

impl Seeder {
    pub fn new(opts: Options) -> Seeder {
        let gate = Arc::new(Gate { busy: Mutex::new(0), freed: Condvar::new(), max: opts.max_verifying.max(1) });
        Seeder { opts, running: Mutex::new(HashMap::new()), gate, full_reported: AtomicBool::new(false) }
    }

    /// How many torrents are seeded (or held after a failed check).
    pub fn sessions(&self) -> usize {
        self.running.lock().unwrap().len()
    }

    /// The port a torrent is seeded on, if it is.
    pub fn port_of(&self, ih: &InfoHash) -> Option<u16> {
        self.running.lock().unwrap().get(ih).map(|r| r.port)
    }

    /// Makes the set of seeded torrents equal to `wanted` (torrent, content path).
    pub fn sync(&self, wanted: Vec<(Metainfo, PathBuf)>) {
        let keep: Vec<InfoHash> = wanted.iter().map(|(m, _)| m.info_hash).collect();
        let wanted = Mutex::new(wanted);
        self.sync_by(&keep, &|ih| {
            let mut w = wanted.lock().unwrap();
            let i = w.iter().position(|(m, _)| m.info_hash == *ih)?;
            Some(w.swap_remove(i))
        });
    }

    /// Makes the set of seeded torrents equal to `keep`; `load` is asked for the torrent
    /// and content path only of those not seeded yet (so nothing is re-read every sync).
    pub fn sync_by(&self, keep: &[InfoHash], load: &dyn Fn(&InfoHash) -> Option<(Metainfo, PathBuf)>) {
        let mut running = self.running.lock().unwrap();
        running.retain(|ih, r| {
            let k = keep.contains(ih);
            if !k {
                r.stop.store(true, Ordering::SeqCst);
                set_status(*ih, None);
            }
            k
        });
        for ih in keep {
            if running.contains_key(ih) {
                continue;
            }
            if self.opts.max_sessions > 0 && running.len() >= self.opts.max_sessions {
                if !self.full_reported.swap(true, Ordering::Relaxed) && !self.opts.quiet {
                    eprintln!("btrack: seeding {} torrents, the limit (--max-seeds): others wait for a free place", running.len());
                }
                break;
            }
            let (meta, path) = match load(ih) {
                Some(x) => x,
                None => continue,
            };
            let ih = meta.info_hash;
            let used: Vec<u16> = running.values().map(|r| r.port).collect();
            // The next port none of our sessions uses and no other process holds (so a bseed
            // or bfetch on 6881 does not make this torrent fail); base 0: any free port each.
            let free = |p: u16| std::net::TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, p)).is_ok();
            let port = match self.opts.base_port {
                0 => 0,
                base => (base..=u16::MAX).find(|p| !used.contains(p) && free(*p)).unwrap_or(0),
            };
            let stop = Arc::new(AtomicBool::new(false));
            running.insert(ih, Running { stop: stop.clone(), port });
            let cfg = Config {
                max_peers: 200,
                upload_slots: self.opts.upload_slots,
                max_upload_rate: self.opts.max_upload_rate,
                super_seed: self.opts.super_seed,
                quiet: self.opts.quiet,
                ..Config::seeder("btrack", port, meta.trackers())
            };
            let quiet = self.opts.quiet;
            let gate = self.gate.clone();
            set_status(ih, Some(Status::Verifying));
            let _ = std::thread::Builder::new().name(format!("seed-{}", &ih.hex()[..8])).spawn(move || {
                match seed_one(meta, path, cfg, stop, &gate) {
                    Ok(()) => set_status(ih, None),
                    Err(e) => {
                        if !quiet {
                            eprintln!("btrack: not seeding {ih}: {e}");
                        }
                        set_status(ih, Some(Status::Failed(e)));
                    }
                }
            });
        }
        if self.opts.max_sessions == 0 || running.len() < self.opts.max_sessions {
            self.full_reported.store(false, Ordering::Relaxed);
        }
    }

    pub fn stop_all(&self) {
        for r in self.running.lock().unwrap().values() {
            r.stop.store(true, Ordering::SeqCst);
        }
    }
}

fn seed_one(meta: Metainfo, path: PathBuf, cfg: Config, stop: Arc<AtomicBool>, gate: &Gate) -> Result<(), String> {
    gate.enter();
    let report = if stop.load(Ordering::SeqCst) {
        gate.leave();
        return Ok(());
    } else {
        let r = verify::verify(&meta.info, &path, cfg.threads, &mut |_| {});
        gate.leave();
        r.map_err(|e| e.to_string())?
    };
    if !report.complete() {
        return Err(format!("{} does not match the torrent ({} bad pieces)", path.display(), report.bad_pieces.len()));
    }
    let storage = Storage::open_seed(Arc::new(meta.info.clone()), meta.info_hash, &path).map_err(|e| e.to_string())?;
    if !cfg.quiet {
        eprintln!("btrack: seeding {} ({}) on port {}", meta.info.name, meta.info_hash, cfg.port.unwrap_or(0));
    }
    let have = vec![true; meta.info.num_pieces()];
    set_status(meta.info_hash, Some(Status::Seeding { port: cfg.port.unwrap_or(0) }));
    let report = session::run(Setup { meta, storage, have, config: cfg, shutdown: stop }).map_err(|e| e.to_string())?;
    if !report.peers.is_empty() {
        eprintln!("btrack: stopped seeding {}: sent {} bytes to {} peers", report.name, report.uploaded, report.peers.len());
    }
    Ok(())
}
