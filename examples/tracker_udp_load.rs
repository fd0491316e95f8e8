//! UDP tracker load generator for scripts/bench-tracker.sh: BEP 15 announces varying the
//! info-hash (over a list of torrents), the peer id and the port, against any UDP tracker.
//!
//! usage: tracker_udp_load HOST:PORT SECONDS HASHES_FILE [THREADS] [WINDOW] [SOCKETS]
//!
//! Honest counting: each thread keeps WINDOW announces in flight over SOCKETS sockets of
//! its own (default 1; each socket is a source port, as a tracker sees many clients); only
//! answers that are announce responses (action 1, a whole number of 6-byte peers) with a
//! transaction id we sent and have not seen answered count; requests unanswered for a
//! second are counted as lost and replaced. Prints one JSON line
//! `{"answered": N, "lost": N, "errors": N, "seconds": S, "per_second": R}`.
//!
//! Cheap on purpose, so that on a small machine the tracker, not the generator, is measured:
//! requests go out in batches (`sendmmsg`) and answers come in batches (`recvmmsg`), a
//! request is a template with a few fields patched, and answers are checked in place.
//!
//! The generator's threads run under `SCHED_BATCH` (unless `UDPLOAD_NO_BATCH` is set): an
//! answer that wakes a generator thread then does not preempt the tracker thread that sent
//! it, in the middle of its `sendmmsg`. Without it, on a machine where tracker and generator
//! share the cores, the generator woke and preempted the tracker for nearly every answer
//! (about 0.2 involuntary switches per announce for a tracker with a thread per core), each
//! side handled a few datagrams per switch, and switching cost both more than the work. Real
//! clients are on other machines and never take the tracker's cores; the policy only keeps the
//! generator from interrupting whatever it measures, and it is the same for every tracker. It
//! changes nothing in what is sent or counted.

use shoal::tracker::client::Event;
use shoal::tracker::udp::{self, Announce, Request, Response};
use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Most packets handed to one `sendmmsg` / `recvmmsg`.
const BATCH: usize = 64;

