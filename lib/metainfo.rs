//! Torrent metainfo (BEP 3, with BEP 12 `announce-list`, BEP 19 `url-list`, BEP 27 `private`).
//!
//! [`Metainfo::parse`] is a pure function over the bytes of a .torrent file. It reads torrents
//! made by other tools as libtorrent and Transmission do (keys out of order, bytes after the
//! top-level dictionary), recording those departures in [`Metainfo::warnings`];
//! [`Metainfo::parse_strict`] refuses them. Invariants of a parsed value:
//! - `info_hash` is the SHA-1 of the exact bytes of the `info` dictionary in the file;
//! - the name and every path component are safe single file-name components: not empty,
//!   not `.` or `..`, no `/`, `\` or NUL — joining them under a target directory can never
//!   leave it; no two files share a path and no file is a directory of another;
//! - files are laid end to end in `files` with their byte `offset` in the torrent's data;
//!   `pieces.len()` is exactly `ceil(total_length / piece_length)`.

use crate::bencode::{self, Dict, Value};
use crate::hex;
use serde::Serialize;
use sha1::{Digest, Sha1};
use std::fmt;
use std::path::{Path, PathBuf};

/// Largest piece length accepted (pieces are held in memory whole while hashed).
pub const MAX_PIECE_LENGTH: u64 = 256 << 20;

/// A 20-byte SHA-1 info-hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    pub fn hex(&self) -> String {
        hex::encode(&self.0)
    }
    pub fn from_hex(s: &str) -> Option<InfoHash> {
        let v = hex::decode(s)?;
        Some(InfoHash(v.try_into().ok()?))
    }
    pub fn of(bytes: &[u8]) -> InfoHash {
        InfoHash(Sha1::digest(bytes).into())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.hex())
    }
}

/// One file of the torrent's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path components below the torrent's top directory; empty for a single-file torrent.
    pub path: Vec<String>,
    pub length: u64,
    /// Byte offset of the file's first byte in the torrent's concatenated data.
    pub offset: u64,
    /// A BEP 47 padding file (`attr` contains `p`, as libtorrent's hybrid torrents have):
    /// zeros that are part of the piece data but never exist on disk.
    pub pad: bool,
}

impl FileEntry {
    /// The file's path relative to the torrent's top directory (`name` for a single file).
    pub fn display_path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            self.path.join("/")
        }
    }
}

/// The `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub name: String,
    pub piece_length: u64,
    pub pieces: Vec<[u8; 20]>,
    pub private: bool,
    /// True when the torrent has a `files` list (content is a directory named `name`).
    pub multi_file: bool,
    pub files: Vec<FileEntry>,
    pub total_length: u64,
}

/// A parsed .torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    pub announce: Option<String>,
    pub announce_list: Vec<Vec<String>>,
    pub url_list: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    pub info: Info,
    pub info_hash: InfoHash,
    /// The exact bytes of the `info` dictionary.
    pub raw_info: Vec<u8>,
    /// Departures from canonical bencode that were tolerated (unsorted keys, trailing bytes).
    pub warnings: Vec<bencode::Error>,
}

/// Why a .torrent file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    Bencode(bencode::Error),
    NotADict,
    Missing(&'static str),
    WrongType { key: &'static str, expected: &'static str },
    Invalid { key: &'static str, why: String },
    /// A name or file path that could leave the target directory or is not a plain name:
    /// which entry (`info.name`, `info.files[3].path`), what it holds, and why it is refused.
    UnsafePath { entry: String, value: String, why: &'static str },
    V2Only,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bencode(e) => write!(f, "not a torrent file: {e}"),
            Error::NotADict => write!(f, "not a torrent file: top level is not a dictionary"),
            Error::Missing(k) => write!(f, "invalid torrent: missing '{k}'"),
            Error::WrongType { key, expected } => write!(f, "invalid torrent: '{key}' is not {expected}"),
            Error::Invalid { key, why } => write!(f, "invalid torrent: '{key}' {why}"),
            Error::UnsafePath { entry, value, why } => {
                write!(f, "refusing torrent: unsafe path in {entry} \"{}\": {why}", crate::sanitize::printable(value))
            }
            Error::V2Only => write!(f, "unsupported torrent: BitTorrent v2-only (no 'pieces')"),
        }
    }
}

