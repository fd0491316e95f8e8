//! A fleet simulator: N copies of the real swarm core ([`crate::swarm::Core`]) over a
//! simulated network with a virtual clock. Nothing here touches a socket, a thread or the
//! wall clock; a run is a function of its [`Scenario`] (the seed included), so a failing
//! seed replays exactly.
//!
//! The model (docs/SIMULATION.md says more, with its limits):
//! - host 0 is the origin, a seed from the start (`bseed`, optionally super-seeding); hosts
//!   1..=N fetch (`bfetch`, lingering by default) with the same settings as the tools;
//! - every host has an upload and a download capacity; in each step of `step` (default
//!   10 ms) the capacity is shared among the host's active flows by progressive filling (a
//!   flow takes the smaller of its sender's and its receiver's fair share; what is left is
//!   offered again, three rounds), which approximates TCP's fair sharing of a bottleneck;
//! - control messages and the end of each block reach the other side `latency` after they
//!   leave; control messages do not queue behind data;
//! - block payloads are not real: a block is a marker of whether it is corrupt; a piece
//!   passes its hash check iff none of its blocks written since the last check was;
//! - disk writes and hashing take no time;
//! - one tracker with btrack's peer-list policy (a random window of up to 50 live peers,
//!   seeds not given to seeds, counts of downloaders), announced to at start, every 30 s,
//!   on completion, and every 2 s while lingering;
//! - churn kills hosts at random times and restarts them after a pause from their last
//!   saved resume data; an origin crash takes the origin down for a while; hostile hosts
//!   run the honest core but every block they upload is corrupt;
//! - with `web_seed`, host 0 is not a peer but an HTTP server (nginx) holding the file: every
//!   fetcher's core has it as a web seed (BEP 19), and its requests are served over a
//!   connection of their own, sharing the server's upload like any flow.

mod net;

use crate::peer::close::CloseReason;
use crate::peer::wire::{self, Message};
use crate::picker::{BlockRef, PeerKey};
use crate::swarm::rng::Rng;
use crate::swarm::{self, Announce, Core, End, Input, Lifecycle, Output};
use net::{Dir, Flows};
use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Fetching hosts (the origin comes on top).
    pub hosts: usize,
    pub size: u64,
    pub piece_length: u64,
    /// Bytes per block (16 KiB on the wire; larger blocks make big runs cheaper).
    pub block: u32,
    /// Host link classes: (fraction of the fetchers, bytes per second both ways).
    pub rates: Vec<(f64, u64)>,
    /// The origin's link (default: the fastest class).
    pub origin_rate: Option<u64>,
    pub latency: Duration,
    pub super_seed: bool,
    pub seed: u64,
    /// Fraction of fetchers killed once at a random time and restarted from resume data.
    pub churn: f64,
    /// The origin goes down at this fraction of F/B for this long.
    pub origin_crash: Option<(f64, Duration)>,
    /// Fraction of fetchers that upload corrupt blocks.
    pub hostile: f64,
    /// The origin is an HTTP web seed, not a peer.
    pub web_seed: bool,
    pub max_peers: usize,
    pub upload_slots: usize,
    pub origin_slots: usize,
    pub step: Duration,
    /// Give up (and report) at this much simulated time.
    pub limit: Duration,
    /// Check every core's internal counts every this many steps (0: never).
    pub check_every: u64,
}

impl Scenario {
    /// The tools' defaults: bfetch (50 peers, 8 slots, lingering), bseed (16 slots).
    pub fn new(hosts: usize, size: u64, rate: u64) -> Scenario {
        let piece_length = crate::create::auto_piece_length(size);
        Scenario {
            hosts,
            size,
            piece_length,
            block: wire::BLOCK,
            rates: vec![(1.0, rate)],
            origin_rate: None,
            latency: Duration::from_millis(1),
            super_seed: true,
            seed: 1,
            churn: 0.0,
            origin_crash: None,
            hostile: 0.0,
            web_seed: false,
            max_peers: 50,
            upload_slots: 8,
            origin_slots: 16,
            step: Duration::from_millis(10),
            limit: Duration::from_secs(0),
            check_every: 0,
        }
    }

