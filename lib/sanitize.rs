//! Making untrusted text safe to print: torrent names, file paths and peer client strings come
//! from strangers, and printed raw their control characters are terminal escapes (`ESC [ 2 J`
//! clears the screen, OSC 52 writes the clipboard) or forged log lines (`\n`).
//!
//! Invariant: the output of [`printable`] holds no control character (C0, DEL, C1) and no
//! Unicode bidirectional override, so it is one line that a terminal shows as text. Every other
//! character is kept, so ordinary names (accents, CJK, emoji) print unchanged and without
//! allocation. The escaping is Rust's `\u{…}` style (`\n`, `\t`, `\\` short forms), which is
//! unambiguous: a backslash in the input is always doubled, so `a\nb` (4 characters) and
//! `a<LF>b` print differently.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` must be escaped for display.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        // Bidirectional overrides and isolates (Trojan Source), line/paragraph separators.
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}')
}

/// `s` with control characters (and backslashes, bidi overrides) escaped for display.
/// Borrows when nothing needs escaping.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Like [`printable`] for bytes that may not be UTF-8 (a peer's client string): invalid
/// sequences are shown as `\x..` escapes.
pub fn printable_bytes(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => printable(s),
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                out.push_str(&printable(chunk.valid()));
                for byte in chunk.invalid() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

/// [`printable`] for a path (shown lossily where it is not UTF-8).
pub fn printable_path(p: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    printable_bytes(p.as_os_str().as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "ubuntu-24.04.iso", "Café – 東京 🎵", "a b/c"] {
            assert!(matches!(printable(s), Cow::Borrowed(x) if x == s), "{s}");
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("x\r\ty"), "x\\r\\ty");
        assert_eq!(printable("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(printable("bell\u{7}"), "bell\\u{7}");
        assert_eq!(printable("del\u{7f}"), "del\\u{7f}");
        assert_eq!(printable("c1\u{9b}31m"), "c1\\u{9b}31m");
        assert_eq!(printable("nul\0"), "nul\\u{0}");
        assert_eq!(printable("rtl\u{202e}txt"), "rtl\\u{202e}txt");
    }

    #[test]
    fn escaping_is_unambiguous() {
        // A literal backslash-n and a newline must not print the same.
        assert_eq!(printable("a\\nb"), "a\\\\nb");
        assert_ne!(printable("a\\nb"), printable("a\nb"));
    }

    #[test]
    fn output_never_holds_a_control_character() {
        let all: String = (0u32..0x300).filter_map(char::from_u32).collect();
        let p = printable(&all);
        assert!(!p.chars().any(|c| c.is_control()), "{p}");
        assert!(!p.contains('\n'));
    }

    #[test]
    fn bytes_that_are_not_utf8() {
        assert_eq!(printable_bytes(b"-qB4650-"), "-qB4650-");
        assert_eq!(printable_bytes(b"ab\xff\x1b[0m"), "ab\\xff\\u{1b}[0m");
        assert_eq!(printable_path(std::path::Path::new("/tmp/x\ny")), "/tmp/x\\ny");
    }
}
