//! Fuzz target: .torrent parsing (Metainfo::parse and parse_strict, lib/metainfo.rs), then
//! everything the tools compute from a parsed torrent (piece geometry, file spans, magnet
//! link, JSON view), so a torrent that parses can never make a later step panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal::metainfo::Metainfo;

fn exercise(m: &Metainfo) {
    let _ = m.magnet();
    let _ = m.trackers();
    let n = m.info.num_pieces();
    // Bounded: a few pieces at each end and a few files, whatever the torrent claims.
    let pieces: Vec<usize> = (0..n.min(4)).chain(n.saturating_sub(4)..n).collect();
    for i in pieces {
        let _ = m.info.piece_size(i);
        let _ = m.info.piece_spans(i);
        let _ = m.info.piece_files(i);
    }
    for f in 0..m.info.files.len().min(8) {
        let _ = m.info.file_pieces(f);
        let _ = m.info.file_path(std::path::Path::new("/x"), f);
        let _ = m.info.files[f].display_path(&m.info.name);
    }
    let _ = m.info.byte_spans(0, 1);
}

fuzz_target!(|data: &[u8]| {
    let lenient = Metainfo::parse(data);
    let strict = Metainfo::parse_strict(data);
    if let Ok(m) = &strict {
        assert!(lenient.is_ok(), "parse refused what parse_strict accepted");
        exercise(m);
    }
    match lenient {
        Ok(m) => exercise(&m),
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
});
