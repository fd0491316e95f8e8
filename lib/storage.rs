//! Torrent content on disk: one file or many, mapped piece → files, preallocated, read and
//! written with positional I/O (safe from many threads at once), memory bounded whatever
//! the size (nothing is cached here: the kernel's page cache does that).
//!
//! Invariants:
//! - while downloading, content lives under `<dir>/<name>.part` (a file, or a directory for
//!   a multi-file torrent); it is renamed to `<dir>/<name>` only by [`Storage::finalize`],
//!   which the session calls once every piece is verified, after an fsync. A file with its
//!   final name is therefore always complete and correct;
//! - the resume file `<dir>/.<name>.shoal-resume` lists pieces verified so far, in two sets:
//!   those whose data was fsynced before the list was written, and all verified ones. It is
//!   rewritten (atomically) after every verified piece, so a killed process loses nothing; on
//!   restart synced pieces are trusted, verified-but-unsynced ones (a power cut may have lost
//!   them) are re-hashed, and only the rest is fetched again;
//! - every path is built from sanitised components (see `metainfo`), below `dir`.

use crate::metainfo::{Info, InfoHash};
use crate::{hashing, hex, verify};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug)]
pub enum Error {
    Io { path: PathBuf, err: std::io::Error },
    Exists(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, err } => write!(f, "{}: {err}", path.display()),
            Error::Exists(p) => write!(f, "{}: exists and is in the way", p.display()),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// True for a full disk or quota, where retrying will not help.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { err, .. } if err.raw_os_error() == Some(libc::ENOSPC) || err.raw_os_error() == Some(libc::EDQUOT))
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |err| Error::Io { path: path.to_path_buf(), err }
}

/// Open content files of one torrent.
pub struct Storage {
    info: Arc<Info>,
    /// Open files; `None` for BEP 47 padding files, which are zeros and never on disk.
    files: Vec<Option<File>>,
    /// Where the content is now (the `.part` path while downloading).
    root: std::sync::Mutex<PathBuf>,
    /// Where it goes when complete (equal to `root` when seeding finished content).
    final_root: PathBuf,
    resume_path: Option<PathBuf>,
    info_hash: InfoHash,
    /// Sequence number of the newest resume data written (older snapshots are skipped).
    resume_seq: std::sync::Mutex<u64>,
}

/// What [`Storage::prepare_download`] found on disk.
pub struct Prepared {
    pub storage: Storage,
    /// Pieces already verified.
    pub have: Vec<bool>,
    /// How the starting state was established, for the log.
    pub note: String,
}

impl Storage {
    /// Opens finished content for seeding (read-only).
    pub fn open_seed(info: Arc<Info>, info_hash: InfoHash, root: &Path) -> Result<Storage, Error> {
        let mut files = Vec::with_capacity(info.files.len());
        for i in 0..info.files.len() {
            if info.files[i].pad {
                files.push(None);
                continue;
            }
            let p = info.file_path(root, i);
            files.push(Some(File::open(&p).map_err(io(&p))?));
        }
        Ok(Storage { info, files, root: std::sync::Mutex::new(root.to_path_buf()), final_root: root.to_path_buf(), resume_path: None, info_hash, resume_seq: Default::default() })
    }

    /// Gets `<dir>/<name>` ready to download into, re-using whatever verified data exists:
    /// finished content (verified fully), a `.part` with a matching resume file (trusted), or a
    /// `.part` without one (re-checked).
    pub fn prepare_download(
        info: Arc<Info>,
        info_hash: InfoHash,
        dir: &Path,
        threads: usize,
    ) -> Result<Prepared, Error> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let final_root = dir.join(&info.name);
        let part_root = dir.join(format!("{}.part", info.name));
        let resume_path = dir.join(format!(".{}.shoal-resume", info.name));
        let n = info.num_pieces();
        let mut note;
        let have;

        if final_root.symlink_metadata().is_ok() {
            let report = verify::verify(&info, &final_root, threads, &mut |_| {}).map_err(hash_err)?;
            if report.complete() {
                let storage = Storage::open_seed(info, info_hash, &final_root)?;
                return Ok(Prepared { storage, have: vec![true; n], note: "already complete".into() });
            }
            if part_root.symlink_metadata().is_ok() {
                return Err(Error::Exists(part_root));
            }
            // An older or damaged copy: keep what matches, fetch the rest.
            std::fs::rename(&final_root, &part_root).map_err(io(&final_root))?;
            have = report.have();
            note = format!("re-using {} of {} pieces of the existing copy", have.iter().filter(|h| **h).count(), n);
        } else if part_root.symlink_metadata().is_ok() {
            match read_resume(&resume_path, &info_hash, n).filter(|_| sizes_match(&info, &part_root)) {
                Some((synced, verified)) => {
                    // Trust what was synced; re-hash what was verified but maybe not on disk.
                    let seed = Storage::open_seed(info.clone(), info_hash, &part_root)?;
                    let mut buf = Vec::new();
                    let mut bits = synced;
                    let mut rechecked = 0;
                    for i in 0..n {
                        if verified[i] && !bits[i] {
                            rechecked += 1;
                            bits[i] = seed.check_piece(i, &mut buf)?;
                        }
                    }
                    have = bits;
                    note = format!(
                        "resuming: {} of {} pieces verified before ({} re-checked)",
                        have.iter().filter(|h| **h).count(),
                        n,
                        rechecked
                    );
                }
                None => {
                    let report = verify::verify(&info, &part_root, threads, &mut |_| {}).map_err(hash_err)?;
                    have = report.have();
                    note = format!("re-checked partial download: {} of {} pieces good", have.iter().filter(|h| **h).count(), n);
                }
            }
        } else {
            have = vec![false; n];
            note = "starting fresh".into();
        }

