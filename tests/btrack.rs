//! End-to-end tests of btrack (issue 3): the tracker over HTTP and UDP with our client and
//! with clients nobody here wrote (libtorrent, Transmission, aria2), the manager's upload,
//! API, pages and data directory, a real browser driving the upload form, and a table of
//! malformed requests that must each get the right error while the server keeps serving.
mod common;

use common::*;
use shoal::tracker::client::{self, AnnounceRequest, Event};
use shoal::tracker::udp;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

/// A running btrack, killed on drop.
struct Btrack {
    child: Child,
    port: u16,
    log: PathBuf,
    host: String,
    /// Everything btrack has printed so far, and a signal for each new line.
    printed: std::sync::Arc<(std::sync::Mutex<String>, std::sync::Condvar)>,
}

impl Btrack {
    fn start(data: &Path, extra: &[&str]) -> Btrack {
        Btrack::start_on("127.0.0.1", data, extra)
    }
    /// Starts btrack on `host` port 0 and reads the bound port back from its
    /// `btrack: listening on ADDR` line (no port picked in advance, so no race for it).
    /// stderr is copied to the log file line by line.
    fn start_on(host: &str, data: &Path, extra: &[&str]) -> Btrack {
        use std::io::BufRead;
        let log = data.with_extension("log");
        let mut c = cmd("btrack");
        let listen = if host.contains(':') { format!("[{host}]:0") } else { format!("{host}:0") };
        c.arg("--listen").arg(listen).arg("--data-dir").arg(data).args(extra);
        if !extra.contains(&"--interval") {
            c.args(["--interval", "2s"]);
        }
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("start btrack");
        let stderr = child.stderr.take().unwrap();
        let mut file = std::fs::File::create(&log).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = std::sync::Arc::new((std::sync::Mutex::new(String::new()), std::sync::Condvar::new()));
        let shared = printed.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
                shared.0.lock().unwrap().push_str(&format!("{line}\n"));
                shared.1.notify_all();
                if let Some(rest) = line.strip_prefix("btrack: listening on ") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let bound = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("btrack did not say where it listens: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
        };
        let addr: SocketAddr = bound.parse().unwrap_or_else(|e| panic!("btrack's bound address {bound:?}: {e}"));
        Btrack { child, port: addr.port(), log, host: host.to_string(), printed }
    }
    /// What btrack has printed once it has printed `what` (its output is copied by a thread
    /// of ours, so a line written before a response came may not be in `log()` yet); panics
    /// after `timeout`.
    fn log_with(&self, what: &str, timeout: Duration) -> String {
        let (text, more) = &*self.printed;
        let (text, waited) = more.wait_timeout_while(text.lock().unwrap(), timeout, |t| !t.contains(what)).unwrap();
        assert!(!waited.timed_out(), "btrack did not print {what:?} in {timeout:?}: {}", *text);
        text.clone()
    }
    fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.url_host(), self.port)
    }
    fn udp_url(&self, path: &str) -> String {
        format!("udp://{}:{}{path}", self.url_host(), self.port)
    }
    fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host.parse().unwrap(), self.port)
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Btrack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed on drop.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build().into()
}

/// (status, headers as text, body)
fn http(method: &str, url: &str, body: Option<&[u8]>, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let a = agent();
    let mut resp = match body {
        Some(b) => {
            let mut r = match method {
                "PUT" => a.put(url),
                "POST" => a.post(url),
                _ => panic!("{method}"),
            };
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send(b).unwrap()
        }
        None => {
            let mut r = match method {
                "GET" => a.get(url),
                "DELETE" => a.delete(url),
                _ => panic!("{method}"),
            };
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call().unwrap()
        }
    };
    let status = resp.status().as_u16();
    let hs = resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.body_mut().with_config().limit(64 << 20).read_to_vec().unwrap();
    (status, hs, body)
}

fn get_json(url: &str) -> serde_json::Value {
    let (s, _, b) = http("GET", url, None, &[]);
    assert_eq!(s, 200, "{url}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

fn upload(b: &Btrack, name: &str, data: &[u8], extra: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http("PUT", &b.url(&format!("/api/upload?name={name}")), Some(data), extra)
}

fn info_hash_of(torrent: &[u8]) -> String {
    shoal::metainfo::Metainfo::parse(torrent).unwrap().info_hash.hex()
}

fn req(ih: [u8; 20], pid: u8, port: u16, left: u64) -> AnnounceRequest {
    let mut peer_id = *b"-SH0100-000000000000";
    peer_id[19] = pid;
    AnnounceRequest { info_hash: ih, peer_id, port, uploaded: 0, downloaded: 0, left, event: Event::Started, numwant: None, key: pid as u32 }
}

fn ih_bytes(hex: &str) -> [u8; 20] {
    shoal::metainfo::InfoHash::from_hex(hex).unwrap().0
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- tracker with our client ------------------------------------------------------------------

#[test]
fn upload_register_announce_restart_delete() {
    let d = Dir::new("btrack-reg");
    let data_dir = d.join("data");
    let payload = data(700_000, 1);
    let ih;
    {
        let b = Btrack::start(&data_dir, &["--admin-token", "adm"]);
        // Writes need the admin token.
        let (s, _, _) = upload(&b, "a.bin", &payload, &[]);
        assert_eq!(s, 401);
        let (s, hs, torrent) = upload(&b, "a.bin", &payload, &[("X-Admin-Token", "adm")]);
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&torrent));
        ih = info_hash_of(&torrent);
        assert!(hs.iter().any(|(k, v)| k.eq_ignore_ascii_case("x-info-hash") && *v == ih));
        let cmd = hs.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-bseed-command")).unwrap().1.clone();
        let content = std::fs::canonicalize(&data_dir).unwrap().join("content/a.bin");
        assert!(cmd.starts_with("bseed ") && cmd.ends_with(&content.display().to_string()), "{cmd}");
        assert_eq!(std::fs::read(&content).unwrap(), payload);
        // Printed (or this waits and fails).
        b.log_with(&cmd, T);
        // Same info-hash as mktorrent for the same file.
        std::fs::write(d.join("a.bin"), &payload).unwrap();
        let o = run(&mut cmd_mk(&d.join("a.bin"), &d.join("a.torrent")));
        assert_exit(&o, 0);
        assert_eq!(info_hash_of(&std::fs::read(d.join("a.torrent")).unwrap()), ih);
        // The uploaded torrent announces to this tracker.
        let m = shoal::metainfo::Metainfo::parse(&torrent).unwrap();
        assert_eq!(m.announce.as_deref(), Some(b.url("/announce").as_str()));

        // Announce: HTTP and UDP, peers see each other.
        let seed = client::announce(&b.url("/announce"), &req(ih_bytes(&ih), 1, 7001, 0), T).unwrap();
        assert!(seed.peers.is_empty());
        let leech = client::announce(&b.udp_url("/announce"), &req(ih_bytes(&ih), 2, 7002, 100), T).unwrap();
        assert_eq!(leech.peers, vec!["127.0.0.1:7001".parse::<SocketAddr>().unwrap()]);
        assert_eq!((leech.complete, leech.incomplete), (Some(1), Some(1)));
        let s = client::scrape(&b.url("/announce"), &ih_bytes(&ih), T).unwrap();
        assert_eq!((s.complete, s.incomplete), (1, 1));
        let s = client::scrape(&b.udp_url("/announce"), &ih_bytes(&ih), T).unwrap();
        assert_eq!((s.complete, s.incomplete), (1, 1));
        // Unregistered torrents are refused on both protocols.
        for url in [b.url("/announce"), b.udp_url("/announce")] {
            match client::announce(&url, &req([9; 20], 3, 7003, 5), T) {
                Err(client::Error::Failure { reason, .. }) => assert_eq!(reason, "unregistered torrent"),
                other => panic!("{url}: {other:?}"),
            }
        }
        // The API shows the peers and the page lists the torrent.
        let j = get_json(&b.url(&format!("/api/torrents/{ih}")));
        assert_eq!(j["seeders"], 1);
        assert_eq!(j["leechers"], 1);
        let ports: Vec<String> = j["peers"].as_array().unwrap().iter().map(|p| p["address"].as_str().unwrap().to_string()).collect();
        assert!(ports.contains(&"127.0.0.1:7001".to_string()) && ports.contains(&"127.0.0.1:7002".to_string()), "{ports:?}");
        let (s, _, page) = http("GET", &b.url("/"), None, &[]);
        assert_eq!(s, 200);
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(&ih) && page.contains("a.bin"));
        let (s, _, page) = http("GET", &b.url(&format!("/t/{ih}")), None, &[]);
        assert_eq!(s, 200);
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("127.0.0.1:7002") && page.contains("origin"), "{page}");
        let (_, _, metrics) = http("GET", &b.url("/metrics"), None, &[]);
        let metrics = String::from_utf8(metrics).unwrap();
        assert!(metrics.contains("btrack_announces_total{proto=\"udp\",event=\"started\"} "), "{metrics}");
        assert!(metrics.contains("btrack_registered_torrents 1"));
        assert!(metrics.contains(&format!("btrack_upload_bytes_total {}", payload.len())));
    }
    // Restart: the registration survives, peers are soft state.
    let b = Btrack::start(&data_dir, &["--admin-token", "adm"]);
    let l = get_json(&b.url("/api/torrents"));
    assert_eq!(l.as_array().unwrap().len(), 1);
    assert_eq!(l[0]["info_hash"], ih.as_str());
    assert_eq!(l[0]["seeders"], 0);
    let r = client::announce(&b.url("/announce"), &req(ih_bytes(&ih), 5, 7005, 0), T).unwrap();
    assert!(r.peers.is_empty());
    let (s, _, t) = http("GET", &b.url(&format!("/torrents/{ih}.torrent")), None, &[]);
    assert_eq!(s, 200);
    assert_eq!(info_hash_of(&t), ih);
    // Register an existing torrent with POST, then delete both.
    let other = d.join("b.bin");
    write_data(&other, 50_000, 2);
    assert_exit(&run(&mut cmd_mk(&other, &d.join("b.torrent"))), 0);
    let tb = std::fs::read(d.join("b.torrent")).unwrap();
    let (s, _, _) = http("POST", &b.url("/api/torrents"), Some(&tb), &[]);
    assert_eq!(s, 401);
    let (s, _, body) = http("POST", &b.url("/api/torrents"), Some(&tb), &[("Authorization", "Bearer adm")]);
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&body));
    let ihb = info_hash_of(&tb);
    assert!(client::announce(&b.url("/announce"), &req(ih_bytes(&ihb), 1, 7001, 0), T).is_ok());
    let (s, _, _) = http("POST", &b.url("/api/torrents"), Some(b"not a torrent"), &[("Authorization", "Bearer adm")]);
    assert_eq!(s, 422);
    let (s, _, _) = http("DELETE", &b.url(&format!("/api/torrents/{ih}")), None, &[]);
    assert_eq!(s, 401);
    // The admin token is taken from headers only: in a URL it would land in logs and histories.
    let (s, _, _) = http("DELETE", &b.url(&format!("/api/torrents/{ih}?admin_token=adm")), None, &[]);
    assert_eq!(s, 401);
    let (s, _, _) = http("DELETE", &b.url(&format!("/api/torrents/{ih}")), None, &[("Authorization", "Bearer adx")]);
    assert_eq!(s, 401);
    let (s, _, _) = http("DELETE", &b.url(&format!("/api/torrents/{ih}")), None, &[("Authorization", "Bearer adm")]);
    assert_eq!(s, 200);
    assert!(matches!(client::announce(&b.url("/announce"), &req(ih_bytes(&ih), 1, 7001, 0), T), Err(client::Error::Failure { .. })));
    assert!(!data_dir.join(format!("torrents/{ih}.torrent")).exists());
    assert!(!data_dir.join("content/a.bin").exists());
    drop(b);
    let b = Btrack::start(&data_dir, &[]);
    let l = get_json(&b.url("/api/torrents"));
    assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l[0]["info_hash"], ihb.as_str());
}

