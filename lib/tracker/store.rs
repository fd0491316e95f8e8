//! btrack's peer store: the [`PeerStore`] trait every store answers to, and the in-memory
//! store (the default): swarms keyed by info-hash, sharded behind mutexes. The Redis store
//! ([`super::redis::RedisStore`]) keeps the same rules in Redis for several btracks.
//!
//! Invariants (of every store):
//! - an info-hash lives in shard `hash[0] ^ hash[19]` mod [`SHARDS`]; one announce locks
//!   one shard for a few microseconds, so workers rarely contend;
//! - memory is bounded: at most `max_torrents` swarms, `max_peers` peers per swarm and
//!   `max_peers_total` peers in all (about 180 bytes each: the record, its slot and its
//!   index entry); a new peer beyond a cap still
//!   gets an answer but is not stored;
//! - a stored peer belongs to whoever announced it first: a later announce for the same
//!   peer id (update, `stopped`, a new address) must carry the same BEP 7 `key` or, when
//!   the first announce had none, come from the same source IP; otherwise it is refused
//!   ([`Refusal::PeerIdTaken`]) and the peer is left as it was;
//! - peers are soft state: a peer that has not announced for `ttl` is dropped (lazily when
//!   peers are picked, and by [`Store::sweep`], which the server runs periodically);
//! - in closed mode only registered info-hashes have swarms; [`Store::register`] makes one;
//! - a registered swarm remembers the last [`DEPARTED_MAX`] peers that left (stopped or
//!   expired) with their final counters, so the manager can still show who uploaded what
//!   after a sync is over; a peer id that comes back is taken off that list.

use super::client::{Event, ScrapeStats};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SHARDS: usize = 64;
/// Departed peers remembered per registered torrent.
pub const DEPARTED_MAX: usize = 512;

/// One peer as the tracker sees it.
///
/// Laid out for the announce that updates it: everything an update writes (address,
/// counters, bytes left, last announce) is the first 64 bytes, and a peer starts a cache
/// line, so an update dirties one line. The update reads neither line (the ownership check
/// and the seed count use the index's [`Entry`]), and picking reads the [`Slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Peer {
    pub addr: SocketAddr,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    /// Seconds since the store was created, at the last announce.
    pub last: u32,
    pub peer_id: [u8; 20],
    pub key: Option<u32>,
    /// The IP address the first announce came from (not the `ip=` parameter).
    pub source: IpAddr,
    /// Seconds since the store was created, at the first announce.
    pub first: u32,
}

/// What picking reads of a peer, 12 bytes (five to a cache line, against one 128-byte
/// [`Peer`] per two lines): last announce, seed flag and, for IPv4, the address. A pick of 50
/// out of a swarm of 1 000 in a store of a million peers looks at 50-100 peers in scattered
/// order, each a cache miss on the records; the slots of a swarm (12 KB) mostly stay cached.
/// `Swarm::slots[i]` always describes `Swarm::peers[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    last: u32,
    ip4: [u8; 4],
    port: u16,
    flags: u8,
}

impl Slot {
    const SEED: u8 = 1;
    /// The address is IPv6: read it from the record.
    const V6: u8 = 2;

    fn new(addr: SocketAddr, left: u64, last: u32) -> Slot {
        let (ip4, v6) = match addr {
            SocketAddr::V4(a) => (a.ip().octets(), 0),
            SocketAddr::V6(_) => ([0; 4], Slot::V6),
        };
        let seed = if left == 0 { Slot::SEED } else { 0 };
        Slot { last, ip4, port: addr.port(), flags: seed | v6 }
    }

    fn of(p: &Peer) -> Slot {
        Slot::new(p.addr, p.left, p.last)
    }

    fn seed(&self) -> bool {
        self.flags & Slot::SEED != 0
    }

    /// The peer's address; `record` is read only for IPv6 peers.
    fn addr(&self, record: impl FnOnce() -> SocketAddr) -> SocketAddr {
        if self.flags & Slot::V6 != 0 {
            record()
        } else {
            SocketAddr::from((self.ip4, self.port))
        }
    }
}

#[derive(Default)]
struct Swarm {
    peers: Vec<Peer>,
    slots: Vec<Slot>,
    index: PeerIndex,
    seeders: u32,
    completed: u32,
    registered: bool,
    departed: std::collections::VecDeque<Peer>,
}

/// A swarm's peer ids → [`Entry`]: open addressing with linear probing, each 32-byte bucket
/// holding the id and its entry, so that finding a peer costs one cache line (usually one
/// miss in a large store) where `std`'s map reads a line of control bytes and then the
/// bucket's line. The hash is keyed per index (a random seed, multiply-fold mixing), so that
/// clients cannot choose peer ids that collide. At most 3/4 full; removal shifts the
/// following entries back (no tombstones).
#[derive(Default)]
struct PeerIndex {
    buckets: Vec<Bucket>,
    len: usize,
    seed: [u64; 2],
}

#[derive(Clone, Copy)]
#[repr(C, align(32))]
struct Bucket {
    id: [u8; 20],
    entry: Entry,
}

impl PeerIndex {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    fn hash(&self, id: &[u8; 20]) -> usize {
        fn fold(x: u64, y: u64) -> u64 {
            let p = x as u128 * y as u128;
            p as u64 ^ (p >> 64) as u64
        }
        let a = u64::from_le_bytes(id[0..8].try_into().unwrap());
        let b = u64::from_le_bytes(id[8..16].try_into().unwrap());
        let c = u32::from_le_bytes(id[16..20].try_into().unwrap()) as u64;
        let h = fold(a ^ self.seed[0], b ^ self.seed[1]);
        fold(h ^ c, 0x9E37_79B9_7F4A_7C15 ^ self.seed[0].rotate_left(32)) as usize
    }

    /// Where `id` is, or the empty bucket where it would go.
    fn find(&self, id: &[u8; 20]) -> (usize, bool) {
        let mask = self.buckets.len() - 1;
        let mut i = self.hash(id) & mask;
        loop {
            let b = &self.buckets[i];
            if b.entry.flags & Entry::USED == 0 {
                return (i, false);
            }
            if b.id == *id {
                return (i, true);
            }
            i = (i + 1) & mask;
        }
    }

    #[cfg(test)]
    fn get(&self, id: &[u8; 20]) -> Option<&Entry> {
        if self.len == 0 {
            return None;
        }
        match self.find(id) {
            (i, true) => Some(&self.buckets[i].entry),
            _ => None,
        }
    }

    fn get_mut(&mut self, id: &[u8; 20]) -> Option<&mut Entry> {
        if self.len == 0 {
            return None;
        }
        match self.find(id) {
            (i, true) => Some(&mut self.buckets[i].entry),
            _ => None,
        }
    }

    /// Adds or replaces `id`'s entry.
    fn insert(&mut self, id: [u8; 20], mut entry: Entry) {
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow();
        }
        entry.flags |= Entry::USED;
        let (i, found) = self.find(&id);
        if !found {
            self.len += 1;
        }
        self.buckets[i] = Bucket { id, entry };
    }

    fn grow(&mut self) {
        if self.seed == [0, 0] {
            use std::hash::BuildHasher;
            let r = std::hash::RandomState::new();
            self.seed = [r.hash_one(1u8) | 1, r.hash_one(2u8)];
        }
        let size = (self.buckets.len() * 2).max(16);
        let old = std::mem::replace(&mut self.buckets, vec![Bucket { id: [0; 20], entry: Entry { at: 0, proof: 0, flags: 0 } }; size]);
        for b in old {
            if b.entry.flags & Entry::USED != 0 {
                let (i, _) = self.find(&b.id);
                self.buckets[i] = b;
            }
        }
    }

    fn remove(&mut self, id: &[u8; 20]) {
        if self.len == 0 {
            return;
        }
        let (mut hole, found) = self.find(id);
        if !found {
            return;
        }
        self.len -= 1;
        let mask = self.buckets.len() - 1;
        let mut j = (hole + 1) & mask;
        while self.buckets[j].entry.flags & Entry::USED != 0 {
            // Move j back into the hole unless its home lies cyclically in (hole, j].
            let home = self.hash(&self.buckets[j].id) & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.buckets[hole] = self.buckets[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.buckets[hole].entry.flags = 0;
    }
}

/// The index's entry for a peer: where its record is, and what an update checks and
/// counts (who owns the peer id, whether it is a seed), so that an update only writes the
/// record and does not wait for it to be read (a cache miss in a large store).
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: u32,
    /// The BEP 7 key ([`Entry::KEY`]) or the IPv4 source address ([`Entry::SOURCE4`]).
    proof: u32,
    flags: u8,
}

