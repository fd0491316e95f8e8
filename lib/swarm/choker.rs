//! The choker (BitTorrent's tit-for-tat) as a pure function of the peers' views, the time
//! and the core's random numbers: which peers get an upload slot.
//!
//! - Fewer interested peers than slots: every interested peer is unchoked.
//! - Downloading: the peers that send us the most keep `slots - 1` slots (among peers that
//!   send us the same, none at the start, the ones with the fewest pieces; peers on much
//!   slower links last); one more goes to an optimistic unchoke, rotated every
//!   [`OPTIMISTIC_EVERY`] (or when its peer leaves or loses interest), so newcomers get
//!   their first pieces. The optimistic slot goes to one
//!   of the peers with the fewest pieces: a host that fell behind early has little to
//!   trade, and tit-for-tat alone leaves it behind (the fleet simulator's stragglers).
//! - Seeding: round robin. A peer keeps its slot for [`SEED_TURN`]; then the slot goes to
//!   the waiting peer with the fewest pieces (the longest waiter among equals), so fast
//!   peers do not starve the rest and the hosts furthest behind catch up first.

use super::rng::Rng;
use crate::picker::PeerKey;
use std::time::Duration;

pub const OPTIMISTIC_EVERY: Duration = Duration::from_secs(30);
pub const SEED_TURN: Duration = Duration::from_secs(20);
/// How often the choker runs (also run soon after a peer connects).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// What the choker knows of one connected peer.
#[derive(Debug, Clone, Copy)]
pub struct View {
    pub key: PeerKey,
    pub interested: bool,
    /// Bytes per second the peer sent us recently.
    pub down_rate: f64,
    /// When we last unchoked it, if it is unchoked now.
    pub unchoked_at: Option<Duration>,
    /// When we last choked it (or it connected).
    pub choked_since: Duration,
    /// Pieces the peer has.
    pub pieces: usize,
    /// Pieces per second it gained lately (`None`: not watched long enough).
    pub gain_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Download,
    Seed,
}

/// The optimistic unchoke carried from one round to the next.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Optimistic {
    pub peer: Option<PeerKey>,
    pub since: Option<Duration>,
}

/// Answers the peers to unchoke (all others are choked), sorted, and the optimistic unchoke
/// for the next round.
pub fn decide(
    views: &[View],
    mode: Mode,
    slots: usize,
    now: Duration,
    opt: Optimistic,
    rng: &mut Rng,
) -> (Vec<PeerKey>, Optimistic) {
    let slots = slots.max(1);
    let mut interested: Vec<&View> = views.iter().filter(|v| v.interested).collect();
    interested.sort_by_key(|v| v.key);
    let mut keep: Vec<PeerKey> = if interested.len() <= slots {
        interested.iter().map(|v| v.key).collect()
    } else if mode == Mode::Seed {
        // (class, pieces, order, key): 0 = in its turn; 1 = waiting, fewest pieces first,
        // then longest first; 2 = turn over, longest-served last.
        let mut ranked: Vec<(u8, usize, Duration, PeerKey)> = interested
            .iter()
            .map(|v| match v.unchoked_at {
                Some(t) if now.saturating_sub(t) < SEED_TURN => (0, 0, Duration::ZERO, v.key),
                Some(t) => (2, 0, Duration::MAX - now.saturating_sub(t), v.key),
                None => (
                    1,
                    v.pieces,
                    Duration::MAX - now.saturating_sub(v.choked_since),
                    v.key,
                ),
            })
            .collect();
        ranked.sort();
        ranked
            .into_iter()
            .take(slots)
            .map(|(_, _, _, k)| k)
            .collect()
    } else {
        // Among peers that send us the same (none, at the start), the ones furthest behind
        // first; peers on much slower links last.
        let floor = slow_floor(&interested);
        let behind_first = |v: &View| match v.gain_rate {
            Some(r) if r < floor => usize::MAX,
            _ => v.pieces,
        };
        let mut ranked: Vec<&&View> = interested.iter().collect();
        ranked.sort_by(|a, b| {
            b.down_rate
                .partial_cmp(&a.down_rate)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(behind_first(a).cmp(&behind_first(b)))
                .then(a.key.cmp(&b.key))
        });
        let mut keep: Vec<PeerKey> = ranked.iter().take(slots - 1).map(|v| v.key).collect();
        let stale = opt
            .peer
            .map(|k| !interested.iter().any(|v| v.key == k))
            .unwrap_or(true);
        let due = opt
            .since
            .map(|t| now.saturating_sub(t) >= OPTIMISTIC_EVERY)
            .unwrap_or(true);
        let mut next = opt;
        if due || stale {
            let rest: Vec<&View> = interested
                .iter()
                .copied()
                .filter(|v| !keep.contains(&v.key))
                .collect();
            let rest = behind(&rest);
            let rest: Vec<PeerKey> = rest.iter().map(|v| v.key).collect();
            next.since = Some(now);
            if !rest.is_empty() {
                next.peer = Some(rest[rng.below(rest.len())]);
            }
        }
        if let Some(o) = next.peer {
            if !keep.contains(&o) {
                keep.push(o);
            }
        }
        keep.sort_unstable();
        return (keep, next);
    };
    keep.sort_unstable();
    (keep, opt)
}