fn cmd_mk(path: &Path, out: &Path) -> Command {
    let mut c = cmd("mktorrent");
    c.arg("-q").arg("-o").arg(out).arg(path);
    c
}

#[test]
fn detail_page_shows_how_upload_load_is_shared() {
    let d = Dir::new("btrack-share");
    let b = Btrack::start(&d.join("data"), &[]);
    let size = 100_000u64;
    let (s, _, t) = upload(&b, "s.bin", &data(size as usize, 9), &[]);
    assert_eq!(s, 200);
    let ih = info_hash_of(&t);
    // The origin had the file and sent it three times; a fetcher finished and passed it on once.
    let origin = AnnounceRequest { uploaded: 3 * size, ..req(ih_bytes(&ih), 1, 7001, 0) };
    let fetcher = AnnounceRequest { uploaded: size, downloaded: size, event: Event::Completed, ..req(ih_bytes(&ih), 2, 7002, 0) };
    client::announce(&b.url("/announce"), &origin, T).unwrap();
    client::announce(&b.udp_url("/announce"), &fetcher, T).unwrap();
    let j = get_json(&b.url(&format!("/api/torrents/{ih}")));
    assert_eq!(j["total_uploaded"], 4 * size);
    assert_eq!(j["origin_uploaded"], 3 * size);
    assert_eq!(j["origin_uploaded_ratio"], 3.0);
    assert_eq!(j["completed"], 1);
    let peers = j["peers"].as_array().unwrap();
    let by_port = |p: u16| peers.iter().find(|x| x["address"] == format!("127.0.0.1:{p}").as_str()).unwrap().clone();
    assert_eq!(by_port(7001)["upload_share"], 0.75);
    assert_eq!(by_port(7001)["origin"], true);
    assert_eq!(by_port(7002)["upload_share"], 0.25);
    assert_eq!(by_port(7002)["origin"], false);
    assert_eq!(by_port(7002)["client"], "-SH0100-");
    let (_, _, page) = http("GET", &b.url(&format!("/t/{ih}")), None, &[]);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("3.00×") && page.contains("75.0%") && page.contains("25.0%"), "{page}");
    assert!(page.contains("http-equiv=refresh"), "the page refreshes itself");
    // The fetcher leaves: what it uploaded stays in the picture.
    client::announce(&b.url("/announce"), &AnnounceRequest { event: Event::Stopped, ..fetcher.clone() }, T).unwrap();
    let j = get_json(&b.url(&format!("/api/torrents/{ih}")));
    assert_eq!(j["peers"].as_array().unwrap().len(), 1);
    assert_eq!(j["departed_peers"].as_array().unwrap().len(), 1);
    assert_eq!(j["departed_peers"][0]["upload_share"], 0.25);
    assert_eq!(j["origin_uploaded_ratio"], 3.0);
    let (_, _, page) = http("GET", &b.url(&format!("/t/{ih}")), None, &[]);
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("(left)") && page.contains("25.0%"), "{page}");
}

#[test]
fn silent_peers_expire() {
    let d = Dir::new("btrack-expire");
    // Interval 1 s: a peer silent for 3 s is gone (from answers at once, from the store at
    // the next sweep, every half TTL).
    let b = Btrack::start(&d.join("data"), &["--open", "--interval", "1s"]);
    let ih = [6u8; 20];
    let first = client::announce(&b.url("/announce"), &req(ih, 1, 7001, 0), T).unwrap();
    assert_eq!(first.interval, Duration::from_secs(1));
    assert_eq!(client::announce(&b.url("/announce"), &req(ih, 2, 7002, 5), T).unwrap().peers.len(), 1);
    let t0 = Instant::now();
    poll("peer 1 to expire", Duration::from_secs(30), || {
        let s = client::scrape(&b.url("/announce"), &ih, T).unwrap();
        // Peer 2 keeps announcing; peer 1 stays silent.
        let r = client::announce(&b.url("/announce"), &req(ih, 2, 7002, 5), T).unwrap();
        (s.complete == 0 && r.peers.is_empty()).then_some(())
    });
    assert!(t0.elapsed() >= Duration::from_secs(2), "expired too early: {:?}", t0.elapsed());
    let s = client::scrape(&b.url("/announce"), &ih, T).unwrap();
    assert_eq!((s.complete, s.incomplete), (0, 1));
}

