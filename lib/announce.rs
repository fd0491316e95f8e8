//! The announcer: one thread per session that keeps the torrent's trackers informed
//! (started, periodic, completed, stopped) and passes the peers they return to the session.
//!
//! Trackers are tried tier by tier (BEP 12) until one answers. While the download is
//! incomplete the announce interval is capped at 30 s so a new fleet finds itself quickly;
//! in linger mode (`bfetch --seed-until-done`) the swarm's counts are polled by scrape
//! every few seconds.

use crate::tracker::client::{self, AnnounceRequest, Event};
use crossbeam::channel::{Receiver, Sender};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Transfer counters the announcer reports (kept current by the session).
#[derive(Default)]
pub struct Stats {
    pub uploaded: AtomicU64,
    pub downloaded: AtomicU64,
    pub left: AtomicU64,
}

pub enum Cmd {
    Completed,
    /// Poll the swarm counts every few seconds (or stop polling).
    Poll(bool),
    /// Send `stopped` and end; the sender is answered when done.
    Stop(Sender<()>),
}

pub enum Report {
    Peers(Vec<SocketAddr>),
    /// Seeders and leechers as the tracker sees them.
    Swarm { complete: u32, incomplete: u32 },
    Error(String),
}

pub struct Announcer {
    tx: Sender<Cmd>,
}

impl Announcer {
    pub fn spawn(
        trackers: Vec<Vec<String>>,
        info_hash: [u8; 20],
        peer_id: [u8; 20],
        port: u16,
        stats: Arc<Stats>,
        out: Sender<Report>,
    ) -> Announcer {
        let (tx, rx) = crossbeam::channel::unbounded();
        std::thread::Builder::new()
            .name("announce".into())
            .spawn(move || run(trackers, info_hash, peer_id, port, stats, out, rx))
            .expect("spawning the announcer thread");
        Announcer { tx }
    }

    pub fn send(&self, c: Cmd) {
        let _ = self.tx.send(c);
    }

    /// Announces `stopped` (waiting at most `wait`).
    pub fn stop(&self, wait: Duration) {
        let (tx, rx) = crossbeam::channel::bounded(1);
        if self.tx.send(Cmd::Stop(tx)).is_ok() {
            let _ = rx.recv_timeout(wait);
        }
    }
}

fn run(
    trackers: Vec<Vec<String>>,
    info_hash: [u8; 20],
    peer_id: [u8; 20],
    port: u16,
    stats: Arc<Stats>,
    out: Sender<Report>,
    rx: Receiver<Cmd>,
) {
    let key = client::random_u32();
    let urls: Vec<String> = trackers.into_iter().flatten().collect();
    let mut event = Event::Started;
    let mut completed = stats.left.load(Ordering::SeqCst) == 0;
    let mut poll = false;
    let mut working: Option<String> = None;
    let announce = |event: Event, working: &mut Option<String>, timeout: Duration| -> Option<client::AnnounceResponse> {
        let req = AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded: stats.uploaded.load(Ordering::SeqCst),
            downloaded: stats.downloaded.load(Ordering::SeqCst),
            left: stats.left.load(Ordering::SeqCst),
            event,
            numwant: Some(200),
            key,
        };
        let mut errors = Vec::new();
        let order: Vec<&String> = working.iter().chain(urls.iter().filter(|u| Some(*u) != working.as_ref())).collect();
        for url in order {
            match client::announce(url, &req, timeout) {
                Ok(r) => {
                    *working = Some(url.clone());
                    return Some(r);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            let _ = out.send(Report::Error(errors.join("; ")));
        }
        None
    };
    if urls.is_empty() {
        // Peers given by hand only: wait for the stop.
        for c in rx {
            if let Cmd::Stop(done) = c {
                let _ = done.send(());
                return;
            }
        }
        return;
    }
    let mut next = Instant::now();
    let mut next_poll = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next {
            let mut wait = Duration::from_secs(15);
            if let Some(r) = announce(event, &mut working, Duration::from_secs(15)) {
                event = Event::None;
                let _ = out.send(Report::Peers(r.peers));
                if let (Some(c), Some(i)) = (r.complete, r.incomplete) {
                    let _ = out.send(Report::Swarm { complete: c, incomplete: i });
                }
                wait = r.interval.max(r.min_interval.unwrap_or(Duration::ZERO));
                if !completed {
                    wait = wait.min(Duration::from_secs(30)).max(r.min_interval.unwrap_or(Duration::ZERO));
                }
                wait = wait.max(Duration::from_secs(2));
            }
            next = Instant::now() + wait;
        }
        if poll && now >= next_poll {
            if let Some(url) = working.clone().or_else(|| urls.first().cloned()) {
                match client::scrape(&url, &info_hash, Duration::from_secs(5)) {
                    Ok(s) => {
                        let _ = out.send(Report::Swarm { complete: s.complete, incomplete: s.incomplete });
                    }
                    Err(e) => {
                        let _ = out.send(Report::Error(e.to_string()));
                    }
                }
            }
            next_poll = Instant::now() + Duration::from_secs(2);
        }
        let until = if poll { next.min(next_poll) } else { next };
        match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Cmd::Completed) => {
                completed = true;
                event = Event::Completed;
                next = Instant::now();
            }
            Ok(Cmd::Poll(p)) => {
                poll = p;
                next_poll = Instant::now();
            }
            Ok(Cmd::Stop(done)) => {
                if event != Event::Started {
                    announce(Event::Stopped, &mut working, Duration::from_secs(3));
                }
                let _ = done.send(());
                return;
            }
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {}
            Err(_) => return,
        }
    }
}
