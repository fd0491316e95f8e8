//! Which blocks to request from whom: finish started pieces first, otherwise rarest first
//! with random tie-breaks, endgame duplicates for the last blocks.
//!
//! Invariants: a piece is in exactly one of the states missing (not started), partial
//! (some blocks requested or received), hashing (every block written, waiting for SHA-1)
//! and have (verified). A block of a partial piece is missing, requested by one or more
//! peers (more than one only in endgame), or received from one peer. A piece that fails
//! its hash goes back to missing and [`Picker::hashed`] names the peers that sent it.
//! The picker is plain data owned by the swarm core; it does no I/O. Counts of missing,
//! hashing and unrequested blocks are kept as they change, so a pick costs time in the
//! pieces it looks at, not in the size of the torrent (the simulator runs a thousand
//! pickers at once).

use crate::peer::wire::BLOCK;
use std::collections::BTreeMap;

/// Identifies a peer connection within one session.
pub type PeerKey = u64;

/// Most peers asked for the same block in endgame.
const ENDGAME_DUPLICATES: usize = 2;
/// Most duplicate requests handed to one peer at a time in endgame.
const ENDGAME_BATCH: usize = 8;
/// Pieces tested together for a candidate by [`Picker::rarest_new`].
const SCAN_RUN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Missing,
    Requested(Vec<PeerKey>),
    Received(PeerKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum State {
    Missing,
    Partial,
    Hashing,
    Have,
}

struct Partial {
    blocks: Vec<Block>,
    written: usize,
    /// Blocks in state `Missing`.
    unrequested: usize,
    /// For a piece that failed its hash check before: the one peer it is fetched from, so
    /// a second failure names the culprit.
    owner: Option<PeerKey>,
}

/// What became of a block that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Write it; the listed peers had also been asked for it (send them a cancel).
    Accept { cancel: Vec<PeerKey> },
    /// Already received from someone else, or never asked of anyone: drop it.
    Drop,
}

pub struct Picker {
    piece_length: u64,
    total: u64,
    state: Vec<State>,
    availability: Vec<u32>,
    partial: BTreeMap<u32, Partial>,
    /// Pieces that failed a hash check: fetched again from a single peer.
    failed: std::collections::HashSet<u32>,
    have_count: usize,
    missing_count: usize,
    hashing_count: usize,
    /// Blocks of partial pieces in state `Missing`.
    unrequested: usize,
    /// Bytes per block (16 KiB on the wire; the simulator may use larger ones).
    block: u32,
    rng: u64,
}

impl Picker {
    pub fn new(piece_length: u64, total: u64, have: &[bool], seed: u64) -> Picker {
        Picker::with_block(piece_length, total, have, seed, BLOCK)
    }

    /// A picker that cuts pieces into blocks of `block` bytes.
    pub fn with_block(
        piece_length: u64,
        total: u64,
        have: &[bool],
        seed: u64,
        block: u32,
    ) -> Picker {
        let state: Vec<State> = have
            .iter()
            .map(|h| if *h { State::Have } else { State::Missing })
            .collect();
        let have_count = have.iter().filter(|h| **h).count();
        Picker {
            piece_length,
            total,
            availability: vec![0; state.len()],
            have_count,
            missing_count: state.len() - have_count,
            hashing_count: 0,
            unrequested: 0,
            block: block.max(1),
            state,
            partial: BTreeMap::new(),
            failed: Default::default(),
            rng: seed | 1,
        }
    }

    pub fn block_size(&self) -> u32 {
        self.block
    }

    /// Connected peers known to have piece `i`.
    pub fn availability(&self, i: usize) -> u32 {
        self.availability[i]
    }

    pub fn num_pieces(&self) -> usize {
        self.state.len()
    }

    pub fn have(&self, i: usize) -> bool {
        self.state[i] == State::Have
    }

    pub fn have_count(&self) -> usize {
        self.have_count
    }

    pub fn complete(&self) -> bool {
        self.have_count == self.state.len()
    }

    /// Bytes of verified pieces.
    pub fn have_bytes(&self) -> u64 {
        let n = self.state.len();
        let mut bytes = self.have_count as u64 * self.piece_length;
        if n > 0 && self.state[n - 1] == State::Have {
            bytes -= self.piece_length - self.piece_size(n - 1);
        }
        bytes
    }

    pub fn have_vec(&self) -> Vec<bool> {
        self.state.iter().map(|s| *s == State::Have).collect()
    }

    fn piece_size(&self, i: usize) -> u64 {
        (self.total - i as u64 * self.piece_length).min(self.piece_length)
    }

