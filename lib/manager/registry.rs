//! The data directory: which torrents btrack knows, kept as plain files so a restart (or an
//! operator with `ls`) sees the same thing.
//!
//! Layout of `DATA_DIR`:
//! - `torrents/<infohash>.torrent`: every registered torrent (hex info-hash, lower case);
//! - `torrents/<infohash>.content`: the name of the file in `content/` that this torrent's
//!   upload created (its owner record);
//! - `content/<name>`: files uploaded through the manager (single-file torrents);
//! - `content/.upload-*.part`: uploads in progress; removed on failure and at start-up.
//!
//! Invariants: a `.torrent` is written to a temporary name and renamed, so the directory
//! never holds a half-written torrent; an entry is in memory iff its file is on disk
//! (modulo concurrent operator edits); content files get their final name only when
//! complete; a content file belongs to the one info-hash whose upload created it (its
//! `.content` record): only that torrent is seeded from it, shown with it, or deletes it,
//! so registering another torrent with the same name cannot reach it; at most `max`
//! torrents are registered, and torrent bytes stay on disk (memory holds a small summary).

use crate::metainfo::{InfoHash, Metainfo};
use std::collections::BTreeMap;
use std::io::Write;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

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
    /// The name of the file in `content/` that this torrent's upload created, if any.
    pub content: Option<String>,
    /// Seconds since the epoch when it was registered (the file's mtime).
    pub added: u64,
}

/// Why a registration failed; the caller picks its answer by the variant.
#[derive(Debug)]
pub enum RegistryError {
    /// Not a usable .torrent.
    Invalid(String),
    /// `max` torrents are registered already.
    Full(usize),
    /// The data directory could not be written.
    Io(String),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::Invalid(e) => write!(f, "not a torrent: {e}"),
            RegistryError::Full(n) => write!(f, "{n} torrents are registered, the limit (--max-registered): delete some first"),
            RegistryError::Io(e) => f.write_str(e),
        }
    }
}

pub struct Registry {
    dir: PathBuf,
    entries: RwLock<BTreeMap<[u8; 20], Entry>>,
    max: usize,
}

