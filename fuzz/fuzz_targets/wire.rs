//! Fuzz target: peer wire messages (lib/peer/wire.rs): the handshake, then a stream of
//! length-prefixed messages decoded one after the other as a connection would.
//!
//! Checks: decode never claims more bytes than it has; a decoded message re-encodes to the
//! same bytes and decodes back to itself; a bitfield payload parses for any piece count.
//! The properties live in fuzz/checks.rs (shared with tests/hardening.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::wire(data));
