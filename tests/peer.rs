//! End-to-end proof of the engine (issue 4): `bseed` and `bfetch` over real loopback sockets.
//!
//! - pairs: one seed, one fetcher, with our tracker (btrack) and with `--peer` only, single-file
//!   and nested multi-file torrents, sizes that are not a multiple of the piece length; the
//!   result is byte-identical and `bverify` passes;
//! - a swarm: one rate-capped seed and four fetchers at once; the fetchers must trade pieces
//!   among themselves (their own reports show uploads and downloads between them);
//! - resume: `kill -9` a rate-limited fetch half-way, restart it: it completes byte-identical
//!   and fetches again only what was not verified on disk (plus one piece per connection);
//! - hostile peers (tests/helpers/hostile_peer.py): corrupt blocks, a 4 GiB length prefix,
//!   out-of-range indices, bad bitfields... cannot corrupt the result, crash bfetch, or make it
//!   allocate what they claim; they get dropped and the download completes from the honest seed;
//! - torrents whose paths escape the target directory are refused (exit 2) before any write.
//!
//! Every process is a `Proc` (killed on drop); every failure shows the tools' stderr.
mod common;
#[path = "helpers/peer_util.rs"]
mod peer_util;

use common::*;
use peer_util::*;
use shoal::bencode::{dict, Owned};
use shoal::metainfo::Metainfo;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MIB: usize = 1 << 20;
const PIECE: usize = 256 * 1024;

/// Builds a torrent for `content` with our mktorrent (fixed piece length, optional tracker).
fn make_torrent(content: &Path, announce: Option<&str>, out: &Path) -> Metainfo {
    let mut c = cmd("mktorrent");
    c.args(["-q", "--no-date", "-l", "256K", "-o"]).arg(out);
    if let Some(a) = announce {
        c.args(["-a", a]);
    }
    c.arg(content);
    let o = run(&mut c);
    assert_exit(&o, 0);
    Metainfo::read(out).unwrap()
}

/// Starts bseed on `--port 0` and answers it with the port it bound, read from its
/// `listening on port N` line (it verifies the content first).
fn start_seed(dir: &Dir, name: &str, torrent: &Path, content: &Path, extra: &[&str]) -> (Proc, u16) {
    let mut c = cmd("bseed");
    c.arg(torrent).arg(content).args(["--port", "0", "--json"]).args(extra);
    let mut p = Proc::spawn(name, c, dir.path());
    let port = wait_bound_port(&mut p, Duration::from_secs(60));
    (p, port)
}

/// A bfetch command with `--json` into `out`.
fn fetch_cmd(torrent: &Path, out: &Path, port: u16, peers: &[u16], extra: &[&str]) -> Command {
    let mut c = cmd("bfetch");
    c.arg(torrent).arg("-o").arg(out).args(["--port", &port.to_string(), "--json"]);
    for p in peers {
        c.args(["--peer", &format!("127.0.0.1:{p}")]);
    }
    c.args(extra);
    c
}

/// Starts btrack (our tracker) on loopback port 0; returns it and the announce URL with the
/// port it bound.
fn start_btrack(dir: &Dir) -> (Proc, String) {
    let data = dir.join("btrack-data");
    fs::create_dir_all(&data).unwrap();
    let mut c = cmd("btrack");
    c.args(["--listen", "127.0.0.1:0", "--open", "--data-dir"]).arg(&data);
    let mut p = Proc::spawn("btrack", c, dir.path());
    let port = wait_bound_port(&mut p, Duration::from_secs(30));
    (p, format!("http://127.0.0.1:{port}/announce"))
}

/// Starts the independent Python tracker (tests/helpers/peer_tracker.py).
fn start_py_tracker(dir: &Dir) -> (Proc, String) {
    have(PYTHON);
    let mut c = Command::new(PYTHON);
    c.arg(helper("peer_tracker.py")).arg("127.0.0.1:0").arg("--log").arg(dir.join("tracker.log"));
    let mut p = Proc::spawn("peer_tracker", c, dir.path());
    let port = wait_bound_port(&mut p, Duration::from_secs(30));
    (p, format!("http://127.0.0.1:{port}/announce"))
}

