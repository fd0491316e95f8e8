//! Writes the seed corpora in fuzz/seeds/<target>/: real protocol bytes made by shoal's own
//! encoders (torrents from lib/create as `mktorrent` writes them, wire messages, tracker
//! queries and answers, UDP packets) and HTTP requests as clients send them to btrack.
//! Run by `fuzz/run.sh seeds`; the output is committed as fixtures, so it only needs
//! re-running when a protocol grows. Built without coverage instrumentation.

use shoal::bencode::{self, Owned};
use shoal::create::{self, Options};
use shoal::peer::wire::{self, Handshake, Message};
use shoal::tracker::client::{AnnounceRequest, Event, ScrapeStats};
use shoal::tracker::http::{self, PeerOut};
use shoal::tracker::udp::{self, Announce, Request, Response};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

struct Out(PathBuf);

impl Out {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn torrents(out: &Out) {
    let tmp = std::env::temp_dir().join(format!("shoal-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("multi/sub")).unwrap();
    std::fs::write(tmp.join("single.bin"), vec![7u8; 100_000]).unwrap();
    std::fs::write(tmp.join("multi/a.txt"), b"hello\n").unwrap();
    std::fs::write(tmp.join("multi/sub/b.bin"), vec![1u8; 40_000]).unwrap();
    let base = Options {
        trackers: vec![vec!["http://127.0.0.1:6969/announce".into()]],
        web_seeds: vec![],
        piece_length: Some(16 << 10),
        private: false,
        comment: None,
        name: None,
        creation_date: None,
        created_by: Some("shoal seeds".into()),
        threads: 1,
    };
    let rich = Options {
        trackers: vec![vec!["http://127.0.0.1:6969/announce".into(), "udp://127.0.0.1:6969".into()], vec!["http://[::1]:6969/announce".into()]],
        web_seeds: vec!["http://127.0.0.1:8080/files/".into()],
        private: true,
        comment: Some("seed corpus".into()),
        creation_date: Some(1_700_000_000),
        ..base.clone()
    };
    for (name, path, opts) in [
        ("single.torrent", tmp.join("single.bin"), &base),
        ("multi.torrent", tmp.join("multi"), &base),
        ("multi-rich.torrent", tmp.join("multi"), &rich),
    ] {
        let bytes = create::create(&path, opts, &mut |_, _| {}).unwrap();
        out.put("metainfo", name, &bytes);
        out.put("bencode", name, &bytes);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

fn bencode_values(out: &Out) {
    for (i, b) in [&b"i0e"[..], b"i-42e", b"0:", b"4:spam", b"le", b"de", b"l4:spami42ee", b"d3:bar4:spam3:fooi42ee", b"d1:ad1:bl1:cee1:di9e"]
        .iter()
        .enumerate()
    {
        out.put("bencode", &format!("value-{i}"), b);
    }
}

fn wire_messages(out: &Out) {
    let hs = Handshake::new([0xAB; 20], *b"-SH0100-abcdefghijkl").encode();
    let ext = bencode::dict([("m", bencode::dict([("ut_metadata", Owned::Int(1)), ("ut_pex", Owned::Int(2))])), ("p", Owned::Int(6881)), ("v", Owned::str("shoal 0.1")), ("reqq", Owned::Int(250))]).encode();
    let msgs = vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(3),
        Message::Bitfield(vec![0xff, 0xe0]),
        Message::Request { index: 1, begin: 16384, length: 16384 },
        Message::Piece { index: 1, begin: 0, data: vec![9; 32] },
        Message::Cancel { index: 1, begin: 16384, length: 16384 },
        Message::Port(6881),
        Message::Suggest(2),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject { index: 1, begin: 0, length: 16384 },
        Message::AllowedFast(4),
        Message::Extended { id: 0, payload: ext.clone() },
        Message::Extended { id: 3, payload: b"d8:msg_typei0e5:piecei0ee".to_vec() },
    ];
    let mut stream = hs.to_vec();
    for (i, m) in msgs.iter().enumerate() {
        let mut one = hs.to_vec();
        wire::encode(m, &mut one);
        wire::encode(m, &mut stream);
        out.put("wire", &format!("msg-{i:02}"), &one);
    }
    out.put("wire", "session", &stream);
    out.put("ext_handshake", "ours", &ext);
    out.put("ext_handshake", "libtorrent-like", b"d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei2138e1:pi6881e4:reqqi500e11:upload_onlyi0e1:v17:libtorrent 2.0.8 6:yourip4:\x7f\x00\x00\x01e");
    out.put("ext_handshake", "transmission-like", b"d1:ei1e1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei5000e1:pi51413e4:reqqi512e1:v17:Transmission 4.06:yourip4:\x7f\x00\x00\x01e");
}

fn announce_request(event: Event) -> AnnounceRequest {
    AnnounceRequest { info_hash: [0x12; 20], peer_id: *b"-SH0100-abcdefghijkl", port: 6881, uploaded: 10, downloaded: 20, left: 30, event, numwant: Some(50), key: 0xdead_beef }
}

fn tracker_http(out: &Out) {
    let with = |mode: u8, b: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(b);
        v
    };
    for (i, e) in [Event::None, Event::Started, Event::Completed, Event::Stopped].into_iter().enumerate() {
        out.put("tracker_http", &format!("announce-{i}"), &with(0, http::announce_query(&announce_request(e)).as_bytes()));
    }
    out.put("tracker_http", "announce-extra", &with(0, b"info_hash=%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12&peer_id=-lt2080-aaaaaaaaaaaa&port=6881&uploaded=0&downloaded=0&left=0&compact=0&no_peer_id=1&ip=127.0.0.2&numwant=-1&key=abc"));
    out.put("tracker_http", "scrape", &with(1, http::scrape_query(&[[0x12; 20], [0x34; 20]]).as_bytes()));
    let peers = [PeerOut { addr: "127.0.0.1:6881".parse::<SocketAddr>().unwrap(), peer_id: [1; 20] }, PeerOut { addr: "[::1]:6882".parse::<SocketAddr>().unwrap(), peer_id: [2; 20] }];
    out.put("tracker_http", "answer-compact", &with(2, &http::encode_announce(1800, 180, 1, 2, &peers, true, false)));
    out.put("tracker_http", "answer-dicts", &with(2, &http::encode_announce(1800, 180, 1, 2, &peers, false, false)));
    out.put("tracker_http", "answer-failure", &with(2, &http::encode_failure("unregistered torrent")));
    let mut scrape = vec![3];
    scrape.extend_from_slice(&[0x12; 20]);
    scrape.extend_from_slice(&http::encode_scrape(&[([0x12; 20], ScrapeStats { complete: 3, incomplete: 4, downloaded: 5 })]));
    out.put("tracker_http", "answer-scrape", &scrape);
    out.put("tracker_http", "compact-peers", &with(4, &[127, 0, 0, 1, 0x1a, 0xe1, 127, 0, 0, 2, 0x1a, 0xe2]));
}

fn tracker_udp(out: &Out) {
    let ann = |event, url_data: &[u8]| {
        Request::Announce(Announce {
            connection_id: 0x0102_0304_0506_0708,
            transaction_id: 9,
            info_hash: [0x12; 20],
            peer_id: *b"-SH0100-abcdefghijkl",
            downloaded: 1,
            left: 2,
            uploaded: 3,
            event,
            ip: 0,
            key: 4,
            num_want: -1,
            port: 6881,
            url_data: url_data.to_vec(),
        })
    };
    let reqs = [
        Request::Connect { transaction_id: 1 },
        ann(Event::Started, b""),
        ann(Event::Completed, b"/announce/secret?x=1"),
        Request::Scrape { connection_id: 5, transaction_id: 6, info_hashes: vec![[0x12; 20], [0x34; 20]] },
    ];
    for (i, r) in reqs.iter().enumerate() {
        let mut b = udp::encode_request(r);
        // Odd first byte: the target swaps in a valid connection id (see tracker_udp.rs).
        b[0] |= 1;
        out.put("tracker_udp", &format!("request-{i}"), &b);
    }
    let resps = [
        (Response::Connect { transaction_id: 1, connection_id: 77 }, false),
        (Response::Announce { transaction_id: 2, interval: 1800, leechers: 1, seeders: 2, peers: vec!["127.0.0.1:6881".parse().unwrap()] }, false),
        (Response::Announce { transaction_id: 2, interval: 1800, leechers: 1, seeders: 2, peers: vec!["[::1]:6881".parse().unwrap()] }, true),
        (Response::Scrape { transaction_id: 3, stats: vec![ScrapeStats { complete: 1, incomplete: 2, downloaded: 3 }] }, false),
        (Response::Error { transaction_id: 4, message: "unregistered torrent".into() }, false),
    ];
    for (i, (r, v6)) in resps.iter().enumerate() {
        out.put("tracker_udp", &format!("response-{i}"), &udp::encode_response(r, *v6));
    }
}

fn httpd(out: &Out) {
    let q = http::announce_query(&announce_request(Event::Started));
    let reqs: Vec<(&str, Vec<u8>)> = vec![
        ("announce", format!("GET /announce?{q} HTTP/1.1\r\nHost: 127.0.0.1:6969\r\nUser-Agent: shoal/0.1\r\n\r\n").into_bytes()),
        ("announce-token", format!("GET /announce/secret?{q} HTTP/1.0\r\nHost: localhost\r\n\r\n").into_bytes()),
        ("scrape", format!("GET /scrape?{} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", http::scrape_query(&[[0x12; 20]])).into_bytes()),
        ("page", b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\n\r\n".to_vec()),
        ("api-list", b"GET /api/torrents HTTP/1.1\r\nHost: localhost\r\nX-Admin-Token: nope\r\n\r\n".to_vec()),
        ("head", b"HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("upload-length", b"POST /api/torrents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer x\r\nContent-Type: application/x-bittorrent\r\nContent-Length: 5\r\n\r\nd1:ae".to_vec()),
        ("upload-chunked", b"POST /api/torrents HTTP/1.1\r\nHost: localhost\r\nCookie: btrack_auth=x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n3;ext=1\r\nd1:\r\n2\r\nae\r\n0\r\nTrailer: x\r\n\r\n".to_vec()),
        ("pipelined", b"GET /announce HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec()),
    ];
    for (name, r) in reqs {
        out.put("httpd", name, &r);
    }
}

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into());
    let out = Out(Path::new(&dir).to_path_buf());
    torrents(&out);
    bencode_values(&out);
    wire_messages(&out);
    tracker_http(&out);
    tracker_udp(&out);
    httpd(&out);
    eprintln!("make_seeds: wrote seeds under {dir}");
}
