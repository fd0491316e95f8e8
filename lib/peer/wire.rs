//! Peer wire messages (BEP 3), with the Fast extension's messages (BEP 6) and the
//! extension protocol envelope (BEP 10), as pure functions over bytes.
//!
//! [`decode`] answers `Ok(None)` when the buffer does not yet hold a whole message and
//! never allocates more than the message it has in hand: the 4-byte length prefix is checked
//! against [`MAX_MESSAGE`] before anything else, so a peer claiming a 4 GB message is
//! refused without reading it. [`encode`] appends to a caller's buffer.

use std::fmt;

/// Largest message accepted: a 16 KiB block plus headroom, or a bitfield for 2^20 pieces.
pub const MAX_MESSAGE: usize = 1 << 18;
/// Standard request size.
pub const BLOCK: u32 = 16 * 1024;
/// Largest block length we serve or accept.
pub const MAX_BLOCK: u32 = 128 * 1024;

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request { index: u32, begin: u32, length: u32 },
    Piece { index: u32, begin: u32, data: Vec<u8> },
    Cancel { index: u32, begin: u32, length: u32 },
    Port(u16),
    // BEP 6
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject { index: u32, begin: u32, length: u32 },
    AllowedFast(u32),
    // BEP 10
    Extended { id: u8, payload: Vec<u8> },
    /// A message id we do not know; skipped.
    Unknown { id: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    TooLong(u64),
    BadLength { id: u8, len: usize },
    BadHandshake(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLong(n) => write!(f, "message length {n} exceeds the limit of {MAX_MESSAGE}"),
            Error::BadLength { id, len } => write!(f, "message id {id} with invalid length {len}"),
            Error::BadHandshake(why) => write!(f, "bad handshake: {why}"),
        }
    }
}

impl std::error::Error for Error {}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes one message from the start of `buf`: `Ok(Some((message, bytes used)))`,
/// `Ok(None)` if more bytes are needed, or an error for a message no honest peer sends.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, Error> {
    decode_with(buf, <[u8]>::to_vec)
}

