//! Magnet links (BEP 9 metadata exchange over BEP 10), end to end on loopback with real
//! processes:
//! - `bfetch` by magnet link or bare info-hash from `bseed`, with the peer named (`x.pe=`,
//!   `--peer`) or found through `btrack` (`tr=`): the bytes written equal the source;
//! - `bdecode` and `bverify` resolve a magnet link with `--peer`; without peers every tool
//!   answers one line and exit 2; a malformed link likewise;
//! - bseed's own BEP 9 answers, byte by byte: metadata_size, data, reject; a bfetch serves
//!   the metadata to another bfetch started from the info-hash alone;
//! - a hostile peer whose metadata does not hash to the info-hash is never trusted: alone,
//!   `bfetch` exits 1 and writes nothing; beside an honest seed, the download completes; a
//!   peer claiming a 1 GiB dictionary is refused before anything is asked or allocated.
//!
//! Our tools run with `--port 0` and the bound port is read from their log; every process
//! is a `Proc` (killed on drop); waits poll a condition with a deadline.
mod common;
#[path = "helpers/peer_util.rs"]
mod peer_util;

use common::*;
use peer_util::*;
use shoal::metainfo::Metainfo;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(90);

/// Waits until `p` logs `marker` followed by a port, and returns the port.
fn logged_port(p: &mut Proc, marker: &str) -> u16 {
    wait_logged_port(p, marker, T)
}

/// 3 MiB + odd bytes of content and its torrent (64 KiB pieces: one metadata piece),
/// optionally announcing to `tracker`.
fn setup(d: &Dir, tracker: Option<&str>) -> (std::path::PathBuf, std::path::PathBuf, Metainfo) {
    setup_with(d, tracker, (3 << 20) + 777, "64K", 21)
}

/// Content of `size` bytes (from `seed`) in `plen` pieces, and its torrent.
fn setup_with(d: &Dir, tracker: Option<&str>, size: usize, plen: &str, seed: u64) -> (std::path::PathBuf, std::path::PathBuf, Metainfo) {
    let content = d.join("src/img.bin");
    write_data(&content, size, seed);
    let t = d.join("img.torrent");
    let mut c = cmd("mktorrent");
    c.args(["-q", "--no-date", "-l", plen, "-o"]).arg(&t);
    if let Some(u) = tracker {
        c.args(["-a", u]);
    }
    assert_exit(&run(c.arg(&content)), 0);
    let m = Metainfo::read(&t).unwrap();
    (content, t, m)
}

fn start_bseed(d: &Dir, torrent: &Path, content: &Path) -> (Proc, u16) {
    let mut c = cmd("bseed");
    c.arg(torrent).arg(content).args(["--port", "0"]);
    let mut p = Proc::spawn("bseed", c, d.path());
    let port = logged_port(&mut p, "listening on port ");
    (p, port)
}

/// Runs bfetch on `target` into `out` and returns its process once it exited.
fn bfetch(d: &Dir, target: &str, out: &Path, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(out).unwrap();
    let mut c = cmd("bfetch");
    c.arg(target).arg("-o").arg(out).args(["--port", "0", "--no-linger", "--timeout", "60s"]).args(extra);
    let mut f = Proc::spawn("bfetch", c, d.path());
    f.wait_or_panic(T);
    f
}

fn assert_fetched(f: &mut Proc, src: &Path, got: &Path) {
    let st = f.poll().unwrap();
    assert_eq!(st.code(), Some(0), "bfetch failed\n{}", f.dump());
    assert_eq!(sha1_file(got), sha1_file(src), "content differs\n{}", f.dump());
}

#[test]
fn bfetch_by_magnet_from_bseed_with_named_peer() {
    let d = Dir::new("mag-xpe");
    // 16 KiB pieces of 14 MiB: 896 hashes, an info dictionary of two metadata pieces.
    let (src, t, m) = setup_with(&d, None, (14 << 20) + 5, "16K", 21);
    assert!(m.raw_info.len() > 16384, "{}", m.raw_info.len());
    let (_seed, port) = start_bseed(&d, &t, &src);
    // x.pe= in the link, 40 hex digits.
    let link = format!("magnet:?xt=urn:btih:{}&dn=img.bin&x.pe=127.0.0.1:{port}", m.info_hash);
    let out = d.join("out1");
    let mut f = bfetch(&d, &link, &out, &[]);
    assert_fetched(&mut f, &src, &out.join("img.bin"));
    assert!(f.stderr().contains("got the metadata"), "{}", f.dump());
    // A bare info-hash in base32 with --peer.
    let b32 = base32(&m.info_hash.0);
    let out = d.join("out2");
    let mut f = bfetch(&d, &b32, &out, &["--peer", &format!("127.0.0.1:{port}")]);
    assert_fetched(&mut f, &src, &out.join("img.bin"));
}

fn base32(b: &[u8; 20]) -> String {
    let alpha = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut acc, mut bits, mut s) = (0u64, 0u32, String::new());
    for &x in b {
        acc = (acc << 8) | x as u64;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            s.push(alpha[((acc >> bits) & 31) as usize] as char);
        }
    }
    s
}