#[test]
fn startup_errors_are_one_line_and_exit_2() {
    let d = Dir::new("btrack-cli");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--listen".into(), format!("127.0.0.1:{port}")], "cannot listen"),
        (vec!["--listen".into(), "nowhere".into()], "--listen"),
        (vec!["--max-upload".into(), "5Q".into()], "--max-upload"),
        (vec!["--interval".into(), "0s".into()], "--interval"),
        (vec!["--token".into(), "a b".into()], "--token"),
        (vec!["--public-url".into(), "https://x".into()], "--public-url"),
        (vec!["--data-dir".into(), "/proc/shoal-nope".into()], "data directory"),
        // Beyond loopback, writes need an admin token unless the operator opens them.
        (vec!["--listen".into(), "0.0.0.0:0".into()], "--admin-token"),
        (vec!["--listen".into(), "[::]:0".into()], "--open-admin"),
        (vec!["--request-timeout".into(), "0s".into()], "--request-timeout"),
        (vec!["--allow-host".into(), "evil.example:80".into()], "--allow-host"),
    ];
    for (args, want) in cases {
        let mut c = cmd("btrack");
        if !args.contains(&"--data-dir".to_string()) {
            c.arg("--data-dir").arg(d.join("data"));
        }
        if !args.contains(&"--listen".to_string()) {
            c.arg("--listen").arg("127.0.0.1:0");
        }
        let o = run(c.args(&args));
        assert_exit(&o, 2);
        assert_clean_failure(&o);
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("btrack: error: ") && err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn big_upload_is_streamed_not_buffered() {
    if !have("curl") {
        return;
    }
    let d = Dir::new("btrack-big");
    let b = Btrack::start(&d.join("data"), &[]);
    let file = d.join("big.bin");
    let size = 256usize << 20;
    {
        let mut f = std::fs::File::create(&file).unwrap();
        let chunk = data(8 << 20, 51);
        for i in 0..size / chunk.len() {
            f.write_all(&chunk[..chunk.len() - 1]).unwrap();
            f.write_all(&[i as u8]).unwrap();
        }
    }
    let o = run(Command::new("curl").args(["-sS", "-f", "-T"]).arg(&file).arg("-o").arg(d.join("big.torrent")).arg(b.url("/api/upload?name=big.bin")));
    assert_exit(&o, 0);
    let hwm_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", b.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hwm_kib < 64 << 10, "btrack's peak RSS {hwm_kib} KiB for a 256 MiB upload: the body was buffered");
    assert_exit(&run(&mut cmd_mk(&file, &d.join("mk.torrent"))), 0);
    assert_eq!(info_hash_of(&std::fs::read(d.join("big.torrent")).unwrap()), info_hash_of(&std::fs::read(d.join("mk.torrent")).unwrap()));
}

#[test]
fn token_and_open_modes() {
    let d = Dir::new("btrack-token");
    let b = Btrack::start(&d.join("data"), &["--open", "--token", "s3cr3t"]);
    let ih = [4u8; 20];
    // Good token, HTTP and UDP (BEP 41 URL data).
    client::announce(&b.url("/announce/s3cr3t"), &req(ih, 1, 7001, 0), T).unwrap();
    let r = client::announce(&b.udp_url("/announce/s3cr3t"), &req(ih, 2, 7002, 9), T).unwrap();
    assert_eq!(r.peers.len(), 1);
    assert_eq!(client::scrape(&b.url("/announce/s3cr3t"), &ih, T).unwrap().complete, 1);
    for url in [b.url("/announce/wrong"), b.url("/announce"), b.udp_url("/announce/wrong"), b.udp_url("/announce")] {
        match client::announce(&url, &req(ih, 3, 7003, 9), T) {
            Err(client::Error::Failure { reason, .. }) => assert!(reason.contains("token"), "{url}: {reason}"),
            other => panic!("{url}: {other:?}"),
        }
    }
    // The refused peer was not stored.
    let s = client::scrape(&b.udp_url("/announce/s3cr3t"), &ih, T).unwrap();
    assert_eq!((s.complete, s.incomplete), (1, 1));
}

#[test]
fn interrupted_upload_leaves_nothing() {
    let d = Dir::new("btrack-cut");
    let b = Btrack::start(&d.join("data"), &["--max-upload", "1M"]);
    // Claims 600 000 bytes, sends 100 000, hangs up.
    let mut s = TcpStream::connect(b.addr()).unwrap();
    write!(s, "PUT /api/upload?name=cut.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 600000\r\n\r\n").unwrap();
    s.write_all(&data(100_000, 3)).unwrap();
    drop(s);
    poll("the failed upload to be counted", T, || {
        let (_, _, m) = http("GET", &b.url("/metrics"), None, &[]);
        String::from_utf8(m).unwrap().contains("btrack_uploads_total{result=\"failed\"} 1").then_some(())
    });
    let content: Vec<_> = std::fs::read_dir(d.join("data/content")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(content.is_empty(), "{content:?}");
    assert_eq!(std::fs::read_dir(d.join("data/torrents")).unwrap().count(), 0);
    // Too large, and names that try to leave the directory.
    let (s, _, _) = upload(&b, "big.bin", &data(1_100_000, 4), &[]);
    assert_eq!(s, 413);
    let (s, _, t) = upload(&b, "..%2F..%2Fescape.bin", &data(1000, 5), &[]);
    assert_eq!(s, 200);
    assert_eq!(shoal::metainfo::Metainfo::parse(&t).unwrap().info.name, "escape.bin");
    assert!(d.join("data/content/escape.bin").exists());
    assert!(!d.join("escape.bin").exists());
    let (s, _, _) = upload(&b, "..", &data(1000, 5), &[]);
    assert_eq!(s, 400);
    let (s, _, _) = upload(&b, "escape.bin", &data(1000, 6), &[]);
    assert_eq!(s, 409);
}

#[test]
fn curl_upload_and_ipv6_peers() {
    if !have("curl") {
        return;
    }
    let d = Dir::new("btrack-v6");
    let b = Btrack::start_on("::1", &d.join("data"), &[]);
    // curl -T sends 'Expect: 100-continue' for a body this size.
    let file = d.join("c.bin");
    write_data(&file, 3 << 20, 41);
    let o = run(Command::new("curl").args(["-sS", "-g", "-f", "-T"]).arg(&file).arg("-o").arg(d.join("c.torrent")).arg(b.url("/api/upload?name=c.bin")));
    assert_exit(&o, 0);
    let t = std::fs::read(d.join("c.torrent")).unwrap();
    assert_exit(&run(&mut cmd_mk(&file, &d.join("mk.torrent"))), 0);
    assert_eq!(info_hash_of(&t), info_hash_of(&std::fs::read(d.join("mk.torrent")).unwrap()));
    let m = shoal::metainfo::Metainfo::parse(&t).unwrap();
    assert_eq!(m.announce.as_deref(), Some(b.url("/announce").as_str()), "announce URL as the uploader reached btrack");
    let ih = m.info_hash.0;
    // IPv6 peers: compact peers6 over HTTP, 18-byte peers over UDP, dictionaries with compact=0.
    client::announce(&b.url("/announce"), &req(ih, 1, 7001, 0), T).unwrap();
    let want: SocketAddr = "[::1]:7001".parse().unwrap();
    assert_eq!(client::announce(&b.url("/announce"), &req(ih, 2, 7002, 5), T).unwrap().peers, vec![want]);
    let mut peers = client::announce(&b.udp_url("/announce"), &req(ih, 3, 7003, 5), T).unwrap().peers;
    peers.sort();
    assert_eq!(peers, vec![want, "[::1]:7002".parse().unwrap()]);
    let q = shoal::tracker::http::announce_query(&req(ih, 4, 7004, 5)).replace("compact=1", "compact=0");
    let (s, _, body) = http("GET", &b.url(&format!("/announce?{q}")), None, &[]);
    assert_eq!(s, 200);
    assert!(body.windows(9).any(|w| w == b"7:peer id"), "dictionary peers carry peer ids");
    for pid in 1..=3 {
        let id = req(ih, pid, 0, 0).peer_id;
        assert!(body.windows(20).any(|w| w == id), "peer {pid}'s own id is in the answer");
    }
    let r = shoal::tracker::http::decode_announce_response(&body).unwrap();
    assert_eq!(r.peers.len(), 3);
    assert!(r.peers.contains(&want));
}

// ---- malformed requests ---------------------------------------------------------------------

/// Sends raw bytes as one HTTP request; answers (status, body).
fn raw_http(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw).unwrap();
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn malformed_requests_get_the_right_error() {
    let d = Dir::new("btrack-bad");
    let b = Btrack::start(&d.join("data"), &[]);
    let (s, _, t) = upload(&b, "ok.bin", &data(40_000, 7), &[]);
    assert_eq!(s, 200);
    let ih = ih_bytes(&info_hash_of(&t));
    let ihq = shoal::metainfo::url_encode(&ih);
    let good = format!("info_hash={ihq}&peer_id=-XX0001-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=10");
    let ann = |q: &str| format!("GET /announce?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes();
    let without = |k: &str| good.split('&').filter(|p| !p.starts_with(k)).collect::<Vec<_>>().join("&");
    // (request, expected status, expected text in the body)
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (ann(&without("info_hash=")), 200, "missing info_hash"),
        (ann(&without("peer_id=")), 200, "missing peer_id"),
        (ann(&without("port=")), 200, "missing port"),
        (ann(&without("left=")), 200, "missing left"),
        (ann(&format!("{}&info_hash=short", without("info_hash="))), 200, "invalid info_hash"),
        (ann(&format!("{}&info_hash={}", without("info_hash="), "%41".repeat(21))), 200, "invalid info_hash"),
        (ann(&format!("{}&info_hash=%G1%zz", without("info_hash="))), 200, "percent-encoding"),
        (ann(&format!("{}&peer_id=abc", without("peer_id="))), 200, "invalid peer_id"),
        (ann(&format!("{good}&port=0")), 200, "invalid port"),
        (ann(&format!("{good}&port=65536")), 200, "invalid port"),
        (ann(&format!("{good}&port=-1")), 200, "invalid port"),
        (ann(&format!("{good}&left=-5")), 200, "invalid left"),
        (ann(&format!("{good}&uploaded=1e9")), 200, "invalid uploaded"),
        (ann(&format!("{good}&downloaded=99999999999999999999999")), 200, "invalid downloaded"),
        (ann(&format!("{good}&event=exploded")), 200, "invalid event"),
        (ann(&format!("{good}&numwant=100000000")), 200, "invalid numwant"),
        (ann(&format!("{good}&numwant=many")), 200, "invalid numwant"),
        (ann(&format!("{}&info_hash={}", without("info_hash="), "%00".repeat(20))), 200, "unregistered torrent"),
        (b"GET /announce/tok?x=1 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 200, "invalid token"),
        (b"GET /scrape HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), 200, "at least one info_hash"),
        (format!("GET /scrape?{} HTTP/1.1\r\nConnection: close\r\n\r\n", vec!["info_hash=aaaaaaaaaaaaaaaaaaaa"; 80].join("&")).into_bytes(), 200, "too many info_hash"),
        (b"POST /announce HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(), 405, "GET"),
        (b"GARBAGE\r\n\r\n".to_vec(), 400, "malformed request line"),
        (b"get / HTTP/1.1\r\n\r\n".to_vec(), 400, "malformed method"),
        (b"GET / HTTP/9.9\r\n\r\n".to_vec(), 505, "unsupported HTTP version"),
        (b"GET http://evil/ HTTP/1.1\r\n\r\n".to_vec(), 400, "must be a path"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n".to_vec(), 400, "malformed header"),
        (format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000)).into_bytes(), 431, "too large"),
        (format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(150)).into_bytes(), 431, "too many headers"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec(), 400, "incomplete"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nContent-Length: abc\r\n\r\n".to_vec(), 400, "Content-Length"),
        // Framing that two parsers could read differently (request smuggling): all 400.
        (b"PUT /api/upload?name=x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc".to_vec(), 400, "more than one"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabc".to_vec(), 400, "more than one"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nContent-Length: +5\r\n\r\nabcde".to_vec(), 400, "plain decimal"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nabcde".to_vec(), 400, "plain decimal"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "Transfer-Encoding"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "Transfer-Encoding"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), 400, "Content-Length"),
        (b"PUT /api/upload?name=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), 411, "Content-Length"),
        (b"PUT /api/upload HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec(), 400, "missing ?name"),
        (b"PUT /api/upload?name=x&piece_length=1000 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec(), 400, "piece length"),
        (b"GET /api/torrents/xyz HTTP/1.1\r\n\r\n".to_vec(), 400, "not an info-hash"),
        (b"GET /api/torrents/0000000000000000000000000000000000000000 HTTP/1.1\r\n\r\n".to_vec(), 404, "unknown torrent"),
        (b"GET /torrents/zz.torrent HTTP/1.1\r\n\r\n".to_vec(), 404, "unknown torrent"),
        (b"POST /api/torrents HTTP/1.1\r\nContent-Length: 4\r\n\r\nle\r\n".to_vec(), 422, "not a torrent"),
        (b"GET /api/nothing HTTP/1.1\r\n\r\n".to_vec(), 404, "no such API"),
    ];
    assert!(cases.len() >= 20);
    for (i, (raw, status, text)) in cases.iter().enumerate() {
        let (s, body) = raw_http(b.addr(), raw);
        assert_eq!(s, *status, "case {i}: {:?} -> {body}", String::from_utf8_lossy(&raw[..raw.len().min(120)]));
        assert!(body.contains(text), "case {i}: expected {text:?} in {body:?}");
        // Still serving: a good announce works after every bad request.
        let r = client::announce(&b.url("/announce"), &req(ih, 1, 7001, 0), T);
        assert!(r.is_ok(), "case {i}: server stopped serving: {r:?}");
    }

    // UDP: garbage gets an error packet when it carries a transaction id, else nothing.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.connect(b.addr()).unwrap();
    let connect = |tid: u32| -> u64 {
        sock.send(&udp::encode_request(&udp::Request::Connect { transaction_id: tid })).unwrap();
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).unwrap();
        match udp::parse_response(&buf[..n], false).unwrap() {
            udp::Response::Connect { connection_id, transaction_id } if transaction_id == tid => connection_id,
            o => panic!("{o:?}"),
        }
    };
    let cid = connect(1);
    let announce = |cid: u64, ih: [u8; 20], port: u16, event: u32, extra: &[u8]| {
        let mut p = udp::encode_request(&udp::Request::Announce(udp::Announce {
            connection_id: cid,
            transaction_id: 77,
            info_hash: ih,
            peer_id: [1; 20],
            downloaded: 0,
            left: 0,
            uploaded: 0,
            event: Event::None,
            ip: 0,
            key: 1,
            num_want: -1,
            port,
            url_data: Vec::new(),
        }));
        p[80..84].copy_from_slice(&event.to_be_bytes());
        p.extend_from_slice(extra);
        p
    };
    let mut scrape_many = udp::encode_request(&udp::Request::Scrape { connection_id: cid, transaction_id: 77, info_hashes: vec![ih; 80] });
    scrape_many.truncate(16 + 20 * 80);
    let mut bad_proto = udp::encode_request(&udp::Request::Connect { transaction_id: 77 });
    bad_proto[0] = 0xff;
    let mut bad_action = announce(cid, ih, 1, 0, &[]);
    bad_action[8..12].copy_from_slice(&7u32.to_be_bytes());
    // (packet, expected error text; None = no answer at all)
    let udp_cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (Vec::new(), None),
        (b"hello".to_vec(), None),
        (vec![0u8; 15], None),
        (bad_proto, Some("protocol id")),
        (bad_action, Some("unknown action 7")),
        (announce(cid, ih, 1, 0, &[])[..60].to_vec(), Some("too short")),
        (announce(cid ^ 1, ih, 1, 0, &[]), Some("connection id")),
        (announce(0x0417_2710_1980, ih, 1, 0, &[]), Some("connection id")),
        (announce(cid, ih, 1, 9, &[]), Some("unknown event")),
        (announce(cid, ih, 0, 0, &[]), Some("invalid port")),
        (announce(cid, [0; 20], 1, 0, &[]), Some("unregistered torrent")),
        (announce(cid, ih, 1, 0, &[2, 200, b'x']), Some("options")),
        (announce(cid, ih, 1, 0, &[9]), Some("options")),
        (announce(cid, ih, 1, 0, &[2, 14, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c', b'e', b'/', b't', b'o', b'k', b'!']), Some("invalid token")),
        (scrape_many, Some("too many")),
        (udp::encode_request(&udp::Request::Scrape { connection_id: cid, transaction_id: 77, info_hashes: vec![ih] })[..30].to_vec(), Some("wrong length")),
        (vec![0xAB; 1400], Some("unknown action")),
    ];
    for (i, (pkt, want)) in udp_cases.iter().enumerate() {
        sock.send(pkt).unwrap();
        let mut buf = [0u8; 1500];
        match (sock.recv(&mut buf), want) {
            (Ok(n), Some(text)) => match udp::parse_response(&buf[..n], false).unwrap() {
                udp::Response::Error { message, .. } => assert!(message.contains(text), "udp case {i}: {message:?} lacks {text:?}"),
                o => panic!("udp case {i}: expected an error, got {o:?}"),
            },
            (Err(_), None) => {}
            (Ok(n), None) => panic!("udp case {i}: unexpected answer {:?}", &buf[..n]),
            (Err(e), Some(text)) => panic!("udp case {i}: no answer ({e}), expected {text:?}"),
        }
        // Still serving.
        let r = client::announce(&b.udp_url("/announce"), &req(ih, 2, 7002, 5), T);
        assert!(r.is_ok(), "udp case {i}: {r:?}");
    }
    assert!(b.log().lines().all(|l| !l.contains("panicked")), "{}", b.log());
    let mut b = b;
    assert!(b.alive());
}

#[test]
fn slow_and_flooding_clients_are_bounded() {
    let d = Dir::new("btrack-flood");
    let mut b = Btrack::start(&d.join("data"), &["--open", "--max-connections", "8", "--udp-rate-limit", "100"]);
    // Idle connections take the workers; once eight are held, the next request gets 503.
    // No sleeps: btrack's single acceptor hands connections to workers in arrival order, and
    // nothing else has connected (btrack::start reads the port from the log, it does not
    // probe), so after seven silent connections a request is served by the eighth worker.
    // That request is keep-alive and its connection stays open, holding the eighth worker
    // without any timing; the ninth connection must then be refused.
    let mut idle: Vec<TcpStream> = (0..7).map(|_| TcpStream::connect(b.addr()).unwrap()).collect();
    let mut eighth = TcpStream::connect(b.addr()).unwrap();
    eighth.set_read_timeout(Some(T)).unwrap();
    eighth.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        eighth.read_exact(&mut byte).expect("an answer to the eighth connection");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "eighth connection (seven idle): {head}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"), "the keep-alive answer closes: {head}");
    idle.push(eighth);
    let (s, _) = raw_http(b.addr(), b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(s, 503, "a ninth connection is served although eight workers are held");
    drop(idle);
    poll("service to resume", Duration::from_secs(30), || {
        let (s, _) = raw_http(b.addr(), b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
        (s == 200).then_some(())
    });
    // A client trickling its request head one byte at a time is cut off (408) after the
    // 20 s head deadline instead of holding a worker forever.
    let mut slow = TcpStream::connect(b.addr()).unwrap();
    let t0 = Instant::now();
    slow.write_all(b"GET /").unwrap();
    let mut answer = Vec::new();
    slow.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    while t0.elapsed() < Duration::from_secs(60) {
        if slow.write_all(b"a").is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(900));
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?} after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(45), "{:?}", t0.elapsed());
    // A UDP flood from one address is answered up to the limit and dropped beyond.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(b.addr()).unwrap();
    for i in 0..20_000u32 {
        let _ = sock.send(&udp::encode_request(&udp::Request::Connect { transaction_id: i }));
    }
    assert!(b.alive());
    poll("UDP service after the flood", Duration::from_secs(30), || client::announce(&b.udp_url("/announce"), &req([1; 20], 1, 7001, 0), T).ok());
    let (_, _, m) = http("GET", &b.url("/metrics"), None, &[]);
    let m = String::from_utf8(m).unwrap();
    let limited: u64 = m.lines().find(|l| l.contains("reason=\"rate_limited\"")).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    let connects: u64 = m.lines().find(|l| l.starts_with("btrack_udp_connects_total ")).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(limited > 0, "the flood was not limited: {m}");
    assert!(connects >= 1, "{m}");
}

// ---- real clients -----------------------------------------------------------------------------

fn lt_pair(udp_tracker: bool) {
    if !have(PYTHON) {
        return;
    }
    let d = Dir::new(if udp_tracker { "btrack-lt-udp" } else { "btrack-lt-http" });
    let b = Btrack::start(&d.join("data"), &[]);
    let payload = data(8 << 20, 11);
    let seed_dir = d.join("seed");
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::write(seed_dir.join("payload.bin"), &payload).unwrap();
    let announce = if udp_tracker { b.udp_url("/announce") } else { b.url("/announce") };
    let mut c = cmd("mktorrent");
    c.arg("-q").arg("-a").arg(&announce).arg("-o").arg(d.join("p.torrent")).arg(seed_dir.join("payload.bin"));
    assert_exit(&run(&mut c), 0);
    let t = std::fs::read(d.join("p.torrent")).unwrap();
    let (s, _, body) = http("POST", &b.url("/api/torrents"), Some(&t), &[]);
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&body));
    let ih = info_hash_of(&t);
    let dl = d.join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/tracker_lt_pair.py");
    let o = run(Command::new(PYTHON).arg(helper).arg(d.join("p.torrent")).arg(&seed_dir).arg(&dl).arg("120"));
    let out = stdout(&o);
    assert_exit(&o, 0);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out} {}", stderr(&o)));
    assert_eq!(j["done"], true, "{j}");
    assert_eq!(j["tracker_errors"], serde_json::json!([]), "libtorrent saw tracker errors: {j}");
    assert!(j["peers_from_tracker"].as_u64().unwrap() >= 1, "one session got the other from btrack: {j}");
    assert_eq!(std::fs::read(dl.join("payload.bin")).unwrap(), payload);
    // btrack saw both libtorrent peers (client prefix -LT…) announce.
    poll("the fetcher's 'completed' announce", Duration::from_secs(20), || {
        (get_json(&b.url(&format!("/api/torrents/{ih}")))["completed"] == 1).then_some(())
    });
    let (_, _, m) = http("GET", &b.url("/metrics"), None, &[]);
    let m = String::from_utf8(m).unwrap();
    let proto = if udp_tracker { "udp" } else { "http" };
    let started: u64 = m.lines().find(|l| l.starts_with(&format!("btrack_announces_total{{proto=\"{proto}\",event=\"started\"}}"))).unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(started >= 2, "both sessions announced over {proto}: {m}");
    for l in m.lines().filter(|l| l.starts_with("btrack_errors_total")) {
        assert!(l.ends_with(" 0"), "no request of libtorrent's was refused: {l}");
    }
}

#[test]
fn libtorrent_pair_through_http_tracker() {
    lt_pair(false);
}

#[test]
fn libtorrent_pair_through_udp_tracker() {
    lt_pair(true);
}

/// A network namespace joined to ours by a veth pair: we are `10.213.K.1`, it is
/// `10.213.K.2`. Transmission refuses peers on loopback (it treats 127/8 as martian), so
/// it runs in here. Removed on drop.
struct Netns {
    name: String,
    ours: String,
    theirs: String,
}

impl Netns {
    fn new() -> Netns {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let k = (std::process::id() * 7 + n * 13) % 250 + 1;
        let name = format!("shoal-trk-{}-{n}", std::process::id());
        let (va, vb) = (format!("stk{k}a{n}"), format!("stk{k}b{n}"));
        let sh = |c: &str| {
            let o = run(Command::new("sh").arg("-c").arg(c));
            assert!(o.status.success(), "{c}: {}", stderr(&o));
        };
        let ns = Netns { name: name.clone(), ours: format!("10.213.{k}.1"), theirs: format!("10.213.{k}.2") };
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip link add {va} type veth peer name {vb} && ip link set {vb} netns {name}"));
        sh(&format!("ip addr add {}/24 dev {va} && ip link set {va} up", ns.ours));
        sh(&format!("ip netns exec {name} sh -c 'ip addr add {}/24 dev {vb} && ip link set {vb} up && ip link set lo up'", ns.theirs));
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Registers a torrent whose only "seeder" is a listening socket of ours, runs `tool`,
/// and checks that btrack saw it announce and that it then connected to our socket (so it
/// received the peer list from btrack: nothing else knows that port).
fn third_party_announces(tool: &str, udp_tracker: bool, expect_prefix: &str) {
    if !have(tool) {
        return;
    }
    let d = Dir::new(&format!("btrack-{tool}-{udp_tracker}"));
    let netns = (tool == "transmission-cli").then(Netns::new);
    let b = match &netns {
        // Not loopback, no admin token: the operator says the network is trusted.
        Some(ns) => Btrack::start_on(&ns.ours, &d.join("data"), &["--open-admin"]),
        None => Btrack::start(&d.join("data"), &[]),
    };
    let peer_ip = netns.as_ref().map(|n| n.theirs.clone()).unwrap_or_else(|| "127.0.0.1".into());
    let file = d.join("src/thing.bin");
    write_data(&file, 300_000, 21);
    let announce = if udp_tracker { b.udp_url("/announce") } else { b.url("/announce") };
    let mut c = cmd("mktorrent");
    c.arg("-q").arg("-a").arg(&announce).arg("-o").arg(d.join("t.torrent")).arg(&file);
    assert_exit(&run(&mut c), 0);
    let t = std::fs::read(d.join("t.torrent")).unwrap();
    assert_eq!(http("POST", &b.url("/api/torrents"), Some(&t), &[]).0, 201);
    let ih = info_hash_of(&t);
    // Our fake seeder: announced through btrack, accepts connections.
    let listener = TcpListener::bind((b.host.as_str(), 0)).unwrap();
    let fake_port = listener.local_addr().unwrap().port();
    // Its uTP port too, bound before the tool starts: Transmission tries uTP first as soon
    // as it has the peer, and a datagram that finds no socket (port unreachable) can keep it
    // from trying again within the test's minute.
    let utp = UdpSocket::bind((b.host.as_str(), fake_port)).unwrap();
    // btrack here forgets a peer 6 s after its last announce (--interval 2s): the fake
    // seeder re-announces while we wait, however slowly the tool starts on a busy machine.
    let keep_fake = || client::announce(&b.url("/announce"), &req(ih_bytes(&ih), 1, fake_port, 0), T).unwrap();
    keep_fake();
    let port = free_port();
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = match &netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, tool]);
            c.arg("-g").arg(d.join("tr-config")).arg("-w").arg(&out).arg("-p").arg(port.to_string()).arg("--no-portmap").arg("-et").arg(d.join("t.torrent"));
            c
        }
        None => {
            let mut c = Command::new(tool);
            c.arg(format!("--dir={}", out.display()))
                .arg(format!("--listen-port={port}"))
                .args(["--bt-enable-lpd=false", "--enable-peer-exchange=false", "--seed-time=0", "--summary-interval=0"]);
            if udp_tracker {
                // aria2 sends UDP tracker requests from its DHT socket; no bootstrap node is
                // configured, so the DHT itself stays silent.
                c.arg("--enable-dht=true").arg(format!("--dht-listen-port={}", free_port())).arg(format!("--dht-file-path={}", d.join("dht.dat").display()));
            } else {
                c.arg("--enable-dht=false");
            }
            c.arg(d.join("t.torrent"));
            c
        }
    };
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let _p = Proc(c.spawn().unwrap());
    // It announces: btrack lists a peer with its client prefix, nothing downloaded yet.
    let peer = poll(&format!("{tool} to announce"), Duration::from_secs(60), || {
        keep_fake();
        let j = get_json(&b.url(&format!("/api/torrents/{ih}")));
        j["peers"].as_array().unwrap().iter().find(|p| p["client"].as_str().unwrap().starts_with(expect_prefix)).cloned()
    });
    assert_eq!(peer["left"], 300_000, "{peer}");
    assert_eq!(peer["downloaded"], 0);
    assert_eq!(peer["address"].as_str().unwrap(), format!("{peer_ip}:{port}"), "{peer}");
    // It got our fake seeder from btrack and connects to it (over TCP, or uTP first as
    // Transmission does: a datagram to the same port counts too).
    listener.set_nonblocking(true).unwrap();
    utp.set_nonblocking(true).unwrap();
    poll(&format!("{tool} to connect to the peer btrack gave it"), Duration::from_secs(60), || {
        keep_fake();
        if listener.accept().is_ok() || utp.recv_from(&mut [0u8; 2048]).is_ok() {
            Some(())
        } else {
            None
        }
    });
}

#[test]
fn transmission_announces_and_gets_peers_http() {
    third_party_announces("transmission-cli", false, "-TR");
}

#[test]
fn transmission_announces_and_gets_peers_udp() {
    third_party_announces("transmission-cli", true, "-TR");
}

#[test]
fn aria2_announces_and_gets_peers_http() {
    third_party_announces("aria2c", false, "A2-");
}

#[test]
fn aria2_announces_and_gets_peers_udp() {
    third_party_announces("aria2c", true, "A2-");
}

// ---- the web page in a real browser -------------------------------------------------------------

fn wd(method: &str, url: &str, body: serde_json::Value) -> serde_json::Value {
    let a = agent();
    let mut resp = match method {
        "POST" => a.post(url).header("Content-Type", "application/json").send(body.to_string().as_bytes()).unwrap(),
        "GET" => a.get(url).call().unwrap(),
        "DELETE" => a.delete(url).call().unwrap(),
        _ => unreachable!(),
    };
    let text = resp.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A headless Chromium driven over WebDriver; the session and the driver end on drop.
struct Browser {
    sess: String,
    _driver: Proc,
}

impl Browser {
    fn start(d: &Dir) -> Browser {
        let port = free_port();
        let driver = Proc(Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
        let base = format!("http://127.0.0.1:{port}");
        poll("chromedriver", Duration::from_secs(30), || TcpStream::connect(("127.0.0.1", port)).ok());
        let profile = d.join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.display())]
        }}}});
        let s = wd("POST", &format!("{base}/session"), caps);
        let sid = s["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {s}")).to_string();
        Browser { sess: format!("{base}/session/{sid}"), _driver: driver }
    }
    fn open(&self, url: &str) {
        wd("POST", &format!("{}/url", self.sess), serde_json::json!({ "url": url }));
    }
    fn find(&self, css: &str) -> String {
        let r = wd("POST", &format!("{}/element", self.sess), serde_json::json!({"using": "css selector", "value": css}));
        r["value"]["element-6066-11e4-a52e-4f735466cecf"].as_str().unwrap_or_else(|| panic!("{css}: {r}")).to_string()
    }
    fn text(&self, el: &str) -> String {
        wd("GET", &format!("{}/element/{el}/text", self.sess), serde_json::Value::Null)["value"].as_str().unwrap_or("").to_string()
    }
    fn type_into(&self, el: &str, text: &str) {
        wd("POST", &format!("{}/element/{el}/value", self.sess), serde_json::json!({ "text": text }));
    }
    fn click(&self, el: &str) {
        wd("POST", &format!("{}/element/{el}/click", self.sess), serde_json::json!({}));
    }
    /// Runs `script` in the page (WebDriver execute/sync) and answers its return value.
    fn eval(&self, script: &str, args: serde_json::Value) -> serde_json::Value {
        wd("POST", &format!("{}/execute/sync", self.sess), serde_json::json!({ "script": script, "args": args }))["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = agent().delete(&self.sess).call();
    }
}

