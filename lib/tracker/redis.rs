//! btrack's peer store in Redis, so that several btrack processes serve one swarm.
//!
//! Layout (every key under the prefix, `shoal:` by default; `<ih>` is the info-hash in hex):
//! - `reg`: set of registered info-hashes (raw 20 bytes); `torrents`: set of tracked ones;
//! - `npeers`: the number of peers stored over all swarms (the global cap);
//! - `p:<ih>`: hash peer id → `OWNER FIRST LAST ADDR UPLOADED DOWNLOADED LEFT`, where OWNER is
//!   `k<key>` (BEP 7 key) or `s<source ip>`; `t:<ih>`: sorted set peer id → last announce
//!   (Redis server time, seconds), for expiry; `c:<ih>`: hash with `completed` and
//!   `seeders` (kept by every change, so counts need no scan);
//!   `d:<ih>`: list of departed peers of a registered swarm, newest first, at most
//!   [`DEPARTED_MAX`];
//! - `meta`: hash info-hash → .torrent bytes, the shared registry; `deleted`: info-hash →
//!   unix time of its deletion through some btrack (see `manager::registry::sync_shared`).
//!
//! Invariants:
//! - every change to a swarm runs in one Lua script ([`SCRIPT`]), so announces to different
//!   btracks never interleave inside a swarm: peer-id ownership, the per-torrent, global and
//!   torrent caps are checked and applied atomically, against the same clock (Redis `TIME`);
//! - a peer silent for the TTL is dropped by the next announce to its swarm or by a sweep
//!   (any btrack's), whichever comes first; answers never carry a stale peer;
//! - the peer list is read in the same script; which peers to answer (random spread, sites)
//!   is chosen here in Rust by [`super::store::pick`], as for the in-memory store;
//! - when Redis cannot be reached or errs, an announce is refused with
//!   [`Refusal::StoreUnavailable`] (a `failure reason` for the client, the cause in the log,
//!   at most one line per second), never a hang: connections have connect, read and write
//!   timeouts. A broken connection is dropped and the next request opens a new one, so
//!   btrack recovers by itself when Redis is back;
//! - this btrack's registrations are re-asserted at every sweep, so a Redis that restarted
//!   empty knows them again within half a TTL (at most 30 s).

use super::client::{Event, ScrapeStats};
use super::store::{pick, splitmix, Announce, AnnounceOutcome, PeerStore, Peer, Refusal, Sites, SwarmView, DEPARTED_MAX};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Connect, read and write timeout towards Redis.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Idle connections kept for reuse.
const POOL_MAX: usize = 32;

/// One script for every swarm change. ARGV[1] is the operation:
/// - `announce IH PID OWNER_KEY OWNER_SRC REST EVENT OPEN MAX_TORRENTS MAX_PEERS MAX_TOTAL TTL`
///   `DEPARTED_MAX SAMPLE` answers `{status, completed, now, seeders, peers, pid1, rec1, …}`
///   (status 0 ok, 1 unregistered, 2 too many torrents, 3 peer id taken) with every peer
///   (SAMPLE 0) or SAMPLE random ones (`HRANDFIELD`), so an answer costs O(numwant), not
///   O(swarm), unless sites need the whole list;
/// - `sweep IH TTL` expires the swarm's silent peers and drops it when it is empty and not
///   registered; answers the peers left;
/// - `register IH` / `unregister IH`.
pub const SCRIPT: &str = r#"
local P = KEYS[1]
local op, ih = ARGV[1], ARGV[2]
local hex = ARGV[3]
local peers, times, counts, departed = P..'p:'..hex, P..'t:'..hex, P..'c:'..hex, P..'d:'..hex
local reg, torrents, npeers = P..'reg', P..'torrents', P..'npeers'
local now = tonumber(redis.call('TIME')[1])
local registered = redis.call('SISMEMBER', reg, ih) == 1

local function is_seed(rec)
  return string.match(rec, ' (%d+)$') == '0'
end