impl Entry {
    const KEY: u8 = 1;
    const SOURCE4: u8 = 2;
    const SEED: u8 = 4;
    /// The bucket holds an entry ([`PeerIndex`]).
    const USED: u8 = 0x80;

    fn of(at: usize, p: &Peer) -> Entry {
        let (proof, owner) = match (p.key, p.source) {
            (Some(k), _) => (k, Entry::KEY),
            (None, IpAddr::V4(ip)) => (u32::from(ip), Entry::SOURCE4),
            (None, IpAddr::V6(_)) => (0, 0),
        };
        Entry { at: at as u32, proof, flags: owner | if p.left == 0 { Entry::SEED } else { 0 } }
    }

    /// Whether `a` comes from the client that announced the peer first: the same key or, when
    /// that announce had none, the same source address (`record`: the stored source, read
    /// only for IPv6).
    fn same_client(&self, a: &Announce, record: impl FnOnce() -> IpAddr) -> bool {
        if self.flags & Entry::KEY != 0 {
            a.key == Some(self.proof)
        } else if self.flags & Entry::SOURCE4 != 0 {
            a.source == IpAddr::V4(self.proof.into())
        } else {
            a.source == record()
        }
    }

    fn seed(&self) -> bool {
        self.flags & Entry::SEED != 0
    }
}

impl Swarm {
    fn push(&mut self, p: Peer) {
        self.index.insert(p.peer_id, Entry::of(self.peers.len(), &p));
        self.slots.push(Slot::of(&p));
        self.peers.push(p);
    }

    fn remove_at(&mut self, i: usize) {
        self.slots.swap_remove(i);
        let p = self.peers.swap_remove(i);
        self.index.remove(&p.peer_id);
        if p.left == 0 {
            self.seeders -= 1;
        }
        if i < self.peers.len() {
            if let Some(e) = self.index.get_mut(&self.peers[i].peer_id) {
                e.at = i as u32;
            }
        }
        if self.registered {
            if self.departed.len() == DEPARTED_MAX {
                self.departed.pop_front();
            }
            self.departed.push_back(p);
        }
    }
}

/// Why an announce was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unregistered,
    TooManyTorrents,
    /// The peer id is held by another client (different key or source address).
    PeerIdTaken,
    /// The shared store (Redis) cannot be reached or answered an error; the detail is in
    /// btrack's log. Clients retry on their next interval.
    StoreUnavailable,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Unregistered => "unregistered torrent",
            Refusal::TooManyTorrents => "tracker is full (too many torrents)",
            Refusal::PeerIdTaken => "peer id in use by another client (announce with the key and address you started with)",
            Refusal::StoreUnavailable => "tracker store unavailable (redis unreachable); retry later",
        })
    }
}

/// The counts an announce answer carries and the chosen peers.
pub struct AnnounceOutcome {
    pub seeders: u32,
    pub leechers: u32,
    pub peers: Vec<(SocketAddr, [u8; 20])>,
}

/// The announce fields the store keeps.
pub struct Announce {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    /// Where other peers reach it.
    pub addr: SocketAddr,
    /// Where the announce came from (the packet's or connection's source IP).
    pub source: IpAddr,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub numwant: u32,
    pub key: Option<u32>,
    /// Whether the answer carries the peers' ids (a non-compact HTTP answer); when not, the
    /// ids in [`AnnounceOutcome::peers`] are zeros and the records need not be read.
    pub peer_ids: bool,
}

/// A swarm's state for the manager pages.
#[derive(Debug, Clone)]
pub struct SwarmView {
    pub seeders: u32,
    pub leechers: u32,
    pub completed: u32,
    pub peers: Vec<Peer>,
    /// Peers that left (stopped or expired), oldest first, with their last counters.
    pub departed: Vec<Peer>,
    /// Seconds since the store was created, now (to age `Peer::last`).
    pub now: u32,
}

/// What btrack needs from a peer store; the in-memory [`Store`] and the Redis store are
/// interchangeable behind it. Methods that cannot fail in memory answer a neutral value when
/// a shared store is unreachable (counts 0, `None`), and log why.
pub trait PeerStore: Send + Sync {
    fn is_open(&self) -> bool;
    /// Makes `ih` a known torrent (closed mode answers only for these).
    fn register(&self, ih: [u8; 20]);
    /// Forgets a torrent and its peers.
    fn unregister(&self, ih: &[u8; 20]);
    fn is_registered(&self, ih: &[u8; 20]) -> bool;
    fn torrent_count(&self) -> u64;
    fn peer_count(&self) -> u64;
    /// Records an announce and picks up to `numwant` other live peers.
    fn announce(&self, a: &Announce) -> Result<AnnounceOutcome, Refusal>;
    /// [`PeerStore::announce`] for a compact IPv4 answer (a UDP announce from an IPv4
    /// client): appends the 6 bytes (address, port) of each picked IPv4 peer to `out`, in pick
    /// order (picked IPv6 peers are left out, as an IPv4 answer has no room for them), and
    /// answers (seeders, leechers).
    fn announce_compact4(&self, a: &Announce, out: &mut Vec<u8>) -> Result<(u32, u32), Refusal> {
        let o = self.announce(a)?;
        for (addr, _) in &o.peers {
            if let SocketAddr::V4(v4) = addr {
                out.extend_from_slice(&v4.ip().octets());
                out.extend_from_slice(&v4.port().to_be_bytes());
            }
        }
        Ok((o.seeders, o.leechers))
    }
    /// Scrape counts for one torrent (`None`: not tracked).
    fn scrape(&self, ih: &[u8; 20]) -> Option<ScrapeStats>;
    /// A copy of one swarm for the manager.
    fn view(&self, ih: &[u8; 20]) -> Option<SwarmView>;
    /// Drops peers silent for longer than the TTL, and empty unregistered swarms.
    fn sweep(&self);
}

/// A shared store is a store (btrack keeps a handle on its Redis store for the registry).
impl<T: PeerStore + ?Sized> PeerStore for std::sync::Arc<T> {
    fn is_open(&self) -> bool {
        (**self).is_open()
    }
    fn register(&self, ih: [u8; 20]) {
        (**self).register(ih)
    }
    fn unregister(&self, ih: &[u8; 20]) {
        (**self).unregister(ih)
    }
    fn is_registered(&self, ih: &[u8; 20]) -> bool {
        (**self).is_registered(ih)
    }
    fn torrent_count(&self) -> u64 {
        (**self).torrent_count()
    }
    fn peer_count(&self) -> u64 {
        (**self).peer_count()
    }
    fn announce(&self, a: &Announce) -> Result<AnnounceOutcome, Refusal> {
        (**self).announce(a)
    }
    fn announce_compact4(&self, a: &Announce, out: &mut Vec<u8>) -> Result<(u32, u32), Refusal> {
        (**self).announce_compact4(a, out)
    }
    fn scrape(&self, ih: &[u8; 20]) -> Option<ScrapeStats> {
        (**self).scrape(ih)
    }
    fn view(&self, ih: &[u8; 20]) -> Option<SwarmView> {
        (**self).view(ih)
    }
    fn sweep(&self) {
        (**self).sweep()
    }
}

pub struct Store {
    shards: Vec<Mutex<HashMap<[u8; 20], Swarm>>>,
    open: bool,
    max_torrents: usize,
    max_peers: usize,
    max_peers_total: u64,
    ttl: u32,
    start: Instant,
    torrents: AtomicU64,
    peers: AtomicU64,
    rng: AtomicU64,
    sites: Option<Sites>,
}

fn shard_of(ih: &[u8; 20]) -> usize {
    (ih[0] ^ ih[19]) as usize % SHARDS
}