/// Checks a finished fetch: exit 0, JSON report complete and consistent, content identical to
/// `src`, no `.part` left, and bverify agrees. Returns the report.
fn check_fetched(f: &mut Proc, m: &Metainfo, torrent: &Path, src: &Path, out: &Path, limit: Duration) -> serde_json::Value {
    let st = f.wait_or_panic(limit);
    assert_eq!(st.code(), Some(0), "bfetch failed\n{}", f.dump());
    assert!(!f.stderr().contains("panicked"), "bfetch panicked\n{}", f.dump());
    let j = json_of(f);
    assert_eq!(j["complete"], serde_json::Value::Bool(true), "report not complete: {j}\n{}", f.dump());
    assert_eq!(j["info_hash"].as_str(), Some(m.info_hash.hex().as_str()), "info_hash in report: {j}");
    assert_eq!(j["name"].as_str(), Some(m.info.name.as_str()), "name in report: {j}");
    let got = out.join(&m.info.name);
    assert!(!out.join(format!("{}.part", m.info.name)).exists(), "{}.part left behind\n{}", m.info.name, f.dump());
    assert_same_content(src, &got);
    let v = run(cmd("bverify").args(["-q"]).arg(torrent).arg(&got));
    assert_exit(&v, 0);
    let downloaded = json_u64(&j, "downloaded", "bfetch");
    assert!(downloaded >= m.info.total_length, "downloaded {downloaded} < total {}: {j}", m.info.total_length);
    let peers = j["peers"].as_array().unwrap_or_else(|| panic!("report has no peers array: {j}"));
    let from_peers: u64 = peers.iter().map(|p| p["downloaded"].as_u64().unwrap_or(0)).sum();
    assert!(from_peers >= m.info.total_length, "per-peer downloaded adds up to {from_peers} < total {}: {j}", m.info.total_length);
    j
}

/// Stops a seed with SIGTERM: exit 0 and a JSON report of what it uploaded. Returns the report.
fn stop_seed(s: &mut Proc) -> serde_json::Value {
    let st = s.stop(Duration::from_secs(30));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "bseed did not exit 0 on SIGTERM\n{}", s.dump());
    json_of(s)
}

/// Content for a pair: one odd-sized file, or a nested tree with odd sizes and a tiny file.
fn make_content(dir: &Dir, multi: bool) -> PathBuf {
    if multi {
        let root = dir.join("src/tree");
        write_data(&root.join("a.bin"), 3 * MIB + 1234, 1);
        write_data(&root.join("sub/b.bin"), 700_001, 2);
        write_data(&root.join("sub/deeper/c.bin"), 1, 3);
        write_data(&root.join("sub/deeper/d.bin"), 2 * MIB - 7, 4);
        write_data(&root.join("z/e.bin"), PIECE, 5);
        root
    } else {
        let f = dir.join("src/odd.bin");
        write_data(&f, 5 * MIB + 12345, 6);
        f
    }
}

fn pair(multi: bool, tracker: bool) {
    let dir = Dir::new(&format!("pair-{multi}-{tracker}"));
    let src = make_content(&dir, multi);
    let (_trk, url) = if tracker { let (p, u) = start_btrack(&dir); (Some(p), Some(u)) } else { (None, None) };
    let torrent = dir.join("t.torrent");
    let m = make_torrent(&src, url.as_deref(), &torrent);
    assert_ne!(m.info.total_length % PIECE as u64, 0, "test data must not be a multiple of the piece length");
        let (mut seed, seed_port) = start_seed(&dir, "bseed", &torrent, &src, &[]);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let peers: Vec<u16> = if tracker { vec![] } else { vec![seed_port] };
    let fc = fetch_cmd(&torrent, &out, 0, &peers, &["--timeout", "120s"]);
    let mut f = Proc::spawn("bfetch", fc, dir.path());
    let j = check_fetched(&mut f, &m, &torrent, &src, &out, Duration::from_secs(180));
    let sj = stop_seed(&mut seed);
    let up = json_u64(&sj, "uploaded", "bseed");
    assert!(up >= m.info.total_length, "bseed reports uploading {up} < {} bytes: {sj}\nfetch report: {j}", m.info.total_length);
    if tracker {
        // The fetcher found the seed through the tracker alone.
        assert!(!f.stderr().is_empty(), "bfetch logged nothing\n{}", f.dump());
    }
}

