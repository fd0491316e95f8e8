//! Fuzz target: the bencode decoder (lib/bencode.rs), strict and lenient.
//!
//! Beyond "no panic": a strictly decoded value re-encodes to exactly the input (the strict
//! decoder accepts only canonical bencode), the lenient decoder accepts everything the
//! strict one does with the same value and no warnings, and a prefix decode agrees with both.
//! The properties live in fuzz/checks.rs (shared with tests/hardening.rs).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::bencode(data));
