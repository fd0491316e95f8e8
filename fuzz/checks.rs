//! The properties each fuzz target checks, as plain functions over bytes: shared by the
//! libFuzzer targets in fuzz_targets/ and by tests/hardening.rs, which replays the seed
//! corpora (fuzz/seeds/) and every input the fuzzer ever crashed on (fuzz/regressions/)
//! through them in the ordinary `cargo test`. Each function panics when a property fails.
#![allow(dead_code)]

use shoal::bencode;
use shoal::metainfo::Metainfo;
use shoal::peer::wire::{self, Handshake, Message, HANDSHAKE_LEN};
use shoal::tracker::http::{self, ResponseError};
use shoal::tracker::server::{Config, Tracker};
use shoal::tracker::udp::{self, Request, Response};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Fuzz target: the bencode decoder (lib/bencode.rs), strict and lenient.
///
/// Beyond "no panic": a strictly decoded value re-encodes to exactly the input (the strict
/// decoder accepts only canonical bencode), the lenient decoder accepts everything the
/// strict one does with the same value and no warnings, and a prefix decode agrees with both.
pub fn bencode(data: &[u8]) {
    let strict = bencode::decode(data);
    let lenient = bencode::decode_lenient(data);
    if let Ok(v) = &strict {
        assert_eq!(v.to_owned().encode(), data, "strict decode then encode is not the identity");
        let l = lenient.as_ref().expect("lenient refused what strict accepted");
        assert_eq!(&l.value, v);
        assert!(l.warnings.is_empty(), "warnings on canonical input: {:?}", l.warnings);
        let _ = bencode::to_json(v, &[b"pieces", b"peers"]);
    }
    if let Ok(l) = &lenient {
        let _ = bencode::to_json(&l.value, &[]);
        let _ = l.value.to_owned().encode();
    }
    if let Ok((v, used)) = bencode::decode_prefix(data) {
        assert!(used <= data.len());
        assert_eq!(v.to_owned().encode(), &data[..used]);
    }
    // Errors carry an offset inside the input (or just past its end).
    if let Err(e) = &strict {
        assert!(e.offset <= data.len(), "error offset {} past input of {}", e.offset, data.len());
        let _ = e.to_string();
    }
}

fn exercise(m: &Metainfo) {
    let _ = m.magnet();
    let _ = m.trackers();
    let n = m.info.num_pieces();
    // Bounded: a few pieces at each end and a few files, whatever the torrent claims.
    let pieces: Vec<usize> = (0..n.min(4)).chain(n.saturating_sub(4)..n).collect();
    for i in pieces {
        let _ = m.info.piece_size(i);
        let _ = m.info.piece_spans(i);
        let _ = m.info.piece_files(i);
    }
    for f in 0..m.info.files.len().min(8) {
        let _ = m.info.file_pieces(f);
        let _ = m.info.file_path(std::path::Path::new("/x"), f);
        let _ = m.info.files[f].display_path(&m.info.name);
    }
    let _ = m.info.byte_spans(0, 1);
}

