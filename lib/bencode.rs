//! Bencode (BEP 3): a strict decoder that is a pure function over bytes, and an encoder.
//!
//! Invariants the decoder keeps, whatever the input:
//! - it never panics and never allocates more than a small multiple of the input's length
//!   (a byte string's claimed length is checked against what is left before anything is
//!   read; lists and dictionaries grow one parsed element at a time);
//! - nesting deeper than [`MAX_DEPTH`] is an error, so hostile input cannot blow the stack;
//! - at most [`MAX_NODES`] values and keys are decoded from one input (libtorrent's default
//!   token limit is of the same order), so memory stays bounded however many tiny values
//!   (`le`, `0:`) the input packs: a 64 MiB body of `le` is refused after a few dozen MiB;
//! - [`decode`] accepts only canonical bencode: no leading zeros, no `i-0e`, dictionary keys
//!   are byte strings in strictly ascending order (so no duplicates), nothing after the value;
//! - [`decode_lenient`] reads what libtorrent and Transmission read: keys out of order and
//!   bytes after the value are accepted and reported as warnings (duplicate keys, leading
//!   zeros and every other fault stay errors). Entries of an unsorted dictionary are sorted
//!   by key after decoding, so lookups work; [`Dict::raw`] still holds the bytes as found;
//! - every dictionary remembers the exact bytes it was parsed from ([`Dict::raw`]), so an
//!   info-hash is the SHA-1 of exactly the bytes in the file.
//!
//! Every error carries the byte offset where decoding stopped.
//!
//! Encoding of typed documents (a torrent file, a tracker response) goes through serde and
//! bendy (see [`to_bytes`]); [`Owned`] covers the dynamic cases and JSON conversion.

use std::collections::BTreeMap;
use std::fmt;

/// Deepest nesting of lists and dictionaries the decoder accepts.
pub const MAX_DEPTH: usize = 64;

/// Most values and dictionary keys decoded from one input. A value costs about 48 bytes in
/// memory against as little as 2 bytes of input, so without a budget a 64 MiB input of empty
/// lists would take over a gigabyte; with it the worst case is about 200 MB. Real torrents use
/// far fewer: a file entry is about 8 nodes, so this allows about 250 000 files.
pub const MAX_NODES: usize = 2_000_000;

/// A decoded value borrowing from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A decoded dictionary: entries in sorted key order (file order, unless a lenient decode
/// found them unsorted and sorted them) and its raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    pub entries: Vec<(&'a [u8], Value<'a>)>,
    /// The exact bytes of this dictionary, from its `d` to its `e`.
    pub raw: &'a [u8],
}

impl<'a> Dict<'a> {
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        let key = key.as_bytes();
        self.entries
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "integer",
            Value::Bytes(_) => "byte string",
            Value::List(_) => "list",
            Value::Dict(_) => "dictionary",
        }
    }

    /// Copies the value out of the input buffer.
    pub fn to_owned(&self) -> Owned {
        match self {
            Value::Int(i) => Owned::Int(*i),
            Value::Bytes(b) => Owned::Bytes(b.to_vec()),
            Value::List(l) => Owned::List(l.iter().map(Value::to_owned).collect()),
            Value::Dict(d) => Owned::Dict(d.entries.iter().map(|(k, v)| (k.to_vec(), v.to_owned())).collect()),
        }
    }
}

/// Why decoding failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    UnexpectedEnd,
    UnexpectedByte(u8),
    LeadingZero,
    NegativeZero,
    IntegerOverflow,
    EmptyInteger,
    LengthBeyondInput { claimed: u64, left: usize },
    KeyNotString,
    UnsortedKey,
    DuplicateKey,
    TooDeep,
    TooManyValues,
    TrailingData,
}

