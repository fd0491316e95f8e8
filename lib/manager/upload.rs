//! Upload a file, get a torrent: streams an HTTP body into the data directory while hashing
//! it piece by piece ([`PieceHasher`]), then registers the torrent.
//!
//! Invariants: memory use is one 1 MiB buffer plus the piece digests, whatever the size;
//! the body goes to `content/.upload-*.part` and is linked to `content/<name>` only once
//! complete and hashed, so a failed or interrupted upload leaves no content and no
//! torrent; the name is one plain file-name component (no paths); the piece length is the
//! one `mktorrent` would pick ([`auto_piece_length`]) unless the client names one, so the
//! info-hash equals `mktorrent`'s for the same file.

use super::registry::{Entry, Registry, RegistryError};
use crate::create::{self, auto_piece_length, Options};
use crate::hashing::PieceHasher;
use crate::metainfo::{self, InfoOut};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Why an upload failed, with the HTTP status to answer.
#[derive(Debug)]
pub struct UploadError {
    pub status: u16,
    pub message: String,
}

impl fmt::Display for UploadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn fail<T>(status: u16, message: impl Into<String>) -> Result<T, UploadError> {
    Err(UploadError { status, message: message.into() })
}

/// Makes an upload name safe: the last path component, control characters removed.
pub fn sanitize_name(raw: &str) -> Result<String, UploadError> {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = last.chars().filter(|c| !c.is_control()).collect();
    let name = name.trim().to_string();
    if name.starts_with('.') || name.len() > 255 || metainfo::check_component(&name).is_err() {
        return fail(400, format!("unusable file name {raw:?} (a plain name, not starting with '.')"));
    }
    Ok(name)
}

/// Removes the temporary file unless disarmed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What an upload needs to know.
pub struct UploadRequest<'a> {
    pub name: &'a str,
    pub length: u64,
    pub piece_length: Option<u64>,
    pub announce: String,
    pub max_upload: u64,
    /// The torrent's `url-list` (BEP 19 web seeds).
    pub web_seeds: Vec<String>,
}

