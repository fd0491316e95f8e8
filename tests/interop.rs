//! Interop (issue 4): `bseed` and `bfetch` against BitTorrent clients nobody here wrote, both
//! directions, byte-identical results:
//! - bfetch downloads from a libtorrent seeder (tests/helpers/lt_seed.py) and from a
//!   Transmission seeder (`transmission-cli` with the content in its download dir);
//! - libtorrent (tests/helpers/lt_fetch.py), `transmission-cli` and `aria2c` download from bseed;
//! - magnet links (BEP 9): libtorrent fetches the metadata from bseed and then the content,
//!   and bfetch fetches the metadata from a libtorrent seed and then the content.
//!
//! Direct connections where the client can make them (libtorrent `connect_peer`, bfetch
//! `--peer`); otherwise an independent tracker (tests/helpers/peer_tracker.py).
//!
//! `harness_*` tests check the third-party harnesses against each other with no shoal code in
//! the path (libtorrent -> aria2, Transmission <-> libtorrent, the hostile peer against
//! libtorrent), so a failure in the other tests points at shoal, not at a harness.
//!
//! Transmission treats 127.0.0.0/8 peers as martians and never connects to them, so every test
//! involving it runs inside a private network namespace (`NetNs`: its own loopback plus one
//! 10.199.X.1 address on it; nothing leaves the namespace). Torrents are made with Debian's
//! `/usr/bin/mktorrent`, so the metainfo is third-party too. Every process is killed on drop.
mod common;
#[path = "helpers/peer_util.rs"]
mod peer_util;

use common::*;
use peer_util::*;
use shoal::metainfo::Metainfo;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Debian's mktorrent (256 KiB pieces), optionally with a tracker.
fn debian_torrent(content: &Path, announce: Option<&str>, out: &Path) -> Metainfo {
    have("/usr/bin/mktorrent");
    let mut c = Command::new("/usr/bin/mktorrent");
    c.args(["-l", "18", "-o"]).arg(out);
    if let Some(a) = announce {
        c.args(["-a", a]);
    }
    let o = run(c.arg(content));
    assert!(o.status.success(), "Debian mktorrent failed: {}", stderr(&o));
    Metainfo::read(out).unwrap()
}

/// A single 16 MiB + odd-bytes file, or a small nested tree.
fn content(dir: &Dir, multi: bool) -> PathBuf {
    if multi {
        let root = dir.join("src/interop-tree");
        write_data(&root.join("top.bin"), 9 * MIB + 4097, 11);
        write_data(&root.join("d1/d2/mid.bin"), 5 * MIB - 3, 12);
        write_data(&root.join("d1/small.txt"), 100, 13);
        root
    } else {
        let f = dir.join("src/interop.bin");
        write_data(&f, 16 * MIB + 54321, 14);
        f
    }
}

/// Optional namespace: `ns.wrap` or the plain command.
fn in_ns(ns: Option<&NetNs>, c: Command) -> Command {
    match ns {
        Some(ns) => ns.wrap(&c),
        None => c,
    }
}

fn host(ns: Option<&NetNs>) -> String {
    ns.map(|n| n.addr.clone()).unwrap_or_else(|| "127.0.0.1".into())
}

fn py(script: &str) -> Command {
    have(PYTHON);
    let mut c = Command::new(PYTHON);
    c.arg(helper(script));
    c
}

/// Starts the Python tracker on port 0 and reads the bound port back from its stderr.
fn start_tracker(dir: &Dir, ns: Option<&NetNs>, fixed: &[String]) -> (Proc, String) {
    let h = host(ns);
    let mut c = py("peer_tracker.py");
    c.arg(format!("{h}:0")).arg("--log").arg(dir.join("tracker.log"));
    for p in fixed {
        c.args(["--peer", p]);
    }
    let mut p = Proc::spawn("peer_tracker", in_ns(ns, c), dir.path());
    let port = wait_bound_port(&mut p, Duration::from_secs(30));
    (p, format!("http://{h}:{port}/announce"))
}

