//! Who we talk to: the addresses we know with their redial backoff, dials in progress,
//! strikes and bans, and our own addresses.
//!
//! Invariants: a banned peer id or address is never dialled or admitted again in this
//! session; an address is dialled at most once at a time; after a failed or closed
//! outgoing connection the address waits 4 s, 8 s, … up to 128 s before the next dial.

use crate::picker::PeerKey;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

/// Strikes (pieces that failed their hash check with data from a peer alone) before a ban.
pub const MAX_STRIKES: u32 = 2;
const MAX_BACKOFF_STEP: u32 = 6;

#[derive(Debug, Clone, Copy)]
struct Known {
    fails: u32,
    next: Duration,
}

#[derive(Debug, Default)]
pub struct Admission {
    /// Sorted, so the candidates come out in the same order for the same inputs.
    known: BTreeMap<SocketAddr, Known>,
    dialing: HashMap<PeerKey, SocketAddr>,
    banned_ids: HashSet<[u8; 20]>,
    banned_addrs: HashSet<SocketAddr>,
    strikes: HashMap<[u8; 20], u32>,
    own: HashSet<SocketAddr>,
}

impl Admission {
    /// An address from the tracker or the command line, dialable now (if not known yet).
    pub fn learn(&mut self, addr: SocketAddr, now: Duration) {
        if addr.port() == 0 || self.own.contains(&addr) {
            return;
        }
        self.known.entry(addr).or_insert(Known {
            fails: 0,
            next: now,
        });
    }

    pub fn known_count(&self) -> usize {
        self.known.len()
    }

    /// The address failed or closed: wait longer before the next dial.
    pub fn backoff(&mut self, addr: SocketAddr, now: Duration) {
        let e = self.known.entry(addr).or_insert(Known {
            fails: 0,
            next: now,
        });
        e.fails = (e.fails + 1).min(MAX_BACKOFF_STEP);
        e.next = now + Duration::from_secs(2u64 << e.fails);
    }

    pub fn dialing(&mut self, key: PeerKey, addr: SocketAddr) {
        self.dialing.insert(key, addr);
    }

    pub fn dials_in_progress(&self) -> usize {
        self.dialing.len()
    }

    /// A dial ended (connected or failed); answers the address if `key` was one of ours.
    pub fn dial_ended(&mut self, key: PeerKey) -> Option<SocketAddr> {
        self.dialing.remove(&key)
    }

    /// A dial reached a peer: its backoff starts over.
    pub fn reached(&mut self, addr: SocketAddr) {
        if let Some(k) = self.known.get_mut(&addr) {
            k.fails = 0;
        }
    }

    pub fn own_address(&mut self, addr: SocketAddr) {
        self.own.insert(addr);
        self.known.remove(&addr);
    }

    pub fn ban(&mut self, id: [u8; 20], listen: Option<SocketAddr>) {
        self.banned_ids.insert(id);
        if let Some(a) = listen {
            self.ban_addr(a);
        }
    }

    pub fn ban_addr(&mut self, addr: SocketAddr) {
        self.banned_addrs.insert(addr);
    }

    pub fn is_banned(&self, id: &[u8; 20]) -> bool {
        self.banned_ids.contains(id)
    }

    pub fn is_banned_addr(&self, addr: &SocketAddr) -> bool {
        self.banned_addrs.contains(addr)
    }

    pub fn banned_ids(&self) -> impl Iterator<Item = &[u8; 20]> {
        self.banned_ids.iter()
    }

    /// A piece that failed its hash check came from this peer alone. Answers true when the
    /// strike earns a ban (the caller bans and closes).
    pub fn strike(&mut self, id: [u8; 20]) -> bool {
        let s = self.strikes.entry(id).or_insert(0);
        *s += 1;
        *s >= MAX_STRIKES
    }

    /// Addresses to dial now, in a stable order: known, due, not connected (`connected`
    /// holds every address of a connected peer), not being dialled, not banned, not ours.
    pub fn candidates(&self, now: Duration, connected: &HashSet<SocketAddr>) -> Vec<SocketAddr> {
        let dialing: HashSet<&SocketAddr> = self.dialing.values().collect();
        self.known
            .iter()
            .filter(|(a, k)| {
                k.next <= now
                    && !connected.contains(a)
                    && !dialing.contains(a)
                    && !self.banned_addrs.contains(a)
                    && !self.own.contains(a)
            })
            .map(|(a, _)| *a)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], p))
    }

    fn s(x: u64) -> Duration {
        Duration::from_secs(x)
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut ad = Admission::default();
        let none = HashSet::new();
        ad.learn(a(1), s(0));
        assert_eq!(ad.candidates(s(0), &none), vec![a(1)]);
        ad.backoff(a(1), s(0));
        assert!(ad.candidates(s(3), &none).is_empty(), "first wait is 4 s");
        assert_eq!(ad.candidates(s(4), &none), vec![a(1)]);
        ad.backoff(a(1), s(4));
        assert!(ad.candidates(s(11), &none).is_empty(), "then 8 s");
        for _ in 0..10 {
            ad.backoff(a(1), s(100));
        }
        assert!(ad.candidates(s(227), &none).is_empty());
        assert_eq!(ad.candidates(s(228), &none), vec![a(1)], "capped at 128 s");
        ad.reached(a(1));
        ad.backoff(a(1), s(300));
        assert_eq!(
            ad.candidates(s(304), &none),
            vec![a(1)],
            "reset after a connection"
        );
    }

    #[test]
    fn dialing_connected_banned_and_own_addresses_are_not_candidates() {
        let mut ad = Admission::default();
        for p in 1..=5 {
            ad.learn(a(p), s(0));
        }
        ad.dialing(7, a(1));
        ad.ban(*b"bad-peer-id-00000000", Some(a(2)));
        ad.own_address(a(3));
        ad.learn(a(3), s(0));
        let connected: HashSet<SocketAddr> = [a(4)].into_iter().collect();
        assert_eq!(ad.candidates(s(0), &connected), vec![a(5)]);
        assert_eq!(ad.dial_ended(7), Some(a(1)));
        assert_eq!(ad.dial_ended(7), None);
        assert!(ad.is_banned(b"bad-peer-id-00000000"));
    }

    #[test]
    fn two_strikes_ban() {
        let mut ad = Admission::default();
        let id = *b"-XX0000-000000000001";
        assert!(!ad.strike(id));
        assert!(ad.strike(id));
    }
}