impl std::error::Error for Error {}

impl From<bencode::Error> for Error {
    fn from(e: bencode::Error) -> Self {
        Error::Bencode(e)
    }
}

fn get_str(d: &Dict<'_>, key: &'static str) -> Result<Option<String>, Error> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_string()))
            .ok_or(Error::WrongType { key, expected: "a UTF-8 string" }),
    }
}

fn get_uint(d: &Dict<'_>, key: &'static str) -> Result<Option<u64>, Error> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => match v.as_int() {
            Some(i) if i >= 0 => Ok(Some(i as u64)),
            Some(_) => Err(Error::Invalid { key, why: "is negative".into() }),
            None => Err(Error::WrongType { key, expected: "an integer" }),
        },
    }
}

/// Why `c` is not a plain, non-empty file name (a path component or the torrent name).
pub fn component_problem(c: &str) -> Option<&'static str> {
    if c.is_empty() {
        Some("empty component")
    } else if c == "." || c == ".." {
        Some("'.' or '..' component")
    } else if c.contains('/') || c.contains('\\') {
        Some("component contains a path separator")
    } else if c.contains('\0') {
        Some("component contains NUL")
    } else if c.len() >= 2 && c.as_bytes()[1] == b':' && c.as_bytes()[0].is_ascii_alphabetic() {
        Some("component is a drive letter")
    } else {
        None
    }
}

/// Checks one path component (or the torrent name): a plain, non-empty file name.
pub fn check_component(c: &str) -> Result<(), Error> {
    match component_problem(c) {
        Some(why) => Err(Error::UnsafePath { entry: "name".into(), value: c.to_string(), why }),
        None => Ok(()),
    }
}

impl Metainfo {
    /// Parses and validates a .torrent file, accepting what libtorrent and Transmission accept:
    /// dictionary keys out of order and bytes after the top-level dictionary (see
    /// [`Metainfo::warnings`]). The info-hash is the SHA-1 of the exact `info` bytes either way.
    pub fn parse(bytes: &[u8]) -> Result<Metainfo, Error> {
        Metainfo::parse_with(bytes, false)
    }

    /// Parses and validates a .torrent file, refusing anything but canonical bencode.
    pub fn parse_strict(bytes: &[u8]) -> Result<Metainfo, Error> {
        Metainfo::parse_with(bytes, true)
    }

    fn parse_with(bytes: &[u8], strict: bool) -> Result<Metainfo, Error> {
        let (root, warnings) = if strict {
            (bencode::decode(bytes)?, Vec::new())
        } else {
            let l = bencode::decode_lenient(bytes)?;
            (l.value, l.warnings)
        };
        let root = root.as_dict().ok_or(Error::NotADict)?;
        let info_dict = match root.get("info") {
            None => return Err(Error::Missing("info")),
            Some(v) => v.as_dict().ok_or(Error::WrongType { key: "info", expected: "a dictionary" })?,
        };
        let info = parse_info(info_dict)?;

        let announce = get_str(root, "announce")?;
        let mut announce_list = Vec::new();
        if let Some(v) = root.get("announce-list") {
            let tiers = v.as_list().ok_or(Error::WrongType { key: "announce-list", expected: "a list" })?;
            for tier in tiers {
                let tier = tier.as_list().ok_or(Error::WrongType { key: "announce-list", expected: "a list of lists" })?;
                let urls: Vec<String> = tier.iter().filter_map(|u| u.as_str().map(str::to_string)).collect();
                if !urls.is_empty() {
                    announce_list.push(urls);
                }
            }
        }
        let url_list = match root.get("url-list") {
            None => Vec::new(),
            Some(Value::Bytes(b)) => std::str::from_utf8(b).map(|s| vec![s.to_string()]).unwrap_or_default(),
            Some(Value::List(l)) => l.iter().filter_map(|u| u.as_str().map(str::to_string)).collect(),
            Some(_) => return Err(Error::WrongType { key: "url-list", expected: "a string or a list" }),
        };
        let creation_date = match root.get("creation date") {
            None => None,
            Some(v) => Some(v.as_int().ok_or(Error::WrongType { key: "creation date", expected: "an integer" })?),
        };
        Ok(Metainfo {
            announce,
            announce_list,
            url_list,
            comment: get_str(root, "comment")?,
            created_by: get_str(root, "created by")?,
            creation_date,
            info,
            info_hash: InfoHash::of(info_dict.raw),
            raw_info: info_dict.raw.to_vec(),
            warnings,
        })
    }