        let mut files = Vec::with_capacity(info.files.len());
        for i in 0..info.files.len() {
            if info.files[i].pad {
                files.push(None);
                continue;
            }
            let p = info.file_path(&part_root, i);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&p).map_err(io(&p))?;
            preallocate(&f, info.files[i].length).map_err(io(&p))?;
            files.push(Some(f));
        }
        if have.iter().all(|h| *h) && n > 0 {
            note.push_str(" (all pieces present)");
        }
        let storage = Storage { info, files, root: std::sync::Mutex::new(part_root), final_root, resume_path: Some(resume_path), info_hash, resume_seq: Default::default() };
        if note.is_empty() {
            note = "ready".into();
        }
        Ok(Prepared { storage, have, note })
    }

    pub fn info(&self) -> &Arc<Info> {
        &self.info
    }

    /// Where the content is now.
    pub fn root(&self) -> PathBuf {
        self.root.lock().unwrap().clone()
    }

    pub fn final_root(&self) -> &Path {
        &self.final_root
    }

    /// Writes `data` at `begin` within piece `index`.
    pub fn write(&self, index: usize, begin: u64, data: &[u8]) -> Result<(), Error> {
        let start = index as u64 * self.info.piece_length + begin;
        let mut done = 0usize;
        for (f, off, len) in self.info.byte_spans(start, data.len() as u64) {
            let chunk = &data[done..done + len as usize];
            if let Some(file) = &self.files[f] {
                file.write_all_at(chunk, off).map_err(|err| Error::Io { path: self.path_of(f), err })?;
            }
            done += len as usize;
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `begin` within piece `index`.
    pub fn read(&self, index: usize, begin: u64, buf: &mut [u8]) -> Result<(), Error> {
        let start = index as u64 * self.info.piece_length + begin;
        let mut done = 0usize;
        for (f, off, len) in self.info.byte_spans(start, buf.len() as u64) {
            let chunk = &mut buf[done..done + len as usize];
            match &self.files[f] {
                Some(file) => file.read_exact_at(chunk, off).map_err(|err| Error::Io { path: self.path_of(f), err })?,
                None => chunk.fill(0),
            }
            done += len as usize;
        }
        Ok(())
    }

    /// Reads piece `index` into `buf` and checks it against the torrent's hash.
    pub fn check_piece(&self, index: usize, buf: &mut Vec<u8>) -> Result<bool, Error> {
        buf.resize(self.info.piece_size(index) as usize, 0);
        self.read(index, 0, buf)?;
        Ok(hashing::sha1(buf) == self.info.pieces[index])
    }

    fn path_of(&self, f: usize) -> PathBuf {
        self.info.file_path(&self.root(), f)
    }

    /// Flushes data to disk.
    pub fn sync(&self) -> Result<(), Error> {
        for (i, f) in self.files.iter().enumerate() {
            if let Some(f) = f {
                f.sync_data().map_err(|err| Error::Io { path: self.path_of(i), err })?;
            }
        }
        Ok(())
    }

    /// Records verified pieces (snapshot number `seq`; older snapshots than one already
    /// written are skipped). With `sync`, the data is fsynced first and `have` is recorded as
    /// synced; otherwise `synced` says which pieces an earlier sync covered.
    pub fn save_resume(&self, seq: u64, synced: &[bool], have: &[bool], sync: bool) -> Result<(), Error> {
        let Some(path) = &self.resume_path else { return Ok(()) };
        let mut last = self.resume_seq.lock().unwrap();
        if seq < *last {
            return Ok(());
        }
        *last = seq;
        if sync {
            self.sync()?;
        }
        let bits = |b: &[bool]| hex::encode(&crate::peer::wire::bitfield_bytes(b));
        let text = format!(
            "shoal-resume 2\n{}\n{}\n{}\n",
            self.info_hash.hex(),
            bits(if sync { have } else { synced }),
            bits(have)
        );
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    /// Moves complete, verified content to its final name and removes the resume file.
    pub fn finalize(&self) -> Result<PathBuf, Error> {
        let mut root = self.root.lock().unwrap();
        if *root == self.final_root {
            return Ok(self.final_root.clone());
        }
        for (i, f) in self.files.iter().enumerate() {
            if let Some(f) = f {
                f.sync_data().map_err(|err| Error::Io { path: self.info.file_path(&root, i), err })?;
            }
        }
        if self.final_root.symlink_metadata().is_ok() {
            return Err(Error::Exists(self.final_root.clone()));
        }
        std::fs::rename(&*root, &self.final_root).map_err(io(&root))?;
        if let Some(dir) = self.final_root.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        if let Some(p) = &self.resume_path {
            let _ = std::fs::remove_file(p);
        }
        *root = self.final_root.clone();
        Ok(self.final_root.clone())
    }
}

fn hash_err(e: hashing::Error) -> Error {
    match e {
        hashing::Error::Io { path, err } => Error::Io { path, err },
        hashing::Error::Changed { path } => {
            Error::Io { path, err: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file changed while read") }
        }
    }
}

fn sizes_match(info: &Info, root: &Path) -> bool {
    (0..info.files.len()).filter(|i| !info.files[*i].pad).all(|i| {
        std::fs::metadata(info.file_path(root, i)).map(|m| m.len() == info.files[i].length).unwrap_or(false)
    })
}

/// Reads a resume file: (pieces synced to disk, pieces verified).
fn read_resume(path: &Path, ih: &InfoHash, n: usize) -> Option<(Vec<bool>, Vec<bool>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "shoal-resume 2" || lines.next()? != ih.hex() {
        return None;
    }
    let mut bits = || crate::peer::wire::parse_bitfield(&hex::decode(lines.next()?)?, n);
    let synced = bits()?;
    let verified = bits()?;
    Some((synced, verified))
}

/// Reserves `len` bytes for `f` (so a full disk shows at the start, not half-way), falling
/// back to a sparse `set_len` where the filesystem cannot preallocate.
fn preallocate(f: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let cur = f.metadata()?.len();
    if cur == len {
        return Ok(());
    }
    if cur > len {
        return f.set_len(len);
    }
    if len > 0 {
        // SAFETY: plain syscall on a valid, open file descriptor.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len as libc::off_t) };
        match rc {
            0 => return Ok(()),
            libc::EOPNOTSUPP | libc::EINVAL => {}
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
    f.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{self, Options};
    use crate::metainfo::Metainfo;

    fn setup(tag: &str) -> (PathBuf, Metainfo, Vec<Vec<u8>>) {
        let d = std::env::temp_dir().join(format!("shoal-storage-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("src/top/sub")).unwrap();
        let a: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let b: Vec<u8> = (0..70_001u32).map(|i| (i % 241) as u8).collect();
        std::fs::write(d.join("src/top/a"), &a).unwrap();
        std::fs::write(d.join("src/top/sub/b"), &b).unwrap();
        let bytes = create::create(&d.join("src/top"), &Options { piece_length: Some(16384), ..Default::default() }, &mut |_, _| {}).unwrap();
        (d, Metainfo::parse(&bytes).unwrap(), vec![a, b])
    }

    #[test]
    fn download_write_resume_finalize() {
        let (d, m, _) = setup("dl");
        let info = Arc::new(m.info.clone());
        let seed = Storage::open_seed(info.clone(), m.info_hash, &d.join("src/top")).unwrap();
        let out = d.join("out");
        let p = Storage::prepare_download(info.clone(), m.info_hash, &out, 2).unwrap();
        assert!(p.have.iter().all(|h| !h));
        let n = info.num_pieces();
        let mut buf = Vec::new();
        let mut have = vec![false; n];
        for i in 0..n / 2 {
            let mut piece = vec![0u8; info.piece_size(i) as usize];
            seed.read(i, 0, &mut piece).unwrap();
            p.storage.write(i, 0, &piece).unwrap();
            assert!(p.storage.check_piece(i, &mut buf).unwrap());
            have[i] = true;
        }
        p.storage.save_resume(1, &have, &have, true).unwrap();
        assert!(out.join("top.part/sub/b").exists());
        drop(p);
        // Restart: the resume file is trusted.
        let p = Storage::prepare_download(info.clone(), m.info_hash, &out, 2).unwrap();
        assert_eq!(p.have, have, "{}", p.note);
        for i in n / 2..n {
            let mut piece = vec![0u8; info.piece_size(i) as usize];
            seed.read(i, 0, &mut piece).unwrap();
            p.storage.write(i, 0, &piece).unwrap();
        }
        let fin = p.storage.finalize().unwrap();
        assert_eq!(fin, out.join("top"));
        assert!(!out.join("top.part").exists());
        assert!(!out.join(".top.shoal-resume").exists());
        assert!(verify::verify(&info, &fin, 2, &mut |_| {}).unwrap().complete());
        // A third start finds it complete.
        let p = Storage::prepare_download(info, m.info_hash, &out, 2).unwrap();
        assert!(p.have.iter().all(|h| *h));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn part_without_resume_is_rechecked() {
        let (d, m, files) = setup("recheck");
        let info = Arc::new(m.info.clone());
        let out = d.join("out");
        std::fs::create_dir_all(out.join("top.part/sub")).unwrap();
        std::fs::write(out.join("top.part/a"), &files[0]).unwrap();
        let p = Storage::prepare_download(info.clone(), m.info_hash, &out, 2).unwrap();
        // a is 50 000 bytes: pieces 0..=2 lie wholly inside it.
        assert_eq!(&p.have[..4], &[true, true, true, false]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