    fn blocks_in(&self, i: usize) -> usize {
        self.piece_size(i).div_ceil(self.block as u64) as usize
    }

    fn block_ref(&self, i: usize, b: usize) -> BlockRef {
        let begin = b as u64 * self.block as u64;
        let length = (self.piece_size(i) - begin).min(self.block as u64) as u32;
        BlockRef {
            index: i as u32,
            begin: begin as u32,
            length,
        }
    }

    /// True if a peer with `has` has a piece we still need.
    pub fn interesting(&self, has: &[bool]) -> bool {
        has.iter()
            .zip(&self.state)
            .any(|(h, s)| *h && *s != State::Have)
    }

    pub fn add_availability(&mut self, has: &[bool]) {
        for (a, h) in self.availability.iter_mut().zip(has) {
            *a += *h as u32;
        }
    }

    pub fn remove_availability(&mut self, has: &[bool]) {
        for (a, h) in self.availability.iter_mut().zip(has) {
            *a = a.saturating_sub(*h as u32);
        }
    }

    pub fn add_have(&mut self, i: usize) {
        self.availability[i] += 1;
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Picks up to `max` blocks to request from `peer`, which has pieces `has`. With
    /// `endgame`, when every block is already requested from someone, a few blocks others
    /// have not delivered yet are asked of this peer too (the caller allows it only when the
    /// peer's own queue is nearly empty, so duplicates stay few).
    pub fn pick(
        &mut self,
        peer: PeerKey,
        has: &[bool],
        max: usize,
        endgame: bool,
    ) -> Vec<BlockRef> {
        let mut out = Vec::new();
        // 1. Blocks nobody has been asked for, in pieces already started.
        let keys: Vec<u32> = self.partial_for(peer, has);
        for i in keys {
            self.take_missing(i as usize, peer, max, &mut out);
            if out.len() >= max {
                break;
            }
        }
        // 2. New pieces, rarest first, random among equals.
        while out.len() < max && !self.all_started() {
            let Some(i) = self.rarest_new(has) else { break };
            let n = self.blocks_in(i);
            self.state[i] = State::Partial;
            self.missing_count -= 1;
            self.unrequested += n;
            let owner = self.failed.contains(&(i as u32)).then_some(peer);
            self.partial.insert(
                i as u32,
                Partial {
                    blocks: vec![Block::Missing; n],
                    written: 0,
                    unrequested: n,
                    owner,
                },
            );
            self.take_missing(i, peer, max, &mut out);
        }
        // 3. Endgame: nothing left unrequested; ask for blocks others are slow to deliver.
        let max = if out.is_empty() {
            max.min(ENDGAME_BATCH)
        } else {
            max
        };
        if endgame && out.len() < max && self.all_requested() {
            let keys: Vec<u32> = self
                .partial_for(peer, has)
                .into_iter()
                .filter(|i| self.partial[i].owner.is_none())
                .collect();
            'outer: for i in keys {
                let p = self.partial.get_mut(&i).unwrap();
                for (b, blk) in p.blocks.iter_mut().enumerate() {
                    if let Block::Requested(by) = blk {
                        if by.len() < ENDGAME_DUPLICATES && !by.contains(&peer) {
                            by.push(peer);
                            out.push((i, b));
                            if out.len() >= max {
                                break 'outer;
                            }
                        }
                    }
                }
            }
        }
        out.into_iter()
            .map(|(i, b)| self.block_ref(i as usize, b))
            .collect()
    }

    /// The rarest piece not started yet that `has` holds, uniformly at random among the
    /// equally rare.
    ///
    /// Most calls find none (on the simulator's 32 hosts, 9 scans in 10: a peer's pieces
    /// are mostly started here already), so runs of [`SCAN_RUN`] pieces are first tested
    /// for any candidate with a branch-free pass the compiler vectorizes; only runs that
    /// hold one are looked at piece by piece.
    fn rarest_new(&mut self, has: &[bool]) -> Option<usize> {
        let (mut best, mut ties): (Option<(u32, usize)>, u64) = (None, 0);
        let n = self.state.len();
        let mut start = 0;
        while start < n {
            let end = (start + SCAN_RUN).min(n);
            let any = self.state[start..end]
                .iter()
                .zip(&has[start..end])
                .fold(0u8, |acc, (s, h)| acc | ((*s == State::Missing) as u8 & *h as u8));
            if any != 0 {
                self.rarest_among(start..end, has, &mut best, &mut ties);
            }
            start = end;
        }
        best.map(|(_, i)| i)
    }