    /// Reads and parses a .torrent file (`-` for standard input).
    pub fn read(path: &Path) -> Result<Metainfo, String> {
        let bytes = crate::cli::read_input(path)?;
        Metainfo::parse(&bytes).map_err(|e| format!("{}: {e}", crate::sanitize::printable_path(path)))
    }

    /// Every tracker URL: `announce-list` tiers when present (BEP 12), else `announce`.
    pub fn trackers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else {
            self.announce.iter().map(|a| vec![a.clone()]).collect()
        }
    }

    /// The magnet URI (BEP 9) of this torrent.
    pub fn magnet(&self) -> String {
        let mut m = format!("magnet:?xt=urn:btih:{}&dn={}", self.info_hash.hex(), url_encode(self.info.name.as_bytes()));
        m.push_str(&format!("&xl={}", self.info.total_length));
        let mut seen = Vec::new();
        for url in self.trackers().into_iter().flatten() {
            if !seen.contains(&url) {
                m.push_str("&tr=");
                m.push_str(&url_encode(url.as_bytes()));
                seen.push(url);
            }
        }
        for ws in &self.url_list {
            m.push_str("&ws=");
            m.push_str(&url_encode(ws.as_bytes()));
        }
        m
    }
}

impl Metainfo {
    /// A Metainfo from the exact bytes of an info dictionary (fetched from peers with BEP 9)
    /// and the trackers to use (one tier each). The info-hash is the SHA-1 of `raw`; bytes
    /// after the dictionary are refused (they would not be part of the hash of the dictionary).
    pub fn from_info(raw: &[u8], trackers: &[String]) -> Result<Metainfo, Error> {
        let l = bencode::decode_lenient(raw)?;
        let d = l.value.as_dict().ok_or(Error::WrongType { key: "info", expected: "a dictionary" })?;
        if d.raw.len() != raw.len() {
            return Err(Error::Invalid { key: "info", why: "has bytes after the dictionary".into() });
        }
        let info = parse_info(d)?;
        Ok(Metainfo {
            announce: trackers.first().cloned(),
            announce_list: if trackers.len() > 1 { trackers.iter().map(|t| vec![t.clone()]).collect() } else { Vec::new() },
            url_list: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
            info,
            info_hash: InfoHash::of(raw),
            raw_info: raw.to_vec(),
            warnings: l.warnings,
        })
    }

    /// The .torrent file of this Metainfo: `announce`, `announce-list` and the exact info bytes.
    pub fn to_torrent_bytes(&self) -> Vec<u8> {
        let mut out = b"d".to_vec();
        let s = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(b);
        };
        if let Some(a) = &self.announce {
            s(&mut out, b"announce");
            s(&mut out, a.as_bytes());
        }
        if !self.announce_list.is_empty() {
            s(&mut out, b"announce-list");
            out.push(b'l');
            for tier in &self.announce_list {
                out.push(b'l');
                tier.iter().for_each(|u| s(&mut out, u.as_bytes()));
                out.push(b'e');
            }
            out.push(b'e');
        }
        s(&mut out, b"info");
        out.extend_from_slice(&self.raw_info);
        out.push(b'e');
        out
    }
}

/// A magnet link (BEP 9) or a bare info-hash: what is known before the metadata arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: the display name, if given.
    pub name: Option<String>,
    /// `tr`: tracker URLs, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `x.pe`: peer addresses (`host:port`), in order.
    pub peers: Vec<String>,
}

/// Why a magnet link was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MagnetError {
    /// No `xt=urn:btih:` parameter.
    NoInfoHash,
    /// A `urn:btih:` value that is neither 40 hex digits nor 32 base32 characters.
    BadInfoHash(String),
    /// A parameter whose percent-escapes or UTF-8 are broken.
    BadEncoding(String),
}

impl fmt::Display for MagnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MagnetError::NoInfoHash => write!(f, "magnet link without xt=urn:btih:<info-hash> (BitTorrent v1)"),
            MagnetError::BadInfoHash(v) => write!(
                f,
                "info-hash '{}' is neither 40 hex digits nor 32 base32 characters",
                crate::sanitize::printable(v)
            ),
            MagnetError::BadEncoding(v) => write!(f, "badly escaped magnet parameter '{}'", crate::sanitize::printable(v)),
        }
    }
}