/// Fuzz target: .torrent parsing (Metainfo::parse and parse_strict, lib/metainfo.rs), then
/// everything the tools compute from a parsed torrent (piece geometry, file spans, magnet
/// link, JSON view), so a torrent that parses can never make a later step panic.
pub fn metainfo(data: &[u8]) {
    let lenient = Metainfo::parse(data);
    let strict = Metainfo::parse_strict(data);
    if let Ok(m) = &strict {
        assert!(lenient.is_ok(), "parse refused what parse_strict accepted");
        exercise(m);
    }
    match lenient {
        Ok(m) => exercise(&m),
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
}

/// Fuzz target: peer wire messages (lib/peer/wire.rs): the handshake, then a stream of
/// length-prefixed messages decoded one after the other as a connection would.
///
/// Checks: decode never claims more bytes than it has; a decoded message re-encodes to the
/// same bytes and decodes back to itself; a bitfield payload parses for any piece count.
pub fn wire(data: &[u8]) {
    let mut buf = data;
    if let Some(hs) = buf.get(..HANDSHAKE_LEN) {
        let hs: &[u8; HANDSHAKE_LEN] = hs.try_into().unwrap();
        if let Ok(h) = Handshake::decode(hs) {
            assert_eq!(&h.encode(), hs);
            let _ = h.supports_extensions();
            let _ = wire::client_from_peer_id(&h.peer_id);
        }
        buf = &buf[HANDSHAKE_LEN..];
    }
    while let Ok(Some((m, used))) = wire::decode(buf) {
        assert!(used >= 4 && used <= buf.len(), "used {used} of {}", buf.len());
        if !matches!(m, Message::Unknown { .. }) {
            let mut out = Vec::new();
            wire::encode(&m, &mut out);
            assert_eq!(out, &buf[..used], "re-encoding {m:?}");
            assert_eq!(wire::decode(&out), Ok(Some((m.clone(), used))));
        }
        if let Message::Bitfield(b) = &m {
            for n in [0, 1, b.len() * 8, (b.len() * 8).saturating_sub(7)] {
                if let Some(bits) = wire::parse_bitfield(b, n) {
                    assert_eq!(bits.len(), n);
                    assert_eq!(wire::bitfield_bytes(&bits), *b);
                }
            }
        }
        buf = &buf[used..];
    }
    inbound_agrees(if data.len() >= HANDSHAKE_LEN { &data[HANDSHAKE_LEN..] } else { data });
}

/// The bytes through a reader's receive side (lib/peer/inbound.rs), in reads of sizes picked
/// by the first byte: the same messages as [`wire::decode`] one after the other, and the
/// same error where it stops with one.
fn inbound_agrees(stream: &[u8]) {
    use shoal::peer::inbound::Inbound;
    use std::io::{IoSliceMut, Read};
    let mut want = Vec::new();
    let mut rest = stream;
    let end = loop {
        match wire::decode(rest) {
            Ok(Some((m, used))) => {
                want.push(m);
                rest = &rest[used..];
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    const SIZES: [&[usize]; 4] = [&[1], &[16397, 13, 5], &[65536], &[7, 16384, 29, 100_000, 2]];
    struct Reads<'a>(&'a [u8], &'static [usize], usize);
    impl Read for Reads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.read_vectored(&mut [IoSliceMut::new(buf)])
        }
        fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> std::io::Result<usize> {
            let mut n = self.1[self.2 % self.1.len()];
            self.2 += 1;
            let mut done = 0;
            for b in bufs.iter_mut() {
                let k = n.min(b.len()).min(self.0.len());
                b[..k].copy_from_slice(&self.0[..k]);
                self.0 = &self.0[k..];
                (done, n) = (done + k, n - k);
            }
            Ok(done)
        }
    }
    let sizes = SIZES[stream.first().map_or(0, |b| *b as usize % SIZES.len())];
    let mut src = Reads(stream, sizes, 0);
    let mut inbound = Inbound::new();
    let mut got = Vec::new();
    let got_end = 'read: loop {
        loop {
            match inbound.next() {
                Ok(Some(m)) => got.push(m),
                Ok(None) => break,
                Err(e) => break 'read Some(e),
            }
        }
        if inbound.fill(&mut src).expect("reads from memory do not fail") == 0 {
            break None;
        }
    };
    assert_eq!(got.len(), want.len(), "messages received");
    assert!(got == want, "messages differ");
    assert_eq!(got_end, end);
}

fn read_handshake(payload: &[u8]) {
    let Ok(v) = shoal::bencode::decode(payload) else { return };
    let Some(d) = v.as_dict() else { return };
    if let Some(name) = d.get("v").and_then(|v| v.as_str()) {
        let short: String = name.chars().take(40).collect();
        let shown = shoal::sanitize::printable(&short);
        assert!(!shown.contains(['\n', '\r', '\x1b']), "control characters survive: {shown:?}");
    }
    if let Some(port) = d.get("p").and_then(|v| v.as_int()) {
        let _ok = (1..=65535).contains(&port);
    }
    if let Some(m) = d.get("m").and_then(|v| v.as_dict()) {
        for key in ["ut_metadata", "ut_pex", "lt_donthave"] {
            let _ = m.get(key).and_then(|v| v.as_int());
        }
    }
}

/// Fuzz target: the BEP 10 extension handshake payload, as the swarm reads it on
/// `Message::Extended { id: 0 }` (lib/swarm/mod.rs): a strict bencode decode of the payload,
/// then the `v` (client name, made printable with lib/sanitize) and `p` (listen port) keys.
/// The input is the payload of an extended message framed on the wire, so the wire decoder
/// runs first exactly as on a connection.
pub fn ext_handshake(data: &[u8]) {
    let mut framed = Vec::with_capacity(data.len() + 6);
    framed.extend_from_slice(&(data.len() as u32 + 2).to_be_bytes());
    framed.extend_from_slice(&[20, 0]);
    framed.extend_from_slice(data);
    match wire::decode(&framed) {
        Ok(Some((Message::Extended { id: 0, payload }, _))) => {
            assert_eq!(payload, data);
            read_handshake(&payload);
        }
        Ok(other) => panic!("extended message framed by hand decoded as {other:?}"),
        Err(_) => assert!(data.len() + 2 > wire::MAX_MESSAGE),
    }
}

fn tracker() -> Tracker {
    Tracker::new(Config { open: true, http_rate_limit: 0, udp_rate_limit: 0, ..Config::default() })
}

/// Every body the tracker sends decodes with the client's decoder, or is a failure reason.
fn assert_readable(body: &[u8]) {
    match http::decode_announce_response(body) {
        Ok(_) | Err(ResponseError::Failure(_)) => {}
        Err(e) => panic!("btrack answered a body its own client cannot read: {e:?}: {:?}", String::from_utf8_lossy(body)),
    }
}

/// Fuzz target: the HTTP tracker protocol (lib/tracker/http.rs, lib/tracker/server.rs), both
/// sides. The first input byte picks what the rest is:
/// - 0: an announce query as btrack receives it (`parse_announce`, then the open tracker's
///   `http_announce`, whose answer our client decoder must read back);
/// - 1: a scrape query (`parse_scrape`, then `http_scrape`, answer decoded back);
/// - 2: an announce response body as the client receives it (`decode_announce_response`,
///   the decoder lib/tracker/client.rs applies to every HTTP answer);
/// - 3: a scrape response body (`decode_scrape_response`), the info-hash being its first
///   20 bytes;
/// - other: a percent-encoded query value and a compact peer list (`percent_decode`,
///   `decode_compact` v4 and v6).
pub fn tracker_http(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        0 => {
            let parsed = http::parse_announce(rest);
            let t = tracker();
            let remote = if rest.len() % 2 == 0 { IpAddr::V4(Ipv4Addr::LOCALHOST) } else { IpAddr::V6(Ipv6Addr::LOCALHOST) };
            // Twice: the second announce finds the first peer in the swarm.
            for _ in 0..2 {
                let body = t.http_announce(None, rest, remote);
                assert_readable(&body);
                if parsed.is_ok() && !matches!(parsed, Ok(ref p) if p.event == shoal::tracker::client::Event::Stopped) {
                    // A query we parse is answered with peers or a store refusal, never a parse failure.
                    if let Err(ResponseError::Failure(r)) = http::decode_announce_response(&body) {
                        assert!(!r.starts_with("missing") && !r.starts_with("invalid"), "parsed query refused: {r}");
                    }
                }
            }
        }
        1 => {
            let parsed = http::parse_scrape(rest);
            let t = tracker();
            let body = t.http_scrape(None, rest);
            if let Ok(hashes) = parsed {
                if let Some(h) = hashes.first() {
                    let r = http::decode_scrape_response(&body, h);
                    assert!(r.is_ok(), "scrape answer unreadable: {r:?}");
                }
            }
        }
        2 => {
            if let Ok(r) = http::decode_announce_response(rest) {
                assert!(r.interval.as_secs() >= 1);
            }
        }
        3 => {
            if rest.len() >= 20 {
                let ih: [u8; 20] = rest[..20].try_into().unwrap();
                let _ = http::decode_scrape_response(&rest[20..], &ih);
            }
        }
        _ => {
            let _ = http::percent_decode(rest);
            for v6 in [false, true] {
                if let Ok(peers) = http::decode_compact(rest, v6) {
                    assert_eq!(peers.len() * if v6 { 18 } else { 6 }, rest.len());
                }
            }
        }
    }
}