#[test]
fn chromium_uploads_with_tokens_and_downloads_with_the_cookie() {
    if !have("chromedriver") || !have("/usr/bin/chromium") {
        return;
    }
    let d = Dir::new("btrack-chromium-tok");
    let b = Btrack::start(&d.join("data"), &["--token", "s3kr1tTOK", "--admin-token", "ADM"]);
    let file = d.join("upload/secret-file.bin");
    write_data(&file, 200_000, 33);
    let br = Browser::start(&d);
    br.open(&b.url("/"));
    let page_src = br.eval("return document.documentElement.outerHTML", serde_json::json!([]));
    assert!(!page_src.as_str().unwrap().contains("s3kr1tTOK"), "the page holds no secret");
    br.type_into(&br.find("#admin"), "ADM");
    br.type_into(&br.find("#file"), &file.display().to_string());
    br.click(&br.find("#go"));
    let ih_el = br.find("#result-ih");
    let ih = poll("the page to show the new torrent", Duration::from_secs(60), || {
        let t = br.text(&ih_el);
        (t.len() == 40).then_some(t)
    });
    // The .torrent link works in this browser (the cookie the token field set), not elsewhere.
    let href = format!("/torrents/{ih}.torrent");
    let get = "var x=new XMLHttpRequest();x.open('GET',arguments[0],false);x.send();return [x.status, x.responseText.indexOf('announce/s3kr1tTOK')>=0];";
    assert_eq!(br.eval(get, serde_json::json!([href])), serde_json::json!([200, true]));
    assert_eq!(http("GET", &b.url(&href), None, &[]).0, 401);
}