impl std::error::Error for MagnetError {}

impl Magnet {
    /// Parses `magnet:?xt=urn:btih:…&dn=…&tr=…&x.pe=…` or a bare info-hash (40 hex digits or
    /// 32 base32 characters). Unknown parameters are ignored; a second `xt` is ignored.
    pub fn parse(s: &str) -> Result<Magnet, MagnetError> {
        let Some(query) = s.strip_prefix("magnet:?").or_else(|| s.strip_prefix("MAGNET:?")) else {
            let info_hash = parse_btih(s)?;
            return Ok(Magnet { info_hash, name: None, trackers: Vec::new(), peers: Vec::new() });
        };
        let mut m = Magnet { info_hash: InfoHash([0; 20]), name: None, trackers: Vec::new(), peers: Vec::new() };
        let mut found = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| MagnetError::BadEncoding(pair.to_string()))?;
            match k {
                "xt" if !found => {
                    if let Some(h) = v.strip_prefix("urn:btih:").or_else(|| v.strip_prefix("URN:BTIH:")) {
                        m.info_hash = parse_btih(h)?;
                        found = true;
                    }
                }
                "dn" => m.name = Some(v),
                "tr" if !m.trackers.contains(&v) => m.trackers.push(v),
                "x.pe" => m.peers.push(v),
                _ => {}
            }
        }
        if !found {
            return Err(MagnetError::NoInfoHash);
        }
        Ok(m)
    }
}

fn parse_btih(h: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(h.to_string());
    match h.len() {
        40 => InfoHash::from_hex(h).ok_or_else(bad),
        32 => {
            let mut out = Vec::with_capacity(20);
            let (mut acc, mut bits) = (0u64, 0u32);
            for c in h.bytes() {
                let v = match c.to_ascii_uppercase() {
                    c @ b'A'..=b'Z' => c - b'A',
                    c @ b'2'..=b'7' => c - b'2' + 26,
                    _ => return Err(bad()),
                };
                acc = (acc << 5) | v as u64;
                bits += 5;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                    acc &= (1 << bits) - 1;
                }
            }
            Ok(InfoHash(out.try_into().map_err(|_| bad())?))
        }
        _ => Err(bad()),
    }
}

