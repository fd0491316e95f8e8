//! Fuzz target: the BEP 10 extension handshake payload, as the swarm reads it on
//! `Message::Extended { id: 0 }` (lib/swarm/mod.rs): a strict bencode decode of the payload,
//! then the `v` (client name, made printable with lib/sanitize) and `p` (listen port) keys.
//! The input is the payload of an extended message framed on the wire, so the wire decoder
//! runs first exactly as on a connection.
//! The properties live in fuzz/checks.rs (shared with tests/hardening.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ext_handshake(data));