impl Store {
    pub fn new(open: bool, max_torrents: usize, max_peers: usize, ttl: Duration) -> Store {
        Store {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            open,
            max_torrents,
            max_peers,
            max_peers_total: u64::MAX,
            ttl: ttl.as_secs().clamp(1, u32::MAX as u64) as u32,
            start: Instant::now(),
            torrents: AtomicU64::new(0),
            peers: AtomicU64::new(0),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15 ^ crate::tracker::client::random_u32() as u64),
            sites: None,
        }
    }

    /// Answers peers of the asker's site first (see [`Sites`]).
    pub fn with_sites(mut self, sites: Option<Sites>) -> Store {
        self.sites = sites;
        self
    }

    /// Caps the peers stored over all swarms.
    pub fn with_max_peers_total(mut self, n: usize) -> Store {
        self.max_peers_total = n.max(1) as u64;
        self
    }

    pub fn now(&self) -> u32 {
        self.start.elapsed().as_secs() as u32
    }

    /// A random number for picking: a per-thread splitmix64 seeded once from the store's
    /// shared one, so threads answering at once do not fight over one counter's cache line.
    /// The per-thread state is a plain cell: an atomic add is a locked instruction, which
    /// waits for the record just written to reach the cache.
    fn random(&self) -> u64 {
        thread_local!(static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
        STATE.with(|s| {
            if s.get() == 0 {
                s.set(splitmix(&self.rng) | 1);
            }
            let z = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(z);
            mix(z)
        })
    }

    /// [`PeerStore::announce`]: records `a`, then hands each picked peer's slot and record
    /// to `out`, in pick order; answers (seeders, leechers).
    fn announce_with(&self, a: &Announce, out: &mut impl Picked) -> Result<(u32, u32), Refusal> {
        let now = self.now();
        let mut shard = self.shards[shard_of(&a.info_hash)].lock().unwrap();
        let swarm = match shard.get_mut(&a.info_hash) {
            Some(s) => s,
            None if !self.open => return Err(Refusal::Unregistered),
            None => {
                if self.torrents.load(Ordering::Relaxed) as usize >= self.max_torrents {
                    return Err(Refusal::TooManyTorrents);
                }
                if a.event == Event::Stopped {
                    return Ok((0, 0));
                }
                self.torrents.fetch_add(1, Ordering::Relaxed);
                shard.entry(a.info_hash).or_default()
            }
        };
        let entry = swarm.index.get_mut(&a.peer_id);
        if let Some(e) = &entry {
            if !e.same_client(a, || swarm.peers[e.at as usize].source) {
                return Err(Refusal::PeerIdTaken);
            }
        }
        let existing = entry.as_ref().map(|e| e.at as usize);
        // The asker's place in the list once stored (not stored when the swarm is full).
        let mut me = existing;
        // An update writes the record after picking, when picking does not read records
        // (no sites): the record's line, asked for now, arrives while the slots are judged,
        // instead of being waited for when the shard is unlocked.
        let defer = self.sites.is_none();
        let mut deferred = None;
        if a.event == Event::Stopped {
            if let Some(i) = existing {
                let p = &mut swarm.peers[i];
                p.uploaded = a.uploaded;
                p.downloaded = a.downloaded;
                p.last = now;
                swarm.remove_at(i);
                self.peers.fetch_sub(1, Ordering::Relaxed);
            }
        } else {
            match entry {
                Some(e) => {
                    let i = e.at as usize;
                    if e.seed() && a.left != 0 {
                        swarm.seeders -= 1;
                        e.flags &= !Entry::SEED;
                    } else if !e.seed() && a.left == 0 {
                        swarm.seeders += 1;
                        e.flags |= Entry::SEED;
                    }
                    // Written, not read: see [`Entry`].
                    if defer {
                        prefetch_write(&swarm.peers[i]);
                        deferred = Some(i);
                    } else {
                        update_record(&mut swarm.peers[i], a, now);
                    }
                    swarm.slots[i] = Slot::new(a.addr, a.left, now);
                }
                None if swarm.peers.len() < self.max_peers && self.peers.load(Ordering::Relaxed) < self.max_peers_total => {
                    if !swarm.departed.is_empty() {
                        swarm.departed.retain(|p| p.peer_id != a.peer_id);
                    }
                    swarm.push(Peer {
                        addr: a.addr,
                        source: a.source,
                        peer_id: a.peer_id,
                        uploaded: a.uploaded,
                        downloaded: a.downloaded,
                        left: a.left,
                        key: a.key,
                        last: now,
                        first: now,
                    });
                    me = Some(swarm.peers.len() - 1);
                    if a.left == 0 {
                        swarm.seeders += 1;
                    }
                    self.peers.fetch_add(1, Ordering::Relaxed);
                }
                None => {} // full: answered, not stored
            }
            if a.event == Event::Completed {
                swarm.completed = swarm.completed.saturating_add(1);
            }
        }
        // Pick peers: a random spread over the list (not a window of neighbours in announce
        // order, which groups hosts that started together: see docs/SIMULATION.md),
        // skipping the asker and stale peers; with sites, the asker's site first. Judging a
        // peer reads its slot only; the records are read for the answer's IPv6 addresses and
        // peer ids, and (with sites) for ranking.
        let n = swarm.peers.len();
        let want = (a.numwant as usize).min(n);
        if want > 0 && a.event != Event::Stopped {
            let (r1, r2) = (self.random(), self.random());
            let seeding = a.left == 0;
            let (ps, slots) = (&swarm.peers, &swarm.slots);
            out.reserve(want);
            // The slots are looked at in spread order, each a possible cache miss: ask for
            // the one PREFETCH places further along while judging this one.
            let order = spread(n, r1, r2);
            let mut ahead = order.clone();
            for j in ahead.by_ref().take(PREFETCH) {
                prefetch(&slots[j]);
            }
            let live = |i: usize| now.saturating_sub(slots[i].last) <= self.ttl;
            match &self.sites {
                None => {
                    // `pick_ranked` without sites, as one loop.
                    let mut got = 0;
                    for i in order {
                        if let Some(j) = ahead.next() {
                            prefetch(&slots[j]);
                        }
                        if Some(i) == me || !live(i) || (seeding && slots[i].seed()) {
                            continue;
                        }
                        out.push(&slots[i], &ps[i]);
                        got += 1;
                        if got == want {
                            break;
                        }
                    }
                }
                Some(sites) => {
                    let ahead = std::cell::RefCell::new(ahead);
                    let eligible = |i: usize| {
                        if let Some(j) = ahead.borrow_mut().next() {
                            prefetch(&slots[j]);
                        }
                        !(Some(i) == me || !live(i) || (seeding && slots[i].seed()))
                    };
                    // Gateways by arrival (the asker is in the list by now): leechers and
                    // completed hosts before origins (nothing left, nothing downloaded),
                    // then the first announce, then the place in the list; stale peers never.
                    let origin = |i: usize| ps[i].left == 0 && ps[i].downloaded == 0;
                    let rank = |i: usize| live(i).then_some((origin(i), ps[i].first, i));
                    let picked = pick_ranked(n, want, (r1, r2), eligible, Some(sites), (a.addr.ip(), a.peer_id), None, |i| (ps[i].addr.ip(), ps[i].peer_id), rank, |i| !origin(i));
                    for i in picked {
                        out.push(&slots[i], &ps[i]);
                    }
                }
            }
        }
        if let Some(i) = deferred {
            update_record(&mut swarm.peers[i], a, now);
        }
        let seeders = swarm.seeders;
        Ok((seeders, n as u32 - seeders))
    }
}

impl PeerStore for Store {
    fn is_open(&self) -> bool {
        self.open
    }

    /// Makes `ih` a known torrent (closed mode answers only for these).
    fn register(&self, ih: [u8; 20]) {
        let mut shard = self.shards[shard_of(&ih)].lock().unwrap();
        let s = shard.entry(ih).or_insert_with(|| {
            self.torrents.fetch_add(1, Ordering::Relaxed);
            Swarm::default()
        });
        s.registered = true;
    }

    /// Forgets a torrent and its peers.
    fn unregister(&self, ih: &[u8; 20]) {
        let mut shard = self.shards[shard_of(ih)].lock().unwrap();
        if let Some(s) = shard.remove(ih) {
            self.torrents.fetch_sub(1, Ordering::Relaxed);
            self.peers.fetch_sub(s.peers.len() as u64, Ordering::Relaxed);
        }
    }

    fn is_registered(&self, ih: &[u8; 20]) -> bool {
        self.shards[shard_of(ih)].lock().unwrap().get(ih).map(|s| s.registered).unwrap_or(false)
    }