/// Fuzz target: the UDP tracker protocol (BEP 15, lib/tracker/udp.rs), both sides.
/// - the input as a request packet: `parse_request`, then btrack's `udp_packet` (first byte
///   odd: the packet's connection id is replaced by a valid one from a connect exchange, so
///   announces and scrapes get past the connection check);
/// - the input as a response packet (v4 and v6): `parse_response`, which the client in
///   lib/tracker/client.rs applies to every datagram; a parsed response re-encodes to the
///   same bytes (a connect answer: its first 16).
pub fn tracker_udp(data: &[u8]) {
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, 6881));
    // Server side.
    let _ = udp::parse_request(data);
    let _ = udp::transaction_id(data);
    let t = Tracker::new(Config { open: true, http_rate_limit: 0, udp_rate_limit: 0, ..Config::default() });
    let mut pkt = data.to_vec();
    if data.first().is_some_and(|b| b & 1 == 1) && pkt.len() >= 16 {
        let connect = udp::encode_request(&Request::Connect { transaction_id: 7 });
        let answer = t.udp_packet(&connect, from).expect("no answer to a connect");
        match udp::parse_response(&answer, false) {
            Ok(Response::Connect { connection_id, .. }) => pkt[..8].copy_from_slice(&connection_id.to_be_bytes()),
            other => panic!("connect answered with {other:?}"),
        }
    }
    for _ in 0..2 {
        if let Some(answer) = t.udp_packet(&pkt, from) {
            assert!(udp::parse_response(&answer, false).is_ok(), "btrack sent a packet its client cannot parse");
        }
    }
    // Client side.
    let _ = udp::transaction_id_of_response(data);
    for v6 in [false, true] {
        if let Ok(r) = udp::parse_response(data, v6) {
            // Error messages are decoded lossily, so only exact UTF-8 re-encodes byte for byte;
            // a connect answer may carry bytes after its 16 (BEP 15: ignore what follows).
            let again = udp::encode_response(&r, v6);
            if matches!(r, Response::Connect { .. }) {
                assert!(data.starts_with(&again), "re-encoding {r:?}");
            } else if !matches!(r, Response::Error { .. }) || std::str::from_utf8(&data[8..]).is_ok() {
                assert_eq!(again, data, "re-encoding {r:?}");
            }
        }
    }
}