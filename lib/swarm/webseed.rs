//! Web seeds (BEP 19) as the core sees them: HTTP servers that hold the whole content and
//! answer range requests, asked for pieces by the same picker as peers.
//!
//! The policy keeps an artifact server from being hammered when a whole fleet starts at
//! once: a web seed is asked only for pieces that no connected peer has ("the swarm lacks
//! them"), whole pieces picked at random among those (each host's picker has its own
//! seed, so hosts spread over different pieces). As soon as one host has verified a piece it
//! announces it, and the others fetch it from that host instead. And only a few hosts ask at
//! all, chosen by a hash of their peer id that every host computes alike: in a swarm where
//! everyone sees everyone (the tracker counts no more downloaders than we are connected to),
//! the first [`FETCHERS`] of the neighbourhood (itself and its connected peers still
//! downloading); in a larger swarm, where each host sees only part of it, those whose hash
//! falls in the top [`FLEET_FETCHERS`] / n of its range, n being the tracker's count of
//! downloaders (so about [`FLEET_FETCHERS`] hosts fleet-wide, whatever each one's view).
//! Each fetcher gets a large share of the server, so a piece is in flight briefly and two
//! hosts seldom pick the same one, which is what costs the server bytes (simulated, 100 hosts
//! all asking: 1.65 x the content from the server; 1 000 hosts with the first 4 of each
//! neighbourhood asking: 1.9 x). The server then sends each byte about once, and the hosts
//! that got it spread it like any seed would.
//! Exceptions: with no peer at all, every missing piece is fair (the web seed is the only
//! source), and a download that received nothing from any peer for [`STARVED`] (every peer
//! chokes us, or is too slow to matter) may fetch any missing piece from the web seed,
//! ranked or not.
//!
//! A failing web seed (refused, 404, 5xx, short or slow response) is backed off, never
//! fatal; one whose data failed [`MAX_STRIKES`] hash checks on its own is no longer used.

use crate::picker::{BlockRef, PeerKey, Picker};
use std::time::Duration;

/// Nothing from any peer for this long (while we want something): the web seed may serve
/// any missing piece, not only those the swarm lacks.
pub const STARVED: Duration = Duration::from_secs(10);
/// Requests (pieces) a web seed has in flight at once, each on its own HTTP connection, while
/// we have peers: one connection would get only its TCP share of a fetcher's downlink, which
/// the peers' connections share too (on the testbed, 16 hosts x 100 Mbit/s: 1.81 x F/B with
/// one connection, 1.46 with four). Without peers, one.
pub const CONNECTIONS: usize = 4;
/// A web seed gets a further connection per this many pieces the swarm still lacks (a
/// piece in flight at one host looks missing to every other: when few are left, all hosts
/// pick among the same few).
pub const PIECES_PER_CONNECTION: usize = 32;
/// Hosts of a neighbourhood that ask the web seeds for the pieces the swarm lacks.
pub const FETCHERS: usize = 4;
/// Hosts of a whole swarm that do, when no host sees the whole swarm.
pub const FLEET_FETCHERS: u64 = 8;
/// Longest wait before a failing web seed is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Pieces that failed their hash check with data from this web seed alone before it is
/// dropped for the rest of the session.
pub const MAX_STRIKES: u32 = 3;
/// At least this many bytes are asked of a web seed at once: whole pieces, so a small piece
/// length does not turn into one HTTP round trip per 16 KiB, but no more than needed, since
/// a piece held by one host's web request looks missing to every other host.
const MIN_REQUEST: u64 = 256 << 10;

/// The picker key of web seed `i`: from the top of the key space, far from the keys of
/// dialled (from 1) and accepted (from `u64::MAX / 2`) connections.
pub fn key(i: usize) -> PeerKey {
    PeerKey::MAX - i as PeerKey
}

