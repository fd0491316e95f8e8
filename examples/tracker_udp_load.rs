//! UDP tracker load generator for scripts/bench-tracker.sh: BEP 15 announces varying the
//! info-hash (over a list of torrents), the peer id and the port, against any UDP tracker.
//!
//! usage: tracker_udp_load HOST:PORT SECONDS HASHES_FILE [THREADS] [WINDOW]
//!
//! Honest counting: each thread owns one socket with WINDOW announces in flight; only
//! answers that parse as announce responses with a transaction id we sent count; requests
//! unanswered for a second are counted as lost and replaced. Prints one JSON line
//! `{"answered": N, "lost": N, "errors": N, "seconds": S, "per_second": R}`.

use shoal::tracker::client::Event;
use shoal::tracker::udp::{self, Announce, Request, Response};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

fn connect(sock: &UdpSocket) -> u64 {
    for attempt in 0..10u32 {
        sock.send(&udp::encode_request(&Request::Connect { transaction_id: attempt })).unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = sock.recv(&mut buf) {
            if let Ok(Response::Connect { connection_id, .. }) = udp::parse_response(&buf[..n], false) {
                return connection_id;
            }
        }
    }
    panic!("tracker does not answer connect requests");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: tracker_udp_load HOST:PORT SECONDS HASHES_FILE [THREADS] [WINDOW]");
        std::process::exit(2);
    }
    let target: SocketAddr = args[1].to_socket_addrs().unwrap().next().unwrap();
    let secs: f64 = args[2].parse().unwrap();
    let hashes: Vec<[u8; 20]> = std::fs::read_to_string(&args[3])
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| shoal::metainfo::InfoHash::from_hex(l.trim()).expect("hex info-hash").0)
        .collect();
    let threads: usize = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(2);
    let window: usize = args.get(5).map(|s| s.parse().unwrap()).unwrap_or(32);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let results: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let hashes = &hashes;
                s.spawn(move || {
                    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                    sock.connect(target).unwrap();
                    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
                    let cid = connect(&sock);
                    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    let mut next = || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    let mut tid: u32 = (t as u32) << 24;
                    let mut inflight: HashMap<u32, Instant> = HashMap::new();
                    let (mut answered, mut lost, mut errors) = (0u64, 0u64, 0u64);
                    let mut send = |inflight: &mut HashMap<u32, Instant>, tid: &mut u32| {
                        *tid = tid.wrapping_add(1);
                        let r = next();
                        let torrent = (r % hashes.len() as u64) as usize;
                        let peer = (r >> 20) % 1000;
                        let mut peer_id = *b"-UL0001-000000000000";
                        peer_id[8..20].copy_from_slice(format!("{peer:012}").as_bytes());
                        let pkt = udp::encode_request(&Request::Announce(Announce {
                            connection_id: cid,
                            transaction_id: *tid,
                            info_hash: hashes[torrent],
                            peer_id,
                            downloaded: 0,
                            left: if peer % 2 == 0 { 0 } else { 1000 },
                            uploaded: 0,
                            event: Event::None,
                            ip: 0,
                            key: peer as u32,
                            num_want: 50,
                            port: 10000 + peer as u16,
                            url_data: Vec::new(),
                        }));
                        let _ = sock.send(&pkt);
                        inflight.insert(*tid, Instant::now());
                    };
                    for _ in 0..window {
                        send(&mut inflight, &mut tid);
                    }
                    let mut buf = [0u8; 2048];
                    while Instant::now() < end {
                        if let Ok(n) = sock.recv(&mut buf) {
                            match udp::parse_response(&buf[..n], false) {
                                Ok(Response::Announce { transaction_id, .. }) if inflight.remove(&transaction_id).is_some() => {
                                    answered += 1;
                                    send(&mut inflight, &mut tid);
                                }
                                Ok(Response::Error { transaction_id, .. }) if inflight.remove(&transaction_id).is_some() => {
                                    errors += 1;
                                    send(&mut inflight, &mut tid);
                                }
                                _ => {}
                            }
                        }
                        // Replace requests unanswered for a second.
                        if answered % 1024 == 0 || inflight.len() < window {
                            let now = Instant::now();
                            let stale: Vec<u32> = inflight.iter().filter(|(_, t)| now - **t > Duration::from_secs(1)).map(|(k, _)| *k).collect();
                            for k in stale {
                                inflight.remove(&k);
                                lost += 1;
                            }
                            while inflight.len() < window {
                                send(&mut inflight, &mut tid);
                            }
                        }
                    }
                    (answered, lost, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let answered: u64 = results.iter().map(|r| r.0).sum();
    let lost: u64 = results.iter().map(|r| r.1).sum();
    let errors: u64 = results.iter().map(|r| r.2).sum();
    println!(
        "{{\"answered\": {answered}, \"lost\": {lost}, \"errors\": {errors}, \"seconds\": {secs:.2}, \"per_second\": {:.0}}}",
        answered as f64 / secs
    );
}
