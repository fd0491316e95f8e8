//! Fuzz target: .torrent parsing (Metainfo::parse and parse_strict, lib/metainfo.rs), then
//! everything the tools compute from a parsed torrent (piece geometry, file spans, magnet
//! link, JSON view), so a torrent that parses can never make a later step panic.
//! The properties live in fuzz/checks.rs (shared with tests/hardening.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::metainfo(data));