/// Starts bseed on `port` (0: it picks one; the bound port is read back from its
/// `listening on port N` line) and answers it with that port.
fn start_bseed(dir: &Dir, ns: Option<&NetNs>, torrent: &Path, content: &Path, port: u16) -> (Proc, u16) {
    let mut c = cmd("bseed");
    c.arg(torrent).arg(content).args(["--port", &port.to_string(), "--json"]);
    let mut p = Proc::spawn("bseed", in_ns(ns, c), dir.path());
    let bound = wait_bound_port(&mut p, Duration::from_secs(60));
    assert!(port == 0 || bound == port, "bseed bound {bound}, asked for {port}");
    (p, bound)
}

/// Stops bseed (SIGTERM): it must exit 0 and report having uploaded at least `total` bytes.
fn stop_bseed(s: &mut Proc, total: u64, who: &str) {
    let st = s.stop(Duration::from_secs(30));
    assert_eq!(st.and_then(|s| s.code()), Some(0), "bseed did not exit 0 on SIGTERM\n{}", s.dump());
    let j = json_of(s);
    let up = json_u64(&j, "uploaded", "bseed");
    assert!(up >= total, "bseed reports uploading {up} < {total} bytes to {who}: {j}");
}

/// Starts the libtorrent seed on `port` (0: libtorrent picks one) and answers it with the port
/// it listens on, read from its `lt_seed: seeding on HOST:N` line.
fn start_lt_seed(dir: &Dir, ns: Option<&NetNs>, torrent: &Path, save: &Path, port: u16, extra: &[&str]) -> (Proc, u16) {
    let mut c = py("lt_seed.py");
    c.arg(torrent).arg(save).args(["--port", &port.to_string(), "--host", &host(ns)]).args(extra);
    let mut p = Proc::spawn("lt_seed", in_ns(ns, c), dir.path());
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let bound = p.stderr().lines().find_map(|l| l.strip_prefix("lt_seed: seeding on ")?.rsplit(':').next()?.trim().parse::<u16>().ok());
        if let Some(bound) = bound {
            assert!(bound != 0 && (port == 0 || bound == port), "lt_seed listens on {bound}, asked for {port}\n{}", p.dump());
            return (p, bound);
        }
        p.assert_running();
        assert!(Instant::now() < end, "lt_seed not seeding after 60 s\n{}", p.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops lt_seed and checks what libtorrent saw: it uploaded at least `total` payload bytes.
fn stop_lt_seed(s: &mut Proc, total: u64) {
    s.stop(Duration::from_secs(20));
    let j = json_of(s);
    let up = json_u64(&j, "uploaded", "lt_seed");
    assert!(up >= total, "libtorrent says it uploaded {up} < {total} bytes: {j}\n{}", s.dump());
}

/// transmission-cli seeding (content already in `workdir`) or downloading into it.
fn start_transmission(dir: &Dir, ns: &NetNs, name: &str, torrent: &Path, workdir: &Path, port: u16) -> Proc {
    have("transmission-cli");
    let cfg = dir.join(format!("{name}-config"));
    transmission_config(&cfg);
    let mut c = ns.cmd("transmission-cli");
    c.arg("-g").arg(&cfg).arg("-w").arg(workdir).args(["-p", &port.to_string()]).arg(torrent);
    Proc::spawn(name, c, dir.path())
}

/// Waits until transmission-cli reports "Seeding" (it has verified the whole content).
fn wait_transmission_seeding(t: &mut Proc, limit: Duration) {
    let end = Instant::now() + limit;
    while !t.stdout().contains("Seeding") {
        t.assert_running();
        assert!(Instant::now() < end, "transmission-cli is not seeding after {limit:?}\n{}", t.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `got` is byte-identical to `src` (a client that never exits on its own).
fn wait_identical(p: &mut Proc, src: &Path, got: &Path, limit: Duration) {
    let want = tree(src);
    let end = Instant::now() + limit;
    loop {
        if got.exists() && fs::metadata(got).map(|m| m.len()).ok() == fs::metadata(src).map(|m| m.len()).ok() && tree(got) == want {
            return;
        }
        p.assert_running();
        assert!(Instant::now() < end, "{} has no identical {} after {limit:?}\n{}", p.name, got.display(), p.dump());
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn run_bfetch(dir: &Dir, ns: Option<&NetNs>, torrent: &Path, out: &Path, peer: &str) -> Proc {
    fs::create_dir_all(out).unwrap();
    let mut c = cmd("bfetch");
    c.arg(torrent).arg("-o").arg(out).args(["--port", "0", "--peer", peer, "--timeout", "150s", "--json"]);
    let mut f = Proc::spawn("bfetch", in_ns(ns, c), dir.path());
    let st = f.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "bfetch failed\n{}", f.dump());
    let j = json_of(&f);
    assert_eq!(j["complete"], serde_json::Value::Bool(true), "{j}\n{}", f.dump());
    f
}

fn aria2c(dir: &Dir, torrent: &Path, out: &Path) -> Proc {
    have("aria2c");
    fs::create_dir_all(out).unwrap();
    let mut c = Command::new("aria2c");
    c.args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--seed-time=0",
        "--check-integrity=true",
        "--bt-stop-timeout=150",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--no-conf=true",
    ])
    .arg(format!("--listen-port={}", free_port()))
    .arg(format!("--dir={}", out.display()))
    .arg(torrent);
    Proc::spawn("aria2c", c, dir.path())
}

// ---------------------------------------------------------------- bfetch from others

#[test]
fn bfetch_downloads_from_libtorrent() {
    let dir = Dir::new("i-lt-bfetch");
    let src = content(&dir, true);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, None, &torrent);
    let (mut seed, port) = start_lt_seed(&dir, None, &torrent, src.parent().unwrap(), 0, &[]);
    let out = dir.join("out");
    let _f = run_bfetch(&dir, None, &torrent, &out, &format!("127.0.0.1:{port}"));
    assert_same_content(&src, &out.join(&m.info.name));
    stop_lt_seed(&mut seed, m.info.total_length);
}

#[test]
fn bfetch_downloads_from_transmission() {
    let Some(ns) = NetNs::new() else { return };
    let dir = Dir::new("i-tr-bfetch");
    let src = content(&dir, false);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, None, &torrent);
    let port = free_port();
    let mut seed = start_transmission(&dir, &ns, "transmission-seed", &torrent, src.parent().unwrap(), port);
    wait_transmission_seeding(&mut seed, Duration::from_secs(90));
    let out = dir.join("out");
    let _f = run_bfetch(&dir, Some(&ns), &torrent, &out, &format!("{}:{port}", ns.addr));
    assert_same_content(&src, &out.join(&m.info.name));
    seed.stop(Duration::from_secs(20));
}

// ---------------------------------------------------------------- others from bseed

#[test]
fn libtorrent_downloads_from_bseed() {
    let dir = Dir::new("i-bseed-lt");
    let src = content(&dir, true);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, None, &torrent);
    let (mut seed, port) = start_bseed(&dir, None, &torrent, &src, 0);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut c = py("lt_fetch.py");
    c.arg(&torrent).arg(&out).args(["--port", "0", "--peer", &format!("127.0.0.1:{port}"), "--timeout", "150"]);
    let mut f = Proc::spawn("lt_fetch", c, dir.path());
    let st = f.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "libtorrent could not download from bseed\n{}\n{}", f.dump(), seed.dump());
    assert_same_content(&src, &out.join(&m.info.name));
    stop_bseed(&mut seed, m.info.total_length, "libtorrent");
}