#[test]
fn pair_single_file_odd_size_peer_only() {
    pair(false, false);
}

#[test]
fn pair_multi_file_nested_peer_only() {
    pair(true, false);
}

#[test]
fn pair_single_file_odd_size_with_btrack() {
    pair(false, true);
}

#[test]
fn pair_multi_file_nested_with_btrack() {
    pair(true, true);
}

/// One seed capped at 1 MiB/s, four fetchers at once through a tracker: 12 MiB each means
/// 48 MiB to deliver, which the seed alone would need 48 s for; the fetchers must trade.
#[test]
fn swarm_one_seed_four_fetchers_trade() {
    let dir = Dir::new("swarm");
    let src = dir.join("src/swarm.bin");
    let size = 12 * MIB + 999;
    write_data(&src, size, 42);
    let (_trk, url) = start_py_tracker(&dir);
    let torrent = dir.join("t.torrent");
    let m = make_torrent(&src, Some(&url), &torrent);
        let (mut seed, seed_port) = start_seed(&dir, "bseed", &torrent, &src, &["--max-upload-rate", "1M"]);
    let mut fetchers = Vec::new();
    for i in 0..4 {
        let out = dir.join(format!("out{i}"));
        fs::create_dir_all(&out).unwrap();
        // Port 0: the fetchers find each other through the tracker, with the ports they bound.
        let port = 0;
        let c = fetch_cmd(&torrent, &out, port, &[], &["--timeout", "200s"]);
        fetchers.push((Proc::spawn(&format!("bfetch{i}"), c, dir.path()), out, port));
    }
    let mut reports = Vec::new();
    for (f, out, _) in fetchers.iter_mut() {
        reports.push(check_fetched(f, &m, &torrent, &src, out, Duration::from_secs(260)));
    }
    let sj = stop_seed(&mut seed);
    let seed_up = json_u64(&sj, "uploaded", "bseed");
    let total = size as u64;
    let fetched: u64 = reports.iter().map(|j| json_u64(j, "downloaded", "bfetch")).sum();
    let traded: u64 = reports.iter().map(|j| json_u64(j, "uploaded", "bfetch")).sum();
    // Bytes a fetcher received from a peer that is not the seed's listening address.
    let seed_addr = format!("127.0.0.1:{seed_port}");
    let from_others: Vec<u64> = reports
        .iter()
        .map(|j| {
            j["peers"].as_array().unwrap().iter()
                .filter(|p| p["addr"].as_str() != Some(seed_addr.as_str()))
                .map(|p| p["downloaded"].as_u64().unwrap_or(0))
                .sum()
        })
        .collect();
    eprintln!("swarm: seed uploaded {seed_up}, fetchers downloaded {fetched} and uploaded {traded}; bytes from non-seed peers per fetcher {from_others:?}");
    let logs: String = fetchers.iter().map(|(f, _, _)| f.dump()).collect();
    assert!(
        traded >= total,
        "fetchers uploaded only {traded} bytes to each other (want at least one copy, {total}); seed uploaded {seed_up}, fetchers downloaded {fetched}; per-fetcher bytes from non-seed peers {from_others:?}\nseed report {sj}\n{logs}"
    );
    assert!(
        from_others.iter().filter(|&&b| b > 0).count() >= 2,
        "fewer than two fetchers got bytes from other fetchers: {from_others:?}\n{logs}"
    );
    // bseed told the tracker it stopped (SIGTERM is a clean shutdown).
    let tlog = fs::read_to_string(dir.join("tracker.log")).unwrap_or_default();
    let stopped = tlog.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|e| {
        e["port"].as_u64() == Some(seed_port as u64) && e["event"] == "stopped"
    });
    assert!(stopped, "bseed did not announce event=stopped on SIGTERM; tracker log:\n{tlog}\n{}", seed.dump());
    assert!(
        seed_up < 4 * total,
        "the seed uploaded {seed_up} bytes, i.e. every copy came from it (4 x {total})\n{logs}"
    );
}