/// A decoding error: what went wrong and the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub offset: usize,
    pub kind: ErrorKind,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed bencode at byte {}: {}", self.offset, self.kind)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEnd => write!(f, "input ends in the middle of a value"),
            ErrorKind::UnexpectedByte(b) if b.is_ascii_graphic() => write!(f, "unexpected byte '{}'", *b as char),
            ErrorKind::UnexpectedByte(b) => write!(f, "unexpected byte 0x{b:02x}"),
            ErrorKind::LeadingZero => write!(f, "number with a leading zero"),
            ErrorKind::NegativeZero => write!(f, "negative zero (i-0e)"),
            ErrorKind::IntegerOverflow => write!(f, "integer does not fit in 64 bits"),
            ErrorKind::EmptyInteger => write!(f, "integer without digits"),
            ErrorKind::LengthBeyondInput { claimed, left } => {
                write!(f, "byte string claims {claimed} bytes but only {left} are left")
            }
            ErrorKind::KeyNotString => write!(f, "dictionary key is not a byte string"),
            ErrorKind::UnsortedKey => write!(f, "dictionary keys are not in sorted order"),
            ErrorKind::DuplicateKey => write!(f, "duplicate dictionary key"),
            ErrorKind::TooDeep => write!(f, "nesting deeper than {MAX_DEPTH} levels"),
            ErrorKind::TooManyValues => write!(f, "more than {MAX_NODES} values"),
            ErrorKind::TrailingData => write!(f, "data after the end of the value"),
        }
    }
}

impl std::error::Error for Error {}

/// Decodes exactly one canonical value spanning the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, Error> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(Error { offset: used, kind: ErrorKind::TrailingData });
    }
    Ok(value)
}

/// Decodes one canonical value from the start of the input; answers the value and the bytes
/// it used.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), Error> {
    let mut p = Parser { input, pos: 0, nodes: 0, lenient: false, warnings: Vec::new() };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// The result of [`decode_lenient`]: the value and what was tolerated to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lenient<'a> {
    pub value: Value<'a>,
    /// Departures from canonical bencode that were accepted: the first unsorted key
    /// ([`ErrorKind::UnsortedKey`]) and trailing bytes ([`ErrorKind::TrailingData`]), with
    /// their offsets. Empty for canonical input.
    pub warnings: Vec<Error>,
}