    fn torrent_count(&self) -> u64 {
        self.torrents.load(Ordering::Relaxed)
    }

    fn peer_count(&self) -> u64 {
        self.peers.load(Ordering::Relaxed)
    }

    /// Records an announce and picks up to `numwant` other live peers.
    fn announce(&self, a: &Announce) -> Result<AnnounceOutcome, Refusal> {
        struct Out<'a>(&'a Announce, Vec<(SocketAddr, [u8; 20])>);
        impl Picked for Out<'_> {
            fn reserve(&mut self, n: usize) {
                self.1.reserve_exact(n);
            }
            fn push(&mut self, slot: &Slot, record: &Peer) {
                let id = if self.0.peer_ids { record.peer_id } else { [0; 20] };
                self.1.push((slot.addr(|| record.addr), id));
            }
        }
        let mut out = Out(a, Vec::new());
        let (seeders, leechers) = self.announce_with(a, &mut out)?;
        Ok(AnnounceOutcome { seeders, leechers, peers: out.1 })
    }

    fn announce_compact4(&self, a: &Announce, out: &mut Vec<u8>) -> Result<(u32, u32), Refusal> {
        struct Out<'a>(&'a mut Vec<u8>);
        impl Picked for Out<'_> {
            fn reserve(&mut self, n: usize) {
                self.0.reserve(n * 6);
            }
            fn push(&mut self, slot: &Slot, record: &Peer) {
                if let SocketAddr::V4(v4) = slot.addr(|| record.addr) {
                    self.0.extend_from_slice(&v4.ip().octets());
                    self.0.extend_from_slice(&v4.port().to_be_bytes());
                }
            }
        }
        self.announce_with(a, &mut Out(out))
    }

    /// Scrape counts for one torrent (`None`: not tracked).
    fn scrape(&self, ih: &[u8; 20]) -> Option<ScrapeStats> {
        let shard = self.shards[shard_of(ih)].lock().unwrap();
        shard.get(ih).map(|s| ScrapeStats {
            complete: s.seeders,
            incomplete: s.peers.len() as u32 - s.seeders,
            downloaded: s.completed,
        })
    }

    /// A copy of one swarm for the manager.
    fn view(&self, ih: &[u8; 20]) -> Option<SwarmView> {
        let now = self.now();
        let shard = self.shards[shard_of(ih)].lock().unwrap();
        shard.get(ih).map(|s| SwarmView {
            seeders: s.seeders,
            leechers: s.peers.len() as u32 - s.seeders,
            completed: s.completed,
            peers: s.peers.clone(),
            departed: s.departed.iter().cloned().collect(),
            now,
        })
    }

    /// Drops peers silent for longer than the TTL, and empty unregistered swarms.
    fn sweep(&self) {
        let now = self.now();
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap();
            let mut dropped_swarms = 0;
            shard.retain(|_, s| {
                let mut i = 0;
                while i < s.peers.len() {
                    if now.saturating_sub(s.peers[i].last) > self.ttl {
                        s.remove_at(i);
                        self.peers.fetch_sub(1, Ordering::Relaxed);
                    } else {
                        i += 1;
                    }
                }
                let keep = s.registered || !s.peers.is_empty();
                if !keep {
                    dropped_swarms += 1;
                }
                keep
            });
            self.torrents.fetch_sub(dropped_swarms, Ordering::Relaxed);
        }
    }
}

/// Peers asked for ahead of the one being judged when picking.
const PREFETCH: usize = 32;

/// Where [`Store::announce_with`] puts the peers it picks.
trait Picked {
    /// Room for up to `n` peers.
    fn reserve(&mut self, n: usize);
    /// One picked peer: its slot, and its record, to be read only for what the slot does not
    /// have (an IPv6 address, the peer id).
    fn push(&mut self, slot: &Slot, record: &Peer);
}

/// What an update writes in a peer's record (its first cache line, see [`Peer`]).
fn update_record(p: &mut Peer, a: &Announce, now: u32) {
    p.addr = a.addr;
    p.uploaded = a.uploaded;
    p.downloaded = a.downloaded;
    p.left = a.left;
    p.last = now;
}

