//! End-to-end tests of day-2 operations (issue 9), run as real processes on loopback:
//!
//! - ports: two `bseed` and a `bfetch` started without `--port` share one host (6881–6889,
//!   then any free port); the bound port is what they log and put in `--json`; an explicit
//!   `--port` that is taken stays an error;
//! - a torrent from anywhere: `bfetch`, `bverify` and `bdecode` read TORRENT from a path,
//!   `-` or btrack's `/torrents/<ih>.torrent` URL (redirects followed); 404, connection
//!   refused, a body over 16 MiB, magnet links and bare info-hashes each get one line and
//!   exit 2;
//! - the dashboard: with `btrack --seed`, the origin's uploaded bytes show in
//!   `/api/torrents/<ih>` while a rate-capped fetch runs and after it, the page says this
//!   btrack seeds it, and peer ids are decoded into client names (raw prefix kept);
//! - the service: the systemd units pass `systemd-analyze verify`; btrack.service's command
//!   line builds the right arguments from /etc/default/btrack and runs a real btrack that
//!   serves and exits 0 on SIGTERM; `btrack --seed` skips a seed port another process holds.
//!
//! Every process is a `Proc` (killed on drop); waits poll a condition with a deadline.
mod common;
#[path = "helpers/peer_util.rs"]
mod peer_util;

use common::*;
use peer_util::*;
use shoal::metainfo::Metainfo;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use std::ffi::OsStr;

const T: Duration = Duration::from_secs(60);

/// Waits until `p` logs `marker` followed by a port, and returns the port.
fn logged_port(p: &mut Proc, marker: &str) -> u16 {
    wait_logged_port(p, marker, T)
}

fn mktorrent(content: &Path, out: &Path, extra: &[&str]) -> Metainfo {
    let o = run(cmd("mktorrent").args(["-q", "--no-date", "-l", "64K", "-o"]).arg(out).args(extra).arg(content));
    assert_exit(&o, 0);
    Metainfo::read(out).unwrap()
}

