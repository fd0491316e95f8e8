//! Fuzz target: the bencode decoder (lib/bencode.rs), strict and lenient.
//!
//! Beyond "no panic": a strictly decoded value re-encodes to exactly the input (the strict
//! decoder accepts only canonical bencode), the lenient decoder accepts everything the
//! strict one does with the same value and no warnings, and a prefix decode agrees with both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::bencode;

fuzz_target!(|data: &[u8]| {
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
});