#[test]
fn transmission_downloads_from_bseed() {
    let Some(ns) = NetNs::new() else { return };
    let dir = Dir::new("i-bseed-tr");
    let src = content(&dir, false);
    let (_trk, url) = start_tracker(&dir, Some(&ns), &[]);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, Some(&url), &torrent);
    let (mut seed, _) = start_bseed(&dir, Some(&ns), &torrent, &src, 0);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut t = start_transmission(&dir, &ns, "transmission-fetch", &torrent, &out, free_port());
    wait_identical(&mut t, &src, &out.join(&m.info.name), Duration::from_secs(200));
    t.stop(Duration::from_secs(20));
    stop_bseed(&mut seed, m.info.total_length, "transmission");
}

#[test]
fn aria2_downloads_from_bseed() {
    let dir = Dir::new("i-bseed-aria2");
    let src = content(&dir, false);
    // The tracker must know the seed's port before the torrent (which names the tracker)
    // exists to start the seed with: this port is picked in advance.
    let port = free_port();
    let (_trk, url) = start_tracker(&dir, None, &[format!("127.0.0.1:{port}")]);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, Some(&url), &torrent);
    let (mut seed, _) = start_bseed(&dir, None, &torrent, &src, port);
    let out = dir.join("out");
    let mut a = aria2c(&dir, &torrent, &out);
    let st = a.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "aria2c could not download from bseed\n{}\n{}", a.dump(), seed.dump());
    assert_same_content(&src, &out.join(&m.info.name));
    stop_bseed(&mut seed, m.info.total_length, "aria2c");
}

