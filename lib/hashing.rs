//! Piece hashing: SHA-1 over the torrent's concatenated file data, on every core.
//!
//! Design (used by `mktorrent` and `bverify`): one worker per core, no separate reader. A
//! worker takes the next unit of work from a shared counter: a group of [`LANES`] whole pieces
//! when the CPU has SHA-NI, else one piece. It reads its pieces with positional reads of
//! [`STEP`] bytes into small page-aligned buffers of its own (so the kernel's copy lands in the
//! core's L2 and the hash reads it from there) and hashes the [`LANES`] pieces at once,
//! interleaved ([`multi`]): one SHA-1 stream is bound by the latency of the SHA-NI round
//! instruction, so four independent streams on one core run about 2.6x as fast as one.
//! Memory is `threads × LANES × STEP` whatever the file size.
//!
//! A piece's bytes may come from several files; padding files (BEP 47) read as zeros. With
//! [`Missing::MarkBad`] a piece that needs bytes from a missing or short file is answered as
//! `None` (and not hashed further); with [`Missing::Error`] that fails the run.
//!
//! [`PieceHasher`] is the streaming variant for data that arrives as a byte stream (an HTTP
//! upload): it hashes piece by piece as bytes pass, holding no data. [`PieceLanes`] is the one
//! for blocks that arrive from peers, several pieces at a time: it keeps the blocks (not
//! copies) until pieces can be hashed several at once.

use crossbeam::channel::unbounded;
use sha1::{Digest, Sha1};
use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes read (and hashed) per piece per step: four lanes of 128 KiB stay in a core's L2
/// between the kernel's copy and the hash. With four lanes, steps of 32 KiB to 512 KiB were
/// within noise of each other (4.1–4.45 GB per CPU-second on the build machine).
const STEP: usize = 128 << 10;

/// Pieces hashed at once by one worker (SHA-NI only): 4 ran at 2.65x the single-stream speed
/// on the AMD EPYC build machine (2 at 1.8x, 3 at 2.2x).
pub const LANES: usize = 4;

/// Alignment of the read buffers. The kernel's copy from the page cache into a buffer that
/// starts 16 bytes into a page (where malloc puts large blocks) runs about 4x slower on this
/// x86-64 than into an aligned one (measured: 0.53 s against 0.13 s of system time per GiB).
const ALIGN: usize = 4096;

/// SHA-1 of one buffer.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// One file of the data to hash, with the length it is expected to have.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub length: u64,
    /// A BEP 47 padding file: `length` zero bytes, nothing is read from `path`.
    pub pad: bool,
}

impl Source {
    pub fn file(path: PathBuf, length: u64) -> Source {
        Source { path, length, pad: false }
    }
}

/// What to do when a file is missing or shorter than expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Fail the whole run (creating a torrent).
    Error,
    /// Report the pieces that cover the missing bytes as unreadable (verifying).
    MarkBad,
}

#[derive(Debug)]
pub enum Error {
    Io { path: PathBuf, err: std::io::Error },
    Changed { path: PathBuf },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, err } => write!(f, "{}: {err}", crate::sanitize::printable_path(path)),
            Error::Changed { path } => write!(f, "{}: file shrank while it was being read", crate::sanitize::printable_path(path)),
        }
    }
}

impl std::error::Error for Error {}

/// The files laid end to end: where each starts in the torrent's data.
struct Layout<'a> {
    files: &'a [Source],
    starts: Vec<u64>,
    missing: Missing,
}

impl<'a> Layout<'a> {
    fn new(files: &'a [Source], missing: Missing) -> Layout<'a> {
        let mut starts = Vec::with_capacity(files.len());
        let mut at = 0u64;
        for f in files {
            starts.push(at);
            at += f.length;
        }
        Layout { files, starts, missing }
    }
}

/// Reads data at torrent offsets, keeping the file it last read open (a missing one is
/// remembered as missing). One per piece being read, so each stream has its own readahead.
struct Cursor<'a> {
    layout: &'a Layout<'a>,
    open: Option<(usize, Option<File>)>,
}

impl<'a> Cursor<'a> {
    fn new(layout: &'a Layout<'a>) -> Cursor<'a> {
        Cursor { layout, open: None }
    }

    /// Fills `buf` with the data at torrent offset `pos`; answers whether every byte was
    /// there (always true with [`Missing::Error`], which fails instead).
    fn read(&mut self, pos: u64, buf: &mut [u8]) -> Result<bool, Error> {
        let Layout { files, starts, missing } = self.layout;
        let mut complete = true;
        let mut filled = 0usize;
        while filled < buf.len() {
            let at = pos + filled as u64;
            // The last file starting at or before `at` (skips empty files).
            let i = starts.partition_point(|&s| s <= at) - 1;
            let src = &files[i];
            let in_file = at - starts[i];
            let n = ((src.length - in_file) as usize).min(buf.len() - filled);
            let dst = &mut buf[filled..filled + n];
            filled += n;
            if src.pad {
                dst.fill(0);
                continue;
            }
            if self.open.as_ref().map(|(j, _)| *j) != Some(i) {
                let f = match File::open(&src.path) {
                    Ok(f) => Some(f),
                    Err(err) if *missing == Missing::MarkBad && err.kind() == std::io::ErrorKind::NotFound => None,
                    Err(err) => return Err(Error::Io { path: src.path.clone(), err }),
                };
                self.open = Some((i, f));
            }
            let got = match &self.open {
                Some((_, Some(f))) => read_full_at(f, dst, in_file).map_err(|err| Error::Io { path: src.path.clone(), err })?,
                _ => 0,
            };
            if got < n {
                if *missing == Missing::Error {
                    return Err(Error::Changed { path: src.path.clone() });
                }
                complete = false;
            }
        }
        Ok(complete)
    }
}

/// A page-aligned read buffer of [`STEP`] bytes.
struct Buf {
    mem: Vec<u8>,
    start: usize,
}

