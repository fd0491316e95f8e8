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
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

/// The number after `marker` in `text`, e.g. the port in "listening on port 6882".
fn number_after(text: &str, marker: &str) -> Option<u16> {
    let i = text.find(marker)? + marker.len();
    let digits: String = text[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Waits until `p` logs `marker` followed by a port, and returns the port.
fn logged_port(p: &mut Proc, marker: &str) -> u16 {
    let end = Instant::now() + T;
    loop {
        if let Some(port) = number_after(&p.stderr(), marker) {
            return port;
        }
        p.assert_running();
        assert!(Instant::now() < end, "{} never logged {marker:?}\n{}", p.name, p.dump());
        std::thread::sleep(Duration::from_millis(50));
    }
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
