//! Checking local content against a torrent (what `bverify` does, and what `bseed` and
//! `bfetch` do before trusting data on disk).
//!
//! A file that is missing or shorter than the torrent says makes the pieces that cover the
//! missing bytes bad; a file that is longer is reported with the wrong size (its first
//! `length` bytes are still checked). Only a missing file counts as content that does not
//! match; any other I/O error is an error.

use crate::hashing::{self, Missing, Source};
use crate::metainfo::Info;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    Ok,
    Missing,
    WrongSize,
    BadPieces,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub length: u64,
    /// Size found on disk (`None` when missing).
    pub actual_length: Option<u64>,
    pub status: FileStatus,
    pub bad_pieces: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub path: PathBuf,
    pub pieces_total: usize,
    pub pieces_ok: usize,
    pub bad_pieces: Vec<usize>,
    pub files: Vec<FileReport>,
}

impl Report {
    pub fn complete(&self) -> bool {
        self.bad_pieces.is_empty() && self.files.iter().all(|f| f.status == FileStatus::Ok)
    }

    /// Per piece: does it match.
    pub fn have(&self) -> Vec<bool> {
        let mut have = vec![true; self.pieces_total];
        for &p in &self.bad_pieces {
            have[p] = false;
        }
        have
    }
}

/// Consecutive bad pieces that touch the same files: what a human report names as one line
/// (`bad pieces 0-4999 (5000): disk.img`), so a missing 20 GB file is one line, not 5 000.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRun {
    pub first: usize,
    pub last: usize,
    /// Indices into `Info::files` (padding files left out).
    pub files: Vec<usize>,
}

impl BadRun {
    /// Pieces in the run (at least 1).
    pub fn count(&self) -> usize {
        self.last - self.first + 1
    }
}

/// Groups sorted `bad` piece indices into runs of consecutive pieces touching the same files.
pub fn bad_runs(info: &Info, bad: &[usize]) -> Vec<BadRun> {
    let mut runs: Vec<BadRun> = Vec::new();
    for &p in bad {
        let files: Vec<usize> = info.piece_files(p).into_iter().filter(|&f| !info.files[f].pad).collect();
        match runs.last_mut() {
            Some(r) if r.last + 1 == p && r.files == files => r.last = p,
            _ => runs.push(BadRun { first: p, last: p, files }),
        }
    }
    runs
}

/// Where a torrent's content is when the user names `path` (or nothing).
/// A single-file torrent given a directory looks for `<dir>/<name>`.
pub fn content_path(info: &Info, path: Option<&Path>) -> PathBuf {
    match path {
        None => PathBuf::from(&info.name),
        Some(p) if !info.multi_file && p.is_dir() => p.join(&info.name),
        Some(p) => p.to_path_buf(),
    }
}