#[test]
fn bfetch_by_magnet_finds_bseed_through_btrack() {
    let d = Dir::new("mag-tr");
    let mut c = cmd("btrack");
    c.args(["--listen", "127.0.0.1:0", "--open", "--interval", "2s", "--data-dir"]).arg(d.join("btrack"));
    let mut trk = Proc::spawn("btrack", c, d.path());
    let tport = logged_port(&mut trk, "listening on 127.0.0.1:");
    let url = format!("http://127.0.0.1:{tport}/announce");
    let (src, t, m) = setup(&d, Some(&url));
    let (_seed, _) = start_bseed(&d, &t, &src);
    let link = format!("magnet:?xt=urn:btih:{}&tr={}", m.info_hash, shoal::metainfo::url_encode(url.as_bytes()));
    let out = d.join("out");
    let mut f = bfetch(&d, &link, &out, &[]);
    assert_fetched(&mut f, &src, &out.join("img.bin"));
}

#[test]
fn bdecode_and_bverify_resolve_a_magnet_with_peer() {
    let d = Dir::new("mag-tools");
    let (src, t, m) = setup(&d, None);
    let (_seed, port) = start_bseed(&d, &t, &src);
    let peer = format!("127.0.0.1:{port}");
    let o = run(cmd("bdecode").args(["--info-hash", &m.info_hash.hex(), "--peer", &peer]));
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), format!("{}\n", m.info_hash));
    let o = run(cmd("bdecode").args(["--info", &format!("magnet:?xt=urn:btih:{}", m.info_hash), "--peer", &peer]));
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("name: img.bin") && stdout(&o).contains("piece count: 49"), "{}", stdout(&o));
    let o = run(cmd("bverify").args([&m.info_hash.hex(), "--peer", &peer, "-q"]).arg(&src));
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("OK "), "{}", stdout(&o));
}

#[test]
fn magnet_without_peers_or_malformed_is_one_line_exit_2() {
    let ih = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    for prog in ["bdecode", "bverify", "bfetch"] {
        for arg in [format!("magnet:?xt=urn:btih:{ih}"), ih.to_string()] {
            let o = run(cmd(prog).arg(&arg));
            assert_exit(&o, 2);
            let e = stderr(&o);
            assert_eq!(e.lines().count(), 1, "{e}");
            assert!(e.starts_with(&format!("{prog}: error: ")) && e.contains("needs peers"), "{e}");
        }
        let o = run(cmd(prog).args(["magnet:?xt=urn:btih:xyz", "--peer", "127.0.0.1:1"]));
        assert_exit(&o, 2);
        assert!(stderr(&o).contains("neither 40 hex digits nor 32 base32"), "{}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1);
    }
}

/// The hostile peer: serves a valid info dictionary of other content under `ih`.
fn start_bad_peer(d: &Dir, ih: &str, extra: &[&str]) -> (Proc, u16) {
    have(PYTHON);
    // Same name and size, other bytes: a valid dictionary with other piece hashes.
    let (_, _, other) = setup_with(&Dir::new("mag-other"), None, (3 << 20) + 777, "64K", 99);
    let fake = d.join("fake-info");
    std::fs::write(&fake, &other.raw_info).unwrap();
    let mut c = Command::new(PYTHON);
    c.arg(helper("bad_metadata_peer.py")).arg(ih).arg(&fake).args(extra);
    let mut p = Proc::spawn("bad_peer", c, d.path());
    let port = logged_port(&mut p, "listening on port ");
    (p, port)
}

#[test]
fn metadata_that_does_not_hash_is_never_trusted() {
    let d = Dir::new("mag-hostile");
    let (src, t, m) = setup(&d, None);
    let (bad, bad_port) = start_bad_peer(&d, &m.info_hash.hex(), &[]);
    // Alone: exit 1 with one line, and nothing written.
    let out = d.join("out-alone");
    let mut f = bfetch(&d, &m.info_hash.hex(), &out, &["--peer", &format!("127.0.0.1:{bad_port}"), "-q"]);
    let st = f.poll().unwrap();
    assert_eq!(st.code(), Some(1), "{}", f.dump());
    let e = f.stderr();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("does not hash to the info-hash"), "{e}");
    assert!(bad.stderr().contains("served 0"), "the hostile peer was asked\n{}", bad.dump());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "bfetch wrote something");
    // Beside an honest seed: the honest metadata wins, the content is right.
    let (_seed, port) = start_bseed(&d, &t, &src);
    let link = format!("magnet:?xt=urn:btih:{}&x.pe=127.0.0.1:{bad_port}&x.pe=127.0.0.1:{port}", m.info_hash);
    let out = d.join("out-both");
    let mut f = bfetch(&d, &link, &out, &[]);
    assert_fetched(&mut f, &src, &out.join("img.bin"));
}

