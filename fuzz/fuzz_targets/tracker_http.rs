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
//! The properties live in fuzz/checks.rs (shared with tests/hardening.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tracker_http(data));