#[test]
fn resume_after_kill_9_refetches_only_missing_pieces() {
    let dir = Dir::new("resume");
    let src = dir.join("src/resume.bin");
    let size = 16 * MIB + 4321;
    write_data(&src, size, 7);
    let torrent = dir.join("t.torrent");
    let m = make_torrent(&src, None, &torrent);
    let n = m.info.num_pieces();
        let (mut seed, seed_port) = start_seed(&dir, "bseed", &torrent, &src, &[]);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let part = out.join("resume.bin.part");
    let resume = out.join(".resume.bin.shoal-resume");

    // Run 1: 1 MiB/s, one connection; killed with SIGKILL once 35-85 % is verified on disk.
    let c = fetch_cmd(&torrent, &out, 0, &[seed_port], &["--max-download-rate", "1M", "--timeout", "120s"]);
    let mut f1 = Proc::spawn("bfetch-run1", c, dir.path());
    let start = Instant::now();
    let mut ok = 0;
    while ok < n * 35 / 100 {
        if let Some(s) = f1.poll() {
            panic!("first bfetch exited ({s}) before it could be killed half-way (is --max-download-rate honoured?)\n{}", f1.dump());
        }
        assert!(start.elapsed() < Duration::from_secs(120), "first bfetch reached only {ok}/{n} pieces in 120 s\n{}", f1.dump());
        std::thread::sleep(Duration::from_millis(150));
        ok = pieces_ok_on_disk(&m, &part);
    }
    f1.signal(9);
    f1.wait_or_panic(Duration::from_secs(10));
    let ok_at_kill = pieces_ok_on_disk(&m, &part);
    assert!(ok_at_kill < n * 85 / 100, "{ok_at_kill}/{n} pieces already there: the rate limit is not holding\n{}", f1.dump());
    assert!(resume.exists(), "no resume file {} after the first run\n{}", resume.display(), f1.dump());
    assert!(!out.join("resume.bin").exists(), "final name exists before completion\n{}", f1.dump());

    // Run 2: unlimited; must complete and fetch only the missing pieces, plus one per
    // connection (in flight at the kill) and those verified in the last resume interval
    // (`swarm::RESUME_EVERY`, 1 s: at 1 MiB/s four pieces) and one more: they may not be
    // recorded yet.
    let c = fetch_cmd(&torrent, &out, 0, &[seed_port], &["--timeout", "120s"]);
    let mut f2 = Proc::spawn("bfetch-run2", c, dir.path());
    let st = f2.wait_or_panic(Duration::from_secs(180));
    assert_eq!(st.code(), Some(0), "second bfetch failed\n{}", f2.dump());
    let j = json_of(&f2);
    assert_eq!(j["complete"], serde_json::Value::Bool(true), "{j}");
    assert_same_content(&src, &out.join("resume.bin"));
    assert_exit(&run(cmd("bverify").args(["-q"]).arg(&torrent).arg(out.join("resume.bin"))), 0);
    let downloaded = json_u64(&j, "downloaded", "bfetch run 2");
    let connections = j["peers"].as_array().map(|a| a.len()).unwrap_or(1).max(1) as u64;
    let missing = size as u64 - (ok_at_kill as u64) * PIECE as u64;
    let unrecorded = (shoal::swarm::RESUME_EVERY.as_secs_f64() * MIB as f64).ceil() as u64 / PIECE as u64;
    let allowed = missing + (connections + unrecorded + 1) * PIECE as u64;
    assert!(
        downloaded <= allowed,
        "second run downloaded {downloaded} bytes; only {missing} were missing ({ok_at_kill}/{n} pieces verified on disk at kill), allowed {allowed} with {connections} connection(s)\nrun 1:\n{}\nrun 2:\n{}",
        f1.dump(),
        f2.dump()
    );
    eprintln!("resume: {ok_at_kill}/{n} pieces on disk at SIGKILL; run 2 downloaded {downloaded} bytes, missing {missing}, allowed {allowed}");
    assert!(downloaded + (PIECE as u64) >= missing, "second run downloaded {downloaded} < missing {missing}: where did the rest come from? {j}");
    stop_seed(&mut seed);
}