/// A one-line error on stderr, prefixed with the tool's name, and exit `code`.
fn assert_one_line(o: &std::process::Output, prog: &str, code: i32, contains: &str) {
    assert_exit(o, code);
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with(&format!("{prog}: error: ")), "{err}");
    assert!(err.contains(contains), "expected {contains:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

// ---- item 2: ports --------------------------------------------------------------------------

#[test]
fn two_seeds_and_a_fetch_without_port_share_one_host() {
    let d = Dir::new("ops-ports");
    let content = d.join("img.bin");
    write_data(&content, 3 << 20, 7);
    let torrent = d.join("img.torrent");
    mktorrent(&content, &torrent, &[]);

    // Which of 6881-6889 are free now (another suite on this machine may hold some).
    let free_in_range = (6881..=6889u16).filter(|p| TcpListener::bind(("0.0.0.0", *p)).is_ok()).count();
    let seed = |name: &str| {
        let mut c = cmd("bseed");
        c.arg(&torrent).arg(&content).arg("--json");
        Proc::spawn(name, c, d.path())
    };
    let mut a = seed("seed-a");
    let pa = logged_port(&mut a, "listening on port ");
    let mut b = seed("seed-b");
    let pb = logged_port(&mut b, "listening on port ");
    assert!(pa != 0 && pb != 0 && pa != pb, "ports {pa} and {pb}");
    if free_in_range >= 4 {
        assert!((6881..=6889).contains(&pa) && (6881..=6889).contains(&pb), "ports {pa} and {pb} outside 6881-6889");
    }
    assert!(listening(None, pa) && listening(None, pb));

    // An explicit port that is taken stays an error.
    let o = run(cmd("bseed").arg(&torrent).arg(&content).args(["--no-verify", "--port", &pa.to_string()]));
    assert_one_line(&o, "bseed", 2, &format!("cannot listen on port {pa}"));
    std::fs::create_dir_all(d.join("x")).unwrap();
    let o = run(cmd("bfetch").arg(&torrent).arg("-o").arg(d.join("x")).args(["-q", "--peer", "127.0.0.1:1", "--port", &pb.to_string()]));
    assert_one_line(&o, "bfetch", 2, &format!("cannot listen on port {pb}"));

    // A fetch without --port too, from both seeds.
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = cmd("bfetch");
    c.arg(&torrent).arg("-o").arg(&out).args(["--no-linger", "--json", "--stall-timeout", "60s"]);
    c.args(["--peer", &format!("127.0.0.1:{pa}"), "--peer", &format!("127.0.0.1:{pb}")]);
    let mut f = Proc::spawn("fetch", c, d.path());
    let status = f.wait_or_panic(T);
    assert!(status.success(), "{}", f.dump());
    assert_eq!(sha1_file(&out.join("img.bin")), sha1_file(&content));
    let j: serde_json::Value = serde_json::from_str(f.stdout().trim()).unwrap();
    let pf = j["port"].as_u64().unwrap() as u16;
    assert!(pf != 0 && pf != pa && pf != pb, "fetch port {pf}: {j}");
    assert_eq!(number_after(&f.stderr(), "listening on port "), Some(pf), "logged port = reported port\n{}", f.dump());

    // The seeds report the ports they bound, too.
    for (p, port) in [(&mut a, pa), (&mut b, pb)] {
        p.stop(T).expect("bseed stops on SIGTERM");
        let j: serde_json::Value = serde_json::from_str(p.stdout().trim()).unwrap_or_else(|e| panic!("{e}\n{}", p.dump()));
        assert_eq!(j["port"].as_u64(), Some(port as u64), "{j}");
    }
}

// ---- items 3 and 5: btrack, URLs, the dashboard -------------------------------------------------

/// btrack on 127.0.0.1:0 with `--seed`; returns it and its base URL.
fn start_btrack(d: &Dir, extra: &[&str]) -> (Proc, String) {
    let mut c = cmd("btrack");
    c.args(["--listen", "127.0.0.1:0", "--interval", "2s", "--admin-token", "adm", "--data-dir"]).arg(d.join("data")).args(extra);
    let mut p = Proc::spawn("btrack", c, d.path());
    let port = logged_port(&mut p, "listening on 127.0.0.1:");
    (p, format!("http://127.0.0.1:{port}"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(T)).max_redirects(0).build().into()
}

fn get(url: &str) -> (u16, Vec<u8>) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap())
}

fn get_json(url: &str) -> serde_json::Value {
    let (s, b) = get(url);
    assert_eq!(s, 200, "{url}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

/// Uploads `data` as `name`; returns the .torrent bytes.
fn upload(base: &str, name: &str, data: &[u8]) -> Vec<u8> {
    let mut r = agent()
        .put(&format!("{base}/api/upload?name={name}&piece_length=64K"))
        .header("X-Admin-Token", "adm")
        .send(data)
        .unwrap();
    let body = r.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", String::from_utf8_lossy(&body));
    body
}

/// A one-shot HTTP server on loopback answering every request with `head` then `body_len`
/// bytes of 'x' (or nothing). Returns its URL; the thread ends after `n` requests.
fn tiny_server(head: String, body_len: usize, n: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(head.as_bytes());
            let chunk = vec![b'x'; 1 << 16];
            let mut left = body_len;
            while left > 0 {
                let k = left.min(chunk.len());
                if s.write_all(&chunk[..k]).is_err() {
                    break;
                }
                left -= k;
            }
        }
    });
    url
}