/// Decodes one value from the start of the input as libtorrent and Transmission do:
/// dictionary keys out of order and bytes after the value are accepted and reported in
/// [`Lenient::warnings`]; everything [`decode`] refuses otherwise is still refused.
pub fn decode_lenient(input: &[u8]) -> Result<Lenient<'_>, Error> {
    let mut p = Parser { input, pos: 0, nodes: 0, lenient: true, warnings: Vec::new() };
    let value = p.value(0)?;
    if p.pos != input.len() {
        p.warnings.push(Error { offset: p.pos, kind: ErrorKind::TrailingData });
    }
    Ok(Lenient { value, warnings: p.warnings })
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    /// Values and keys decoded so far (bounded by [`MAX_NODES`]).
    nodes: usize,
    lenient: bool,
    warnings: Vec<Error>,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, kind: ErrorKind) -> Result<T, Error> {
        Err(Error { offset: self.pos, kind })
    }

    fn peek(&self) -> Result<u8, Error> {
        match self.input.get(self.pos) {
            Some(b) => Ok(*b),
            None => self.err(ErrorKind::UnexpectedEnd),
        }
    }

    fn count_node(&mut self) -> Result<(), Error> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return self.err(ErrorKind::TooManyValues);
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        self.count_node()?;
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let i = self.integer(b'e')?;
                Ok(Value::Int(i))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?)),
            b'l' => {
                if depth >= MAX_DEPTH {
                    return self.err(ErrorKind::TooDeep);
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                if depth >= MAX_DEPTH {
                    return self.err(ErrorKind::TooDeep);
                }
                let start = self.pos;
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                // Offsets of the keys, kept only once the dictionary turned out unsorted.
                let mut key_offsets: Option<Vec<usize>> = None;
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return self.err(ErrorKind::KeyNotString);
                    }
                    let key_at = self.pos;
                    self.count_node()?;
                    let key = self.bytes()?;
                    if let Some((last, _)) = entries.last() {
                        match (*last).cmp(key) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(Error { offset: key_at, kind: ErrorKind::DuplicateKey })
                            }
                            std::cmp::Ordering::Greater if !self.lenient => {
                                return Err(Error { offset: key_at, kind: ErrorKind::UnsortedKey })
                            }
                            std::cmp::Ordering::Greater => {
                                if !self.warnings.iter().any(|w| w.kind == ErrorKind::UnsortedKey) {
                                    self.warnings.push(Error { offset: key_at, kind: ErrorKind::UnsortedKey });
                                }
                                if key_offsets.is_none() {
                                    // Offsets of the earlier keys are not needed: a duplicate
                                    // is reported at the later of the two, which is this one or
                                    // one still to come.
                                    key_offsets = Some(vec![0; entries.len()]);
                                }
                            }
                        }
                    }
                    if let Some(o) = &mut key_offsets {
                        o.push(key_at);
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                if let Some(offsets) = key_offsets {
                    // Lenient and unsorted: sort (stable, so file order among equal keys) and
                    // refuse duplicates, which would make a lookup ambiguous.
                    let mut order: Vec<usize> = (0..entries.len()).collect();
                    order.sort_by(|a, b| entries[*a].0.cmp(entries[*b].0));
                    for w in order.windows(2) {
                        if entries[w[0]].0 == entries[w[1]].0 {
                            let at = offsets[w[0]].max(offsets[w[1]]);
                            return Err(Error { offset: at, kind: ErrorKind::DuplicateKey });
                        }
                    }
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                Ok(Value::Dict(Dict { entries, raw: &self.input[start..self.pos] }))
            }
            b => self.err(ErrorKind::UnexpectedByte(b)),
        }
    }

    /// Parses a decimal integer ending at `end`, consuming the terminator.
    fn integer(&mut self, end: u8) -> Result<i64, Error> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_at = self.pos;
        let mut value: i64 = 0;
        loop {
            let b = self.peek()?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return self.err(ErrorKind::UnexpectedByte(b));
            }
            if self.pos > digits_at && self.input[digits_at] == b'0' {
                return Err(Error { offset: digits_at, kind: ErrorKind::LeadingZero });
            }
            let d = (b - b'0') as i64;
            value = value
                .checked_mul(10)
                .and_then(|v| if negative { v.checked_sub(d) } else { v.checked_add(d) })
                .ok_or(Error { offset: start, kind: ErrorKind::IntegerOverflow })?;
            self.pos += 1;
        }
        if self.pos == digits_at {
            return self.err(ErrorKind::EmptyInteger);
        }
        if negative && value == 0 {
            return Err(Error { offset: start, kind: ErrorKind::NegativeZero });
        }
        self.pos += 1; // terminator
        Ok(value)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let at = self.pos;
        if self.peek()? == b'-' {
            return self.err(ErrorKind::UnexpectedByte(b'-'));
        }
        let len = self.integer(b':')?;
        let left = self.input.len() - self.pos;
        if len as u64 > left as u64 {
            return Err(Error { offset: at, kind: ErrorKind::LengthBeyondInput { claimed: len as u64, left } });
        }
        let s = &self.input[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }
}

/// An owned bencode value; dictionaries are kept sorted, so encoding is canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owned {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Owned>),
    Dict(BTreeMap<Vec<u8>, Owned>),
}

