//! Deterministic simulation tests: the real swarm core on simulated fleets (shoal::sim),
//! a few seeds × scenarios at small sizes. Each checks invariants — every honest host ends
//! complete, no piece is counted before its hash check passed, the cores' internal counts
//! stay consistent, the origin sends a bounded amount, nobody waits forever — and a failure
//! names the seed and the fleetsim command that replays it exactly.

use shoal::sim::{Outcome, Scenario, Sim};
use std::time::Duration;

const MBIT100: u64 = 12_500_000;

fn base(hosts: usize, size: u64, seed: u64) -> Scenario {
    let mut sc = Scenario::new(hosts, size, MBIT100);
    sc.seed = seed;
    sc.check_every = 50;
    sc
}

fn replay(sc: &Scenario) -> String {
    format!(
        "cargo run --release --example fleetsim -- --hosts {} --size {} --piece-length {} --seed {}{}{}{}{}{} --check-every 50",
        sc.hosts,
        sc.size,
        sc.piece_length,
        sc.seed,
        if sc.super_seed { " --super-seed" } else { "" },
        if sc.web_seed { " --web-seed" } else { "" },
        if sc.churn > 0.0 { format!(" --churn {}", sc.churn) } else { String::new() },
        if sc.hostile > 0.0 { format!(" --hostile {}", sc.hostile) } else { String::new() },
        sc.origin_crash.map(|(f, d)| format!(" --origin-crash {f}:{}", d.as_secs())).unwrap_or_default(),
    )
}

/// Runs a scenario and checks the invariants every scenario must keep.
fn run(sc: Scenario) -> Outcome {
    let again = replay(&sc);
    let o = Sim::new(sc).run();
    let ctx = format!("seed {} (replay: {again})\n{:?}", o.seed, o.violations);
    assert!(o.violations.is_empty(), "invariants broken, {ctx}");
    assert_eq!(o.complete, o.honest, "honest hosts not complete, {ctx}");
    assert!(o.last_secs.is_some(), "{ctx}");
    for h in &o.per_host[1..] {
        if !h.hostile {
            assert!(h.exit_secs.is_some(), "host {} never exited (lingering forever?), {ctx}", h.host);
        }
    }
    o
}

#[test]
fn honest_fleets_complete_with_a_bounded_origin() {
    for seed in 1..=3 {
        let mut sc = base(12, 64 << 20, seed);
        sc.super_seed = true;
        let o = run(sc);
        let origin = o.origin_uploaded as f64 / o.size as f64;
        let last = o.last_secs.unwrap() / o.f_over_b_secs;
        assert!(origin < 1.5, "seed {seed}: a super-seeding origin sent {origin:.2} x F");
        assert!(last < 3.0, "seed {seed}: last host at {last:.2} x F/B");
        assert!(o.per_host[1..].iter().filter(|h| h.uploaded > 0).count() >= 6, "seed {seed}: hosts share the load");
    }
}

#[test]
fn the_same_seed_gives_the_same_run() {
    let one = |seed| {
        let mut sc = base(6, 8 << 20, seed);
        sc.churn = 0.34;
        let mut o = Sim::new(sc).run();
        o.wall_secs = 0.0;
        serde_json::to_string(&o).unwrap()
    };
    assert_eq!(one(11), one(11));
    assert_ne!(one(11), one(12));
}

#[test]
fn churned_hosts_resume_and_complete() {
    for seed in [1, 2] {
        let mut sc = base(12, 64 << 20, seed);
        sc.churn = 0.3;
        let o = run(sc);
        assert_eq!(o.per_host.iter().filter(|h| h.restarted).count(), 4, "seed {seed}");
    }
}

#[test]
fn an_origin_crash_delays_but_does_not_stop_the_fleet() {
    for seed in [1, 2] {
        let mut sc = base(12, 64 << 20, seed);
        sc.super_seed = true;
        sc.origin_crash = Some((0.3, Duration::from_secs(10)));
        let o = run(sc);
        assert!(o.last_secs.unwrap() <= 3.0 * o.f_over_b_secs + 10.0, "seed {seed}: {:?}", o.last_secs);
    }
}

#[test]
fn hostile_hosts_are_banned_and_honest_copies_verified() {
    for seed in [1, 2, 3] {
        let mut sc = base(12, 64 << 20, seed);
        sc.hostile = 0.17;
        let o = run(sc);
        assert_eq!(o.hostile, 2);
        assert_eq!(o.banned, o.hostile, "seed {seed}: every hostile host banned by the honest hosts that got blocks from it");
    }
}

#[test]
fn slow_hosts_do_not_hold_back_fast_ones() {
    let mut sc = base(12, 64 << 20, 5);
    sc.rates = vec![(0.8, MBIT100), (0.2, MBIT100 / 10)];
    let o = run(sc);
    let fast = o.fast_last_secs.unwrap();
    assert!(fast < o.last_secs.unwrap(), "the slow hosts finish last");
    assert!(fast / o.f_over_b_secs < 3.0, "fast hosts at {:.2} x F/B", fast / o.f_over_b_secs);
}

#[test]
fn a_web_seed_as_the_only_origin_sends_each_byte_about_once() {
    for seed in 1..=3 {
        let mut sc = base(16, 64 << 20, seed);
        sc.super_seed = false;
        sc.web_seed = true;
        let o = run(sc);
        let origin = o.origin_uploaded as f64 / o.size as f64;
        let last = o.last_secs.unwrap() / o.f_over_b_secs;
        assert!((1.0..1.3).contains(&origin), "seed {seed}: the web seed sent {origin:.2} x F");
        assert!(last < 2.0, "seed {seed}: last host at {last:.2} x F/B");
        // Hosts fed each other: most of the bytes did not come from the server.
        let from_peers: u64 = o.per_host[1..].iter().map(|h| h.uploaded).sum();
        assert!(from_peers > 10 * o.size, "seed {seed}: hosts uploaded {from_peers}");
    }
}

#[test]
fn web_seed_fetchers_churn_and_the_fleet_still_completes() {
    let mut sc = base(12, 32 << 20, 4);
    sc.super_seed = false;
    sc.web_seed = true;
    sc.churn = 0.34;
    run(sc);
}