#[test]
fn chromium_uploads_through_the_form() {
    if !have("chromedriver") || !have("/usr/bin/chromium") {
        return;
    }
    let d = Dir::new("btrack-chromium");
    let b = Btrack::start(&d.join("data"), &[]);
    let file = d.join("upload/browser-file.iso");
    write_data(&file, 3_000_000, 31);
    let br = Browser::start(&d);
    let sess = br.sess.clone();
    br.open(&b.url("/"));
    let find = |css: &str| br.find(css);
    let text = |el: &str| br.text(el);
    let input = find("#file");
    wd("POST", &format!("{sess}/element/{input}/value"), serde_json::json!({"text": file.display().to_string()}));
    let go = find("#go");
    wd("POST", &format!("{sess}/element/{go}/click"), serde_json::json!({}));
    let ih_el = find("#result-ih");
    let ih = poll("the page to show the new torrent", Duration::from_secs(60), || {
        let t = text(&ih_el);
        (t.len() == 40).then_some(t)
    });
    let status = text(&find("#status"));
    assert!(status.contains("done"), "{status}");
    // The torrent the page links to is mktorrent's torrent for the same file.
    let href = wd("GET", &format!("{sess}/element/{}/property/href", find("#result-torrent")), serde_json::Value::Null)["value"].as_str().unwrap().to_string();
    assert!(href.ends_with(&format!("/torrents/{ih}.torrent")), "{href}");
    let (s, _, torrent) = http("GET", &href, None, &[]);
    assert_eq!(s, 200);
    assert_exit(&run(&mut cmd_mk(&file, &d.join("mk.torrent"))), 0);
    assert_eq!(info_hash_of(&torrent), info_hash_of(&std::fs::read(d.join("mk.torrent")).unwrap()));
    assert_eq!(info_hash_of(&torrent), ih);
    assert_eq!(std::fs::read(d.join("data/content/browser-file.iso")).unwrap(), std::fs::read(&file).unwrap());
    let cmd_text = text(&find("#result-cmd"));
    assert!(cmd_text.starts_with("bseed ") && cmd_text.contains(&format!("{ih}.torrent")), "{cmd_text}");
    // Reload: the torrent is listed on / (server-rendered and by the 5 s refresh).
    wd("POST", &format!("{sess}/url"), serde_json::json!({"url": b.url("/")}));
    let row = find(&format!("tr[data-ih='{ih}']"));
    assert!(text(&row).contains("browser-file.iso"));
}

