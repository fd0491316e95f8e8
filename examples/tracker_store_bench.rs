//! btrack's UDP announce path without sockets: datagrams as `tracker_udp_load` sends them
//! (1 000 torrents x 1 000 peer ids, numwant 50) handed to `Tracker::udp_packet_into`, which
//! parses, checks the connection id, updates the in-memory store, picks and encodes. For
//! measuring the tracker's user-space work per announce alone.
//!
//! usage: tracker_store_bench [ANNOUNCES_PER_THREAD] [THREADS] [TORRENTS]
//!
//! Fills the store first (every peer of every torrent announces once), then each thread runs
//! its announces; prints nanoseconds per announce (wall time per thread).

use shoal::tracker::client::Event;
use shoal::tracker::server::{Config, Tracker};
use shoal::tracker::udp::{self, Announce, Request, Response};
use std::net::SocketAddr;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(2_000_000);
    let threads: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(1);
    let torrents: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(1000);
    let t = Tracker::new(Config { open: true, udp_rate_limit: 0, ..Config::default() });
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let cid = match udp::parse_response(&t.udp_packet(&udp::encode_request(&Request::Connect { transaction_id: 1 }), from).unwrap(), false) {
        Ok(Response::Connect { connection_id, .. }) => connection_id,
        r => panic!("connect: {r:?}"),
    };
    let hashes: Vec<[u8; 20]> = (0..torrents as u32).map(|i| shoal::hashing::sha1(format!("shoal-bench-{i}").as_bytes())).collect();
    let packet = |torrent: usize, peer: u64, tid: u32| -> Vec<u8> {
        let mut id = *b"-UL0001-000000000000";
        let mut d = peer;
        for i in (16..20).rev() {
            id[i] = b'0' + (d % 10) as u8;
            d /= 10;
        }
        udp::encode_request(&Request::Announce(Announce {
            connection_id: cid,
            transaction_id: tid,
            info_hash: hashes[torrent],
            peer_id: id,
            downloaded: 0,
            left: if peer % 2 == 0 { 0 } else { 1000 },
            uploaded: 0,
            event: Event::None,
            ip: 0,
            key: peer as u32,
            num_want: 50,
            port: 10000 + peer as u16,
            url_data: Vec::new(),
        }))
    };
    let mut out = Vec::with_capacity(1500);
    for torrent in 0..torrents {
        for peer in 0..1000 {
            assert!(t.udp_packet_into(&packet(torrent, peer, 0), from, &mut out));
        }
    }
    let per: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|k| {
                let (t, packet) = (&t, &packet);
                s.spawn(move || {
                    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ (k as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    // Packets made up front, so that only the tracker's work is timed.
                    let pkts: Vec<Vec<u8>> = (0..65_536u32)
                        .map(|i| {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            packet((rng % torrents as u64) as usize, (rng >> 20) % 1000, i)
                        })
                        .collect();
                    let mut out = Vec::with_capacity(1500);
                    let mut bytes = 0usize;
                    let start = Instant::now();
                    for i in 0..n as usize {
                        assert!(t.udp_packet_into(&pkts[i % pkts.len()], from, &mut out));
                        bytes += out.len();
                    }
                    let ns = start.elapsed().as_nanos() as f64 / n as f64;
                    assert!(bytes >= n as usize * 20);
                    ns
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("{threads} thread(s), {n} announces each: {:.0} ns per announce ({per:.0?})", per.iter().sum::<f64>() / per.len() as f64);
}