/// [`decode`], with the payload of a `piece` message copied by `copy` (a reader takes its
/// block buffers from a pool).
pub fn decode_with(buf: &[u8], copy: impl FnOnce(&[u8]) -> Vec<u8>) -> Result<Option<(Message, usize)>, Error> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = be32(buf) as usize;
    if len > MAX_MESSAGE {
        return Err(Error::TooLong(len as u64));
    }
    if len == 0 {
        return Ok(Some((Message::KeepAlive, 4)));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    let id = buf[4];
    let p = &buf[5..4 + len];
    let need = |n: usize| if p.len() == n { Ok(()) } else { Err(Error::BadLength { id, len }) };
    let triple = |p: &[u8]| (be32(p), be32(&p[4..]), be32(&p[8..]));
    let m = match id {
        0 => need(0).map(|_| Message::Choke)?,
        1 => need(0).map(|_| Message::Unchoke)?,
        2 => need(0).map(|_| Message::Interested)?,
        3 => need(0).map(|_| Message::NotInterested)?,
        4 => need(4).map(|_| Message::Have(be32(p)))?,
        5 => Message::Bitfield(p.to_vec()),
        6 => {
            need(12)?;
            let (index, begin, length) = triple(p);
            Message::Request { index, begin, length }
        }
        7 => {
            if p.len() < 8 {
                return Err(Error::BadLength { id, len });
            }
            Message::Piece { index: be32(p), begin: be32(&p[4..]), data: copy(&p[8..]) }
        }
        8 => {
            need(12)?;
            let (index, begin, length) = triple(p);
            Message::Cancel { index, begin, length }
        }
        9 => need(2).map(|_| Message::Port(u16::from_be_bytes([p[0], p[1]])))?,
        0x0D => need(4).map(|_| Message::Suggest(be32(p)))?,
        0x0E => need(0).map(|_| Message::HaveAll)?,
        0x0F => need(0).map(|_| Message::HaveNone)?,
        0x10 => {
            need(12)?;
            let (index, begin, length) = triple(p);
            Message::Reject { index, begin, length }
        }
        0x11 => need(4).map(|_| Message::AllowedFast(be32(p)))?,
        20 => {
            if p.is_empty() {
                return Err(Error::BadLength { id, len });
            }
            Message::Extended { id: p[0], payload: p[1..].to_vec() }
        }
        _ => Message::Unknown { id },
    };
    Ok(Some((m, 4 + len)))
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends the encoding of `m` to `out`.
pub fn encode(m: &Message, out: &mut Vec<u8>) {
    let simple = |out: &mut Vec<u8>, id: u8| {
        put32(out, 1);
        out.push(id);
    };
    let triple = |out: &mut Vec<u8>, id: u8, a: u32, b: u32, c: u32| {
        put32(out, 13);
        out.push(id);
        put32(out, a);
        put32(out, b);
        put32(out, c);
    };
    match m {
        Message::KeepAlive => put32(out, 0),
        Message::Choke => simple(out, 0),
        Message::Unchoke => simple(out, 1),
        Message::Interested => simple(out, 2),
        Message::NotInterested => simple(out, 3),
        Message::Have(i) => {
            put32(out, 5);
            out.push(4);
            put32(out, *i);
        }
        Message::Bitfield(b) => {
            put32(out, 1 + b.len() as u32);
            out.push(5);
            out.extend_from_slice(b);
        }
        Message::Request { index, begin, length } => triple(out, 6, *index, *begin, *length),
        Message::Piece { index, begin, data } => {
            encode_piece_header(*index, *begin, data.len() as u32, out);
            out.extend_from_slice(data);
        }
        Message::Cancel { index, begin, length } => triple(out, 8, *index, *begin, *length),
        Message::Port(p) => {
            put32(out, 3);
            out.push(9);
            out.extend_from_slice(&p.to_be_bytes());
        }
        Message::Suggest(i) => {
            put32(out, 5);
            out.push(0x0D);
            put32(out, *i);
        }
        Message::HaveAll => simple(out, 0x0E),
        Message::HaveNone => simple(out, 0x0F),
        Message::Reject { index, begin, length } => triple(out, 0x10, *index, *begin, *length),
        Message::AllowedFast(i) => {
            put32(out, 5);
            out.push(0x11);
            put32(out, *i);
        }
        Message::Extended { id, payload } => {
            put32(out, 2 + payload.len() as u32);
            out.push(20);
            out.push(*id);
            out.extend_from_slice(payload);
        }
        Message::Unknown { .. } => {}
    }
}

/// The 13-byte header of a piece message carrying `len` bytes of data.
pub fn encode_piece_header(index: u32, begin: u32, len: u32, out: &mut Vec<u8>) {
    put32(out, 9 + len);
    out.push(7);
    put32(out, index);
    put32(out, begin);
}

/// The handshake's reserved bytes and ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// Our handshake: the extension protocol bit (BEP 10) set.
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10;
        Handshake { reserved, info_hash, peer_id }
    }

    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0] = 19;
        b[1..20].copy_from_slice(PROTOCOL);
        b[20..28].copy_from_slice(&self.reserved);
        b[28..48].copy_from_slice(&self.info_hash);
        b[48..68].copy_from_slice(&self.peer_id);
        b
    }

    pub fn decode(b: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, Error> {
        if b[0] != 19 || &b[1..20] != PROTOCOL {
            return Err(Error::BadHandshake("not the BitTorrent protocol"));
        }
        Ok(Handshake {
            reserved: b[20..28].try_into().unwrap(),
            info_hash: b[28..48].try_into().unwrap(),
            peer_id: b[48..68].try_into().unwrap(),
        })
    }
}