    /// File size over the per-host rate of the fastest class, in seconds.
    pub fn f_over_b(&self) -> f64 {
        let fastest = self.rates.iter().map(|r| r.1).max().unwrap_or(1).max(1);
        self.size as f64 / fastest as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostOutcome {
    pub host: usize,
    pub done_secs: Option<f64>,
    pub exit_secs: Option<f64>,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Link rate, bytes per second.
    pub rate: u64,
    pub hostile: bool,
    pub restarted: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub hosts: usize,
    pub size: u64,
    pub piece_length: u64,
    pub block: u32,
    pub seed: u64,
    pub f_over_b_secs: f64,
    /// When the last honest fetcher had every piece verified.
    pub last_secs: Option<f64>,
    pub median_secs: Option<f64>,
    pub p99_secs: Option<f64>,
    /// Last completion among fetchers of the fastest class.
    pub fast_last_secs: Option<f64>,
    pub origin_uploaded: u64,
    /// Honest fetchers that ended with every piece verified.
    pub complete: usize,
    pub honest: usize,
    pub hostile: usize,
    /// Hostile hosts banned by every honest host that received a block from them.
    pub banned: usize,
    pub wall_secs: f64,
    pub sim_secs: f64,
    /// Inputs handed to cores.
    pub events: u64,
    /// Broken invariants (empty when all held).
    pub violations: Vec<String>,
    pub per_host: Vec<HostOutcome>,
    /// (seconds, honest fetchers complete) at each completion.
    pub timeline: Vec<(f64, usize)>,
}

/// What travels between two hosts.
enum Msg {
    Connected { sent_have: Vec<bool> },
    Refused,
    Wire(Message),
    Requests(Vec<BlockRef>),
    Block(BlockRef, bool),
    Closed,
}

struct Conn {
    /// Hosts at the two ends: 0 dialled 1.
    host: [usize; 2],
    /// Each end's key for the connection in its core.
    key: [PeerKey; 2],
    open: bool,
    /// End e chokes the other end (its requests are dropped).
    choking: [bool; 2],
    /// Both ends saw `Connected`.
    up: [bool; 2],
    /// Blocks from end e that the other end got from it (for the "met" relation).
    blocks_from: [u64; 2],
    /// A fetcher (end 0) and the web seed (end 1, host 0): HTTP, not the peer protocol.
    web: bool,
}

struct Host {
    core: Option<Core<bool>>,
    rate: u64,
    hostile: bool,
    /// Pieces verified (mirrors the core's `Verified` outputs): what the host serves.
    have: Vec<bool>,
    /// Verified pieces in the last saved resume data.
    resume: Vec<bool>,
    /// Pieces that got a corrupt block since their last hash check.
    taint: Vec<bool>,
    /// Pieces that passed the simulated hash check (all of `have` must be here).
    passed: Vec<bool>,
    /// This host's key for each connection.
    conns: HashMap<PeerKey, usize>,
    next_key: PeerKey,
    next_tick: Duration,
    next_announce: Duration,
    polling: bool,
    done_at: Option<Duration>,
    exit_at: Option<Duration>,
    kill_at: Option<Duration>,
    restart_at: Option<Duration>,
    restarted: bool,
    finished: bool,
    uploaded: u64,
    downloaded: u64,
    /// Uploaded bytes per connection, for `Input::Uploaded`.
    sent: HashMap<PeerKey, u64>,
    /// This life's connection to the web seed.
    web_conn: Option<usize>,
}

/// A running simulation.
pub struct Sim {
    sc: Scenario,
    now: Duration,
    step_no: u64,
    hosts: Vec<Host>,
    conns: Vec<Conn>,
    flows: Flows,
    /// Messages in flight, by the step they arrive in.
    wheel: Vec<Vec<(usize, usize, Msg)>>,
    rng: Rng,
    events: u64,
    violations: Vec<String>,
    timeline: Vec<(f64, usize)>,
    /// Tracker: hosts listed, with whether they are seeds.
    tracker: Vec<(usize, bool)>,
    origin_down: Option<(Duration, Duration)>,
    /// (honest host, hostile host) pairs where the first banned the second.
    bans: std::collections::HashSet<(usize, usize)>,
}

fn addr(h: usize) -> SocketAddr {
    SocketAddr::from(([10, (h >> 16) as u8, (h >> 8) as u8, h as u8], 6881))
}

fn host_of(a: &SocketAddr) -> usize {
    match a {
        SocketAddr::V4(v) => {
            let o = v.ip().octets();
            ((o[1] as usize) << 16) | ((o[2] as usize) << 8) | o[3] as usize
        }
        SocketAddr::V6(_) => usize::MAX,
    }
}

pub fn peer_id(h: usize) -> [u8; 20] {
    let mut id = *b"-SH0100-sim000000000";
    let s = format!("{h:012}");
    id[8..].copy_from_slice(s.as_bytes());
    id
}

impl Sim {
    pub fn new(mut sc: Scenario) -> Sim {
        let mut rng = Rng::new(sc.seed);
        if sc.limit.is_zero() {
            sc.limit = Duration::from_secs_f64(sc.f_over_b() * 20.0 + 600.0);
        }
        let pieces = sc.size.div_ceil(sc.piece_length) as usize;
        let n = sc.hosts + 1;
        // Link classes: the first fraction of hosts gets the first rate, and so on, then
        // shuffled so classes are spread over the fleet.
        let mut rates = Vec::with_capacity(sc.hosts);
        for (i, (frac, r)) in sc.rates.iter().enumerate() {
            let count = if i + 1 == sc.rates.len() {
                sc.hosts - rates.len()
            } else {
                (frac * sc.hosts as f64).round() as usize
            };
            rates.extend(std::iter::repeat_n(*r, count.min(sc.hosts - rates.len())));
        }
        for i in (1..rates.len()).rev() {
            let j = rng.below(i + 1);
            rates.swap(i, j);
        }
        let fastest = sc.rates.iter().map(|r| r.1).max().unwrap_or(1);
        let hostile_count = (sc.hostile * sc.hosts as f64).round() as usize;
        let churn_count = (sc.churn * sc.hosts as f64).round() as usize;
        let fb = sc.f_over_b();
        let mut hosts: Vec<Host> = (0..n)
            .map(|h| Host {
                core: None,
                rate: if h == 0 {
                    sc.origin_rate.unwrap_or(fastest)
                } else {
                    rates[h - 1]
                },
                hostile: false,
                have: vec![h == 0; pieces],
                resume: vec![h == 0; pieces],
                taint: vec![false; pieces],
                passed: vec![h == 0; pieces],
                conns: HashMap::new(),
                next_key: u64::MAX / 2,
                next_tick: Duration::ZERO,
                next_announce: Duration::ZERO,
                polling: false,
                done_at: None,
                exit_at: None,
                kill_at: None,
                restart_at: None,
                restarted: false,
                finished: false,
                uploaded: 0,
                downloaded: 0,
                sent: HashMap::new(),
                web_conn: None,
            })
            .collect();
        // Hostile and churning hosts: distinct random fetchers.
        let mut order: Vec<usize> = (1..n).collect();
        for i in (1..order.len()).rev() {
            let j = rng.below(i + 1);
            order.swap(i, j);
        }
        for &h in order.iter().take(hostile_count) {
            hosts[h].hostile = true;
        }
        for &h in order.iter().skip(hostile_count).take(churn_count) {
            // Killed somewhere between 10 % and 80 % of F/B, back after 5–30 s.
            let at = fb * (0.1 + 0.7 * (rng.below(1000) as f64 / 1000.0));
            hosts[h].kill_at = Some(Duration::from_secs_f64(at));
        }
        // Start times spread over the first 100 ms (as an Ansible fan-out would, roughly).
        for (h, host) in hosts.iter_mut().enumerate() {
            let at = if h == 0 {
                Duration::ZERO
            } else {
                Duration::from_millis(rng.below(100) as u64)
            };
            host.next_tick = at;
            host.next_announce = at;
        }
        let origin_down = sc.origin_crash.map(|(f, d)| {
            let at = Duration::from_secs_f64(fb * f);
            (at, at + d)
        });
        let slots = (sc.latency.as_nanos() / sc.step.as_nanos().max(1)) as usize + 2;
        let mut sim = Sim {
            now: Duration::ZERO,
            step_no: 0,
            flows: Flows::new(n),
            wheel: (0..slots).map(|_| Vec::new()).collect(),
            rng,
            events: 0,
            violations: Vec::new(),
            timeline: Vec::new(),
            tracker: Vec::new(),
            origin_down,
            bans: Default::default(),
            conns: Vec::new(),
            hosts,
            sc,
        };
        if !sim.sc.web_seed {
            sim.start(0);
        }
        sim
    }

    fn core_config(&self, h: usize) -> swarm::Config {
        let origin = h == 0;
        swarm::Config {
            peer_id: peer_id(h),
            max_peers: if origin { 100 } else { self.sc.max_peers },
            upload_slots: if origin {
                self.sc.origin_slots
            } else {
                self.sc.upload_slots
            },
            super_seed: origin && self.sc.super_seed,
            lifecycle: if origin {
                Lifecycle::Forever
            } else {
                Lifecycle::Linger { cap: None }
            },
            timeout: None,
            stall_timeout: None,
            peers: Vec::new(),
            seed: self.sc.seed.wrapping_mul(1_000_003).wrapping_add(h as u64),
            block: self.sc.block,
            piece_length: self.sc.piece_length,
            total_length: self.sc.size,
            web_seeds: if self.sc.web_seed && !origin { vec!["http://origin/".into()] } else { Vec::new() },
        }
    }

    /// Starts (or restarts) host `h` from its resume data.
    fn start(&mut self, h: usize) {
        let cfg = self.core_config(h);
        let have = self.hosts[h].resume.clone();
        self.hosts[h].have = have.clone();
        let core = Core::new(cfg, have, self.now);
        self.hosts[h].core = Some(core);
        self.hosts[h].next_tick = self.hosts[h].next_tick.max(self.now);
        self.hosts[h].next_announce = self.hosts[h].next_announce.max(self.now);
        self.drain(h);
    }

    /// Runs until every fetcher has exited or the time limit; answers the outcome.
    pub fn run(mut self) -> Outcome {
        let wall = Instant::now();
        // Fetchers start after the origin.
        for h in 1..self.hosts.len() {
            self.start(h);
        }
        while self.now < self.sc.limit {
            self.step();
            if self.hosts[1..].iter().all(|h| h.finished) {
                break;
            }
        }
        self.outcome(wall.elapsed().as_secs_f64())
    }

    fn step(&mut self) {
        self.now += self.sc.step;
        self.step_no += 1;
        // 1. Arrivals.
        let slot = (self.step_no as usize) % self.wheel.len();
        let due = std::mem::take(&mut self.wheel[slot]);
        for (c, to_end, m) in due {
            self.arrive(c, to_end, m);
        }
        // 2. Host events: crashes, restarts, ticks, announces.
        for h in 0..self.hosts.len() {
            self.host_events(h);
        }
        // 3. Data.
        let done = self.flows.transfer(self.sc.step, &|h| self.hosts[h].rate);
        for (c, from_end, r) in done {
            let from = self.conns[c].host[from_end];
            self.hosts[from].uploaded += r.length as u64;
            *self.hosts[from]
                .sent
                .entry(self.conns[c].key[from_end])
                .or_insert(0) += r.length as u64;
            let corrupt = self.hosts[from].hostile;
            self.send(c, 1 - from_end, Msg::Block(r, corrupt));
        }
        if self.sc.check_every > 0 && self.step_no % self.sc.check_every == 0 {
            for h in 0..self.hosts.len() {
                if let Some(core) = &self.hosts[h].core {
                    if !core.consistent() {
                        self.violations.push(format!(
                            "host {h}: core counts inconsistent at {:.2}s",
                            self.now.as_secs_f64()
                        ));
                    }
                }
            }
        }
    }

    fn host_events(&mut self, h: usize) {
        let now = self.now;
        if h == 0 {
            if let Some((down, up)) = self.origin_down {
                if now >= down && self.hosts[0].core.is_some() && now < up {
                    self.kill(0);
                } else if now >= up && self.hosts[0].core.is_none() {
                    self.origin_down = None;
                    self.start(0);
                }
            }
        }
        let host = &self.hosts[h];
        if host.kill_at.map(|t| now >= t).unwrap_or(false) && host.core.is_some() {
            let pause = Duration::from_secs(5 + self.rng.below(26) as u64);
            self.hosts[h].kill_at = None;
            self.hosts[h].restart_at = Some(now + pause);
            self.kill(h);
            return;
        }
        if self.hosts[h].restart_at.map(|t| now >= t).unwrap_or(false) {
            self.hosts[h].restart_at = None;
            self.hosts[h].restarted = true;
            self.start(h);
        }
        if self.hosts[h].core.is_none() {
            return;
        }
        if now >= self.hosts[h].next_announce {
            self.announce(h, false);
        }
        if now >= self.hosts[h].next_tick {
            self.hosts[h].next_tick = now + Duration::from_secs(1);
            let sent: Vec<(PeerKey, u64)> =
                self.hosts[h].sent.iter().map(|(k, v)| (*k, *v)).collect();
            for (key, total) in sent {
                self.input(h, Input::Uploaded { key, total });
            }
            self.input(h, Input::Tick);
        }
        // As the session: a flush whenever announcements or a resume save wait (the core
        // sends them once they are due).
        if self.hosts[h].core.as_ref().is_some_and(|c| c.flush_waiting()) {
            self.input(h, Input::Flush);
        }
    }

    /// Takes host `h` down without a word to anyone (a crash or a kill -9).
    fn kill(&mut self, h: usize) {
        self.hosts[h].core = None;
        let conns: Vec<usize> = self.hosts[h].conns.values().copied().collect();
        for c in conns {
            self.close_conn(c, h);
        }
        self.hosts[h].conns.clear();
        self.hosts[h].sent.clear();
        self.hosts[h].taint.iter_mut().for_each(|t| *t = false);
        self.hosts[h].polling = false;
        if let Some(c) = self.hosts[h].web_conn.take() {
            self.conns[c].open = false;
            self.flows.stop(c);
        }
    }

    /// Closes connection `c` from host `by`'s side; the other end hears of it after the
    /// latency.
    fn close_conn(&mut self, c: usize, by: usize) {
        if !self.conns[c].open {
            return;
        }
        self.conns[c].open = false;
        self.flows.stop(c);
        let end = if self.conns[c].host[0] == by { 0 } else { 1 };
        self.send(c, 1 - end, Msg::Closed);
    }

    fn announce(&mut self, h: usize, stopped: bool) {
        let seed = self.hosts[h].have.iter().all(|x| *x);
        self.tracker.retain(|(x, _)| *x != h);
        if stopped {
            return;
        }
        self.tracker.push((h, seed));
        let n = self.tracker.len();
        let mut peers = Vec::new();
        if n > 1 {
            // btrack's order: a random spread over the list.
            let (r1, r2) = (self.rng.next_u64(), self.rng.next_u64());
            for i in crate::tracker::store::spread(n, r1, r2) {
                if peers.len() >= 50 {
                    break;
                }
                let (x, x_seed) = self.tracker[i];
                if x == h || (seed && x_seed) {
                    continue;
                }
                peers.push(addr(x));
            }
        }
        let incomplete = self.tracker.iter().filter(|(_, s)| !s).count() as u32;
        let wait = if self.hosts[h].polling {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(30)
        };
        self.hosts[h].next_announce = self.now + wait;
        self.input(h, Input::Peers(peers));
        self.input(h, Input::SwarmIncomplete(incomplete));
    }

    fn send(&mut self, c: usize, to_end: usize, m: Msg) {
        let steps = (self.sc.latency.as_nanos() / self.sc.step.as_nanos().max(1)) as usize;
        let slot = (self.step_no as usize + steps.max(1)) % self.wheel.len();
        self.wheel[slot].push((c, to_end, m));
    }

    fn input(&mut self, h: usize, i: Input<bool>) {
        let Some(core) = self.hosts[h].core.as_mut() else {
            return;
        };
        self.events += 1;
        core.handle(self.now, i);
        self.drain(h);
        // The lifecycle may have ended the host.
        let ended = self.hosts[h].core.as_ref().and_then(|c| c.end().cloned());
        if let Some(e) = ended {
            if let End::Unfinished(why) = &e {
                self.violations.push(format!("host {h}: unfinished: {why}"));
            }
            self.exit(h);
        }
    }

    fn arrive(&mut self, c: usize, to_end: usize, m: Msg) {
        if self.conns[c].web {
            return self.arrive_web(c, to_end, m);
        }
        let h = self.conns[c].host[to_end];
        let key = self.conns[c].key[to_end];
        // Only for the host's current life: a restarted host reuses keys.
        if self.hosts[h].core.is_none() || self.hosts[h].conns.get(&key) != Some(&c) {
            return;
        }
        let other = self.conns[c].host[1 - to_end];
        match m {
            Msg::Connected { sent_have } => {
                if !self.conns[c].open {
                    return;
                }
                self.conns[c].up[to_end] = true;
                let outgoing = to_end == 0;
                self.input(
                    h,
                    Input::Connected {
                        key,
                        addr: addr(other),
                        peer_id: peer_id(other),
                        outgoing,
                        sent_have: vec![false; self.hosts[h].have.len()],
                    },
                );
                if sent_have.iter().any(|x| *x) {
                    self.input(
                        h,
                        Input::Message {
                            key,
                            msg: Message::Bitfield(wire::bitfield_bytes(&sent_have)),
                        },
                    );
                }
            }
            Msg::Refused => {
                self.hosts[h].conns.remove(&key);
                self.input(
                    h,
                    Input::ConnectFailed {
                        key,
                        addr: addr(other),
                        reason: "refused".into(),
                    },
                );
            }
            Msg::Closed => {
                self.hosts[h].conns.remove(&key);
                self.hosts[h].sent.remove(&key);
                self.conns[c].open = false;
                self.flows.stop(c);
                if self.conns[c].up[to_end] {
                    self.input(
                        h,
                        Input::Closed {
                            key,
                            addr: addr(other),
                            reason: CloseReason::PeerClosed,
                        },
                    );
                } else if to_end == 0 {
                    self.input(
                        h,
                        Input::ConnectFailed {
                            key,
                            addr: addr(other),
                            reason: "closed".into(),
                        },
                    );
                }
            }
            _ if !self.conns[c].open => {}
            Msg::Wire(msg) => {
                if let Message::Cancel {
                    index,
                    begin,
                    length,
                } = msg
                {
                    self.flows.cancel(
                        c,
                        Dir(to_end),
                        &BlockRef {
                            index,
                            begin,
                            length,
                        },
                    );
                }
                self.input(h, Input::Message { key, msg });
            }
            Msg::Requests(blocks) => {
                // Served unless we choke the peer, if we have the piece (as the writer does).
                if self.conns[c].choking[to_end] {
                    return;
                }
                for b in blocks {
                    if self.hosts[h].have[b.index as usize] {
                        self.flows
                            .push(c, Dir(to_end), self.conns[c].host[to_end], other, b);
                    }
                }
            }
            Msg::Block(r, corrupt) => {
                self.conns[c].blocks_from[1 - to_end] += 1;
                self.hosts[h].downloaded += r.length as u64;
                self.input(
                    h,
                    Input::Blocks {
                        key,
                        blocks: vec![(r, corrupt)],
                    },
                );
            }
        }
    }

    /// HTTP between fetcher `conns[c].host[0]` and the web seed (host 0).
    fn arrive_web(&mut self, c: usize, to_end: usize, m: Msg) {
        let h = self.conns[c].host[0];
        if !self.conns[c].open || self.hosts[h].web_conn != Some(c) {
            return;
        }
        match (to_end, m) {
            // The server answers each range request in order.
            (1, Msg::Requests(blocks)) => {
                for b in blocks {
                    self.flows.push(c, Dir(1), 0, h, b);
                }
            }
            (0, Msg::Block(r, _)) => {
                self.hosts[h].downloaded += r.length as u64;
                self.input(h, Input::WebBlocks { seed: 0, blocks: vec![(r, false)] });
            }
            _ => {}
        }
    }

    /// Carries out host `h`'s outputs (which may feed it more inputs).
    fn drain(&mut self, h: usize) {
        loop {
            let Some(core) = self.hosts[h].core.as_mut() else {
                return;
            };
            let outs: Vec<Output<bool>> = core.outputs().collect();
            if outs.is_empty() {
                return;
            }
            for o in outs {
                self.carry(h, o);
            }
        }
    }

    fn conn_end(&self, h: usize, key: PeerKey) -> Option<(usize, usize)> {
        let c = *self.hosts[h].conns.get(&key)?;
        let end = if self.conns[c].host[0] == h && self.conns[c].key[0] == key {
            0
        } else {
            1
        };
        Some((c, end))
    }

    fn carry(&mut self, h: usize, o: Output<bool>) {
        let now = self.now;
        match o {
            // A Notify rides with the connection's next message in the real driver (within
            // a second); here it goes at once.
            Output::Send { key, msg } | Output::Notify { key, msg } => {
                if let Some((c, end)) = self.conn_end(h, key) {
                    if self.conns[c].open {
                        self.send(c, 1 - end, Msg::Wire(msg));
                    }
                }
            }
            Output::Request { key, blocks } => {
                if let Some((c, end)) = self.conn_end(h, key) {
                    if self.conns[c].open {
                        self.send(c, 1 - end, Msg::Requests(blocks));
                    }
                }
            }
            Output::SetChoke { key, choke } => {
                if let Some((c, end)) = self.conn_end(h, key) {
                    self.conns[c].choking[end] = choke;
                    if choke {
                        self.flows.clear(c, Dir(end));
                    }
                    if self.conns[c].open {
                        self.send(
                            c,
                            1 - end,
                            Msg::Wire(if choke {
                                Message::Choke
                            } else {
                                Message::Unchoke
                            }),
                        );
                    }
                }
            }
            Output::Close { key, reason } => {
                if let Some((c, _)) = self.conn_end(h, key) {
                    self.close_conn(c, h);
                    self.hosts[h].conns.remove(&key);
                    self.hosts[h].sent.remove(&key);
                    let other = self.conns[c].host[if self.conns[c].host[0] == h { 1 } else { 0 }];
                    if reason == CloseReason::CorruptData {
                        self.bans.insert((h, other));
                    }
                    self.input(
                        h,
                        Input::Closed {
                            key,
                            addr: addr(other),
                            reason,
                        },
                    );
                }
            }
            Output::Dial { key, addr: a } => {
                let to = host_of(&a);
                let c = self.conns.len();
                self.conns.push(Conn {
                    host: [h, to],
                    key: [key, 0],
                    open: true,
                    choking: [true, true],
                    up: [false, false],
                    blocks_from: [0, 0],
                    web: false,
                });
                self.hosts[h].conns.insert(key, c);
                if to >= self.hosts.len() || self.hosts[to].core.is_none() {
                    self.conns[c].open = false;
                    self.send(c, 0, Msg::Refused);
                    return;
                }
                let k = self.hosts[to].next_key;
                self.hosts[to].next_key += 1;
                self.conns[c].key[1] = k;
                self.hosts[to].conns.insert(k, c);
                let bits = |x: &Host, hide: bool| {
                    if hide {
                        vec![false; x.have.len()]
                    } else {
                        x.have.clone()
                    }
                };
                let hide_from = |x: usize| x == 0 && self.sc.super_seed;
                let a_have = bits(&self.hosts[h], hide_from(h));
                let b_have = bits(&self.hosts[to], hide_from(to));
                self.send(c, 1, Msg::Connected { sent_have: a_have });
                self.send(c, 0, Msg::Connected { sent_have: b_have });
            }
            Output::Write(blocks) => {
                let refs: Vec<BlockRef> = blocks
                    .into_iter()
                    .map(|(r, corrupt)| {
                        if corrupt {
                            self.hosts[h].taint[r.index as usize] = true;
                        }
                        r
                    })
                    .collect();
                self.input(h, Input::Written(refs));
            }
            Output::Discard(_) => {}
            Output::Hash(i) => {
                let ok = !self.hosts[h].taint[i as usize];
                self.hosts[h].taint[i as usize] = false;
                if ok {
                    self.hosts[h].passed[i as usize] = true;
                }
                self.input(h, Input::Hashed { index: i, ok });
            }
            Output::Verified(i) => {
                if !self.hosts[h].passed[i as usize] {
                    self.violations.push(format!(
                        "host {h}: piece {i} counted without passing its hash check"
                    ));
                }
                self.hosts[h].have[i as usize] = true;
            }
            Output::SaveResume { have, .. } => self.hosts[h].resume = have,
            Output::Finalize => {
                let all = vec![true; self.hosts[h].have.len()];
                self.hosts[h].resume = all;
                if self.hosts[h].done_at.is_none() && h != 0 {
                    self.hosts[h].done_at = Some(now);
                    if !self.hosts[h].hostile {
                        let n = self.hosts[1..]
                            .iter()
                            .filter(|x| x.done_at.is_some() && !x.hostile)
                            .count();
                        self.timeline.push((now.as_secs_f64(), n));
                    }
                }
                self.input(h, Input::Finalized);
            }
            Output::Announce(Announce::Completed) => self.announce(h, false),
            Output::Announce(Announce::Poll(on)) => {
                self.hosts[h].polling = on;
                self.hosts[h].next_announce = self.hosts[h]
                    .next_announce
                    .min(now + Duration::from_secs(2));
            }
            Output::Log(_) => {}
            Output::WebRequest { blocks, .. } => {
                let c = match self.hosts[h].web_conn {
                    Some(c) => c,
                    None => {
                        let c = self.conns.len();
                        self.conns.push(Conn {
                            host: [h, 0],
                            key: [swarm::webseed::key(0), 0],
                            open: true,
                            choking: [false, false],
                            up: [true, true],
                            blocks_from: [0, 0],
                            web: true,
                        });
                        self.hosts[h].web_conn = Some(c);
                        c
                    }
                };
                self.send(c, 1, Msg::Requests(blocks));
            }
        }
    }

    /// The host's process ends on its own (lingering over): it says `stopped` and closes.
    fn exit(&mut self, h: usize) {
        self.hosts[h].exit_at = Some(self.now);
        self.hosts[h].finished = true;
        self.announce(h, true);
        self.kill(h);
    }

    fn outcome(&mut self, wall: f64) -> Outcome {
        let fb = self.sc.f_over_b();
        let fastest = self.sc.rates.iter().map(|r| r.1).max().unwrap_or(1);
        let honest: Vec<usize> = (1..self.hosts.len())
            .filter(|h| !self.hosts[*h].hostile)
            .collect();
        let mut times: Vec<f64> = honest
            .iter()
            .filter_map(|h| self.hosts[*h].done_at.map(|t| t.as_secs_f64()))
            .collect();
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let complete = honest
            .iter()
            .filter(|h| {
                self.hosts[**h].have.iter().all(|x| *x) && self.hosts[**h].done_at.is_some()
            })
            .count();
        let all_done = complete == honest.len();
        let pct = |p: f64| -> Option<f64> {
            if !all_done || times.is_empty() {
                return None;
            }
            let i = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            Some(times[i])
        };
        let fast: Vec<f64> = honest
            .iter()
            .filter(|h| self.hosts[**h].rate == fastest)
            .filter_map(|h| self.hosts[*h].done_at.map(|t| t.as_secs_f64()))
            .collect();
        let fast_all = fast.len()
            == honest
                .iter()
                .filter(|h| self.hosts[**h].rate == fastest)
                .count();
        // Banned: every honest host that received a block from a hostile one banned it.
        let hostile: Vec<usize> = (1..self.hosts.len())
            .filter(|h| self.hosts[*h].hostile)
            .collect();
        let mut met: HashMap<usize, Vec<usize>> = HashMap::new();
        for c in &self.conns {
            for e in 0..2 {
                let (from, to) = (c.host[e], c.host[1 - e]);
                if c.blocks_from[e] > 0 && self.hosts[from].hostile && !self.hosts[to].hostile {
                    met.entry(from).or_default().push(to);
                }
            }
        }
        let banned = hostile
            .iter()
            .filter(|x| {
                met.get(x)
                    .map(|hs| hs.iter().all(|h| self.banned_by(*h, **x)))
                    .unwrap_or(true)
            })
            .count();
        if !all_done {
            let missing: Vec<usize> = honest
                .iter()
                .copied()
                .filter(|h| self.hosts[*h].done_at.is_none())
                .take(10)
                .collect();
            self.violations.push(format!(
                "{} honest hosts not complete at {:.0}s (e.g. {missing:?})",
                honest.len() - complete,
                self.now.as_secs_f64()
            ));
        }
        Outcome {
            hosts: self.sc.hosts,
            size: self.sc.size,
            piece_length: self.sc.piece_length,
            block: self.sc.block,
            seed: self.sc.seed,
            f_over_b_secs: fb,
            last_secs: if all_done {
                times.last().copied()
            } else {
                None
            },
            median_secs: pct(0.5),
            p99_secs: pct(0.99),
            fast_last_secs: if fast_all {
                fast.iter()
                    .cloned()
                    .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
            } else {
                None
            },
            origin_uploaded: self.hosts[0].uploaded,
            complete,
            honest: honest.len(),
            hostile: hostile.len(),
            banned,
            wall_secs: wall,
            sim_secs: self.now.as_secs_f64(),
            events: self.events,
            violations: self.violations.clone(),
            per_host: (0..self.hosts.len())
                .map(|h| HostOutcome {
                    host: h,
                    done_secs: self.hosts[h].done_at.map(|t| t.as_secs_f64()),
                    exit_secs: self.hosts[h].exit_at.map(|t| t.as_secs_f64()),
                    uploaded: self.hosts[h].uploaded,
                    downloaded: self.hosts[h].downloaded,
                    rate: self.hosts[h].rate,
                    hostile: self.hosts[h].hostile,
                    restarted: self.hosts[h].restarted,
                })
                .collect(),
            timeline: self.timeline.clone(),
        }
    }

    /// Did honest host `h` ban hostile host `x` (close it for corrupt data)?
    fn banned_by(&self, h: usize, x: usize) -> bool {
        self.bans.contains(&(h, x))
    }
}
