//! Super-seeding (BEP 16 style): an origin that reveals its pieces one peer at a time, so
//! each byte leaves the origin about once and the peers spread it among themselves.
//!
//! A peer is shown [`DEPTH`] pieces it lacks; each next one only after the peer announces
//! one of them (to us: a HAVE, which it sends once it has verified it). Two, not one: with
//! one, the origin's link to the peer idled while the HAVE and the next reveal and request
//! crossed a loaded network (queued behind data on the way: up to ~50 ms each on the
//! testbed), and the origin, which every byte leaves once, is the fleet's bottleneck.
//!
//! The piece chosen is one not currently revealed to anybody else (a piece shown to two
//! peers would leave the origin twice), and among those the one the fewest connected peers
//! have (the picker's availability counts), ties broken from a random starting point.
//!
//! Once every piece has a copy among the connected peers or is being shown to one, the
//! origin shows nothing more: the peers trade the rest among themselves, and each byte
//! leaves the origin about once. A peer that makes no progress for [`STALLED`] (say the
//! only other copy of what it lacks sits with a peer that sends corrupt data, or left) is
//! shown the least available piece it lacks anyway ([`Reveal::Any`]).
//!
//! A peer that gains pieces at under [`SLOW_GAIN`] of the typical peer's rate (a slower
//! link) is shown no fresh piece: its copy would reach the others at its link's pace, and
//! the fast hosts would wait on it. It gets its pieces from the swarm (or, stalled, from
//! [`Reveal::Any`]).

use crate::picker::Picker;
use std::collections::HashSet;
use std::time::Duration;

/// A peer without progress this long is shown a piece even if others have it.
pub const STALLED: Duration = Duration::from_secs(3);
/// Pieces revealed to a peer at once: the next is shown while the last is still coming, so
/// the origin's link to it does not wait on a HAVE and a reveal crossing a loaded network.
pub const DEPTH: usize = 2;

/// Below this fraction of the typical peer's gain of pieces per second, a peer is slow.
pub const SLOW_GAIN: f64 = 0.25;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Only a piece no connected peer has and nobody is being shown.
    Fresh,
    /// The least available piece the peer lacks.
    Any,
}

/// The piece to reveal to a peer that has `peer_has`; `taken` holds the pieces revealed to
/// other peers and not yet seen back; `start` is where the scan begins (random).
pub fn pick(picker: &Picker, peer_has: &[bool], taken: &HashSet<u32>, start: usize, mode: Reveal) -> Option<u32> {
    let n = picker.num_pieces();
    let mut best: Option<(bool, u32, usize)> = None;
    for j in 0..n {
        let i = (start + j) % n;
        if peer_has[i] || !picker.have(i) {
            continue;
        }
        let cand = (taken.contains(&(i as u32)), picker.availability(i), i);
        if best.map(|b| (cand.0, cand.1) < (b.0, b.1)).unwrap_or(true) {
            best = Some(cand);
            if !cand.0 && cand.1 == 0 {
                break; // nobody has it and nobody was shown it: cannot do better
            }
        }
    }
    best.filter(|b| mode == Reveal::Any || (!b.0 && b.1 == 0)).map(|b| b.2 as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveals_a_fresh_piece_then_nothing_then_the_rarest_when_stalled() {
        let mut pk = Picker::new(16384, 4 * 16384, &[true; 4], 1);
        pk.add_availability(&[true, false, false, true]);
        pk.add_availability(&[true, true, false, false]);
        // Pieces 2 (nobody) < 1 = 3 (one peer each) < 0 (two peers).
        let none = HashSet::new();
        assert_eq!(pick(&pk, &[false; 4], &none, 0, Reveal::Fresh), Some(2));
        let taken: HashSet<u32> = [2].into_iter().collect();
        assert_eq!(pick(&pk, &[false; 4], &taken, 0, Reveal::Fresh), None, "every piece is out once: nothing fresh");
        let got = pick(&pk, &[false; 4], &taken, 0, Reveal::Any);
        assert!(got == Some(1) || got == Some(3), "2 is shown to another peer, 1 and 3 are rarest: {got:?}");
        assert_eq!(pick(&pk, &[false, true, true, true], &taken, 0, Reveal::Any), Some(0), "the only piece it lacks");
        assert_eq!(pick(&pk, &[true; 4], &taken, 0, Reveal::Any), None, "a seed is shown nothing");
    }

    #[test]
    fn only_pieces_we_have() {
        let pk = Picker::new(16384, 2 * 16384, &[false, true], 1);
        assert_eq!(pick(&pk, &[false, false], &HashSet::new(), 0, Reveal::Fresh), Some(1));
    }
}
