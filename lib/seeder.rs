//! Seeding many torrents from one process (`btrack --seed`): one swarm session per torrent,
//! each on its own thread and TCP port (from a base port upwards), started when a torrent
//! with local content appears and stopped when it is unregistered.
//!
//! Content is verified before a session starts (on its own thread, so one large file does
//! not hold up the others); content that does not match is reported once and left alone.

use crate::metainfo::{InfoHash, Metainfo};
use crate::session::{self, Config, Setup};
use crate::storage::Storage;
use crate::verify;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub struct Options {
    pub base_port: u16,
    pub super_seed: bool,
    pub max_upload_rate: u64,
    pub upload_slots: usize,
    pub quiet: bool,
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
}

impl Seeder {
    pub fn new(opts: Options) -> Seeder {
        Seeder { opts, running: Mutex::new(HashMap::new()) }
    }

    /// The port a torrent is seeded on, if it is.
    pub fn port_of(&self, ih: &InfoHash) -> Option<u16> {
        self.running.lock().unwrap().get(ih).map(|r| r.port)
    }

    /// Makes the set of seeded torrents equal to `wanted` (torrent, content path).
    pub fn sync(&self, wanted: Vec<(Metainfo, PathBuf)>) {
        let mut running = self.running.lock().unwrap();
        let keep: Vec<InfoHash> = wanted.iter().map(|(m, _)| m.info_hash).collect();
        running.retain(|ih, r| {
            let k = keep.contains(ih);
            if !k {
                r.stop.store(true, Ordering::SeqCst);
            }
            k
        });
        for (meta, path) in wanted {
            let ih = meta.info_hash;
            if running.contains_key(&ih) {
                continue;
            }
            let used: Vec<u16> = running.values().map(|r| r.port).collect();
            let port = (self.opts.base_port..=u16::MAX).find(|p| !used.contains(p)).unwrap_or(0);
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
            let _ = std::thread::Builder::new().name(format!("seed-{}", &ih.hex()[..8])).spawn(move || {
                if let Err(e) = seed_one(meta, path, cfg, stop) {
                    if !quiet {
                        eprintln!("btrack: not seeding {ih}: {e}");
                    }
                }
            });
        }
    }

    pub fn stop_all(&self) {
        for r in self.running.lock().unwrap().values() {
            r.stop.store(true, Ordering::SeqCst);
        }
    }
}

fn seed_one(meta: Metainfo, path: PathBuf, cfg: Config, stop: Arc<AtomicBool>) -> Result<(), String> {
    let report = verify::verify(&meta.info, &path, cfg.threads, &mut |_| {}).map_err(|e| e.to_string())?;
    if !report.complete() {
        return Err(format!("{} does not match the torrent ({} bad pieces)", path.display(), report.bad_pieces.len()));
    }
    let storage = Storage::open_seed(Arc::new(meta.info.clone()), meta.info_hash, &path).map_err(|e| e.to_string())?;
    if !cfg.quiet {
        eprintln!("btrack: seeding {} ({}) on port {}", meta.info.name, meta.info_hash, cfg.port);
    }
    let have = vec![true; meta.info.num_pieces()];
    let report = session::run(Setup { meta, storage, have, config: cfg, shutdown: stop }).map_err(|e| e.to_string())?;
    if !report.peers.is_empty() {
        eprintln!("btrack: stopped seeding {}: sent {} bytes to {} peers", report.name, report.uploaded, report.peers.len());
    }
    Ok(())
}