/// One web seed's state.
#[derive(Debug, Clone)]
pub struct WebSeed {
    /// The URL, for log lines and reports.
    pub name: String,
    /// The picker's owner key for its requests (never a peer's key).
    pub key: PeerKey,
    pub inflight: Vec<BlockRef>,
    /// Backing off until then.
    pub retry_at: Option<Duration>,
    /// Failures in a row (reset by a delivered block).
    pub failures: u32,
    pub strikes: u32,
    /// Pieces asked of it whose hash check has not come back yet.
    pub unchecked: Vec<u32>,
    /// A piece it served passed its hash check.
    pub proven: bool,
    pub disabled: bool,
    /// Payload bytes received from it.
    pub downloaded: u64,
}

/// What a report says about a web seed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WebSeedReport {
    pub url: String,
    pub downloaded: u64,
    pub failures: u32,
    pub disabled: bool,
}

impl WebSeed {
    pub fn new(name: String, key: PeerKey) -> WebSeed {
        WebSeed {
            name,
            key,
            inflight: Vec::new(),
            retry_at: None,
            failures: 0,
            strikes: 0,
            unchecked: Vec::new(),
            proven: false,
            disabled: false,
            downloaded: 0,
        }
    }

    /// Free to be asked for more now. Until a piece it served has passed its hash check,
    /// and again once one has failed, it is asked for the next piece only when the last
    /// one has been checked: a server with the wrong file is found out after
    /// [`MAX_STRIKES`] pieces, not after the whole file.
    pub fn ready(&self, now: Duration, connections: usize) -> bool {
        !self.disabled
            && self.retry_at.map(|t| now >= t).unwrap_or(true)
            && if self.proven && self.strikes == 0 {
                self.pieces_in_flight() < connections
            } else {
                self.unchecked.is_empty() && self.inflight.is_empty()
            }
    }

    /// Pieces with blocks asked of it and not yet delivered.
    pub fn pieces_in_flight(&self) -> usize {
        let mut n = 0;
        let mut last = None;
        for b in &self.inflight {
            if last != Some(b.index) {
                n += 1;
                last = Some(b.index);
            }
        }
        n
    }

    /// Takes `b` off the blocks in flight; answers whether it was there.
    pub fn take_inflight(&mut self, b: &BlockRef) -> bool {
        match self.inflight.iter().position(|x| x == b) {
            Some(i) => {
                self.inflight.remove(i);
                true
            }
            None => false,
        }
    }

    /// Piece `index` was checked (`ok`: it passed), or is no longer expected from anyone.
    pub fn checked(&mut self, index: u32, ok: bool) {
        if ok && self.unchecked.contains(&index) {
            self.proven = true;
        }
        self.unchecked.retain(|i| *i != index);
    }

    /// A request failed: back off (the server's `Retry-After` when it gave one, capped).
    /// Answers how long.
    pub fn failed(&mut self, now: Duration, retry_after: Option<Duration>) -> Duration {
        self.failures += 1;
        let wait = retry_after
            .unwrap_or_else(|| backoff(self.failures))
            .min(MAX_BACKOFF * 5);
        self.retry_at = Some(now + wait);
        wait
    }

    pub fn report(&self) -> WebSeedReport {
        WebSeedReport {
            url: self.name.clone(),
            downloaded: self.downloaded,
            failures: self.failures,
            disabled: self.disabled,
        }
    }
}

/// Wait after the `n`th failure in a row: 1, 2, 4 … seconds, at most [`MAX_BACKOFF`].
pub fn backoff(n: u32) -> Duration {
    Duration::from_secs(1u64 << n.saturating_sub(1).min(6)).min(MAX_BACKOFF)
}

/// A peer id's rank key for choosing the web seed fetchers: a fixed hash (FNV-1a, then a
/// final mix), the same on every host.
pub fn rank(id: &[u8; 20]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Does `me` ask the web seeds for what the swarm lacks? `others`: the connected peers still
/// downloading; `swarm`: downloaders the tracker counts (see the module's policy).
pub fn is_fetcher<'a>(me: &[u8; 20], others: impl ExactSizeIterator<Item = &'a [u8; 20]>, swarm: Option<u32>) -> bool {
    let mine = rank(me);
    let seen = others.len() as u64 + 1;
    match swarm.map(u64::from) {
        Some(n) if n > seen => mine >= u64::MAX - (u64::MAX / n).saturating_mul(FLEET_FETCHERS),
        _ => others.filter(|id| (rank(id), *id) > (mine, me)).take(FETCHERS).count() < FETCHERS,
    }
}

