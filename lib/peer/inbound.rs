//! A connection's receive side: the bytes a reader reads, decoded into messages, with block
//! payloads read straight into the buffers they are handed on in.
//!
//! A plain reader reads into one receive buffer and copies each 16 KiB payload out of it
//! into a block buffer of its own (on the 32-host testbed that copy was 3 % of the
//! machine's CPU). Here, once the bytes read so far are all decoded, or end in an unfinished
//! `piece` message, the next read is a scatter read (`readv`): first the rest of that
//! block's buffer, then [`AHEAD`] guessed standard blocks (a 13-byte header slot and a
//! 16 KiB buffer each), then the receive buffer. Guessed slots that hold a standard block's
//! header are blocks, received without a copy; from the first that does not (a `have`
//! between blocks, a short last block, anything else), everything read after is moved into
//! the receive buffer and decoded there, exactly as a plain reader would (a copy, as
//! before, for that read only).
//!
//! The messages come out in the order they were sent, the same as [`wire::decode`] gives
//! for the same bytes however they were split into reads (the tests check this against
//! random splits), and errors are the same errors.

use super::buffers;
use super::wire::{self, Message};
use std::collections::VecDeque;
use std::io::{self, IoSliceMut, Read};

/// The header of a `piece` message: length prefix, id, index, begin.
const HEAD: usize = 13;
/// A standard block.
const BODY: usize = wire::BLOCK as usize;
/// The length prefix of a standard block's `piece` message.
const PIECE_LEN: u32 = 9 + wire::BLOCK;
/// Standard blocks guessed to follow, per read: 96 KiB, more than a socket usually holds when
/// its reader wakes (segments of 30–40 KB on the testbed).
const AHEAD: usize = 6;
/// The receive buffer (a bitfield for 2^20 pieces and more fits).
const BUF: usize = 1 << 19;
/// Part of the receive buffer a scatter read may fill: what is left must hold everything the
/// guessed slots got, when it turns out not to be blocks.
const BUF_READ: usize = BUF - AHEAD * (HEAD + BODY);

/// A block whose payload is being read into its own buffer.
struct Partial {
    index: u32,
    begin: u32,
    data: Vec<u8>,
    /// Bytes of `data` received.
    filled: usize,
    /// The payload's length (at most [`BODY`]).
    want: usize,
}

/// A guessed block: its header and payload buffer.
struct Slot {
    head: [u8; HEAD],
    body: Vec<u8>,
}

/// One connection's received bytes: call [`Inbound::next`] until it answers `None`, then
/// [`Inbound::fill`] once.
pub struct Inbound {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    partial: Option<Partial>,
    slots: Vec<Slot>,
    /// Blocks received whole in slots, before what `buf` holds.
    ready: VecDeque<Message>,
    /// Payload bytes copied out of the receive buffer (blocks not read in place).
    copied: u64,
}

impl Default for Inbound {
    fn default() -> Self {
        Self::new()
    }
}

/// The index and begin of a standard block's header.
fn standard_block(head: &[u8; HEAD]) -> Option<(u32, u32)> {
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be32(&head[..4]) == PIECE_LEN && head[4] == 7).then(|| (be32(&head[5..]), be32(&head[9..])))
}

impl Inbound {
    pub fn new() -> Inbound {
        Inbound {
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            partial: None,
            slots: (0..AHEAD).map(|_| Slot { head: [0; HEAD], body: Vec::new() }).collect(),
            ready: VecDeque::new(),
            copied: 0,
        }
    }

    /// The next whole message received, `None` when more must be read, or the error of a
    /// message no honest peer sends.
    pub fn next(&mut self) -> Result<Option<Message>, wire::Error> {
        if let Some(m) = self.ready.pop_front() {
            return Ok(Some(m));
        }
        if self.partial.is_some() {
            return Ok(None);
        }
        match wire::decode_with(&self.buf[self.start..self.end], buffers::copy_of)? {
            Some((m, used)) => {
                self.start += used;
                if let Message::Piece { data, .. } = &m {
                    self.copied += data.len() as u64;
                }
                Ok(Some(m))
            }
            None => Ok(None),
        }
    }

