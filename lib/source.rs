//! Where a tool's TORRENT argument comes from: a file, `-` (standard input), or an
//! `http://` URL such as btrack's `/torrents/<info-hash>.torrent`.
//!
//! Invariants: every read is bounded in size (files and stdin by [`crate::cli::MAX_INPUT`],
//! URLs by [`MAX_URL_BODY`]) and a URL fetch is bounded in time ([`URL_TIMEOUT`] for the
//! whole exchange, redirects included, at most [`MAX_REDIRECTS`] of them). Magnet links and
//! bare info-hashes are resolved by [`fetch_magnet`]: the info dictionary comes from peers
//! (BEP 9, [`crate::peer::metadata`]), found through the link's `tr=` / `x.pe=` and the
//! tool's `--tracker` / `--peer`, bounded in time, and used only when it hashes to the
//! info-hash. [`read_torrent`] alone refuses them (it has no peers to ask). An existing file
//! always wins over a pattern (a file may be named with 40 hex digits). Errors are one line
//! and carry the argument, escaped for the terminal.

use crate::sanitize::printable;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest body accepted from a URL: 16 MiB (a .torrent of a 20 GB image with 256 KiB pieces
/// is about 1.6 MB).
pub const MAX_URL_BODY: u64 = 16 << 20;
/// Time allowed for a whole URL fetch, redirects included.
pub const URL_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: u32 = 5;
/// Environment variable whose value, when set, is sent as `Authorization: Bearer VALUE` with
/// URL fetches (btrack started with `--token` or `--admin-token` serves .torrent files to
/// holders of either).
pub const TOKEN_ENV: &str = "SHOAL_TOKEN";

/// What [`parse_args`] hands the tool for a lone `-` argument (argh refuses `-` as a
/// positional: it reads it as an option). No real argument holds a NUL byte.
pub const STDIN_ARG: &str = "\0-";

/// Parses the process arguments like [`crate::cli::parse_args`], but lets a lone `-` through
/// as a positional argument (as [`STDIN_ARG`], which [`read_torrent`] reads as standard
/// input): `bdecode --info-hash -`, `bverify - DIR`, `curl … | bfetch - -o DIR`.
pub fn parse_args<T: argh::TopLevelCommand>() -> T {
    use std::io::Write;
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let cmd = Path::new(&args[0]).file_name().and_then(|s| s.to_str()).unwrap_or("shoal").to_string();
    let rest: Vec<&str> = args[1..].iter().map(|a| if a == "-" { STDIN_ARG } else { a.as_str() }).collect();
    match T::from_args(&[&cmd], &rest) {
        Ok(t) => t,
        Err(early) => match early.status {
            Ok(()) => {
                let _ = std::io::stdout().write_all(early.output.as_bytes());
                std::process::exit(0)
            }
            Err(()) => {
                let out = early.output.replace(STDIN_ARG, "-");
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{cmd}: {out}");
                if !out.ends_with('\n') {
                    let _ = writeln!(err);
                }
                let _ = writeln!(err, "Run {cmd} --help for more information.");
                std::process::exit(crate::cli::EXIT_ERROR)
            }
        },
    }
}

/// Where the bytes came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Stdin,
    Url(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", crate::sanitize::printable_path(p)),
            Origin::Stdin => write!(f, "standard input"),
            Origin::Url(u) => write!(f, "{}", printable(u)),
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// `magnet:` URI or a bare info-hash read without peers to ask (see [`fetch_magnet`]).
    Magnet(String),
    /// A URL scheme we do not fetch (https, ftp, …).
    Scheme(String),
    /// A file or stdin could not be read.
    Read { origin: Origin, why: String },
    TooBig { origin: Origin, limit: u64 },
    /// The server answered with a non-200 status.
    Status { url: String, code: u16 },
    /// No answer: connection refused, name not found, timeout, broken transfer.
    Fetch { url: String, why: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Magnet(a) => write!(
                f,
                "{}: a magnet link or info-hash needs peers to fetch the metadata from: give --tracker URL or --peer HOST:PORT (or tr= / x.pe= in the link), or the .torrent file or its http:// URL",
                printable(a)
            ),
            Error::Scheme(a) => write!(f, "{}: only http:// URLs are fetched (the tracker is internal; no TLS)", printable(a)),
            Error::Read { origin, why } => write!(f, "{origin}: {why}"),
            Error::TooBig { origin, limit } => write!(f, "{origin}: larger than {limit} bytes, not a .torrent"),
            Error::Status { url, code: code @ (401 | 403) } => {
                write!(f, "{}: HTTP {code}: the server wants a token (set {TOKEN_ENV})", printable(url))
            }
            Error::Status { url, code: 404 } => write!(f, "{}: HTTP 404: no such torrent on this server", printable(url)),
            Error::Status { url, code } => write!(f, "{}: HTTP {code}", printable(url)),
            Error::Fetch { url, why } => write!(f, "{}: {}", printable(url), printable(why)),
        }
    }
}

impl std::error::Error for Error {}