/// A bitfield message payload for `have` (high bit first, spare bits zero).
pub fn bitfield_bytes(have: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; have.len().div_ceil(8)];
    for (i, h) in have.iter().enumerate() {
        if *h {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

/// Parses a bitfield payload for `n` pieces; `None` if its length is wrong or a spare bit is set.
pub fn parse_bitfield(bytes: &[u8], n: usize) -> Option<Vec<bool>> {
    if bytes.len() != n.div_ceil(8) {
        return None;
    }
    let bits: Vec<bool> = (0..bytes.len() * 8).map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0).collect();
    if bits[n..].iter().any(|b| *b) {
        return None;
    }
    Some(bits[..n].to_vec())
}

/// Azureus-style two-letter client codes (`-XX1234-`) and their names.
const AZUREUS_CLIENTS: &[(&[u8; 2], &str)] = &[
    (b"SH", "shoal"),
    (b"LT", "libtorrent"),
    (b"lt", "libTorrent (rakshasa)"),
    (b"TR", "Transmission"),
    (b"qB", "qBittorrent"),
    (b"DE", "Deluge"),
    (b"UT", "\u{b5}Torrent"),
    (b"UM", "\u{b5}Torrent Mac"),
    (b"BT", "BitTorrent"),
    (b"rQ", "rqbit"),
    (b"AZ", "Vuze"),
    (b"BI", "BiglyBT"),
    (b"KT", "KTorrent"),
    (b"FD", "Free Download Manager"),
    (b"WW", "WebTorrent"),
    (b"WD", "WebTorrent Desktop"),
    (b"TX", "Tixati"),
    (b"PI", "PicoTorrent"),
    (b"FX", "Flud"),
    (b"BC", "BitComet"),
    (b"LW", "LimeWire"),
    (b"AG", "Ares"),
    (b"HL", "Halite"),
];

/// Mainline-style prefixes (`X1-2-3--`, `A2-1-36-0-`) and their names.
const MAINLINE_CLIENTS: &[(&[u8], &str)] = &[(b"A2", "aria2"), (b"M", "BitTorrent (mainline)"), (b"Q", "BTQueue"), (b"T", "BitTornado")];

/// One version component: a digit, or a letter for 10 and up (libtorrent writes 1.2.19 as
/// `12J0`, Deluge 1.3.15 as `13F0`).
fn version_digit(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some((c - b'0') as u32),
        b'A'..=b'Z' => Some((c - b'A') as u32 + 10),
        b'a'..=b'z' => Some((c - b'a') as u32 + 10),
        _ => None,
    }
}

/// The client name and version a peer id announces, e.g. `Transmission 4.0.6` for
/// `-TR4060-…`, `libtorrent 2.0.9` for `-LT2090-…`, `aria2 1.36.0` for `A2-1-36-0-…`,
/// `shoal 0.1.0` for our own `-SH0100-…`. An Azureus-style id of a client not in the table
/// gives its six characters (`XX1234`); anything else the hex of its first four bytes. The
/// raw prefix stays available to callers that need it (btrack's API shows both).
pub fn client_from_peer_id(id: &[u8; 20]) -> String {
    if id[0] == b'-' && id[7] == b'-' && id[1..7].iter().all(|c| c.is_ascii_alphanumeric()) {
        let code = [id[1], id[2]];
        let v = &id[3..7];
        if let Some((_, name)) = AZUREUS_CLIENTS.iter().find(|(c, _)| **c == code) {
            if let Some(ver) = azureus_version(&code, v) {
                return format!("{name} {ver}");
            }
        }
        return String::from_utf8_lossy(&id[1..7]).into_owned();
    }
    for (pre, name) in MAINLINE_CLIENTS {
        if let Some(rest) = id.strip_prefix(*pre) {
            if let Some(ver) = mainline_version(rest) {
                return format!("{name} {ver}");
            }
        }
    }
    crate::hex::encode(&id[..4])
}

fn azureus_version(code: &[u8; 2], v: &[u8]) -> Option<String> {
    if code == b"TR" {
        // Transmission: 4.0.6 is `4060`, before 4.0 two minor digits (2.94 is `2940`, 3.00
        // `3000`); a trailing `Z` or `X` marks a development build.
        let d: Vec<u32> = v[..3].iter().map(|&c| version_digit(c).filter(|d| *d < 10)).collect::<Option<_>>()?;
        let dev = matches!(v[3], b'Z' | b'X');
        let base = if d[0] >= 4 { format!("{}.{}.{}", d[0], d[1], d[2]) } else { format!("{}.{}{}", d[0], d[1], d[2]) };
        return Some(if dev { format!("{base}+") } else { base });
    }
    let d: Vec<u32> = v[..3].iter().map(|&c| version_digit(c)).collect::<Option<_>>()?;
    let mut s = format!("{}.{}.{}", d[0], d[1], d[2]);
    // The fourth character is a build number for some clients, a release letter for others.
    if let Some(b) = version_digit(v[3]).filter(|_| v[3].is_ascii_digit() && v[3] != b'0') {
        s += &format!(".{b}");
    }
    Some(s)
}