    /// Reads once from `r` (after [`Inbound::next`] answered `None`): the bytes read, 0 at
    /// the end of the stream.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<usize> {
        debug_assert!(self.ready.is_empty());
        let rest = self.end - self.start;
        if self.partial.is_none() && rest >= HEAD {
            self.adopt();
        }
        if self.partial.is_some() {
            return self.scatter(r, 0);
        }
        let rest = self.end - self.start;
        if rest < HEAD {
            // A message's first bytes at most: they become the first slot's header.
            let (start, end) = (self.start, self.end);
            self.slots[0].head[..rest].copy_from_slice(&self.buf[start..end]);
            (self.start, self.end) = (0, 0);
            let r = self.scatter(r, rest);
            if r.is_err() {
                // Nothing was read: the bytes go back where they were.
                self.buf[..rest].copy_from_slice(&self.slots[0].head[..rest]);
                self.end = rest;
            }
            return r;
        }
        // Part of a message that is not a block (a large bitfield, say): read on after it.
        if self.buf.len() - self.end < 1 << 16 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, rest);
        }
        let n = r.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Takes an unfinished `piece` message at the start of what is buffered (and all of what
    /// is buffered: the message is the last) as the block being read, if it is one that
    /// fits a block buffer.
    fn adopt(&mut self) {
        let b = &self.buf[self.start..self.end];
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if b[4] != 7 || len < 9 || len - 9 > BODY || len > wire::MAX_MESSAGE || b.len() >= 4 + len {
            return;
        }
        let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let mut data = buffers::whole();
        let have = b.len() - HEAD;
        data[..have].copy_from_slice(&b[HEAD..]);
        self.partial = Some(Partial { index: be32(&b[5..]), begin: be32(&b[9..]), data, filled: have, want: len - 9 });
        (self.start, self.end) = (0, 0);
    }

    /// One scatter read: the unfinished block's rest (if any), the slots (the first holding
    /// `pre` bytes already), then the receive buffer (empty).
    fn scatter(&mut self, r: &mut impl Read, pre: usize) -> io::Result<usize> {
        debug_assert!(self.start == self.end);
        (self.start, self.end) = (0, 0);
        for s in &mut self.slots {
            if s.body.len() != BODY {
                s.body = buffers::whole();
            }
        }
        let n = {
            // On the stack: no allocation per read.
            let mut iov: [IoSliceMut; 2 + 2 * AHEAD] = std::array::from_fn(|_| IoSliceMut::new(&mut []));
            let mut k = 0;
            let mut add = |b| {
                iov[k] = IoSliceMut::new(b);
                k += 1;
            };
            if let Some(p) = &mut self.partial {
                add(&mut p.data[p.filled..p.want]);
            }
            for (i, s) in self.slots.iter_mut().enumerate() {
                add(&mut s.head[if i == 0 { pre } else { 0 }..]);
                add(&mut s.body);
            }
            add(&mut self.buf[..BUF_READ]);
            r.read_vectored(&mut iov[..k])?
        };
        if n > 0 || pre > 0 {
            self.sort(n, pre);
        }
        Ok(n)
    }

    /// Sorts the `n` bytes a scatter read brought (after `pre` bytes already in the first
    /// slot's header) into blocks and plain bytes.
    fn sort(&mut self, n: usize, pre: usize) {
        let mut left = n;
        if let Some(p) = &mut self.partial {
            let got = left.min(p.want - p.filled);
            p.filled += got;
            left -= got;
            if p.filled < p.want {
                return;
            }
            let mut p = self.partial.take().expect("checked");
            p.data.truncate(p.want);
            self.ready.push_back(Message::Piece { index: p.index, begin: p.begin, data: p.data });
        }
        // What each slot got: header bytes and payload bytes.
        let mut got = [(0usize, 0usize); AHEAD];
        for (i, g) in got.iter_mut().enumerate() {
            let pre = if i == 0 { pre } else { 0 };
            let h = left.min(HEAD - pre);
            left -= h;
            let b = left.min(BODY);
            left -= b;
            *g = (pre + h, b);
        }
        let in_buf = left;
        for i in 0..AHEAD {
            let (h, b) = got[i];
            if h == 0 {
                self.end = in_buf; // (0: the read ended at a slot's start)
                return;
            }
            let slot = &mut self.slots[i];
            match (h == HEAD).then(|| standard_block(&slot.head)).flatten() {
                Some((index, begin)) if b == BODY => {
                    let data = std::mem::replace(&mut slot.body, buffers::whole());
                    self.ready.push_back(Message::Piece { index, begin, data });
                }
                Some((index, begin)) => {
                    // The read ended inside this block: it is the block being read.
                    let data = std::mem::replace(&mut slot.body, buffers::whole());
                    self.partial = Some(Partial { index, begin, data, filled: b, want: BODY });
                    return;
                }
                None => return self.spill(i, &got, in_buf),
            }
        }
        self.end = in_buf;
    }

    /// Slot `from` is not a standard block: its bytes and all read after them (the later
    /// slots' and the `in_buf` at the receive buffer's start) become plain bytes, in order.
    fn spill(&mut self, from: usize, got: &[(usize, usize); AHEAD], in_buf: usize) {
        let moved: usize = got[from..].iter().map(|(h, b)| h + b).sum();
        self.buf.copy_within(..in_buf, moved);
        let mut at = 0;
        for (s, &(h, b)) in self.slots[from..].iter().zip(&got[from..]) {
            self.buf[at..at + h].copy_from_slice(&s.head[..h]);
            at += h;
            self.buf[at..at + b].copy_from_slice(&s.body[..b]);
            at += b;
        }
        (self.start, self.end) = (0, moved + in_buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::rng::Rng;

    /// A stream that hands out its bytes in reads of the sizes given, filling the buffers of
    /// a vectored read in order as `readv` does.
    struct Chunked {
        data: Vec<u8>,
        at: usize,
        sizes: Vec<usize>,
        next: usize,
    }

    impl Read for Chunked {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.read_vectored(&mut [IoSliceMut::new(buf)])
        }
        fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            let size = self.sizes[self.next % self.sizes.len()];
            self.next += 1;
            let mut n = size.min(self.data.len() - self.at);
            let mut done = 0;
            for b in bufs.iter_mut() {
                let k = n.min(b.len());
                b[..k].copy_from_slice(&self.data[self.at..self.at + k]);
                self.at += k;
                done += k;
                n -= k;
            }
            Ok(done)
        }
    }

    fn messages(rng: &mut Rng, count: usize) -> Vec<Message> {
        (0..count)
            .map(|i| {
                let block = |len: usize| Message::Piece {
                    index: i as u32,
                    begin: rng_u32(i),
                    data: (0..len).map(|j| (i * 31 + j * 7) as u8).collect(),
                };
                match rng.below(20) {
                    0..=11 => block(BODY),
                    12 => block(1 + rng.below(BODY - 1)),
                    13 => block(BODY + 1 + rng.below(1000)),
                    14 => Message::Have(i as u32),
                    15 => Message::Request { index: 1, begin: 2, length: 3 },
                    16 => Message::Bitfield(vec![0xA5; 1 + rng.below(40_000)]),
                    17 => Message::KeepAlive,
                    18 => Message::Extended { id: 3, payload: vec![9; rng.below(300) + 1] },
                    _ => Message::Piece { index: 7, begin: 0, data: Vec::new() },
                }
            })
            .collect()
    }

    fn rng_u32(i: usize) -> u32 {
        (i as u32).wrapping_mul(2654435761) >> 8
    }

    /// Every message read back, in order, or the first error; `sizes` are the reads' sizes.
    fn receive(bytes: Vec<u8>, sizes: Vec<usize>) -> (Vec<Message>, Option<wire::Error>) {
        let mut src = Chunked { data: bytes, at: 0, sizes, next: 0 };
        let mut inb = Inbound::new();
        let mut got = Vec::new();
        loop {
            loop {
                match inb.next() {
                    Ok(Some(m)) => got.push(m),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
            if inb.fill(&mut src).unwrap() == 0 {
                return (got, None);
            }
        }
    }

    #[test]
    fn messages_come_out_as_sent_however_the_reads_split_them() {
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let sent = messages(&mut rng, 300);
            let mut bytes = Vec::new();
            for m in &sent {
                wire::encode(m, &mut bytes);
            }
            let sizes: Vec<usize> = (0..50)
                .map(|_| match rng.below(4) {
                    0 => 1 + rng.below(20),
                    1 => 1 + rng.below(20_000),
                    2 => BODY + HEAD,
                    _ => 1 + rng.below(300_000),
                })
                .collect();
            let (got, err) = receive(bytes, sizes);
            assert!(err.is_none(), "seed {seed}: {err:?}");
            assert_eq!(got.len(), sent.len(), "seed {seed}");
            for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
                assert!(g == s, "seed {seed}: message {i} differs");
            }
        }
    }

    #[test]
    fn standard_blocks_land_in_their_own_buffers() {
        // Whole standard blocks read in large reads: after the first, every payload is read
        // straight into a block buffer, so the receive buffer never holds one.
        let sent: Vec<Message> = (0..64)
            .map(|i| Message::Piece { index: i, begin: 0, data: vec![i as u8; BODY] })
            .collect();
        let mut bytes = Vec::new();
        sent.iter().for_each(|m| wire::encode(m, &mut bytes));
        let mut src = Chunked { data: bytes, at: 0, sizes: vec![70_000], next: 0 };
        let mut inb = Inbound::new();
        let mut got = Vec::new();
        loop {
            while let Some(m) = inb.next().unwrap() {
                got.push(m);
            }
            if inb.fill(&mut src).unwrap() == 0 {
                break;
            }
        }
        assert_eq!(got, sent);
        assert_eq!(inb.copied, 0, "payload bytes copied out of the receive buffer");
    }

    #[test]
    fn errors_are_the_decoders_errors_in_the_same_place() {
        for (bad, want) in [
            (vec![0xFF, 0xFF, 0xFF, 0xFF, 7], wire::Error::TooLong(0xFFFF_FFFF)),
            (vec![0, 0, 0, 5, 7, 0, 0, 0, 1], wire::Error::BadLength { id: 7, len: 5 }),
            (vec![0, 0, 0, 2, 4, 0], wire::Error::BadLength { id: 4, len: 2 }),
        ] {
            let good = Message::Piece { index: 1, begin: 0, data: vec![1; BODY] };
            let mut bytes = Vec::new();
            wire::encode(&good, &mut bytes);
            wire::encode(&good, &mut bytes);
            bytes.extend_from_slice(&bad);
            bytes.extend_from_slice(&[0; 64]);
            for sizes in [vec![5], vec![BODY + HEAD], vec![1 << 20], vec![HEAD + 3, 7]] {
                let (got, err) = receive(bytes.clone(), sizes.clone());
                assert_eq!(got, vec![good.clone(), good.clone()], "{sizes:?}");
                assert_eq!(err, Some(want.clone()), "{sizes:?}");
            }
        }
    }

    #[test]
    fn a_failed_read_keeps_the_bytes_it_had() {
        struct Once(Option<Vec<u8>>);
        impl Read for Once {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.read_vectored(&mut [IoSliceMut::new(buf)])
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                let Some(d) = self.0.take() else { return Err(io::ErrorKind::WouldBlock.into()) };
                let mut at = 0;
                for b in bufs.iter_mut() {
                    let k = (d.len() - at).min(b.len());
                    b[..k].copy_from_slice(&d[at..at + k]);
                    at += k;
                }
                Ok(at)
            }
        }
        let mut bytes = Vec::new();
        wire::encode(&Message::Have(1), &mut bytes);
        wire::encode(&Message::Have(2), &mut bytes);
        let mut inb = Inbound::new();
        assert_eq!(inb.fill(&mut Once(Some(bytes[..12].to_vec()))).unwrap(), 12);
        assert_eq!(inb.next().unwrap(), Some(Message::Have(1)));
        assert_eq!(inb.next().unwrap(), None);
        assert!(inb.fill(&mut Once(None)).is_err());
        assert!(inb.fill(&mut Once(None)).is_err());
        assert_eq!(inb.fill(&mut Once(Some(bytes[12..].to_vec()))).unwrap(), 6);
        assert_eq!(inb.next().unwrap(), Some(Message::Have(2)));
    }
}
