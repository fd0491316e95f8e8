//! The fleet in miniature (issue 5): a real swarm of our tools on the namespace testbed.
//!
//! - `swarm_on_testbed`: `scripts/testbed.sh up 4 --rate 20mbit` (its own prefix, so it never
//!   collides with a benchmark's testbed), `btrack` + `bseed --super-seed` on the origin, and
//!   `bfetch --seed-until-done --json` on every host at once. Every host must end with exit 0, a
//!   copy that `bverify` accepts and that is byte-identical to the origin's; every host must have
//!   uploaded to at least one other host (not the origin), as its own `--json` report tells per
//!   peer; and the origin's eth0 must have sent less than 2 × the file size (kernel counters, not
//!   the tools' own claims). Needs root: without it the test records a skip and returns.
//! - `two_sites_cross_once` (issue 11): `scripts/testbed.sh up 4 --sites 2` (origin + 2 hosts
//!   on site 1, 2 hosts on site 2, joined by one shaped inter-site link), btrack with `--site`
//!   for both subnets, the same swarm of 8 MiB: every copy intact, and the bytes that crossed
//!   the inter-site link both ways (the router's counters) at most 1.3 × the file.
//! - `ansible_playbook_syntax`: `ansible-playbook --syntax-check` on scripts/ansible/ (Ansible from
//!   PyPI, see scripts/ansible/README.md); it fails when ansible-playbook is missing unless
//!   SHOAL_ALLOW_MISSING_TOOLS=1.
//!
//! Invariants: the testbed is torn down and every child killed even when an assertion fails
//! (Drop guards); only testbed addresses (10.77.0.0/16 inside our namespaces) are contacted.

mod common;

use common::*;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const HOSTS: usize = 4;
const RATE: &str = "20mbit";
const SIZE: usize = (6 << 20) + 12345; // a few MiB, not a multiple of the piece length
const TRACKER_PORT: u16 = 6969;
const PEER_PORT: u16 = 6881;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// Can the namespace testbed run here (root, ip, tc, curl)? When not, the skip is recorded
/// (see `common::record_skip`), never counted as a pass.
fn testbed_ready() -> bool {
    if !is_root() {
        record_skip("needs root (network namespaces); CI runs as root");
        return false;
    }
    ["ip", "tc", "curl"].iter().all(|t| have(t))
}

fn addr(i: usize) -> String {
    format!("10.77.{}.{}", i / 250, i % 250 + 1)
}

/// The testbed, brought up on creation and torn down on drop (even after a failed assertion).
struct Testbed {
    prefix: String,
}