/// Hostile helper modes and whether bfetch must hang up on them while it is still running.
const HOSTILE: &[(&str, bool)] = &[
    ("corrupt", true),
    ("huge-length", true),
    ("bad-index", true),
    ("bad-bitfield", true),
    ("spare-bits", false),
    ("bad-block", true),
    ("wrong-hash", true),
    ("garbage", true),
    ("stall", false),
];

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn hostile_peers_cannot_corrupt_crash_or_bloat_bfetch() {
    have(PYTHON);
    let dir = Dir::new("hostile");
    let src = dir.join("src/target.bin");
    let size = 8 * MIB + 77;
    write_data(&src, size, 9);
    let torrent = dir.join("t.torrent");
    let m = make_torrent(&src, None, &torrent);
        // The honest seed is slow (2 MiB/s) so bfetch meets the hostile peers while it still needs data.
    let (mut seed, seed_port) = start_seed(&dir, "bseed", &torrent, &src, &["--max-upload-rate", "2M"]);
    let log = dir.join("hostile.log");
    let mut hostiles = Vec::new();
    for (mode, _) in HOSTILE {
        let mut c = Command::new(PYTHON);
        c.arg(helper("hostile_peer.py")).arg(&torrent).args(["--port", "0", "--mode", mode, "--log"]).arg(&log);
        let mut p = Proc::spawn(&format!("hostile-{mode}"), c, dir.path());
        let port = wait_bound_port(&mut p, Duration::from_secs(30));
        hostiles.push((p, port));
    }
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut peers: Vec<u16> = hostiles.iter().map(|(_, p)| *p).collect();
    peers.push(seed_port);
    let c = fetch_cmd(&torrent, &out, 0, &peers, &["--timeout", "150s"]);
    let mut f = Proc::spawn("bfetch", c, dir.path());
    let (mut hwm, mut peak) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(200);
    while f.poll().is_none() && Instant::now() < end {
        if let Some((h, p)) = f.memory_peaks() {
            hwm = hwm.max(h);
            peak = peak.max(p);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished_at = now_secs();
    let j = check_fetched(&mut f, &m, &torrent, &src, &out, Duration::from_secs(5));
    assert!(hwm > 0, "could not sample bfetch's memory");
    assert!(hwm < 200 * 1024, "bfetch peak RSS {hwm} KiB >= 200 MiB\n{}", f.dump());
    // A lazily allocated 4 GiB buffer would not show in RSS, but does in the virtual peak.
    assert!(peak < 3 * 1024 * 1024, "bfetch peak virtual size {peak} KiB >= 3 GiB: did it allocate a claimed length?\n{}", f.dump());
    let events: Vec<serde_json::Value> = fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut problems = Vec::new();
    for (mode, must_drop) in HOSTILE {
        let of_mode: Vec<&serde_json::Value> = events.iter().filter(|e| e["mode"].as_str() == Some(mode)).collect();
        let handshakes = of_mode.iter().filter(|e| e["event"] == "handshake").count();
        if handshakes == 0 {
            problems.push(format!("{mode}: bfetch never connected and handshook (it was given --peer)"));
            continue;
        }
        if handshakes > 20 {
            problems.push(format!("{mode}: bfetch connected {handshakes} times: a misbehaving peer should not be retried in a loop"));
        }
        if *must_drop {
            let dropped = of_mode.iter().any(|e| {
                e["event"] == "closed" && e["by"] == "remote" && e["t"].as_f64().unwrap_or(f64::MAX) < finished_at - 0.5
            });
            if !dropped {
                problems.push(format!("{mode}: never hung up on while bfetch was running"));
            }
        }
    }
    // The honest seed alone delivers the file in ~4 s (8 MiB at 2 MiB/s): stalling or lying
    // peers may slow that down, but must not hold the last blocks hostage (endgame, request
    // timeouts and snubbing exist for that).
    let secs = j["duration_secs"].as_f64().unwrap_or(0.0);
    let conns: Vec<String> = HOSTILE
        .iter()
        .map(|(mode, _)| {
            let n = events.iter().filter(|e| e["mode"].as_str() == Some(mode) && e["event"] == "handshake").count();
            format!("{mode}:{n}")
        })
        .collect();
    eprintln!("hostile: bfetch done in {secs:.1} s, peak RSS {hwm} KiB, peak VM {peak} KiB, connections per hostile mode {conns:?}");
    if secs > 30.0 {
        problems.push(format!("took {secs:.0} s although the honest seed alone needs ~4 s: blocks stuck at hostile/stalled peers are not re-requested from others"));
    }
    assert!(
        problems.is_empty(),
        "hostile peers not handled:\n  {}\nbfetch report: {j}\nhostile log:\n{}\n{}",
        problems.join("\n  "),
        fs::read_to_string(&log).unwrap_or_default(),
        f.dump()
    );
    // Nothing the hostile peers sent counts as payload.
    for p in j["peers"].as_array().unwrap() {
        let addr = p["addr"].as_str().unwrap_or("");
        if hostiles.iter().any(|(_, port)| addr == format!("127.0.0.1:{port}")) {
            let corrupt_ok = p["downloaded"].as_u64().unwrap_or(0);
            // Corrupt blocks may be counted as received bytes, but the file is still correct
            // (checked above); report it for the record only when it is absurd.
            assert!(corrupt_ok <= size as u64 * 4, "bfetch took {corrupt_ok} bytes from hostile {addr}: {j}");
        }
    }
    stop_seed(&mut seed);
}

/// A single-file or multi-file torrent with the given name / file paths, otherwise valid
/// (correct piece hashes for its pseudo-random content).
fn crafted_torrent(name: &[u8], files: Option<Vec<Vec<&[u8]>>>) -> Vec<u8> {
    let piece = 16384usize;
    let lens: Vec<usize> = match &files {
        Some(f) => (0..f.len()).map(|i| 10_000 + i * 3000).collect(),
        None => vec![20_000],
    };
    let content: Vec<u8> = lens.iter().enumerate().flat_map(|(i, &l)| data(l, 100 + i as u64)).collect();
    let pieces: Vec<u8> = content.chunks(piece).flat_map(|c| shoal::hashing::sha1(c)).collect();
    let mut info = match dict([
        ("name", Owned::Bytes(name.to_vec())),
        ("piece length", Owned::Int(piece as i64)),
        ("pieces", Owned::Bytes(pieces)),
    ]) {
        Owned::Dict(d) => d,
        _ => unreachable!(),
    };
    match files {
        Some(f) => {
            let list = f
                .into_iter()
                .zip(&lens)
                .map(|(path, &l)| {
                    dict([
                        ("length", Owned::Int(l as i64)),
                        ("path", Owned::List(path.into_iter().map(|c| Owned::Bytes(c.to_vec())).collect())),
                    ])
                })
                .collect();
            info.insert(b"files".to_vec(), Owned::List(list));
        }
        None => {
            info.insert(b"length".to_vec(), Owned::Int(lens[0] as i64));
        }
    }
    dict([("info", Owned::Dict(info))]).encode()
}

/// Every path under `root`, sorted (to prove nothing was created).
fn listing(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    fn walk(root: &Path, d: &Path, v: &mut Vec<String>) {
        if let Ok(rd) = fs::read_dir(d) {
            for e in rd.flatten() {
                let p = e.path();
                v.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if p.is_dir() {
                    walk(root, &p, v);
                }
            }
        }
    }
    walk(root, root, &mut v);
    v.sort();
    v
}

#[test]
fn escaping_paths_are_refused_before_anything_is_written() {
    let dir = Dir::new("escape");
    let abs = dir.join("abs-target");
    let abs_s = abs.to_string_lossy().into_owned();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot-files", crafted_torrent(b"evil", Some(vec![vec![b"..", b"..", b"x"], vec![b"ok.bin"]]))),
        ("dotdot-deep", crafted_torrent(b"evil", Some(vec![vec![b"ok.bin"], vec![b"sub", b"..", b"..", b"..", b"x"]]))),
        ("absolute-component", crafted_torrent(b"evil", Some(vec![vec![abs_s.as_bytes()]]))),
        ("slash-in-component", crafted_torrent(b"evil", Some(vec![vec![b"a/../../../x"]]))),
        ("dotdot-name-single", crafted_torrent(b"..", None)),
        ("escape-name-single", crafted_torrent(b"../../x", None)),
        ("absolute-name-single", crafted_torrent(abs_s.as_bytes(), None)),
        ("dotdot-name-multi", crafted_torrent(b"..", Some(vec![vec![b"x"]]))),
    ];
    // Control: the same construction with harmless paths is a valid torrent, so a refusal
    // below is about the path and nothing else.
    for good in [crafted_torrent(b"fine", None), crafted_torrent(b"fine", Some(vec![vec![b"a", b"b"], vec![b"c"]]))] {
        Metainfo::parse(&good).unwrap_or_else(|e| panic!("control torrent does not parse: {e}"));
    }
    for (label, bytes) in &cases {
        // Layout: sandbox/l1/l2/out is the target; ../../x from it stays inside the sandbox.
        let sandbox = dir.join(format!("sb-{label}"));
        let out = sandbox.join("l1/l2/out");
        fs::create_dir_all(&out).unwrap();
        let torrent = sandbox.join("evil.torrent");
        fs::write(&torrent, bytes).unwrap();
        let before = listing(&sandbox);

        let mut c = cmd("bfetch");
        c.arg(&torrent).arg("-o").arg(&out).args(["--port", "0", "--peer", "127.0.0.1:9", "--timeout", "5s"]);
        c.current_dir(&out);
        let mut f = Proc::spawn(&format!("bfetch-{label}"), c, dir.path());
        let st = f.wait_or_panic(Duration::from_secs(30));
        assert_eq!(st.code(), Some(2), "{label}: bfetch must refuse with exit 2\n{}", f.dump());
        let err = f.stderr();
        assert!(!err.contains("panicked"), "{label}: bfetch panicked\n{err}");
        assert!(err.trim().lines().count() >= 1 && err.contains("bfetch"), "{label}: no error message\n{err}");
        assert_eq!(listing(&sandbox), before, "{label}: bfetch created files\n{}", f.dump());
        assert!(!abs.exists(), "{label}: bfetch wrote the absolute path {abs_s}");

        // bseed must refuse too (it would otherwise read, and serve, files outside PATH).
        let mut c = cmd("bseed");
        c.arg(&torrent).arg(out.join("evil")).args(["--port", "0"]);
        c.current_dir(&out);
        let mut s = Proc::spawn(&format!("bseed-{label}"), c, dir.path());
        let st = s.wait_for(Duration::from_secs(20));
        let listened = bound_port(&s.stderr()).is_some();
        assert_eq!(st.and_then(|s| s.code()), Some(2), "{label}: bseed must refuse with exit 2 (listening: {listened})\n{}", s.dump());
        assert!(!s.stderr().contains("panicked"), "{label}: bseed panicked\n{}", s.dump());
        assert_eq!(listing(&sandbox), before, "{label}: bseed created files\n{}", s.dump());
        assert!(!abs.exists(), "{label}: bseed wrote the absolute path {abs_s}");
    }
}

#[test]
fn no_reachable_peer_gives_up_with_exit_1() {
    let dir = Dir::new("nopeer");
    let src = dir.join("src/lonely.bin");
    write_data(&src, MIB + 1, 31);
    let torrent = dir.join("t.torrent");
    let m = make_torrent(&src, None, &torrent);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let c = fetch_cmd(&torrent, &out, 0, &[9], &["--timeout", "3s"]);
    let mut f = Proc::spawn("bfetch", c, dir.path());
    let st = f.wait_or_panic(Duration::from_secs(60));
    assert_eq!(st.code(), Some(1), "bfetch with no reachable peer must exit 1\n{}", f.dump());
    assert!(!f.stderr().contains("panicked"), "{}", f.dump());
    assert!(
        !f.stdout().trim().is_empty(),
        "bfetch --json printed no report when it gave up (the report's `complete: bool` is there for exactly this case)\n{}",
        f.dump()
    );
    let j = json_of(&f);
    assert_eq!(j["complete"], serde_json::Value::Bool(false), "{j}");
    assert!(!out.join(&m.info.name).exists(), "the final name exists although nothing was downloaded");
}

/// A tmpfs of 2 MiB mounted for one test, unmounted on drop.
struct SmallDisk(PathBuf);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_disk_exits_3_with_one_line_error() {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if !root {
        assert!(std::env::var_os("SHOAL_ALLOW_MISSING_TOOLS").is_some(), "this test mounts a tmpfs: run as root or set SHOAL_ALLOW_MISSING_TOOLS=1 to skip");
        return;
    }
    let dir = Dir::new("diskfull");
    let src = dir.join("src/big.bin");
    write_data(&src, 6 * MIB + 3, 32);
    let torrent = dir.join("t.torrent");
    let m = make_torrent(&src, None, &torrent);
    let mnt = dir.join("small");
    fs::create_dir_all(&mnt).unwrap();
    let o = run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=2m", "shoal-test", ]).arg(&mnt));
    assert!(o.status.success(), "mount tmpfs: {}", stderr(&o));
    let _disk = SmallDisk(mnt.clone());
        let (mut seed, seed_port) = start_seed(&dir, "bseed", &torrent, &src, &[]);
    let c = fetch_cmd(&torrent, &mnt, 0, &[seed_port], &["--timeout", "60s"]);
    let mut f = Proc::spawn("bfetch", c, dir.path());
    let st = f.wait_or_panic(Duration::from_secs(90));
    assert_eq!(st.code(), Some(3), "bfetch on a full disk must exit 3 (disk error)\n{}", f.dump());
    let err = f.stderr();
    assert!(!err.contains("panicked"), "{}", f.dump());
    assert!(err.lines().any(|l| l.starts_with("bfetch: error:")), "no `bfetch: error:` line\n{}", f.dump());
    assert!(!mnt.join(&m.info.name).exists(), "final name exists on a disk too small for it");
    seed.stop(Duration::from_secs(20));
}

/// Storage memory is bounded regardless of file size: a 256 MiB fetch over unshaped loopback
/// (where the network outruns the disk) keeps bfetch's peak RSS under 96 MiB. The issue's
/// target for the release build is 64 MiB (scripts/bench-pair.sh checks that on 2 GiB).
#[test]
fn bfetch_memory_stays_bounded_on_a_fast_link() {
    let dir = Dir::new("memory");
    let src = dir.join("src/mem.bin");
    write_data(&src, 256 * MIB, 33);
    let torrent = dir.join("t.torrent");
    let m = make_torrent(&src, None, &torrent);
        let (mut seed, seed_port) = start_seed(&dir, "bseed", &torrent, &src, &[]);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let c = fetch_cmd(&torrent, &out, 0, &[seed_port], &["--timeout", "240s"]);
    let mut f = Proc::spawn("bfetch", c, dir.path());
    let mut hwm = 0;
    let end = Instant::now() + Duration::from_secs(300);
    while f.poll().is_none() && Instant::now() < end {
        if let Some((h, _)) = f.memory_peaks() {
            hwm = hwm.max(h);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    check_fetched(&mut f, &m, &torrent, &src, &out, Duration::from_secs(5));
    eprintln!("memory: bfetch peak RSS {hwm} KiB for a 256 MiB fetch");
    assert!(hwm > 0, "could not sample bfetch's memory");
    assert!(hwm < 96 * 1024, "bfetch peak RSS {hwm} KiB >= 96 MiB for a 256 MiB fetch: memory is not bounded\n{}", f.dump());
    seed.stop(Duration::from_secs(20));
}