// ---- hostile review (issue 10) -------------------------------------------------------------------

/// A torrent for `data` named `name` (mktorrent, optional piece length and announce URL).
fn make_torrent(d: &Dir, name: &str, data: &[u8], piece: Option<&str>, announce: Option<&str>) -> Vec<u8> {
    let src = d.join(&format!("src-{}", piece.unwrap_or("auto")));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(name), data).unwrap();
    let out = src.join(format!("{name}.torrent"));
    let mut c = cmd("mktorrent");
    c.arg("-q").arg("-o").arg(&out);
    if let Some(p) = piece {
        c.args(["-l", p]);
    }
    if let Some(a) = announce {
        c.args(["-a", a]);
    }
    assert_exit(&run(c.arg(src.join(name))), 0);
    std::fs::read(out).unwrap()
}

#[test]
fn announce_token_never_reaches_callers_without_it() {
    let d = Dir::new("btrack-secret");
    let b = Btrack::start(&d.join("data"), &["--token", "s3cret", "--admin-token", "ADM"]);
    let (s, _, torrent) = upload(&b, "t.bin", &data(50_000, 61), &[("Authorization", "Bearer ADM")]);
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&torrent));
    let ih = info_hash_of(&torrent);
    let contains = |b: &[u8]| b.windows(6).any(|w| w == b"s3cret");
    assert!(contains(&torrent), "the admin gets the real announce URL");
    // Unauthenticated: every page and API answer names the token only as <token>.
    for path in ["/api/torrents".to_string(), format!("/api/torrents/{ih}"), "/".into(), format!("/t/{ih}"), "/metrics".into()] {
        let (s, _, body) = http("GET", &b.url(&path), None, &[]);
        assert_eq!(s, 200, "{path}");
        assert!(!contains(&body), "{path} leaks the token: {}", String::from_utf8_lossy(&body));
    }
    let l = get_json(&b.url("/api/torrents"));
    assert_eq!(l[0]["announce"], b.url("/announce/<token>").as_str());
    // The .torrent itself carries the token: it needs the token or the admin token.
    let turl = b.url(&format!("/torrents/{ih}.torrent"));
    let (s, _, body) = http("GET", &turl, None, &[]);
    assert_eq!(s, 401);
    assert!(!contains(&body));
    for (k, v) in [("Authorization", "Bearer s3cret"), ("Authorization", "Bearer ADM"), ("Cookie", "x=1; btrack_auth=ADM"), ("X-Admin-Token", "ADM")] {
        let (s, _, body) = http("GET", &turl, None, &[(k, v)]);
        assert_eq!(s, 200, "{k}: {v}");
        assert_eq!(info_hash_of(&body), ih);
    }
    for (k, v) in [("Authorization", "Bearer s3cre"), ("Authorization", "Bearer s3cret0"), ("Cookie", "btrack_auth=")] {
        assert_eq!(http("GET", &turl, None, &[(k, v)]).0, 401, "{k}: {v}");
    }
    let j = get_json_with(&b.url("/api/torrents"), &[("Authorization", "Bearer s3cret")]);
    assert_eq!(j[0]["announce"], b.url("/announce/s3cret").as_str());
    // The announce token does not open writes when an admin token is set; no token in URLs.
    assert_eq!(upload(&b, "u.bin", &data(1000, 62), &[("Authorization", "Bearer s3cret")]).0, 401);
    assert_eq!(http("PUT", &b.url("/api/upload?name=u.bin&admin_token=ADM"), Some(&data(1000, 62)), &[]).0, 401);
}