// ---------------------------------------------------------------- magnet links (BEP 9)

/// bseed on `--port 0`; the port it bound, read from its log.
fn start_bseed_any_port(dir: &Dir, torrent: &Path, content: &Path) -> (Proc, u16) {
    let mut c = cmd("bseed");
    c.arg(torrent).arg(content).args(["--port", "0", "--json"]);
    let mut p = Proc::spawn("bseed", c, dir.path());
    let marker = "listening on port ";
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let err = p.stderr();
        if let Some(i) = err.find(marker) {
            let digits: String = err[i + marker.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
            if let Ok(port) = digits.parse() {
                return (p, port);
            }
        }
        p.assert_running();
        assert!(Instant::now() < end, "bseed never logged its port\n{}", p.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn libtorrent_fetches_metadata_from_bseed_by_magnet() {
    let dir = Dir::new("i-mag-bseed-lt");
    let src = content(&dir, true);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, None, &torrent);
    let (mut seed, port) = start_bseed_any_port(&dir, &torrent, &src);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    // No .torrent for libtorrent: only the info-hash, and bseed as the peer.
    let link = format!("magnet:?xt=urn:btih:{}", m.info_hash);
    let mut c = py("lt_fetch.py");
    c.arg(&link).arg(&out).args(["--port", &free_port().to_string(), "--peer", &format!("127.0.0.1:{port}"), "--timeout", "150"]);
    let mut f = Proc::spawn("lt_fetch", c, dir.path());
    let st = f.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "libtorrent could not fetch by magnet from bseed\n{}\n{}", f.dump(), seed.dump());
    assert_same_content(&src, &out.join(&m.info.name));
    stop_bseed(&mut seed, m.info.total_length, "libtorrent");
}

#[test]
fn bfetch_fetches_metadata_from_libtorrent_by_magnet() {
    let dir = Dir::new("i-mag-lt-bfetch");
    let src = content(&dir, false);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, None, &torrent);
    let (mut seed, port) = start_lt_seed(&dir, None, &torrent, src.parent().unwrap(), 0, &[]);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let link = format!("magnet:?xt=urn:btih:{}&x.pe=127.0.0.1:{port}", m.info_hash);
    let mut c = cmd("bfetch");
    c.arg(&link).arg("-o").arg(&out).args(["--port", "0", "--timeout", "150s", "--no-linger", "--json"]);
    let mut f = Proc::spawn("bfetch", c, dir.path());
    let st = f.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "bfetch could not fetch by magnet from libtorrent\n{}\n{}", f.dump(), seed.dump());
    assert!(f.stderr().contains("got the metadata"), "{}", f.dump());
    assert_same_content(&src, &out.join(&m.info.name));
    stop_lt_seed(&mut seed, m.info.total_length);
}

// ---------------------------------------------------------------- harness validation

#[test]
fn harness_libtorrent_to_aria2() {
    let dir = Dir::new("h-lt-aria2");
    let src = content(&dir, true);
    let port = free_port();
    let (_trk, url) = start_tracker(&dir, None, &[format!("127.0.0.1:{port}")]);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, Some(&url), &torrent);
    let (mut seed, _) = start_lt_seed(&dir, None, &torrent, src.parent().unwrap(), port, &[]);
    let out = dir.join("out");
    let mut a = aria2c(&dir, &torrent, &out);
    let st = a.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "aria2c failed\n{}\n{}", a.dump(), seed.dump());
    assert_same_content(&src, &out.join(&m.info.name));
    stop_lt_seed(&mut seed, m.info.total_length);
}