impl Owned {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Owned::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Owned::Bytes(b) => encode_bytes(b, out),
            Owned::List(l) => {
                out.push(b'l');
                l.iter().for_each(|v| v.encode_into(out));
                out.push(b'e');
            }
            Owned::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn str(s: &str) -> Owned {
        Owned::Bytes(s.as_bytes().to_vec())
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Builds a dictionary from `(key, value)` pairs.
pub fn dict<const N: usize>(pairs: [(&str, Owned); N]) -> Owned {
    Owned::Dict(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
}

/// Encodes a serde value as bencode through bendy.
pub fn to_bytes<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, String> {
    bendy::serde::to_bytes(value).map_err(|e| e.to_string())
}

/// Converts a value to JSON: UTF-8 byte strings become strings, others `{"hex": "…"}`.
/// Byte strings stored under a key listed in `hex_keys` are always written as hex.
pub fn to_json(value: &Value<'_>, hex_keys: &[&[u8]]) -> serde_json::Value {
    fn hex_obj(b: &[u8]) -> serde_json::Value {
        serde_json::json!({ "hex": crate::hex::encode(b) })
    }
    fn go(v: &Value<'_>, force_hex: bool, hex_keys: &[&[u8]]) -> serde_json::Value {
        match v {
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if !force_hex => serde_json::Value::String(s.to_string()),
                _ => hex_obj(b),
            },
            Value::List(l) => serde_json::Value::Array(l.iter().map(|x| go(x, false, hex_keys)).collect()),
            Value::Dict(d) => {
                let mut m = serde_json::Map::new();
                for (k, v) in &d.entries {
                    let key = String::from_utf8_lossy(k).into_owned();
                    let force = hex_keys.contains(k);
                    m.insert(key, go(v, force, hex_keys));
                }
                serde_json::Value::Object(m)
            }
        }
    }
    go(value, false, hex_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(input: &[u8]) -> ErrorKind {
        decode(input).unwrap_err().kind
    }

    #[test]
    fn decodes_every_type() {
        let v = decode(b"d1:ai-42e1:bl3:xyzi0eee").unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.get("a").unwrap().as_int(), Some(-42));
        let l = d.get("b").unwrap().as_list().unwrap();
        assert_eq!(l[0].as_bytes(), Some(&b"xyz"[..]));
        assert_eq!(l[1].as_int(), Some(0));
        assert_eq!(d.raw, b"d1:ai-42e1:bl3:xyzi0eee");
    }

    #[test]
    fn raw_span_of_nested_dict_is_exact() {
        let input = b"d4:infod1:x1:ye5:otheri1ee";
        let v = decode(input).unwrap();
        let info = v.as_dict().unwrap().get("info").unwrap().as_dict().unwrap();
        assert_eq!(info.raw, b"d1:x1:ye");
    }

    #[test]
    fn rejects_non_canonical_and_broken_input() {
        assert_eq!(kind(b"i-0e"), ErrorKind::NegativeZero);
        assert_eq!(kind(b"i03e"), ErrorKind::LeadingZero);
        assert_eq!(kind(b"ie"), ErrorKind::EmptyInteger);
        assert_eq!(kind(b"i-e"), ErrorKind::EmptyInteger);
        assert_eq!(kind(b"03:abc"), ErrorKind::LeadingZero);
        assert_eq!(kind(b"i12"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"i99999999999999999999e"), ErrorKind::IntegerOverflow);
        assert_eq!(kind(b"d1:bi1e1:ai2ee"), ErrorKind::UnsortedKey);
        assert_eq!(kind(b"d1:ai1e1:ai2ee"), ErrorKind::DuplicateKey);
        assert_eq!(kind(b"di1ei2ee"), ErrorKind::KeyNotString);
        assert_eq!(kind(b"i1ei2e"), ErrorKind::TrailingData);
        assert_eq!(kind(b"x"), ErrorKind::UnexpectedByte(b'x'));
        assert_eq!(kind(b""), ErrorKind::UnexpectedEnd);
        assert!(matches!(kind(b"999999999999:a"), ErrorKind::LengthBeyondInput { .. }));
        assert_eq!(kind(b"-1:a"), ErrorKind::UnexpectedByte(b'-'));
    }

    #[test]
    fn error_offsets_point_at_the_problem() {
        assert_eq!(decode(b"d1:ai1e1:ai2ee").unwrap_err().offset, 7);
        assert_eq!(decode(b"li1ei03ee").unwrap_err().offset, 5);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut input = vec![b'l'; 10_000];
        input.extend(vec![b'e'; 10_000]);
        assert_eq!(kind(&input), ErrorKind::TooDeep);
        let mut ok = vec![b'l'; MAX_DEPTH];
        ok.extend(vec![b'e'; MAX_DEPTH]);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn lenient_accepts_unsorted_keys_and_trailing_bytes_with_warnings() {
        let input = b"d1:bi1e1:ad1:zi0e1:yi0eee";
        assert_eq!(kind(input), ErrorKind::UnsortedKey);
        let l = decode_lenient(input).unwrap();
        let d = l.value.as_dict().unwrap();
        assert_eq!(d.get("a").unwrap().as_dict().unwrap().get("y").unwrap().as_int(), Some(0));
        assert_eq!(d.get("b").unwrap().as_int(), Some(1));
        assert_eq!(d.raw, &input[..]);
        assert_eq!(d.get("a").unwrap().as_dict().unwrap().raw, b"d1:zi0e1:yi0ee");
        // One warning for unsorted keys however many dictionaries are unsorted.
        assert_eq!(l.warnings, vec![Error { offset: 7, kind: ErrorKind::UnsortedKey }]);

        let l = decode_lenient(b"d1:ai1eextra").unwrap();
        assert_eq!(l.warnings, vec![Error { offset: 8, kind: ErrorKind::TrailingData }]);
        assert_eq!(l.value.as_dict().unwrap().raw, b"d1:ai1ee");
        // Canonical input gives no warning.
        assert!(decode_lenient(b"d1:ai1ee").unwrap().warnings.is_empty());
    }

    #[test]
    fn lenient_still_refuses_duplicates_and_other_faults() {
        // Duplicate keys far apart in an unsorted dictionary: found after sorting, reported at
        // the second occurrence.
        let e = decode_lenient(b"d1:ci1e1:ai1e1:bi1e1:ai2ee").unwrap_err();
        assert_eq!(e, Error { offset: 19, kind: ErrorKind::DuplicateKey });
        assert_eq!(decode_lenient(b"d1:ai1e1:ai2ee").unwrap_err().kind, ErrorKind::DuplicateKey);
        assert_eq!(decode_lenient(b"i03e").unwrap_err().kind, ErrorKind::LeadingZero);
        assert_eq!(decode_lenient(b"d1:ai1e").unwrap_err().kind, ErrorKind::UnexpectedEnd);
        assert_eq!(decode_lenient(b"").unwrap_err().kind, ErrorKind::UnexpectedEnd);
    }

    #[test]
    fn node_budget_bounds_memory_for_tiny_values() {
        // Two bytes per value: without a budget 64 MiB of this takes over a gigabyte.
        let n = MAX_NODES + 10;
        let mut input = Vec::with_capacity(2 * n + 2);
        input.push(b'l');
        for _ in 0..n {
            input.extend_from_slice(b"le");
        }
        input.push(b'e');
        assert_eq!(kind(&input), ErrorKind::TooManyValues);
        assert_eq!(decode_lenient(&input).unwrap_err().kind, ErrorKind::TooManyValues);
        // Keys count too.
        let mut d = b"d".to_vec();
        for i in 0..MAX_NODES / 2 + 1 {
            d.extend_from_slice(format!("8:{i:08}i0e").as_bytes());
        }
        d.push(b'e');
        assert_eq!(kind(&d), ErrorKind::TooManyValues);
        // Just under the budget decodes.
        let mut ok = b"l".to_vec();
        for _ in 0..MAX_NODES - 1 {
            ok.extend_from_slice(b"0:");
        }
        ok.push(b'e');
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn extreme_integers() {
        assert_eq!(decode(b"i9223372036854775807e").unwrap().as_int(), Some(i64::MAX));
        assert_eq!(decode(b"i-9223372036854775808e").unwrap().as_int(), Some(i64::MIN));
    }

    #[test]
    fn owned_round_trip_is_canonical() {
        let input = b"d1:ai1e1:bl1:xi-3eee";
        let owned = decode(input).unwrap().to_owned();
        assert_eq!(owned.encode(), input);
    }

    #[test]
    fn every_prefix_of_valid_input_fails_cleanly() {
        let input = b"d8:announce9:http://x/4:infod6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee";
        assert!(decode(input).is_ok());
        for n in 0..input.len() {
            assert!(decode(&input[..n]).is_err());
        }
    }
}