/// `1-36-0-…` or `7-10-3--…`: dash-separated numbers up to the first empty one.
fn mainline_version(rest: &[u8]) -> Option<String> {
    let rest = rest.strip_prefix(b"-").unwrap_or(rest);
    let mut parts = Vec::new();
    for p in rest.split(|&b| b == b'-') {
        if p.is_empty() || parts.len() == 3 {
            break;
        }
        if p.len() > 3 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        parts.push(std::str::from_utf8(p).ok()?.to_string());
    }
    (parts.len() >= 2).then(|| parts.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(m: Message) {
        let mut b = Vec::new();
        encode(&m, &mut b);
        let (d, used) = decode(&b).unwrap().unwrap();
        assert_eq!(d, m);
        assert_eq!(used, b.len());
        for n in 0..b.len() {
            assert_eq!(decode(&b[..n]).unwrap(), None, "{m:?} prefix {n}");
        }
    }

    #[test]
    fn every_message_round_trips() {
        for m in [
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(vec![0xff, 0x80]),
            Message::Request { index: 1, begin: 16384, length: 16384 },
            Message::Piece { index: 2, begin: 0, data: vec![1, 2, 3] },
            Message::Cancel { index: 1, begin: 2, length: 3 },
            Message::Port(6881),
            Message::HaveAll,
            Message::HaveNone,
            Message::Reject { index: 1, begin: 2, length: 3 },
            Message::AllowedFast(4),
            Message::Suggest(9),
            Message::Extended { id: 0, payload: b"de".to_vec() },
        ] {
            round(m);
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocation() {
        assert_eq!(decode(&[0xff, 0xff, 0xff, 0xff]), Err(Error::TooLong(0xffff_ffff)));
        assert!(matches!(decode(&[0, 0, 0, 2, 0, 0]), Err(Error::BadLength { id: 0, .. })));
        assert!(matches!(decode(&[0, 0, 0, 3, 7, 0, 0]), Err(Error::BadLength { id: 7, .. })));
        assert!(matches!(decode(&[0, 0, 0, 1, 20]), Err(Error::BadLength { id: 20, .. })));
        assert_eq!(decode(&[0, 0, 0, 1, 99]).unwrap().unwrap().0, Message::Unknown { id: 99 });
    }

    #[test]
    fn bitfields() {
        let have = vec![true, false, true, true, false, false, false, false, true];
        let b = bitfield_bytes(&have);
        assert_eq!(b, vec![0b1011_0000, 0b1000_0000]);
        assert_eq!(parse_bitfield(&b, 9).unwrap(), have);
        assert!(parse_bitfield(&b, 8).is_none());
        assert!(parse_bitfield(&[0xff, 0xff], 9).is_none());
    }

    #[test]
    fn handshake_round_trip() {
        let h = Handshake::new([1; 20], *b"-SH0100-abcdefghijkl");
        let b = h.encode();
        let d = Handshake::decode(&b).unwrap();
        assert_eq!(d, h);
        assert!(d.supports_extensions());
        assert_eq!(client_from_peer_id(&d.peer_id), "shoal 0.1.0");
        let mut bad = b;
        bad[3] = b'x';
        assert!(Handshake::decode(&bad).is_err());
    }

    #[test]
    fn client_names_and_versions_from_peer_ids() {
        let id = |p: &[u8]| {
            let mut a = *b"00000000000000000000";
            a[..p.len()].copy_from_slice(p);
            a
        };
        for (prefix, want) in [
            (&b"-SH0100-"[..], "shoal 0.1.0"),
            (b"-LT2090-", "libtorrent 2.0.9"),
            (b"-LT12J0-", "libtorrent 1.2.19"),
            (b"-TR4060-", "Transmission 4.0.6"),
            (b"-TR2940-", "Transmission 2.94"),
            (b"-TR3000-", "Transmission 3.00"),
            (b"-TR410Z-", "Transmission 4.1.0+"),
            (b"-qB4620-", "qBittorrent 4.6.2"),
            (b"-DE13F0-", "Deluge 1.3.15"),
            (b"-DE2110-", "Deluge 2.1.1"),
            (b"-UT355W-", "\u{b5}Torrent 3.5.5"),
            (b"-rQ0070-", "rqbit 0.0.7"),
            (b"A2-1-36-0-", "aria2 1.36.0"),
            (b"M7-10-3--", "BitTorrent (mainline) 7.10.3"),
            (b"-ZZ1234-", "ZZ1234"),
            (b"-TR4.6.-", "2d545234"),
            (b"\x01\x02\x03\x04", "01020304"),
        ] {
            assert_eq!(client_from_peer_id(&id(prefix)), want, "{}", String::from_utf8_lossy(prefix));
        }
    }
}