/// Decodes `%XX` escapes and `+` (as a space, the form encoding many magnet links use);
/// `None` on a broken escape or a result that is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn parse_info(d: &Dict<'_>) -> Result<Info, Error> {
    let name = get_str(d, "name")?.ok_or(Error::Missing("info.name"))?;
    if let Some(why) = component_problem(&name) {
        return Err(Error::UnsafePath { entry: "info.name".into(), value: name, why });
    }
    let piece_length = get_uint(d, "piece length")?.ok_or(Error::Missing("info.piece length"))?;
    if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
        return Err(Error::Invalid { key: "piece length", why: format!("is {piece_length}, outside 1..={MAX_PIECE_LENGTH}") });
    }
    let pieces_raw = match d.get("pieces") {
        None if d.get("meta version").is_some() => return Err(Error::V2Only),
        None => return Err(Error::Missing("info.pieces")),
        Some(v) => v.as_bytes().ok_or(Error::WrongType { key: "pieces", expected: "a byte string" })?,
    };
    if pieces_raw.len() % 20 != 0 {
        return Err(Error::Invalid { key: "pieces", why: format!("length {} is not a multiple of 20", pieces_raw.len()) });
    }
    let pieces: Vec<[u8; 20]> = pieces_raw.chunks_exact(20).map(|c| c.try_into().unwrap()).collect();
    let private = get_uint(d, "private")?.unwrap_or(0) == 1;

    let (multi_file, files) = match (d.get("length"), d.get("files")) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid { key: "info", why: "has both 'length' and 'files'".into() })
        }
        (Some(_), None) => {
            let length = get_uint(d, "length")?.unwrap_or(0);
            (false, vec![FileEntry { path: Vec::new(), length, offset: 0, pad: false }])
        }
        (None, Some(v)) => {
            let list = v.as_list().ok_or(Error::WrongType { key: "files", expected: "a list" })?;
            if list.is_empty() {
                return Err(Error::Invalid { key: "files", why: "is empty".into() });
            }
            let mut files = Vec::with_capacity(list.len());
            let mut offset: u64 = 0;
            for (index, f) in list.iter().enumerate() {
                let f = f.as_dict().ok_or(Error::WrongType { key: "files", expected: "a list of dictionaries" })?;
                let length = get_uint(f, "length")?.ok_or(Error::Missing("files.length"))?;
                let comps = f
                    .get("path")
                    .ok_or(Error::Missing("files.path"))?
                    .as_list()
                    .ok_or(Error::WrongType { key: "path", expected: "a list" })?;
                let entry = || format!("info.files[{index}].path");
                if comps.is_empty() {
                    return Err(Error::UnsafePath { entry: entry(), value: String::new(), why: "empty path" });
                }
                let mut path = Vec::with_capacity(comps.len());
                for c in comps {
                    let c = c.as_str().ok_or(Error::WrongType { key: "path", expected: "a list of UTF-8 strings" })?;
                    path.push(c.to_string());
                }
                if let Some(why) = path.iter().find_map(|c| component_problem(c)) {
                    return Err(Error::UnsafePath { entry: entry(), value: path.join("/"), why });
                }
                let pad = matches!(f.get("attr"), Some(Value::Bytes(a)) if a.contains(&b'p'));
                files.push(FileEntry { path, length, offset, pad });
                offset = offset
                    .checked_add(length)
                    .ok_or(Error::Invalid { key: "files", why: "total length overflows".into() })?;
            }
            check_no_collisions(&files)?;
            (true, files)
        }
        (None, None) => return Err(Error::Missing("info.length or info.files")),
    };
    let total_length: u64 = files.last().map(|f| f.offset + f.length).unwrap_or(0);
    if total_length > (1u64 << 50) {
        return Err(Error::Invalid { key: "length", why: "is absurdly large".into() });
    }
    let expected = total_length.div_ceil(piece_length);
    if pieces.len() as u64 != expected {
        return Err(Error::Invalid {
            key: "pieces",
            why: format!("holds {} hashes but {} bytes in pieces of {} need {}", pieces.len(), total_length, piece_length, expected),
        });
    }
    Ok(Info { name, piece_length, pieces, private, multi_file, files, total_length })
}

/// Refuses two files with the same path, or a file that is also another file's directory.
/// Padding files are left out: they never touch the disk, and libtorrent names them by size
/// (`.pad/16384`), so several share a path.
fn check_no_collisions(files: &[FileEntry]) -> Result<(), Error> {
    let mut paths: Vec<&[String]> = files.iter().filter(|f| !f.pad).map(|f| f.path.as_slice()).collect();
    paths.sort();
    for w in paths.windows(2) {
        if w[1].starts_with(w[0]) {
            return Err(Error::UnsafePath {
                entry: "info.files".into(),
                value: w[0].join("/"),
                why: "duplicate path, or a file used as a directory",
            });
        }
    }
    Ok(())
}

impl Info {
    pub fn num_pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Length of piece `index` (the last one may be short).
    pub fn piece_size(&self, index: usize) -> u64 {
        let start = index as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length)
    }

    /// The parts of files that piece `index` covers: `(file index, offset in file, length)`.
    pub fn piece_spans(&self, index: usize) -> Vec<(usize, u64, u64)> {
        let start = index as u64 * self.piece_length;
        self.byte_spans(start, self.piece_size(index))
    }

    /// The parts of files that bytes `start..start+len` of the data cover.
    /// The index of the file holding byte `offset` of the content (the last file when
    /// `offset` is past the end).
    pub fn file_at(&self, offset: u64) -> usize {
        self.files
            .partition_point(|f| f.offset + f.length <= offset)
            .min(self.files.len().saturating_sub(1))
    }

    pub fn byte_spans(&self, start: u64, len: u64) -> Vec<(usize, u64, u64)> {
        let end = start + len;
        let mut out = Vec::new();
        // First file whose end is beyond `start`.
        let mut i = self.files.partition_point(|f| f.offset + f.length <= start);
        while i < self.files.len() && self.files[i].offset < end {
            let f = &self.files[i];
            let s = start.max(f.offset);
            let e = end.min(f.offset + f.length);
            if e > s {
                out.push((i, s - f.offset, e - s));
            }
            i += 1;
        }
        out
    }

    /// Indices of the files that piece `index` touches.
    pub fn piece_files(&self, index: usize) -> Vec<usize> {
        self.piece_spans(index).into_iter().map(|(f, _, _)| f).collect()
    }

    /// The range of pieces that file `file` touches (empty files touch none).
    pub fn file_pieces(&self, file: usize) -> std::ops::Range<usize> {
        let f = &self.files[file];
        if f.length == 0 {
            return 0..0;
        }
        let first = f.offset / self.piece_length;
        let last = (f.offset + f.length - 1) / self.piece_length;
        first as usize..last as usize + 1
    }

    /// Where file `file` lives below `root` (the content path: the file itself for a
    /// single-file torrent, the top directory for a multi-file one).
    pub fn file_path(&self, root: &Path, file: usize) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in &self.files[file].path {
            p.push(c);
        }
        p
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn url_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

