//! End-to-end tests of btrack on Redis (issue 11 part 2) and of site-aware peer lists
//! (part 3): a real redis-server (Debian's `redis-server`) started by each test on a unix
//! socket in its own temp dir, real btrack processes on `--listen 127.0.0.1:0` (the bound
//! port read back from their log), our tracker client, bseed and bfetch. Nothing sleeps to
//! synchronise: every wait polls a condition with a deadline.
mod common;

use common::*;
use shoal::tracker::client::{self, AnnounceRequest, Event};
use shoal::tracker::udp;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn poll<V>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<V>) -> V {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A redis-server on a unix socket in `dir`, killed on drop.
struct Redis {
    child: Child,
    dir: PathBuf,
}

impl Redis {
    fn start(dir: &Path) -> Redis {
        have("redis-server");
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!(
                "daemonize no\nport 0\nunixsocket {d}/redis.sock\nunixsocketperm 700\npidfile {d}/redis.pid\nlogfile {d}/redis.log\ndir {d}\nsave \"\"\nappendonly no\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(dir.join("redis.sock"));
        let child = Command::new("redis-server").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start redis-server");
        let r = Redis { child, dir: dir.to_path_buf() };
        poll("redis-server's socket", T, || std::os::unix::net::UnixStream::connect(r.socket()).ok().map(|_| ()));
        r
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }
    fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A btrack on 127.0.0.1 with a port it picked; killed on drop.
struct Btrack {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Btrack {
    fn start(dir: &Path, extra: &[&str]) -> Btrack {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("btrack.log");
        let child = cmd("btrack")
            .args(["--listen", "127.0.0.1:0", "--interval", "2s"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start btrack");
        let mut b = Btrack { child, port: 0, log };
        b.port = poll("btrack's listening line", Duration::from_secs(20), || {
            if let Ok(Some(st)) = b.child.try_wait() {
                panic!("btrack exited with {st}: {}", b.log());
            }
            let log = b.log();
            let rest = log.split("btrack: listening on 127.0.0.1:").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        });
        b
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Btrack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn req(ih: [u8; 20], pid: u8, port: u16, left: u64, key: u32) -> AnnounceRequest {
    AnnounceRequest { info_hash: ih, peer_id: [pid; 20], port, uploaded: 0, downloaded: 0, left, event: Event::Started, numwant: None, key }
}

fn ports(r: &client::AnnounceResponse) -> Vec<u16> {
    let mut v: Vec<u16> = r.peers.iter().map(|a| a.port()).collect();
    v.sort();
    v
}

#[test]
fn two_btracks_on_one_redis_serve_one_swarm() {
    let d = Dir::new("redis-two");
    let redis = Redis::start(&d.join("redis"));
    let a = Btrack::start(&d.join("a"), &["--open", "--store", &redis.url()]);
    let b = Btrack::start(&d.join("b"), &["--open", "--store", &redis.url()]);
    assert!(a.log().contains(&format!("peers in {}", redis.url())), "{}", a.log());
    let ih = [7u8; 20];
    // A seed announces to a, a leecher to b: each sees the other.
    let r = client::announce(&a.url(), &req(ih, 1, 7001, 0, 11), T).unwrap();
    assert!(r.peers.is_empty());
    let r = client::announce(&b.url(), &req(ih, 2, 7002, 100, 22), T).unwrap();
    assert_eq!(ports(&r), vec![7001], "b hands out the peer announced to a");
    assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
    let r = client::announce(&a.url(), &req(ih, 3, 7003, 100, 33), T).unwrap();
    assert_eq!(ports(&r), vec![7001, 7002]);
    // Over UDP too (the same store behind both protocols).
    let s = client::scrape(&format!("udp://127.0.0.1:{}/announce", b.port), &ih, T).unwrap();
    assert_eq!((s.complete, s.incomplete), (1, 2));
    // Peer ids stay bound to their key across trackers: another key cannot take peer 2 over
    // at a, nor stop it.
    let mut hijack = req(ih, 2, 9999, 100, 99);
    match client::announce(&a.url(), &hijack, T) {
        Err(client::Error::Failure { reason, .. }) => assert!(reason.contains("peer id in use"), "{reason}"),
        other => panic!("hijack accepted: {other:?}"),
    }
    hijack.event = Event::Stopped;
    assert!(client::announce(&a.url(), &hijack, T).is_err());
    // Its owner stops it at the other tracker.
    let mut stop = req(ih, 2, 7002, 100, 22);
    stop.event = Event::Stopped;
    client::announce(&a.url(), &stop, T).unwrap();
    let r = client::announce(&b.url(), &req(ih, 3, 7003, 100, 33), T).unwrap();
    assert_eq!(ports(&r), vec![7001]);
    assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)), "a stopped leecher is not counted");
    // Counts follow a leecher that completes; a small numwant is answered from a random
    // sample of the swarm (HRANDFIELD), with the same counts.
    let mut done = req(ih, 3, 7003, 0, 33);
    done.event = Event::Completed;
    let r = client::announce(&b.url(), &done, T).unwrap();
    assert_eq!((r.complete, r.incomplete), (Some(2), Some(0)));
    for pid in 10..14u8 {
        client::announce(&a.url(), &req(ih, pid, 7000 + pid as u16, 100, pid as u32), T).unwrap();
    }
    let mut few = req(ih, 20, 7020, 100, 20);
    few.numwant = Some(2);
    let r = client::announce(&b.url(), &few, T).unwrap();
    assert_eq!(r.peers.len(), 2, "{:?}", r.peers);
    assert!(!r.peers.iter().any(|p| p.port() == 7020), "never the asker");
    assert_eq!((r.complete, r.incomplete), (Some(2), Some(5)));
    let s = client::scrape(&b.url(), &ih, T).unwrap();
    assert_eq!((s.complete, s.incomplete, s.downloaded), (2, 5, 1));
    for pid in [10u8, 11, 12, 13, 20] {
        let mut stop = req(ih, pid, 7000 + pid as u16, 100, pid as u32);
        stop.event = Event::Stopped;
        client::announce(&a.url(), &stop, T).unwrap();
    }
    // The global peer cap counts the peers stored by every btrack: two are stored, so a
    // third btrack capped at 2 in all answers but stores no more.
    let c = Btrack::start(&d.join("c"), &["--open", "--store", &redis.url(), "--max-peers-total", "2"]);
    client::announce(&c.url(), &req(ih, 4, 7004, 100, 44), T).unwrap();
    let r = client::announce(&a.url(), &req(ih, 5, 7005, 100, 55), T).unwrap();
    assert_eq!(ports(&r), vec![7001, 7003], "peer 4 was not stored: {:?}", r.peers);
}

/// One HTTP request to `addr`: the status code and the body.
fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let status = String::from_utf8_lossy(&out).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| out[i + 4..].to_vec()).unwrap_or_default();
    (status, body)
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> u16 {
    request(addr, "POST", path, body).0
}

#[test]
fn the_registry_is_shared_between_btracks() {
    let d = Dir::new("redis-registry");
    let redis = Redis::start(&d.join("redis"));
    let a = Btrack::start(&d.join("a"), &["--store", &redis.url()]);
    let b = Btrack::start(&d.join("b"), &["--store", &redis.url()]);
    write_data(&d.join("img.bin"), 100_000, 4);
    mktorrent(&d.join("img.bin"), &d.join("img.torrent"), &[a.url(), b.url()]);
    let bytes = std::fs::read(d.join("img.torrent")).unwrap();
    let hex = shoal::hex::encode(&info_hash(&d.join("img.torrent")));
    let path = format!("/torrents/{hex}.torrent");
    assert_eq!(request(b.addr(), "GET", &path, b"").0, 404);
    // Registered with a: b has it in its data directory within seconds, byte for byte.
    assert_eq!(post(a.addr(), "/api/torrents", &bytes), 201);
    let got = poll("b to take the torrent", Duration::from_secs(10), || match request(b.addr(), "GET", &path, b"") {
        (200, body) => Some(body),
        _ => None,
    });
    assert_eq!(got, bytes);
    assert!(d.join("b/data/torrents").join(format!("{hex}.torrent")).is_file());
    // A btrack started later takes it too.
    let c = Btrack::start(&d.join("c"), &["--store", &redis.url()]);
    poll("c to take the torrent", Duration::from_secs(10), || (request(c.addr(), "GET", &path, b"").0 == 200).then_some(()));
    // Deleted through b: gone from a and c as well.
    assert_eq!(request(b.addr(), "DELETE", &format!("/api/torrents/{hex}"), b"").0, 200);
    for (name, t) in [("a", &a), ("c", &c)] {
        poll(&format!("{name} to drop the torrent"), Duration::from_secs(10), || (request(t.addr(), "GET", &path, b"").0 == 404).then_some(()));
    }
    assert!(!d.join("a/data/torrents").join(format!("{hex}.torrent")).exists());
    assert!(a.log().contains("deleted through another btrack"), "{}", a.log());
}

fn info_hash(torrent: &Path) -> [u8; 20] {
    let o = run(cmd("bdecode").arg("--info-hash").arg(torrent));
    let hex = stdout(&o).trim().to_string();
    let v = shoal::hex::decode(&hex).unwrap_or_else(|| panic!("info-hash: {hex:?} {}", stderr(&o)));
    <[u8; 20]>::try_from(&v[..]).unwrap()
}

#[test]
fn closed_mode_registrations_are_shared_and_survive_a_redis_restart() {
    let d = Dir::new("redis-restart");
    let mut redis = Redis::start(&d.join("redis"));
    let a = Btrack::start(&d.join("a"), &["--store", &redis.url()]);
    let b = Btrack::start(&d.join("b"), &["--store", &redis.url()]);
    write_data(&d.join("img.bin"), 100_000, 3);
    mktorrent(&d.join("img.bin"), &d.join("img.torrent"), &[a.url()]);
    let ih = info_hash(&d.join("img.torrent"));
    let refused = |r: Result<client::AnnounceResponse, client::Error>, why: &str| match r {
        Err(client::Error::Failure { reason, .. }) => assert!(reason.contains(why), "{reason}"),
        other => panic!("expected a failure reason with {why:?}, got {other:?}"),
    };
    refused(client::announce(&b.url(), &req(ih, 1, 7001, 0, 1), T), "unregistered");
    // Registered with a: b, closed too, tracks it (one registry of tracked torrents).
    assert_eq!(post(a.addr(), "/api/torrents", &std::fs::read(d.join("img.torrent")).unwrap()), 201);
    client::announce(&b.url(), &req(ih, 1, 7001, 0, 1), T).unwrap();
    redis.kill();
    // Meanwhile: a failure reason, promptly, not a hang or a dead worker; over UDP too.
    let t0 = Instant::now();
    refused(client::announce(&a.url(), &req(ih, 2, 7002, 100, 2), Duration::from_secs(10)), "store unavailable");
    assert!(t0.elapsed() < Duration::from_secs(6), "answered in {:?}", t0.elapsed());
    refused(client::announce(&format!("udp://127.0.0.1:{}/announce", b.port), &req(ih, 2, 7002, 100, 2), Duration::from_secs(10)), "store unavailable");
    assert!(a.log().contains("btrack: store unix://"), "the cause is logged: {}", a.log());
    // Redis back, empty (no persistence): a re-registers its torrent by itself (at its next
    // sweep) and both trackers answer again without a restart.
    let _redis2 = Redis::start(&d.join("redis"));
    let r = poll("an answer from b after redis restarted", Duration::from_secs(20), || client::announce(&b.url(), &req(ih, 2, 7002, 100, 2), T).ok());
    assert!(r.peers.is_empty(), "the store started empty");
    let r = client::announce(&a.url(), &req(ih, 1, 7001, 0, 1), T).unwrap();
    assert_eq!(ports(&r), vec![7002]);
}

fn mktorrent(content: &Path, out: &Path, announce: &[String]) {
    let mut c = cmd("mktorrent");
    c.args(["-q", "-l", "64K"]);
    for a in announce {
        c.arg("-a").arg(a);
    }
    let o = run(c.arg("-o").arg(out).arg(content));
    assert_exit(&o, 0);
}

#[test]
fn killing_one_btrack_mid_sync_every_host_completes_via_the_other() {
    let d = Dir::new("redis-kill");
    let redis = Redis::start(&d.join("redis"));
    let mut a = Btrack::start(&d.join("a"), &["--open", "--store", &redis.url()]);
    let b = Btrack::start(&d.join("b"), &["--open", "--store", &redis.url()]);
    let content = d.join("img.bin");
    write_data(&content, 6 << 20, 11);
    let torrent = d.join("img.torrent");
    // Two tiers (BEP 12): a first, b as the fallback.
    mktorrent(&content, &torrent, &[a.url(), b.url()]);
    let _seed = Proc(cmd("bseed").arg(&torrent).arg(&content).args(["--port", "0", "--max-upload-rate", "2M", "-q"]).spawn().unwrap());
    let fetch = |name: &str| {
        std::fs::create_dir_all(d.join(name)).unwrap();
        Proc(
            cmd("bfetch")
                .arg(&torrent)
                .arg("-o")
                .arg(d.join(name))
                .args(["--port", "0", "--no-linger", "-q", "--timeout", "60s"])
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut h1 = fetch("h1");
    let ih = info_hash(&torrent);
    // Mid-sync: the seed and h1 are in the swarm (seen through b), h1 not done.
    let via_b = b.url();
    poll("seed and h1 in the swarm", Duration::from_secs(20), || {
        let s = client::scrape(&via_b, &ih, T).ok()?;
        (s.complete >= 1 && s.incomplete >= 1).then_some(())
    });
    assert!(h1.0.try_wait().unwrap().is_none(), "h1 is still syncing when its tracker dies");
    let _ = a.child.kill(); // SIGKILL
    let _ = a.child.wait();
    assert!(std::net::TcpStream::connect(a.addr()).is_err());
    let mut h2 = fetch("h2");
    for (name, h) in [("h1", &mut h1), ("h2", &mut h2)] {
        let st = poll(name, Duration::from_secs(90), || h.0.try_wait().unwrap());
        assert!(st.success(), "{name} exited {st}");
        assert!(std::fs::read(d.join(name).join("img.bin")).unwrap() == std::fs::read(&content).unwrap(), "{name} content differs");
    }
}

/// A BEP 15 announce from `from` (a 127.0.0.x address): the peers answered.
fn udp_announce(tracker: SocketAddr, from: &str, ih: [u8; 20], pid: u8, left: u64) -> Vec<SocketAddr> {
    let s = UdpSocket::bind((from, 0)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 2048];
    let mut ask = |r: &udp::Request| {
        s.send_to(&udp::encode_request(r), tracker).unwrap();
        let n = s.recv(&mut buf).expect("tracker answers");
        udp::parse_response(&buf[..n], false).unwrap()
    };
    let cid = match ask(&udp::Request::Connect { transaction_id: 1 }) {
        udp::Response::Connect { connection_id, .. } => connection_id,
        other => panic!("{other:?}"),
    };
    let a = udp::Announce {
        connection_id: cid,
        transaction_id: 2,
        info_hash: ih,
        peer_id: [pid; 20],
        downloaded: 0,
        left,
        uploaded: 0,
        event: Event::Started,
        ip: 0,
        key: pid as u32,
        num_want: 50,
        port: 6881,
        url_data: Vec::new(),
    };
    match ask(&udp::Request::Announce(a)) {
        udp::Response::Announce { peers, .. } => peers,
        other => panic!("{other:?}"),
    }
}

fn site_answers(store: Option<&str>) {
    let d = Dir::new("sites");
    let mut extra = vec!["--open", "--site", "127.0.2.0/24=lab", "--site", "auto"];
    if let Some(s) = store {
        extra.extend(["--store", s]);
    }
    let t = Btrack::start(&d.join("t"), &extra);
    let ih = [3u8; 20];
    // The origin in 127.0.0.0/24 (a seed: a member of its site), 4 hosts in each of
    // 127.0.0.0/24, 127.0.1.0/24 and the named site 127.0.2.0/24.
    udp_announce(t.addr(), "127.0.0.1", ih, 1, 0);
    for site in 0..3u8 {
        for h in 0..4u8 {
            udp_announce(t.addr(), &format!("127.0.{site}.{}", 10 + h), ih, 10 * (site + 1) + h, 100);
        }
    }
    let site_of = |a: &SocketAddr| match a.ip() {
        std::net::IpAddr::V4(v4) => v4.octets()[2],
        _ => 255,
    };
    // Hosts that are not gateways (ids 100+, not among their site's two lowest) get their
    // site's peers only.
    for (site, from) in [(0u8, "127.0.0.99"), (1, "127.0.1.99"), (2, "127.0.2.99")] {
        let peers = udp_announce(t.addr(), from, ih, 100 + site, 100);
        let want_local = if site == 0 { 5 } else { 4 }; // site 0 has the origin too
        assert_eq!(peers.len(), want_local, "{from}: {peers:?}");
        assert!(peers.iter().all(|a| site_of(a) == site), "{from}: {peers:?}");
    }
    // A gateway (127.0.1.10, id 20, its site's first host and lowest id) also gets the
    // gateway of each other site: 127.0.0.10 (in memory: by arrival, origins last) or the
    // origin (Redis: lowest id), and 127.0.2.10.
    let gateways: Vec<std::net::IpAddr> = ["127.0.0.1", "127.0.0.10", "127.0.2.10", "127.0.2.11"].iter().map(|s| s.parse().unwrap()).collect();
    let peers = udp_announce(t.addr(), "127.0.1.10", ih, 20, 100);
    let remote: Vec<&SocketAddr> = peers.iter().filter(|a| site_of(a) != 1).collect();
    assert_eq!(peers.len() - remote.len(), 4, "{peers:?}");
    assert_eq!(remote.len(), 2, "{peers:?}");
    assert!(remote.iter().all(|a| gateways.contains(&a.ip())), "{peers:?}");
    // A host alone in a new site is its gateway: one peer of each other site to start from.
    let peers = udp_announce(t.addr(), "127.0.9.1", ih, 200, 100);
    assert_eq!(peers.len(), 3);
    // The origin gets its own site's leechers first; on Redis (lowest id) it is its site's
    // gateway and also gets the 3 other sites' gateways, in memory it is not.
    let o = udp_announce(t.addr(), "127.0.0.1", ih, 1, 0);
    assert_eq!(o.iter().filter(|a| site_of(a) == 0).count(), 5, "{o:?}");
    assert_eq!(o.len(), if store.is_some() { 8 } else { 5 }, "{o:?}");
}

#[test]
fn site_aware_answers_in_memory() {
    site_answers(None);
}

#[test]
fn site_aware_answers_on_redis() {
    let d = Dir::new("sites-redis");
    let redis = Redis::start(&d.join("redis"));
    site_answers(Some(&redis.url()));
}

#[test]
fn bad_store_and_site_arguments_are_one_line_errors() {
    let d = Dir::new("redis-args");
    let dead = d.join("nothing.sock");
    for (args, want) in [
        (vec!["--store".to_string(), "http://x".into()], "expected redis://"),
        (vec!["--store".into(), format!("unix://{}", dead.display())], "--store unix://"),
        (vec!["--site".into(), "10.0.0.0/8".into()], "CIDR=NAME"),
        (vec!["--site".into(), "10.0.0.0/40=x".into()], "prefix length"),
    ] {
        let o = run(cmd("btrack").args(["--listen", "127.0.0.1:0", "--data-dir"]).arg(d.join("data")).args(&args));
        assert_exit(&o, 2);
        assert_clean_failure(&o);
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}