impl Buf {
    fn new() -> Buf {
        let mem = vec![0u8; STEP + ALIGN];
        let start = match mem.as_ptr().align_offset(ALIGN) {
            o if o < ALIGN => o,
            _ => 0,
        };
        Buf { mem, start }
    }

    fn get(&mut self, len: usize) -> &mut [u8] {
        &mut self.mem[self.start..self.start + len]
    }

    fn data(&self, len: usize) -> &[u8] {
        &self.mem[self.start..self.start + len]
    }
}

/// Whether this CPU can hash [`LANES`] pieces at once ([`multi`]).
fn multi_lane_cpu() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Hashes the concatenation of `files` in pieces of `piece_length` bytes on `threads`
/// workers. Answers one entry per piece: its SHA-1, or `None` when (with
/// [`Missing::MarkBad`]) part of it lies in a missing file or beyond a file's end. Any other
/// I/O error (permission, EIO) fails the run. `progress` is called with the number
/// of bytes hashed so far.
pub fn hash_files(
    files: &[Source],
    piece_length: u64,
    threads: usize,
    missing: Missing,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Option<[u8; 20]>>, Error> {
    hash_files_with(files, piece_length, threads, missing, multi_lane_cpu(), progress)
}

/// [`hash_files`], with the multi-lane path allowed or not (tests run both).
fn hash_files_with(
    files: &[Source],
    piece_length: u64,
    threads: usize,
    missing: Missing,
    multi_lane: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<Option<[u8; 20]>>, Error> {
    assert!(piece_length > 0);
    let layout = Layout::new(files, missing);
    let total: u64 = files.iter().map(|f| f.length).sum();
    let num_pieces = total.div_ceil(piece_length) as usize;
    // Units of work: first `groups` groups of LANES whole pieces, then single pieces.
    let full_pieces = (total / piece_length) as usize;
    let groups = if multi_lane && piece_length % 64 == 0 { full_pieces / LANES } else { 0 };
    let units = groups + (num_pieces - groups * LANES);
    let threads = threads.max(1).min(units.max(1));
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (res_tx, res_rx) = unbounded::<(usize, Vec<Option<[u8; 20]>>, u64)>();

    std::thread::scope(|s| {
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let res_tx = res_tx.clone();
            let (layout, next, stop) = (&layout, &next, &stop);
            workers.push(s.spawn(move || -> Result<(), Error> {
                let mut cursors: Vec<Cursor> = (0..LANES).map(|_| Cursor::new(layout)).collect();
                let mut bufs: Vec<Buf> = Vec::new();
                let piece_len = |i: usize| piece_length.min(total - i as u64 * piece_length);
                loop {
                    let u = next.fetch_add(1, Ordering::Relaxed);
                    if u >= units || stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let lanes = if u < groups { LANES } else { 1 };
                    while bufs.len() < lanes {
                        bufs.push(Buf::new());
                    }
                    let first = if u < groups { u * LANES } else { groups * LANES + (u - groups) };
                    let result = if u < groups {
                        hash_group(&mut cursors, &mut bufs, first as u64 * piece_length, piece_length)
                    } else {
                        hash_piece(&mut cursors[0], &mut bufs[0], first as u64 * piece_length, piece_len(first)).map(|d| vec![d])
                    };
                    match result {
                        Ok(digests) => {
                            let bytes = (first..first + lanes).map(piece_len).sum();
                            let _ = res_tx.send((first, digests, bytes));
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
            }));
        }
        drop(res_tx);

        let mut out = vec![None; num_pieces];
        let mut done = 0u64;
        for (first, digests, bytes) in res_rx {
            for (i, d) in digests.into_iter().enumerate() {
                out[first + i] = d;
            }
            done += bytes;
            progress(done);
        }
        for w in workers {
            w.join().expect("hash worker thread panicked")?;
        }
        Ok(out)
    })
}

/// Hashes one piece of `len` bytes at torrent offset `start`, [`STEP`] bytes at a time.
fn hash_piece(cursor: &mut Cursor, buf: &mut Buf, start: u64, len: u64) -> Result<Option<[u8; 20]>, Error> {
    let mut h = Sha1::new();
    let mut off = 0u64;
    while off < len {
        let n = (STEP as u64).min(len - off) as usize;
        let data = buf.get(n);
        if !cursor.read(start + off, data)? {
            return Ok(None);
        }
        h.update(data);
        off += n as u64;
    }
    Ok(Some(h.finalize().into()))
}

/// Hashes the [`LANES`] consecutive pieces of `len` bytes (a multiple of 64) that start at
/// torrent offset `start`, all at once. Only called when the CPU has SHA-NI.
fn hash_group(cursors: &mut [Cursor], bufs: &mut [Buf], start: u64, len: u64) -> Result<Vec<Option<[u8; 20]>>, Error> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut states = [multi::INIT; LANES];
        let mut ok = [true; LANES];
        let mut off = 0u64;
        while off < len {
            let n = (STEP as u64).min(len - off) as usize;
            for l in 0..LANES {
                if ok[l] {
                    ok[l] = cursors[l].read(start + l as u64 * len + off, bufs[l].get(n))?;
                }
            }
            if !ok.iter().any(|&o| o) {
                break;
            }
            let data: [&[[u8; 64]]; LANES] = std::array::from_fn(|l| multi::blocks(bufs[l].data(n)));
            // SAFETY: hash_group runs only where multi_lane_cpu() found SHA-NI and SSE4.1.
            unsafe { multi::compress(&mut states, data) };
            off += n as u64;
        }
        // SAFETY: as above.
        Ok((0..LANES).map(|l| ok[l].then(|| unsafe { multi::finish(&mut states[l], len) })).collect())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (cursors, bufs, start, len);
        unreachable!("multi-lane hashing is x86-64 only")
    }
}

/// SHA-1 of several independent streams at once with the SHA-NI instructions.
///
/// `sha1rnds4`, which does four of SHA-1's 80 rounds, waits for the previous one's result,
/// so a single stream leaves the unit idle most of the time; interleaving the rounds of
/// `N` streams fills it. The round sequence is the one of the sha1 crate's x86 backend
/// (Intel's reference), applied to each lane in turn.
#[cfg(target_arch = "x86_64")]
mod multi {
    use std::arch::x86_64::*;

    pub const INIT: [u32; 5] = super::INIT_STATE;

    /// `data` (a multiple of 64 bytes long) as 64-byte blocks.
    pub fn blocks(data: &[u8]) -> &[[u8; 64]] {
        assert!(data.len() % 64 == 0);
        // SAFETY: [u8; 64] has alignment 1 and the length is a whole number of blocks.
        unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), data.len() / 64) }
    }

    /// Whether four lanes run faster as two interleaved pairs than all four interleaved: it
    /// depends on the CPU's SHA-NI (in memory, GB/s: an AMD EPYC VM 4 lanes 6.0, 2 lanes
    /// 4.0; an Intel Xeon VM 4 lanes 2.30, 2 lanes 2.57, one stream 2.21). Timed once per
    /// process (~5 ms, best of 5): pairs when at least 5 % faster. Both give the same hashes.
    ///
    /// # Safety
    /// As [`compress`].
    unsafe fn pairs() -> bool {
        static PAIRS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *PAIRS.get_or_init(|| {
            const LEN: usize = 256 << 10;
            let data = vec![0x5au8; 4 * LEN];
            let mut best = [std::time::Duration::MAX; 2];
            for _ in 0..5 {
                for (k, pairs) in [false, true].into_iter().enumerate() {
                    let t = std::time::Instant::now();
                    let mut states = [INIT; 4];
                    // SAFETY: the caller's.
                    let lanes = std::array::from_fn(|l| blocks(&data[l * LEN..(l + 1) * LEN]));
                    unsafe {
                        if pairs {
                            as_pairs(&mut states, lanes)
                        } else {
                            interleave(&mut states, lanes)
                        }
                    };
                    std::hint::black_box(&states);
                    best[k] = best[k].min(t.elapsed());
                }
            }
            best[1] * 20 < best[0] * 19
        })
    }

    /// Runs the compression function over the blocks of each lane; every lane must have
    /// the same number of blocks. Four lanes run as two pairs where [`pairs`] found that
    /// faster, any other number all interleaved.
    ///
    /// # Safety
    /// The CPU must have the `sha`, `sse2`, `ssse3` and `sse4.1` features.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress<const N: usize>(states: &mut [[u32; 5]; N], blocks: [&[[u8; 64]]; N]) {
        // SAFETY: the caller's.
        unsafe {
            if N == 4 && pairs() {
                as_pairs(states, blocks)
            } else {
                interleave(states, blocks)
            }
        }
    }

    /// Four lanes (`N` must be 4) as two interleaved pairs.
    ///
    /// # Safety
    /// As [`compress`].
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn as_pairs<const N: usize>(states: &mut [[u32; 5]; N], blocks: [&[[u8; 64]]; N]) {
        let (lo, hi) = states.split_at_mut(2);
        // SAFETY: the caller's.
        unsafe {
            interleave::<2>(lo.try_into().unwrap(), [blocks[0], blocks[1]]);
            interleave::<2>(hi.try_into().unwrap(), [blocks[2], blocks[3]]);
        }
    }

    /// All lanes' rounds interleaved.
    ///
    /// # Safety
    /// As [`compress`].
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub(super) unsafe fn interleave<const N: usize>(states: &mut [[u32; 5]; N], blocks: [&[[u8; 64]]; N]) {
        let n = blocks[0].len();
        assert!(blocks.iter().all(|b| b.len() == n));
        let mask = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0A0B_0C0D_0E0F);
        let mut abcd = [_mm_setzero_si128(); N];
        let mut e = [_mm_setzero_si128(); N];
        for l in 0..N {
            abcd[l] = _mm_shuffle_epi32(_mm_loadu_si128(states[l].as_ptr().cast()), 0b0001_1011);
            e[l] = _mm_set_epi32(states[l][4] as i32, 0, 0, 0);
        }
        for b in 0..n {
            // m[l]: the last five message words (four lanes of 32 bits each) of lane l.
            let mut m = [[_mm_setzero_si128(); 5]; N];
            let mut h0 = abcd;
            let mut h1 = [_mm_setzero_si128(); N];
            for l in 0..N {
                let p: *const __m128i = blocks[l][b].as_ptr().cast();
                for (j, w) in m[l][..4].iter_mut().enumerate() {
                    *w = _mm_shuffle_epi8(_mm_loadu_si128(p.add(j)), mask);
                }
                h1[l] = _mm_sha1rnds4_epu32(h0[l], _mm_add_epi32(e[l], m[l][0]), 0);
            }
            // Rounds 4..16: the message words as loaded.
            macro_rules! rounds {
                ($dst:ident, $src:ident, $w:literal, $f:literal) => {
                    for l in 0..N {
                        $dst[l] = _mm_sha1rnds4_epu32($src[l], _mm_sha1nexte_epu32($dst[l], m[l][$w]), $f);
                    }
                };
            }
            rounds!(h0, h1, 1, 0);
            rounds!(h1, h0, 2, 0);
            rounds!(h0, h1, 3, 0);
            // Rounds 16..80: schedule the next message word into slot $o, then four rounds.
            macro_rules! sched_rounds {
                ($dst:ident, $src:ident, $a:literal, $b:literal, $c:literal, $d:literal, $o:literal, $f:literal) => {
                    for l in 0..N {
                        m[l][$o] = _mm_sha1msg2_epu32(_mm_xor_si128(_mm_sha1msg1_epu32(m[l][$a], m[l][$b]), m[l][$c]), m[l][$d]);
                        $dst[l] = _mm_sha1rnds4_epu32($src[l], _mm_sha1nexte_epu32($dst[l], m[l][$o]), $f);
                    }
                };
            }
            sched_rounds!(h1, h0, 0, 1, 2, 3, 4, 0);
            sched_rounds!(h0, h1, 1, 2, 3, 4, 0, 1);
            sched_rounds!(h1, h0, 2, 3, 4, 0, 1, 1);
            sched_rounds!(h0, h1, 3, 4, 0, 1, 2, 1);
            sched_rounds!(h1, h0, 4, 0, 1, 2, 3, 1);
            sched_rounds!(h0, h1, 0, 1, 2, 3, 4, 1);
            sched_rounds!(h1, h0, 1, 2, 3, 4, 0, 2);
            sched_rounds!(h0, h1, 2, 3, 4, 0, 1, 2);
            sched_rounds!(h1, h0, 3, 4, 0, 1, 2, 2);
            sched_rounds!(h0, h1, 4, 0, 1, 2, 3, 2);
            sched_rounds!(h1, h0, 0, 1, 2, 3, 4, 2);
            sched_rounds!(h0, h1, 1, 2, 3, 4, 0, 3);
            sched_rounds!(h1, h0, 2, 3, 4, 0, 1, 3);
            sched_rounds!(h0, h1, 3, 4, 0, 1, 2, 3);
            sched_rounds!(h1, h0, 4, 0, 1, 2, 3, 3);
            sched_rounds!(h0, h1, 0, 1, 2, 3, 4, 3);
            for l in 0..N {
                abcd[l] = _mm_add_epi32(abcd[l], h0[l]);
                e[l] = _mm_sha1nexte_epu32(h1[l], e[l]);
            }
        }
        for l in 0..N {
            _mm_storeu_si128(states[l].as_mut_ptr().cast(), _mm_shuffle_epi32(abcd[l], 0b0001_1011));
            states[l][4] = _mm_extract_epi32(e[l], 3) as u32;
        }
    }

    /// The digest of a stream of `total` bytes (a multiple of 64) whose blocks are all in
    /// `state`: compresses the padding block and writes the state out big-endian.
    ///
    /// # Safety
    /// As for [`compress`].
    pub unsafe fn finish(state: &mut [u32; 5], total: u64) -> [u8; 20] {
        assert!(total % 64 == 0);
        let mut pad = [0u8; 64];
        pad[0] = 0x80;
        pad[56..].copy_from_slice(&(total * 8).to_be_bytes());
        // SAFETY: the caller's.
        unsafe { compress(std::array::from_mut(state), [std::slice::from_ref(&pad)]) };
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_mut(4).zip(state.iter()) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }
}

