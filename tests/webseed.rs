//! Web seeds (BEP 19) end to end, with a real nginx (Debian's `nginx-light`) started by each
//! test on loopback with its own config (single process, `daemon off`, logs in the test's
//! directory). What nginx saw is read from its access log (status and body bytes of every
//! request), so "the server sent each byte about once" is measured on the server's side.
//!
//! - nginx alone, single-file torrent: the copy equals the source, every byte left nginx once;
//! - a multi-file torrent whose names need percent-encoding, pieces crossing files;
//! - a redirect (302) to where the files are;
//! - nginx killed midway: bfetch backs off, logs one line, and finishes from a bseed found
//!   through btrack; and again with nginx restarted instead of a seed;
//! - a web seed answering 404 beside a peer: not fatal, exit 0;
//! - a web seed serving other bytes: dropped after three bad pieces; alone, bfetch exits 1
//!   and leaves no file under the final name;
//! - four fetchers at once with nginx as the only origin: every copy verified, and nginx sent
//!   at most 1.3 × the content.
//!
//! nginx cannot listen on port 0 and say which port it got, so its port comes from
//! `free_port`; our tools use `--port 0` and the port is read from their log.
mod common;
#[path = "helpers/peer_util.rs"]
mod peer_util;

use common::*;
use peer_util::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(90);

/// An nginx serving `root` on 127.0.0.1, killed on drop (it is a `Proc`).
struct Nginx {
    proc: Proc,
    port: u16,
    log: PathBuf,
}

impl Nginx {
    /// `server` is extra text for the server block (locations, limit_rate).
    fn start(d: &Dir, root: &Path, server: &str) -> Option<Nginx> {
        Nginx::start_on(d, root, server, free_port())
    }

    fn start_on(d: &Dir, root: &Path, server: &str, port: u16) -> Option<Nginx> {
        if !have("nginx") && !Path::new("/usr/sbin/nginx").exists() {
            return None;
        }
        let dir = d.join("nginx");
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let log = dir.join("access.log");
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  log_format sent '$status $body_bytes_sent $request_uri';\n  access_log {d}/access.log sent;\n\
                 client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;\n\
                 uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
                 server {{ listen 127.0.0.1:{port}; root {root}; {server} }}\n}}\n",
                d = dir.display(),
                root = root.display()
            ),
        )
        .unwrap();
        let bin = if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" };
        let mut c = Command::new(bin);
        c.arg("-c").arg(&conf).arg("-p").arg(&dir);
        let mut proc = Proc::spawn("nginx", c, d.path());
        wait_until(T, || format!("nginx listening on {port}\n{}", proc.dump()), || listening(None, port));
        proc.assert_running();
        Some(Nginx { proc, port, log })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// (status, body bytes) of every request so far.
    fn requests(&self) -> Vec<(u16, u64)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
            })
            .collect()
    }

    fn bytes_sent(&self) -> u64 {
        self.requests().iter().map(|r| r.1).sum()
    }
}

/// `size` bytes of content at `www/files/img.iso` and its torrent with `web` as url-list
/// (and `tracker` as announce), in 256 KiB pieces.
fn single(d: &Dir, size: usize, web: &[String], tracker: Option<&str>) -> (PathBuf, PathBuf) {
    let content = d.join("www/files/img.iso");
    write_data(&content, size, 7);
    let t = d.join("img.torrent");
    let mut c = cmd("mktorrent");
    c.args(["-q", "-l", "256K", "-o"]).arg(&t);
    for w in web {
        c.args(["-w", w]);
    }
    if let Some(a) = tracker {
        c.args(["-a", a]);
    }
    assert_exit(&run(c.arg(&content)), 0);
    (content, t)
}

fn bfetch(d: &Dir, name: &str, torrent: &Path, out: &Path, extra: &[&str]) -> Proc {
    let mut c = cmd("bfetch");
    c.arg(torrent).arg("-o").arg(out).args(["--port", "0", "--no-linger", "--json"]).args(extra);
    Proc::spawn(name, c, d.path())
}