/// Streams `body` (exactly `req.length` bytes) into the data directory and registers the
/// torrent. `progress` is told how many bytes arrived so far.
pub fn upload(reg: &Registry, body: &mut dyn Read, req: &UploadRequest, progress: &dyn Fn(u64)) -> Result<Entry, UploadError> {
    let name = sanitize_name(req.name)?;
    if req.length == 0 {
        return fail(400, "empty upload: nothing to share");
    }
    if req.length > req.max_upload {
        return fail(413, format!("upload of {} bytes is larger than the limit of {} bytes (--max-upload)", req.length, req.max_upload));
    }
    let piece_length = req.piece_length.unwrap_or_else(|| auto_piece_length(req.length));
    if piece_length == 0 || piece_length % (16 << 10) != 0 || piece_length > metainfo::MAX_PIECE_LENGTH {
        return fail(400, format!("piece length {piece_length} must be a multiple of 16 KiB and at most {}", metainfo::MAX_PIECE_LENGTH));
    }
    if reg.is_full() {
        return fail(507, RegistryError::Full(reg.max()).to_string());
    }
    let final_path = reg.content_path(&name);
    if final_path.symlink_metadata().is_ok() {
        return fail(409, format!("a file named {name:?} was already uploaded (delete its torrent first, or pick another name)"));
    }
    let tmp = reg.content_dir().join(format!(".upload-{}-{:08x}.part", std::process::id(), crate::tracker::client::random_u32()));
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp) {
        Ok(f) => f,
        Err(e) => return fail(500, format!("cannot create {}: {e}", tmp.display())),
    };
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut hasher = PieceHasher::new(piece_length);
    let mut buf = vec![0u8; 1 << 20];
    let mut got: u64 = 0;
    while got < req.length {
        let want = ((req.length - got) as usize).min(buf.len());
        let n = match body.read(&mut buf[..want]) {
            Ok(0) => return fail(400, format!("upload ended after {got} of {} bytes", req.length)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return fail(408, format!("upload failed after {got} of {} bytes: {e}", req.length)),
            Err(e) => return fail(400, format!("upload failed after {got} of {} bytes: {e}", req.length)),
        };
        hasher.update(&buf[..n]);
        if let Err(e) = file.write_all(&buf[..n]) {
            let status = if e.raw_os_error() == Some(28) { 507 } else { 500 };
            return fail(status, format!("writing {}: {e}", tmp.display()));
        }
        got += n as u64;
        progress(got);
    }
    if let Err(e) = file.sync_all() {
        return fail(500, format!("writing {}: {e}", tmp.display()));
    }
    drop(file);
    let (pieces, total) = hasher.finish();
    debug_assert_eq!(total, got);
    let info = InfoOut { files: None, length: Some(total), name: name.clone(), piece_length, pieces: pieces.concat(), private: None };
    let opts = Options {
        trackers: vec![vec![req.announce.clone()]],
        web_seeds: req.web_seeds.clone(),
        created_by: Some(format!("btrack (shoal {})", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    };
    let torrent = create::encode(info, &opts);
    // No-clobber publish: link fails if the name appeared meanwhile.
    if let Err(e) = std::fs::hard_link(&tmp, &final_path) {
        return if e.kind() == std::io::ErrorKind::AlreadyExists {
            fail(409, format!("a file named {name:?} was uploaded meanwhile"))
        } else {
            fail(500, format!("{}: {e}", final_path.display()))
        };
    }
    if let Some(p) = guard.0.take() {
        let _ = std::fs::remove_file(p);
    }
    match reg.add(torrent, Some(&name)) {
        Ok((entry, _)) => Ok(entry),
        Err(e) => {
            let _ = std::fs::remove_file(&final_path);
            let status = match e {
                RegistryError::Full(_) => 507,
                RegistryError::Invalid(_) | RegistryError::Io(_) => 500,
            };
            fail(status, format!("registering the torrent: {e}"))
        }
    }
}

/// The announce URL to put in an uploaded torrent: `--public-url` or what the client used.
pub fn announce_url(public_url: Option<&str>, host: Option<&str>, fallback: &str, token: Option<&str>) -> String {
    let base = match (public_url, host) {
        (Some(p), _) => p.trim_end_matches('/').to_string(),
        (None, Some(h)) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) => format!("http://{h}"),
        _ => format!("http://{fallback}"),
    };
    let base = base.strip_suffix("/announce").unwrap_or(&base).to_string();
    match token {
        Some(t) => format!("{base}/announce/{t}"),
        None => format!("{base}/announce"),
    }
}

/// Test support: whether `dir` holds any upload leftovers.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().contains(".upload-")).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(sanitize_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(sanitize_name("C:\\x\\file.iso").unwrap(), "file.iso");
        assert!(sanitize_name("..").is_err());
        assert!(sanitize_name("").is_err());
        assert!(sanitize_name(".hidden").is_err());
        assert!(sanitize_name("a/").is_err());
        assert_eq!(sanitize_name("a\nb").unwrap(), "ab");
    }

    #[test]
    fn upload_matches_create_and_failure_leaves_nothing() {
        let d = std::env::temp_dir().join(format!("shoal-upload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (reg, _) = Registry::open(&d).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let req = UploadRequest { name: "f.bin", length: data.len() as u64, piece_length: None, announce: "http://x/announce".into(), max_upload: 1 << 30, web_seeds: Vec::new() };
        let e = upload(&reg, &mut &data[..], &req, &|_| {}).unwrap();
        std::fs::write(d.join("f.bin"), &data).unwrap();
        let made = create::create(&d.join("f.bin"), &Options::default(), &mut |_, _| {}).unwrap();
        assert_eq!(e.info_hash, metainfo::Metainfo::parse(&made).unwrap().info_hash);
        assert_eq!(std::fs::read(reg.content_path("f.bin")).unwrap(), data);
        // Truncated body: error, nothing left behind.
        let req2 = UploadRequest { name: "g.bin", ..req };
        let err = upload(&reg, &mut &data[..500], &req2, &|_| {}).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(!reg.content_path("g.bin").exists());
        assert!(leftovers(&reg.content_dir()).is_empty());
        assert_eq!(reg.len(), 1);
        let again = upload(&reg, &mut &data[..], &UploadRequest { name: "f.bin", ..req2 }, &|_| {}).unwrap_err();
        assert_eq!(again.status, 409);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