#[test]
fn torrents_from_urls_stdin_and_paths_and_their_errors() {
    let d = Dir::new("ops-url");
    let (_btrack, base) = start_btrack(&d, &[]);
    let payload = data(700_000, 3);
    let torrent = upload(&base, "a.bin", &payload);
    let ih = Metainfo::parse(&torrent).unwrap().info_hash.hex();
    let url = format!("{base}/torrents/{ih}.torrent");
    let content = d.join("data/content/a.bin");

    // bdecode: URL, stdin, path.
    let o = run(cmd("bdecode").arg("--info-hash").arg(&url));
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), ih);
    let mut c = cmd("bdecode").args(["--info-hash", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(&torrent).unwrap();
    let o = c.wait_with_output().unwrap();
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), ih);
    std::fs::write(d.join("a.torrent"), &torrent).unwrap();
    let o = run(cmd("bdecode").arg("--info-hash").arg(d.join("a.torrent")));
    assert_eq!(stdout(&o).trim(), ih);

    // bverify: URL against the uploaded content, and against the wrong content.
    let o = run(cmd("bverify").arg("-q").arg(&url).arg(&content));
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("OK "), "{}", stdout(&o));
    write_data(&d.join("other.bin"), 700_000, 4);
    let o = run(cmd("bverify").arg("-q").arg(&url).arg(d.join("other.bin")));
    assert_exit(&o, 1);

    // A redirect to the torrent is followed.
    let redirect = tiny_server(format!("HTTP/1.1 302 Found\r\nLocation: {url}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), 0, 1);
    let o = run(cmd("bdecode").arg("--info-hash").arg(format!("{redirect}/old-link")));
    assert_exit(&o, 0);
    assert_eq!(stdout(&o).trim(), ih);

    // Errors: one line, exit 2, for each tool.
    let missing = format!("{base}/torrents/{}.torrent", "0".repeat(40));
    for prog in ["bdecode", "bverify", "bfetch"] {
        let o = run(cmd(prog).arg(&missing));
        assert_one_line(&o, prog, 2, "HTTP 404");
    }
    let refused = format!("http://127.0.0.1:{}/x.torrent", free_port());
    for prog in ["bdecode", "bverify", "bfetch"] {
        let o = run(cmd(prog).arg(&refused));
        assert_one_line(&o, prog, 2, &refused);
    }
    let big = tiny_server(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", (16 << 20) + 1), (16 << 20) + 1, 1);
    let o = run(cmd("bfetch").arg(format!("{big}/big.torrent")));
    assert_one_line(&o, "bfetch", 2, "larger than 16777216 bytes");
    for arg in [format!("magnet:?xt=urn:btih:{ih}"), ih.clone()] {
        for prog in ["bdecode", "bverify", "bfetch"] {
            let o = run(cmd(prog).arg(&arg));
            assert_one_line(&o, prog, 2, "needs peers to fetch the metadata from");
        }
    }
    let o = run(cmd("bfetch").arg("https://127.0.0.1:1/a.torrent"));
    assert_one_line(&o, "bfetch", 2, "only http:// URLs");
}

#[test]
fn dashboard_shows_the_origin_uploading_live_and_decodes_clients() {
    let d = Dir::new("ops-dash");
    // 8 MiB at 1 MiB/s from the origin: about eight seconds of sync to watch. The first seed
    // port is held by another process (as a bfetch on 6881 would be): the session skips it.
    let held = TcpListener::bind("0.0.0.0:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let (_btrack, base) = start_btrack(&d, &["--seed", "--seed-port", &held_port.to_string(), "--seed-upload-rate", "1M"]);
    let size = 8usize << 20;
    let payload = data(size, 5);
    let torrent = upload(&base, "img.bin", &payload);
    let ih = Metainfo::parse(&torrent).unwrap().info_hash.hex();
    let api = format!("{base}/api/torrents/{ih}");
    // The seeding session is up and announced (as the origin: nothing downloaded, nothing left).
    wait_until(T, || format!("origin never announced: {}", get_json(&api)), || {
        let j = get_json(&api);
        j["seeded_here"]["state"] == "seeding" && j["peers"].as_array().is_some_and(|p| p.iter().any(|p| p["origin"] == true))
    });
    let seed_port = get_json(&api)["seeded_here"]["port"].as_u64().unwrap() as u16;
    assert!(seed_port > held_port, "seeding on {seed_port}, {held_port} is held");
    assert!(listening(None, seed_port));
    drop(held);
    let (s, page) = get(&format!("{base}/t/{ih}"));
    assert_eq!(s, 200);
    let page = String::from_utf8_lossy(&page).into_owned();
    assert!(page.contains("This btrack seeds it"), "{page}");
    assert!(!page.contains("id=bseed"), "no bseed command when btrack seeds: {page}");

    let url = format!("{base}/torrents/{ih}.torrent");
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = cmd("bfetch");
    c.arg(&url).arg("-o").arg(&out).args(["--no-linger", "--json", "--port", "0"]);
    let mut f = Proc::spawn("fetch", c, d.path());
    // While the fetch runs, the origin's uploaded bytes grow on the API.
    let live = watch_origin(&api, size as u64, &mut f);
    assert!(f.poll().unwrap().success(), "{}", f.dump());
    assert_eq!(sha1_file(&out.join("img.bin")), shoal::hex::encode(&shoal::hashing::sha1(&payload)));
    assert!(live.is_some(), "origin_uploaded never showed a partial value during the sync\n{}", f.dump());
    // After it: the whole file, a share of 1.0 (the origin is the only uploader).
    wait_until(T, || format!("origin total never reached {size}: {}", get_json(&api)), || get_json(&api)["origin_uploaded"].as_u64().unwrap() >= size as u64);
    let j = get_json(&api);
    let origin = j["peers"].as_array().unwrap().iter().find(|p| p["origin"] == true).unwrap().clone();
    assert_eq!(origin["client"], "-SH0100-", "{origin}");
    assert_eq!(origin["client_name"], "shoal 0.1.0", "{origin}");
    assert!(origin["upload_share"].as_f64().unwrap() > 0.99, "{j}");
    assert!(j["origin_uploaded_ratio"].as_f64().unwrap() >= 1.0, "{j}");
    let (_, page) = get(&format!("{base}/t/{ih}"));
    let page = String::from_utf8_lossy(&page).into_owned();
    assert!(page.contains("shoal 0.1.0"), "{page}");
    let ratio = page.split("id=origin-ratio>").nth(1).and_then(|s| s.split('×').next()).unwrap().to_string();
    assert!(ratio.parse::<f64>().unwrap() >= 1.0, "page ratio {ratio}");

    // Other clients' ids are decoded too, with the raw prefix kept.
    let tracker = format!("{base}/announce");
    let req = shoal::tracker::client::AnnounceRequest {
        info_hash: Metainfo::parse(&torrent).unwrap().info_hash.0,
        peer_id: *b"-TR4060-abcdefghijkl",
        port: 9,
        uploaded: 0,
        downloaded: 0,
        left: size as u64,
        event: shoal::tracker::client::Event::Started,
        numwant: None,
        key: 77,
    };
    shoal::tracker::client::announce(&tracker, &req, T).unwrap();
    let j = get_json(&api);
    let tr = j["peers"].as_array().unwrap().iter().find(|p| p["client"] == "-TR4060-").cloned().unwrap_or_else(|| panic!("{j}"));
    assert_eq!(tr["client_name"], "Transmission 4.0.6");
}

/// The origin's uploaded bytes on the API while a rate-capped fetch of `size` bytes from it
/// runs: returns a value seen strictly between 0 and `size`, if any.
fn watch_origin(api: &str, size: u64, f: &mut Proc) -> Option<u64> {
    let mut live = None;
    while f.poll().is_none() {
        let up = get_json(api)["origin_uploaded"].as_u64().unwrap();
        if up > 0 && up < size {
            live = Some(up);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    live
}

#[test]
fn dashboard_shows_a_bseed_origin_live_too() {
    let d = Dir::new("ops-dash-bseed");
    let (_btrack, base) = start_btrack(&d, &[]);
    let size = 8usize << 20;
    let payload = data(size, 6);
    let torrent = upload(&base, "img.bin", &payload);
    let ih = Metainfo::parse(&torrent).unwrap().info_hash.hex();
    let api = format!("{base}/api/torrents/{ih}");
    // bseed reads the torrent from btrack too.
    let mut c = cmd("bseed");
    c.arg(format!("{base}/torrents/{ih}.torrent")).arg(d.join("data/content/img.bin")).args(["--port", "0", "--max-upload-rate", "1M"]);
    let _seed = Proc::spawn("bseed", c, d.path());
    wait_until(T, || format!("bseed never announced: {}", get_json(&api)), || {
        get_json(&api)["peers"].as_array().is_some_and(|p| p.iter().any(|p| p["origin"] == true))
    });
    let (_, page) = get(&format!("{base}/t/{ih}"));
    let page = String::from_utf8_lossy(&page).into_owned();
    assert!(page.contains("id=bseed") && !page.contains("This btrack seeds it"), "{page}");

    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = cmd("bfetch");
    c.arg(format!("{base}/torrents/{ih}.torrent")).arg("-o").arg(&out).args(["--no-linger", "--port", "0"]);
    let mut f = Proc::spawn("fetch", c, d.path());
    let live = watch_origin(&api, size as u64, &mut f);
    assert!(f.poll().unwrap().success(), "{}", f.dump());
    assert!(live.is_some(), "origin_uploaded never showed a partial value during the sync");
    wait_until(T, || format!("origin total never reached {size}: {}", get_json(&api)), || get_json(&api)["origin_uploaded"].as_u64().unwrap() >= size as u64);
}

// ---- item 6: the service ----------------------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        return;
    }
    let d = Dir::new("ops-units");
    // The units name /usr/local/bin/*; verify checks ExecStart exists, so point them at ours.
    let units = repo().join("scripts/systemd");
    for name in ["btrack.service", "bseed@.service"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        let text = text.replace("/usr/local/bin/", &format!("{}/", bin("btrack").parent().unwrap().display()));
        std::fs::write(d.join(name), text).unwrap();
    }
    std::fs::copy(d.join("bseed@.service"), d.join("bseed@img.service")).unwrap();
    for unit in ["btrack.service", "bseed@img.service"] {
        let o = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(d.join(unit)));
        let err = stderr(&o);
        assert!(o.status.success() && err.trim().is_empty(), "{unit}: systemd-analyze verify:\n{err}{}", stdout(&o));
    }
    // The hardening the units promise.
    for name in ["btrack.service", "bseed@.service"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        for want in ["ProtectSystem=strict", "NoNewPrivileges=yes", "Restart=on-failure", "ReadWritePaths=", "User=shoal"] {
            assert!(text.contains(want), "{name} lacks {want}");
        }
    }
}

/// The unit's ExecStart line as sh runs it (systemd turns `$$` into `$`), with `/usr/local/bin`
/// and the data directory replaced.
fn exec_start(unit: &str, bin_dir: &Path, data: &Path) -> String {
    let text = std::fs::read_to_string(repo().join("scripts/systemd").join(unit)).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let script = line.strip_prefix("/bin/sh -c '").and_then(|l| l.strip_suffix('\'')).unwrap_or_else(|| panic!("{line}"));
    script.replace("$$", "$").replace("/usr/local/bin", &bin_dir.display().to_string()).replace("/var/lib/shoal/btrack", &data.display().to_string())
}

#[test]
fn btrack_unit_command_line_runs_btrack_with_its_settings() {
    let d = Dir::new("ops-unit-exec");
    // The arguments the unit builds, with and without an admin token.
    let fake = d.join("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("btrack"), "#!/bin/sh\nfor a; do printf '[%s]' \"$a\"; done\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(fake.join("btrack")).status().unwrap();
    let script = exec_start("btrack.service", &fake, Path::new("/data"));
    let argv = |token: &str| {
        let o = run(Command::new("/bin/sh").arg("-c").arg(&script).env("BTRACK_LISTEN", "0.0.0.0:6969").env("BTRACK_ADMIN_TOKEN", token).env("BTRACK_OPTS", "--seed --super-seed"));
        assert_exit(&o, 0);
        stdout(&o)
    };
    assert_eq!(argv("s3cret x"), "[--listen][0.0.0.0:6969][--data-dir][/data][--admin-token][s3cret x][--seed][--super-seed]");
    assert_eq!(argv(""), "[--listen][0.0.0.0:6969][--data-dir][/data][--seed][--super-seed]");
    // The real btrack through it: starts, serves, stops cleanly on SIGTERM (systemd's KillSignal).
    let data = d.join("data");
    let script = exec_start("btrack.service", bin("btrack").parent().unwrap(), &data);
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(&script).env("BTRACK_LISTEN", "127.0.0.1:0").env("BTRACK_ADMIN_TOKEN", "adm").env("BTRACK_OPTS", "--seed");
    let mut p = Proc::spawn("btrack-unit", c, d.path());
    let port = logged_port(&mut p, "listening on 127.0.0.1:");
    let j = get_json(&format!("http://127.0.0.1:{port}/api/torrents"));
    assert_eq!(j, serde_json::json!([]));
    assert!(data.join("torrents").is_dir() || data.is_dir(), "data directory created");
    p.signal(15);
    let status = p.wait_or_panic(T);
    assert_eq!(status.code(), Some(0), "{}", p.dump());
}

// ---- item 1: several torrents, one process ----------------------------------------------------

/// bseed started with `args` (plus `--port 0`); answers it and the port it listens on.
fn start_bseed(d: &Dir, args: &[&std::ffi::OsStr]) -> (Proc, u16) {
    let mut c = cmd("bseed");
    c.args(args).args(["--port", "0"]);
    let mut p = Proc::spawn("bseed", c, d.path());
    let port = logged_port(&mut p, "listening on port ");
    (p, port)
}

/// bfetch of `torrents` into `out` from the peer on 127.0.0.1:`port`, exiting when its own
/// copies are complete.
fn fetch_from(port: u16, torrents: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    run(cmd("bfetch").args(torrents).arg("-o").arg(out).args(["--peer", &format!("127.0.0.1:{port}"), "--port", "0", "--no-linger"]).args(extra))
}

/// The JSON lines a tool printed on standard output.
fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

#[test]
fn several_torrents_in_one_bseed_and_one_bfetch_over_one_port() {
    let d = Dir::new("ops-multi");
    let (a, b) = (d.join("a.bin"), d.join("b.bin"));
    write_data(&a, 3 << 20, 11);
    write_data(&b, (5 << 20) + 123, 12);
    let (ta, tb) = (d.join("a.torrent"), d.join("b.torrent"));
    let (ma, mb) = (mktorrent(&a, &ta, &[]), mktorrent(&b, &tb, &[]));

    let (mut seed, port) = start_bseed(&d, &[ta.as_os_str(), a.as_os_str(), tb.as_os_str(), b.as_os_str()]);
    wait_until(T, || seed.dump(), || seed.stderr().matches(&format!("listening on port {port}")).count() == 2);

    let out = d.join("out");
    let o = fetch_from(port, &[&ta, &tb], &out, &["--json", "--timeout", "60s"]);
    assert_exit(&o, 0);
    assert_same_content(&a, &out.join("a.bin"));
    assert_same_content(&b, &out.join("b.bin"));
    let reports = json_lines(&stdout(&o));
    assert_eq!(reports.len(), 2, "one report per torrent");
    let hashes: Vec<&str> = reports.iter().map(|r| r["info_hash"].as_str().unwrap()).collect();
    assert_eq!(hashes, vec![ma.info_hash.hex(), mb.info_hash.hex()], "in the order given");
    assert!(reports.iter().all(|r| r["complete"] == true));
    assert_eq!(reports[0]["port"], reports[1]["port"], "one listening port for both");
    // Both torrents' log lines name them.
    let err = stderr(&o);
    assert!(err.contains("bfetch: a.bin: ") && err.contains("bfetch: b.bin: "), "{err}");
    seed.stop(T);
}

#[test]
fn one_torrent_that_cannot_finish_does_not_stop_the_others() {
    let d = Dir::new("ops-multi-fail");
    let (a, b) = (d.join("a.bin"), d.join("b.bin"));
    write_data(&a, 2 << 20, 21);
    write_data(&b, 2 << 20, 22);
    let (ta, tb) = (d.join("a.torrent"), d.join("b.torrent"));
    mktorrent(&a, &ta, &[]);
    mktorrent(&b, &tb, &[]);
    // The seed has only a; nobody has b.
    let (mut seed, port) = start_bseed(&d, &[ta.as_os_str(), a.as_os_str()]);
    let out = d.join("out");
    let o = fetch_from(port, &[&ta, &tb], &out, &["--json", "--stall-timeout", "3s"]);
    assert_exit(&o, 1);
    assert_same_content(&a, &out.join("a.bin"));
    assert!(!out.join("b.bin").exists(), "nothing that looks complete");
    let reports = json_lines(&stdout(&o));
    assert_eq!(reports.len(), 2);
    assert_eq!((reports[0]["complete"].clone(), reports[1]["complete"].clone()), (true.into(), false.into()));
    let err = stderr(&o);
    assert!(err.contains("b.bin: could not finish") && err.contains("1 of 2 torrents did not complete"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    seed.stop(T);
}

#[test]
fn tcp_congestion_the_kernel_lacks_is_reported_and_the_download_goes_on() {
    let d = Dir::new("ops-congestion");
    let a = d.join("a.bin");
    write_data(&a, 3 << 20, 41);
    let ta = d.join("a.torrent");
    mktorrent(&a, &ta, &[]);
    let (mut seed, port) = start_bseed(&d, &[OsStr::new("--tcp-congestion"), OsStr::new("reno"), ta.as_os_str(), a.as_os_str()]);
    let out = d.join("out");
    let o = fetch_from(port, &[&ta], &out, &["--tcp-congestion", "nosuchcc", "--timeout", "60s"]);
    assert_exit(&o, 0);
    assert_same_content(&a, &out.join("a.bin"));
    let err = stderr(&o);
    assert_eq!(err.matches("TCP congestion control nosuchcc not available").count(), 1, "{err}");
    assert!(!seed.stderr().contains("not available"), "reno is in every kernel: {}", seed.stderr());
    seed.stop(T);
    // A name that cannot be one is a usage error, before anything starts.
    let o = run(cmd("bfetch").arg(&ta).args(["--peer", "127.0.0.1:9", "--tcp-congestion", "Cu bic", "-o"]).arg(d.join("out2")));
    assert_one_line(&o, "bfetch", 2, "--tcp-congestion");
    let o = run(cmd("bseed").args(["--tcp-congestion", ""]).arg(&ta).arg(&a));
    assert_one_line(&o, "bseed", 2, "--tcp-congestion");
}

#[test]
fn several_torrents_usage_errors_are_one_line() {
    let d = Dir::new("ops-multi-usage");
    let a = d.join("a.bin");
    write_data(&a, 1 << 20, 31);
    let ta = d.join("a.torrent");
    mktorrent(&a, &ta, &[]);
    let o = run(cmd("bfetch").arg(&ta).arg(&ta).args(["--peer", "127.0.0.1:9", "-o"]).arg(d.join("out")));
    assert_one_line(&o, "bfetch", 2, "give each once");
    let o = run(cmd("bseed").arg(&ta).arg(&a).arg(&ta));
    assert_one_line(&o, "bseed", 2, "TORRENT PATH pairs");
}

// ---- item 7: IPv6 ----------------------------------------------------------------------------

#[test]
fn ipv6_peers_through_btrack_on_loopback_and_ipv4_on_the_same_port() {
    assert!(
        TcpListener::bind("[::1]:0").is_ok(),
        "this host has no IPv6 loopback (::1): the IPv6 test cannot run"
    );
    let d = Dir::new("ops-v6");
    let mut c = cmd("btrack");
    c.args(["--listen", "[::1]:0", "--open", "--interval", "2s", "--data-dir"]).arg(d.join("data"));
    let mut tracker = Proc::spawn("btrack", c, d.path());
    let tport = logged_port(&mut tracker, "listening on [::1]:");
    let content = d.join("v6.bin");
    write_data(&content, (2 << 20) + 77, 61);
    let torrent = d.join("v6.torrent");
    mktorrent(&content, &torrent, &["-a", &format!("http://[::1]:{tport}/announce")]);

    let (mut seed, sport) = start_bseed(&d, &[torrent.as_os_str(), content.as_os_str()]);
    // The tracker hands out the seed's IPv6 address (peers6); bfetch dials it.
    let out = d.join("out6");
    let o = run(cmd("bfetch").arg(&torrent).arg("-o").arg(&out).args(["--port", "0", "--no-linger", "--json", "--timeout", "60s"]));
    assert_exit(&o, 0);
    assert_same_content(&content, &out.join("v6.bin"));
    let r: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    let addrs: Vec<&str> = r["peers"].as_array().unwrap().iter().map(|p| p["addr"].as_str().unwrap()).collect();
    assert!(addrs.contains(&format!("[::1]:{sport}").as_str()), "fetched from the seed over IPv6: {addrs:?}");
    // The same listening socket takes IPv4 peers too.
    let out4 = d.join("out4");
    let o = fetch_from(sport, &[&torrent], &out4, &["--timeout", "60s"]);
    assert_exit(&o, 0);
    assert_same_content(&content, &out4.join("v6.bin"));
    seed.stop(T);
}

// ---- issue 10 item 7: thread exhaustion -------------------------------------------------------

/// Threads of process `pid` (from /proc).
fn threads_of(pid: u32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[test]
fn idle_connections_cannot_exhaust_bseed_threads() {
    let d = Dir::new("ops-idle");
    let content = d.join("idle.bin");
    write_data(&content, 1 << 20, 71);
    let torrent = d.join("idle.torrent");
    mktorrent(&content, &torrent, &[]);
    let (mut seed, port) = start_bseed(&d, &[torrent.as_os_str(), content.as_os_str(), "--max-peers".as_ref(), "10".as_ref()]);
    let base = threads_of(seed.pid());
    // 600 connections that never send a handshake.
    let idle: Vec<std::net::TcpStream> = (0..600).filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(idle.len() >= 500, "could open only {} connections", idle.len());
    // Beyond the connections waiting for a handshake, the acceptor closes them at once: wait
    // until all but those have been closed on us, so it has seen every one.
    for s in &idle {
        s.set_nonblocking(true).unwrap();
    }
    let waiting = shoal::peer::accept::MAX_HANDSHAKING;
    wait_until(T, || format!("bseed to refuse the idle connections beyond {waiting}"), || {
        let closed = idle.iter().filter(|s| matches!((&**s).read(&mut [0u8; 1]), Ok(0))).count();
        closed + waiting >= idle.len()
    });
    let peak = threads_of(seed.pid());
    assert!(
        peak <= base + shoal::peer::accept::MAX_HANDSHAKING + 4,
        "{} idle connections made {} threads (from {base})",
        idle.len(),
        peak
    );
    drop(idle);
    // And it still serves.
    let out = d.join("out");
    let o = fetch_from(port, &[&torrent], &out, &["--timeout", "60s"]);
    assert_exit(&o, 0);
    assert_same_content(&content, &out.join("idle.bin"));
    seed.assert_running();
    seed.stop(T);
}

/// CPU time (user + system) of process `pid` so far, in clock ticks (from /proc).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which ends with the last ')'): utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_seed_and_an_idle_fetcher_use_no_cpu() {
    // A session loop once spun on a closed channel (the web seeds' events, with none
    // configured): a whole core per bseed and bfetch, which starved the 32-host testbed.
    let d = Dir::new("ops-idle");
    let content = d.join("img.bin");
    write_data(&content, 1 << 20, 3);
    let t = d.join("img.torrent");
    mktorrent(&content, &t, &[]);
    let (mut seed, port) = start_bseed(&d, &[t.as_os_str(), content.as_os_str()]);
    // A fetcher that stays (seeding for a while) once complete.
    let mut c = cmd("bfetch");
    c.arg(&t).arg("-o").arg(d.join("out")).args(["--peer", &format!("127.0.0.1:{port}"), "--port", "0", "--no-linger", "--seed-time", "1h"]);
    let mut f = Proc::spawn("bfetch", c, d.path());
    wait_until(Duration::from_secs(60), || f.dump(), || d.join("out/img.bin").exists());
    let (s0, f0) = (cpu_ticks(seed.pid()), cpu_ticks(f.pid()));
    // A measuring window, not a synchronisation: both are idle throughout it.
    std::thread::sleep(Duration::from_secs(3));
    let (s1, f1) = (cpu_ticks(seed.pid()), cpu_ticks(f.pid()));
    seed.assert_running();
    f.assert_running();
    // 3 s of a spinning thread is ~300 ticks; an idle session ticks once a second.
    assert!(s1 - s0 < 50, "bseed used {} ticks in 3 s while idle", s1 - s0);
    assert!(f1 - f0 < 50, "bfetch used {} ticks in 3 s while idle", f1 - f0);
}
