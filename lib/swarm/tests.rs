//! Unit tests of the swarm core: deterministic, no sockets, no threads, no sleeps. Time is
//! a number passed in; payloads are a byte that says whether a block is good (1) or not (0).

use super::*;
use crate::peer::wire::BLOCK;

type C = Core<u8>;
type Out = Output<u8>;

const PIECE: u64 = 4 * BLOCK as u64;
const US: [u8; 20] = *b"-SH0100-ourselves000";

fn s(x: u64) -> Duration {
    Duration::from_secs(x)
}

fn cfg(pieces: u64, lifecycle: Lifecycle) -> Config {
    Config {
        peer_id: US,
        max_peers: 50,
        upload_slots: 2,
        super_seed: false,
        lifecycle,
        timeout: None,
        stall_timeout: None,
        peers: Vec::new(),
        seed: 1,
        block: BLOCK,
        piece_length: PIECE,
        total_length: pieces * PIECE,
        web_seeds: Vec::new(),
    }
}

fn addr(n: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n as u8], 6881))
}

fn id(n: u64) -> [u8; 20] {
    let mut id = *b"-XX0000-000000000000";
    id[19] = b'a' + n as u8;
    id
}

fn outs(c: &mut C) -> Vec<Out> {
    c.outputs().collect()
}

/// Peer `n` connects (incoming, key = n) and says it has `has`.
fn join(c: &mut C, n: u64, has: Option<Vec<bool>>, now: Duration) -> Vec<Out> {
    let pieces = c.picker().num_pieces();
    c.handle(
        now,
        Input::Connected {
            key: n,
            addr: addr(n),
            peer_id: id(n),
            outgoing: false,
            sent_have: vec![false; pieces],
        },
    );
    match has {
        Some(h) => c.handle(
            now,
            Input::Message {
                key: n,
                msg: Message::Bitfield(wire::bitfield_bytes(&h)),
            },
        ),
        None => c.handle(
            now,
            Input::Message {
                key: n,
                msg: Message::HaveNone,
            },
        ),
    }
    outs(c)
}

/// Peer `key` sends us `m`.
fn msg(c: &mut C, key: PeerKey, m: Message, now: Duration) {
    c.handle(now, Input::Message { key, msg: m });
}

