//! Fuzz target: peer wire messages (lib/peer/wire.rs): the handshake, then a stream of
//! length-prefixed messages decoded one after the other as a connection would.
//!
//! Checks: decode never claims more bytes than it has; a decoded message re-encodes to the
//! same bytes and decodes back to itself; a bitfield payload parses for any piece count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::peer::wire::{self, Handshake, Message, HANDSHAKE_LEN};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    if let Some(hs) = buf.get(..HANDSHAKE_LEN) {
        let hs: &[u8; HANDSHAKE_LEN] = hs.try_into().unwrap();
        if let Ok(h) = Handshake::decode(hs) {
            assert_eq!(&h.encode(), hs);
            let _ = h.supports_extensions();
            let _ = wire::client_from_peer_id(&h.peer_id);
        }
        buf = &buf[HANDSHAKE_LEN..];
    }
    loop {
        match wire::decode(buf) {
            Ok(Some((m, used))) => {
                assert!(used >= 4 && used <= buf.len(), "used {used} of {}", buf.len());
                if !matches!(m, Message::Unknown { .. }) {
                    let mut out = Vec::new();
                    wire::encode(&m, &mut out);
                    assert_eq!(out, &buf[..used], "re-encoding {m:?}");
                    assert_eq!(wire::decode(&out), Ok(Some((m.clone(), used))));
                }
                if let Message::Bitfield(b) = &m {
                    for n in [0, 1, b.len() * 8, (b.len() * 8).saturating_sub(7)] {
                        if let Some(bits) = wire::parse_bitfield(b, n) {
                            assert_eq!(bits.len(), n);
                            assert_eq!(wire::bitfield_bytes(&bits), *b);
                        }
                    }
                }
                buf = &buf[used..];
            }
            Ok(None) | Err(_) => break,
        }
    }
});