/// Reads up to `buf.len()` bytes at `offset`; answers how many were read (fewer only when
/// the file ends first).
fn read_full_at(f: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The number of hashing threads to use: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Hashes a byte stream piece by piece as it arrives.
pub struct PieceHasher {
    piece_length: u64,
    current: Sha1,
    in_piece: u64,
    total: u64,
    pieces: Vec<[u8; 20]>,
}

impl PieceHasher {
    pub fn new(piece_length: u64) -> PieceHasher {
        assert!(piece_length > 0);
        PieceHasher { piece_length, current: Sha1::new(), in_piece: 0, total: 0, pieces: Vec::new() }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((self.piece_length - self.in_piece) as usize).min(data.len());
            self.current.update(&data[..take]);
            self.in_piece += take as u64;
            self.total += take as u64;
            data = &data[take..];
            if self.in_piece == self.piece_length {
                let h = std::mem::replace(&mut self.current, Sha1::new());
                self.pieces.push(h.finalize().into());
                self.in_piece = 0;
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The piece hashes (the last piece may be short) and the number of bytes hashed.
    pub fn finish(mut self) -> (Vec<[u8; 20]>, u64) {
        if self.in_piece > 0 {
            self.pieces.push(self.current.finalize().into());
        }
        (self.pieces, self.total)
    }
}

/// Bytes of blocks a [`PieceLanes`] keeps waiting for lanes to fill before it hashes them
/// anyway.
const KEEP_MAX: usize = 8 << 20;

/// Running SHA-1 of the pieces a disk thread receives, fed block by block, hashing several
/// pieces at once when the CPU has SHA-NI ([`multi`]; one stream leaves the SHA unit mostly
/// idle).
///
/// With SHA-NI the blocks are kept (the buffers, not copies) until [`PieceLanes::work`]
/// hashes them: with `all` false only when [`LANES`] pieces have blocks waiting or more than
/// [`KEEP_MAX`] bytes wait (the caller has more to do: hashing can wait for lanes to fill);
/// with `all` true everything, in groups as wide as the waiting pieces allow. Without SHA-NI
/// blocks are hashed as they come.
///
/// A block that comes before the one it follows (blocks of one piece from two peers, say)
/// waits aside until the gap before it fills, within the same [`KEEP_MAX`] bytes. A piece is
/// given up only when its blocks cannot be put in order that way (a block seen twice, one
/// starting before the next expected byte, one following a block whose length is not a
/// multiple of 64, or no room left to wait): [`PieceLanes::finish`] answers `None` and the
/// caller reads the piece back.
pub struct PieceLanes<B> {
    pieces: std::collections::HashMap<u32, Lane<B>>,
    multi: bool,
    /// Bytes of kept blocks not hashed yet.
    kept: usize,
}

struct Lane<B> {
    /// SHA-1 state (SHA-NI), or the streaming hasher (others).
    state: [u32; 5],
    stream: Option<Sha1>,
    /// Bytes compressed into `state`.
    hashed: u64,
    /// Where the next block must start.
    next: u64,
    in_order: bool,
    blocks: std::collections::VecDeque<B>,
    /// Bytes of `blocks[0]` already compressed.
    used: usize,
    /// Blocks that came early, by offset: they join `blocks` once the bytes before them did.
    ahead: std::collections::BTreeMap<u64, B>,
}

impl<B: AsRef<[u8]>> PieceLanes<B> {
    pub fn new() -> Self {
        Self::with_lanes(multi_lane_cpu())
    }

    /// `multi`: whether to keep blocks and hash pieces several at once (needs SHA-NI).
    fn with_lanes(multi: bool) -> Self {
        PieceLanes { pieces: Default::default(), multi: multi && multi_lane_cpu(), kept: 0 }
    }

    /// Takes block `data` at offset `begin` of piece `index`; `done` gets every buffer this
    /// is finished with (at once, or later from `work` and `finish`).
    pub fn add(&mut self, index: u32, begin: u64, data: B, done: &mut impl FnMut(B)) {
        let multi = self.multi;
        let lane = self.pieces.entry(index).or_insert_with(|| Lane {
            state: INIT_STATE,
            stream: (!multi).then(Sha1::new),
            hashed: 0,
            next: 0,
            in_order: true,
            blocks: Default::default(),
            used: 0,
            ahead: Default::default(),
        });
        if !lane.in_order {
            done(data);
            return;
        }
        let len = data.as_ref().len();
        if begin > lane.next && !lane.ahead.contains_key(&begin) && self.kept + len <= KEEP_MAX {
            // Early: waits for the bytes before it.
            self.kept += len;
            lane.ahead.insert(begin, data);
            return;
        }
        if begin != lane.next {
            Self::give_up(lane, &mut self.kept, done);
            done(data);
            return;
        }
        if !lane.take(data, &mut self.kept, done) {
            Self::give_up(lane, &mut self.kept, done);
            return;
        }
        // The blocks that waited for this one, as far as they now follow on.
        while let Some(e) = lane.ahead.first_entry() {
            if *e.key() != lane.next {
                break;
            }
            let b = e.remove();
            self.kept -= b.as_ref().len();
            if !lane.take(b, &mut self.kept, done) {
                Self::give_up(lane, &mut self.kept, done);
                return;
            }
        }
    }

    /// Stops following `lane` (its digest will be `None`) and hands back everything it
    /// holds.
    fn give_up(lane: &mut Lane<B>, kept: &mut usize, done: &mut impl FnMut(B)) {
        lane.in_order = false;
        *kept -= kept_bytes(lane);
        lane.used = 0;
        lane.blocks.drain(..).for_each(&mut *done);
        std::mem::take(&mut lane.ahead).into_values().for_each(&mut *done);
    }

    /// Hashes kept blocks (see the type's description for `all`).
    pub fn work(&mut self, all: bool, done: &mut impl FnMut(B)) {
        #[cfg(target_arch = "x86_64")]
        loop {
            let all = all || self.kept > KEEP_MAX;
            // Up to LANES pieces with whole 64-byte blocks waiting, and how many.
            let mut group: [Option<(u32, usize)>; LANES] = [None; LANES];
            let mut k = 0;
            for (&i, lane) in &self.pieces {
                let n = compressible(lane);
                if n > 0 && k < LANES {
                    group[k] = Some((i, n));
                    k += 1;
                }
            }
            if k == 0 || (k < LANES && !all) {
                return;
            }
            let n = group[..k].iter().map(|g| g.unwrap().1).min().unwrap();
            let mut lanes: Vec<&mut Lane<B>> = Vec::with_capacity(k);
            // Distinct keys: each lane borrowed once.
            for (i, lane) in self.pieces.iter_mut() {
                if group[..k].iter().any(|g| g.unwrap().0 == *i) {
                    lanes.push(lane);
                }
            }
            // SAFETY (all four arms): `multi` is only set where multi_lane_cpu() found SHA-NI.
            unsafe {
                match k {
                    4 => run_lanes::<B, 4>(&mut lanes, n),
                    3 => run_lanes::<B, 3>(&mut lanes, n),
                    2 => run_lanes::<B, 2>(&mut lanes, n),
                    _ => run_lanes::<B, 1>(&mut lanes, n),
                }
            }
            for lane in lanes {
                lane.hashed += n as u64;
                lane.used += n;
                if lane.used == lane.blocks[0].as_ref().len() {
                    lane.used = 0;
                    done(lane.blocks.pop_front().unwrap());
                }
            }
            self.kept -= n * k;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (all, done);
    }

    /// Bytes of piece `index` kept and not hashed yet (0 for a piece given up or unknown).
    pub fn waiting(&self, index: u32) -> usize {
        self.pieces.get(&index).map_or(0, kept_bytes)
    }

    /// The digest of piece `index` if all its `len` bytes came in order (`None`: read it
    /// back), and forgets the piece.
    pub fn finish(&mut self, index: u32, len: u64, done: &mut impl FnMut(B)) -> Option<[u8; 20]> {
        let mut lane = self.pieces.remove(&index)?;
        let kept = kept_bytes(&lane);
        self.kept -= kept;
        if !lane.in_order || lane.next != len || !lane.ahead.is_empty() {
            lane.blocks.drain(..).for_each(&mut *done);
            lane.ahead.into_values().for_each(done);
            return None;
        }
        if let Some(h) = lane.stream.take() {
            return Some(h.finalize().into());
        }
        // The rest in one lane: whole 64-byte blocks, then the tail with SHA-1's padding.
        let mut tail: Vec<u8> = Vec::with_capacity(128);
        while let Some(b) = lane.blocks.pop_front() {
            let data = &b.as_ref()[std::mem::take(&mut lane.used)..];
            let whole = data.len() / 64 * 64;
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `multi` is only set where multi_lane_cpu() found SHA-NI.
            unsafe {
                multi::compress(std::array::from_mut(&mut lane.state), [multi::blocks(&data[..whole])])
            };
            tail.extend_from_slice(&data[whole..]);
            done(b);
        }
        let total = lane.hashed + kept as u64;
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(total * 8).to_be_bytes());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        unsafe {
            multi::compress(std::array::from_mut(&mut lane.state), [multi::blocks(&tail)])
        };
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_mut(4).zip(lane.state.iter()) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        Some(out)
    }
}

impl<B: AsRef<[u8]>> Default for PieceLanes<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: AsRef<[u8]>> Lane<B> {
    /// Appends `data`, the block that starts at `next`: hashed at once (no SHA-NI) or kept
    /// for the lanes. False (and `data` handed back) if it cannot follow the last kept block,
    /// one whose length is not a multiple of 64 (the lanes compress whole 64-byte blocks).
    fn take(&mut self, data: B, kept: &mut usize, done: &mut impl FnMut(B)) -> bool {
        if self.stream.is_none() && self.next % 64 != 0 {
            done(data);
            return false;
        }
        self.next += data.as_ref().len() as u64;
        match &mut self.stream {
            Some(h) => {
                h.update(data.as_ref());
                done(data);
            }
            None => {
                *kept += data.as_ref().len();
                self.blocks.push_back(data);
            }
        }
        true
    }
}

/// SHA-1's initial state (FIPS 180-4, 5.3.1).
const INIT_STATE: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];

/// Bytes `lane` holds: kept blocks not compressed yet, and blocks waiting ahead.
fn kept_bytes<B: AsRef<[u8]>>(lane: &Lane<B>) -> usize {
    lane.blocks.iter().map(|b| b.as_ref().len()).sum::<usize>() - lane.used
        + lane.ahead.values().map(|b| b.as_ref().len()).sum::<usize>()
}

/// Bytes of `lane`'s first kept block that can be compressed now: whole 64-byte blocks.
fn compressible<B: AsRef<[u8]>>(lane: &Lane<B>) -> usize {
    lane.blocks.front().map_or(0, |b| (b.as_ref().len() - lane.used) / 64 * 64)
}

/// Compresses the next `n` bytes (a multiple of 64, at most what each lane's first block
/// holds) of `N` lanes at once.
///
/// # Safety
/// The CPU must have SHA-NI and SSE4.1 ([`multi_lane_cpu`]).
#[cfg(target_arch = "x86_64")]
unsafe fn run_lanes<B: AsRef<[u8]>, const N: usize>(lanes: &mut [&mut Lane<B>], n: usize) {
    let mut states: [[u32; 5]; N] = std::array::from_fn(|l| lanes[l].state);
    let data: [&[[u8; 64]]; N] = std::array::from_fn(|l| {
        let lane = &lanes[l];
        multi::blocks(&lane.blocks[0].as_ref()[lane.used..lane.used + n])
    });
    // SAFETY: the caller's.
    unsafe { multi::compress(&mut states, data) };
    for l in 0..N {
        lanes[l].state = states[l];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shoal-hashing-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Feeds pieces of the given lengths in blocks of `block` bytes, interleaved, calling
    /// `work` between blocks as `pattern` says; answers each piece's digest.
    fn lanes_digests(multi: bool, lens: &[usize], block: usize, pattern: u64) -> Vec<Option<[u8; 20]>> {
        let mut l: PieceLanes<Vec<u8>> = PieceLanes::with_lanes(multi);
        let mut back = 0usize;
        let mut done = |b: Vec<u8>| back += b.len();
        let pieces: Vec<Vec<u8>> = lens.iter().enumerate().map(|(i, &n)| data(n + i).split_off(i)).collect();
        let mut offs = vec![0usize; lens.len()];
        let mut step = 0u64;
        let mut out = vec![None; lens.len()];
        while offs.iter().zip(lens).any(|(o, n)| o < n) {
            for i in 0..lens.len() {
                if offs[i] < lens[i] {
                    let end = (offs[i] + block).min(lens[i]);
                    l.add(i as u32, offs[i] as u64, pieces[i][offs[i]..end].to_vec(), &mut done);
                    offs[i] = end;
                    step += 1;
                    if (pattern >> (step % 64)) & 1 == 1 {
                        l.work(step % 3 == 0, &mut done);
                    }
                    if offs[i] == lens[i] {
                        out[i] = l.finish(i as u32, lens[i] as u64, &mut done);
                    }
                }
            }
        }
        assert_eq!(l.kept, 0);
        let _ = l;
        assert_eq!(back, lens.iter().sum::<usize>(), "every buffer given back");
        out
    }

    #[test]
    fn lanes_hash_interleaved_pieces_as_one_stream_each() {
        let lens = [65536, 65536, 49152, 65536, 65536, 16384 * 3 + 1000];
        for multi in [false, true] {
            for pattern in [0u64, u64::MAX, 0x5555_5555_5555_5555, 0x0F0F_00FF_1234_8765] {
                let got = lanes_digests(multi, &lens, 16384, pattern);
                for (i, &n) in lens.iter().enumerate() {
                    let want = sha1(&data(n + i)[i..]);
                    assert_eq!(got[i], Some(want), "multi {multi} pattern {pattern:x} piece {i}");
                }
            }
            // Odd block sizes: each whole but the last must be a multiple of 64 to be kept.
            let got = lanes_digests(multi, &[4096 * 3 + 7, 64 * 5], 4096, u64::MAX);
            assert_eq!(got[0], Some(sha1(&data(4096 * 3 + 7))));
            assert_eq!(got[1], Some(sha1(&data(64 * 5 + 1)[1..])));
        }
    }

    #[test]
    fn lanes_give_up_a_piece_they_cannot_order_and_every_buffer_comes_back() {
        for multi in [false, true] {
            let mut l: PieceLanes<Vec<u8>> = PieceLanes::with_lanes(multi);
            let mut back = 0usize;
            let mut done = |b: Vec<u8>| back += b.len();
            let d = data(3 * 16384);
            l.add(8, 0, d[..16384].to_vec(), &mut done);
            l.add(8, 0, d[..16384].to_vec(), &mut done); // the same block again
            l.add(10, 16384, d[16384..32768].to_vec(), &mut done);
            l.add(10, 16384, d[16384..32768].to_vec(), &mut done); // twice, while waiting
            l.add(10, 0, d[..16384].to_vec(), &mut done);
            l.add(11, 32768, d[32768..].to_vec(), &mut done); // waits for a gap never filled
            l.add(11, 0, d[..16384].to_vec(), &mut done);
            l.work(true, &mut done);
            assert_eq!(l.finish(8, 16384, &mut done), None, "multi {multi}");
            assert_eq!(l.finish(10, 32768, &mut done), None);
            assert_eq!(l.finish(11, d.len() as u64, &mut done), None);
            assert_eq!(l.finish(9, 16384, &mut done), None, "never seen");
            // Too short: the digest is not claimed.
            l.add(9, 0, d[..16384].to_vec(), &mut done);
            assert_eq!(l.finish(9, 32768, &mut done), None);
            assert_eq!(l.kept, 0);
            drop(l);
            assert_eq!(back, 16384 * 8);
        }
    }

    #[test]
    fn lanes_put_early_blocks_in_order_and_hash_the_piece_without_reading_back() {
        let d = data(8 * 16384);
        let block = |k: usize| d[k * 16384..(k + 1) * 16384].to_vec();
        // Arrival orders of a piece's 8 blocks (two peers' interleaved, reversed, one late).
        let orders: [[usize; 8]; 4] =
            [[1, 0, 3, 2, 5, 4, 7, 6], [7, 6, 5, 4, 3, 2, 1, 0], [0, 2, 4, 6, 1, 3, 5, 7], [1, 2, 3, 4, 5, 6, 7, 0]];
        for multi in [false, true] {
            for (o, order) in orders.iter().enumerate() {
                let mut l: PieceLanes<Vec<u8>> = PieceLanes::with_lanes(multi);
                let mut back = 0usize;
                let mut done = |b: Vec<u8>| back += b.len();
                for (step, &k) in order.iter().enumerate() {
                    l.add(3, (k * 16384) as u64, block(k), &mut done);
                    if step % 3 == 2 {
                        l.work(step % 2 == 0, &mut done);
                    }
                }
                l.work(true, &mut done);
                assert_eq!(l.finish(3, d.len() as u64, &mut done), Some(sha1(&d)), "multi {multi} order {o}");
                assert_eq!(l.kept, 0);
                drop(l);
                assert_eq!(back, d.len(), "every buffer given back");
            }
        }
    }

    #[test]
    fn early_blocks_wait_within_the_kept_bytes_bound_and_past_it_the_piece_is_given_up() {
        let mut l: PieceLanes<Vec<u8>> = PieceLanes::with_lanes(false);
        let back = std::cell::Cell::new(0usize);
        let mut done = |b: Vec<u8>| back.set(back.get() + b.len());
        let blocks = KEEP_MAX / 16384;
        // Piece 1 misses its first block: all the others wait, up to the bound.
        for k in 1..=blocks {
            l.add(1, (k * 16384) as u64, vec![0u8; 16384], &mut done);
        }
        assert_eq!(l.kept, KEEP_MAX, "waiting blocks count as kept");
        assert_eq!(back.get(), 0);
        // One more cannot wait: the piece is given up and everything of it handed back.
        l.add(1, ((blocks + 1) * 16384) as u64, vec![0u8; 16384], &mut done);
        assert_eq!(l.kept, 0);
        assert_eq!(back.get(), (blocks + 1) * 16384);
        l.add(1, ((blocks + 2) * 16384) as u64, vec![0u8; 16384], &mut done);
        l.add(1, 0, vec![0u8; 16384], &mut done);
        assert_eq!(l.finish(1, ((blocks + 3) * 16384) as u64, &mut done), None);
        assert_eq!(back.get(), (blocks + 3) * 16384);
    }

    /// The ways to hash this machine can run: one piece at a time, and (with SHA-NI) groups.
    fn modes() -> Vec<bool> {
        if multi_lane_cpu() {
            vec![false, true]
        } else {
            vec![false]
        }
    }

    fn bad(got: &[Option<[u8; 20]>]) -> Vec<usize> {
        got.iter().enumerate().filter(|(_, h)| h.is_none()).map(|(i, _)| i).collect()
    }

    /// What every piece should hash to: SHA-1 of each `plen` slice of `all`.
    fn expected(all: &[u8], plen: u64) -> Vec<Option<[u8; 20]>> {
        all.chunks(plen as usize).map(|p| Some(sha1(p))).collect()
    }

    #[test]
    fn parallel_matches_streaming_across_files() {
        let d = tmpdir("par");
        let all = data(3 * 1024 * 1024 + 77);
        let cuts = [0, 1000, 1000, 2_500_000, all.len()];
        let mut sources = Vec::new();
        for (i, w) in cuts.windows(2).enumerate() {
            let p = d.join(format!("f{i}"));
            std::fs::write(&p, &all[w[0]..w[1]]).unwrap();
            sources.push(Source::file(p, (w[1] - w[0]) as u64));
        }
        for multi in modes() {
            for plen in [16384u64, 65536, 1 << 20, 16 << 20] {
                let got = hash_files_with(&sources, plen, 3, Missing::Error, multi, &mut |_| {}).unwrap();
                let mut s = PieceHasher::new(plen);
                for part in all.chunks(12345) {
                    s.update(part);
                }
                let (want, total) = s.finish();
                assert_eq!(total, all.len() as u64);
                assert_eq!(got.into_iter().map(Option::unwrap).collect::<Vec<_>>(), want, "multi {multi} plen {plen}");
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn lanes_match_sha1_crate() {
        if !multi_lane_cpu() {
            return;
        }
        let all = data(64 * 304);
        for blocks in [0usize, 1, 2, 7, 100, 300] {
            // Four different streams of the same length (offset by a block each).
            let lanes: [&[u8]; 4] = std::array::from_fn(|l| &all[l * 64..l * 64 + 64 * blocks]);
            // All four at once, and as two pairs.
            for pairs in [false, true] {
                let mut states = [multi::INIT; 4];
                // SAFETY: the CPU has SHA-NI (checked above).
                unsafe {
                    if pairs {
                        multi::as_pairs(&mut states, lanes.map(multi::blocks))
                    } else {
                        multi::interleave(&mut states, lanes.map(multi::blocks))
                    }
                };
                for l in 0..4 {
                    let got = unsafe { multi::finish(&mut states[l], lanes[l].len() as u64) };
                    assert_eq!(got, sha1(lanes[l]), "lane {l}, {blocks} blocks, pairs {pairs}");
                }
            }
        }
    }

    #[test]
    fn every_piece_and_tail_shape() {
        // Lengths around piece, group and step boundaries; many files, empty ones and a
        // padding file in the middle; more pieces than one group; a short last piece.
        let d = tmpdir("shapes");
        let plen = 16384u64;
        for total in [1usize, 63, 64, 16383, 16384, 16385, 4 * 16384, 4 * 16384 + 1, 9 * 16384 - 1, 600_000] {
            let all = data(total);
            let mut sources = Vec::new();
            let mut all_with_pad = Vec::new();
            let cuts = [0, total / 3, total / 3, total / 2, total];
            for (i, w) in cuts.windows(2).enumerate() {
                let p = d.join(format!("s{total}-{i}"));
                std::fs::write(&p, &all[w[0]..w[1]]).unwrap();
                sources.push(Source::file(p, (w[1] - w[0]) as u64));
                all_with_pad.extend_from_slice(&all[w[0]..w[1]]);
                if i == 1 {
                    sources.push(Source { path: d.join("nowhere"), length: 5000, pad: true });
                    all_with_pad.extend(std::iter::repeat_n(0u8, 5000));
                }
            }
            for multi in modes() {
                for threads in [1, 2, 5] {
                    let got = hash_files_with(&sources, plen, threads, Missing::Error, multi, &mut |_| {}).unwrap();
                    assert_eq!(got, expected(&all_with_pad, plen), "total {total} multi {multi} threads {threads}");
                }
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn odd_piece_length_still_hashes() {
        // A torrent may have any piece length; only multiples of 64 take the grouped path.
        let d = tmpdir("odd");
        let all = data(100_000);
        std::fs::write(d.join("f"), &all).unwrap();
        let sources = vec![Source::file(d.join("f"), all.len() as u64)];
        for multi in modes() {
            for plen in [1000u64, 4, 65_537] {
                let got = hash_files_with(&sources, plen, 2, Missing::MarkBad, multi, &mut |_| {}).unwrap();
                assert_eq!(got, expected(&all, plen));
            }
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn progress_reaches_the_total() {
        let d = tmpdir("progress");
        let all = data(1_000_000);
        std::fs::write(d.join("f"), &all).unwrap();
        let sources = vec![Source::file(d.join("f"), all.len() as u64)];
        for multi in modes() {
            let mut last = 0;
            hash_files_with(&sources, 16384, 2, Missing::Error, multi, &mut |n| {
                assert!(n > last);
                last = n;
            })
            .unwrap();
            assert_eq!(last, all.len() as u64);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn truncated_file_marks_only_the_pieces_past_its_end() {
        let d = tmpdir("trunc");
        let plen = 16384u64;
        let all = data(40 * plen as usize);
        std::fs::write(d.join("a"), &all[..10 * plen as usize]).unwrap();
        // b should hold the other 30 pieces but stops 1000 bytes into its 13th piece.
        let b_len = 30 * plen;
        std::fs::write(d.join("b"), &all[10 * plen as usize..][..12 * plen as usize + 1000]).unwrap();
        let sources = vec![Source::file(d.join("a"), 10 * plen), Source::file(d.join("b"), b_len)];
        for multi in modes() {
            let got = hash_files_with(&sources, plen, 2, Missing::MarkBad, multi, &mut |_| {}).unwrap();
            assert_eq!(bad(&got), (22..40).collect::<Vec<_>>());
            assert_eq!(got[..22], expected(&all, plen)[..22]);
            match hash_files_with(&sources, plen, 2, Missing::Error, multi, &mut |_| {}) {
                Err(Error::Changed { path }) => assert_eq!(path, d.join("b")),
                other => panic!("expected Changed, got {other:?}"),
            }
            // A missing file: every piece it touches is bad, the others are fine.
            std::fs::rename(d.join("b"), d.join("b.away")).unwrap();
            let got = hash_files_with(&sources, plen, 2, Missing::MarkBad, multi, &mut |_| {}).unwrap();
            assert_eq!(bad(&got), (10..40).collect::<Vec<_>>());
            assert!(matches!(hash_files_with(&sources, plen, 2, Missing::Error, multi, &mut |_| {}), Err(Error::Io { .. })));
            std::fs::rename(d.join("b.away"), d.join("b")).unwrap();
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_and_short_files_mark_pieces_bad() {
        let d = tmpdir("bad");
        std::fs::write(d.join("a"), data(100)).unwrap();
        std::fs::write(d.join("c"), data(50)).unwrap(); // expected 100
        let sources = vec![
            Source::file(d.join("a"), 100),
            Source::file(d.join("b"), 100),
            Source::file(d.join("c"), 100),
        ];
        for multi in modes() {
            let _ = std::fs::remove_file(d.join("b"));
            let got = hash_files_with(&sources, 64, 2, Missing::MarkBad, multi, &mut |_| {}).unwrap();
            // b (bytes 100..200) is missing: pieces 1..=3; c is short from byte 250: pieces 3..=4.
            assert_eq!(bad(&got), vec![1, 2, 3, 4]);
            // A short file spoils only the pieces from its new end on.
            std::fs::write(d.join("b"), data(100)).unwrap();
            let got = hash_files_with(&sources, 16, 2, Missing::MarkBad, multi, &mut |_| {}).unwrap();
            assert_eq!(bad(&got), (250 / 16..300usize.div_ceil(16)).collect::<Vec<_>>());
            assert!(hash_files_with(&sources, 64, 2, Missing::Error, multi, &mut |_| {}).is_err());
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