fn connect(sock: &UdpSocket) -> u64 {
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
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

/// Linux's UDP generic segmentation offload (`UDP_SEGMENT`, in `<linux/udp.h>`).
const UDP_SEGMENT: libc::c_int = 103;
/// Most datagrams in one segmentation-offload send.
const GSO_MAX: usize = 64;

/// Asks the kernel to cut every send on `sock` into 98-byte datagrams (one system call and
/// one trip down the stack for a whole batch); false where that is not available.
fn enable_gso(sock: &UdpSocket) -> bool {
    let size: libc::c_int = 98;
    unsafe { libc::setsockopt(sock.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT, (&size as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) == 0 }
}

/// Sends `pkts` on a connected socket, all of them unless the socket fails; answers how
/// many went out. With `gso`, up to [`GSO_MAX`] go in one `send` the kernel cuts up.
fn send_batch(fd: i32, pkts: &mut [[u8; 98]], gso: bool) -> usize {
    if gso {
        let mut sent = 0;
        for chunk in pkts.chunks(GSO_MAX) {
            let n = unsafe { libc::send(fd, chunk.as_ptr().cast(), chunk.len() * 98, 0) };
            if n < 0 {
                return sent;
            }
            sent += chunk.len();
        }
        return sent;
    }
    let mut iov: Vec<libc::iovec> = pkts.iter_mut().map(|p| libc::iovec { iov_base: p.as_mut_ptr().cast(), iov_len: p.len() }).collect();
    let mut hdrs = mmsg_headers(&mut iov);
    let mut sent = 0;
    while sent < hdrs.len() {
        let n = unsafe { libc::sendmmsg(fd, hdrs[sent..].as_mut_ptr(), (hdrs.len() - sent) as u32, 0) };
        if n <= 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // Full socket buffer or a refused port: these requests will count as lost.
            break;
        }
        sent += n as usize;
    }
    sent
}

struct Flow {
    sock: UdpSocket,
    gso: bool,
    cid: u64,
    inflight: HashMap<u32, Instant>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: tracker_udp_load HOST:PORT SECONDS HASHES_FILE [THREADS] [WINDOW] [SOCKETS]");
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
    let window: usize = args.get(5).map(|s| s.parse().unwrap()).unwrap_or(32).max(1);
    let sockets: usize = args.get(6).map(|s| s.parse().unwrap()).unwrap_or(1).clamp(1, window);
    // One request with the fixed fields; each send patches the varying ones in place.
    let template: [u8; 98] = udp::encode_request(&Request::Announce(Announce {
        connection_id: 0,
        transaction_id: 0,
        info_hash: [0; 20],
        peer_id: *b"-UL0001-000000000000",
        downloaded: 0,
        left: 0,
        uploaded: 0,
        event: Event::None,
        ip: 0,
        key: 0,
        num_want: 50,
        port: 0,
        url_data: Vec::new(),
    }))
    .try_into()
    .unwrap();
    if std::env::var_os("UDPLOAD_NO_BATCH").is_none() {
        // Threads spawned below inherit the policy. Failing is harmless (the run is then as
        // with UDPLOAD_NO_BATCH).
        let param = libc::sched_param { sched_priority: 0 };
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            eprintln!("tracker_udp_load: SCHED_BATCH: {}", std::io::Error::last_os_error());
        }
    }
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let results: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let hashes = &hashes;
                s.spawn(move || {
                    let mut flows: Vec<Flow> = (0..sockets)
                        .map(|_| {
                            let sock = UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
                            sock.connect(target).unwrap();
                            let cid = connect(&sock);
                            sock.set_nonblocking(true).unwrap();
                            let gso = std::env::var_os("UDPLOAD_NO_GSO").is_none() && enable_gso(&sock);
                            Flow { sock, gso, cid, inflight: HashMap::with_capacity(window * 2) }
                        })
                        .collect();
                    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    let mut next = || {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng
                    };
                    let mut tid: u32 = (t as u32) << 24;
                    // Fills `f` up to its share of the window, in one batch.
                    let mut refill = |f: &mut Flow, share: usize| {
                        let mut pkts: Vec<[u8; 98]> = Vec::with_capacity(share);
                        let mut tids = Vec::with_capacity(share);
                        while f.inflight.len() + pkts.len() < share {
                            tid = tid.wrapping_add(1);
                            let r = next();
                            let torrent = (r % hashes.len() as u64) as usize;
                            let peer = (r >> 20) % 1000;
                            let mut p = template;
                            p[0..8].copy_from_slice(&f.cid.to_be_bytes());
                            p[12..16].copy_from_slice(&tid.to_be_bytes());
                            p[16..36].copy_from_slice(&hashes[torrent]);
                            let mut digits = peer;
                            for i in (52..56).rev() {
                                p[i] = b'0' + (digits % 10) as u8;
                                digits /= 10;
                            }
                            p[64..72].copy_from_slice(&(if peer % 2 == 0 { 0u64 } else { 1000 }).to_be_bytes());
                            p[88..92].copy_from_slice(&(peer as u32).to_be_bytes());
                            p[96..98].copy_from_slice(&(10000 + peer as u16).to_be_bytes());
                            pkts.push(p);
                            tids.push(tid);
                        }
                        // Requests that could not be sent stay in flight as far as counting
                        // goes: they are counted lost after a second, as dropped ones are.
                        for chunk in pkts.chunks_mut(BATCH) {
                            if send_batch(f.sock.as_raw_fd(), chunk, f.gso) < chunk.len() {
                                break;
                            }
                        }
                        let now = Instant::now();
                        for id in tids {
                            f.inflight.insert(id, now);
                        }
                    };
                    let shares: Vec<usize> = (0..sockets).map(|i| window / sockets + usize::from(i < window % sockets)).collect();
                    for (f, &share) in flows.iter_mut().zip(&shares) {
                        refill(f, share);
                    }
                    let (mut answered, mut lost, mut errors) = (0u64, 0u64, 0u64);
                    let mut bufs = vec![[0u8; 2048]; BATCH];
                    let mut iov: Vec<libc::iovec> = bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
                    let mut hdrs = mmsg_headers(&mut iov);
                    let mut pfds: Vec<libc::pollfd> = flows.iter().map(|f| libc::pollfd { fd: f.sock.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
                    let mut last_sweep = Instant::now();
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        // Take what has arrived on every socket; wait only when nothing has.
                        let mut got = 0;
                        for (k, f) in flows.iter_mut().enumerate() {
                            let n = unsafe { libc::recvmmsg(f.sock.as_raw_fd(), hdrs.as_mut_ptr(), BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
                            if n <= 0 {
                                continue;
                            }
                            got += n;
                            for (h, b) in hdrs.iter().zip(&bufs).take(n as usize) {
                                let b = &b[..h.msg_len as usize];
                                if b.len() < 8 {
                                    continue;
                                }
                                let action = u32::from_be_bytes(b[0..4].try_into().unwrap());
                                let id = u32::from_be_bytes(b[4..8].try_into().unwrap());
                                let ok = match action {
                                    udp::ACTION_ANNOUNCE => b.len() >= 20 && (b.len() - 20) % 6 == 0,
                                    udp::ACTION_ERROR => false,
                                    _ => continue,
                                };
                                if f.inflight.remove(&id).is_some() {
                                    if ok {
                                        answered += 1;
                                    } else {
                                        errors += 1;
                                    }
                                }
                            }
                            refill(f, shares[k]);
                        }
                        if got == 0 {
                            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 100) };
                        }
                        // Replace requests unanswered for a second.
                        if now.duration_since(last_sweep) > Duration::from_millis(100) {
                            last_sweep = now;
                            for (k, f) in flows.iter_mut().enumerate() {
                                let before = f.inflight.len();
                                f.inflight.retain(|_, t| now.duration_since(*t) <= Duration::from_secs(1));
                                lost += (before - f.inflight.len()) as u64;
                                refill(f, shares[k]);
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

/// One `mmsghdr` per buffer of `iov` (one iovec each), for `sendmmsg`/`recvmmsg`; the headers
/// point into `iov`, which must outlive them.
fn mmsg_headers(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = v;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}