/// What a TORRENT argument names, before reading anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Stdin,
    Url,
    Magnet,
    OtherScheme,
    File,
}

/// Classifies `arg` (an existing file is always a file).
pub fn kind(arg: &str) -> Kind {
    let lower = arg.to_ascii_lowercase();
    if arg == "-" || arg == STDIN_ARG {
        Kind::Stdin
    } else if lower.starts_with("http://") {
        Kind::Url
    } else if lower.starts_with("magnet:") {
        Kind::Magnet
    } else if Path::new(arg).exists() {
        Kind::File
    } else if is_info_hash(arg) {
        Kind::Magnet
    } else if has_scheme(&lower) {
        Kind::OtherScheme
    } else {
        Kind::File
    }
}

/// 40 hex digits (v1 info-hash) or 32 base32 characters (its BEP 9 short form).
fn is_info_hash(s: &str) -> bool {
    (s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        || (s.len() == 32 && s.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)))
}

/// `scheme://…` with a plausible scheme name (so `C:` style or plain names are files).
fn has_scheme(lower: &str) -> bool {
    match lower.split_once("://") {
        Some((s, _)) => !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b)),
        None => false,
    }
}

/// Reads a TORRENT argument: a path, `-` for stdin, or an `http://` URL.
pub fn read_torrent(arg: &str) -> Result<(Vec<u8>, Origin), Error> {
    match kind(arg) {
        Kind::Magnet => Err(Error::Magnet(arg.to_string())),
        Kind::OtherScheme => Err(Error::Scheme(arg.to_string())),
        Kind::Url => fetch(arg, MAX_URL_BODY, URL_TIMEOUT).map(|b| (b, Origin::Url(arg.to_string()))),
        Kind::Stdin => read_local(Path::new("-"), Origin::Stdin),
        Kind::File => read_local(Path::new(arg), Origin::File(PathBuf::from(arg))),
    }
}

fn read_local(path: &Path, origin: Origin) -> Result<(Vec<u8>, Origin), Error> {
    use std::io::Read;
    let limit = crate::cli::MAX_INPUT;
    let mut buf = Vec::new();
    let r = if origin == Origin::Stdin {
        std::io::stdin().lock().take(limit + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_end(&mut buf))
    };
    if let Err(e) = r {
        return Err(Error::Read { origin, why: e.to_string() });
    }
    if buf.len() as u64 > limit {
        return Err(Error::TooBig { origin, limit });
    }
    Ok((buf, origin))
}

/// Reads and parses a TORRENT argument (see [`read_torrent`]); the error names the origin.
pub fn read_metainfo(arg: &str) -> Result<(crate::metainfo::Metainfo, Origin), String> {
    let (bytes, origin) = read_torrent(arg).map_err(|e| e.to_string())?;
    let m = crate::metainfo::Metainfo::parse(&bytes).map_err(|e| format!("{origin}: {e}"))?;
    Ok((m, origin))
}

/// Where to look for the metadata of a magnet link or info-hash, beyond the link itself.
pub struct MagnetOptions<'a> {
    /// Tracker announce URLs given with `--tracker` (added after the link's `tr=`).
    pub trackers: &'a [String],
    /// `HOST:PORT` peers given with `--peer` (added after the link's `x.pe=`).
    pub peers: &'a [String],
    /// Give up (exit 1) when no peer gave valid metadata within this long.
    pub timeout: Duration,
    /// Program name for the progress lines on stderr.
    pub prog: &'static str,
    pub quiet: bool,
    /// Set by a signal: stop waiting.
    pub shutdown: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// A magnet link resolved: the torrent (trackers from `tr=` and `--tracker`) and every peer
/// named (`x.pe=` and `--peer`), for the session to dial.
pub struct Resolved {
    pub meta: crate::metainfo::Metainfo,
    pub peers: Vec<std::net::SocketAddr>,
}