impl Testbed {
    /// `tag`: 3 lowercase letters, distinct per test (tests of one binary share the pid).
    fn up(tag: &str, hosts: usize, rate: &str) -> Testbed {
        Testbed::up_with(tag, &["up", &hosts.to_string(), "--rate", rate])
    }
    /// `up` with the testbed's own arguments (`up N --sites 2 ...`).
    fn up_with(tag: &str, args: &[&str]) -> Testbed {
        // At most 8 characters: interface names are limited to 15.
        let prefix = format!("{tag}{}", std::process::id() % 100_000);
        let tb = Testbed { prefix };
        let o = run(tb.script().args(args));
        assert_exit(&o, 0);
        tb
    }
    /// Host i's address, as the testbed assigns it (sites have their own subnets).
    fn addr(&self, i: usize) -> String {
        let o = run(self.script().args(["addr", &i.to_string()]));
        assert_exit(&o, 0);
        stdout(&o).trim().to_string()
    }
    /// Bytes that entered each site (1, 2, ...) through the inter-site router.
    fn crossed(&self) -> Vec<u64> {
        let o = run(self.script().arg("link"));
        assert_exit(&o, 0);
        stdout(&o).lines().map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()).expect("link line")).collect()
    }
    fn script(&self) -> Command {
        let mut c = Command::new(repo().join("scripts/testbed.sh"));
        c.env("SHOAL_TESTBED_PREFIX", &self.prefix);
        c
    }
    fn ns(&self, i: usize) -> String {
        format!("{}-h{i}", self.prefix)
    }
    /// A command run inside host i's namespace.
    fn cmd(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i)]).arg(program);
        c
    }
    fn tx_bytes(&self, i: usize) -> u64 {
        let o = run(self.cmd(i, "cat").arg("/sys/class/net/eth0/statistics/tx_bytes"));
        assert_exit(&o, 0);
        stdout(&o).trim().parse().expect("tx_bytes")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = self.script().arg("down").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Children killed on drop.
#[derive(Default)]
struct Kids(Vec<Child>);

impl Drop for Kids {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_logged(mut c: Command, log: &Path) -> Child {
    let f = std::fs::File::create(log).unwrap();
    c.stdin(Stdio::null()).stdout(f.try_clone().unwrap()).stderr(f);
    c.spawn().unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"))
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

fn log_tail(p: &Path) -> String {
    let s = std::fs::read(p).unwrap_or_default();
    String::from_utf8_lossy(&s[s.len().saturating_sub(3000)..]).into_owned()
}

/// Percent-encodes every byte of a hex info-hash for a scrape URL.
fn pct(hex: &str) -> String {
    hex.as_bytes().chunks(2).map(|c| format!("%{}", std::str::from_utf8(c).unwrap())).collect()
}

#[test]
fn swarm_on_testbed() {
    if !testbed_ready() {
        return;
    }
    let dir = Dir::new("fleet");
    let tb = Testbed::up("sfs", HOSTS, RATE);
    let mut kids = Kids::default();

    // The file and its torrent, announcing to the origin's btrack.
    let origin_dir = dir.join("origin");
    let file = origin_dir.join("fleet.bin");
    write_data(&file, SIZE, 5);
    let torrent = dir.join("fleet.torrent");
    let announce = format!("http://{}:{TRACKER_PORT}/announce", addr(0));
    let o = run(cmd("mktorrent").args(["-q", "-f", "--json", "-l", "64K", "-a", &announce, "-o"]).arg(&torrent).arg(&file));
    assert_exit(&o, 0);
    let info: Json = serde_json::from_slice(&o.stdout).expect("mktorrent --json");
    let info_hash = info["info_hash"].as_str().expect("info_hash").to_string();

    // Origin: tracker, then the super-seeding seed.
    let track_log = dir.join("btrack.log");
    let mut c = tb.cmd(0, bin("btrack"));
    c.arg("--listen").arg(format!("{}:{TRACKER_PORT}", addr(0))).arg("--data-dir").arg(dir.join("btrack-data")).arg("--open").arg("--open-admin");
    kids.0.push(spawn_logged(c, &track_log));
    let scrape_url = format!("http://{}:{TRACKER_PORT}/scrape?info_hash={}", addr(0), pct(&info_hash));
    wait_until("btrack to answer", Duration::from_secs(30), || {
        run(tb.cmd(0, "curl").args(["-s", "-o", "/dev/null", "--max-time", "2", &scrape_url])).status.success()
    });
    // Registering is harmless with --open and keeps the test valid if --open is ever dropped here.
    let _ = run(tb.cmd(0, "curl").args(["-s", "--max-time", "10", "-X", "POST", "--data-binary"]).arg(format!("@{}", torrent.display())).arg(format!("http://{}:{TRACKER_PORT}/api/torrents", addr(0))));

    let seed_log = dir.join("bseed.log");
    let mut c = tb.cmd(0, bin("bseed"));
    c.arg(&torrent).arg(&file).args(["--port", &PEER_PORT.to_string(), "--super-seed"]);
    kids.0.push(spawn_logged(c, &seed_log));
    // The seed is ready once the tracker counts one complete peer.
    wait_until("bseed to announce itself complete", Duration::from_secs(60), || {
        let o = run(tb.cmd(0, "curl").args(["-s", "--max-time", "2", &scrape_url]));
        let body = o.stdout;
        body.windows(9).position(|w| w == b"completei").map(|p| body.get(p + 9).is_some_and(|b| (b'1'..=b'9').contains(b))).unwrap_or(false)
    });

    // Every host at once.
    let tx_before = tb.tx_bytes(0);
    let mut fetchers = Vec::new();
    for i in 1..=HOSTS {
        let out = dir.join(format!("h{i}"));
        std::fs::create_dir_all(&out).unwrap();
        let mut c = tb.cmd(i, bin("bfetch"));
        c.arg(&torrent).arg("-o").arg(&out).args(["--port", &PEER_PORT.to_string(), "--seed-until-done", "--json", "--timeout", "150s"]);
        let log = dir.join(format!("bfetch-h{i}.log"));
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(&log).unwrap());
        fetchers.push((i, out, log, c.spawn().expect("start bfetch")));
    }
    // Collect each bfetch's exit and report; a hung one is killed after the deadline.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut results: Vec<(usize, PathBuf, PathBuf, Output)> = Vec::new();
    for (i, out, log, mut child) in fetchers {
        loop {
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        let o = child.wait_with_output().unwrap();
        results.push((i, out, log, o));
    }
    let tx_after = tb.tx_bytes(0);

    let expected = std::fs::read(&file).unwrap();
    let others: Vec<String> = (1..=HOSTS).map(addr).collect();
    for (i, out, log, o) in &results {
        assert_eq!(o.status.code(), Some(0), "bfetch on host {i} failed\nstdout: {}\nlog: {}", stdout(o), log_tail(log));
        let copy = out.join("fleet.bin");
        let v = run(cmd("bverify").arg(&torrent).arg(&copy));
        assert_exit(&v, 0);
        assert!(std::fs::read(&copy).unwrap() == expected, "host {i}: copy differs from the origin's file");
        let rep: Json = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("host {i}: --json report not JSON ({e}): {}", stdout(o)));
        assert_eq!(rep["complete"], Json::Bool(true), "host {i}: {rep}");
        assert_eq!(rep["info_hash"].as_str(), Some(info_hash.as_str()), "host {i}: {rep}");
        assert!(rep["uploaded"].as_u64().unwrap_or(0) > 0, "host {i} uploaded nothing: {rep}");
        let peers = rep["peers"].as_array().unwrap_or_else(|| panic!("host {i}: no peers[] in {rep}"));
        let to_hosts: u64 = peers
            .iter()
            .filter(|p| {
                let a = p["addr"].as_str().unwrap_or("");
                let ip = a.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(a);
                others.iter().any(|o| o == ip) && ip != addr(*i)
            })
            .map(|p| p["uploaded"].as_u64().unwrap_or(0))
            .sum();
        assert!(to_hosts > 0, "host {i} uploaded nothing to another host (only to the origin?): {rep}");
    }
    let origin_sent = tx_after - tx_before;
    assert!(
        origin_sent < 2 * SIZE as u64,
        "origin sent {origin_sent} bytes = {:.2} × the file: super-seeding should keep it under 2 ×\nbseed log: {}",
        origin_sent as f64 / SIZE as f64,
        log_tail(&seed_log)
    );
    drop(kids);
    drop(tb);
}

/// $SHOAL_ANSIBLE_PLAYBOOK, else the venv scripts/ansible/README.md installs, else PATH; None
/// (after printing SKIPPED) only when it is missing and SHOAL_ALLOW_MISSING_TOOLS is set.
fn ansible_playbook() -> Option<String> {
    let venv = "/opt/shoal-ansible/bin/ansible-playbook";
    let ap = std::env::var("SHOAL_ANSIBLE_PLAYBOOK").unwrap_or_else(|_| {
        if Path::new(venv).exists() { venv.into() } else { "ansible-playbook".into() }
    });
    if !have(&ap) {
        println!("SKIPPED: ansible-playbook missing (see scripts/ansible/README.md for the install command)");
        return None;
    }
    Some(ap)
}

#[test]
fn ansible_playbook_syntax() {
    let Some(ap) = ansible_playbook() else { return };
    let dir = repo().join("scripts/ansible");
    let o = run(Command::new(&ap).current_dir(&dir).args(["--syntax-check", "-i", "inventory.ini", "fleet.yml"]));
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("playbook: fleet.yml"), "{}", stdout(&o));
    // The testbed inventory too (generated hosts, netns connection plugin).
    let o = run(Command::new(&ap).current_dir(&dir).args(["--syntax-check", "-i", "testbed-inventory.py", "fleet.yml"]));
    assert_exit(&o, 0);
}

/// The example playbook, for real, against the testbed through the netns connection plugin: the
/// origin makes the torrent, registers it with btrack and super-seeds it with bseed; every host
/// fetches with `bfetch --seed-until-done` and verifies. Then the copies are compared here too.
#[test]
fn ansible_playbook_on_testbed() {
    if !testbed_ready() {
        return;
    }
    let Some(ap) = ansible_playbook() else { return };
    let work = Dir::new("fleet-ansible");
    let tb = Testbed::up("sfa", 3, RATE);
    let file = work.join("fleet.bin");
    write_data(&file, (3 << 20) + 777, 9);
    let bin_dir = bin("bfetch").parent().unwrap().to_path_buf();
    let o = run(Command::new(&ap)
        .current_dir(repo().join("scripts/ansible"))
        .args(["-i", "testbed-inventory.py", "fleet.yml"])
        .env("SHOAL_TESTBED_PREFIX", &tb.prefix)
        .env("SHOAL_ANSIBLE_WORK", work.path())
        .env("SHOAL_BIN_DIR", &bin_dir)
        .env("SHOAL_FLEET_FILE", &file)
        .env("SHOAL_SEEDER", "bseed")
        .env("SHOAL_TIMEOUT_SECS", "180")
        .env("ANSIBLE_HOME", work.join("ansible-home"))
        .env("ANSIBLE_LOCAL_TEMP", work.join("ansible-tmp"))
        .env("ANSIBLE_ASYNC_DIR", work.join("ansible-async"))
        .env("ANSIBLE_NOCOLOR", "1"));
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("failed=0") && !out.contains("unreachable=1"), "{out}");
    let expected = std::fs::read(&file).unwrap();
    for i in 1..=3 {
        let copy = work.join(tb.ns(i)).join("fleet.bin");
        assert!(std::fs::read(&copy).ok().as_ref() == Some(&expected), "host {i}: {} missing or different\n{out}", copy.display());
    }
    drop(tb);
}