/// Default cap on registered torrents.
pub const MAX_REGISTERED: usize = 10_000;

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
        let reg = Registry { dir, entries: RwLock::new(BTreeMap::new()), max: MAX_REGISTERED };
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
                    let content = reg.read_owner(&m.info_hash);
                    reg.entries.write().unwrap().insert(m.info_hash.0, entry(&m, content, added));
                }
                Err(err) => warnings.push(format!("{}: {err}", path.display())),
            }
        }
        Ok((reg, warnings))
    }

    /// Caps the number of registered torrents (those already on disk stay).
    pub fn with_max(mut self, max: usize) -> Registry {
        self.max = max.max(1);
        self
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.max
    }

    fn owner_path(&self, ih: &InfoHash) -> PathBuf {
        self.torrents_dir().join(format!("{}.content", ih.hex()))
    }

    fn read_owner(&self, ih: &InfoHash) -> Option<String> {
        let name = std::fs::read_to_string(self.owner_path(ih)).ok()?;
        let name = name.trim_end_matches('\n');
        (!name.is_empty() && !name.contains('/') && !name.starts_with('.')).then(|| name.to_string())
    }

    /// The .torrent file's bytes, read from disk.
    pub fn torrent_bytes(&self, ih: &InfoHash) -> Result<Vec<u8>, String> {
        crate::cli::read_input(&self.torrent_path(ih))
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

    /// The content of a registered torrent: the file its own upload created, while it is
    /// still there and the right size.
    pub fn content_of(&self, e: &Entry) -> Option<PathBuf> {
        let p = self.content_path(e.content.as_deref()?);
        let m = std::fs::metadata(&p).ok()?;
        (m.is_file() && e.files == 1 && m.len() == e.total_length).then_some(p)
    }

    /// The `bseed` command line that seeds a torrent's uploaded content.
    pub fn bseed_command(&self, e: &Entry) -> Option<String> {
        let content = self.content_of(e)?;
        Some(format!("bseed {} {}", shell_quote(&self.torrent_path(&e.info_hash)), shell_quote(&content)))
    }

    /// Registers a .torrent; answers the entry and whether it is new. `content` names the
    /// file in `content/` that this torrent's upload just created: the torrent becomes its
    /// owner (also when the torrent was registered before without content).
    pub fn add(&self, bytes: Vec<u8>, content: Option<&str>) -> Result<(Entry, bool), RegistryError> {
        let m = Metainfo::parse(&bytes).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let known = self.entries.read().unwrap().get(&m.info_hash.0).cloned();
        if let Some(mut e) = known {
            if let (Some(name), None) = (content, &e.content) {
                self.write_owner(&m.info_hash, name)?;
                e.content = Some(name.to_string());
                self.entries.write().unwrap().insert(m.info_hash.0, e.clone());
            }
            return Ok((e, false));
        }
        if self.is_full() {
            return Err(RegistryError::Full(self.max));
        }
        if let Some(name) = content {
            self.write_owner(&m.info_hash, name)?;
        }
        let path = self.torrent_path(&m.info_hash);
        if let Err(e) = write_atomic(&self.torrents_dir(), &path, &bytes) {
            let _ = std::fs::remove_file(self.owner_path(&m.info_hash));
            return Err(RegistryError::Io(e));
        }
        let e = entry(&m, content.map(str::to_string), secs(std::time::SystemTime::now()));
        self.entries.write().unwrap().insert(m.info_hash.0, e.clone());
        Ok((e, true))
    }

    fn write_owner(&self, ih: &InfoHash, name: &str) -> Result<(), RegistryError> {
        write_atomic(&self.torrents_dir(), &self.owner_path(ih), name.as_bytes()).map_err(RegistryError::Io)
    }

    /// Unregisters a torrent: removes its .torrent and the content its upload created, if any.
    pub fn remove(&self, ih: &InfoHash) -> Result<Option<Entry>, String> {
        let e = match self.entries.read().unwrap().get(&ih.0) {
            Some(e) => e.clone(),
            None => return Ok(None),
        };
        let path = self.torrent_path(ih);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_err(&path, err)),
        }
        self.entries.write().unwrap().remove(&ih.0);
        if let Some(name) = &e.content {
            let _ = std::fs::remove_file(self.content_path(name));
        }
        let _ = std::fs::remove_file(self.owner_path(ih));
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

/// Writes `bytes` to a temporary name in `dir` and renames it to `path`.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = dir.join(format!(".tmp{}-{}", std::process::id(), crate::tracker::client::random_u32()));
    let res = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all())).and_then(|_| std::fs::rename(&tmp, path));
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