fn requests(o: &[Out], key: PeerKey) -> Vec<BlockRef> {
    o.iter()
        .filter_map(|o| match o {
            Output::Request { key: k, blocks } if *k == key => Some(blocks.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn sent(o: &[Out], key: PeerKey) -> Vec<&Message> {
    o.iter()
        .filter_map(|o| match o {
            Output::Send { key: k, msg } | Output::Notify { key: k, msg } if *k == key => Some(msg),
            _ => None,
        })
        .collect()
}

/// The pieces announced (HAVE) to `key`.
fn haves(o: &[Out], key: PeerKey) -> Vec<u32> {
    sent(o, key)
        .into_iter()
        .filter_map(|m| {
            if let Message::Have(i) = m {
                Some(*i)
            } else {
                None
            }
        })
        .collect()
}

fn closes(o: &[Out]) -> Vec<(PeerKey, CloseReason)> {
    o.iter()
        .filter_map(|o| match o {
            Output::Close { key, reason } => Some((*key, reason.clone())),
            _ => None,
        })
        .collect()
}

fn chokes(o: &[Out]) -> Vec<(PeerKey, bool)> {
    o.iter()
        .filter_map(|o| match o {
            Output::SetChoke { key, choke } => Some((*key, *choke)),
            _ => None,
        })
        .collect()
}

/// Delivers blocks from `key` and carries out writes and hashes; `good` decides each
/// piece's hash result. Answers every output on the way.
fn deliver(c: &mut C, key: PeerKey, blocks: &[BlockRef], good: bool, now: Duration) -> Vec<Out> {
    c.handle(
        now,
        Input::Blocks {
            key,
            blocks: blocks.iter().map(|b| (*b, good as u8)).collect(),
        },
    );
    carry_disk(c, good, now)
}

/// Carries out the core's writes, hashes (`good` decides) and finalizing; answers every
/// output on the way.
fn carry_disk(c: &mut C, good: bool, now: Duration) -> Vec<Out> {
    let mut all = Vec::new();
    let mut pending: VecDeque<Out> = outs(c).into();
    while let Some(o) = pending.pop_front() {
        match &o {
            Output::Write(bs) => {
                let refs = bs.iter().map(|b| b.0).collect();
                c.handle(now, Input::Written(refs));
                pending.extend(outs(c));
            }
            Output::Hash(i) => {
                c.handle(
                    now,
                    Input::Hashed {
                        index: *i,
                        ok: good,
                    },
                );
                pending.extend(outs(c));
            }
            Output::Finalize => {
                c.handle(now, Input::Finalized);
                pending.extend(outs(c));
            }
            _ => {}
        }
        all.push(o);
    }
    all
}

use std::collections::VecDeque;

#[test]
fn a_download_from_request_to_verified_and_done() {
    let mut c = C::new(cfg(2, Lifecycle::Exit), vec![false; 2], s(0));
    let o = join(&mut c, 1, Some(vec![true, true]), s(0));
    assert!(matches!(sent(&o, 1)[..], [Message::Interested]), "{o:?}");
    assert!(requests(&o, 1).is_empty(), "nothing asked while choked");
    msg(&mut c, 1, Message::Unchoke, s(1));
    let o = outs(&mut c);
    let asked = requests(&o, 1);
    assert_eq!(asked.len(), 8, "every block of both pieces");
    let o = deliver(&mut c, 1, &asked, true, s(2));
    let verified: Vec<u32> = o
        .iter()
        .filter_map(|o| {
            if let Output::Verified(i) = o {
                Some(*i)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(verified.len(), 2);
    assert!(o.iter().any(|o| matches!(o, Output::Finalize)));
    assert!(o
        .iter()
        .any(|o| matches!(o, Output::Announce(Announce::Completed))));
    assert!(
        sent(&o, 1)
            .iter()
            .filter(|m| matches!(m, Message::Have(_)))
            .count()
            == 2,
        "HAVE after each verified piece"
    );
    assert!(sent(&o, 1).contains(&&Message::NotInterested));
    assert!(c.complete());
    assert_eq!(c.end(), None, "ends at a tick");
    c.handle(s(3), Input::Tick);
    assert_eq!(c.end(), Some(&End::Done));
    assert_eq!(c.downloaded(), 2 * PIECE);
}

#[test]
fn unrequested_and_duplicate_blocks_are_discarded() {
    let mut c = C::new(cfg(1, Lifecycle::Exit), vec![false], s(0));
    join(&mut c, 1, Some(vec![true]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    let stray = BlockRef {
        index: 0,
        begin: 1,
        length: 5,
    };
    c.handle(
        s(1),
        Input::Blocks {
            key: 1,
            blocks: vec![(asked[0], 1), (asked[0], 1), (stray, 1)],
        },
    );
    let o = outs(&mut c);
    let written: usize = o
        .iter()
        .map(|o| if let Output::Write(b) = o { b.len() } else { 0 })
        .sum();
    assert_eq!(written, 1);
    let discarded: usize = o
        .iter()
        .map(|o| if let Output::Discard(n) = o { *n } else { 0 })
        .sum();
    assert_eq!(discarded, BLOCK as usize + 5);
}

#[test]
fn a_verified_piece_is_never_counted_before_its_hash() {
    let mut c = C::new(cfg(1, Lifecycle::Exit), vec![false], s(0));
    join(&mut c, 1, Some(vec![true]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    c.handle(
        s(1),
        Input::Blocks {
            key: 1,
            blocks: asked.iter().map(|b| (*b, 1)).collect(),
        },
    );
    c.handle(s(1), Input::Written(asked.clone()));
    let o = outs(&mut c);
    assert!(o.iter().any(|o| matches!(o, Output::Hash(0))));
    assert!(!o
        .iter()
        .any(|o| matches!(o, Output::Verified(_) | Output::SaveResume { .. })));
    assert_eq!(c.have_bytes(), 0);
    assert!(!c.complete());
}

#[test]
fn tit_for_tat_unchokes_who_sends_us_most() {
    let mut c = C::new(cfg(8, Lifecycle::Exit), vec![false; 8], s(0));
    for n in 1..=5 {
        join(&mut c, n, Some(vec![true; 8]), s(0));
        msg(&mut c, n, Message::Interested, s(0));
    }
    outs(&mut c);
    // Peer 4 sends us blocks; the others send nothing.
    msg(&mut c, 4, Message::Unchoke, s(1));
    let asked = requests(&outs(&mut c), 4);
    deliver(&mut c, 4, &asked[..8], true, s(2));
    c.handle(s(2), Input::Tick);
    let o = outs(&mut c);
    let ch = chokes(&o);
    let unchoked: Vec<PeerKey> = (1..=5)
        .filter(|k| !ch.contains(&(*k, true)) && (ch.contains(&(*k, false)) || *k <= 2))
        .collect();
    assert!(
        unchoked.contains(&4),
        "the peer that sends keeps a slot: {ch:?}"
    );
    assert_eq!(unchoked.len(), 2, "two slots: {ch:?}");
}

#[test]
fn seeding_round_robin_gives_every_downloader_a_turn() {
    let mut cf = cfg(4, Lifecycle::Forever);
    cf.upload_slots = 1;
    let mut c = C::new(cf, vec![true; 4], s(0));
    c.handle(s(0), Input::Finalized);
    for n in 1..=3 {
        join(&mut c, n, None, s(0));
        msg(&mut c, n, Message::Interested, s(0));
    }
    outs(&mut c);
    let mut turns = Vec::new();
    let mut on: Option<PeerKey> = Some(1); // the first interested peer took the free slot
    for t in 1..=12 {
        c.handle(s(10 * t), Input::Tick);
        for (k, choke) in chokes(&outs(&mut c)) {
            if !choke {
                on = Some(k);
                turns.push(k);
            } else if on == Some(k) {
                on = None;
            }
        }
    }
    for k in 1..=3 {
        assert!(
            turns.contains(&k) || k == 1,
            "peer {k} never got a turn: {turns:?}"
        );
    }
    assert!(turns.len() >= 3, "slots rotate: {turns:?}");
}

#[test]
fn a_silent_peer_is_snubbed_and_its_requests_go_to_others() {
    let mut c = C::new(cfg(1, Lifecycle::Exit), vec![false], s(0));
    join(&mut c, 1, Some(vec![true]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    assert_eq!(asked.len(), 4);
    join(&mut c, 2, Some(vec![true]), s(0));
    msg(&mut c, 2, Message::Unchoke, s(0));
    outs(&mut c);
    assert_eq!(
        c.inflight(2),
        4,
        "endgame: peer 2 doubles the blocks peer 1 was asked for"
    );
    c.handle(s(5), Input::Tick);
    assert_eq!(c.inflight(1), 4, "not yet snubbed at 5 s");
    c.handle(s(11), Input::Tick);
    let o = outs(&mut c);
    assert_eq!(c.inflight(1), 0, "snubbed after 10 s of silence");
    assert!(o
        .iter()
        .any(|o| matches!(o, Output::Log(m) if m.contains("sent nothing"))));
    // Peer 1 is asked for nothing during its penalty, even when unchoked again.
    msg(&mut c, 1, Message::Unchoke, s(12));
    assert!(requests(&outs(&mut c), 1).is_empty());
    // A block from it ends the penalty.
    deliver(&mut c, 2, &asked[..1], true, s(13));
    c.handle(s(45), Input::Tick);
    let o = outs(&mut c);
    let _ = o;
}

#[test]
fn a_peer_asked_after_a_long_quiet_spell_is_not_snubbed_at_once() {
    let mut c = C::new(cfg(2, Lifecycle::Exit), vec![false; 2], s(0));
    join(&mut c, 1, Some(vec![true, true]), s(0));
    // Choked for a minute: nothing asked, nothing sent.
    msg(&mut c, 1, Message::Unchoke, s(60));
    assert_eq!(requests(&outs(&mut c), 1).len(), 8);
    c.handle(s(61), Input::Tick);
    assert_eq!(
        c.inflight(1),
        8,
        "one second after asking is not ten seconds of silence"
    );
    c.handle(s(71), Input::Tick);
    assert_eq!(c.inflight(1), 0, "ten seconds after asking is");
}

#[test]
fn two_corrupt_pieces_from_one_peer_ban_it() {
    let mut c = C::new(cfg(2, Lifecycle::Exit), vec![false; 2], s(0));
    join(&mut c, 1, Some(vec![true, true]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    let piece0: Vec<BlockRef> = asked
        .iter()
        .copied()
        .filter(|b| b.index == asked[0].index)
        .collect();
    let o = deliver(&mut c, 1, &piece0, false, s(1));
    assert!(closes(&o).is_empty(), "one strike is not a ban");
    assert_eq!(c.hash_failures(), 1);
    // The failed piece is asked again of the same single peer; it fails again.
    c.handle(s(2), Input::Tick);
    let again: Vec<BlockRef> = requests(&outs(&mut c), 1)
        .into_iter()
        .filter(|b| b.index == piece0[0].index)
        .collect();
    let mut again = again;
    if again.is_empty() {
        // Still in flight from the first pick: the failed piece's blocks were re-requested
        // by the picker at once.
        again = piece0.clone();
    }
    let o = deliver(&mut c, 1, &again, false, s(3));
    assert_eq!(closes(&o), vec![(1, CloseReason::CorruptData)], "{o:?}");
    assert!(c.is_banned(&id(1)));
    c.handle(
        s(4),
        Input::Closed {
            key: 1,
            addr: addr(1),
            reason: CloseReason::Shutdown,
        },
    );
    // The same peer id is refused when it comes back.
    c.handle(
        s(5),
        Input::Connected {
            key: 9,
            addr: addr(9),
            peer_id: id(1),
            outgoing: false,
            sent_have: vec![false; 2],
        },
    );
    assert_eq!(closes(&outs(&mut c)), vec![(9, CloseReason::Banned)]);
}

#[test]
fn a_have_past_the_last_piece_drops_and_bans_the_peer() {
    let mut c = C::new(cfg(2, Lifecycle::Exit), vec![false; 2], s(0));
    join(&mut c, 1, None, s(0));
    msg(&mut c, 1, Message::Have(7), s(0));
    let cl = closes(&outs(&mut c));
    assert!(matches!(&cl[..], [(1, CloseReason::Protocol(_))]), "{cl:?}");
    assert!(c.is_banned(&id(1)));
}

#[test]
fn a_second_connection_to_the_same_peer_is_closed() {
    let mut c = C::new(cfg(2, Lifecycle::Exit), vec![false; 2], s(0));
    join(&mut c, 1, None, s(0));
    // The same peer id dials us: of two connections, keep the one opened by the lower id.
    c.handle(
        s(1),
        Input::Connected {
            key: 2,
            addr: addr(2),
            peer_id: id(1),
            outgoing: false,
            sent_have: vec![false; 2],
        },
    );
    let cl = closes(&outs(&mut c));
    assert_eq!(cl.len(), 1);
    assert_eq!(cl[0].1, CloseReason::Duplicate);
}

#[test]
fn super_seeding_reveals_a_few_pieces_per_peer_until_seen_back() {
    let mut cf = cfg(8, Lifecycle::Forever);
    cf.super_seed = true;
    let mut c = C::new(cf, vec![true; 8], s(0));
    c.handle(s(0), Input::Finalized);
    outs(&mut c);
    let o1 = join(&mut c, 1, None, s(0));
    let o2 = join(&mut c, 2, None, s(0));
    let h1: Vec<u32> = haves(&o1, 1);
    let h2: Vec<u32> = haves(&o2, 2);
    assert_eq!(h1.len(), superseed::DEPTH, "a few pieces at a time");
    assert_eq!(h2.len(), superseed::DEPTH);
    assert!(h1.iter().all(|i| !h2.contains(i)), "different peers are shown different pieces");
    // Peer 2 announces it has one of peer 1's pieces: peer 1 gets nothing new until it shows
    // one of its own.
    msg(&mut c, 2, Message::Have(h1[0]), s(1));
    assert!(sent(&outs(&mut c), 1).is_empty());
    msg(&mut c, 1, Message::Have(h1[1]), s(2));
    let next: Vec<u32> = haves(&outs(&mut c), 1);
    assert_eq!(next.len(), 1, "one more for the one seen back");
    assert!(
        !h1.contains(&next[0]) && !h2.contains(&next[0]),
        "a piece nobody has and nobody is shown: {next:?}"
    );
}

#[test]
fn endgame_asks_a_second_peer_and_cancels_the_loser() {
    let mut c = C::new(cfg(1, Lifecycle::Exit), vec![false], s(0));
    join(&mut c, 1, Some(vec![true]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let a = requests(&outs(&mut c), 1);
    join(&mut c, 2, Some(vec![true]), s(0));
    msg(&mut c, 2, Message::Unchoke, s(0));
    let b = requests(&outs(&mut c), 2);
    assert_eq!(a, b, "the last blocks are asked of both");
    let o = deliver(&mut c, 1, &a[..1], true, s(1));
    assert!(
        sent(&o, 2)
            .iter()
            .any(|m| matches!(m, Message::Cancel { .. })),
        "the slower peer's copy is cancelled: {o:?}"
    );
    let o = deliver(&mut c, 2, &a[..1], true, s(1));
    assert!(
        o.iter().any(|o| matches!(o, Output::Discard(_))),
        "a late duplicate is dropped"
    );
}

#[test]
fn lingering_ends_when_only_seeds_remain_and_no_tracker_counts() {
    let mut c = C::new(cfg(2, Lifecycle::Linger { cap: None }), vec![true; 2], s(0));
    c.handle(s(0), Input::Finalized);
    join(&mut c, 1, Some(vec![false, true]), s(0));
    c.handle(s(1), Input::Tick);
    c.handle(s(5), Input::Tick);
    assert_eq!(c.end(), None, "a downloader is connected");
    msg(&mut c, 1, Message::Have(0), s(5));
    c.handle(s(6), Input::Tick);
    assert_eq!(c.end(), None);
    c.handle(s(7), Input::Tick);
    assert_eq!(c.end(), Some(&End::Done), "within 2 s of only seeds");
}

#[test]
fn lingering_follows_the_tracker_counts_and_the_cap() {
    let mut c = C::new(cfg(2, Lifecycle::Linger { cap: None }), vec![true; 2], s(0));
    c.handle(s(0), Input::Finalized);
    c.handle(s(0), Input::SwarmIncomplete(3));
    for t in 1..=30 {
        c.handle(s(t), Input::Tick);
    }
    assert_eq!(
        c.end(),
        None,
        "no peer connected, but the tracker counts 3 downloading"
    );
    c.handle(s(31), Input::SwarmIncomplete(0));
    c.handle(s(31), Input::Tick);
    assert_eq!(c.end(), Some(&End::Done));

    let mut c = C::new(
        cfg(2, Lifecycle::Linger { cap: Some(s(10)) }),
        vec![true; 2],
        s(0),
    );
    c.handle(s(0), Input::Finalized);
    c.handle(s(0), Input::SwarmIncomplete(3));
    c.handle(s(9), Input::Tick);
    assert_eq!(c.end(), None);
    c.handle(s(10), Input::Tick);
    assert_eq!(c.end(), Some(&End::Done), "capped");
}

#[test]
fn nothing_ends_before_the_content_is_finalized() {
    let mut c = C::new(cfg(1, Lifecycle::Exit), vec![true], s(0));
    assert!(matches!(outs(&mut c)[..], [Output::Finalize]));
    c.handle(s(5), Input::Tick);
    assert_eq!(c.end(), None);
    c.handle(s(5), Input::Finalized);
    c.handle(s(6), Input::Tick);
    assert_eq!(c.end(), Some(&End::Done));
}

#[test]
fn timeouts_end_an_unfinished_session() {
    let mut cf = cfg(1, Lifecycle::Exit);
    cf.stall_timeout = Some(s(30));
    let mut c = C::new(cf, vec![false], s(0));
    c.handle(s(30), Input::Tick);
    assert_eq!(c.end(), None);
    c.handle(s(31), Input::Tick);
    assert!(matches!(c.end(), Some(End::Unfinished(m)) if m.contains("no peers")));

    let mut cf = cfg(1, Lifecycle::Exit);
    cf.timeout = Some(s(60));
    let mut c = C::new(cf, vec![false], s(0));
    join(&mut c, 1, Some(vec![true]), s(0));
    c.handle(s(61), Input::Tick);
    assert!(matches!(c.end(), Some(End::Unfinished(m)) if m.contains("timed out")));
}

#[test]
fn resume_after_restart_fetches_only_what_is_missing() {
    let mut c = C::new(cfg(4, Lifecycle::Exit), vec![false; 4], s(0));
    join(&mut c, 1, Some(vec![true; 4]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    let first: Vec<BlockRef> = asked
        .iter()
        .copied()
        .filter(|b| b.index == asked[0].index)
        .collect();
    let o = deliver(&mut c, 1, &first, true, s(10));
    // The last resume record holds exactly the verified piece.
    let saved = o
        .iter()
        .rev()
        .find_map(|o| {
            if let Output::SaveResume { have, .. } = o {
                Some(have.clone())
            } else {
                None
            }
        })
        .expect("resume saved after a verified piece");
    assert_eq!(saved.iter().filter(|h| **h).count(), 1);
    assert!(saved[first[0].index as usize]);
    // Restart from it: the verified piece is not asked for again.
    let mut c2 = C::new(cfg(4, Lifecycle::Exit), saved.clone(), s(0));
    assert_eq!(c2.have_bytes(), PIECE);
    join(&mut c2, 1, Some(vec![true; 4]), s(0));
    msg(&mut c2, 1, Message::Unchoke, s(0));
    // Every block asked for until the content is complete: 12, none of the verified piece.
    let mut again = requests(&outs(&mut c2), 1);
    let mut all = Vec::new();
    while !again.is_empty() {
        assert!(again.iter().all(|b| b.index != first[0].index));
        all.extend(again.iter().copied());
        let o = deliver(&mut c2, 1, &again, true, s(1));
        if o.iter().any(|o| matches!(o, Output::Finalize)) {
            break;
        }
        again = requests(&o, 1);
    }
    assert_eq!(all.len(), 12);
    assert_eq!(c2.have_bytes(), 4 * PIECE);
    assert!(c2.consistent());
}

#[test]
fn pieces_verified_close_together_share_one_resume_save() {
    let saves = |o: &[Out]| -> Vec<usize> {
        o.iter()
            .filter_map(|o| match o {
                Output::SaveResume { have, .. } => Some(have.iter().filter(|h| **h).count()),
                _ => None,
            })
            .collect()
    };
    let mut c = C::new(cfg(4, Lifecycle::Exit), vec![false; 4], s(0));
    join(&mut c, 1, Some(vec![true; 4]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    // The blocks of the i-th piece asked for (requests follow as blocks arrive).
    let piece = |asked: &[BlockRef], i: usize| -> Vec<BlockRef> {
        let idx: Vec<u32> = asked.iter().map(|b| b.index).collect();
        let mut firsts = idx.clone();
        firsts.dedup();
        asked.iter().copied().filter(|b| b.index == firsts[i]).collect()
    };
    let mut asked = asked;
    let mut step = |c: &mut C, i: usize, t: Duration| -> Vec<Out> {
        let o = deliver(c, 1, &piece(&asked, i), true, t);
        asked.extend(requests(&o, 1));
        o
    };
    let t = s(10);
    assert_eq!(saves(&step(&mut c, 0, t)), vec![1], "the first piece is saved at once");
    let t2 = t + RESUME_EVERY / 2;
    assert!(saves(&step(&mut c, 1, t2)).is_empty(), "half the interval later: not saved yet");
    let t3 = t + RESUME_EVERY + Duration::from_millis(50);
    assert_eq!(saves(&step(&mut c, 2, t3)), vec![3], "after the interval: saved with the one before");
    // The last piece completes the content: finalized, no resume save.
    let o = step(&mut c, 3, t3 + Duration::from_millis(1));
    assert!(o.iter().any(|o| matches!(o, Output::Finalize)));
    assert!(saves(&o).is_empty());
    assert!(c.consistent());
}

#[test]
fn haves_go_at_once_to_the_sender_and_batched_to_the_others() {
    // Haves sent to wake the connection (Send), and those that may wait (Notify).
    let sent_have = |o: &Out, key: PeerKey| match o {
        Output::Send { key: k, msg: Message::Have(i) } if *k == key => Some(*i),
        _ => None,
    };
    let haves = |o: &[Out], key: PeerKey| -> Vec<u32> { o.iter().filter_map(|o| sent_have(o, key)).collect() };
    let lazy = |o: &[Out], key: PeerKey| -> Vec<u32> {
        o.iter()
            .filter_map(|o| match o {
                Output::Notify { key: k, msg: Message::Have(i) } if *k == key => Some(*i),
                _ => None,
            })
            .collect()
    };
    let mut c = C::new(cfg(4, Lifecycle::Exit), vec![false; 4], s(0));
    join(&mut c, 1, Some(vec![true; 4]), s(0));
    join(&mut c, 2, Some(vec![false; 4]), s(0));
    // Peers 3, 5, 6 and 7 ask for what we get; with 2 upload slots some stay choked.
    // Peer 2 never asks.
    for k in [3, 5, 6, 7] {
        join(&mut c, k, Some(vec![false; 4]), s(0));
    }
    for k in [3, 5, 6, 7] {
        msg(&mut c, k, Message::Interested, s(0));
    }
    c.handle(s(1), Input::Tick);
    let mut unchoked = std::collections::HashSet::new();
    for (k, choke) in chokes(&outs(&mut c)) {
        if choke {
            unchoked.remove(&k);
        } else {
            unchoked.insert(k);
        }
    }
    let choked: Vec<PeerKey> = [3, 5, 6, 7].into_iter().filter(|k| !unchoked.contains(k)).collect();
    assert!(!unchoked.is_empty() && !choked.is_empty(), "{unchoked:?}");
    // Peer 4 is a seed (a super-seeder among them learns from haves), choked too.
    join(&mut c, 4, Some(vec![true; 4]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    let mut firsts: Vec<u32> = asked.iter().map(|b| b.index).collect();
    firsts.dedup();
    let piece = |i: u32| -> Vec<BlockRef> { asked.iter().copied().filter(|b| b.index == i).collect() };
    // Peer 8, not interested, has announced the first piece already.
    join(&mut c, 8, Some(vec![false; 4]), s(0));
    msg(&mut c, 8, Message::Have(firsts[0]), s(0));
    let t = s(10);
    let o = deliver(&mut c, 1, &piece(firsts[0]), true, t);
    assert_eq!(haves(&o, 1), vec![firsts[0]], "the sender hears at once (a super-seeder waits for it)");
    assert!(haves(&o, 2).is_empty(), "the others wait for the batch");
    assert!(c.flush_waiting());
    let o = deliver(&mut c, 1, &piece(firsts[1]), true, t + Duration::from_millis(30));
    assert!(haves(&o, 2).is_empty());
    c.handle(t + Duration::from_millis(60), Input::Flush);
    assert!(haves(&outs(&mut c), 2).is_empty(), "60 ms: not due yet");
    c.handle(t + BATCH_EVERY, Input::Flush);
    let o = outs(&mut c);
    let both = vec![firsts[0], firsts[1]];
    for &k in &unchoked {
        assert_eq!(haves(&o, k), both, "both pieces in one batch, in order");
        assert!(lazy(&o, k).is_empty());
    }
    for &k in &choked {
        assert_eq!(lazy(&o, k), both, "an interested peer we choke may hear later");
        assert!(haves(&o, k).is_empty());
    }
    assert_eq!(haves(&o, 2), both, "a peer not interested yet hears in the batch");
    assert_eq!(haves(&o, 4), both, "a seed hears in the batch even if choked");
    assert_eq!(haves(&o, 8), vec![firsts[1]], "a peer hears at once of the piece it lacks...");
    assert_eq!(lazy(&o, 8), vec![firsts[0]], "...and later of the one it has");
    assert!(haves(&o, 1).is_empty() && lazy(&o, 1).is_empty(), "the sender is not told twice");
    // Completion is announced to everyone at once.
    let mut rest = Vec::new();
    for &i in &firsts[2..] {
        rest.extend(piece(i));
    }
    let o = deliver(&mut c, 1, &rest, true, t + BATCH_EVERY + Duration::from_millis(1));
    let mut to2 = haves(&o, 2);
    to2.sort();
    let mut want = firsts[2..].to_vec();
    want.sort();
    assert_eq!(to2, want);
    assert!(c.consistent());
}

#[test]
fn a_dial_that_fails_backs_off_and_learned_peers_are_dialled() {
    let mut c = C::new(cfg(1, Lifecycle::Exit), vec![false], s(0));
    c.handle(s(0), Input::Peers(vec![addr(1), addr(2)]));
    c.handle(s(0), Input::Tick);
    let dials: Vec<(PeerKey, SocketAddr)> = outs(&mut c)
        .into_iter()
        .filter_map(|o| {
            if let Output::Dial { key, addr } = o {
                Some((key, addr))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(dials.len(), 2);
    let (k, a) = dials[0];
    c.handle(
        s(1),
        Input::ConnectFailed {
            key: k,
            addr: a,
            reason: "refused".into(),
        },
    );
    c.handle(s(2), Input::Tick);
    assert!(
        !outs(&mut c)
            .iter()
            .any(|o| matches!(o, Output::Dial { .. })),
        "backed off"
    );
    c.handle(s(5), Input::Tick);
    let again: Vec<SocketAddr> = outs(&mut c)
        .into_iter()
        .filter_map(|o| {
            if let Output::Dial { addr, .. } = o {
                Some(addr)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(again, vec![a], "redialled after 4 s");
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = |seed: u64| {
        let mut cf = cfg(16, Lifecycle::Exit);
        cf.seed = seed;
        let mut c = C::new(cf, vec![false; 16], s(0));
        let mut log = Vec::new();
        for n in 1..=4 {
            join(&mut c, n, Some(vec![true; 16]), s(0));
            msg(&mut c, n, Message::Unchoke, s(0));
            msg(&mut c, n, Message::Interested, s(0));
        }
        c.handle(s(1), Input::Tick);
        for o in outs(&mut c) {
            log.push(format!("{o:?}"));
        }
        log
    };
    assert_eq!(run(7), run(7));
    assert_ne!(
        run(7),
        run(8),
        "the seed matters (piece order, optimistic unchoke)"
    );
}

#[test]
fn super_seeding_shows_a_stalled_peer_a_piece_others_have() {
    let mut cf = cfg(2, Lifecycle::Forever);
    cf.super_seed = true;
    let mut c = C::new(cf, vec![true; 2], s(0));
    c.handle(s(0), Input::Finalized);
    // Peer 1 has both pieces; peer 2 has piece 0: nothing is fresh for peer 3.
    join(&mut c, 1, Some(vec![true, true]), s(0));
    join(&mut c, 2, Some(vec![true, false]), s(0));
    let o = join(&mut c, 3, None, s(0));
    assert!(sent(&o, 3).is_empty(), "nothing fresh to show: {o:?}");
    c.handle(s(1), Input::Tick);
    assert!(sent(&outs(&mut c), 3).is_empty(), "not stalled yet");
    c.handle(s(0) + superseed::STALLED, Input::Tick);
    let o = outs(&mut c);
    let have = |k| -> Vec<&Message> {
        sent(&o, k)
            .into_iter()
            .filter(|m| matches!(m, Message::Have(_)))
            .collect()
    };
    assert_eq!(
        have(2),
        vec![&Message::Have(1)],
        "peer 2 stalled too: shown the only piece it lacks"
    );
    assert_eq!(
        have(3),
        vec![&Message::Have(0)],
        "peer 3: a piece not being shown to anyone else first"
    );
    assert!(have(1).is_empty(), "a seed is shown nothing");
}

#[test]
fn super_seeding_shows_no_fresh_piece_to_a_peer_on_a_much_slower_link() {
    let mut cf = cfg(40, Lifecycle::Forever);
    cf.super_seed = true;
    let mut c = C::new(cf, vec![true; 40], s(0));
    c.handle(s(0), Input::Finalized);
    outs(&mut c);
    let shown = |o: &[Out]| -> Vec<u32> { haves(&o, 3) };
    join(&mut c, 1, None, s(0));
    join(&mut c, 2, None, s(0));
    let first = shown(&join(&mut c, 3, None, s(0)));
    assert_eq!(first.len(), superseed::DEPTH);
    // Peers 1 and 2 gain 20 pieces in 5 s; peer 3 only one piece it was shown.
    for i in 0..20 {
        msg(&mut c, 1, Message::Have(i), s(5));
        msg(&mut c, 2, Message::Have(i), s(5));
    }
    msg(&mut c, 3, Message::Have(first[0]), s(5));
    let second = shown(&outs(&mut c));
    assert_eq!(
        second.len(),
        1,
        "not watched for long enough yet: shown the next piece"
    );
    msg(&mut c, 3, Message::Have(second[0]), s(12));
    assert!(
        shown(&outs(&mut c)).is_empty(),
        "2 pieces in 12 s against 20 in 12 s: its copy would hold the others back"
    );
}

// ---- web seeds ---------------------------------------------------------------------------

fn web_cfg(pieces: u64) -> Config {
    Config {
        web_seeds: vec!["http://w/".into()],
        stall_timeout: Some(s(60)),
        ..cfg(pieces, Lifecycle::Exit)
    }
}

fn web_requests(o: &[Out]) -> Vec<BlockRef> {
    o.iter()
        .filter_map(|o| match o {
            Output::WebRequest { seed: 0, blocks } => Some(blocks.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn pieces_of(blocks: &[BlockRef]) -> Vec<u32> {
    let mut p: Vec<u32> = blocks.iter().map(|b| b.index).collect();
    p.dedup();
    p
}

/// Web seed 0 delivers `blocks`; writes and hashes are carried out (`good` decides).
fn deliver_web(c: &mut C, blocks: &[BlockRef], good: bool, now: Duration) -> Vec<Out> {
    c.handle(now, Input::WebBlocks { seed: 0, blocks: blocks.iter().map(|b| (*b, good as u8)).collect() });
    carry_disk(c, good, now)
}

#[test]
fn a_web_seed_alone_serves_everything_in_whole_pieces() {
    // 16 pieces of 64 KiB: the web seed is asked for 256 KiB (4 whole pieces) at a time.
    let mut c = C::new(web_cfg(16), vec![false; 16], s(0));
    let mut got = Vec::new();
    let mut o = outs(&mut c);
    let mut t = 0;
    while !c.complete() {
        let asked = web_requests(&o);
        assert_eq!(asked.len(), 16, "4 whole pieces: {o:?}");
        assert!(pieces_of(&asked).iter().all(|i| !got.contains(i)), "never a piece twice");
        got.extend(pieces_of(&asked));
        t += 1;
        o = deliver_web(&mut c, &asked, true, s(t));
    }
    got.sort_unstable();
    assert_eq!(got, (0..16).collect::<Vec<u32>>());
    assert_eq!(c.web_seed_reports()[0].downloaded, 16 * PIECE);
    assert!(c.consistent());
}

#[test]
fn a_web_seed_is_asked_only_for_pieces_no_peer_has() {
    let mut c = C::new(web_cfg(16), vec![false; 16], s(0));
    let first = web_requests(&outs(&mut c));
    // A peer with the first half arrives while the first web request is out.
    let has: Vec<bool> = (0..16).map(|i| i < 8).collect();
    join(&mut c, 1, Some(has), s(0));
    let mut t = 1;
    let mut o = deliver_web(&mut c, &first, true, s(t));
    let mut from_web = pieces_of(&first);
    loop {
        let asked = web_requests(&o);
        if asked.is_empty() {
            break;
        }
        let p = pieces_of(&asked);
        assert!(p.iter().all(|i| *i >= 8), "a piece the peer has went to the web seed: {p:?}");
        from_web.extend(p);
        t += 1;
        o = deliver_web(&mut c, &asked, true, s(t));
    }
    from_web.sort_unstable();
    from_web.dedup();
    let second_half: Vec<u32> = (8..16).collect();
    assert!(from_web.iter().filter(|i| **i >= 8).count() == 8, "{from_web:?} vs {second_half:?}");
    // The peer's pieces (less what the web seed had already been asked for) come from it.
    msg(&mut c, 1, Message::Unchoke, s(t));
    let asked = requests(&outs(&mut c), 1);
    assert!(!asked.is_empty() && pieces_of(&asked).iter().all(|i| *i < 8));
}

#[test]
fn a_starved_download_may_ask_the_web_seed_for_anything() {
    let mut c = C::new(web_cfg(16), vec![false; 16], s(0));
    let first = web_requests(&outs(&mut c));
    join(&mut c, 1, Some(vec![true; 16]), s(0)); // has everything, never unchokes us
    let o = deliver_web(&mut c, &first, true, s(1));
    assert!(web_requests(&o).is_empty(), "the peer has every piece: nothing for the web seed");
    c.handle(s(5), Input::Tick);
    assert!(web_requests(&outs(&mut c)).is_empty(), "not starved yet");
    c.handle(s(1) + swarm_starved(), Input::Tick);
    let asked = web_requests(&outs(&mut c));
    assert_eq!(asked.len(), 16, "starved: the web seed serves pieces the peer has too");
}

fn swarm_starved() -> Duration {
    webseed::STARVED
}

#[test]
fn a_failing_web_seed_backs_off_and_its_blocks_go_to_peers() {
    let mut c = C::new(web_cfg(16), vec![false; 16], s(0));
    let asked = web_requests(&outs(&mut c));
    join(&mut c, 1, Some(vec![true; 16]), s(0));
    msg(&mut c, 1, Message::Unchoke, s(0));
    let before = requests(&outs(&mut c), 1);
    assert!(pieces_of(&before).iter().all(|i| !pieces_of(&asked).contains(i)), "held by the web seed");
    c.handle(s(1), Input::WebFailed { seed: 0, blocks: asked.clone(), reason: "HTTP 503".into(), retry_after: Some(s(30)) });
    let o = outs(&mut c);
    assert!(o.iter().any(|o| matches!(o, Output::Log(m) if m.contains("HTTP 503") && m.contains("30s"))), "{o:?}");
    // The peer's queue is topped up as it delivers; the web seed's pieces are free again.
    let o = deliver(&mut c, 1, &before, true, s(2));
    let next = requests(&o, 1);
    assert!(pieces_of(&next).iter().any(|i| pieces_of(&asked).contains(i)), "{next:?}");
    assert_eq!(c.web_seed_reports()[0].failures, 1);
    assert!(c.consistent());
}

#[test]
fn a_web_seed_whose_data_fails_three_hash_checks_is_dropped() {
    // Pieces of 256 KiB: one piece per web request, so three rounds of bad data.
    let mut c = C::new(Config { piece_length: 4 * PIECE, total_length: 64 * PIECE, ..web_cfg(64) }, vec![false; 16], s(0));
    let mut o = outs(&mut c);
    for t in 1..=3 {
        let asked = web_requests(&o);
        assert_eq!(pieces_of(&asked).len(), 1, "round {t}: {o:?}");
        o = deliver_web(&mut c, &asked, false, s(t));
    }
    assert_eq!(c.hash_failures(), 3);
    let dropped = o.iter().position(|o| matches!(o, Output::Log(m) if m.contains("no longer used")));
    assert!(dropped.is_some(), "{o:?}");
    assert!(web_requests(&o[dropped.unwrap()..]).is_empty());
    assert!(c.web_seed_reports()[0].disabled);
    c.handle(s(10), Input::Tick);
    assert!(web_requests(&outs(&mut c)).is_empty());
    assert_eq!(c.have_bytes(), 0);
}

#[test]
fn data_from_a_web_seed_keeps_the_stall_clock_from_running_out() {
    let mut c = C::new(web_cfg(64), vec![false; 64], s(0));
    let mut o = outs(&mut c);
    let mut t = 0;
    while !c.complete() {
        t += 20; // no peer ever, a web piece every 20 s: stall timeout is 60 s
        c.handle(s(t), Input::Tick);
        assert!(c.end().is_none(), "ended at {t}s: {:?}", c.end());
        o.extend(outs(&mut c));
        let asked = web_requests(&o);
        o = deliver_web(&mut c, &asked, true, s(t));
    }
    // Without data, it stalls.
    let mut c = C::new(web_cfg(64), vec![false; 64], s(0));
    c.handle(s(61), Input::Tick);
    assert!(matches!(c.end(), Some(End::Unfinished(_))));
}

#[test]
fn only_the_first_ranked_hosts_of_a_neighbourhood_ask_the_web_seed() {
    let mut c = C::new(web_cfg(16), vec![false; 16], s(0));
    let first = web_requests(&outs(&mut c));
    assert!(!first.is_empty(), "alone: asks at once");
    // Four downloading peers that all rank above us: we are not one of the fetchers.
    let above: Vec<u64> = (1..200)
        .filter(|n| webseed::rank(&id(*n)) > webseed::rank(&US))
        .take(webseed::FETCHERS)
        .collect();
    assert_eq!(above.len(), webseed::FETCHERS);
    for n in &above {
        join(&mut c, *n, None, s(0));
    }
    let o = deliver_web(&mut c, &first, true, s(1));
    assert!(web_requests(&o).is_empty(), "ranked out: the others fetch what the swarm lacks");
    c.handle(s(2), Input::Tick);
    assert!(web_requests(&outs(&mut c)).is_empty());
    // One of them leaves: now we are among the first four.
    c.handle(s(3), Input::Closed { key: above[0], addr: addr(above[0]), reason: CloseReason::PeerClosed });
    c.handle(s(3), Input::Tick);
    assert!(!web_requests(&outs(&mut c)).is_empty());
}

#[test]
fn a_slot_freed_by_a_peer_that_lost_interest_goes_at_once_to_the_peer_furthest_behind() {
    // Two slots. Peers 1 and 2 ask first and get them; 3 (two pieces) and 4 (one) wait.
    let mut c = C::new(cfg(4, Lifecycle::Forever), vec![true; 4], s(0));
    c.handle(s(0), Input::Finalized);
    join(&mut c, 1, Some(vec![false; 4]), s(0));
    join(&mut c, 2, Some(vec![false; 4]), s(0));
    join(&mut c, 3, Some(vec![true, true, false, false]), s(0));
    join(&mut c, 4, Some(vec![true, false, false, false]), s(0));
    for k in 1..=4 {
        msg(&mut c, k, Message::Interested, s(1));
    }
    let unchoked = |o: &[Out]| -> Vec<PeerKey> {
        chokes(o).into_iter().filter(|(_, choke)| !choke).map(|(k, _)| k).collect()
    };
    assert_eq!(unchoked(&outs(&mut c)), vec![1, 2], "the first two to ask take the two slots");
    // Between choker rounds, peer 1 stops wanting anything from us.
    msg(&mut c, 1, Message::NotInterested, s(2));
    assert_eq!(
        unchoked(&outs(&mut c)),
        vec![4],
        "the freed slot goes at once, to the waiting peer with the fewest pieces"
    );
}

#[test]
fn the_driver_may_pause_long_for_slow_peers_and_briefly_for_fast_ones() {
    let max = Duration::from_millis(20);
    // 8 MiB in flight at 1 GB/s lasts 8.4 ms: an eighth of it; at 12.5 MB/s, the cap.
    let fast = super::pause_for(8.0 * 1048576.0, 1e9, max);
    assert!(fast > Duration::from_micros(1000) && fast < Duration::from_micros(1100), "{fast:?}");
    assert_eq!(super::pause_for(8.0 * 1048576.0, 12.5e6, max), max);
    assert_eq!(super::pause_for(0.0, 1e9, max), max, "nothing in flight");
    assert_eq!(super::pause_for(1e6, 0.0, max), max, "no rate yet");

    let mut c = C::new(cfg(64, Lifecycle::Exit), vec![false; 64], s(0));
    assert_eq!(c.pass_pause(s(0), max), max, "no peer");
    join(&mut c, 1, Some(vec![true; 64]), s(0));
    assert_eq!(c.pass_pause(s(0), max), max / 8, "a connection and its bitfield: promptly");
    assert_eq!(c.pass_pause(s(0), max), max, "once");
    msg(&mut c, 1, Message::Unchoke, s(0));
    let asked = requests(&outs(&mut c), 1);
    assert!(!asked.is_empty());
    assert_eq!(c.pass_pause(s(0), max), max / 8, "an unchoke: promptly");
    assert_eq!(c.pass_pause(s(0), max), max, "nothing received yet: speed unknown");
    // 4 blocks at s(1), judged at s(3): 8 blocks in flight (128 KiB, topped up again) at
    // 64 KiB per 2 s last 4 s, and an eighth of that is 0.5 s.
    deliver(&mut c, 1, &asked[..4], true, s(1));
    assert_eq!(c.pass_pause(s(3), max), max);
    let p = c.pass_pause(s(3), s(10));
    assert!(p > Duration::from_millis(490) && p < Duration::from_millis(510), "{p:?}");
    // A second peer just asked (no rate yet) does not shorten the pause while the first sends.
    join(&mut c, 2, Some(vec![true; 64]), s(3));
    msg(&mut c, 2, Message::Unchoke, s(3));
    assert!(!requests(&outs(&mut c), 2).is_empty());
    c.pass_pause(s(3), max);
    assert_eq!(c.pass_pause(s(3), max), max);
    // Haves are batched like blocks.
    msg(&mut c, 2, Message::Have(5), s(3));
    assert_eq!(c.pass_pause(s(3), max), max);
}
