//! Helpers shared by the end-to-end suites in tests/: temporary directories, running the
//! built binaries, deterministic test data, and finding the third-party tools we test against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("shoal-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Path of one of our built binaries.
pub fn bin(name: &str) -> PathBuf {
    // Integration tests live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join(name)
}

/// A command for one of our binaries.
pub fn cmd(name: &str) -> Command {
    Command::new(bin(name))
}

/// Runs a command and returns its output; panics only if it cannot start.
pub fn run(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both streams on failure.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "expected exit {code}\nstdout: {}\nstderr: {}",
        stdout(o),
        stderr(o)
    );
}

/// Asserts a clean failure: non-zero exit, one-line error, no panic.
pub fn assert_clean_failure(o: &Output) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success\nstderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(o.status.code().is_some(), "killed by a signal: {err}");
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes a file of `len` pseudo-random bytes, creating parent directories.
pub fn write_data(path: &Path, len: usize, seed: u64) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    std::fs::write(path, data(len, seed)).unwrap();
}

/// Whether an external program exists on PATH. Interop tests require their tools: a missing
/// one fails the test. With SHOAL_ALLOW_MISSING_TOOLS=1 the test may skip instead (it returns
/// early when this answers false), and the skip is recorded so that it is not counted as a
/// pass: one line `<test name>: <program> is not installed` is appended to the file named by
/// SHOAL_SKIP_LOG (scripts/test.sh sets it and reports those tests as skipped), or to
/// target/<profile>/skipped-tests.log, and the same line goes to stderr.
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var_os("SHOAL_ALLOW_MISSING_TOOLS").is_none() {
            panic!("{program} is not installed (run scripts/test.sh, or set SHOAL_ALLOW_MISSING_TOOLS=1 to skip)");
        }
        record_skip(&format!("{program} is not installed"));
    }
    found
}

/// Records that the running test skipped itself (see [`have`]).
pub fn record_skip(why: &str) {
    use std::io::Write;
    let test = std::thread::current().name().unwrap_or("unknown test").to_string();
    let line = format!("{test}: {why}");
    eprintln!("SKIPPED {line}");
    let path = std::env::var_os("SHOAL_SKIP_LOG").map(PathBuf::from).unwrap_or_else(|| bin("skipped-tests.log"));
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap_or_else(|e| panic!("cannot record a skipped test in {}: {e}", path.display()));
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// Debian's python3, which has the libtorrent bindings (python3-libtorrent).
pub const PYTHON: &str = "/usr/bin/python3";

/// A free TCP port on loopback (bound then released, so another process may take it before
/// the caller uses it). Only for third-party programs that cannot listen on port 0 and say
/// which port they got (transmission-cli, aria2c, chromedriver), or where a port must be
/// known before the program starts. Our tools take `--port 0` and log the bound port: use
/// `peer_util::wait_bound_port` (or btrack's `listening on` line) instead.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
