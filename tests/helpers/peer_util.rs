//! Process and network scaffolding shared by tests/peer.rs and tests/interop.rs (included with
//! `#[path = "helpers/peer_util.rs"] mod peer_util;`).
//!
//! Invariants: every process a test starts is a `Proc`, killed (SIGKILL) and reaped on drop, so a
//! failing or panicking test leaves nothing running; its stdout/stderr go to files in the test's
//! own directory, so they can be read while it runs and shown in failure messages. Every wait
//! polls a condition with a deadline; nothing sleeps a fixed time hoping that is enough. A
//! `NetNs` (for clients that refuse loopback peers, e.g. Transmission) is deleted on drop; declare
//! it before the processes that run inside it so they are dropped (killed) first.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop, with its output captured in files.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub out: PathBuf,
    pub err: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout/stderr sent to `<logdir>/<name>.out|.err`.
    pub fn spawn(name: &str, mut cmd: Command, logdir: &Path) -> Proc {
        let out = logdir.join(format!("{name}.out"));
        let err = logdir.join(format!("{name}.err"));
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        Proc { name: name.to_string(), child, out, err, status: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.err).unwrap_or_default()).into_owned()
    }

    /// Both streams, for failure messages (stderr tail limited to the last 8 KiB).
    pub fn dump(&self) -> String {
        let err = self.stderr();
        let tail = if err.len() > 8192 { &err[err.len() - 8192..] } else { &err[..] };
        let out = self.stdout();
        let out = if out.len() > 4096 { &out[out.len() - 4096..] } else { &out[..] };
        format!("--- {} (pid {}) status {:?}\nstdout: {out}\nstderr (tail): {tail}\n", self.name, self.pid(), self.status)
    }

    /// Exit status if it has exited.
    pub fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Waits up to `limit` for the exit; None if still running.
    pub fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.poll() {
                return Some(s);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the exit or panics with the process's output.
    pub fn wait_or_panic(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_for(limit) {
            Some(s) => s,
            None => panic!("{} did not finish within {limit:?}\n{}", self.name, self.dump()),
        }
    }

    /// Sends a signal by number (15 TERM, 2 INT, 9 KILL) to this process only.
    pub fn signal(&self, sig: i32) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status();
    }

    /// SIGTERM, then waits up to `limit`; SIGKILL if it is still running.
    pub fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.poll().is_some() {
            return self.status;
        }
        self.signal(15);
        let s = self.wait_for(limit);
        if s.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        s
    }

    /// Panics with the output unless the process is still running.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.poll() {
            panic!("{} exited early with {s}\n{}", self.name, self.dump());
        }
    }

    /// Peak resident and peak virtual memory (VmHWM, VmPeak, in KiB) from /proc, while running.
    pub fn memory_peaks(&self) -> Option<(u64, u64)> {
        let s = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |k: &str| {
            s.lines()
                .find(|l| l.starts_with(k))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        };
        Some((field("VmHWM:")?, field("VmPeak:")?))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.poll().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` every 50 ms until it holds or `limit` passes; panics with `what()` then.
pub fn wait_until(limit: Duration, what: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        if Instant::now() > end {
            panic!("timed out after {limit:?} waiting: {}", what());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether something listens on TCP `port` (in `ns` if given), read with `ss`.
pub fn listening(ns: Option<&NetNs>, port: u16) -> bool {
    let mut c = match ns {
        Some(ns) => ns.cmd("ss"),
        None => Command::new("ss"),
    };
    c.args(["-Hltn", &format!("sport = :{port}")]);
    c.output().map(|o| !o.stdout.is_empty()).unwrap_or(false)
}

/// Waits until `p` listens on `port`, panicking with its output if it exits or takes too long.
pub fn wait_listening(p: &mut Proc, ns: Option<&NetNs>, port: u16, limit: Duration) {
    let end = Instant::now() + limit;
    while !listening(ns, port) {
        p.assert_running();
        if Instant::now() > end {
            panic!("{} is not listening on port {port} after {limit:?}\n{}", p.name, p.dump());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SHA-1 hex of a file's contents.
pub fn sha1_file(p: &Path) -> String {
    let data = fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
    shoal::hex::encode(&shoal::hashing::sha1(&data))
}

/// Every regular file under `root` as (relative path, length, sha1), sorted: compare two trees.
pub fn tree(root: &Path) -> Vec<(String, u64, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, md.len(), sha1_file(&p)));
            }
        }
    }
    let mut out = Vec::new();
    if fs::symlink_metadata(root).map(|m| m.is_dir()).unwrap_or(false) {
        walk(root, root, &mut out);
    } else {
        out.push((String::new(), fs::metadata(root).map(|m| m.len()).unwrap_or(0), sha1_file(root)));
    }
    out
}

/// Asserts two files or trees are byte-identical, naming the first difference.
pub fn assert_same_content(expected: &Path, actual: &Path) {
    assert!(actual.exists(), "{} does not exist", actual.display());
    let (a, b) = (tree(expected), tree(actual));
    assert_eq!(a, b, "content differs: {} vs {}", expected.display(), actual.display());
}

/// A network namespace with its own loopback and one extra address 10.199.X.1 on it; used for
/// clients that will not talk to 127.0.0.0/8 peers (Transmission treats them as martians).
/// Requires root; `SHOAL_ALLOW_MISSING_TOOLS=1` turns the absence of root into a skip.
pub struct NetNs {
    pub name: String,
    pub addr: String,
}

impl NetNs {
    /// None (skip) only when not root and SHOAL_ALLOW_MISSING_TOOLS is set; panics otherwise.
    pub fn new() -> Option<NetNs> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
        if !root {
            if std::env::var_os("SHOAL_ALLOW_MISSING_TOOLS").is_some() {
                eprintln!("skipping: network namespaces need root");
                return None;
            }
            panic!("this test needs root for a network namespace (or set SHOAL_ALLOW_MISSING_TOOLS=1 to skip)");
        }
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("shoal-pt-{pid}-{n}");
        // A per-namespace address; namespaces are isolated, so reuse across processes is harmless.
        let addr = format!("10.199.{}.1", (pid as usize * 7 + n) % 250 + 1);
        let sh = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().expect("cannot run ip (iproute2)");
            assert!(o.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        };
        sh(&["netns", "add", &name]);
        let ns = NetNs { name: name.clone(), addr: addr.clone() };
        sh(&["-n", &name, "link", "set", "lo", "up"]);
        sh(&["-n", &name, "addr", "add", &format!("{addr}/32"), "dev", "lo"]);
        Some(ns)
    }

    /// A command that runs `program` inside the namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Wraps a prepared command (program and arguments) so it runs inside the namespace.
    pub fn wrap(&self, c: &Command) -> Command {
        let mut w = self.cmd(c.get_program());
        w.args(c.get_args());
        if let Some(d) = c.get_current_dir() {
            w.current_dir(d);
        }
        w
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Parses a tool's `--json` stdout, panicking with the process output if it is not JSON.
pub fn json_of(p: &Proc) -> serde_json::Value {
    let out = p.stdout();
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: stdout is not a JSON report ({e})\n{}", p.name, p.dump()))
}

/// A u64 field of a JSON object, panicking with context when absent.
pub fn json_u64(v: &serde_json::Value, key: &str, ctx: &str) -> u64 {
    v.get(key).and_then(|x| x.as_u64()).unwrap_or_else(|| panic!("{ctx}: JSON report has no integer {key:?}: {v}"))
}

/// Third-party helper scripts live next to this file.
pub fn helper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers").join(name)
}

/// Writes a transmission-cli config dir whose settings keep it local: no DHT, LPD, PEX,
/// port mapping, uTP or RPC, no ratio or speed limits.
pub fn transmission_config(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("settings.json"),
        r#"{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
"port-forwarding-enabled": false, "utp-enabled": false, "rpc-enabled": false,
"blocklist-enabled": false, "rename-partial-files": true, "ratio-limit-enabled": false,
"idle-seeding-limit-enabled": false, "speed-limit-up-enabled": false,
"speed-limit-down-enabled": false, "peer-port-random-on-start": false, "encryption": 1,
"message-level": 2}"#,
    )
    .unwrap();
}

/// Waits until `p` says where it listens and answers the port: our tools started with
/// `--port 0` (or btrack with `--listen HOST:0`) pick a free port themselves and print it on
/// stderr (`bseed: listening on port N`, `btrack: listening on ADDR …`), so no test picks a
/// port in advance and races another process for it. Panics with the output if `p` exits or
/// says nothing within `limit`.
pub fn wait_bound_port(p: &mut Proc, limit: Duration) -> u16 {
    let end = Instant::now() + limit;
    loop {
        if let Some(port) = bound_port(&p.stderr()) {
            return port;
        }
        p.assert_running();
        if Instant::now() > end {
            panic!("{} did not say which port it listens on within {limit:?}\n{}", p.name, p.dump());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The number after `marker` in `text`, e.g. the port in "listening on port 6882".
pub fn number_after(text: &str, marker: &str) -> Option<u16> {
    let i = text.find(marker)? + marker.len();
    let digits: String = text[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Waits until `p` logs `marker` followed by a port (e.g. "listening on [::1]:"), and
/// returns the port; panics with the output if `p` exits or says nothing within `limit`.
pub fn wait_logged_port(p: &mut Proc, marker: &str, limit: Duration) -> u16 {
    let end = Instant::now() + limit;
    loop {
        if let Some(port) = number_after(&p.stderr(), marker) {
            return port;
        }
        p.assert_running();
        assert!(Instant::now() < end, "{} never logged {marker:?}\n{}", p.name, p.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The port in the first `listening on port N` or `listening on ADDR:N` line of a log.
pub fn bound_port(log: &str) -> Option<u16> {
    log.lines().find_map(|l| {
        let rest = &l[l.find("listening on ")? + "listening on ".len()..];
        let word = rest.strip_prefix("port ").unwrap_or(rest).split_whitespace().next()?;
        let port = word.rsplit(':').next()?;
        port.parse().ok()
    })
}

/// Pieces whose bytes in `file` (laid out as the torrent's single file) match their hash.
pub fn pieces_ok_on_disk(m: &shoal::metainfo::Metainfo, file: &Path) -> usize {
    let Ok(data) = fs::read(file) else { return 0 };
    (0..m.info.num_pieces())
        .filter(|&i| {
            let start = i * m.info.piece_length as usize;
            let end = start + m.info.piece_size(i) as usize;
            end <= data.len() && shoal::hashing::sha1(&data[start..end]) == m.info.pieces[i]
        })
        .count()
}