-- old: the stored record (for the seeder count); final: the record kept in `departed`.
local function depart(pid, old, final)
  redis.call('HDEL', peers, pid)
  redis.call('ZREM', times, pid)
  redis.call('DECR', npeers)
  if is_seed(old) then redis.call('HINCRBY', counts, 'seeders', -1) end
  if registered then
    redis.call('LPUSH', departed, pid .. final)
    redis.call('LTRIM', departed, 0, tonumber(ARGV[#ARGV]) - 1)
  end
end

local function expire(ttl)
  local stale = redis.call('ZRANGEBYSCORE', times, '-inf', now - ttl - 1)
  for _, pid in ipairs(stale) do
    local rec = redis.call('HGET', peers, pid)
    if rec then depart(pid, rec, rec) else redis.call('ZREM', times, pid) end
  end
end

if op == 'register' then
  redis.call('SADD', reg, ih)
  redis.call('SADD', torrents, ih)
  return 1
elseif op == 'unregister' then
  redis.call('SREM', reg, ih)
  redis.call('SREM', torrents, ih)
  local n = redis.call('HLEN', peers)
  if n > 0 then redis.call('DECRBY', npeers, n) end
  redis.call('DEL', peers, times, counts, departed)
  return 1
elseif op == 'sweep' then
  expire(tonumber(ARGV[4]))
  local n = redis.call('HLEN', peers)
  if n == 0 and not registered then
    redis.call('SREM', torrents, ih)
    redis.call('DEL', peers, times, counts, departed)
  end
  return n
end

-- announce
local pid, okey, osrc, rest, event = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local open, maxt, maxp, maxtotal, ttl = ARGV[9] == '1', tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
if redis.call('SISMEMBER', torrents, ih) == 0 then
  if not open and not registered then return {1} end
  if not registered then
    if redis.call('SCARD', torrents) >= maxt then return {2} end
    if event == 'stopped' then return {0, 0, now} end
  end
  redis.call('SADD', torrents, ih)
end
expire(ttl)
local rec = redis.call('HGET', peers, pid)
local first = now
if rec then
  local owner, f = string.match(rec, '^(%S+) (%d+)')
  local same
  if string.sub(owner, 1, 1) == 'k' then same = owner == okey else same = owner == osrc end
  if not same then return {3} end
  first = f
end
local owner = okey
if owner == '' then owner = osrc end
local newrec = owner .. ' ' .. first .. ' ' .. now .. ' ' .. rest
if event == 'stopped' then
  if rec then depart(pid, rec, newrec) end
else
  if rec then
    if is_seed(rec) ~= is_seed(newrec) then
      if is_seed(newrec) then redis.call('HINCRBY', counts, 'seeders', 1) else redis.call('HINCRBY', counts, 'seeders', -1) end
    end
    redis.call('HSET', peers, pid, newrec)
    redis.call('ZADD', times, now, pid)
  elseif redis.call('HLEN', peers) < maxp and tonumber(redis.call('GET', npeers) or '0') < maxtotal then
    if registered then
      for _, e in ipairs(redis.call('LRANGE', departed, 0, -1)) do
        if string.sub(e, 1, 20) == pid then redis.call('LREM', departed, 0, e) end
      end
    end
    redis.call('HSET', peers, pid, newrec)
    redis.call('ZADD', times, now, pid)
    redis.call('INCR', npeers)
    if is_seed(newrec) then redis.call('HINCRBY', counts, 'seeders', 1) end
  end
  if event == 'completed' then redis.call('HINCRBY', counts, 'completed', 1) end
end
local n = redis.call('HLEN', peers)
local c = redis.call('HMGET', counts, 'completed', 'seeders')
local out = {0, tonumber(c[1] or '0'), now, tonumber(c[2] or '0'), n}
local sample = tonumber(ARGV[15])
if event ~= 'stopped' then
  local list
  if sample == 0 or n <= sample then list = redis.call('HGETALL', peers)
  else list = redis.call('HRANDFIELD', peers, sample, 'WITHVALUES') end
  for _, v in ipairs(list) do out[#out + 1] = v end
end
return out
"#;

/// The Redis store. Cheap to share: connections come from a small pool.
pub struct RedisStore {
    client: redis::Client,
    url: String,
    prefix: String,
    script: redis::Script,
    pool: Mutex<Vec<redis::Connection>>,
    open: bool,
    max_torrents: usize,
    max_peers: usize,
    max_peers_total: u64,
    ttl: u32,
    sites: Option<Sites>,
    rng: AtomicU64,
    /// Unix seconds at creation: `Peer::first`/`last` and `SwarmView::now` count from here.
    start_unix: u64,
    /// Our registrations, re-asserted at each sweep (a restarted Redis may have lost them).
    registered: Mutex<HashSet<[u8; 20]>>,
    last_error_log: Mutex<Option<Instant>>,
}

/// Why the store could not be opened.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn hex(ih: &[u8; 20]) -> String {
    crate::hex::encode(ih)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A stored record: `OWNER FIRST LAST ADDR UPLOADED DOWNLOADED LEFT`.
struct Rec {
    owner: String,
    first: u64,
    last: u64,
    addr: SocketAddr,
    uploaded: u64,
    downloaded: u64,
    left: u64,
}

fn parse_rec(s: &[u8]) -> Option<Rec> {
    let s = std::str::from_utf8(s).ok()?;
    let mut it = s.split(' ');
    Some(Rec {
        owner: it.next()?.to_string(),
        first: it.next()?.parse().ok()?,
        last: it.next()?.parse().ok()?,
        addr: it.next()?.parse().ok()?,
        uploaded: it.next()?.parse().ok()?,
        downloaded: it.next()?.parse().ok()?,
        left: it.next()?.parse().ok()?,
    })
}

impl RedisStore {
    /// Connects to `url` (`redis://HOST:PORT/DB` or `unix:///path/to/socket[?db=N]`) and
    /// checks that Redis answers.
    pub fn open(url: &str, open: bool, max_torrents: usize, max_peers: usize, max_peers_total: usize, ttl: Duration) -> Result<RedisStore, OpenError> {
        if !(url.starts_with("redis://") || url.starts_with("unix://") || url.starts_with("redis+unix://")) {
            return Err(OpenError(format!("{url}: expected redis://HOST:PORT/DB or unix:///path/to/socket")));
        }
        let client = redis::Client::open(url).map_err(|e| OpenError(format!("{url}: {e}")))?;
        let s = RedisStore {
            client,
            url: url.to_string(),
            prefix: "shoal:".into(),
            script: redis::Script::new(SCRIPT),
            pool: Mutex::new(Vec::new()),
            open,
            max_torrents,
            max_peers,
            max_peers_total: max_peers_total.max(1) as u64,
            ttl: ttl.as_secs().clamp(1, u32::MAX as u64) as u32,
            sites: None,
            rng: AtomicU64::new(0x2545_F491_4F6C_DD1D ^ crate::tracker::client::random_u32() as u64),
            start_unix: unix_now(),
            registered: Mutex::new(HashSet::new()),
            last_error_log: Mutex::new(None),
        };
        let mut c = s.connect().map_err(|e| OpenError(format!("{url}: {e}")))?;
        redis::cmd("PING").query::<String>(&mut c).map_err(|e| OpenError(format!("{url}: {e}")))?;
        s.put(c);
        Ok(s)
    }

    /// Answers peers of the asker's site first (see [`Sites`]).
    pub fn with_sites(mut self, sites: Option<Sites>) -> RedisStore {
        self.sites = sites;
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let c = self.client.get_connection_with_timeout(TIMEOUT)?;
        c.set_read_timeout(Some(TIMEOUT))?;
        c.set_write_timeout(Some(TIMEOUT))?;
        Ok(c)
    }

    fn put(&self, c: redis::Connection) {
        let mut pool = self.pool.lock().unwrap();
        if pool.len() < POOL_MAX {
            pool.push(c);
        }
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped, not reused.
    /// When a pooled connection turns out to be closed (Redis restarted), the idle pool is
    /// emptied (its connections are as dead) and `f` runs once more on a new connection: the
    /// command was not executed, so the retry cannot apply an announce twice.
    fn with<T>(&self, what: &str, f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>) -> Option<T> {
        let pooled = self.pool.lock().unwrap().pop();
        let fresh = pooled.is_none();
        let mut c = match pooled {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    self.log_error(what, &e);
                    return None;
                }
            },
        };
        match f(&mut c) {
            Ok(v) => {
                self.put(c);
                return Some(v);
            }
            Err(e) if !fresh && (e.is_connection_dropped() || e.is_connection_refusal()) => {
                self.pool.lock().unwrap().clear();
            }
            Err(e) => {
                self.log_error(what, &e);
                return None;
            }
        }
        let mut c = match self.connect() {
            Ok(c) => c,
            Err(e) => {
                self.log_error(what, &e);
                return None;
            }
        };
        match f(&mut c) {
            Ok(v) => {
                self.put(c);
                Some(v)
            }
            Err(e) => {
                self.log_error(what, &e);
                None
            }
        }
    }

    fn log_error(&self, what: &str, e: &redis::RedisError) {
        let mut last = self.last_error_log.lock().unwrap();
        if last.map(|t| t.elapsed() >= Duration::from_secs(1)).unwrap_or(true) {
            *last = Some(Instant::now());
            eprintln!("btrack: store {}: {what}: {e}", self.url);
        }
    }

    fn invocation(&self, op: &str, ih: &[u8; 20]) -> redis::ScriptInvocation<'_> {
        let mut inv = self.script.prepare_invoke();
        inv.key(&self.prefix).arg(op).arg(&ih[..]).arg(hex(ih));
        inv
    }

    fn rel(&self, unix: u64) -> u32 {
        unix.saturating_sub(self.start_unix).min(u32::MAX as u64) as u32
    }

    fn peer_of(&self, pid: &[u8], rec: &[u8]) -> Option<Peer> {
        let r = parse_rec(rec)?;
        let (key, source) = match r.owner.as_bytes().first() {
            Some(b'k') => (r.owner[1..].parse().ok(), r.addr.ip()),
            _ => (None, r.owner.get(1..)?.parse().ok()?),
        };
        Some(Peer {
            addr: r.addr,
            source,
            peer_id: pid.try_into().ok()?,
            uploaded: r.uploaded,
            downloaded: r.downloaded,
            left: r.left,
            key,
            last: self.rel(r.last),
            first: self.rel(r.first),
        })
    }

    fn peers_of(&self, flat: &[Vec<u8>]) -> Vec<Peer> {
        flat.chunks_exact(2).filter_map(|kv| self.peer_of(&kv[0], &kv[1])).collect()
    }

    /// Info-hashes of the torrent files shared in Redis (`meta`), `None` when unreachable.
    pub fn shared_torrents(&self) -> Option<HashSet<[u8; 20]>> {
        let key = format!("{}meta", self.prefix);
        let v = self.with("shared torrents", |c| redis::cmd("HKEYS").arg(&key).query::<Vec<Vec<u8>>>(c))?;
        Some(v.iter().filter_map(|k| <[u8; 20]>::try_from(&k[..]).ok()).collect())
    }

    /// A shared torrent file.
    pub fn shared_torrent(&self, ih: &[u8; 20]) -> Option<Vec<u8>> {
        let key = format!("{}meta", self.prefix);
        self.with("shared torrent", |c| redis::cmd("HGET").arg(&key).arg(&ih[..]).query::<Option<Vec<u8>>>(c)).flatten()
    }

    /// Shares a torrent file (and lifts a deletion mark: it was registered again).
    pub fn share_torrent(&self, ih: &[u8; 20], bytes: &[u8]) -> bool {
        let (meta, deleted) = (format!("{}meta", self.prefix), format!("{}deleted", self.prefix));
        self.with("share torrent", |c| redis::pipe().atomic().cmd("HSET").arg(&meta).arg(&ih[..]).arg(bytes).cmd("HDEL").arg(&deleted).arg(&ih[..]).query::<()>(c))
            .is_some()
    }

    /// Withdraws a shared torrent and marks it deleted, so other btracks drop it too.
    pub fn withdraw_torrent(&self, ih: &[u8; 20]) -> bool {
        let (meta, deleted) = (format!("{}meta", self.prefix), format!("{}deleted", self.prefix));
        self.with("withdraw torrent", |c| redis::pipe().atomic().cmd("HDEL").arg(&meta).arg(&ih[..]).cmd("HSET").arg(&deleted).arg(&ih[..]).arg(unix_now()).query::<()>(c))
            .is_some()
    }

    /// Whether a torrent was deleted through some btrack (`None`: Redis unreachable).
    pub fn is_withdrawn(&self, ih: &[u8; 20]) -> Option<bool> {
        let key = format!("{}deleted", self.prefix);
        self.with("deleted torrents", |c| redis::cmd("HEXISTS").arg(&key).arg(&ih[..]).query::<bool>(c))
    }

    fn registered_here(&self) -> Vec<[u8; 20]> {
        self.registered.lock().unwrap().iter().copied().collect()
    }
}

fn event_name(e: Event) -> &'static str {
    match e {
        Event::None => "",
        Event::Started => "started",
        Event::Completed => "completed",
        Event::Stopped => "stopped",
    }
}

impl PeerStore for RedisStore {
    fn is_open(&self) -> bool {
        self.open
    }

    fn register(&self, ih: [u8; 20]) {
        self.registered.lock().unwrap().insert(ih);
        let inv = self.invocation("register", &ih);
        self.with("register", |c| inv.invoke::<i64>(c));
    }

    fn unregister(&self, ih: &[u8; 20]) {
        self.registered.lock().unwrap().remove(ih);
        let inv = self.invocation("unregister", ih);
        self.with("unregister", |c| inv.invoke::<i64>(c));
    }

    fn is_registered(&self, ih: &[u8; 20]) -> bool {
        let key = format!("{}reg", self.prefix);
        self.with("is_registered", |c| redis::cmd("SISMEMBER").arg(&key).arg(&ih[..]).query::<bool>(c)).unwrap_or(false)
    }

    fn torrent_count(&self) -> u64 {
        let key = format!("{}torrents", self.prefix);
        self.with("torrent_count", |c| redis::cmd("SCARD").arg(&key).query::<u64>(c)).unwrap_or(0)
    }

    fn peer_count(&self) -> u64 {
        let key = format!("{}npeers", self.prefix);
        self.with("peer_count", |c| redis::cmd("GET").arg(&key).query::<Option<i64>>(c)).flatten().unwrap_or(0).max(0) as u64
    }

    fn announce(&self, a: &Announce) -> Result<AnnounceOutcome, Refusal> {
        let mut inv = self.invocation("announce", &a.info_hash);
        let okey = a.key.map(|k| format!("k{k}")).unwrap_or_default();
        let osrc = format!("s{}", a.source);
        inv.arg(&a.peer_id[..])
            .arg(okey)
            .arg(osrc)
            .arg(format!("{} {} {} {}", a.addr, a.uploaded, a.downloaded, a.left))
            .arg(event_name(a.event))
            .arg(if self.open { "1" } else { "0" })
            .arg(self.max_torrents)
            .arg(self.max_peers)
            .arg(self.max_peers_total)
            .arg(self.ttl)
            .arg(DEPARTED_MAX)
            .arg(match &self.sites {
                // Sites pick from the whole swarm; otherwise a random sample big enough to
                // leave `numwant` after dropping the asker (and seeds, for a seed).
                Some(_) => 0,
                None => a.numwant as u64 * if a.left == 0 { 2 } else { 1 } + 1,
            });
        let v: Vec<redis::Value> = self.with("announce", |c| inv.invoke(c)).ok_or(Refusal::StoreUnavailable)?;
        let int = |x: Option<&redis::Value>| match x {
            Some(redis::Value::Int(i)) => Some(*i),
            _ => None,
        };
        match int(v.first()) {
            Some(0) => {}
            Some(1) => return Err(Refusal::Unregistered),
            Some(2) => return Err(Refusal::TooManyTorrents),
            Some(3) => return Err(Refusal::PeerIdTaken),
            _ => return Err(Refusal::StoreUnavailable),
        }
        let count = |x: Option<&redis::Value>| int(x).unwrap_or(0).clamp(0, u32::MAX as i64) as u32;
        let (seeders, total) = (count(v.get(3)), count(v.get(4)));
        let flat: Vec<Vec<u8>> = v
            .iter()
            .skip(5)
            .map(|x| match x {
                redis::Value::BulkString(b) => b.clone(),
                _ => Vec::new(),
            })
            .collect();
        let all = self.peers_of(&flat);
        let leechers = total.saturating_sub(seeders);
        let mut peers = Vec::new();
        if a.numwant > 0 && a.event != Event::Stopped {
            let (r1, r2) = (splitmix(&self.rng), splitmix(&self.rng));
            let seeding = a.left == 0;
            let eligible = |i: usize| {
                let p: &Peer = &all[i];
                !(p.peer_id == a.peer_id || (seeding && p.left == 0))
            };
            for i in pick(all.len(), a.numwant as usize, (r1, r2), eligible, self.sites.as_ref(), (a.addr.ip(), a.peer_id), |i| (all[i].addr.ip(), all[i].peer_id)) {
                peers.push((all[i].addr, all[i].peer_id));
            }
        }
        Ok(AnnounceOutcome { seeders, leechers, peers })
    }

    fn scrape(&self, ih: &[u8; 20]) -> Option<ScrapeStats> {
        let view = self.view(ih)?;
        Some(ScrapeStats { complete: view.seeders, incomplete: view.leechers, downloaded: view.completed })
    }

    fn view(&self, ih: &[u8; 20]) -> Option<SwarmView> {
        let h = hex(ih);
        let p = &self.prefix;
        type Reply = (bool, Vec<Vec<u8>>, Option<u32>, Vec<Vec<u8>>);
        let (tracked, flat, completed, departed): Reply = self.with("view", |c| {
            redis::pipe()
                .cmd("SISMEMBER")
                .arg(format!("{p}torrents"))
                .arg(&ih[..])
                .cmd("HGETALL")
                .arg(format!("{p}p:{h}"))
                .cmd("HGET")
                .arg(format!("{p}c:{h}"))
                .arg("completed")
                .cmd("LRANGE")
                .arg(format!("{p}d:{h}"))
                .arg(0)
                .arg(-1)
                .query(c)
        })?;
        if !tracked {
            return None;
        }
        let now = self.rel(unix_now());
        let ttl = self.ttl;
        let peers: Vec<Peer> = self.peers_of(&flat).into_iter().filter(|p| now.saturating_sub(p.last) <= ttl).collect();
        let seeders = peers.iter().filter(|p| p.left == 0).count() as u32;
        let mut departed: Vec<Peer> = departed.iter().filter(|e| e.len() > 20).filter_map(|e| self.peer_of(&e[..20], &e[20..])).collect();
        departed.reverse(); // oldest first
        Some(SwarmView { seeders, leechers: peers.len() as u32 - seeders, completed: completed.unwrap_or(0), peers, departed, now })
    }

    fn sweep(&self) {
        for ih in self.registered_here() {
            let inv = self.invocation("register", &ih);
            if self.with("register", |c| inv.invoke::<i64>(c)).is_none() {
                return;
            }
        }
        let key = format!("{}torrents", self.prefix);
        let Some(all) = self.with("sweep", |c| redis::cmd("SMEMBERS").arg(&key).query::<Vec<Vec<u8>>>(c)) else {
            return;
        };
        for ih in all {
            let Ok(ih) = <[u8; 20]>::try_from(&ih[..]) else { continue };
            let mut inv = self.invocation("sweep", &ih);
            inv.arg(self.ttl).arg(DEPARTED_MAX);
            if self.with("sweep", |c| inv.invoke::<i64>(c)).is_none() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = parse_rec(b"k42 100 160 127.0.0.1:6881 1 2 3").unwrap();
        assert_eq!((r.owner.as_str(), r.first, r.last, r.left), ("k42", 100, 160, 3));
        assert_eq!(r.addr, "127.0.0.1:6881".parse().unwrap());
        assert!(parse_rec(b"s[::1] 1 2 [::1]:5 1 2 3").is_some());
        assert!(parse_rec(b"k42 x 160 127.0.0.1:6881 1 2 3").is_none());
        assert!(parse_rec(b"k42 1 2").is_none());
        assert!(parse_rec(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn bad_urls_are_refused_before_connecting() {
        let e = RedisStore::open("http://x", true, 1, 1, 1, Duration::from_secs(1)).err().unwrap();
        assert!(e.0.contains("expected redis://"), "{e}");
    }
}
