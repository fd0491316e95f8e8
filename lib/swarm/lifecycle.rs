//! What a session does once its own copy is complete: one setting instead of three.
//!
//! - [`Lifecycle::Exit`]: stop at once (`bfetch --no-linger`);
//! - [`Lifecycle::SeedFor`]: seed for a while, then stop (`bfetch --no-linger --seed-time T`);
//! - [`Lifecycle::Linger`]: seed while the swarm still needs us, optionally capped
//!   (`bfetch`, the default; `--seed-time` caps it);
//! - [`Lifecycle::Forever`]: seed until shut down (`bseed`, `btrack --seed`).
//!
//! Lingering ends when any of these holds (see [`linger_done`]):
//! - the cap is reached;
//! - the tracker reports nobody downloading (after at least [`LINGER_MIN`]);
//! - the tracker gives no counts (or there is none) and every connected peer has been a
//!   seed for [`ALL_SEEDS_QUIET`];
//! - every connected peer has been a seed for [`IDLE`] (a dead peer can linger in the
//!   tracker's list until it expires).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Exit,
    SeedFor(Duration),
    Linger { cap: Option<Duration> },
    Forever,
}

/// Shortest linger when the tracker already says the swarm is done.
pub const LINGER_MIN: Duration = Duration::from_secs(2);
/// Only seeds connected and no tracker counts: done after this long.
pub const ALL_SEEDS_QUIET: Duration = Duration::from_secs(1);
/// Only seeds connected, whatever the tracker says: done after this long.
pub const IDLE: Duration = Duration::from_secs(60);

/// What the linger rule looks at, all measured at one instant.
#[derive(Debug, Clone, Copy)]
pub struct LingerView {
    /// Time since our copy was complete.
    pub seeded: Duration,
    /// Peers the tracker last reported downloading (`None`: no tracker, or no counts).
    pub swarm_incomplete: Option<u32>,
    /// How long every connected peer has been a seed (zero if one is not).
    pub all_seeds_for: Duration,
}

impl Lifecycle {
    /// After completion, does the session still accept and dial peers?
    pub fn keeps_seeding(&self) -> bool {
        !matches!(self, Lifecycle::Exit)
    }

    /// Is a complete session done at this point?
    pub fn done(&self, v: &LingerView) -> bool {
        match *self {
            Lifecycle::Exit => true,
            Lifecycle::SeedFor(t) => v.seeded >= t,
            Lifecycle::Linger { cap } => linger_done(cap, v),
            Lifecycle::Forever => false,
        }
    }
}

pub fn linger_done(cap: Option<Duration>, v: &LingerView) -> bool {
    let capped = cap.map(|c| v.seeded >= c).unwrap_or(false);
    let swarm_done = v.swarm_incomplete == Some(0) && v.seeded >= LINGER_MIN;
    let no_counts = v.swarm_incomplete.is_none() && v.all_seeds_for >= ALL_SEEDS_QUIET;
    let idle = v.all_seeds_for >= IDLE;
    capped || swarm_done || no_counts || idle
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seeded: u64, incomplete: Option<u32>, all_seeds_for: u64) -> LingerView {
        LingerView {
            seeded: Duration::from_secs(seeded),
            swarm_incomplete: incomplete,
            all_seeds_for: Duration::from_secs(all_seeds_for),
        }
    }

    #[test]
    fn each_exit_condition() {
        let l = Lifecycle::Linger {
            cap: Some(Duration::from_secs(100)),
        };
        assert!(!l.done(&v(10, Some(3), 0)), "others still downloading");
        assert!(l.done(&v(100, Some(3), 0)), "cap reached");
        assert!(
            !l.done(&v(1, Some(0), 0)),
            "tracker says done, but not before LINGER_MIN"
        );
        assert!(l.done(&v(2, Some(0), 0)), "tracker says done");
        assert!(
            !l.done(&v(30, None, 0)),
            "no counts, a leecher is connected"
        );
        assert!(l.done(&v(30, None, 1)), "no counts, only seeds connected");
        assert!(
            !l.done(&v(30, Some(2), 59)),
            "counts say others download; seeds only for a while"
        );
        assert!(
            l.done(&v(90, Some(2), 60)),
            "only seeds for a minute: the tracker's list is stale"
        );
        let uncapped = Lifecycle::Linger { cap: None };
        assert!(!uncapped.done(&v(100_000, Some(3), 0)));
    }

    #[test]
    fn the_other_lifecycles() {
        assert!(Lifecycle::Exit.done(&v(0, Some(5), 0)));
        assert!(!Lifecycle::Exit.keeps_seeding());
        let s = Lifecycle::SeedFor(Duration::from_secs(5));
        assert!(!s.done(&v(4, Some(0), 100)));
        assert!(s.done(&v(5, Some(9), 0)));
        assert!(!Lifecycle::Forever.done(&v(1_000_000, Some(0), 1_000_000)));
    }
}
