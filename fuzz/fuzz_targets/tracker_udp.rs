//! Fuzz target: the UDP tracker protocol (BEP 15, lib/tracker/udp.rs), both sides.
//! - the input as a request packet: `parse_request`, then btrack's `udp_packet` (first byte
//!   odd: the packet's connection id is replaced by a valid one from a connect exchange, so
//!   announces and scrapes get past the connection check);
//! - the input as a response packet (v4 and v6): `parse_response`, which the client in
//!   lib/tracker/client.rs applies to every datagram; a parsed response re-encodes to the
//!   same bytes (a connect answer: its first 16).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::tracker::server::{Config, Tracker};
use shoal::tracker::udp::{self, Request, Response};
use std::net::{Ipv4Addr, SocketAddr};

fuzz_target!(|data: &[u8]| {
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
});
