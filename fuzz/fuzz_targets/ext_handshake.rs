//! Fuzz target: the BEP 10 extension handshake payload, as the swarm reads it on
//! `Message::Extended { id: 0 }` (lib/swarm/mod.rs): a strict bencode decode of the payload,
//! then the `v` (client name, made printable with lib/sanitize) and `p` (listen port) keys.
//! The input is the payload of an extended message framed on the wire, so the wire decoder
//! runs first exactly as on a connection.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::peer::wire::{self, Message};

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

fuzz_target!(|data: &[u8]| {
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
});
