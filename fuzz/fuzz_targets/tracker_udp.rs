//! Fuzz target: the UDP tracker protocol (BEP 15, lib/tracker/udp.rs), both sides.
//! - the input as a request packet: `parse_request`, then btrack's `udp_packet` (first byte
//!   odd: the packet's connection id is replaced by a valid one from a connect exchange, so
//!   announces and scrapes get past the connection check);
//! - the input as a response packet (v4 and v6): `parse_response`, which the client in
//!   lib/tracker/client.rs applies to every datagram; a parsed response re-encodes to the
//!   same bytes (a connect answer: its first 16).
//! The properties live in fuzz/checks.rs (shared with tests/hardening.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tracker_udp(data));