// ---- writing ------------------------------------------------------------------------------

/// The `info` dictionary as written by `mktorrent` (field order is bencode's sorted order).
#[derive(Serialize)]
pub struct InfoOut {
    #[serde(skip_serializing_if = "Option::is_none", with = "some")]
    pub files: Option<Vec<FileOut>>,
    #[serde(skip_serializing_if = "Option::is_none", with = "some")]
    pub length: Option<u64>,
    pub name: String,
    #[serde(rename = "piece length")]
    pub piece_length: u64,
    #[serde(with = "serde_bytes_vec")]
    pub pieces: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none", with = "some")]
    pub private: Option<u8>,
}

#[derive(Serialize)]
pub struct FileOut {
    pub length: u64,
    pub path: Vec<String>,
}

/// A whole .torrent file as written by `mktorrent`.
#[derive(Serialize)]
pub struct TorrentOut {
    #[serde(skip_serializing_if = "Option::is_none", with = "some")]
    pub announce: Option<String>,
    #[serde(rename = "announce-list", skip_serializing_if = "Option::is_none", with = "some")]
    pub announce_list: Option<Vec<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none", with = "some")]
    pub comment: Option<String>,
    #[serde(rename = "created by", skip_serializing_if = "Option::is_none", with = "some")]
    pub created_by: Option<String>,
    #[serde(rename = "creation date", skip_serializing_if = "Option::is_none", with = "some")]
    pub creation_date: Option<i64>,
    pub info: InfoOut,
    #[serde(rename = "url-list", skip_serializing_if = "Option::is_none", with = "some")]
    pub url_list: Option<Vec<String>>,
}

/// bendy writes `Option` as a list; optional keys are skipped when `None` and written bare.
mod some {
    use serde::Serialize;
    pub fn serialize<T: Serialize, S: serde::Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.serialize(s),
            None => s.serialize_unit(),
        }
    }
}

mod serde_bytes_vec {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn magnet_links_parse() {
        use super::{InfoHash, Magnet, MagnetError};
        let hex = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{hex}&dn=a%20b&tr=http%3A%2F%2F127.0.0.1%3A1%2Fannounce&tr=udp://h:2&x.pe=127.0.0.1:6881&foo=bar")).unwrap();
        assert_eq!(m.info_hash, InfoHash::from_hex(hex).unwrap());
        assert_eq!(m.name.as_deref(), Some("a b"));
        assert_eq!(m.trackers, vec!["http://127.0.0.1:1/announce".to_string(), "udp://h:2".to_string()]);
        assert_eq!(m.peers, vec!["127.0.0.1:6881".to_string()]);
        // base32 form of the same hash
        let b32 = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(b32.info_hash, m.info_hash);
        assert_eq!(Magnet::parse(hex).unwrap().info_hash, m.info_hash);
        assert_eq!(Magnet::parse(&hex.to_uppercase()).unwrap().info_hash, m.info_hash);
        assert_eq!(Magnet::parse("magnet:?dn=x"), Err(MagnetError::NoInfoHash));
        assert!(matches!(Magnet::parse("magnet:?xt=urn:btih:abc"), Err(MagnetError::BadInfoHash(_))));
        assert!(matches!(Magnet::parse(&format!("magnet:?xt=urn:btih:{hex}&tr=%zz")), Err(MagnetError::BadEncoding(_))));
        assert!(matches!(Magnet::parse("magnet:?xt=urn:btih:1111111111111111111111111111111111111111%"), Err(MagnetError::BadEncoding(_))));
        // a .torrent's own magnet() reads back
        let t = super::Metainfo::parse(&torrent(single("a b.iso", 100, 32))).unwrap();
        let back = Magnet::parse(&t.magnet()).unwrap();
        assert_eq!(back.info_hash, t.info_hash);
    }