fn entry(m: &Metainfo, content: Option<String>, added: u64) -> Entry {
    Entry {
        info_hash: m.info_hash,
        name: m.info.name.clone(),
        total_length: m.info.total_length,
        piece_length: m.info.piece_length,
        pieces: m.info.num_pieces(),
        files: m.info.files.len(),
        announce: m.trackers().into_iter().flatten().next(),
        content,
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


/// Keeps the registries of btracks sharing one Redis alike (`btrack --store`): torrent files
/// go to Redis (`meta`) and come back into every data directory; a deletion through any
/// btrack marks the torrent deleted (`deleted`) and the others drop it. Content and its
/// owner record stay with the btrack that took the upload: only it seeds (`--seed`) and
/// deletes the file. `synced` holds what this btrack saw both here and in Redis, so a torrent
/// missing on one side is told apart: deleted here (withdraw it), deleted elsewhere (drop
/// it), new on either side (copy it), or lost by a Redis that restarted empty (share it
/// again). Answers what changed, for the log.
pub fn sync_shared(
    reg: &Registry,
    shared: &crate::tracker::redis::RedisStore,
    store: &dyn crate::tracker::store::PeerStore,
    synced: &mut std::collections::HashSet<[u8; 20]>,
) -> Vec<String> {
    let mut log = Vec::new();
    let Some(remote) = shared.shared_torrents() else { return log };
    let local: std::collections::HashSet<[u8; 20]> = reg.list().iter().map(|e| e.info_hash.0).collect();
    for ih in local.difference(&remote) {
        let h = InfoHash(*ih);
        if synced.contains(ih) {
            match shared.is_withdrawn(ih) {
                Some(true) => {
                    if reg.remove(&h).is_ok() {
                        store.unregister(ih);
                        synced.remove(ih);
                        log.push(format!("dropped {} (deleted through another btrack)", h.hex()));
                    }
                    continue;
                }
                Some(false) => {}
                None => return log,
            }
        }
        if let Ok(bytes) = reg.torrent_bytes(&h) {
            if shared.share_torrent(ih, &bytes) {
                synced.insert(*ih);
            }
        }
    }
    for ih in remote.difference(&local) {
        let h = InfoHash(*ih);
        if synced.remove(ih) {
            if shared.withdraw_torrent(ih) {
                log.push(format!("withdrew {} (deleted here)", h.hex()));
            }
            continue;
        }
        if let Some(bytes) = shared.shared_torrent(ih) {
            match reg.add(bytes, None) {
                Ok((e, _)) => {
                    store.register(e.info_hash.0);
                    synced.insert(*ih);
                    log.push(format!("took {} {:?} from the shared registry", h.hex(), e.name));
                }
                Err(e) => log.push(format!("cannot take {} from the shared registry: {e}", h.hex())),
            }
        }
    }
    for ih in local.intersection(&remote) {
        synced.insert(*ih);
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    fn torrent(name: &str, len: u64, seed: u8) -> Vec<u8> {
        let info = crate::metainfo::InfoOut {
            files: None,
            length: Some(len),
            name: name.into(),
            piece_length: 16 << 10,
            pieces: vec![seed; 20 * len.div_ceil(16 << 10) as usize],
            private: None,
        };
        crate::create::encode(info, &crate::create::Options::default())
    }

    #[test]
    fn content_belongs_to_the_torrent_that_uploaded_it() {
        let d = std::env::temp_dir().join(format!("shoal-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (reg, _) = Registry::open(&d).unwrap();
        std::fs::write(reg.content_path("img.bin"), vec![1u8; 1000]).unwrap();
        let (owner, _) = reg.add(torrent("img.bin", 1000, 1), Some("img.bin")).unwrap();
        // Same name and length, another info-hash: registered, but the content is not its.
        let (other, new) = reg.add(torrent("img.bin", 1000, 2), None).unwrap();
        assert!(new);
        assert_ne!(owner.info_hash, other.info_hash);
        assert!(reg.content_of(&other).is_none());
        assert_eq!(reg.content_of(&owner), Some(reg.content_path("img.bin")));
        reg.remove(&other.info_hash).unwrap();
        assert!(reg.content_path("img.bin").exists(), "deleting another torrent of the same name keeps the content");
        // The owner record survives a restart; the torrent bytes are read from disk.
        drop(reg);
        let (reg, _) = Registry::open(&d).unwrap();
        let owner = reg.get(&owner.info_hash).unwrap();
        assert_eq!(owner.content.as_deref(), Some("img.bin"));
        assert_eq!(Metainfo::parse(&reg.torrent_bytes(&owner.info_hash).unwrap()).unwrap().info_hash, owner.info_hash);
        reg.remove(&owner.info_hash).unwrap();
        assert!(!reg.content_path("img.bin").exists(), "the owner takes its content with it");
        assert_eq!(std::fs::read_dir(reg.torrents_dir()).unwrap().count(), 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn registrations_are_capped() {
        let d = std::env::temp_dir().join(format!("shoal-registry-cap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (reg, _) = Registry::open(&d).unwrap();
        let reg = reg.with_max(2);
        reg.add(torrent("a", 10, 1), None).unwrap();
        reg.add(torrent("b", 10, 2), None).unwrap();
        assert!(matches!(reg.add(torrent("c", 10, 3), None), Err(RegistryError::Full(2))));
        assert!(matches!(reg.add(torrent("a", 10, 1), None), Ok((_, false))), "a known torrent is not a new registration");
        assert!(matches!(reg.add(b"junk".to_vec(), None), Err(RegistryError::Invalid(_))));
        assert_eq!(reg.len(), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