fn finish(p: &mut Proc) -> serde_json::Value {
    let st = p.wait_or_panic(T);
    assert!(st.success(), "{} failed: {st:?}\n{}", p.name, p.dump());
    json_of(p)
}

fn web_downloaded(j: &serde_json::Value) -> u64 {
    j["web_seeds"][0]["downloaded"].as_u64().unwrap_or(0)
}

fn start_btrack(d: &Dir) -> (Proc, String) {
    let mut c = cmd("btrack");
    c.args(["--listen", "127.0.0.1:0", "--open", "--interval", "2s", "--data-dir"]).arg(d.join("btrack"));
    let mut p = Proc::spawn("btrack", c, d.path());
    let port = wait_logged_port(&mut p, "listening on 127.0.0.1:", T);
    (p, format!("http://127.0.0.1:{port}/announce"))
}

#[test]
fn nginx_alone_serves_a_single_file_torrent_each_byte_once() {
    let d = Dir::new("ws-single");
    let Some(ng) = Nginx::start(&d, &d.join("www"), "") else { return };
    let size = (12 << 20) + 12345;
    let (src, t) = single(&d, size, &[ng.url("/files/")], None);
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &[]);
    let j = finish(&mut f);
    assert_same_content(&src, &out.join("img.iso"));
    assert_eq!(web_downloaded(&j), size as u64, "{j}");
    assert_eq!(ng.bytes_sent(), size as u64, "nginx sent each byte once: {:?}", ng.requests());
    assert!(ng.requests().iter().all(|r| r.0 == 206), "range requests only: {:?}", ng.requests());
}

#[test]
fn a_multi_file_torrent_with_names_to_escape_and_pieces_across_files() {
    let d = Dir::new("ws-multi");
    let root = d.join("www/set 1");
    write_data(&root.join("a b.bin"), 70_000, 1);
    write_data(&root.join("sub/c#1.bin"), 5, 2);
    std::fs::write(root.join("sub/empty"), b"").unwrap();
    write_data(&root.join("sub/d%20e.bin"), 300_001, 3);
    write_data(&root.join("z.bin"), 40_000, 4);
    let Some(ng) = Nginx::start(&d, &d.join("www"), "") else { return };
    let t = d.join("set.torrent");
    // No trailing slash: BEP 19 says the client adds one before the name.
    let mut c = cmd("mktorrent");
    c.args(["-q", "-l", "32K", "-w", &ng.url(""), "-o"]).arg(&t).arg(&root);
    assert_exit(&run(&mut c), 0);
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &[]);
    finish(&mut f);
    assert_eq!(tree(&root), tree(&out.join("set 1")));
    let total = 70_000 + 5 + 300_001 + 40_000;
    assert_eq!(ng.bytes_sent(), total, "{:?}", ng.requests());
}

#[test]
fn a_redirect_is_followed() {
    let d = Dir::new("ws-redirect");
    let Some(ng) = Nginx::start(&d, &d.join("www"), "location /old/ { return 302 /files/img.iso; }") else { return };
    let size = 3 << 20;
    let (src, t) = single(&d, size, &[], None);
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &["--web-seed", &ng.url("/old/moved.iso")]);
    let j = finish(&mut f);
    assert_same_content(&src, &out.join("img.iso"));
    assert_eq!(web_downloaded(&j), size as u64);
    let r = ng.requests();
    assert!(r.iter().any(|r| r.0 == 302) && r.iter().any(|r| r.0 == 206), "{r:?}");
}

/// nginx serves slowly; it is killed once a quarter of the content has left it.
fn kill_midway(ng: &mut Nginx, f: &mut Proc, size: u64) {
    wait_until(T, || format!("a quarter served\n{}", f.dump()), || ng.bytes_sent() >= size / 4);
    ng.proc.signal(9);
    ng.proc.wait_or_panic(T);
    f.assert_running();
}

