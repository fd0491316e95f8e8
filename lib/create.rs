//! Building a torrent from a file or a directory (what `mktorrent` and btrack's uploads do).
//!
//! The output is deterministic: files of a directory are listed in byte order of their
//! paths, no creation date is written unless asked, and encoding is canonical bencode.

use crate::hashing::{self, Missing, Source};
use crate::metainfo::{self, FileOut, InfoOut, TorrentOut};
use std::fmt;
use std::path::{Path, PathBuf};

pub const MIN_AUTO_PIECE: u64 = 256 << 10;
pub const MAX_AUTO_PIECE: u64 = 16 << 20;

/// Options for a new torrent.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Tracker tiers: the first URL becomes `announce`; more than one URL adds `announce-list`.
    pub trackers: Vec<Vec<String>>,
    pub web_seeds: Vec<String>,
    pub piece_length: Option<u64>,
    pub private: bool,
    pub comment: Option<String>,
    pub name: Option<String>,
    /// Seconds since the epoch for `creation date`; `None` writes none.
    pub creation_date: Option<i64>,
    pub created_by: Option<String>,
    pub threads: usize,
}

#[derive(Debug)]
pub enum Error {
    Io { path: PathBuf, err: std::io::Error },
    Empty(PathBuf),
    BadName(String),
    BadPieceLength(u64),
    Hashing(hashing::Error),
    NotRegular(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, err } => write!(f, "{}: {err}", crate::sanitize::printable_path(path)),
            Error::Empty(p) => write!(f, "{}: nothing to share (no data)", crate::sanitize::printable_path(p)),
            Error::BadName(n) => write!(f, "unusable torrent name \"{}\"", crate::sanitize::printable(n)),
            Error::BadPieceLength(l) => {
                write!(f, "piece length {l} must be a multiple of 16 KiB and at most {}", metainfo::MAX_PIECE_LENGTH)
            }
            Error::Hashing(e) => write!(f, "{e}"),
            Error::NotRegular(p) => write!(f, "{}: not a regular file or directory", crate::sanitize::printable_path(p)),
        }
    }
}

impl std::error::Error for Error {}

/// Picks a piece length: the smallest power of two from 256 KiB up to 16 MiB that keeps
/// the piece count at or below 2 000 (so 20 GB gets 16 MiB pieces, 1 GiB gets 1 MiB).
pub fn auto_piece_length(total: u64) -> u64 {
    let mut p = MIN_AUTO_PIECE;
    while p < MAX_AUTO_PIECE && total.div_ceil(p) > 2000 {
        p *= 2;
    }
    p
}

/// The files under `path` in torrent order with their relative path components.
/// A single file gives one entry with no components.
pub fn list_files(path: &Path) -> Result<Vec<(Vec<String>, Source)>, Error> {
    let io = |err| Error::Io { path: path.to_path_buf(), err };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        return Ok(vec![(Vec::new(), Source::file(path.to_path_buf(), meta.len()))]);
    }
    if !meta.is_dir() {
        return Err(Error::NotRegular(path.to_path_buf()));
    }
    let mut out = Vec::new();
    walk(path, &mut Vec::new(), &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(dir: &Path, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Source)>) -> Result<(), Error> {
    let io = |err| Error::Io { path: dir.to_path_buf(), err };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let p = entry.path();
        let name = entry.file_name().into_string().map_err(|n| Error::BadName(n.to_string_lossy().into_owned()))?;
        let meta = std::fs::metadata(&p).map_err(|err| Error::Io { path: p.clone(), err })?;
        prefix.push(name);
        if meta.is_dir() {
            walk(&p, prefix, out)?;
        } else if meta.is_file() {
            out.push((prefix.clone(), Source::file(p, meta.len())));
        }
        prefix.pop();
    }
    Ok(())
}