    /// Looks at pieces `range` one by one for [`Picker::rarest_new`]: `best` is the rarest
    /// candidate so far (availability, index), chosen at random among `ties` as rare.
    fn rarest_among(&mut self, range: std::ops::Range<usize>, has: &[bool], best: &mut Option<(u32, usize)>, ties: &mut u64) {
        for i in range {
            if self.state[i] != State::Missing || !has[i] {
                continue;
            }
            let a = self.availability[i];
            match *best {
                Some((ba, _)) if a > ba => {}
                Some((ba, _)) if a == ba => {
                    *ties += 1;
                    if self.rand() % *ties == 0 {
                        *best = Some((a, i));
                    }
                }
                _ => (*best, *ties) = (Some((a, i)), 1),
            }
        }
    }

    /// Started pieces `peer` may work on: it has them and they are not reserved for another peer.
    fn partial_for(&self, peer: PeerKey, has: &[bool]) -> Vec<u32> {
        self.partial
            .iter()
            .filter(|(i, p)| has[**i as usize] && p.owner.map(|o| o == peer).unwrap_or(true))
            .map(|(i, _)| *i)
            .collect()
    }

    fn take_missing(&mut self, i: usize, peer: PeerKey, max: usize, out: &mut Vec<(u32, usize)>) {
        let p = self.partial.get_mut(&(i as u32)).unwrap();
        if p.owner.is_none() && self.failed.contains(&(i as u32)) {
            p.owner = Some(peer);
        }
        if p.unrequested == 0 {
            return;
        }
        for (b, blk) in p.blocks.iter_mut().enumerate() {
            if out.len() >= max || p.unrequested == 0 {
                return;
            }
            if *blk == Block::Missing {
                *blk = Block::Requested(vec![peer]);
                p.unrequested -= 1;
                self.unrequested -= 1;
                out.push((i as u32, b));
            }
        }
    }

    fn all_started(&self) -> bool {
        self.missing_count == 0
    }

    fn all_requested(&self) -> bool {
        self.missing_count == 0 && self.unrequested == 0
    }

    /// Is this block one we asked `peer` for (and still want)?
    fn locate(&self, r: &BlockRef) -> Option<(u32, usize)> {
        if r.begin % self.block != 0 {
            return None;
        }
        let b = (r.begin / self.block) as usize;
        let p = self.partial.get(&r.index)?;
        if b >= p.blocks.len() || self.block_ref(r.index as usize, b).length != r.length {
            return None;
        }
        Some((r.index, b))
    }

    /// A block arrived from `peer`. A block we still need is taken from whoever delivers it
    /// first: asked of this peer, of others (they get a cancel), or of nobody any more (it
    /// was in flight when the peer choked us or was snubbed). Only a piece reserved for one
    /// peer after a failed hash check takes blocks from that peer alone, so a second failure
    /// still names the culprit.
    pub fn received(&mut self, peer: PeerKey, r: &BlockRef) -> Arrival {
        let Some((i, b)) = self.locate(r) else {
            return Arrival::Drop;
        };
        let p = self.partial.get_mut(&i).unwrap();
        if p.owner.map(|o| o != peer).unwrap_or(false) {
            return Arrival::Drop;
        }
        let blk = &mut p.blocks[b];
        match blk {
            Block::Requested(by) => {
                let cancel = by.iter().copied().filter(|p| *p != peer).collect();
                *blk = Block::Received(peer);
                Arrival::Accept { cancel }
            }
            Block::Missing => {
                *blk = Block::Received(peer);
                p.unrequested -= 1;
                self.unrequested -= 1;
                Arrival::Accept { cancel: Vec::new() }
            }
            Block::Received(_) => Arrival::Drop,
        }
    }

    /// A received block reached the disk; answers true when its piece is ready to hash.
    pub fn written(&mut self, index: u32) -> bool {
        let Some(p) = self.partial.get_mut(&index) else {
            return false;
        };
        p.written += 1;
        if p.written == p.blocks.len() {
            self.state[index as usize] = State::Hashing;
            self.hashing_count += 1;
            true
        } else {
            false
        }
    }

    /// A block write failed: ask for the block again.
    pub fn write_failed(&mut self, r: &BlockRef) {
        if let Some((i, b)) = self.locate(r) {
            let p = self.partial.get_mut(&i).unwrap();
            if p.blocks[b] != Block::Missing {
                p.blocks[b] = Block::Missing;
                p.unrequested += 1;
                self.unrequested += 1;
            }
        }
    }