#[test]
fn nginx_dies_midway_and_a_seed_found_through_btrack_finishes() {
    let d = Dir::new("ws-dies-seed");
    let (_trk, announce) = start_btrack(&d);
    let Some(mut ng) = Nginx::start(&d, &d.join("www"), "limit_rate 2m;") else { return };
    let size = 16u64 << 20;
    let (src, t) = single(&d, size as usize, &[ng.url("/files/")], Some(&announce));
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &[]);
    kill_midway(&mut ng, &mut f, size);
    let mut c = cmd("bseed");
    c.arg(&t).arg(&src).args(["--port", "0"]);
    let _seed = Proc::spawn("bseed", c, d.path());
    let j = finish(&mut f);
    assert_same_content(&src, &out.join("img.iso"));
    let web = web_downloaded(&j);
    assert!(web >= size / 4 && web < size, "web seed sent {web} of {size}: {j}");
    assert!(j["web_seeds"][0]["failures"].as_u64().unwrap() >= 1, "{j}");
    let from_peers: u64 = j["peers"].as_array().unwrap().iter().map(|p| p["downloaded"].as_u64().unwrap()).sum();
    assert!(from_peers > 0, "{j}");
    let log = f.stderr();
    assert!(log.lines().filter(|l| l.contains("web seed")).count() <= 3, "one line per failure run, not a flood:\n{log}");
}

#[test]
fn nginx_dies_midway_and_comes_back() {
    let d = Dir::new("ws-dies-back");
    let Some(mut ng) = Nginx::start(&d, &d.join("www"), "limit_rate 2m;") else { return };
    let size = 12u64 << 20;
    let (src, t) = single(&d, size as usize, &[ng.url("/files/")], None);
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &["--stall-timeout", "60s"]);
    kill_midway(&mut ng, &mut f, size);
    // Back on the same port, without the rate limit.
    wait_until(T, || format!("bfetch noticed\n{}", f.dump()), || f.stderr().contains("trying again in"));
    let port = ng.port;
    std::fs::remove_file(&ng.log).unwrap();
    drop(ng);
    let Some(_ng) = Nginx::start_on(&d, &d.join("www"), "", port) else { return };
    let j = finish(&mut f);
    assert_same_content(&src, &out.join("img.iso"));
    assert!(web_downloaded(&j) >= size, "{j}");
}

#[test]
fn a_web_seed_answering_404_beside_a_peer_is_not_fatal() {
    let d = Dir::new("ws-404");
    let Some(ng) = Nginx::start(&d, &d.join("www"), "") else { return };
    let (src, t) = single(&d, 4 << 20, &[ng.url("/nowhere/")], None);
    let mut c = cmd("bseed");
    c.arg(&t).arg(&src).args(["--port", "0"]);
    let mut seed = Proc::spawn("bseed", c, d.path());
    let port = wait_bound_port(&mut seed, T);
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &["--peer", &format!("127.0.0.1:{port}")]);
    let j = finish(&mut f);
    assert_same_content(&src, &out.join("img.iso"));
    assert_eq!(web_downloaded(&j), 0);
    if !ng.requests().is_empty() {
        // Asked before the peer connected: the 404 was logged, once.
        assert!(ng.requests().iter().all(|r| r.0 == 404));
        assert_eq!(f.stderr().matches("HTTP 404").count(), 1, "{}", f.stderr());
    }
}

#[test]
fn a_web_seed_serving_other_bytes_is_dropped_and_nothing_looks_complete() {
    let d = Dir::new("ws-corrupt");
    let (_src, t) = single(&d, 4 << 20, &[], None);
    // The same name and size, other bytes.
    write_data(&d.join("evil/files/img.iso"), 4 << 20, 99);
    let Some(ng) = Nginx::start(&d, &d.join("evil"), "") else { return };
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &["--web-seed", &ng.url("/files/"), "--stall-timeout", "3s"]);
    let st = f.wait_or_panic(T);
    assert_eq!(st.code(), Some(1), "{}", f.dump());
    let log = f.stderr();
    assert!(log.contains("no longer used"), "{log}");
    // An unproven web seed is asked for one piece at a time until one passes its check.
    assert_eq!(ng.requests().len(), 3, "three bad pieces, then dropped: {:?}", ng.requests());
    assert!(!out.join("img.iso").exists(), "no file under the final name");
    let j = json_of(&f);
    assert_eq!(j["complete"], false);
    assert!(j["web_seeds"][0]["disabled"].as_bool().unwrap());
}