/// bseed's side of BEP 9, spoken to byte by byte: its extension handshake offers
/// ut_metadata with metadata_size = the info dictionary's exact length; piece 0 comes back
/// as `data` holding those exact bytes, a piece past the end as `reject`.
#[test]
fn bseed_serves_the_exact_info_bytes_and_rejects_past_the_end() {
    use shoal::peer::metadata::{self, Msg};
    use shoal::peer::wire::{self, Handshake, Message};
    use std::io::{Read, Write};
    let d = Dir::new("mag-serve");
    let (src, t, m) = setup(&d, None);
    let (_seed, port) = start_bseed(&d, &t, &src);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(&Handshake::new(m.info_hash.0, *b"-XX0001-magnet-test!").encode()).unwrap();
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    s.read_exact(&mut hs).unwrap();
    assert!(Handshake::decode(&hs).unwrap().supports_extensions());
    let ours = b"d1:md11:ut_metadatai7eee".to_vec();
    let mut out = Vec::new();
    wire::encode(&Message::Extended { id: 0, payload: ours }, &mut out);
    for piece in [0u32, 5] {
        wire::encode(&Message::Extended { id: metadata::UT_METADATA_ID, payload: metadata::encode(&Msg::Request { piece }) }, &mut out);
    }
    s.write_all(&out).unwrap();
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 1 << 16]);
    let (mut size, mut answers) = (None, Vec::new());
    loop {
        while let Some((msg, used)) = wire::decode(&buf).unwrap() {
            buf.drain(..used);
            match msg {
                Message::Extended { id: 0, payload } => size = metadata::parse_ext_handshake(&payload).unwrap().metadata_size,
                Message::Extended { id: 7, payload } => answers.push(metadata::decode(&payload).unwrap()),
                _ => {}
            }
        }
        if answers.len() == 2 {
            break;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "bseed closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(size, Some(m.raw_info.len() as u64));
    assert_eq!(answers[0], Msg::Data { piece: 0, total_size: m.raw_info.len() as u64, data: m.raw_info.clone() });
    assert_eq!(answers[1], Msg::Reject { piece: 5 });
}

/// A tracker that knows no peer for the info-hash: bfetch keeps asking it until
/// --metadata-timeout, then one line and exit 1, nothing written.
#[test]
fn no_peer_with_metadata_in_time_is_exit_1() {
    let d = Dir::new("mag-timeout");
    let mut c = cmd("btrack");
    c.args(["--listen", "127.0.0.1:0", "--open", "--interval", "2s", "--data-dir"]).arg(d.join("btrack"));
    let mut trk = Proc::spawn("btrack", c, d.path());
    let tport = logged_port(&mut trk, "listening on 127.0.0.1:");
    let ih = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";
    let out = d.join("out");
    let start = Instant::now();
    let link = format!("magnet:?xt=urn:btih:{ih}&tr=http://127.0.0.1:{tport}/announce");
    let mut f = bfetch(&d, &link, &out, &["--metadata-timeout", "3s", "-q"]);
    assert_eq!(f.poll().unwrap().code(), Some(1), "{}", f.dump());
    let e = f.stderr();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.starts_with("bfetch: error: ") && e.contains("no peer found to fetch the metadata from within 3s"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

/// A peer claiming a 1 GiB info dictionary is refused before anything is allocated or asked.
#[test]
fn an_oversized_metadata_claim_is_refused() {
    let d = Dir::new("mag-huge");
    let (_, _, m) = setup(&d, None);
    let (bad, bad_port) = start_bad_peer(&d, &m.info_hash.hex(), &["--claim-size", "1073741824"]);
    let out = d.join("out");
    let mut f = bfetch(&d, &m.info_hash.hex(), &out, &["--peer", &format!("127.0.0.1:{bad_port}"), "-q"]);
    assert_eq!(f.poll().unwrap().code(), Some(1), "{}", f.dump());
    let e = f.stderr();
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("metadata_size 1073741824 outside 1..=16777216"), "{e}");
    assert!(!bad.stderr().contains("served"), "nothing was requested\n{}", bad.dump());
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

/// bfetch serves the metadata too: a second bfetch, given only the info-hash and the first
/// bfetch as its peer (not the seed), gets the metadata and the content from it.
#[test]
fn bfetch_serves_metadata_to_a_bfetch_by_magnet() {
    let d = Dir::new("mag-relay");
    let (src, t, m) = setup(&d, None);
    let (_seed, port) = start_bseed(&d, &t, &src);
    let out_a = d.join("out-a");
    std::fs::create_dir_all(&out_a).unwrap();
    let mut c = cmd("bfetch");
    c.arg(&t).arg("-o").arg(&out_a).args(["--port", "0", "--peer", &format!("127.0.0.1:{port}"), "--no-linger", "--seed-time", "120s"]);
    let mut a = Proc::spawn("bfetch-a", c, d.path());
    let a_port = logged_port(&mut a, "listening on port ");
    let out_b = d.join("out-b");
    let mut b = bfetch(&d, &m.info_hash.hex(), &out_b, &["--peer", &format!("127.0.0.1:{a_port}")]);
    assert_fetched(&mut b, &src, &out_b.join("img.bin"));
    a.assert_running();
}