/// Asks the CPU to bring `p`'s first cache line in, to be written (a hint: no effect on the
/// result).
#[inline(always)]
fn prefetch_write<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    unsafe {
        // PREFETCHW where the CPU has it (a plain prefetch elsewhere).
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_ET0 }>((p as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the CPU to bring `p`'s first cache line in (a hint: no effect on the result).
#[inline(always)]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>((p as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// splitmix64 over a shared counter: good enough to spread peer picks.
pub(crate) fn splitmix(state: &AtomicU64) -> u64 {
    mix(state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
}

/// splitmix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The peers to answer out of `n` candidates: up to `want` indexes of eligible ones in
/// [`spread`] order. With `sites`, peers of the asker's site (`asker`: address and peer id)
/// come first; peers of other sites go only between *gateways*: the [`Sites::cross`] peers
/// of each site with the lowest peer ids (random for real clients, the same answer from any
/// tracker at any moment). A gateway is given up to `cross` gateways of each other site and
/// everyone else none, so an image enters each site over about `cross` connections. A host
/// alone in its site is its gateway. (The in-memory store ranks gateways by arrival instead,
/// see [`pick_ranked`].)
pub fn pick(
    n: usize,
    want: usize,
    r: (u64, u64),
    eligible: impl Fn(usize) -> bool,
    sites: Option<&Sites>,
    asker: (IpAddr, [u8; 20]),
    peer_of: impl Fn(usize) -> (IpAddr, [u8; 20]),
) -> Vec<usize> {
    pick_ranked(n, want, r, eligible, sites, asker, Some(asker.1), &peer_of, |i| Some(peer_of(i).1), |_| true)
}

/// [`pick`] with the gateways of each site chosen by `rank`: the [`Sites::cross`] peers with
/// the lowest rank (`None`: never a gateway, e.g. a stale peer). `asker_rank`: the asker's own
/// rank when it may be missing from the `n` candidates (`None` when it is among them).
/// `handed_abroad`: whether a gateway may be given to other sites' gateways (when not, it
/// still gets theirs, and dials them itself).
///
/// Gateways must not change while a fleet starts, or every host that was a gateway for a
/// moment keeps its connections to the other sites and the image crosses once per such host
/// (measured: 2.45 × F into a site of 4 hosts by lowest peer id, where the early announcers
/// of a site each looked like gateways before the rest arrived). The in-memory store ranks by
/// arrival (origins last: a super-seeding origin that feeds another site directly makes the
/// pieces it gave there cross back), so a site's first hosts stay its gateways. For the same
/// reason an origin is never handed to another site: a host of another site that announces
/// before any host of the origin's site would get it, and keep it. An origin alone in its
/// site is its gateway and dials the other gateways it is given (origins announce every 5 s).
#[allow(clippy::too_many_arguments)]
pub fn pick_ranked<K: Ord + Clone>(
    n: usize,
    want: usize,
    (r1, r2): (u64, u64),
    eligible: impl Fn(usize) -> bool,
    sites: Option<&Sites>,
    asker: (IpAddr, [u8; 20]),
    asker_rank: Option<K>,
    peer_of: impl Fn(usize) -> (IpAddr, [u8; 20]),
    rank: impl Fn(usize) -> Option<K>,
    handed_abroad: impl Fn(usize) -> bool,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(want.min(n));
    if want == 0 {
        return out;
    }
    match sites {
        None => {
            for i in spread(n, r1, r2) {
                if out.len() >= want {
                    break;
                }
                if eligible(i) {
                    out.push(i);
                }
            }
        }
        Some(sites) => {
            let home = sites.site_of(asker.0);
            // Each site's `cross` lowest-ranked peers (the asker counts in its own site).
            let mut gateways: std::collections::HashMap<SiteId, Vec<(K, [u8; 20])>> = std::collections::HashMap::new();
            let mut add = |site: SiteId, k: K, id: [u8; 20]| {
                let g = gateways.entry(site).or_default();
                if !g.iter().any(|(_, x)| *x == id) {
                    g.push((k, id));
                    g.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
                    g.truncate(sites.cross);
                }
            };
            if let Some(k) = asker_rank {
                add(home.clone(), k, asker.1);
            }
            let sited: Vec<(SiteId, [u8; 20])> = (0..n).map(|i| {
                let (ip, id) = peer_of(i);
                (sites.site_of(ip), id)
            }).collect();
            for (i, (site, id)) in sited.iter().enumerate() {
                if let Some(k) = rank(i) {
                    add(site.clone(), k, *id);
                }
            }
            let is_gateway = |site: &SiteId, id: &[u8; 20]| gateways.get(site).is_some_and(|g| g.iter().any(|(_, x)| x == id));
            let asker_is_gateway = is_gateway(&home, &asker.1);
            // Up to `cross` gateways of each other site.
            let mut remote = Vec::new();
            let mut per_site: std::collections::HashMap<&SiteId, usize> = std::collections::HashMap::new();
            for i in spread(n, r1, r2) {
                if out.len() >= want {
                    break;
                }
                if !eligible(i) {
                    continue;
                }
                let (site, id) = &sited[i];
                if *site == home {
                    out.push(i);
                } else if asker_is_gateway && is_gateway(site, id) && handed_abroad(i) {
                    let c = per_site.entry(site).or_default();
                    if *c < sites.cross {
                        *c += 1;
                        remote.push(i);
                    }
                }
            }
            let room = want - out.len();
            out.extend(remote.into_iter().take(room));
        }
    }
    out
}

/// A site: a named CIDR (`--site 10.1.0.0/16=paris`) or, for addresses no CIDR names, the
/// /24 (IPv4) or /64 (IPv6) the address is in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SiteId {
    Named(usize),
    Prefix(u128),
}

/// Site-aware peer lists: which site an address belongs to, and how many peers of other
/// sites an answer may carry.
#[derive(Debug, Clone)]
pub struct Sites {
    /// (network, prefix length, name); IPv4 networks as IPv4-mapped IPv6, longest prefix wins.
    named: Vec<(u128, u8, String)>,
    /// Gateways per site, and gateways of each other site in one answer.
    pub cross: usize,
}

/// Gateways per site, and gateways of each other site in a gateway's answer, when sites are
/// on. One: every byte a site receives from another then enters through one host, so it
/// crosses once (two gateways fetch the same pieces over the link side by side).
pub const CROSS_SITE_PEERS: usize = 1;

fn ip_bits(ip: IpAddr) -> (u128, u8) {
    match crate::tracker::server::canonical_ip(ip) {
        IpAddr::V4(v4) => (u32::from(v4) as u128 | 0xffff_0000_0000, 96),
        IpAddr::V6(v6) => (u128::from(v6), 0),
    }
}

fn mask(bits: u8) -> u128 {
    if bits == 0 { 0 } else { u128::MAX << (128 - bits as u32) }
}

impl Sites {
    /// Sites from `CIDR=NAME` specs (none: group by /24 and /64 only).
    pub fn parse(specs: &[String]) -> Result<Sites, String> {
        let mut named = Vec::new();
        for spec in specs {
            let (cidr, name) = spec.split_once('=').ok_or_else(|| format!("{spec:?}: expected CIDR=NAME, e.g. 10.1.0.0/16=paris"))?;
            let (net, len) = cidr.split_once('/').ok_or_else(|| format!("{spec:?}: {cidr:?} has no /prefix length"))?;
            let ip: IpAddr = net.parse().map_err(|_| format!("{spec:?}: {net:?} is not an IP address"))?;
            let len: u8 = len.parse().map_err(|_| format!("{spec:?}: bad prefix length {len:?}"))?;
            let (bits, base) = ip_bits(ip);
            let max = if base == 96 { 32 } else { 128 };
            if len > max {
                return Err(format!("{spec:?}: prefix length {len} is over {max}"));
            }
            if name.is_empty() {
                return Err(format!("{spec:?}: empty site name"));
            }
            let total = base + len;
            named.push((bits & mask(total), total, name.to_string()));
        }
        named.sort_by_key(|n| std::cmp::Reverse(n.1));
        Ok(Sites { named, cross: CROSS_SITE_PEERS })
    }

    /// The site `ip` belongs to.
    pub fn site_of(&self, ip: IpAddr) -> SiteId {
        let (bits, base) = ip_bits(ip);
        for (i, (net, len, _)) in self.named.iter().enumerate() {
            if bits & mask(*len) == *net {
                return SiteId::Named(i);
            }
        }
        SiteId::Prefix(bits & mask(base + if base == 96 { 24 } else { 64 }))
    }

    /// A site's name for logs and pages: the `--site` name or the prefix.
    pub fn name(&self, ip: IpAddr) -> String {
        match self.site_of(ip) {
            SiteId::Named(i) => self.named[i].2.clone(),
            SiteId::Prefix(p) => match crate::tracker::server::canonical_ip(ip) {
                IpAddr::V4(_) => format!("{}/24", std::net::Ipv4Addr::from(p as u32)),
                IpAddr::V6(_) => format!("{}/64", std::net::Ipv6Addr::from(p)),
            },
        }
    }
}

/// Every index of `0..n` once, in an order drawn from two random numbers: a random start
/// and a random step coprime with `n`. A peer list taken from its front is a random spread
/// of the swarm, in O(taken) time. The fleet simulator uses the same order.
pub fn spread(n: usize, r1: u64, r2: u64) -> impl Iterator<Item = usize> + Clone {
    // Binary GCD: no division (Euclid's took ~10 of them per pick).
    fn gcd(mut a: usize, mut b: usize) -> usize {
        if a == 0 || b == 0 {
            return a | b;
        }
        let shift = (a | b).trailing_zeros();
        a >>= a.trailing_zeros();
        loop {
            b >>= b.trailing_zeros();
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            b -= a;
            if b == 0 {
                return a << shift;
            }
        }
    }
    let start = if n == 0 { 0 } else { (r1 % n as u64) as usize };
    let mut step = if n <= 1 { 1 } else { 1 + (r2 % (n as u64 - 1)) as usize };
    while n > 1 && gcd(step, n) != 1 {
        step = step % (n - 1) + 1;
    }
    // `start + k * step` mod n, by adding (no division per peer: picking walks this for
    // every peer it looks at).
    let mut at = start;
    (0..n).map(move |_| {
        let i = at;
        at += step;
        if at >= n {
            at -= n;
        }
        i
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_by_cidr_then_prefix() {
        let s = Sites::parse(&["10.1.0.0/16=paris".into(), "10.1.9.0/24=paris-lab".into(), "fd00:1::/32=lyon".into()]).unwrap();
        let ip = |x: &str| x.parse::<IpAddr>().unwrap();
        assert_eq!(s.name(ip("10.1.2.3")), "paris");
        assert_eq!(s.name(ip("10.1.9.3")), "paris-lab", "longest prefix wins");
        assert_eq!(s.name(ip("fd00:1:2::5")), "lyon");
        assert_eq!(s.name(ip("::ffff:10.1.2.3")), "paris", "IPv4-mapped is IPv4");
        assert_eq!(s.site_of(ip("192.168.7.1")), s.site_of(ip("192.168.7.200")));
        assert_ne!(s.site_of(ip("192.168.7.1")), s.site_of(ip("192.168.8.1")));
        assert_eq!(s.name(ip("192.168.7.1")), "192.168.7.0/24");
        assert_eq!(s.site_of(ip("fd00:2::1")), s.site_of(ip("fd00:2::ffff:1")));
        assert_ne!(s.site_of(ip("fd00:2::1")), s.site_of(ip("fd00:2:0:1::1")));
        for bad in ["10.0.0.0/8", "10.0.0.0=x", "10.0.0.0/33=x", "nope/8=x", "10.0.0.0/8="] {
            assert!(Sites::parse(&[bad.into()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn pick_prefers_the_askers_site_and_links_sites_through_gateways() {
        let sites = Sites::parse(&["10.1.0.0/16=a".into(), "10.2.0.0/16=b".into()]).unwrap();
        // 20 peers in site a (ids 1..=20), 20 in site b (ids 21..=40): the gateways are
        // peer 0 in a and peer 20 in b (the lowest ids).
        let peer = |i: usize| (IpAddr::from([10, 1 + (i / 20) as u8, 0, i as u8]), [i as u8 + 1; 20]);
        let ask = |ip: &str, id: u8| (ip.parse::<IpAddr>().unwrap(), [id; 20]);
        for r in 0..50u64 {
            let got = pick(40, 10, (r * 31, r * 17 + 1), |_| true, Some(&sites), ask("10.1.5.5", 200), peer);
            assert_eq!(got.len(), 10);
            assert!(got.iter().all(|&i| i < 20), "enough local peers: all local {got:?}");
            // Not a gateway: local peers only.
            let got = pick(40, 30, (r * 31, r * 17 + 1), |_| true, Some(&sites), ask("10.2.5.5", 200), peer);
            assert_eq!(got.len(), 20, "{got:?}");
            assert!(got.iter().all(|&i| i >= 20));
            // A gateway of b (peer 20, id 21): every local peer and a's gateway.
            let got = pick(40, 50, (r * 31, r * 17 + 1), |_| true, Some(&sites), (peer(20).0, peer(20).1), peer);
            let remote: Vec<usize> = got.iter().copied().filter(|&i| i < 20).collect();
            assert_eq!(remote, vec![0], "{got:?}");
            assert_eq!(got.len(), 20 + CROSS_SITE_PEERS);
            // A host alone in a new site is its gateway, with low id or not: the gateway of
            // each other site to start.
            let got = pick(40, 50, (r, r + 1), |_| true, Some(&sites), ask("10.3.0.1", 250), peer);
            assert_eq!(got.len(), 2 * CROSS_SITE_PEERS);
            assert!(got.iter().all(|&i| [0, 20].contains(&i)), "{got:?}");
            // Ineligible peers are skipped; without sites, a plain spread.
            let got = pick(40, 50, (r, r + 1), |i| i % 2 == 0, Some(&sites), ask("10.1.0.1", 0), peer);
            assert!(got.iter().all(|&i| i % 2 == 0));
            assert_eq!(got.len(), 10 + 1, "{got:?}");
            assert_eq!(pick(40, 50, (r, r + 1), |_| true, None, ask("10.1.0.1", 0), peer).len(), 40);
        }
    }

    #[test]
    fn store_answers_site_first() {
        let sites = Sites::parse(&[]).unwrap();
        let s = Store::new(true, 10, 100, Duration::from_secs(60)).with_sites(Some(sites));
        let at = |ip: [u8; 4], pid: u8, left: u64| Announce {
            addr: SocketAddr::from((ip, 6881)),
            source: IpAddr::from(ip),
            ..ann(1, pid, left, Event::Started)
        };
        // The origin (a seed, the lowest id) in 127.0.0.0/24 with 5 hosts, 5 in 127.0.1.0/24.
        s.announce(&at([127, 0, 0, 1], 1, 0)).unwrap();
        for i in 0..5u8 {
            s.announce(&at([127, 0, 0, 10 + i], 10 + i, 9)).unwrap();
            s.announce(&at([127, 0, 1, 10 + i], 50 + i, 9)).unwrap();
        }
        // 127.0.1.10 (id 50), its site's first host, is its gateway: its 4 neighbours and
        // the other site's gateway (its first host, id 10: not the origin, which came first).
        let r = s.announce(&at([127, 0, 1, 10], 50, 9)).unwrap();
        let remote: Vec<u8> = r.peers.iter().filter(|(a, _)| !a.ip().to_string().starts_with("127.0.1.")).map(|(_, id)| id[0]).collect();
        assert_eq!(remote, vec![10], "{:?}", r.peers);
        assert_eq!(r.peers.len(), 4 + CROSS_SITE_PEERS);
        // 127.0.1.99 (id 99) is not: local peers only.
        let r = s.announce(&at([127, 0, 1, 99], 99, 9)).unwrap();
        assert_eq!(r.peers.len(), 5);
        assert!(r.peers.iter().all(|(a, _)| a.ip().to_string().starts_with("127.0.1.")));
        // The origin is a member of its own site, not its gateway while hosts are there.
        let o = s.announce(&at([127, 0, 0, 1], 1, 0)).unwrap();
        assert_eq!(o.peers.len(), 5, "{:?}", o.peers);
        assert!(o.peers.iter().all(|(a, _)| a.ip().to_string().starts_with("127.0.0.")), "{:?}", o.peers);
    }

    #[test]
    fn gateways_stay_the_first_hosts_of_a_site_while_it_fills() {
        // A fleet starting at once: each host announces once, in an order unrelated to peer
        // ids (here descending, so the lowest-id rule would crown every newcomer). Only the
        // first host of each site is ever handed peers of the other site.
        let sites = Sites::parse(&["10.1.0.0/16=a".into(), "10.2.0.0/16=b".into()]).unwrap();
        let s = Store::new(true, 10, 100, Duration::from_secs(60)).with_sites(Some(sites.clone()));
        let at = |ip: [u8; 4], pid: u8, left: u64| Announce {
            addr: SocketAddr::from((ip, 6881)),
            source: IpAddr::from(ip),
            ..ann(1, pid, left, Event::Started)
        };
        s.announce(&at([10, 1, 0, 1], 200, 0)).unwrap(); // the origin, in a
        // The first host of b comes before any host of a: a's gateway is then the origin, which
        // is not handed abroad; announcing meanwhile, the origin gets b's gateway (and dials it).
        let first_b = s.announce(&at([10, 2, 0, 100], 100, 9)).unwrap();
        assert!(first_b.peers.is_empty(), "{:?}", first_b.peers);
        let o = s.announce(&at([10, 1, 0, 1], 200, 0)).unwrap();
        assert_eq!(o.peers.iter().map(|(_, id)| id[0]).collect::<Vec<_>>(), vec![100]);
        let mut crossing = Vec::new();
        for k in 0..8u8 {
            for (net, id) in [(1u8, 90 - k), (2u8, 99 - k)] {
                let r = s.announce(&at([10, net, 0, id], id, 9)).unwrap();
                let far: Vec<u8> = r.peers.iter().filter(|(a, _)| sites.site_of(a.ip()) != sites.site_of(IpAddr::from([10, net, 0, 0]))).map(|(_, id)| id[0]).collect();
                if !far.is_empty() {
                    crossing.push((id, far));
                }
            }
        }
        // a's first host (id 90) is handed b's gateway; nobody else crosses.
        assert_eq!(crossing, vec![(90, vec![100])]);
        // b's gateway, announcing again, now gets a's first host.
        let again = s.announce(&at([10, 2, 0, 100], 100, 9)).unwrap();
        let far: Vec<u8> = again.peers.iter().filter(|(a, _)| a.ip().to_string().starts_with("10.1.")).map(|(_, id)| id[0]).collect();
        assert_eq!(far, vec![90]);
    }

    #[test]
    fn spread_visits_everyone_once_in_scattered_order() {
        for n in [1usize, 2, 7, 12, 100] {
            for r in 0..20u64 {
                let mut v: Vec<usize> = spread(n, r * 7919, r * 104729 + 3).collect();
                let order = v.clone();
                v.sort();
                assert_eq!(v, (0..n).collect::<Vec<_>>(), "n {n} r {r}");
                if n == 100 && r == 5 {
                    let adjacent = order.windows(2).filter(|w| (w[1] + n - w[0]) % n == 1).count();
                    assert!(adjacent < 10, "not a window: {order:?}");
                }
            }
        }
    }

    fn ann(ih: u8, pid: u8, left: u64, event: Event) -> Announce {
        Announce {
            info_hash: [ih; 20],
            peer_id: [pid; 20],
            addr: SocketAddr::from(([127, 0, 0, 1], 1000 + pid as u16)),
            source: IpAddr::from([127, 0, 0, 1]),
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: 50,
            key: None,
            peer_ids: true,
        }
    }

    #[test]
    fn what_an_update_writes_shares_one_cache_line_and_slots_are_small() {
        assert_eq!(std::mem::align_of::<Peer>(), 64);
        assert_eq!(std::mem::size_of::<Peer>(), 128);
        assert_eq!(std::mem::size_of::<Slot>(), 12);
        for end in [
            std::mem::offset_of!(Peer, addr) + std::mem::size_of::<SocketAddr>(),
            std::mem::offset_of!(Peer, uploaded) + 8,
            std::mem::offset_of!(Peer, downloaded) + 8,
            std::mem::offset_of!(Peer, left) + 8,
            std::mem::offset_of!(Peer, last) + 4,
        ] {
            assert!(end <= 64, "{end}");
        }
    }

    #[test]
    fn closed_mode_refuses_unknown() {
        let s = Store::new(false, 10, 10, Duration::from_secs(60));
        assert_eq!(s.announce(&ann(1, 1, 5, Event::Started)).err(), Some(Refusal::Unregistered));
        s.register([1; 20]);
        assert!(s.announce(&ann(1, 1, 5, Event::Started)).is_ok());
        let mut stop = ann(1, 1, 5, Event::Stopped);
        stop.uploaded = 77;
        s.announce(&stop).unwrap();
        let v = s.view(&[1; 20]).unwrap();
        assert!(v.peers.is_empty());
        assert_eq!(v.departed.len(), 1);
        assert_eq!(v.departed[0].uploaded, 77, "final counters are kept");
        s.announce(&ann(1, 1, 5, Event::Started)).unwrap();
        assert!(s.view(&[1; 20]).unwrap().departed.is_empty(), "a returning peer is live again");
        s.unregister(&[1; 20]);
        assert_eq!(s.announce(&ann(1, 1, 5, Event::None)).err(), Some(Refusal::Unregistered));
        assert_eq!(s.peer_count(), 0);
    }

    #[test]
    fn counts_peers_and_completion() {
        let s = Store::new(true, 10, 3, Duration::from_secs(60));
        let a = s.announce(&ann(1, 1, 0, Event::Started)).unwrap();
        assert!(a.peers.is_empty());
        let b = s.announce(&ann(1, 2, 9, Event::Started)).unwrap();
        assert_eq!((b.seeders, b.leechers), (1, 1));
        assert_eq!(b.peers.len(), 1);
        let c = s.announce(&ann(1, 2, 0, Event::Completed)).unwrap();
        assert_eq!((c.seeders, c.leechers), (2, 0));
        assert!(c.peers.is_empty(), "seeders are not given seeders");
        assert_eq!(s.scrape(&[1; 20]).unwrap(), ScrapeStats { complete: 2, incomplete: 0, downloaded: 1 });
        // Cap: the fourth peer is answered but not stored.
        s.announce(&ann(1, 3, 9, Event::Started)).unwrap();
        s.announce(&ann(1, 4, 9, Event::Started)).unwrap();
        assert_eq!(s.view(&[1; 20]).unwrap().peers.len(), 3);
        s.announce(&ann(1, 1, 0, Event::Stopped)).unwrap();
        assert_eq!(s.view(&[1; 20]).unwrap().peers.len(), 2);
        assert!(s.view(&[1; 20]).unwrap().departed.is_empty(), "open-mode swarms keep no history");
        assert_eq!(s.peer_count(), 2);
        // Torrent cap.
        let s = Store::new(true, 1, 3, Duration::from_secs(60));
        s.announce(&ann(1, 1, 0, Event::Started)).unwrap();
        assert_eq!(s.announce(&ann(2, 1, 0, Event::Started)).err(), Some(Refusal::TooManyTorrents));
    }

    #[test]
    fn expiry() {
        let s = Store::new(true, 10, 10, Duration::from_secs(30));
        s.announce(&ann(1, 1, 0, Event::Started)).unwrap();
        s.announce(&ann(1, 2, 5, Event::Started)).unwrap();
        s.sweep();
        assert_eq!(s.peer_count(), 2);
        // Simulate time passing by moving the peers' clocks back.
        for shard in &s.shards {
            for sw in shard.lock().unwrap().values_mut() {
                for i in 0..sw.peers.len() {
                    sw.peers[i].last = 0;
                    sw.slots[i] = Slot::of(&sw.peers[i]);
                }
            }
        }
        let mut s = s;
        s.start -= Duration::from_secs(100);
        let r = s.announce(&ann(1, 3, 5, Event::Started)).unwrap();
        assert!(r.peers.is_empty(), "stale peers are not handed out");
        s.sweep();
        assert_eq!(s.peer_count(), 1);
        assert_eq!(s.torrent_count(), 1);
    }

    #[test]
    fn peer_ids_are_bound_to_their_key_or_source() {
        let s = Store::new(true, 10, 10, Duration::from_secs(60));
        let other: IpAddr = "10.66.66.66".parse().unwrap();
        // Without a key: bound to the source IP.
        s.announce(&ann(1, 1, 5, Event::Started)).unwrap();
        let evict = Announce { source: other, ..ann(1, 1, 5, Event::Stopped) };
        assert_eq!(s.announce(&evict).err(), Some(Refusal::PeerIdTaken));
        let hijack = Announce { source: other, addr: SocketAddr::new(other, 22), ..ann(1, 1, 5, Event::None) };
        assert_eq!(s.announce(&hijack).err(), Some(Refusal::PeerIdTaken));
        let v = s.view(&[1; 20]).unwrap();
        assert_eq!(v.peers.len(), 1);
        assert_eq!(v.peers[0].addr, SocketAddr::from(([127, 0, 0, 1], 1001)), "address unchanged");
        // With a key: the key is the proof, from any address (BEP 7); a wrong key is refused.
        s.announce(&Announce { key: Some(42), ..ann(1, 2, 5, Event::Started) }).unwrap();
        assert_eq!(s.announce(&Announce { key: Some(41), ..ann(1, 2, 5, Event::Stopped) }).err(), Some(Refusal::PeerIdTaken));
        assert_eq!(s.announce(&Announce { key: None, ..ann(1, 2, 5, Event::Stopped) }).err(), Some(Refusal::PeerIdTaken));
        let moved = Announce { key: Some(42), source: other, addr: SocketAddr::new(other, 6881), ..ann(1, 2, 5, Event::None) };
        s.announce(&moved).unwrap();
        assert!(s.view(&[1; 20]).unwrap().peers.iter().any(|p| p.addr == SocketAddr::new(other, 6881)));
        // The owner itself can stop.
        s.announce(&ann(1, 1, 5, Event::Stopped)).unwrap();
        assert_eq!(s.peer_count(), 1);
    }

    #[test]
    fn index_entries_and_slots_agree_with_the_records_through_any_sequence() {
        let s = Store::new(true, 10, 12, Duration::from_secs(60));
        let mut rng = 0x5eed_u64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for _ in 0..5_000 {
            let pid = next(16) as u8;
            let event = [Event::None, Event::Started, Event::Completed, Event::Stopped][next(4) as usize];
            let left = if next(2) == 0 { 0 } else { next(3) * 100 };
            let ip = if next(5) == 0 { IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, pid as u16 % 3]) } else { IpAddr::from([10, 0, 0, pid % 3]) };
            let key = [None, Some(pid as u32 % 2)][next(2) as usize];
            let a = Announce { addr: SocketAddr::new(ip, 1000 + next(3) as u16), source: ip, key, ..ann(1, pid, left, event) };
            let _ = s.announce(&a);
            let shard = s.shards[shard_of(&[1; 20])].lock().unwrap();
            let Some(sw) = shard.get(&[1; 20]) else { continue };
            assert_eq!(sw.peers.len(), sw.slots.len());
            assert_eq!(sw.peers.len(), sw.index.len());
            assert_eq!(sw.seeders as usize, sw.peers.iter().filter(|p| p.left == 0).count());
            for (i, p) in sw.peers.iter().enumerate() {
                let e = *sw.index.get(&p.peer_id).unwrap();
                assert_eq!(e.at as usize, i);
                assert_eq!(e.seed(), p.left == 0);
                assert_eq!(sw.slots[i], Slot::of(p));
                let owner = Announce { source: p.source, key: p.key, ..ann(1, p.peer_id[0], 0, Event::None) };
                assert!(e.same_client(&owner, || p.source));
                let other = IpAddr::from([192, 0, 2, 1]);
                let stranger = Announce { source: other, key: p.key.map(|k| k ^ 1), ..ann(1, p.peer_id[0], 0, Event::None) };
                assert!(!e.same_client(&stranger, || p.source));
            }
        }
    }

    /// The ports in a compact IPv4 answer.
    fn compact_ports(out: &[u8]) -> Vec<u16> {
        assert_eq!(out.len() % 6, 0);
        out.chunks(6).map(|c| u16::from_be_bytes([c[4], c[5]])).collect()
    }

    #[test]
    fn compact_answers_are_live_peers_other_than_the_asker_and_leechers_for_seeds() {
        // pids 1..=20 seeds, 21..=40 leechers, port 1000 + pid (see `ann`); 41, 42 an IPv6
        // seed and leecher.
        let mut s = Store::new(true, 10, 100, Duration::from_secs(30));
        for pid in 1..=40u8 {
            s.announce(&ann(1, pid, if pid <= 20 { 0 } else { 5 }, Event::Started)).unwrap();
        }
        let v6: IpAddr = "fd00::1".parse().unwrap();
        for (pid, left) in [(41u8, 0u64), (42, 5)] {
            s.announce(&Announce { addr: SocketAddr::new(v6, 1000 + pid as u16), source: v6, ..ann(1, pid, left, Event::Started) }).unwrap();
        }
        // 100 s later, only pids divisible by 3 have announced again: the rest are stale.
        s.start -= Duration::from_secs(100);
        for pid in (3..=42u8).step_by(3) {
            let a = ann(1, pid, if pid <= 20 { 0 } else { 5 }, Event::None);
            let a = if pid > 40 { Announce { addr: SocketAddr::new(v6, 1000 + pid as u16), source: v6, ..a } } else { a };
            s.announce(&a).unwrap();
        }
        let mut stale_asked = false;
        let live = |pid: u16, stale_asked: bool| (pid % 3 == 0 || (pid == 2 && stale_asked)) && pid <= 40;
        for (asker, seeding) in [(21u8, false), (24, false), (3, true), (2, true)] {
            let a = ann(1, asker, if seeding { 0 } else { 5 }, Event::None);
            let mut out = Vec::new();
            let (seeders, leechers) = s.announce_compact4(&a, &mut out).unwrap();
            assert_eq!(seeders + leechers, 42);
            let mut got: Vec<u16> = compact_ports(&out).into_iter().map(|p| p - 1000).collect();
            got.sort();
            let want: Vec<u16> = (1..=40).filter(|&p| live(p, stale_asked) && p != asker as u16 && (!seeding || p > 20)).collect();
            assert_eq!(got, want, "asker {asker}");
            // The general answer picks the same set (with IPv6 peers, which the compact answer
            // has no room for).
            let mut all: Vec<u16> = s.announce(&a).unwrap().peers.iter().filter(|(ad, _)| ad.is_ipv4()).map(|(ad, _)| ad.port() - 1000).collect();
            all.sort();
            assert_eq!(all, want, "asker {asker}");
            // A stale peer that announces is live again.
            stale_asked |= asker == 2;
        }
        // Fewer than there are: as many as asked, distinct, all eligible. (A picked IPv6
        // peer counts towards numwant and is left out of an IPv4 answer: without them here.)
        for pid in [41u8, 42] {
            s.announce(&Announce { addr: SocketAddr::new(v6, 1000 + pid as u16), source: v6, ..ann(1, pid, 0, Event::Stopped) }).unwrap();
        }
        for _ in 0..20 {
            let mut out = Vec::new();
            s.announce_compact4(&Announce { numwant: 4, ..ann(1, 21, 5, Event::None) }, &mut out).unwrap();
            let got = compact_ports(&out);
            assert_eq!(got.len(), 4, "{got:?}");
            assert!(got.iter().all(|&p| live(p - 1000, true) && p != 1021), "{got:?}");
            let mut d = got.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 4, "{got:?}");
        }
        // A new peer is handed out at once.
        s.announce(&ann(1, 50, 5, Event::Started)).unwrap();
        let mut out = Vec::new();
        s.announce_compact4(&ann(1, 3, 0, Event::None), &mut out).unwrap();
        assert!(compact_ports(&out).contains(&1050));
        // A stopped peer is not, and a stop gets no peers.
        s.announce(&ann(1, 50, 5, Event::Stopped)).unwrap();
        let mut out = Vec::new();
        s.announce_compact4(&ann(1, 3, 0, Event::None), &mut out).unwrap();
        assert!(!compact_ports(&out).contains(&1050));
        let mut out = Vec::new();
        s.announce_compact4(&ann(1, 24, 5, Event::Stopped), &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn an_update_is_recorded_after_the_pick() {
        let s = Store::new(true, 10, 100, Duration::from_secs(60));
        for pid in 1..=30u8 {
            s.announce(&ann(1, pid, 5, Event::Started)).unwrap();
        }
        let moved = Announce { addr: SocketAddr::from(([10, 1, 2, 3], 4321)), uploaded: 77, downloaded: 88, ..ann(1, 7, 0, Event::None) };
        let mut out = Vec::new();
        s.announce_compact4(&moved, &mut out).unwrap();
        assert!(!compact_ports(&out).contains(&4321) && !compact_ports(&out).contains(&1007), "not given itself");
        let p = s.view(&[1; 20]).unwrap().peers.into_iter().find(|p| p.peer_id == [7; 20]).unwrap();
        assert_eq!((p.addr, p.uploaded, p.downloaded, p.left), (moved.addr, 77, 88, 0));
        // Others now get its new address, and it counts as a seed.
        let o = s.announce(&ann(1, 8, 5, Event::None)).unwrap();
        assert!(o.peers.iter().any(|(a, _)| *a == moved.addr));
        assert_eq!(o.seeders, 1);
    }

    #[test]
    fn spread_order_is_the_same_as_with_euclids_gcd() {
        fn reference(n: usize, r1: u64, r2: u64) -> Vec<usize> {
            fn gcd(a: usize, b: usize) -> usize {
                if b == 0 { a } else { gcd(b, a % b) }
            }
            let start = if n == 0 { 0 } else { (r1 % n as u64) as usize };
            let mut step = if n <= 1 { 1 } else { 1 + (r2 % (n as u64 - 1)) as usize };
            while n > 1 && gcd(step, n) != 1 {
                step = step % (n - 1) + 1;
            }
            (0..n).map(|k| (start + k * step) % n).collect()
        }
        for n in (0..200).chain([360, 1000, 1024, 4096, 9240]) {
            for r in 0..30u64 {
                let (r1, r2) = (mix(r), mix(r + 1000));
                assert_eq!(spread(n, r1, r2).collect::<Vec<_>>(), reference(n, r1, r2), "n {n} r {r}");
            }
        }
    }

    #[test]
    fn peer_index_agrees_with_a_map_through_any_sequence() {
        let mut ix = PeerIndex::default();
        let mut model: HashMap<[u8; 20], u32> = HashMap::new();
        let mut rng = 0x1dea_u64;
        let mut next = |m: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % m
        };
        for step in 0..60_000u32 {
            // Ids that differ in one byte only, or only in their last bytes.
            let k = next(400);
            let mut id = [7u8; 20];
            id[(k % 20) as usize] = (k / 20) as u8;
            id[19] ^= (k % 3) as u8;
            match next(3) {
                0 | 1 => {
                    ix.insert(id, Entry { at: step, proof: 0, flags: 0 });
                    model.insert(id, step);
                }
                _ => {
                    ix.remove(&id);
                    model.remove(&id);
                }
            }
            assert_eq!(ix.len(), model.len());
            if step % 97 == 0 || step > 59_000 {
                for k in 0..400u64 {
                    let mut id = [7u8; 20];
                    id[(k % 20) as usize] = (k / 20) as u8;
                    id[19] ^= (k % 3) as u8;
                    assert_eq!(ix.get(&id).map(|e| e.at), model.get(&id).copied(), "step {step}");
                    assert_eq!(ix.get_mut(&id).map(|e| e.at), model.get(&id).copied(), "step {step}");
                }
            }
        }
        assert!(ix.buckets.len() * 3 >= ix.len() * 4, "at most 3/4 full");
    }

    #[test]
    fn global_peer_cap() {
        let s = Store::new(true, 10, 10, Duration::from_secs(60)).with_max_peers_total(3);
        for t in 1..=2u8 {
            for p in 1..=3u8 {
                assert!(s.announce(&ann(t, p, 5, Event::Started)).is_ok(), "answered even when full");
            }
        }
        assert_eq!(s.peer_count(), 3);
        // A stop frees a place.
        s.announce(&ann(1, 1, 5, Event::Stopped)).unwrap();
        s.announce(&ann(2, 3, 5, Event::Started)).unwrap();
        assert_eq!(s.peer_count(), 3);
        assert_eq!(s.view(&[2; 20]).unwrap().peers.len(), 1);
    }
}
