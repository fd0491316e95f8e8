//! The peer table: what the core knows of each connected peer, keyed by [`PeerKey`].
//!
//! Invariants: `has_count` is the number of true entries in `has`, and the picker's
//! availability counts hold every connected peer's `has` exactly once; `inflight` holds the
//! blocks requested of this peer that the picker still counts as requested from it.

use crate::peer::wire;
use crate::picker::{BlockRef, PeerKey};
use crate::rate::Meter;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

/// How long a peer's gain of pieces is watched before it counts.
const GAIN_AFTER: Duration = Duration::from_secs(10);

/// One peer's transfer totals in a session's report.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub addr: String,
    pub client: String,
    pub downloaded: u64,
    pub uploaded: u64,
}

pub struct Peer {
    pub addr: SocketAddr,
    /// Where the peer accepts connections (the dialled address, or the port from its
    /// extension handshake).
    pub listen: Option<SocketAddr>,
    pub client: String,
    pub peer_id: [u8; 20],
    pub outgoing: bool,
    pub has: Vec<bool>,
    pub has_count: usize,
    /// Pieces the peer has that we have not verified: we are interested while this is not 0.
    pub wanted: usize,
    pub am_interested: bool,
    pub am_choking: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub inflight: VecDeque<BlockRef>,
    pub down: Meter,
    pub up: Meter,
    /// Payload bytes sent to the peer, as last reported by its connection.
    pub uploaded: u64,
    /// Part of `uploaded` already moved into the history.
    pub up_recorded: u64,
    /// Payload bytes received and not yet moved into the history.
    pub downloaded: u64,
    /// When the peer last sent a block, or we asked it for blocks with none in flight:
    /// what snubbing measures silence from.
    pub last_block: Duration,
    pub unchoked_at: Option<Duration>,
    /// When we last choked it (or it connected): seeders serve who waited longest.
    pub choked_since: Duration,
    /// Super-seeding: the pieces revealed to this peer and not yet seen back (at most
    /// [`super::superseed::DEPTH`]).
    pub revealed: Vec<u32>,
    /// When the peer last announced a new piece (or connected).
    pub progress_at: Duration,
    /// Pieces the peer had at `gain_from` (its bitfield, or none when it connected): how
    /// fast it gains pieces is measured from there.
    pub gain_base: usize,
    pub gain_from: Duration,
    /// Super-seeding: it stalled, so it is shown pieces others have too, until it gets a
    /// piece from someone else again.
    pub starving: bool,
    pub snubbed_until: Option<Duration>,
}

impl Peer {
    pub fn new(
        addr: SocketAddr,
        peer_id: [u8; 20],
        outgoing: bool,
        num_pieces: usize,
        now: Duration,
    ) -> Peer {
        Peer {
            addr,
            listen: if outgoing { Some(addr) } else { None },
            client: wire::client_from_peer_id(&peer_id),
            peer_id,
            outgoing,
            has: vec![false; num_pieces],
            has_count: 0,
            wanted: 0,
            am_interested: false,
            am_choking: true,
            peer_choking: true,
            peer_interested: false,
            inflight: VecDeque::new(),
            down: Meter::new(Duration::from_secs(3)),
            up: Meter::new(Duration::from_secs(10)),
            uploaded: 0,
            up_recorded: 0,
            downloaded: 0,
            last_block: now,
            unchoked_at: None,
            choked_since: now,
            revealed: Vec::new(),
            progress_at: now,
            gain_base: 0,
            gain_from: now,
            starving: false,
            snubbed_until: None,
        }
    }

    /// The peer's name in logs and reports: its listening address when known.
    pub fn name(&self) -> String {
        self.listen.unwrap_or(self.addr).to_string()
    }

    /// Pieces per second the peer has gained since it connected (or sent its bitfield);
    /// `None` until that is `GAIN_AFTER` old.
    pub fn gain_rate(&self, now: Duration) -> Option<f64> {
        let t = now.saturating_sub(self.gain_from);
        (t >= GAIN_AFTER)
            .then(|| self.has_count.saturating_sub(self.gain_base) as f64 / t.as_secs_f64())
    }