#[test]
fn four_fetchers_at_once_with_nginx_as_the_only_origin() {
    let d = Dir::new("ws-fleet");
    let (_trk, announce) = start_btrack(&d);
    // 1 MB/s per connection: the fetchers outpace nginx, as a fleet outpaces one server.
    let Some(ng) = Nginx::start(&d, &d.join("www"), "limit_rate 1m;") else { return };
    let size = 40u64 << 20;
    let (src, t) = single(&d, size as usize, &[ng.url("/files/")], Some(&announce));
    let fetchers: Vec<(Proc, PathBuf)> = (0..4)
        .map(|i| {
            let out = d.join(format!("out{i}"));
            (bfetch(&d, &format!("bfetch{i}"), &t, &out, &["--seed-until-done"]), out)
        })
        .collect();
    let mut web = 0;
    for (mut f, out) in fetchers {
        let j = finish(&mut f);
        assert_same_content(&src, &out.join("img.iso"));
        web += web_downloaded(&j);
    }
    let sent = ng.bytes_sent();
    eprintln!("nginx sent {:.3} x the content in {} requests", sent as f64 / size as f64, ng.requests().len());
    assert_eq!(sent, web, "what the fetchers counted is what nginx sent");
    assert!(sent >= size, "every piece came from nginx at least once");
    assert!(sent as f64 <= 1.3 * size as f64, "nginx sent {:.2} x the content", sent as f64 / size as f64);
}

#[test]
fn btrack_upload_with_a_web_seed_field_gives_a_torrent_bfetch_fetches_from_nginx() {
    let d = Dir::new("ws-upload");
    let content = d.join("www/files/up.iso");
    write_data(&content, (2 << 20) + 99, 5);
    let Some(ng) = Nginx::start(&d, &d.join("www"), "") else { return };
    let mut c = cmd("btrack");
    c.args(["--listen", "127.0.0.1:0", "--admin-token", "adm", "--data-dir"]).arg(d.join("btrack"));
    let mut trk = Proc::spawn("btrack", c, d.path());
    let port = wait_logged_port(&mut trk, "listening on 127.0.0.1:", T);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(T)).build().into();
    let base = format!("http://127.0.0.1:{port}/api/upload?name=up.iso&web_seed=");
    // Only http:// web seeds.
    let r = agent.put(&format!("{base}https%3A%2F%2Fx%2F")).header("X-Admin-Token", "adm").send(&b"abc"[..]).unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let url = shoal::metainfo::url_encode(ng.url("/files/").as_bytes());
    let mut r = agent.put(&format!("{base}{url}")).header("X-Admin-Token", "adm").send(&std::fs::read(&content).unwrap()[..]).unwrap();
    let body = r.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", String::from_utf8_lossy(&body));
    let m = shoal::metainfo::Metainfo::parse(&body).unwrap();
    assert_eq!(m.url_list, vec![ng.url("/files/")]);
    let t = d.join("up.torrent");
    std::fs::write(&t, &body).unwrap();
    // Nobody seeds it: nginx is the only source.
    let out = d.join("out");
    let mut f = bfetch(&d, "bfetch", &t, &out, &[]);
    let j = finish(&mut f);
    assert_same_content(&content, &out.join("up.iso"));
    assert_eq!(web_downloaded(&j), (2 << 20) + 99);
    // The page offers the field.
    let mut r = agent.get(&format!("http://127.0.0.1:{port}/")).call().unwrap();
    let page = r.body_mut().read_to_string().unwrap();
    assert!(page.contains("id=webseed"), "{page}");
}