#[test]
fn harness_transmission_to_libtorrent() {
    let Some(ns) = NetNs::new() else { return };
    let dir = Dir::new("h-tr-lt");
    let src = content(&dir, false);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, None, &torrent);
    let port = free_port();
    let mut seed = start_transmission(&dir, &ns, "transmission-seed", &torrent, src.parent().unwrap(), port);
    wait_transmission_seeding(&mut seed, Duration::from_secs(90));
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut c = py("lt_fetch.py");
    c.arg(&torrent).arg(&out).args(["--port", "0", "--host", &ns.addr]);
    c.args(["--peer", &format!("{}:{port}", ns.addr), "--timeout", "150"]);
    let mut f = Proc::spawn("lt_fetch", ns.wrap(&c), dir.path());
    let st = f.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "lt_fetch failed\n{}\n{}", f.dump(), seed.dump());
    assert_same_content(&src, &out.join(&m.info.name));
    seed.stop(Duration::from_secs(20));
}

#[test]
fn harness_libtorrent_to_transmission() {
    let Some(ns) = NetNs::new() else { return };
    let dir = Dir::new("h-lt-tr");
    let src = content(&dir, false);
    let (_trk, url) = start_tracker(&dir, Some(&ns), &[]);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, Some(&url), &torrent);
    let (mut seed, _) = start_lt_seed(&dir, Some(&ns), &torrent, src.parent().unwrap(), 0, &[]);
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut t = start_transmission(&dir, &ns, "transmission-fetch", &torrent, &out, free_port());
    wait_identical(&mut t, &src, &out.join(&m.info.name), Duration::from_secs(200));
    t.stop(Duration::from_secs(20));
    stop_lt_seed(&mut seed, m.info.total_length);
}

/// The hostile peer against libtorrent: libtorrent still completes, hangs up on the
/// protocol violations, and asks the data-serving modes for blocks (so their handshake,
/// bitfield and unchoke are convincing to a real client).
#[test]
fn harness_hostile_peer_against_libtorrent() {
    let dir = Dir::new("h-hostile-lt");
    let src = dir.join("src/h.bin");
    write_data(&src, 8 * MIB + 5, 21);
    let torrent = dir.join("t.torrent");
    let m = debian_torrent(&src, None, &torrent);
    let (mut seed, seed_port) = start_lt_seed(&dir, None, &torrent, src.parent().unwrap(), 0, &["--max-upload-rate", "3000000"]);
    let log = dir.join("hostile.log");
    let modes = ["corrupt", "huge-length", "bad-index", "bad-bitfield", "bad-block", "wrong-hash", "garbage"];
    let mut hostiles = Vec::new();
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let mut c = py("lt_fetch.py");
    c.arg(&torrent).arg(&out).args(["--port", "0", "--timeout", "150"]);
    for mode in modes {
        let mut h = py("hostile_peer.py");
        h.arg(&torrent).args(["--port", "0", "--mode", mode, "--log"]).arg(&log);
        let mut p = Proc::spawn(&format!("hostile-{mode}"), h, dir.path());
        let port = wait_bound_port(&mut p, Duration::from_secs(30));
        hostiles.push(p);
        c.args(["--peer", &format!("127.0.0.1:{port}")]);
    }
    c.args(["--peer", &format!("127.0.0.1:{seed_port}")]);
    let mut f = Proc::spawn("lt_fetch", c, dir.path());
    let st = f.wait_or_panic(Duration::from_secs(200));
    assert_eq!(st.code(), Some(0), "lt_fetch failed\n{}", f.dump());
    assert_same_content(&src, &out.join(&m.info.name));
    let events: Vec<serde_json::Value> =
        fs::read_to_string(&log).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let has = |mode: &str, pred: &dyn Fn(&serde_json::Value) -> bool| events.iter().any(|e| e["mode"] == mode && pred(e));
    let logtext = fs::read_to_string(&log).unwrap();
    for mode in ["huge-length", "bad-index", "bad-bitfield", "wrong-hash", "garbage"] {
        assert!(has(mode, &|e| e["event"] == "closed" && e["by"] == "remote"), "libtorrent never hung up on {mode}\n{logtext}");
    }
    for mode in ["corrupt", "bad-block"] {
        assert!(has(mode, &|e| e["event"] == "request"), "libtorrent never requested a block from {mode}\n{logtext}");
    }
    stop_lt_seed(&mut seed, 1);
}