/// Re-hashes the content at `root` against `info` on `threads` cores.
pub fn verify(info: &Info, root: &Path, threads: usize, progress: &mut dyn FnMut(u64)) -> Result<Report, hashing::Error> {
    let sources: Vec<Source> = (0..info.files.len())
        .map(|i| Source { path: info.file_path(root, i), length: info.files[i].length, pad: info.files[i].pad })
        .collect();
    let hashes = hashing::hash_files(&sources, info.piece_length, threads, Missing::MarkBad, progress)?;
    let bad_pieces: Vec<usize> = hashes
        .iter()
        .zip(&info.pieces)
        .enumerate()
        .filter(|(_, (got, want))| got.as_ref() != Some(*want))
        .map(|(i, _)| i)
        .collect();
    let mut files = Vec::with_capacity(info.files.len());
    for (i, f) in info.files.iter().enumerate() {
        // Padding files (BEP 47) are zeros by definition, never on disk.
        let actual = if f.pad {
            Some(f.length)
        } else {
            std::fs::metadata(&sources[i].path).ok().filter(|m| m.is_file()).map(|m| m.len())
        };
        let range = info.file_pieces(i);
        let bad: Vec<usize> = if f.pad {
            Vec::new()
        } else {
            bad_pieces.iter().copied().filter(|p| range.contains(p)).collect()
        };
        let status = match actual {
            None => FileStatus::Missing,
            Some(n) if n != f.length => FileStatus::WrongSize,
            Some(_) if !bad.is_empty() => FileStatus::BadPieces,
            Some(_) => FileStatus::Ok,
        };
        files.push(FileReport { path: f.display_path(&info.name), length: f.length, actual_length: actual, status, bad_pieces: bad });
    }
    Ok(Report {
        name: info.name.clone(),
        path: root.to_path_buf(),
        pieces_total: info.num_pieces(),
        pieces_ok: info.num_pieces() - bad_pieces.len(),
        bad_pieces,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    /// Two files of 3 and 2 pieces (piece length 4): pieces 0-2 in a, 3-4 in b.
    fn info() -> Info {
        let pieces = "x".repeat(5 * 20);
        let t = format!(
            "d4:infod5:filesld6:lengthi12e4:pathl1:aeed6:lengthi8e4:pathl1:beee4:name1:d12:piece lengthi4e6:pieces100:{pieces}ee"
        );
        Metainfo::parse(t.as_bytes()).unwrap().info
    }

    #[test]
    fn runs_split_on_gaps_and_on_file_changes() {
        let i = info();
        let runs = bad_runs(&i, &[0, 1, 2, 3, 4]);
        assert_eq!(runs, vec![BadRun { first: 0, last: 2, files: vec![0] }, BadRun { first: 3, last: 4, files: vec![1] }]);
        let runs = bad_runs(&i, &[0, 2]);
        assert_eq!(runs.iter().map(|r| (r.first, r.last, r.count())).collect::<Vec<_>>(), vec![(0, 0, 1), (2, 2, 1)]);
        assert!(bad_runs(&i, &[]).is_empty());
    }

    /// A directory of three files, pieces crossing their boundaries; one file is then cut
    /// short and another removed: only the pieces touching them are bad, nothing panics.
    #[test]
    fn truncated_and_missing_files_are_bad_pieces() {
        let d = std::env::temp_dir().join(format!("shoal-verify-trunc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("top")).unwrap();
        let plen = 16384usize;
        let all: Vec<u8> = (0..40 * plen + 999).map(|i| (i * 13 % 241) as u8).collect();
        let (a, b) = (10 * plen + 5, 25 * plen + 7); // ends of files a and b
        std::fs::write(d.join("top/a"), &all[..a]).unwrap();
        std::fs::write(d.join("top/b"), &all[a..b]).unwrap();
        std::fs::write(d.join("top/c"), &all[b..]).unwrap();
        let opts = crate::create::Options { piece_length: Some(plen as u64), threads: 2, ..Default::default() };
        let t = crate::create::create(&d.join("top"), &opts, &mut |_, _| {}).unwrap();
        let info = Metainfo::parse(&t).unwrap().info;
        assert!(verify(&info, &d.join("top"), 2, &mut |_| {}).unwrap().complete());

        // b loses its last 3 * plen bytes: pieces from that point to the end of b are bad.
        std::fs::write(d.join("top/b"), &all[a..b - 3 * plen]).unwrap();
        let r = verify(&info, &d.join("top"), 2, &mut |_| {}).unwrap();
        assert!(!r.complete());
        assert_eq!(r.bad_pieces, ((b - 3 * plen) / plen..=b / plen).collect::<Vec<_>>());
        assert_eq!(r.files[1].status, FileStatus::WrongSize);
        assert_eq!(r.files[1].actual_length, Some((b - 3 * plen - a) as u64));
        assert_eq!(r.files[0].status, FileStatus::Ok);
        assert_eq!(r.files[2].status, FileStatus::BadPieces); // shares piece b / plen with b

        // c is gone as well.
        std::fs::remove_file(d.join("top/c")).unwrap();
        let r = verify(&info, &d.join("top"), 2, &mut |_| {}).unwrap();
        assert_eq!(r.bad_pieces, ((b - 3 * plen) / plen..info.num_pieces()).collect::<Vec<_>>());
        assert_eq!(r.files[2].status, FileStatus::Missing);
        assert_eq!(r.pieces_ok, (b - 3 * plen) / plen);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