fn get_json_with(url: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (s, _, b) = http("GET", url, None, headers);
    assert_eq!(s, 200, "{url}: {}", String::from_utf8_lossy(&b));
    serde_json::from_slice(&b).unwrap()
}

/// One UDP announce from `bind` (an address of ours on loopback): the answer, or the error.
fn udp_announce_from(bind: &str, tracker: SocketAddr, ih: [u8; 20], peer_id: [u8; 20], key: u32, event: Event, port: u16) -> Result<Vec<SocketAddr>, String> {
    let sock = UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    sock.connect(tracker).unwrap();
    let mut buf = [0u8; 1500];
    sock.send(&udp::encode_request(&udp::Request::Connect { transaction_id: 1 })).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    let cid = match udp::parse_response(&buf[..n], false).unwrap() {
        udp::Response::Connect { connection_id, .. } => connection_id,
        o => panic!("{o:?}"),
    };
    let a = udp::Announce {
        connection_id: cid,
        transaction_id: 2,
        info_hash: ih,
        peer_id,
        downloaded: 0,
        left: 5,
        uploaded: 0,
        event,
        ip: 0,
        key,
        num_want: -1,
        port,
        url_data: Vec::new(),
    };
    sock.send(&udp::encode_request(&udp::Request::Announce(a))).unwrap();
    let n = sock.recv(&mut buf).unwrap();
    match udp::parse_response(&buf[..n], false).unwrap() {
        udp::Response::Announce { peers, .. } => Ok(peers),
        udp::Response::Error { message, .. } => Err(message),
        o => panic!("{o:?}"),
    }
}

#[test]
fn announces_cannot_evict_or_move_another_peer() {
    let d = Dir::new("btrack-hijack");
    let b = Btrack::start(&d.join("data"), &[]);
    let payload = data(20_000, 71);
    let (s, _, t) = upload(&b, "h.bin", &payload, &[]);
    assert_eq!(s, 200);
    let ih = ih_bytes(&info_hash_of(&t));
    let victim = *b"-VV0001-victimvictim";
    // The victim announces over HTTP without a key: its id is bound to its source, 127.0.0.1.
    let q = format!("info_hash={}&peer_id={}&port=7100&uploaded=0&downloaded=0&left=5&event=started", shoal::metainfo::url_encode(&ih), shoal::metainfo::url_encode(&victim));
    let (s, _, body) = http("GET", &b.url(&format!("/announce?{q}")), None, &[]);
    assert_eq!(s, 200);
    shoal::tracker::http::decode_announce_response(&body).unwrap();
    // Another address (127.0.0.2) stops it, then re-announces it elsewhere: both refused.
    for ev in [Event::Stopped, Event::Started] {
        let r = udp_announce_from("127.0.0.2:0", b.addr(), ih, victim, 99, ev, 22);
        assert!(r.as_ref().is_err_and(|m| m.contains("peer id in use")), "{ev:?}: {r:?}");
    }
    // A keyed peer: the same address with another key cannot touch it either.
    let keyed = AnnounceRequest { key: 0x1234, ..req(ih, 2, 7102, 5) };
    client::announce(&b.url("/announce"), &keyed, T).unwrap();
    let r = udp_announce_from("127.0.0.1:0", b.addr(), ih, keyed.peer_id, 0x4321, Event::Stopped, 7102);
    assert!(r.is_err_and(|m| m.contains("peer id in use")));
    // ip= is not honoured without --accept-ip-param: a peer is where it announced from.
    let q2 = format!("info_hash={}&peer_id=-XX0001-ipparamippar&port=22&uploaded=0&downloaded=0&left=5&ip=10.66.66.66", shoal::metainfo::url_encode(&ih));
    http("GET", &b.url(&format!("/announce?{q2}")), None, &[]);
    let j = get_json(&b.url(&format!("/api/torrents/{}", shoal::hex::encode(&ih))));
    let addrs: Vec<&str> = j["peers"].as_array().unwrap().iter().map(|p| p["address"].as_str().unwrap()).collect();
    assert!(addrs.contains(&"127.0.0.1:7100") && addrs.contains(&"127.0.0.1:7102") && addrs.contains(&"127.0.0.1:22"), "{addrs:?}");
    assert!(!addrs.iter().any(|a| a.starts_with("10.66.")), "{addrs:?}");
    // The API shows the client prefix only, never a whole peer id.
    let text = j.to_string();
    assert!(!text.contains("victimvictim") && !text.contains(&shoal::hex::encode(&victim)), "{text}");
    assert!(j["peers"].as_array().unwrap().iter().all(|p| p.get("peer_id").is_none() && p["client"].as_str().unwrap().len() <= 8));
    let (_, _, m) = http("GET", &b.url("/metrics"), None, &[]);
    assert!(String::from_utf8(m).unwrap().contains("btrack_errors_total{proto=\"udp\",reason=\"peer_id_taken\"} 3"));
    // With the flag, ip= is taken as given.
    let b2 = Btrack::start(&d.join("data2"), &["--accept-ip-param"]);
    assert_eq!(upload(&b2, "h.bin", &payload, &[]).0, 200);
    http("GET", &b2.url(&format!("/announce?{q2}")), None, &[]);
    let j = get_json(&b2.url(&format!("/api/torrents/{}", shoal::hex::encode(&ih))));
    assert_eq!(j["peers"][0]["address"], "10.66.66.66:22");
}

/// Connects, sends `head` and `body`, then reads until the server closes: (answer, elapsed).
fn send_and_wait(addr: SocketAddr, head: &str, body: &[u8], within: Duration) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    let t0 = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no close within {within:?} ({e}); got {:?}", String::from_utf8_lossy(&out)),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t0.elapsed())
}

