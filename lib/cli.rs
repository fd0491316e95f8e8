//! What every binary shares: argument parsing with argh, `prog: error: …` lines on stderr,
//! exit codes, reading `-` as stdin, and treating a closed stdout (a broken pipe) as success.
//!
//! Exit codes common to every tool: 0 success, 2 usage or I/O error; each tool documents
//! its others (e.g. `bverify` exits 1 when content does not match).

use std::io::Write;
use std::path::Path;

/// Exit code for usage errors, unreadable input and I/O errors.
pub const EXIT_ERROR: i32 = 2;

/// A failure to report: the exit code and one line of text.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure { code: EXIT_ERROR, message }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure { code: EXIT_ERROR, message: message.to_string() }
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
        Err(f) if is_broken_pipe(&f.message) => 0,
        Err(f) => {
            let line = f.message.replace('\n', " ");
            eprintln!("{prog}: error: {line}");
            f.code
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

fn is_broken_pipe(msg: &str) -> bool {
    msg.contains("Broken pipe")
}

/// Writes data to stdout; a closed pipe is not an error.
pub fn write_stdout(data: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("writing to stdout: {e}").into()),
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
pub fn shutdown_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, String> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    Ok(flag)
}

/// Resolves `HOST:PORT` arguments given with `--peer`.
pub fn resolve_peers(list: &[String]) -> Result<Vec<std::net::SocketAddr>, String> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for p in list {
        let mut addrs = p.to_socket_addrs().map_err(|e| format!("--peer {p}: {e}"))?;
        out.push(addrs.next().ok_or_else(|| format!("--peer {p}: no address"))?);
    }
    Ok(out)
}