/// The pieces a web seed may be asked for (as a `has` mask for [`Picker::pick`]): those no
/// connected peer has, or, when `starved`, every piece.
pub fn eligible(picker: &Picker, starved: bool) -> Vec<bool> {
    (0..picker.num_pieces())
        .map(|i| starved || picker.availability(i) == 0)
        .collect()
}

/// Blocks to ask for at once: whole pieces, at least [`MIN_REQUEST`] bytes.
pub fn request_blocks(piece_length: u64, block: u32) -> usize {
    let per_piece = piece_length.div_ceil(block as u64).max(1);
    let pieces = MIN_REQUEST.div_ceil(piece_length).max(1);
    (per_piece * pieces) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn retry_after_is_honoured_but_capped() {
        let mut w = WebSeed::new("http://w/".into(), 1);
        let now = Duration::from_secs(10);
        assert_eq!(w.failed(now, Some(Duration::from_secs(20))), Duration::from_secs(20));
        assert!(!w.ready(now + Duration::from_secs(19), 1));
        assert!(w.ready(now + Duration::from_secs(20), 1));
        assert_eq!(w.failed(now, Some(Duration::from_secs(100_000))), MAX_BACKOFF * 5);
    }

    #[test]
    fn whole_pieces_of_at_least_256_kib() {
        assert_eq!(request_blocks(256 << 10, 16 << 10), 16);
        assert_eq!(request_blocks(64 << 10, 16 << 10), 16);
        assert_eq!(request_blocks(4 << 20, 16 << 10), 256);
        assert_eq!(request_blocks(3 << 20, 16 << 10), 192);
    }

    #[test]
    fn every_host_of_a_full_mesh_agrees_on_the_same_few_fetchers() {
        let ids: Vec<[u8; 20]> = (0..16u8)
            .map(|i| {
                let mut id = *b"-SH0100-abcdefghijkl";
                id[19] = b'a' + i;
                id
            })
            .collect();
        let others = |i: usize| -> Vec<&[u8; 20]> { ids.iter().enumerate().filter(|(j, _)| *j != i).map(|x| x.1).collect() };
        let fetchers: Vec<usize> = (0..ids.len()).filter(|i| is_fetcher(&ids[*i], others(*i).into_iter(), Some(16))).collect();
        assert_eq!(fetchers.len(), FETCHERS);
        // Alone or with few peers, everyone fetches.
        assert!(is_fetcher(&ids[0], ids[1..FETCHERS].iter(), None));
        assert!(is_fetcher(&ids[0], std::iter::empty(), None));
    }

    #[test]
    fn in_a_swarm_larger_than_anyones_view_about_eight_hosts_fetch() {
        let ids: Vec<[u8; 20]> = (0..5000u32)
            .map(|i| {
                let mut id = *b"-SH0100-000000000000";
                id[8..].copy_from_slice(format!("{i:012}").as_bytes());
                id
            })
            .collect();
        // Each host sees 10 others; the tracker counts 5 000 downloaders.
        let n = ids.iter().filter(|me| is_fetcher(me, ids[..10].iter(), Some(5000))).count();
        assert!((2..=16).contains(&n), "{n} fetchers");
    }

    #[test]
    fn only_pieces_the_swarm_lacks_unless_starved() {
        let mut p = Picker::new(4 << 14, 4 * (4 << 14), &[false; 4], 1);
        p.add_availability(&[true, false, true, false]);
        assert_eq!(eligible(&p, false), vec![false, true, false, true]);
        assert_eq!(eligible(&p, true), vec![true; 4]);
    }
}