/// Two sites (issue 11): with `btrack --site`, an image crosses the inter-site link about once.
#[test]
fn two_sites_cross_once() {
    if !testbed_ready() {
        return;
    }
    const SITE_HOSTS: usize = 4; // h1, h2 on site 1 with the origin; h3, h4 on site 2
    const SITE_SIZE: usize = 8 << 20;
    let dir = Dir::new("fleet-sites");
    let tb = Testbed::up_with("sts", &["up", &SITE_HOSTS.to_string(), "--rate", "100mbit", "--sites", "2"]);
    let mut kids = Kids::default();
    let origin = tb.addr(0);
    assert_eq!(origin, addr(0));
    assert!(tb.addr(SITE_HOSTS).starts_with("10.78."), "{}", tb.addr(SITE_HOSTS));

    let file = dir.join("origin").join("sites.bin");
    write_data(&file, SITE_SIZE, 11);
    let torrent = dir.join("sites.torrent");
    let announce = format!("http://{origin}:{TRACKER_PORT}/announce");
    let o = run(cmd("mktorrent").args(["-q", "-f", "--json", "-l", "64K", "-a", &announce, "-o"]).arg(&torrent).arg(&file));
    assert_exit(&o, 0);
    let info: Json = serde_json::from_slice(&o.stdout).expect("mktorrent --json");
    let info_hash = info["info_hash"].as_str().expect("info_hash").to_string();

    let track_log = dir.join("btrack.log");
    let mut c = tb.cmd(0, bin("btrack"));
    c.arg("--listen").arg(format!("{origin}:{TRACKER_PORT}")).arg("--data-dir").arg(dir.join("btrack-data"))
        .args(["--open", "--open-admin", "--site", "10.77.0.0/16=one", "--site", "10.78.0.0/16=two"]);
    kids.0.push(spawn_logged(c, &track_log));
    let scrape_url = format!("http://{origin}:{TRACKER_PORT}/scrape?info_hash={}", pct(&info_hash));
    wait_until("btrack to answer", Duration::from_secs(30), || {
        run(tb.cmd(0, "curl").args(["-s", "-o", "/dev/null", "--max-time", "2", &scrape_url])).status.success()
    });
    let seed_log = dir.join("bseed.log");
    let mut c = tb.cmd(0, bin("bseed"));
    c.arg(&torrent).arg(&file).args(["--port", &PEER_PORT.to_string(), "--super-seed"]);
    kids.0.push(spawn_logged(c, &seed_log));
    wait_until("bseed to announce itself complete", Duration::from_secs(60), || {
        let body = run(tb.cmd(0, "curl").args(["-s", "--max-time", "2", &scrape_url])).stdout;
        body.windows(9).position(|w| w == b"completei").map(|p| body.get(p + 9).is_some_and(|b| (b'1'..=b'9').contains(b))).unwrap_or(false)
    });

    let crossed_before = tb.crossed();
    let mut fetchers = Vec::new();
    for i in 1..=SITE_HOSTS {
        let out = dir.join(format!("h{i}"));
        std::fs::create_dir_all(&out).unwrap();
        let mut c = tb.cmd(i, bin("bfetch"));
        c.arg(&torrent).arg("-o").arg(&out).args(["--port", &PEER_PORT.to_string(), "--seed-until-done", "--timeout", "90s"]);
        let log = dir.join(format!("bfetch-h{i}.log"));
        fetchers.push((i, out, log.clone(), spawn_logged(c, &log)));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for (_, _, _, child) in &mut fetchers {
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let into: Vec<u64> = tb.crossed().iter().zip(&crossed_before).map(|(a, b)| a - b).collect();
    let crossed: u64 = into.iter().sum();
    let expected = std::fs::read(&file).unwrap();
    for (i, out, log, child) in &mut fetchers {
        let status = match child.try_wait().unwrap() {
            Some(s) => s,
            None => {
                let _ = child.kill();
                panic!("bfetch on host {i} still running after 120 s\nlog: {}", log_tail(log));
            }
        };
        assert!(status.success(), "bfetch on host {i}: {status}\nlog: {}", log_tail(log));
        let copy = out.join("sites.bin");
        assert_exit(&run(cmd("bverify").arg(&torrent).arg(&copy)), 0);
        assert!(std::fs::read(&copy).unwrap() == expected, "host {i}: copy differs from the origin's file");
    }
    let x = crossed as f64 / SITE_SIZE as f64;
    assert!(
        x <= 1.3,
        "{crossed} bytes crossed the inter-site link (into site 1, 2: {into:?}) = {x:.2} × the file (target ≤ 1.3 with --site)\nbtrack log: {}",
        log_tail(&track_log)
    );
    println!("two sites: {crossed} bytes crossed the inter-site link (into site 1, 2: {into:?}) = {x:.2} × F");
    drop(kids);
    drop(tb);
}
