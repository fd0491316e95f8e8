//! What every binary shares: argument parsing with argh, `prog: error: …` lines on stderr,
//! exit codes, reading `-` as stdin, and treating a closed stdout (a broken pipe) as success.
//!
//! Exit codes common to every tool: 0 success, 2 usage or I/O error; each tool documents
//! its others (e.g. `bverify` exits 1 when content does not match).

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;

/// Exit code for usage errors, unreadable input and I/O errors.
pub const EXIT_ERROR: i32 = 2;

/// A failure to report: the exit code, one line of text for a person, and the error that
/// caused it when there is one (kept as a value, so policy such as "a broken pipe is
/// success" reads its type, never its text).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into(), source: None }
    }

    /// A failure caused by `source`; the message is `context: source`.
    pub fn caused_by(code: i32, context: impl fmt::Display, source: impl StdError + Send + Sync + 'static) -> Failure {
        Failure { code, message: format!("{context}: {source}"), source: Some(Box::new(source)) }
    }

    /// Whether an [`io::Error`] of kind [`io::ErrorKind::BrokenPipe`] is anywhere in the
    /// chain of causes (the reader of our output went away: not an error for a Unix tool).
    pub fn is_broken_pipe(&self) -> bool {
        self.source.as_deref().is_some_and(|e| chain_has_broken_pipe(e))
    }
}

/// Walks `e` and its sources, looking inside `io::Error`s that wrap another error too.
fn chain_has_broken_pipe(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                if chain_has_broken_pipe(inner) {
                    return true;
                }
            }
        }
        cur = e.source();
    }
    false
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::new(EXIT_ERROR, message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::new(EXIT_ERROR, message)
    }
}

/// An I/O error with no more context: exit code 2, the error kept as the source.
impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure { code: EXIT_ERROR, message: e.to_string(), source: Some(Box::new(e)) }
    }
}

/// Parses the process arguments into `T`; `--help` prints to stdout and exits 0, a usage
/// error prints to stderr and exits 2.
pub fn parse_args<T: argh::TopLevelCommand>() -> T {
    let args: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let cmd = Path::new(&args[0]).file_name().and_then(|s| s.to_str()).unwrap_or("shoal").to_string();
    let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    match T::from_args(&[&cmd], &rest) {
        Ok(t) => t,
        Err(early) => match early.status {
            Ok(()) => {
                let _ = std::io::stdout().write_all(early.output.as_bytes());
                std::process::exit(0)
            }
            Err(()) => {
                eprint!("{cmd}: {}", early.output);
                if !early.output.ends_with('\n') {
                    eprintln!();
                }
                eprintln!("Run {cmd} --help for more information.");
                std::process::exit(EXIT_ERROR)
            }
        },
    }
}

/// Runs a tool's body and exits with its code, printing a failure as one `prog: error:` line.
pub fn main(prog: &str, body: impl FnOnce() -> Result<i32, Failure>) -> ! {
    let code = match body() {
        Ok(code) => code,
        Err(f) if f.is_broken_pipe() => 0,
        Err(f) => {
            let line = f.message.replace('\n', " ");
            eprintln!("{prog}: error: {line}");
            f.code
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Writes data to stdout; a closed pipe is not an error.
pub fn write_stdout(data: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::caused_by(EXIT_ERROR, "writing to stdout", e)),
    }
}

/// Reads a whole file, or stdin for `-`. Refuses inputs over `limit` bytes.
pub fn read_input_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut buf = Vec::new();
    let r = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit + 1).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_end(&mut buf))
    };
    r.map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() as u64 > limit {
        return Err(format!("{}: larger than {} bytes", path.display(), limit));
    }
    Ok(buf)
}

/// Largest .torrent (or other bencoded input) the tools read: 64 MiB.
pub const MAX_INPUT: u64 = 64 << 20;

pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    read_input_limited(path, MAX_INPUT)
}

/// A flag set by SIGINT or SIGTERM, for a clean shutdown.
pub fn shutdown_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, Failure> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| Failure::caused_by(EXIT_ERROR, "cannot install signal handler", e))?;
    }
    Ok(flag)
}

/// Resolves `HOST:PORT` arguments given with `--peer`.
pub fn resolve_peers(list: &[String]) -> Result<Vec<std::net::SocketAddr>, Failure> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for p in list {
        let mut addrs = p.to_socket_addrs().map_err(|e| Failure::caused_by(EXIT_ERROR, format!("--peer {p}"), e))?;
        out.push(addrs.next().ok_or_else(|| Failure::new(EXIT_ERROR, format!("--peer {p}: no address")))?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "while copying: {}", self.0)
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn broken_pipe_is_found_by_kind_through_the_chain() {
        let direct = Failure::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(direct.is_broken_pipe());
        assert_eq!(direct.code, EXIT_ERROR);
        let wrapped = Failure::caused_by(2, "writing report", Wrapper(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(wrapped.is_broken_pipe(), "one level down, behind another error type");
        let inside_io = Failure::caused_by(2, "copy", io::Error::other(Wrapper(io::Error::from(io::ErrorKind::BrokenPipe))));
        assert!(inside_io.is_broken_pipe(), "an io::Error wrapping an error that wraps the pipe error");
    }

    #[test]
    fn broken_pipe_is_not_guessed_from_text() {
        // The old check matched the words; a torrent named "Broken pipe" must not exit 0.
        let f = Failure::new(1, "Broken pipe.torrent: unexpected end of input at byte 3");
        assert!(!f.is_broken_pipe());
        let other = Failure::caused_by(2, "writing out", io::Error::new(io::ErrorKind::PermissionDenied, "Broken pipe (not really)"));
        assert!(!other.is_broken_pipe());
    }

    #[test]
    fn failure_keeps_code_message_and_source() {
        let f = Failure::caused_by(3, "out/file.bin", io::Error::new(io::ErrorKind::StorageFull, "no space left"));
        assert_eq!(f.code, 3);
        assert_eq!(f.to_string(), "out/file.bin: no space left");
        let src = f.source().expect("source kept").downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(src.kind(), io::ErrorKind::StorageFull);
        assert!(Failure::from("usage").source().is_none());
    }

    #[test]
    fn resolve_peers_reports_the_argument() {
        let e = resolve_peers(&["no-port-here".to_string()]).unwrap_err();
        assert_eq!(e.code, EXIT_ERROR);
        assert!(e.message.starts_with("--peer no-port-here: "), "{}", e.message);
        assert!(e.source().is_some());
        assert_eq!(resolve_peers(&["127.0.0.1:6881".to_string()]).unwrap(), vec!["127.0.0.1:6881".parse().unwrap()]);
    }
}