#[test]
fn slow_bodies_and_unread_bodies_do_not_hold_workers() {
    let d = Dir::new("btrack-slowbody");
    // A 2 s grace instead of 20 s (the flag exists for this and for slow networks).
    let b = Btrack::start(&d.join("data"), &["--request-timeout", "2s", "--max-connections-per-ip", "4"]);
    // Content-Length: 2, one byte, then silence: cut off after the grace (408), not minutes later.
    let (answer, took) = send_and_wait(b.addr(), "PUT /api/upload?name=slow.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n", b"x", Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("too slow"), "{answer:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // A body the handler refuses without reading (401) is not drained: the answer comes at
    // once and the connection is closed although 990 bytes are still owed.
    let a = Btrack::start(&d.join("data-adm"), &["--admin-token", "ADM"]);
    let (answer, took) = send_and_wait(a.addr(), "PUT /api/upload?name=x.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n", &[0u8; 10], Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 401") && answer.contains("Connection: close"), "{answer:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    // Per-source cap: idle connections from 127.0.0.1 are refused past four; another
    // source address is still served.
    let mut idle: Vec<TcpStream> = Vec::new();
    let refused = loop {
        let (s, _) = raw_http(b.addr(), b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
        if s == 503 {
            break idle.len();
        }
        assert_eq!(s, 200);
        assert!(idle.len() < 20, "never refused a connection");
        idle.push(TcpStream::connect(b.addr()).unwrap());
    };
    assert!((3..=4).contains(&refused), "refused after {refused} idle connections, per-IP limit is 4");
    if have("curl") {
        let o = run(Command::new("curl").args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.2"]).arg(b.url("/metrics")));
        assert_eq!(stdout(&o), "200", "{}", stderr(&o));
    }
}

#[test]
fn content_belongs_to_the_torrent_that_uploaded_it() {
    let d = Dir::new("btrack-owner");
    let data_dir = d.join("data");
    let b = Btrack::start(&data_dir, &["--max-registered", "3"]);
    let payload = data(60_000, 81);
    let (s, _, t) = upload(&b, "img.bin", &payload, &[]);
    assert_eq!(s, 200);
    let owner = info_hash_of(&t);
    // Another torrent named img.bin with the same length (other bytes): registered apart.
    let other_t = make_torrent(&d, "img.bin", &data(60_000, 82), None, None);
    let (s, _, body) = http("POST", &b.url("/api/torrents"), Some(&other_t), &[]);
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&body));
    let other = info_hash_of(&other_t);
    let j = get_json(&b.url(&format!("/api/torrents/{other}")));
    assert!(j["content_path"].is_null() && j["bseed_command"].is_null(), "{j}");
    assert_eq!(http("DELETE", &b.url(&format!("/api/torrents/{other}")), None, &[]).0, 200);
    assert_eq!(std::fs::read(data_dir.join("content/img.bin")).unwrap(), payload, "deleting another torrent kept the content");
    assert!(!get_json(&b.url(&format!("/api/torrents/{owner}")))["content_path"].is_null());
    // The cap on registrations: a fourth is refused with 507, uploads too, and nothing is written.
    for seed in [83, 84] {
        assert_eq!(http("POST", &b.url("/api/torrents"), Some(&make_torrent(&d, &format!("r{seed}"), &data(1000, seed), None, None)), &[]).0, 201);
    }
    let (s, _, body) = http("POST", &b.url("/api/torrents"), Some(&make_torrent(&d, "r85", &data(1000, 85), None, None)), &[]);
    assert_eq!(s, 507, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("--max-registered"));
    assert_eq!(upload(&b, "late.bin", &data(1000, 86), &[]).0, 507);
    assert!(!data_dir.join("content/late.bin").exists());
    assert_eq!(get_json(&b.url("/api/torrents")).as_array().unwrap().len(), 3);
    // Deleting the owner takes its content with it.
    assert_eq!(http("DELETE", &b.url(&format!("/api/torrents/{owner}")), None, &[]).0, 200);
    assert!(!data_dir.join("content/img.bin").exists());
}

#[test]
fn state_changes_are_closed_by_default() {
    let d = Dir::new("btrack-admin");
    let t = make_torrent(&d, "r.bin", &data(5000, 91), None, None);
    let b = Btrack::start(&d.join("data"), &["--allow-host", "tracker.example"]);
    let with_host = |method: &str, path: &str, host: &str| raw_http(b.addr(), format!("{method} {path} HTTP/1.1\r\nHost: {host}:{}\r\nConnection: close\r\n\r\n", b.port).as_bytes());
    // DNS rebinding: a request naming a host that is not this btrack gets nothing.
    for (method, path) in [("GET", "/"), ("GET", "/api/torrents"), ("DELETE", "/api/torrents/0000000000000000000000000000000000000000")] {
        let (s, body) = with_host(method, path, "evil.example");
        assert_eq!(s, 403, "{method} {path}: {body}");
        assert!(body.contains("--allow-host"), "{body}");
    }
    for h in ["localhost", "tracker.example", "TRACKER.example", "127.0.0.1", "[::1]"] {
        assert_eq!(with_host("GET", "/api/torrents", h).0, 200, "{h}");
    }
    // The tracker answers whatever name the torrent used.
    let q = format!("info_hash={}&peer_id=-XX0001-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=10", "%00".repeat(20));
    let (s, body) = with_host("GET", &format!("/announce?{q}"), "any.name");
    assert_eq!(s, 200);
    assert!(body.contains("unregistered torrent"), "{body}");
    // Cross-origin writes (a form post as text/plain from another site) are refused.
    let cross = [("Origin", "http://evil.example"), ("Content-Type", "text/plain")];
    assert_eq!(http("POST", &b.url("/api/torrents"), Some(&t), &cross).0, 403);
    assert_eq!(http("POST", &b.url("/api/torrents"), Some(&t), &[("Origin", "null")]).0, 403);
    assert_eq!(http("POST", &b.url("/api/torrents"), Some(&t), &[("Referer", "http://evil.example/x")]).0, 403);
    assert!(get_json(&b.url("/api/torrents")).as_array().unwrap().is_empty());
    let same = format!("http://127.0.0.1:{}", b.port);
    let (s, _, body) = http("POST", &b.url("/api/torrents"), Some(&t), &[("Origin", &same)]);
    assert_eq!(s, 201, "{}", String::from_utf8_lossy(&body));
    // Beyond loopback: --open-admin is the operator's explicit choice (refused without it,
    // see startup_errors_are_one_line_and_exit_2).
    let w = Btrack::start_on("0.0.0.0", &d.join("data-wide"), &["--open-admin"]);
    let url = format!("http://127.0.0.1:{}/api/torrents", w.port);
    assert_eq!(http("POST", &url, Some(&t), &[]).0, 201);
}

#[test]
fn announce_rate_and_peer_caps() {
    let d = Dir::new("btrack-caps");
    let b = Btrack::start(&d.join("data"), &["--open", "--http-rate-limit", "3", "--max-peers-total", "2"]);
    let ih = [8u8; 20];
    // Twelve announces at once from one address: at most three a second get through.
    let refused: Vec<String> = (0..12u8)
        .filter_map(|i| match client::announce(&b.url("/announce"), &req(ih, 1 + i % 3, 7001, 5), T) {
            Err(client::Error::Failure { reason, .. }) => Some(reason),
            Ok(_) => None,
            Err(e) => panic!("{e:?}"),
        })
        .collect();
    assert!(refused.len() >= 3 && refused.iter().all(|r| r.starts_with("rate limited")), "{refused:?}");
    // UDP is limited separately; the third peer is answered but not stored (global cap 2).
    for pid in 1..=3u8 {
        client::announce(&b.udp_url("/announce"), &req(ih, pid, 7000 + pid as u16, 5), T).unwrap();
    }
    let s = client::scrape(&b.udp_url("/announce"), &ih, T).unwrap();
    assert_eq!(s.incomplete, 2);
    let (_, _, m) = http("GET", &b.url("/metrics"), None, &[]);
    let m = String::from_utf8(m).unwrap();
    assert!(m.contains("btrack_peers 2"), "{m}");
    assert!(!m.contains("btrack_errors_total{proto=\"http\",reason=\"rate_limited\"} 0"), "{m}");
}

#[test]
fn seed_only_owned_content_and_only_to_this_btrack() {
    let d = Dir::new("btrack-seedown");
    let seed_port = free_port().to_string();
    let b = Btrack::start(&d.join("data"), &["--seed", "--seed-port", &seed_port]);
    let payload = data(300_000, 95);
    // Stands in for a tracker that a poster chose.
    let evil = TcpListener::bind("127.0.0.1:0").unwrap();
    let evil_url = format!("http://{}/announce", evil.local_addr().unwrap());
    // Registered first: the same content at other piece lengths, and same-name junk, all
    // announcing elsewhere. None of them owns content/s.bin.
    for (piece, seed) in [("16K", 95), ("32K", 96), ("64K", 95)] {
        let bytes = if seed == 95 { payload.clone() } else { data(payload.len(), seed) };
        let t = make_torrent(&d, "s.bin", &bytes, Some(piece), Some(&evil_url));
        assert_eq!(http("POST", &b.url("/api/torrents"), Some(&t), &[]).0, 201);
    }
    let (s, _, t) = upload(&b, "s.bin", &payload, &[]);
    assert_eq!(s, 200);
    let ih = info_hash_of(&t);
    // The upload is seeded, and its session announces here.
    poll("the seeding session to announce to btrack", Duration::from_secs(60), || (get_json(&b.url(&format!("/api/torrents/{ih}")))["seeders"] == 1).then_some(()));
    let log = b.log_with("btrack: seeding ", T);
    assert_eq!(log.matches("btrack: seeding ").count(), 1, "{log}");
    assert!(!log.contains("not seeding"), "nothing else was verified: {log}");
    evil.set_nonblocking(true).unwrap();
    assert!(evil.accept().is_err(), "a seeding session announced to a tracker chosen by a poster");
}