    /// The hash check of a piece finished. Answers the peers that sent its blocks. A piece
    /// that failed is fetched again from one peer only, so if it fails again (answering a
    /// single sender), that peer sent bad data.
    pub fn hashed(&mut self, index: u32, ok: bool) -> Vec<PeerKey> {
        let Some(p) = self.partial.remove(&index) else {
            return Vec::new();
        };
        let mut senders: Vec<PeerKey> = p
            .blocks
            .iter()
            .filter_map(|b| {
                if let Block::Received(k) = b {
                    Some(*k)
                } else {
                    None
                }
            })
            .collect();
        senders.sort_unstable();
        senders.dedup();
        self.unrequested -= p.unrequested;
        if self.state[index as usize] == State::Hashing {
            self.hashing_count -= 1;
        }
        if ok {
            self.state[index as usize] = State::Have;
            self.have_count += 1;
            self.failed.remove(&index);
        } else {
            self.state[index as usize] = State::Missing;
            self.missing_count += 1;
            self.failed.insert(index);
        }
        senders
    }

    /// Recounts what the picker keeps counted and answers whether every count is right
    /// (for tests and the simulator's invariant checks; O(size of the torrent)).
    pub fn consistent(&self) -> bool {
        let missing = self.state.iter().filter(|s| **s == State::Missing).count();
        let hashing = self.state.iter().filter(|s| **s == State::Hashing).count();
        let have = self.state.iter().filter(|s| **s == State::Have).count();
        let mut unrequested = 0;
        for (i, p) in &self.partial {
            let n = p.blocks.iter().filter(|b| **b == Block::Missing).count();
            if n != p.unrequested
                || self.state[*i as usize] == State::Missing
                || self.state[*i as usize] == State::Have
            {
                return false;
            }
            unrequested += n;
        }
        missing == self.missing_count
            && hashing == self.hashing_count
            && have == self.have_count
            && unrequested == self.unrequested
    }