/// Fetches a magnet link's or bare info-hash's info dictionary from peers (BEP 9) and builds
/// the torrent. Exit codes in the failure: 2 for a malformed link or nobody to ask, 1 when no
/// peer gave metadata that hashes to the info-hash in time.
pub fn fetch_magnet(arg: &str, o: &MagnetOptions<'_>) -> Result<Resolved, crate::cli::Failure> {
    use crate::cli::Failure;
    use crate::peer::metadata;
    let arg = if arg == STDIN_ARG { "-" } else { arg };
    let m = crate::metainfo::Magnet::parse(arg).map_err(|e| Failure::new(2, format!("{}: {e}", printable(arg))))?;
    let mut trackers = m.trackers.clone();
    for t in o.trackers {
        if !trackers.contains(t) {
            trackers.push(t.clone());
        }
    }
    let named: Vec<String> = m.peers.iter().chain(o.peers).cloned().collect();
    let peers = crate::cli::resolve_peers(&named)?;
    if trackers.is_empty() && peers.is_empty() {
        return Err(Failure::new(2, Error::Magnet(arg.to_string()).to_string()));
    }
    let ih = m.info_hash;
    if !o.quiet {
        eprintln!(
            "{}: {ih}: fetching the metadata from peers ({} named, {} tracker{})",
            o.prog,
            peers.len(),
            trackers.len(),
            if trackers.len() == 1 { "" } else { "s" }
        );
    }
    let (prog, quiet) = (o.prog, o.quiet);
    let bytes = metadata::fetch(metadata::Fetch {
        info_hash: ih.0,
        peers: peers.clone(),
        trackers: trackers.clone(),
        timeout: o.timeout,
        shutdown: o.shutdown.clone(),
        log: Box::new(move |line| {
            if !quiet {
                eprintln!("{prog}: {ih}: {}", printable(line));
            }
        }),
    })
    .map_err(|e| Failure::new(1, format!("{ih}: {e}")))?;
    let meta = crate::metainfo::Metainfo::from_info(&bytes, &trackers)
        .map_err(|e| Failure::new(2, format!("{ih}: metadata from peers: {e}")))?;
    if !o.quiet {
        eprintln!(
            "{}: {ih}: got the metadata ({} bytes): {}, {}",
            o.prog,
            bytes.len(),
            printable(&meta.info.name),
            crate::units::human_bytes(meta.info.total_length)
        );
    }
    Ok(Resolved { meta, peers })
}

/// Reads a TORRENT argument like [`read_torrent`], fetching a magnet link's or info-hash's
/// metadata from peers (see [`fetch_magnet`]) and answering it as .torrent bytes
/// (`announce` from its trackers, the exact info dictionary).
pub fn read_torrent_or_magnet(arg: &str, o: &MagnetOptions<'_>) -> Result<(Vec<u8>, Origin), crate::cli::Failure> {
    if kind(arg) == Kind::Magnet {
        let r = fetch_magnet(arg, o)?;
        return Ok((r.meta.to_torrent_bytes(), Origin::Url(arg.to_string())));
    }
    read_torrent(arg).map_err(|e| e.to_string().into())
}

/// [`read_metainfo`], fetching a magnet link's metadata from peers (see [`fetch_magnet`]).
pub fn read_metainfo_or_magnet(arg: &str, o: &MagnetOptions<'_>) -> Result<crate::metainfo::Metainfo, crate::cli::Failure> {
    if kind(arg) == Kind::Magnet {
        return Ok(fetch_magnet(arg, o)?.meta);
    }
    Ok(read_metainfo(arg)?.0)
}

/// GETs `url`, following redirects, bounded by `limit` bytes and `timeout`.
pub fn fetch(url: &str, limit: u64, timeout: Duration) -> Result<Vec<u8>, Error> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(MAX_REDIRECTS)
        .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let fetch_err = |e: ureq::Error| match e {
        ureq::Error::BodyExceedsLimit(_) => Error::TooBig { origin: Origin::Url(url.to_string()), limit },
        ureq::Error::Timeout(_) => Error::Fetch { url: url.to_string(), why: format!("no answer within {}s", timeout.as_secs()) },
        ureq::Error::TooManyRedirects => Error::Fetch { url: url.to_string(), why: format!("more than {MAX_REDIRECTS} redirects") },
        ureq::Error::Io(io) => Error::Fetch { url: url.to_string(), why: io.to_string() },
        other => Error::Fetch { url: url.to_string(), why: other.to_string() },
    };
    let mut req = agent.get(url);
    if let Some(t) = std::env::var_os(TOKEN_ENV).filter(|t| !t.is_empty()) {
        req = req.header("Authorization", format!("Bearer {}", t.to_string_lossy()));
    }
    let mut resp = req.call().map_err(fetch_err)?;
    let code = resp.status().as_u16();
    if code != 200 {
        return Err(Error::Status { url: url.to_string(), code });
    }
    resp.body_mut().with_config().limit(limit).read_to_vec().map_err(fetch_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind("-"), Kind::Stdin);
        assert_eq!(kind("http://127.0.0.1:1/torrents/x.torrent"), Kind::Url);
        assert_eq!(kind("HTTP://h/x"), Kind::Url);
        assert_eq!(kind("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"), Kind::Magnet);
        assert_eq!(kind("0123456789abcdef0123456789abcdef01234567"), Kind::Magnet);
        assert_eq!(kind("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), Kind::Magnet);
        assert_eq!(kind("https://h/x.torrent"), Kind::OtherScheme);
        assert_eq!(kind("ftp://h/x.torrent"), Kind::OtherScheme);
        assert_eq!(kind("image.torrent"), Kind::File);
        assert_eq!(kind("dir/with://odd"), Kind::File);
        assert_eq!(kind("0123456789abcdef"), Kind::File);
    }

    #[test]
    fn errors_are_one_line_and_escaped() {
        let e = read_torrent("magnet:?xt=urn:btih:\x1b[31m").unwrap_err().to_string();
        assert!(e.contains("needs peers") && !e.contains('\x1b') && !e.contains('\n'), "{e}");
        let e = read_torrent("/nonexistent/x.torrent").unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/x.torrent: "), "{e}");
    }
}