/// Builds the .torrent bytes for `path`. `progress` gets (bytes hashed, total bytes).
pub fn create(path: &Path, opts: &Options, progress: &mut dyn FnMut(u64, u64)) -> Result<Vec<u8>, Error> {
    let files = list_files(path)?;
    let single = files.len() == 1 && files[0].0.is_empty();
    let total: u64 = files.iter().map(|f| f.1.length).sum();
    if total == 0 {
        return Err(Error::Empty(path.to_path_buf()));
    }
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
    };
    metainfo::check_component(&name).map_err(|_| Error::BadName(name.clone()))?;
    let piece_length = opts.piece_length.unwrap_or_else(|| auto_piece_length(total));
    if piece_length == 0 || piece_length % (16 << 10) != 0 || piece_length > metainfo::MAX_PIECE_LENGTH {
        return Err(Error::BadPieceLength(piece_length));
    }
    let sources: Vec<Source> = files.iter().map(|f| f.1.clone()).collect();
    let threads = if opts.threads == 0 { hashing::default_threads() } else { opts.threads };
    let hashes = hashing::hash_files(&sources, piece_length, threads, Missing::Error, &mut |done| progress(done, total))
        .map_err(Error::Hashing)?;
    let pieces: Vec<u8> = hashes.into_iter().flat_map(|h| h.expect("strict hashing yields every piece")).collect();
    let info = InfoOut {
        files: if single {
            None
        } else {
            Some(files.iter().map(|(p, s)| FileOut { length: s.length, path: p.clone() }).collect())
        },
        length: if single { Some(total) } else { None },
        name,
        piece_length,
        pieces,
        private: opts.private.then_some(1),
    };
    Ok(encode(info, opts))
}

/// Wraps an `info` dictionary with the torrent's outer keys and encodes it.
pub fn encode(info: InfoOut, opts: &Options) -> Vec<u8> {
    let urls: Vec<String> = opts.trackers.iter().flatten().cloned().collect();
    let t = TorrentOut {
        announce: urls.first().cloned(),
        announce_list: if urls.len() > 1 { Some(opts.trackers.clone()) } else { None },
        comment: opts.comment.clone(),
        created_by: opts.created_by.clone(),
        creation_date: opts.creation_date,
        info,
        url_list: if opts.web_seeds.is_empty() { None } else { Some(opts.web_seeds.clone()) },
    };
    crate::bencode::to_bytes(&t).expect("a torrent always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Metainfo;

    #[test]
    fn auto_piece_lengths() {
        assert_eq!(auto_piece_length(1), 256 << 10);
        assert_eq!(auto_piece_length(1 << 30), 1 << 20);
        assert_eq!(auto_piece_length(20_000_000_000), 16 << 20);
        assert_eq!(auto_piece_length(1 << 50), 16 << 20);
    }

    #[test]
    fn directory_torrent_is_sorted_and_stable() {
        let d = std::env::temp_dir().join(format!("shoal-create-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("top/sub")).unwrap();
        std::fs::write(d.join("top/z"), vec![1u8; 40_000]).unwrap();
        std::fs::write(d.join("top/sub/a"), vec![2u8; 30_000]).unwrap();
        std::fs::write(d.join("top/B"), vec![3u8; 5]).unwrap();
        let opts = Options { trackers: vec![vec!["http://t:1/announce".into()]], piece_length: Some(16384), ..Default::default() };
        let a = create(&d.join("top"), &opts, &mut |_, _| {}).unwrap();
        let b = create(&d.join("top"), &opts, &mut |_, _| {}).unwrap();
        assert_eq!(a, b);
        let m = Metainfo::parse(&a).unwrap();
        let paths: Vec<String> = m.info.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(paths, vec!["B", "sub/a", "z"]);
        assert_eq!(m.info.name, "top");
        assert_eq!(m.info.total_length, 70_005);
        assert_eq!(m.announce.as_deref(), Some("http://t:1/announce"));
        assert!(m.announce_list.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Pieces of a file whose length is not a multiple of the piece length, and of a
    /// directory whose pieces cross file boundaries, are SHA-1 of the concatenated bytes.
    #[test]
    fn pieces_are_sha1_of_the_concatenation() {
        let d = std::env::temp_dir().join(format!("shoal-create-pieces-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("dir")).unwrap();
        let all: Vec<u8> = (0..1_234_567usize).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(d.join("one"), &all).unwrap();
        std::fs::write(d.join("dir/a"), &all[..100_000]).unwrap();
        std::fs::write(d.join("dir/b"), &all[100_000..100_001]).unwrap();
        std::fs::write(d.join("dir/c"), &all[100_001..]).unwrap();
        for (path, plen) in [("one", 16384u64), ("one", 1 << 20), ("dir", 16384), ("dir", 32768)] {
            let opts = Options { piece_length: Some(plen), threads: 2, ..Default::default() };
            let m = Metainfo::parse(&create(&d.join(path), &opts, &mut |_, _| {}).unwrap()).unwrap();
            let want: Vec<[u8; 20]> = all.chunks(plen as usize).map(hashing::sha1).collect();
            assert_eq!(m.info.pieces, want, "{path} {plen}");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