    /// `peer` will not deliver these blocks (choked us, disconnected, timed out).
    pub fn forget(&mut self, peer: PeerKey, blocks: &[BlockRef]) {
        for p in self.partial.values_mut() {
            if p.owner == Some(peer) {
                p.owner = None;
            }
        }
        for r in blocks {
            let Some((i, b)) = self.locate(r) else {
                continue;
            };
            let p = self.partial.get_mut(&i).unwrap();
            if let Block::Requested(by) = &mut p.blocks[b] {
                by.retain(|k| *k != peer);
                if by.is_empty() {
                    p.blocks[b] = Block::Missing;
                    p.unrequested += 1;
                    self.unrequested += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 4 * BLOCK as u64;

    /// `rarest_new` as one plain pass over every piece: what skipping runs must agree with.
    fn rarest_new_plainly(pk: &mut Picker, has: &[bool]) -> Option<usize> {
        let (mut best, mut ties) = (None, 0);
        pk.rarest_among(0..pk.state.len(), has, &mut best, &mut ties);
        best.map(|(_, i)| i)
    }

    #[test]
    fn the_rarest_new_piece_is_the_one_a_plain_pass_finds() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut found = 0;
        // Sizes around the run length; peers with none, few or many of the pieces; pieces
        // mostly missing, mostly started, or anything between.
        for n in [1, 7, SCAN_RUN - 1, SCAN_RUN, SCAN_RUN + 1, 3 * SCAN_RUN + 5, 1000] {
            for has_per_mille in [0, 2, 20, 500, 1000] {
                for missing_per_mille in [0, 5, 100, 900, 1000] {
                    let mut pk = Picker::new(P, n as u64 * P, &vec![false; n], next(1 << 20) + 1);
                    for i in 0..n {
                        pk.availability[i] = next(4) as u32;
                        if next(1000) >= missing_per_mille {
                            pk.state[i] = [State::Partial, State::Hashing, State::Have][next(3) as usize];
                        }
                    }
                    let has: Vec<bool> = (0..n).map(|_| next(1000) < has_per_mille).collect();
                    let mut plain = Picker {
                        rng: pk.rng,
                        state: pk.state.clone(),
                        availability: pk.availability.clone(),
                        ..Picker::new(P, n as u64 * P, &vec![false; n], 1)
                    };
                    let (got, want) = (pk.rarest_new(&has), rarest_new_plainly(&mut plain, &has));
                    assert_eq!(got, want, "{n} pieces, has {has_per_mille}‰, missing {missing_per_mille}‰");
                    assert_eq!(pk.rng, plain.rng, "the same random numbers were drawn");
                    found += got.is_some() as usize;
                }
            }
        }
        assert!(found > 50, "most cases have a candidate: {found}");
    }

    #[test]
    fn rarest_first_and_finish_started() {
        let mut pk = Picker::new(P, 4 * P, &[false; 4], 7);
        pk.add_availability(&[true, true, true, true]);
        pk.add_availability(&[true, false, true, true]);
        pk.add_availability(&[false, false, true, true]);
        // Piece 1 is the rarest (1 peer).
        let got = pk.pick(1, &[true; 4], 2, true);
        assert_eq!(got.iter().map(|b| b.index).collect::<Vec<_>>(), vec![1, 1]);
        // The same piece is finished before a new one starts.
        let got = pk.pick(2, &[true; 4], 3, true);
        assert_eq!(
            got.iter().map(|b| b.index).collect::<Vec<_>>(),
            vec![1, 1, 0]
        );
    }

    #[test]
    fn blocks_flow_to_verified_and_failed_pieces_return() {
        let mut pk = Picker::new(P, P + 100, &[false, false], 1);
        let all = [true, true];
        let got = pk.pick(9, &all, 100, true);
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[4],
            BlockRef {
                index: 1,
                begin: 0,
                length: 100
            }
        );
        for r in &got[..4] {
            assert_eq!(pk.received(9, r), Arrival::Accept { cancel: vec![] });
        }
        assert_eq!(pk.received(9, &got[0]), Arrival::Drop, "duplicate");
        assert_eq!(
            pk.received(8, &got[4]),
            Arrival::Accept { cancel: vec![9] },
            "needed: taken from peer 8, peer 9 cancelled"
        );
        assert_eq!(pk.received(9, &got[4]), Arrival::Drop, "already received");
        assert!(!pk.written(0));
        assert!(!pk.written(0));
        assert!(!pk.written(0));
        assert!(pk.written(0));
        assert_eq!(pk.hashed(0, false), vec![9]);
        assert!(!pk.have(0));
        // Piece 0 is wanted again.
        let again = pk.pick(3, &all, 100, true);
        assert_eq!(again.iter().filter(|b| b.index == 0).count(), 4);
        for r in &again {
            assert!(matches!(pk.received(3, r), Arrival::Accept { .. }) || r.index == 1);
        }
        for _ in 0..4 {
            pk.written(0);
        }
        assert_eq!(pk.hashed(0, true), vec![3]);
        assert!(pk.have(0));
        assert_eq!(pk.have_count(), 1);
    }

    #[test]
    fn endgame_duplicates_and_cancels() {
        let mut pk = Picker::new(P, P, &[false], 1);
        let a = pk.pick(1, &[true], 100, true);
        assert_eq!(a.len(), 4);
        let b = pk.pick(2, &[true], 100, true);
        assert_eq!(b.len(), 4, "endgame asks a second peer");
        assert!(
            pk.pick(3, &[true], 100, true).is_empty(),
            "at most two peers per block"
        );
        assert_eq!(pk.received(2, &a[0]), Arrival::Accept { cancel: vec![1] });
        assert_eq!(pk.received(1, &a[0]), Arrival::Drop);
    }

    #[test]
    fn a_failed_piece_is_refetched_from_one_peer() {
        let mut pk = Picker::new(P, P, &[false], 1);
        let a = pk.pick(1, &[true], 2, true);
        let b = pk.pick(2, &[true], 2, true);
        for r in &a {
            pk.received(1, r);
        }
        for r in &b {
            pk.received(2, r);
        }
        for _ in 0..4 {
            pk.written(0);
        }
        assert_eq!(pk.hashed(0, false), vec![1, 2]);
        assert_eq!(pk.pick(3, &[true], 2, true).len(), 2);
        assert!(
            pk.pick(4, &[true], 4, true).is_empty(),
            "reserved for peer 3, no endgame sharing"
        );
        assert_eq!(pk.pick(3, &[true], 4, true).len(), 2);
    }

    #[test]
    fn a_block_that_arrives_after_its_request_was_forgotten_is_kept() {
        let mut pk = Picker::new(P, P, &[false], 1);
        let a = pk.pick(1, &[true], 4, true);
        pk.forget(1, &a); // peer 1 choked us
        assert_eq!(
            pk.received(1, &a[0]),
            Arrival::Accept { cancel: vec![] },
            "still needed"
        );
        assert!(pk.consistent());
        let b = pk.pick(2, &[true], 4, true);
        assert_eq!(b.len(), 3, "the block that arrived is not asked again");
    }

    #[test]
    fn forgotten_requests_are_picked_again() {
        let mut pk = Picker::new(P, 2 * P, &[false, false], 1);
        let a = pk.pick(1, &[true, true], 4, true);
        pk.forget(1, &a);
        let b = pk.pick(2, &[true, true], 4, true);
        assert_eq!(a, b);
    }
}
