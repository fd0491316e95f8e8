//! Fuzz target: the HTTP tracker protocol (lib/tracker/http.rs, lib/tracker/server.rs), both
//! sides. The first input byte picks what the rest is:
//! - 0: an announce query as btrack receives it (`parse_announce`, then the open tracker's
//!   `http_announce`, whose answer our client decoder must read back);
//! - 1: a scrape query (`parse_scrape`, then `http_scrape`, answer decoded back);
//! - 2: an announce response body as the client receives it (`decode_announce_response`,
//!   the decoder lib/tracker/client.rs applies to every HTTP answer);
//! - 3: a scrape response body (`decode_scrape_response`), the info-hash being its first
//!   20 bytes;
//! - other: a percent-encoded query value and a compact peer list (`percent_decode`,
//!   `decode_compact` v4 and v6).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::tracker::http::{self, ResponseError};
use shoal::tracker::server::{Config, Tracker};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

fuzz_target!(|data: &[u8]| {
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
});
