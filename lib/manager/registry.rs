//! The data directory: which torrents btrack knows, kept as plain files so a restart (or an
//! operator with `ls`) sees the same thing.
//!
//! Layout of `DATA_DIR`:
//! - `torrents/<infohash>.torrent`: every registered torrent (hex info-hash, lower case);
//! - `content/<name>`: files uploaded through the manager (single-file torrents);
//! - `content/.upload-*.part`: uploads in progress; removed on failure and at start-up.
//!
//! Invariants: a `.torrent` is written to a temporary name and renamed, so the directory
//! never holds a half-written torrent; an entry is in memory iff its file is on disk
//! (modulo concurrent operator edits); content files get their final name only when complete.

use crate::metainfo::{InfoHash, Metainfo};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// One registered torrent.
#[derive(Debug, Clone)]
pub struct Entry {
    pub info_hash: InfoHash,
    pub name: String,
    pub total_length: u64,
    pub piece_length: u64,
    pub pieces: usize,
    pub files: usize,
    pub announce: Option<String>,
    /// The .torrent file's bytes.
    pub torrent: Arc<Vec<u8>>,
    /// Seconds since the epoch when it was registered (the file's mtime).
    pub added: u64,
}

pub struct Registry {
    dir: PathBuf,
    entries: RwLock<BTreeMap<[u8; 20], Entry>>,
}

fn io_err(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

impl Registry {
    /// Opens (creating) a data directory and loads its torrents. Answers the registry and
    /// one warning per unreadable .torrent file (those are skipped, not fatal).
    pub fn open(dir: &Path) -> Result<(Registry, Vec<String>), String> {
        for sub in ["torrents", "content"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(|e| io_err(&p, e))?;
        }
        let dir = std::fs::canonicalize(dir).map_err(|e| io_err(dir, e))?;
        // Interrupted uploads from a previous run.
        let content = dir.join("content");
        for e in std::fs::read_dir(&content).map_err(|e| io_err(&content, e))?.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(".upload-") && n.ends_with(".part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let reg = Registry { dir, entries: RwLock::new(BTreeMap::new()) };
        let mut warnings = Vec::new();
        let tdir = reg.torrents_dir();
        for e in std::fs::read_dir(&tdir).map_err(|e| io_err(&tdir, e))?.flatten() {
            let path = e.path();
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with('.') {
                let _ = std::fs::remove_file(&path); // temporary from an interrupted write
                continue;
            }
            if !n.ends_with(".torrent") {
                continue;
            }
            let bytes = match crate::cli::read_input(&path) {
                Ok(b) => b,
                Err(e) => {
                    warnings.push(e);
                    continue;
                }
            };
            match Metainfo::parse(&bytes) {
                Ok(m) => {
                    // Files an operator copied in under another name get the canonical one.
                    let canonical = reg.torrent_path(&m.info_hash);
                    if path != canonical && !canonical.exists() {
                        let _ = std::fs::rename(&path, &canonical);
                    }
                    let added = e.metadata().ok().and_then(|m| m.modified().ok()).map(secs).unwrap_or(0);
                    reg.entries.write().unwrap().insert(m.info_hash.0, entry(&m, bytes, added));
                }
                Err(err) => warnings.push(format!("{}: {err}", path.display())),
            }
        }
        Ok((reg, warnings))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn torrents_dir(&self) -> PathBuf {
        self.dir.join("torrents")
    }
    pub fn content_dir(&self) -> PathBuf {
        self.dir.join("content")
    }
    pub fn torrent_path(&self, ih: &InfoHash) -> PathBuf {
        self.torrents_dir().join(format!("{}.torrent", ih.hex()))
    }
    /// Where uploaded content named `name` lives.
    pub fn content_path(&self, name: &str) -> PathBuf {
        self.content_dir().join(name)
    }

    /// The content of a registered torrent, when it lives in the data directory.
    pub fn content_of(&self, e: &Entry) -> Option<PathBuf> {
        let p = self.content_path(&e.name);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && e.files == 1 && m.len() == e.total_length).then_some(p)
    }

    /// The `bseed` command line that seeds a torrent's uploaded content.
    pub fn bseed_command(&self, e: &Entry) -> Option<String> {
        let content = self.content_of(e)?;
        Some(format!("bseed {} {}", shell_quote(&self.torrent_path(&e.info_hash)), shell_quote(&content)))
    }

    /// Registers a .torrent; answers the entry and whether it is new.
    pub fn add(&self, bytes: Vec<u8>) -> Result<(Entry, bool), String> {
        let m = Metainfo::parse(&bytes).map_err(|e| e.to_string())?;
        if let Some(e) = self.entries.read().unwrap().get(&m.info_hash.0) {
            return Ok((e.clone(), false));
        }
        let path = self.torrent_path(&m.info_hash);
        let tmp = self.torrents_dir().join(format!(".{}.tmp{}", m.info_hash.hex(), crate::tracker::client::random_u32()));
        let res = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_all())).and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(&path, e));
        }
        let e = entry(&m, bytes, secs(std::time::SystemTime::now()));
        self.entries.write().unwrap().insert(m.info_hash.0, e.clone());
        Ok((e, true))
    }

    /// Unregisters a torrent: removes its .torrent and its uploaded content, if any.
    pub fn remove(&self, ih: &InfoHash) -> Result<Option<Entry>, String> {
        let e = match self.entries.read().unwrap().get(&ih.0) {
            Some(e) => e.clone(),
            None => return Ok(None),
        };
        let content = self.content_of(&e);
        let path = self.torrent_path(ih);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err(&path, err)),
        }
        self.entries.write().unwrap().remove(&ih.0);
        if let Some(c) = content {
            let _ = std::fs::remove_file(c);
        }
        Ok(Some(e))
    }

    pub fn get(&self, ih: &InfoHash) -> Option<Entry> {
        self.entries.read().unwrap().get(&ih.0).cloned()
    }

    pub fn list(&self) -> Vec<Entry> {
        let mut v: Vec<Entry> = self.entries.read().unwrap().values().cloned().collect();
        v.sort_by(|a, b| b.added.cmp(&a.added).then(a.name.cmp(&b.name)));
        v
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn entry(m: &Metainfo, bytes: Vec<u8>, added: u64) -> Entry {
    Entry {
        info_hash: m.info_hash,
        name: m.info.name.clone(),
        total_length: m.info.total_length,
        piece_length: m.info.piece_length,
        pieces: m.info.num_pieces(),
        files: m.info.files.len(),
        announce: m.trackers().into_iter().flatten().next(),
        torrent: Arc::new(bytes),
        added,
    }
}

/// Quotes a path for a POSIX shell when it needs it.
pub fn shell_quote(p: &Path) -> String {
    let s = p.to_string_lossy();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(&b)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