/// A quarter of the median gain of pieces per second among `peers` (0 when none is known):
/// a peer gaining slower is on a much slower link.
fn slow_floor(peers: &[&View]) -> f64 {
    let mut rates: Vec<f64> = peers.iter().filter_map(|v| v.gain_rate).collect();
    rates.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    rates.get(rates.len() / 2).map(|m| m / 4.0).unwrap_or(0.0)
}

/// The peers furthest behind (fewest pieces) among those that gain pieces at least a
/// quarter as fast as the typical one: a peer on a slower link is behind by nature, and
/// an optimistic slot it takes is one a fast host that fell behind does not get.
fn behind<'a>(peers: &[&'a View]) -> Vec<&'a View> {
    let floor = slow_floor(peers);
    let mut able: Vec<&View> = peers
        .iter()
        .copied()
        .filter(|v| v.gain_rate.map(|r| r >= floor).unwrap_or(true))
        .collect();
    if able.is_empty() {
        able = peers.to_vec();
    }
    let fewest = able.iter().map(|v| v.pieces).min();
    able.into_iter()
        .filter(|v| Some(v.pieces) == fewest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn view(key: PeerKey, rate: f64) -> View {
        View {
            key,
            interested: true,
            down_rate: rate,
            unchoked_at: None,
            choked_since: secs(0),
            pieces: 0,
            gain_rate: None,
        }
    }

    #[test]
    fn everyone_fits() {
        let mut rng = Rng::new(1);
        let mut vs = vec![view(1, 0.0), view(2, 0.0), view(3, 0.0)];
        vs[2].interested = false;
        let (keep, _) = decide(
            &vs,
            Mode::Download,
            4,
            secs(100),
            Optimistic::default(),
            &mut rng,
        );
        assert_eq!(keep, vec![1, 2], "the uninterested peer stays choked");
    }

    #[test]
    fn tit_for_tat_ranks_by_what_peers_send_us() {
        let mut rng = Rng::new(1);
        let vs: Vec<View> = (1..=6).map(|k| view(k, k as f64 * 100.0)).collect();
        let (keep, opt) = decide(
            &vs,
            Mode::Download,
            3,
            secs(100),
            Optimistic::default(),
            &mut rng,
        );
        assert!(
            keep.contains(&6) && keep.contains(&5),
            "the two fastest senders keep slots: {keep:?}"
        );
        assert_eq!(keep.len(), 3);
        let o = opt.peer.unwrap();
        assert!(
            o <= 4 && keep.contains(&o),
            "one optimistic unchoke among the others"
        );
        assert_eq!(opt.since, Some(secs(100)));
    }

    #[test]
    fn optimistic_unchoke_rotates_every_30s() {
        let mut rng = Rng::new(3);
        let vs: Vec<View> = (1..=10)
            .map(|k| view(k, if k == 10 { 1000.0 } else { 0.0 }))
            .collect();
        let (_, first) = decide(
            &vs,
            Mode::Download,
            2,
            secs(0),
            Optimistic::default(),
            &mut rng,
        );
        let (keep, same) = decide(&vs, Mode::Download, 2, secs(29), first, &mut rng);
        assert_eq!(same, first, "kept before 30 s");
        assert!(keep.contains(&first.peer.unwrap()));
        let mut seen = std::collections::HashSet::new();
        let mut o = first;
        for round in 1..=20 {
            let (_, next) = decide(&vs, Mode::Download, 2, secs(30 * round), o, &mut rng);
            assert_eq!(next.since, Some(secs(30 * round)));
            seen.insert(next.peer.unwrap());
            o = next;
        }
        assert!(seen.len() >= 4, "rotation reaches many peers: {seen:?}");
        assert!(
            !seen.contains(&10),
            "the regular slot's peer is never the optimistic one"
        );
    }

    #[test]
    fn a_departed_optimistic_peer_is_replaced_at_once() {
        let mut rng = Rng::new(5);
        let vs: Vec<View> = (1..=5).map(|k| view(k, 0.0)).collect();
        let gone = Optimistic {
            peer: Some(42),
            since: Some(secs(99)),
        };
        let (keep, next) = decide(&vs, Mode::Download, 2, secs(100), gone, &mut rng);
        assert_ne!(next.peer, Some(42));
        assert!(keep.contains(&next.peer.unwrap()));
    }

    #[test]
    fn seeding_round_robin_serves_the_longest_waiter() {
        let mut rng = Rng::new(1);
        // Slots: 2. Peer 1 unchoked 5 s ago (in its turn), peer 2 unchoked 25 s ago (turn
        // over), peer 3 waiting since 0, peer 4 waiting since 10.
        let vs = vec![
            View {
                key: 1,
                interested: true,
                down_rate: 0.0,
                unchoked_at: Some(secs(95)),
                choked_since: secs(0),
                pieces: 0,
                gain_rate: None,
            },
            View {
                key: 2,
                interested: true,
                down_rate: 9e9,
                unchoked_at: Some(secs(75)),
                choked_since: secs(0),
                pieces: 0,
                gain_rate: None,
            },
            View {
                key: 3,
                interested: true,
                down_rate: 0.0,
                unchoked_at: None,
                choked_since: secs(0),
                pieces: 0,
                gain_rate: None,
            },
            View {
                key: 4,
                interested: true,
                down_rate: 0.0,
                unchoked_at: None,
                choked_since: secs(10),
                pieces: 0,
                gain_rate: None,
            },
        ];
        let (keep, _) = decide(
            &vs,
            Mode::Seed,
            2,
            secs(100),
            Optimistic::default(),
            &mut rng,
        );
        assert_eq!(
            keep,
            vec![1, 3],
            "in-turn peer stays, longest waiter next; the fast peer's turn is over"
        );
        // Over many rounds every peer gets a turn.
        let mut state: Vec<View> = (1..=6).map(|k| view(k, 0.0)).collect();
        let mut served = std::collections::HashSet::new();
        for round in 0..12u64 {
            let now = secs(10 * round);
            let (keep, _) = decide(&state, Mode::Seed, 2, now, Optimistic::default(), &mut rng);
            for v in state.iter_mut() {
                let on = keep.contains(&v.key);
                if on && v.unchoked_at.is_none() {
                    v.unchoked_at = Some(now);
                    served.insert(v.key);
                } else if !on && v.unchoked_at.is_some() {
                    v.unchoked_at = None;
                    v.choked_since = now;
                }
            }
        }
        assert_eq!(served.len(), 6, "round robin reaches every downloader");
    }

    #[test]
    fn the_optimistic_slot_goes_to_a_peer_with_the_fewest_pieces() {
        let mut rng = Rng::new(7);
        let mut vs: Vec<View> = (1..=6).map(|k| view(k, k as f64)).collect();
        for v in vs.iter_mut() {
            v.pieces = 10 * v.key as usize; // peer 1 is furthest behind, and sends least
        }
        let (keep, opt) = decide(
            &vs,
            Mode::Download,
            3,
            secs(0),
            Optimistic::default(),
            &mut rng,
        );
        assert_eq!(opt.peer, Some(1));
        assert_eq!(
            keep,
            vec![1, 5, 6],
            "two by rate, the optimistic one furthest behind"
        );
    }

    #[test]
    fn a_seed_serves_the_waiting_peer_with_the_fewest_pieces_first() {
        let mut rng = Rng::new(1);
        let mut vs: Vec<View> = (1..=4).map(|k| view(k, 0.0)).collect();
        vs[0].choked_since = secs(0); // waited longest, but nearly complete
        vs[0].pieces = 90;
        vs[1].choked_since = secs(50);
        vs[1].pieces = 10;
        vs[2].choked_since = secs(20);
        vs[2].pieces = 10;
        vs[3].choked_since = secs(10);
        vs[3].pieces = 40;
        let (keep, _) = decide(
            &vs,
            Mode::Seed,
            2,
            secs(100),
            Optimistic::default(),
            &mut rng,
        );
        assert_eq!(
            keep,
            vec![2, 3],
            "fewest pieces first, the longer waiter among equals"
        );
    }

    #[test]
    fn the_optimistic_slot_skips_a_peer_on_a_much_slower_link() {
        let mut rng = Rng::new(7);
        let mut vs: Vec<View> = (1..=6).map(|k| view(k, k as f64)).collect(); // 5, 6 by rate
        for v in vs.iter_mut() {
            v.pieces = 10 * v.key as usize;
            v.gain_rate = Some(6.0);
        }
        vs[0].gain_rate = Some(0.7); // fewest pieces because its link is ten times slower
        let (_, opt) = decide(
            &vs,
            Mode::Download,
            3,
            secs(0),
            Optimistic::default(),
            &mut rng,
        );
        assert_eq!(opt.peer, Some(2), "the fast peer furthest behind");
        vs[1].gain_rate = None; // not watched long enough: it counts
        vs[1].pieces = 60;
        let (_, opt) = decide(
            &vs,
            Mode::Download,
            3,
            secs(0),
            Optimistic::default(),
            &mut rng,
        );
        assert_eq!(opt.peer, Some(3));
    }

    #[test]
    fn among_equal_senders_the_peers_furthest_behind_get_the_regular_slots() {
        let mut rng = Rng::new(7);
        let mut vs: Vec<View> = (1..=6).map(|k| view(k, 0.0)).collect();
        for v in vs.iter_mut() {
            v.pieces = 100 - 10 * v.key as usize; // peer 6 is furthest behind
            v.gain_rate = Some(6.0);
        }
        vs[5].gain_rate = Some(0.5); // ...on a much slower link: last
        let (keep, opt) = decide(
            &vs,
            Mode::Download,
            3,
            secs(0),
            Optimistic::default(),
            &mut rng,
        );
        assert_eq!(
            opt.peer,
            Some(3),
            "the optimistic slot: furthest behind of the rest"
        );
        assert_eq!(keep, vec![3, 4, 5]);
    }
}