    #[test]
    fn from_info_round_trips_a_torrent() {
        let t = super::Metainfo::parse(&torrent(single("a b.iso", 100, 32))).unwrap();
        let m = super::Metainfo::from_info(&t.raw_info, &["http://127.0.0.1:1/announce".to_string()]).unwrap();
        assert_eq!((m.info_hash, &m.info), (t.info_hash, &t.info));
        let again = super::Metainfo::parse_strict(&m.to_torrent_bytes()).unwrap();
        assert_eq!(again.info_hash, t.info_hash);
        assert_eq!(again.announce.as_deref(), Some("http://127.0.0.1:1/announce"));
        let mut trailing = t.raw_info.clone();
        trailing.push(b'x');
        assert!(super::Metainfo::from_info(&trailing, &[]).is_err());
    }

    use super::*;
    use crate::bencode::{dict, Owned};

    fn torrent(info: Owned) -> Vec<u8> {
        dict([("announce", Owned::str("http://t/announce")), ("info", info)]).encode()
    }

    fn single(name: &str, len: i64, plen: i64) -> Owned {
        let n = (len + plen - 1) / plen;
        dict([
            ("length", Owned::Int(len)),
            ("name", Owned::str(name)),
            ("piece length", Owned::Int(plen)),
            ("pieces", Owned::Bytes(vec![7; 20 * n as usize])),
        ])
    }

    fn multi(paths: &[&[&str]]) -> Owned {
        let files = paths
            .iter()
            .map(|p| dict([("length", Owned::Int(10)), ("path", Owned::List(p.iter().map(|c| Owned::str(c)).collect()))]))
            .collect();
        let n = (10 * paths.len() as i64 + 15) / 16;
        dict([
            ("files", Owned::List(files)),
            ("name", Owned::str("top")),
            ("piece length", Owned::Int(16)),
            ("pieces", Owned::Bytes(vec![1; 20 * n as usize])),
        ])
    }

    #[test]
    fn single_file_parses_and_hashes_raw_info() {
        let bytes = torrent(single("a.iso", 100, 32));
        let m = Metainfo::parse(&bytes).unwrap();
        assert_eq!(m.info.num_pieces(), 4);
        assert_eq!(m.info.piece_size(3), 4);
        assert_eq!(m.info.total_length, 100);
        let raw = single("a.iso", 100, 32).encode();
        assert_eq!(m.raw_info, raw);
        assert_eq!(m.info_hash, InfoHash::of(&raw));
        assert!(m.magnet().starts_with(&format!("magnet:?xt=urn:btih:{}&dn=a.iso", m.info_hash)));
    }

    #[test]
    fn unknown_keys_stay_in_the_info_hash() {
        let mut info = single("a", 10, 16);
        if let Owned::Dict(d) = &mut info {
            d.insert(b"x-extra".to_vec(), Owned::str("kept"));
        }
        let m = Metainfo::parse(&torrent(info.clone())).unwrap();
        assert_eq!(m.info_hash, InfoHash::of(&info.encode()));
    }