    pub fn seed(&self) -> bool {
        self.has_count == self.has.len()
    }

    /// Removes `r` from the blocks in flight; answers whether it was there.
    pub fn take_inflight(&mut self, r: &BlockRef) -> bool {
        match self.inflight.iter().position(|b| b == r) {
            Some(pos) => {
                self.inflight.remove(pos);
                true
            }
            None => false,
        }
    }
}

/// Connected peers in key order (so the core's outputs come in the same order for the same
/// inputs), and the history of every peer's totals for the report.
#[derive(Default)]
pub struct PeerTable {
    peers: BTreeMap<PeerKey, Peer>,
    history: HashMap<String, PeerReport>,
}

impl PeerTable {
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn get(&self, k: PeerKey) -> Option<&Peer> {
        self.peers.get(&k)
    }

    pub fn get_mut(&mut self, k: PeerKey) -> Option<&mut Peer> {
        self.peers.get_mut(&k)
    }

    pub fn insert(&mut self, k: PeerKey, p: Peer) {
        self.peers.insert(k, p);
    }

    /// Removes a peer, moving its counters into the history.
    pub fn remove(&mut self, k: PeerKey) -> Option<Peer> {
        let mut p = self.peers.remove(&k)?;
        record(&mut self.history, &mut p);
        Some(p)
    }

    pub fn keys(&self) -> Vec<PeerKey> {
        self.peers.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PeerKey, &Peer)> {
        self.peers.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.peers.values_mut()
    }

    pub fn find_id(&self, id: &[u8; 20]) -> Option<PeerKey> {
        self.peers
            .iter()
            .find(|(_, p)| p.peer_id == *id)
            .map(|(k, _)| *k)
    }

    /// Moves every peer's counters into the history (the report stays current).
    pub fn record_all(&mut self) {
        for p in self.peers.values_mut() {
            record(&mut self.history, p);
        }
    }

    /// The median of [`Peer::gain_rate`] over the peers still downloading that have one.
    pub fn typical_gain(&self, now: Duration) -> Option<f64> {
        let mut rates: Vec<f64> = self
            .peers
            .values()
            .filter(|p| !p.seed())
            .filter_map(|p| p.gain_rate(now))
            .collect();
        rates.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        rates.get(rates.len() / 2).copied()
    }

    /// Payload bytes sent to all peers, connected or gone.
    pub fn uploaded(&self) -> u64 {
        self.history.values().map(|h| h.uploaded).sum::<u64>()
            + self
                .peers
                .values()
                .map(|p| p.uploaded - p.up_recorded.min(p.uploaded))
                .sum::<u64>()
    }

    /// Every peer that sent or received something, sorted by address.
    pub fn reports(&self) -> Vec<PeerReport> {
        let mut h = self.history.clone();
        for p in self.peers.values() {
            let e = entry(&mut h, p);
            e.downloaded += p.downloaded;
            e.uploaded += p.uploaded - p.up_recorded.min(p.uploaded);
        }
        let mut v: Vec<PeerReport> = h
            .into_values()
            .filter(|p| p.downloaded > 0 || p.uploaded > 0)
            .collect();
        v.sort_by(|a, b| a.addr.cmp(&b.addr));
        v
    }
}

fn entry<'a>(history: &'a mut HashMap<String, PeerReport>, p: &Peer) -> &'a mut PeerReport {
    history.entry(p.name()).or_insert_with(|| PeerReport {
        addr: p.name(),
        client: p.client.clone(),
        downloaded: 0,
        uploaded: 0,
    })
}

/// Moves a peer's counters since the last call into the per-address history.
fn record(history: &mut HashMap<String, PeerReport>, p: &mut Peer) {
    let e = entry(history, p);
    e.downloaded += p.downloaded;
    e.uploaded += p.uploaded - p.up_recorded.min(p.uploaded);
    p.downloaded = 0;
    p.up_recorded = p.uploaded;
}