    #[test]
    fn multi_file_mapping() {
        let m = Metainfo::parse(&torrent(multi(&[&["a"], &["d", "b"], &["d", "c"]]))).unwrap();
        assert_eq!(m.info.total_length, 30);
        assert_eq!(m.info.piece_spans(0), vec![(0, 0, 10), (1, 0, 6)]);
        assert_eq!(m.info.piece_spans(1), vec![(1, 6, 4), (2, 0, 10)]);
        assert_eq!(m.info.file_pieces(1), 0..2);
        assert_eq!(m.info.file_path(Path::new("/x/top"), 2), PathBuf::from("/x/top/d/c"));
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [&["..", "etc", "passwd"][..], &["/etc"], &[""], &["a/b"], &["a\\b"], &["."], &["x\0y"], &["C:"]] {
            let err = Metainfo::parse(&torrent(multi(&[bad]))).unwrap_err();
            assert!(matches!(&err, Error::UnsafePath { entry, .. } if entry == "info.files[0].path"), "{bad:?}: {err}");
        }
        assert!(matches!(Metainfo::parse(&torrent(single("..", 10, 16))), Err(Error::UnsafePath { .. })));
        assert!(matches!(Metainfo::parse(&torrent(single("a/b", 10, 16))), Err(Error::UnsafePath { .. })));
        assert!(matches!(Metainfo::parse(&torrent(multi(&[&["a"], &["a", "b"]]))), Err(Error::UnsafePath { .. })));
        assert!(matches!(Metainfo::parse(&torrent(multi(&[&["a"], &["a"]]))), Err(Error::UnsafePath { .. })));
        // The error names the refused entry, its whole path and the reason, escaped.
        let err = Metainfo::parse(&torrent(multi(&[&["ok"], &["x\u{1b}[2J", "..", "passwd"]]))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing torrent: unsafe path in info.files[1].path \"x\\u{1b}[2J/../passwd\": '.' or '..' component"
        );
    }

    #[test]
    fn keys_out_of_order_and_trailing_bytes_are_read_with_warnings() {
        // The info dict with "name" before "length", as some tools write it.
        let info = format!("d4:name1:a6:lengthi10e12:piece lengthi16e6:pieces20:{}e", "p".repeat(20));
        let bytes = format!("d8:announce3:x:y4:info{info}ejunk").into_bytes();
        assert!(matches!(Metainfo::parse_strict(&bytes), Err(Error::Bencode(_))));
        let m = Metainfo::parse(&bytes).unwrap();
        assert_eq!(m.info_hash, InfoHash::of(info.as_bytes()));
        assert_eq!(m.raw_info, info.as_bytes());
        assert_eq!(m.info.total_length, 10);
        let kinds: Vec<_> = m.warnings.iter().map(|w| w.kind.clone()).collect();
        assert_eq!(kinds, vec![bencode::ErrorKind::UnsortedKey, bencode::ErrorKind::TrailingData]);
        // Canonical input: no warnings, and strict agrees.
        let good = torrent(single("a", 10, 16));
        assert!(Metainfo::parse(&good).unwrap().warnings.is_empty());
        assert_eq!(Metainfo::parse_strict(&good).unwrap(), Metainfo::parse(&good).unwrap());
    }

    #[test]
    fn inconsistent_pieces_are_refused() {
        let mut info = single("a", 100, 32);
        if let Owned::Dict(d) = &mut info {
            d.insert(b"pieces".to_vec(), Owned::Bytes(vec![0; 60]));
        }
        assert!(matches!(Metainfo::parse(&torrent(info)), Err(Error::Invalid { key: "pieces", .. })));
        assert!(matches!(Metainfo::parse(b"le"), Err(Error::NotADict)));
        assert!(matches!(Metainfo::parse(b"de"), Err(Error::Missing("info"))));
        assert!(matches!(Metainfo::parse(&torrent(single("a", -5, 32))), Err(_)));
        let zero = dict([
            ("length", Owned::Int(5)),
            ("name", Owned::str("a")),
            ("piece length", Owned::Int(0)),
            ("pieces", Owned::Bytes(vec![])),
        ]);
        assert!(matches!(Metainfo::parse(&torrent(zero)), Err(Error::Invalid { key: "piece length", .. })));
    }

    #[test]
    fn serde_writer_is_canonical() {
        let t = TorrentOut {
            announce: Some("http://t/announce".into()),
            announce_list: None,
            comment: Some("c".into()),
            created_by: Some("shoal".into()),
            creation_date: Some(5),
            info: InfoOut {
                files: None,
                length: Some(3),
                name: "n".into(),
                piece_length: 16384,
                pieces: vec![9; 20],
                private: Some(1),
            },
            url_list: Some(vec!["http://w/".into()]),
        };
        let bytes = crate::bencode::to_bytes(&t).unwrap();
        let m = Metainfo::parse(&bytes).unwrap();
        assert!(m.info.private);
        assert_eq!(m.comment.as_deref(), Some("c"));
        assert_eq!(m.url_list, vec!["http://w/".to_string()]);
        assert_eq!(crate::bencode::decode(&bytes).unwrap().to_owned().encode(), bytes);
    }
}
