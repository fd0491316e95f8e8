//! End-to-end tests of `bdecode`, `mktorrent` and `bverify` (issue 2), run as real processes.
//!
//! - Interop both ways with implementations nobody here wrote: torrents we make are read by
//!   `transmission-show` and libtorrent (python3-libtorrent); torrents made by Debian's
//!   `/usr/bin/mktorrent`, `transmission-create` and libtorrent are read by our `bdecode` and
//!   checked by our `bverify`. The expected values always come from the other tool or from
//!   the content on disk, never from our own output.
//! - `bverify` on good, flipped, truncated and missing content.
//! - Malformed and hostile inputs: every tool gives one `prog: error:` line and a non-zero
//!   exit, never a panic, and never opens a path outside the directory it was given.
//! - Every option in a tool's `--help` appears in its man page (for every man/<tool>.1).
//!
//! Invariant: every test works in its own temporary directory and kills what it spawns.

mod common;

use common::*;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TRACKER: &str = "http://127.0.0.1:6969/announce";
const PIECE: u64 = 32 << 10;

// ---- helpers -------------------------------------------------------------------------------

fn ok(c: &mut Command) -> Output {
    let o = run(c);
    assert_exit(&o, 0);
    o
}

fn json_of(o: &Output) -> Json {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

/// Builds the multi-file fixture: nested directories, sizes that straddle piece boundaries.
/// Answers its files as (relative path, length) in sorted order.
fn make_tree(root: &Path) -> Vec<(String, u64)> {
    let files: [(&str, usize); 5] = [
        ("a.bin", 300_001),
        ("sub/c.txt", 1),
        ("sub/deep/b.bin", 70_000),
        ("sub/deep/e.bin", 65_536),
        ("z.bin", 123_457),
    ];
    for (i, (p, len)) in files.iter().enumerate() {
        write_data(&root.join(p), *len, 100 + i as u64);
    }
    files.iter().map(|(p, l)| (p.to_string(), *l as u64)).collect()
}

/// Total size and piece count of content, measured on disk.
fn disk_size(path: &Path) -> u64 {
    let m = std::fs::metadata(path).unwrap();
    if m.is_file() {
        return m.len();
    }
    std::fs::read_dir(path).unwrap().map(|e| disk_size(&e.unwrap().path())).sum()
}

/// What libtorrent sees in a .torrent file.
#[derive(Debug)]
struct LtInfo {
    hash: String,
    name: String,
    size: u64,
    pieces: u64,
    piece_length: u64,
    private: bool,
    files: Vec<String>,
}

const LT_READ: &str = r#"
import json, sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
print(json.dumps({"hash": str(ti.info_hashes().v1), "name": ti.name(), "size": ti.total_size(),
  "pieces": ti.num_pieces(), "piece_length": ti.piece_length(), "private": ti.priv(),
  "files": [fs.file_path(i) for i in range(fs.num_files())]}))
"#;

fn lt_read(torrent: &Path) -> LtInfo {
    let o = ok(Command::new(PYTHON).arg("-c").arg(LT_READ).arg(torrent));
    let j = json_of(&o);
    LtInfo {
        hash: j["hash"].as_str().unwrap().to_string(),
        name: j["name"].as_str().unwrap().to_string(),
        size: j["size"].as_u64().unwrap(),
        pieces: j["pieces"].as_u64().unwrap(),
        piece_length: j["piece_length"].as_u64().unwrap(),
        private: j["private"].as_bool().unwrap(),
        files: j["files"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect(),
    }
}

const LT_CREATE: &str = r#"
import os, sys, libtorrent as lt
path, out, plen, private, v1only, tracker = sys.argv[1:7]
fs = lt.file_storage()
lt.add_files(fs, path)
flags = lt.create_torrent.v1_only if v1only == "1" else 0
ct = lt.create_torrent(fs, int(plen), flags)
ct.add_tracker(tracker)
ct.set_priv(private == "1")
lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
open(out, "wb").write(lt.bencode(ct.generate()))
print(lt.torrent_info(out).info_hashes().v1)
"#;

/// What `transmission-show` prints about a torrent: "Key: value" lines of its GENERAL part.
fn transmission_show(torrent: &Path) -> (std::collections::HashMap<String, String>, Vec<String>) {
    let o = ok(Command::new("transmission-show").arg(torrent));
    let text = stdout(&o);
    let mut fields = std::collections::HashMap::new();
    let mut files = Vec::new();
    let mut section = "";
    for line in text.lines() {
        match line.trim() {
            "GENERAL" | "TRACKERS" | "FILES" => section = line.trim(),
            l if section == "GENERAL" => {
                if let Some((k, v)) = l.split_once(": ") {
                    fields.insert(k.to_string(), v.to_string());
                }
            }
            l if section == "FILES" && !l.is_empty() => {
                // "name/path (12.3 kB)"
                files.push(l.rsplit_once(" (").map(|(p, _)| p.to_string()).unwrap_or_default());
            }
            _ => {}
        }
    }
    (fields, files)
}

fn our_hash(torrent: &Path) -> String {
    let o = ok(cmd("bdecode").arg("--info-hash").arg(torrent));
    let h = stdout(&o).trim().to_string();
    assert!(h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()), "not an info-hash: {h:?}");
    h
}

/// The `pieces` string of a torrent as hex, through our bdecode's JSON output.
fn pieces_hex(torrent: &Path) -> String {
    let j = json_of(&ok(cmd("bdecode").arg("--compact").arg(torrent)));
    j["info"]["pieces"]["hex"].as_str().expect("pieces as hex").to_string()
}

/// The files of a torrent as (path, length), in torrent order, through bdecode's JSON.
fn file_list(torrent: &Path) -> Vec<(String, u64)> {
    let j = json_of(&ok(cmd("bdecode").arg("--compact").arg(torrent)));
    match j["info"]["files"].as_array() {
        None => vec![(String::new(), j["info"]["length"].as_u64().unwrap())],
        Some(files) => files
            .iter()
            .map(|f| {
                let p: Vec<&str> = f["path"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
                (p.join("/"), f["length"].as_u64().unwrap())
            })
            .collect(),
    }
}

/// Parses `bdecode --info` into its "key: value" lines (first occurrence of each key).
fn our_info(torrent: &Path) -> std::collections::HashMap<String, String> {
    let text = stdout(&ok(cmd("bdecode").arg("--info").arg(torrent)));
    let mut m = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(": ") {
            m.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    m
}

fn mktorrent(args: &[&str]) -> Output {
    run(cmd("mktorrent").args(args))
}

/// Waits for a child with a deadline; kills it and answers `None` if the deadline passes.
fn wait_timeout(mut child: std::process::Child, limit: Duration) -> Option<Output> {
    let start = Instant::now();
    loop {
        match child.try_wait().unwrap() {
            Some(_) => return Some(child.wait_with_output().unwrap()),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

// ---- interop: our torrents read by others ---------------------------------------------------

#[test]
fn our_torrents_are_read_by_transmission_and_libtorrent() {
    if !have("transmission-show") || !have(PYTHON) {
        return;
    }
    let d = Dir::new("ours");
    write_data(&d.join("single.iso"), 1_000_003, 1); // not a multiple of the piece length
    let tree = make_tree(&d.join("tree"));
    for (content, private) in [("single.iso", false), ("single.iso", true), ("tree", false), ("tree", true)] {
        let torrent = d.join(format!("{content}-{private}.torrent"));
        let mut args = vec!["-a", TRACKER, "-l", "32K", "--json", "-q", "-o"];
        let t = torrent.to_str().unwrap().to_string();
        args.push(&t);
        if private {
            args.push("--private");
        }
        let c = d.join(content);
        args.push(c.to_str().unwrap());
        let o = mktorrent(&args);
        assert_exit(&o, 0);
        let ours = json_of(&o);
        let hash = ours["info_hash"].as_str().unwrap().to_string();
        let size = disk_size(&c);
        let pieces = size.div_ceil(PIECE);
        assert_eq!(ours["total_length"].as_u64(), Some(size));
        assert_eq!(ours["pieces"].as_u64(), Some(pieces));

        let lt = lt_read(&torrent);
        assert_eq!(lt.hash, hash, "libtorrent info-hash for {content}");
        assert_eq!(lt.name, content);
        assert_eq!(lt.size, size);
        assert_eq!(lt.pieces, pieces);
        assert_eq!(lt.piece_length, PIECE);
        assert_eq!(lt.private, private);
        if content == "tree" {
            let want: Vec<String> = tree.iter().map(|(p, _)| format!("tree/{p}")).collect();
            assert_eq!(lt.files, want);
        }

        let (tr, files) = transmission_show(&torrent);
        assert_eq!(tr.get("Hash"), Some(&hash), "transmission-show info-hash for {content}");
        assert_eq!(tr.get("Name").map(String::as_str), Some(content));
        assert_eq!(tr.get("Piece Count"), Some(&pieces.to_string()));
        assert_eq!(tr.get("Piece Size").map(String::as_str), Some("32.00 KiB"));
        let privacy = if private { "Private torrent" } else { "Public torrent" };
        assert_eq!(tr.get("Privacy").map(String::as_str), Some(privacy));
        if content == "tree" {
            let want: Vec<String> = tree.iter().map(|(p, _)| format!("tree/{p}")).collect();
            assert_eq!(files, want);
        }
        // Magnet links agree too (transmission builds its own from the file).
        let tm = stdout(&ok(Command::new("transmission-show").arg("-m").arg(&torrent)));
        let om = stdout(&ok(cmd("bdecode").arg("--magnet").arg(&torrent)));
        let btih = |m: &str| m.split("xt=urn:btih:").nth(1).map(|s| s[..40].to_ascii_lowercase());
        assert_eq!(btih(&om), Some(hash.clone()));
        assert_eq!(btih(&tm), Some(hash.clone()));
    }
}

// ---- interop: others' torrents read by us ---------------------------------------------------

#[test]
fn torrents_from_other_tools_are_read_by_bdecode_and_bverify() {
    if !have("/usr/bin/mktorrent") || !have("transmission-create") || !have("transmission-show") || !have(PYTHON) {
        return;
    }
    let d = Dir::new("theirs");
    write_data(&d.join("single.iso"), 777_777, 2);
    make_tree(&d.join("tree"));
    for content in ["single.iso", "tree"] {
        let c = d.join(content);
        let size = disk_size(&c);
        let pieces = size.div_ceil(PIECE);
        // Our own torrent with the same piece length: the piece hashes must be identical.
        let mine = d.join(format!("{content}.mine.torrent"));
        ok(cmd("mktorrent").args(["-q", "-l", "15", "-o"]).arg(&mine).arg(&c));
        let my_pieces = pieces_hex(&mine);
        for private in [false, true] {
            let p = if private { "1" } else { "0" };
            // (tool, torrent, the info-hash the other side reports)
            let mut made: Vec<(&str, PathBuf, String)> = Vec::new();

            let t = d.join(format!("{content}-{p}.debian.torrent"));
            let mut c1 = Command::new("/usr/bin/mktorrent");
            c1.args(["-l", "15", "-a", TRACKER, "-o"]).arg(&t);
            if private {
                c1.arg("-p");
            }
            ok(c1.arg(&c).stdout(Stdio::null()));
            made.push(("debian mktorrent", t.clone(), lt_read(&t).hash));

            let t = d.join(format!("{content}-{p}.transmission.torrent"));
            let mut c2 = Command::new("transmission-create");
            c2.args(["-s", "32", "-t", TRACKER, "-o"]).arg(&t);
            if private {
                c2.arg("-p");
            }
            ok(c2.arg(&c).stdout(Stdio::null()));
            let (tr, _) = transmission_show(&t);
            made.push(("transmission-create", t.clone(), tr["Hash"].clone()));

            for v1only in ["1", "0"] {
                let t = d.join(format!("{content}-{p}-{v1only}.libtorrent.torrent"));
                let o = ok(Command::new(PYTHON)
                    .arg("-c")
                    .arg(LT_CREATE)
                    .arg(&c)
                    .arg(&t)
                    .arg(PIECE.to_string())
                    .arg(p)
                    .arg(v1only)
                    .arg(TRACKER));
                let tool = if v1only == "1" { "libtorrent v1" } else { "libtorrent hybrid" };
                made.push((tool, t, stdout(&o).trim().to_string()));
            }

            for (tool, t, reported) in &made {
                assert_eq!(reported.len(), 40, "{tool} reported {reported:?}");
                assert_eq!(&our_hash(t), reported, "{tool} {content} private={private}");
                let info = our_info(t);
                assert_eq!(info.get("info hash"), Some(reported), "{tool}");
                assert_eq!(info.get("name").map(String::as_str), Some(content), "{tool}");
                assert_eq!(info.get("private").map(String::as_str), Some(if private { "yes" } else { "no" }), "{tool}");
                assert_eq!(info.get("tracker").map(String::as_str), Some(&*format!("{TRACKER} (tier 1)")), "{tool}");
                // libtorrent's view of size and piece count (hybrid torrents add BEP 47
                // padding files between files, so those count more bytes than the disk has).
                let lt = lt_read(t);
                assert_eq!(&lt.hash, reported, "{tool}");
                assert!(info["total size"].ends_with(&format!("({} bytes)", lt.size)), "{tool}: {info:?}");
                assert_eq!(info.get("piece count"), Some(&lt.pieces.to_string()), "{tool}");
                let v = run(cmd("bverify").args(["--json"]).arg(t).arg(&c));
                assert_exit(&v, 0);
                if *tool == "libtorrent hybrid" && content == "tree" {
                    assert!(lt.size > size, "no padding files in a hybrid multi-file torrent?");
                    assert_eq!(json_of(&v)["pieces_ok"].as_u64(), Some(lt.pieces));
                    continue; // padding changes the piece layout: no piece comparison
                }
                assert_eq!(lt.size, size, "{tool}");
                assert_eq!(lt.pieces, pieces, "{tool}");
                // Same files; with the same order (libtorrent keeps directory order) the
                // piece hashes must be identical to ours.
                let (theirs, mine_files) = (file_list(t), file_list(&mine));
                let mut sorted = theirs.clone();
                sorted.sort();
                assert_eq!(sorted, mine_files, "{tool}: file lists differ");
                if theirs == mine_files {
                    assert_eq!(pieces_hex(t), my_pieces, "{tool}: piece hashes differ from ours");
                }
            }
        }
    }
}

#[test]
fn libtorrent_hybrid_padding_files_are_understood() {
    // libtorrent 2 makes hybrid torrents with BEP 47 padding files named by size, so files of
    // equal size give several `.pad/N` entries with the same path. They hold zeros that exist
    // only in the piece data: bdecode must accept the torrent, bverify must not want them.
    if !have(PYTHON) {
        return;
    }
    let d = Dir::new("pads");
    for i in 0..4 {
        write_data(&d.join(format!("eq/f{i}")), 10_000, 40 + i);
    }
    let t = d.join("eq.torrent");
    let o = ok(Command::new(PYTHON).arg("-c").arg(LT_CREATE).arg(d.join("eq")).arg(&t).arg("16384").arg("0").arg("0").arg(TRACKER));
    let reported = stdout(&o).trim().to_string();
    let lt = lt_read(&t);
    let pads: Vec<&String> = lt.files.iter().filter(|f| f.contains(".pad/")).collect();
    assert!(pads.len() >= 2 && pads.windows(2).any(|w| w[0] == w[1]), "expected duplicate pad paths: {:?}", lt.files);
    assert_eq!(our_hash(&t), reported);
    let root = d.join("eq");
    let (code, j) = verify_json(&t, &root);
    assert_eq!(code, 0, "{j}");
    assert!(j["files"].as_array().unwrap().iter().all(|f| f["status"] == "ok"), "{j}");
    assert!(!root.join(".pad").exists(), "bverify created padding files");
    // A flipped byte in f2 (data offset 2 × 16384 + 5 000: files are padded to pieces).
    let mut bytes = std::fs::read(root.join("f2")).unwrap();
    bytes[5_000] ^= 1;
    std::fs::write(root.join("f2"), &bytes).unwrap();
    let o = run(cmd("bverify").arg(&t).arg(&root));
    assert_exit(&o, 1);
    let text = stdout(&o);
    assert!(text.contains("bad piece 2: f2\n"), "{text}");
    assert!(!text.contains(".pad"), "padding files named in the report: {text}");
}

// ---- mktorrent options -------------------------------------------------------------------------

#[test]
fn mktorrent_options_piece_length_stdout_stability_json() {
    let d = Dir::new("mkopts");
    let f = d.join("data.img");
    write_data(&f, 600_001, 3);
    let f_s = f.to_str().unwrap();
    let stdout_torrent = |extra: &[&str]| -> Vec<u8> {
        let mut args = vec!["--no-date", "-a", TRACKER, "-o", "-"];
        args.extend_from_slice(extra);
        args.push(f_s);
        let o = mktorrent(&args);
        assert_exit(&o, 0);
        assert!(stderr(&o).is_empty() || !stderr(&o).contains("wrote"), "status text with -o -: {}", stderr(&o));
        o.stdout
    };
    // -l 18 (exponent), 256K, 262144 and the default for a small file are all 256 KiB.
    let a = stdout_torrent(&["-l", "18"]);
    assert_eq!(a, stdout_torrent(&["-l", "256K"]));
    assert_eq!(a, stdout_torrent(&["-l", "262144"]));
    assert_eq!(a, stdout_torrent(&[]));
    assert_ne!(a, stdout_torrent(&["-l", "19"]));
    // The bytes on stdout are a valid torrent with that piece length.
    std::fs::write(d.join("a.torrent"), &a).unwrap();
    let info = our_info(&d.join("a.torrent"));
    assert_eq!(info.get("piece length").map(String::as_str), Some("256.00 KiB (262144 bytes)"));
    assert_eq!(info.get("piece count").map(String::as_str), Some("3"));
    assert!(!info.contains_key("creation date"));

    // -o FILE writes the same bytes as -o -; --no-date is byte-for-byte stable.
    let t1 = d.join("one.torrent");
    ok(cmd("mktorrent").args(["--no-date", "-q", "-a", TRACKER, "-l", "18", "-o"]).arg(&t1).arg(&f));
    assert_eq!(std::fs::read(&t1).unwrap(), a);
    // An existing output is refused without -f, replaced with it.
    let o = run(cmd("mktorrent").args(["--no-date", "-q", "-l", "19", "-o"]).arg(&t1).arg(&f));
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&t1).unwrap(), a, "refused run changed the file");
    ok(cmd("mktorrent").args(["--no-date", "-q", "-f", "-l", "19", "-o"]).arg(&t1).arg(&f));
    assert_ne!(std::fs::read(&t1).unwrap(), a);

    // Without --no-date there is a creation date close to now.
    let dated = d.join("dated.torrent");
    ok(cmd("mktorrent").args(["-q", "-o"]).arg(&dated).arg(&f));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let date: i64 = our_info(&dated)["creation date"].parse().unwrap();
    assert!((now - date).abs() < 600, "creation date {date} vs now {now}");

    // Default output name is NAME.torrent in the current directory; --json describes it.
    let o = ok(cmd("mktorrent").current_dir(d.path()).args(["--json", "-p", "-c", "hello", "data.img"]));
    let j = json_of(&o);
    let written = d.join("data.img.torrent");
    assert!(written.is_file());
    assert_eq!(j["torrent"].as_str(), Some("data.img.torrent"));
    assert_eq!(j["info_hash"].as_str(), Some(our_hash(&written).as_str()));
    assert_eq!(j["name"].as_str(), Some("data.img"));
    assert_eq!(j["total_length"].as_u64(), Some(600_001));
    assert_eq!(j["piece_length"].as_u64(), Some(262_144));
    assert_eq!(j["pieces"].as_u64(), Some(3));
    assert_eq!(j["files"].as_u64(), Some(1));
    let info = our_info(&written);
    assert_eq!(info.get("private").map(String::as_str), Some("yes"));
    assert_eq!(info.get("comment").map(String::as_str), Some("hello"));

    // -n renames; a multi-tracker -a list makes tiers.
    let o = ok(cmd("mktorrent").args(["--no-date", "-n", "other", "-a", "http://127.0.0.1:1/announce,http://127.0.0.2:1/announce", "-a", TRACKER, "-o", "-", f_s]));
    std::fs::write(d.join("n.torrent"), &o.stdout).unwrap();
    let text = stdout(&ok(cmd("bdecode").arg("--info").arg(d.join("n.torrent"))));
    assert!(text.contains("name: other\n"), "{text}");
    assert!(text.contains("tracker: http://127.0.0.2:1/announce (tier 1)\n"), "{text}");
    assert!(text.contains(&format!("tracker: {TRACKER} (tier 2)\n")), "{text}");
}

#[test]
fn mktorrent_directory_order_is_stable_and_verifiable() {
    let d = Dir::new("mkdir");
    let tree = make_tree(&d.join("tree"));
    let a = ok(cmd("mktorrent").args(["--no-date", "-l", "16K", "-o", "-"]).arg(d.join("tree"))).stdout;
    let b = ok(cmd("mktorrent").args(["--no-date", "-l", "16K", "-t", "1", "-o", "-"]).arg(d.join("tree"))).stdout;
    assert_eq!(a, b, "thread count changed the output");
    std::fs::write(d.join("t.torrent"), &a).unwrap();
    let j = json_of(&ok(cmd("bdecode").arg(d.join("t.torrent"))));
    let paths: Vec<String> = j["info"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect::<Vec<_>>().join("/"))
        .collect();
    assert_eq!(paths, tree.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    ok(cmd("bverify").arg("-q").arg(d.join("t.torrent")).arg(d.join("tree")));
}

#[test]
fn mktorrent_refuses_bad_input_cleanly() {
    let d = Dir::new("mkbad");
    std::fs::create_dir_all(d.join("empty")).unwrap();
    write_data(&d.join("f"), 1000, 4);
    let f = d.join("f");
    let cases: Vec<(Vec<&str>, PathBuf)> = vec![
        (vec![], d.join("does-not-exist")),
        (vec![], d.join("empty")),
        (vec!["-l", "1000"], f.clone()),
        (vec!["-l", "banana"], f.clone()),
        (vec!["-l", "1G"], f.clone()),
        (vec!["-n", "../evil"], f.clone()),
        (vec!["-o", "/nonexistent-dir/x.torrent"], f.clone()),
    ];
    for (args, path) in cases {
        let o = run(cmd("mktorrent").args(&args).arg("-q").arg(&path).current_dir(d.path()));
        assert_exit(&o, 2);
        assert_one_line_error(&o, "mktorrent");
    }
    assert!(!d.0.parent().unwrap().join("evil.torrent").exists());
    // Usage errors: unknown option, missing path.
    for args in [&["--bogus", "x"][..], &[]] {
        let o = run(cmd("mktorrent").args(args));
        assert_exit(&o, 2);
        assert!(!stderr(&o).contains("panicked"));
    }
}

// ---- bverify ---------------------------------------------------------------------------------

fn verify_json(torrent: &Path, content: &Path) -> (i32, Json) {
    let o = run(cmd("bverify").arg("--json").arg(torrent).arg(content));
    assert!(o.status.code() == Some(0) || o.status.code() == Some(1), "bverify: {}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    (o.status.code().unwrap(), json_of(&o))
}

fn bad_pieces(j: &Json) -> Vec<u64> {
    j["bad_pieces"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

#[test]
fn bverify_single_file_flips_and_truncation() {
    let d = Dir::new("bvsingle");
    let f = d.join("disk.img");
    let len = 1_000_003u64;
    write_data(&f, len as usize, 5);
    let t = d.join("disk.torrent");
    ok(cmd("mktorrent").args(["-q", "-l", "16K", "-o"]).arg(&t).arg(&f));
    let pieces = len.div_ceil(16384);

    let o = ok(cmd("bverify").arg(&t).arg(&f));
    assert!(stdout(&o).starts_with("OK "), "{}", stdout(&o));
    // A directory holding the file works too, and so does the default ./NAME.
    ok(cmd("bverify").arg("-q").arg(&t).arg(d.path()));
    ok(cmd("bverify").arg("-q").arg("disk.torrent").current_dir(d.path()));

    let original = std::fs::read(&f).unwrap();
    for offset in [0u64, 16_383, 16_384, 500_000, len - 1] {
        let mut bytes = original.clone();
        bytes[offset as usize] ^= 0x01;
        std::fs::write(&f, &bytes).unwrap();
        let want = offset / 16384;
        let o = run(cmd("bverify").arg(&t).arg(&f));
        assert_exit(&o, 1);
        let text = stdout(&o);
        assert!(text.starts_with("FAILED "), "{text}");
        assert!(text.contains(&format!("bad piece {want}: disk.img\n")), "flip at {offset}: {text}");
        assert_eq!(text.matches("bad piece ").count(), 1, "{text}");
        let (code, j) = verify_json(&t, &f);
        assert_eq!(code, 1);
        assert_eq!(bad_pieces(&j), vec![want]);
        assert_eq!(j["ok"], Json::Bool(false));
        assert_eq!(j["pieces_total"].as_u64(), Some(pieces));
        assert_eq!(j["pieces_ok"].as_u64(), Some(pieces - 1));
        assert_eq!(j["files"][0]["status"], "bad_pieces");
        assert_eq!(j["files"][0]["bad_pieces"], serde_json::json!([want]));
    }
    std::fs::write(&f, &original).unwrap();
    let (code, j) = verify_json(&t, &f);
    assert_eq!(code, 0);
    assert_eq!(j["ok"], Json::Bool(true));
    assert_eq!(j["info_hash"].as_str(), Some(our_hash(&t).as_str()));
    assert_eq!(j["pieces_ok"].as_u64(), Some(pieces));
    assert_eq!(bad_pieces(&j), Vec::<u64>::new());
    assert_eq!(j["files"][0]["path"], "disk.img");
    assert_eq!(j["files"][0]["status"], "ok");
    assert_eq!(j["files"][0]["length"].as_u64(), Some(len));

    // Truncated: every piece from the one holding the new end is bad; size is reported.
    let cut = 600_000u64;
    std::fs::write(&f, &original[..cut as usize]).unwrap();
    let o = run(cmd("bverify").arg(&t).arg(&f));
    assert_exit(&o, 1);
    assert!(stdout(&o).contains(&format!("wrong size: disk.img (expected {len} bytes, found {cut})")), "{}", stdout(&o));
    let (_, j) = verify_json(&t, &f);
    assert_eq!(bad_pieces(&j), (cut / 16384..pieces).collect::<Vec<_>>());
    assert_eq!(j["files"][0]["status"], "wrong_size");
    assert_eq!(j["files"][0]["actual_length"].as_u64(), Some(cut));
    // Longer than expected: data checks out but the size is wrong.
    let mut longer = original.clone();
    longer.push(0);
    std::fs::write(&f, &longer).unwrap();
    let (code, j) = verify_json(&t, &f);
    assert_eq!(code, 1);
    assert_eq!(j["files"][0]["status"], "wrong_size");
    // Missing entirely.
    std::fs::remove_file(&f).unwrap();
    let (code, j) = verify_json(&t, &f);
    assert_eq!(code, 1);
    assert_eq!(j["files"][0]["status"], "missing");
    assert_eq!(j["pieces_ok"].as_u64(), Some(0));
}

#[test]
fn bverify_multi_file_missing_and_flipped() {
    let d = Dir::new("bvmulti");
    let root = d.join("tree");
    let files = make_tree(&root);
    let t = d.join("tree.torrent");
    let plen = 16384u64;
    ok(cmd("mktorrent").args(["-q", "-l", "16K", "-o"]).arg(&t).arg(&root));
    ok(cmd("bverify").arg("-q").arg(&t).arg(&root));
    let total: u64 = files.iter().map(|f| f.1).sum();
    // Offsets of each file in the torrent's data (files are in sorted order).
    let offsets: Vec<u64> = files.iter().scan(0, |o, f| {
        let at = *o;
        *o += f.1;
        Some(at)
    }).collect();
    let pieces_of = |i: usize| offsets[i] / plen..=(offsets[i] + files[i].1 - 1) / plen;

    // Missing file (index 2 = sub/deep/b.bin).
    let victim = root.join(&files[2].0);
    let saved = std::fs::read(&victim).unwrap();
    std::fs::remove_file(&victim).unwrap();
    let o = run(cmd("bverify").arg(&t).arg(&root));
    assert_exit(&o, 1);
    assert!(stdout(&o).contains("missing: sub/deep/b.bin\n"), "{}", stdout(&o));
    let (_, j) = verify_json(&t, &root);
    let want: Vec<u64> = pieces_of(2).collect();
    assert_eq!(bad_pieces(&j), want);
    assert_eq!(j["pieces_total"].as_u64(), Some(total.div_ceil(plen)));
    let statuses: Vec<&str> = j["files"].as_array().unwrap().iter().map(|f| f["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[2], "missing");
    assert_eq!(statuses[4], "ok");
    assert_eq!(j["files"][2]["actual_length"], Json::Null);
    std::fs::write(&victim, &saved).unwrap();
    ok(cmd("bverify").arg("-q").arg(&t).arg(&root));

    // One flipped byte in the last file: the piece holding it, named with that file.
    let z = root.join("z.bin");
    let mut bytes = std::fs::read(&z).unwrap();
    let at = 100_000u64;
    bytes[at as usize] ^= 0x80;
    std::fs::write(&z, &bytes).unwrap();
    let piece = (offsets[4] + at) / plen;
    let o = run(cmd("bverify").arg(&t).arg(&root));
    assert_exit(&o, 1);
    assert!(stdout(&o).contains(&format!("bad piece {piece}: z.bin\n")), "{}", stdout(&o));
    assert!(stdout(&o).contains("bad data: z.bin (1 bad pieces)"), "{}", stdout(&o));
    let (_, j) = verify_json(&t, &root);
    assert_eq!(bad_pieces(&j), vec![piece]);
    assert_eq!(j["files"][4]["status"], "bad_pieces");

    // A flip in the 1-byte file: its piece also covers neighbours, all named.
    bytes[at as usize] ^= 0x80;
    std::fs::write(&z, &bytes).unwrap();
    std::fs::write(root.join("sub/c.txt"), [!data(1, 101)[0]]).unwrap();
    let piece = offsets[1] / plen;
    let o = run(cmd("bverify").arg(&t).arg(&root));
    assert_exit(&o, 1);
    let line = stdout(&o).lines().find(|l| l.starts_with("bad piece")).unwrap().to_string();
    assert!(line.starts_with(&format!("bad piece {piece}: ")) && line.contains("sub/c.txt"), "{line}");
}

#[test]
fn bverify_unreadable_torrent_exits_2() {
    let d = Dir::new("bvbad");
    write_data(&d.join("x"), 10, 1);
    for t in [d.join("missing.torrent"), d.join("x"), d.path().to_path_buf()] {
        let o = run(cmd("bverify").arg(&t).arg(d.path()));
        assert_exit(&o, 2);
        assert_one_line_error(&o, "bverify");
    }
    // Usage errors exit 2 too.
    let o = run(cmd("bverify").arg("--nope"));
    assert_exit(&o, 2);
    let o = run(&mut cmd("bverify"));
    assert_exit(&o, 2);
}

// ---- malformed and hostile inputs -------------------------------------------------------------

fn assert_one_line_error(o: &Output, prog: &str) {
    assert_clean_failure(o);
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{prog}: expected one error line, got: {err:?}");
    assert!(lines[0].starts_with(&format!("{prog}: error: ")), "{prog}: {err:?}");
}

/// Bencodes a torrent from an `info` dict given as raw bencode.
fn torrent_with_info(info: &str) -> Vec<u8> {
    format!("d8:announce{}:{TRACKER}4:info{info}e", TRACKER.len()).into_bytes()
}

fn pieces20(n: usize) -> String {
    // 20n bytes of 'x': a byte string spelled out for bencode.
    format!("{}:{}", 20 * n, "x".repeat(20 * n))
}

/// A single-file info dict with a given name (1 piece of 16 KiB).
fn single_info(name: &str) -> String {
    format!("d6:lengthi100e4:name{}:{name}12:piece lengthi16384e6:pieces{}e", name.len(), pieces20(1))
}

/// A multi-file info dict with one file at the given path components.
fn multi_info(components: &[&str]) -> String {
    let path: String = components.iter().map(|c| format!("{}:{c}", c.len())).collect();
    format!("d5:filesld6:lengthi100e4:pathl{path}eee4:name3:top12:piece lengthi16384e6:pieces{}e", pieces20(1))
}

#[test]
fn malformed_and_hostile_inputs_fail_cleanly_everywhere() {
    let d = Dir::new("hostile");
    let good = {
        write_data(&d.join("good.bin"), 100_000, 9);
        ok(cmd("mktorrent").args(["--no-date", "-q", "-l", "16K", "-a", TRACKER, "-o", "-"]).arg(d.join("good.bin"))).stdout
    };
    let outside = d.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let base = d.join("base"); // the directory bverify is given
    std::fs::create_dir_all(base.join("top")).unwrap();
    // A FIFO outside the given directory: opening it for reading would block forever.
    let fifo = outside.join("evil");
    ok(Command::new("mkfifo").arg(&fifo));
    let fifo_abs = fifo.to_str().unwrap().to_string();
    let fifo_rel = ["..", "..", "outside", "evil"];

    let deep = format!("{}{}", "l".repeat(10_000), "e".repeat(10_000));
    let deep_dict = format!("d4:info{}e", "d1:a".repeat(10_000) + "i1e" + &"e".repeat(10_000));
    let garbage = data(4096, 77);

    // (label, input, is it valid bencode)
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("empty file", vec![], false),
        ("truncated torrent", good[..good.len() / 2].to_vec(), false),
        ("truncated by one byte", good[..good.len() - 1].to_vec(), false),
        // Keys out of order and trailing data are read with a warning now, as libtorrent and
        // Transmission read them: see torrents_with_unsorted_keys_or_trailing_bytes_are_read_with_a_warning.
        ("leading zero integer", torrent_with_info(&single_info("a")).replace_str("i100e", "i0100e"), false),
        ("leading zero length", b"d03:abci1ee".to_vec(), false),
        ("negative zero", b"i-0e".to_vec(), false),
        ("negative zero in torrent", torrent_with_info(&single_info("a")).replace_str("i100e", "i-0e"), false),
        ("duplicate keys", b"d4:infoi1e4:infoi2ee".to_vec(), false),
        ("huge claimed length", b"d4:info99999999999:xe".to_vec(), false),
        ("length beyond u64", b"d4:info99999999999999999999999:xe".to_vec(), false),
        ("huge integer", b"i99999999999999999999999e".to_vec(), false),
        ("10000-deep lists", deep.into_bytes(), false),
        ("10000-deep dicts", deep_dict.into_bytes(), false),
        ("binary garbage", garbage, false),
        ("not a dict (list)", b"le".to_vec(), true),
        ("not a dict (int)", b"i42e".to_vec(), true),
        ("no info", format!("d8:announce{}:{TRACKER}e", TRACKER.len()).into_bytes(), true),
        ("info not a dict", b"d4:infoi1ee".to_vec(), true),
        ("dot-dot path", torrent_with_info(&multi_info(&["..", "..", "etc", "passwd"])), true),
        ("dot-dot to fifo", torrent_with_info(&multi_info(&fifo_rel)), true),
        ("absolute path component", torrent_with_info(&multi_info(&[&fifo_abs])), true),
        ("absolute /etc/passwd", torrent_with_info(&multi_info(&["/etc/passwd"])), true),
        ("empty path component", torrent_with_info(&multi_info(&["a", "", "b"])), true),
        ("empty path list", torrent_with_info(&multi_info(&[])), true),
        ("dot-dot padding file", torrent_with_info(&multi_info(&["a"]).replace("d6:lengthi100e4:path", "d4:attr1:p6:lengthi100e4:path").replace("l1:ae", "l2:..e")), true),
        ("separator in component", torrent_with_info(&multi_info(&["a/../../b"])), true),
        ("dot-dot name", torrent_with_info(&single_info("..")), true),
        ("absolute name", torrent_with_info(&single_info(&fifo_abs)), true),
        ("pieces not multiple of 20", torrent_with_info(&format!("d6:lengthi100e4:name1:a12:piece lengthi16384e6:pieces19:{}e", "x".repeat(19))), true),
        ("too few pieces", torrent_with_info(&format!("d6:lengthi100000e4:name1:a12:piece lengthi16384e6:pieces{}e", pieces20(2))), true),
        ("too many pieces", torrent_with_info(&format!("d6:lengthi100e4:name1:a12:piece lengthi16384e6:pieces{}e", pieces20(3))), true),
        ("zero piece length", torrent_with_info("d6:lengthi100e4:name1:a12:piece lengthi0e6:pieces0:e"), true),
        ("negative length", torrent_with_info(&format!("d6:lengthi-100e4:name1:a12:piece lengthi16384e6:pieces{}e", pieces20(1))), true),
        ("absurd length", torrent_with_info(&format!("d6:lengthi9223372036854775807e4:name1:a12:piece lengthi16384e6:pieces{}e", pieces20(1))), true),
    ];
    for (label, input, valid_bencode) in &cases {
        let f = d.join("input.torrent");
        std::fs::write(&f, input).unwrap();
        // Plain bdecode: valid bencode prints JSON; anything else is exit 1 with one line.
        let o = run(cmd("bdecode").arg(&f));
        if *valid_bencode {
            assert_exit(&o, 0);
            let _ = json_of(&o);
        } else {
            assert_exit(&o, 1);
            assert_one_line_error(&o, "bdecode");
            assert!(o.stdout.is_empty(), "{label}: stdout {}", stdout(&o));
        }
        // Through stdin as well.
        let mut child = cmd("bdecode").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        {
            use std::io::Write;
            let _ = child.stdin.take().unwrap().write_all(input);
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(if *valid_bencode { 0 } else { 1 }), "{label} on stdin: {}", stderr(&o));
        for mode in ["--info", "--info-hash", "--magnet"] {
            let o = run(cmd("bdecode").arg(mode).arg(&f));
            assert_exit(&o, 1);
            assert_one_line_error(&o, "bdecode");
            assert!(o.stdout.is_empty(), "{label} {mode}: stdout {}", stdout(&o));
            // A refused path names the refused entry and the reason.
            if label.contains("path") || label.contains("name") || label.contains("component") {
                let err = stderr(&o);
                assert!(err.contains("unsafe path in info."), "{label}: {err}");
            }
        }
        // bverify must refuse before touching anything, and never block on the FIFO.
        let child = cmd("bverify")
            .arg(&f)
            .arg(base.join("top"))
            .current_dir(&base)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o = wait_timeout(child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{label}: bverify hung (it opened the FIFO outside its directory)"));
        assert_exit(&o, 2);
        assert_one_line_error(&o, "bverify");
        let err = stderr(&o);
        assert!(err.contains("input.torrent"), "{label}: error does not name the file: {err}");
        // Offsets are reported for bencode errors.
        if !valid_bencode {
            assert!(err.contains("at byte "), "{label}: {err}");
        }
    }
    // Nothing was created outside or inside the given directory.
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(base.join("top")).unwrap().count(), 0);
}

/// Issue 10: torrents made by other tools with dictionary keys out of order, or with bytes after
/// the top-level dictionary, used to be refused everywhere (they were in the malformed list
/// above). libtorrent and Transmission read them, so now every tool does, with the info-hash of
/// the exact `info` bytes; `bdecode` warns, and `bdecode --strict` refuses as before.
#[test]
fn torrents_with_unsorted_keys_or_trailing_bytes_are_read_with_a_warning() {
    let d = Dir::new("lenient");
    write_data(&d.join("a"), 100, 3);
    let good = ok(cmd("mktorrent").args(["--no-date", "-q", "-l", "16K", "-a", TRACKER, "-o", "-"]).arg(d.join("a"))).stdout;
    // Pieces are binary: work on the bytes, with the info dict spelled out as text where it is.
    let info_at = find(&good, b"4:info").unwrap() + 6;
    let info = &good[info_at..good.len() - 1];
    assert!(info.starts_with(b"d6:lengthi100e4:name1:a"), "{}", String::from_utf8_lossy(info));
    let swapped_info = [b"d4:name1:a6:lengthi100e".as_slice(), &info[b"d6:lengthi100e4:name1:a".len()..]].concat();
    let unsorted = [&good[..info_at], &swapped_info[..], b"e"].concat();
    let trailing = [good.clone(), b"\n\0junk".to_vec()].concat();
    let expected_hash = |info: &[u8]| shoal::metainfo::InfoHash::of(info).hex();
    for (label, input, hash, warning) in [
        ("unsorted keys", unsorted, expected_hash(&swapped_info), "dictionary keys are not in sorted order"),
        ("trailing data", trailing, expected_hash(info), "data after the end of the value"),
    ] {
        let f = d.join("input.torrent");
        std::fs::write(&f, &input).unwrap();
        let o = run(cmd("bdecode").arg("--info-hash").arg(&f));
        assert_exit(&o, 0);
        assert_eq!(stdout(&o).trim(), hash, "{label}");
        let o = run(cmd("bdecode").arg("--info").arg(&f));
        assert_exit(&o, 0);
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{label}: {err}");
        assert!(err.starts_with("bdecode: warning: ") && err.contains(warning), "{label}: {err}");
        assert!(stdout(&o).contains(&format!("info hash: {hash}")), "{label}");
        // Plain bdecode dumps it, with the same warning.
        let o = run(cmd("bdecode").arg(&f));
        assert_exit(&o, 0);
        assert_eq!(json_of(&o)["info"]["name"], "a", "{label}");
        assert!(stderr(&o).contains(warning), "{label}");
        // --strict refuses, in every mode, with the offset.
        for mode in [&["--strict"][..], &["--strict", "--info"], &["--strict", "--info-hash"]] {
            let o = run(cmd("bdecode").args(mode).arg(&f));
            assert_exit(&o, 1);
            assert_one_line_error(&o, "bdecode");
            assert!(stderr(&o).contains(warning) && stderr(&o).contains("at byte "), "{label}: {}", stderr(&o));
        }
        // bverify reads it and checks the content.
        let o = run(cmd("bverify").args(["-q"]).arg(&f).arg(d.join("a")));
        assert_exit(&o, 0);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Control characters in names are escaped in every summary we print (issue 10, item 11).
#[test]
fn control_characters_in_names_are_escaped_in_summaries() {
    let d = Dir::new("escape");
    let name = "evil\u{1b}]0;pwned\u{7}\nbdecode: error: forged";
    let info = format!("d6:lengthi100e4:name{}:{name}12:piece lengthi16384e6:pieces{}e", name.len(), pieces20(1));
    let f = d.join("e.torrent");
    std::fs::write(&f, torrent_with_info(&info)).unwrap();
    let o = run(cmd("bdecode").arg("--info").arg(&f));
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("name: evil\\u{1b}]0;pwned\\u{7}\\nbdecode: error: forged\n"), "{out:?}");
    let o = run(cmd("bverify").arg(&f).arg(d.join("missing")));
    assert_exit(&o, 1);
    let out = stdout(&o);
    assert!(!out.contains('\u{1b}') && !out.lines().any(|l| l.starts_with("bdecode: error")), "{out:?}");
}

/// Byte-string replace for building hostile variants of a torrent.
trait ReplaceStr {
    fn replace_str(&self, from: &str, to: &str) -> Vec<u8>;
}
impl ReplaceStr for Vec<u8> {
    fn replace_str(&self, from: &str, to: &str) -> Vec<u8> {
        let s = String::from_utf8(self.clone()).expect("ascii test torrent");
        assert!(s.contains(from), "{from} not in {s}");
        s.replacen(from, to, 1).into_bytes()
    }
}

// ---- man pages -------------------------------------------------------------------------------

/// The options a `--help` text lists: every `--long` and `-s` in its Options section.
fn help_options(help: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line.starts_with("Options:") {
            in_options = true;
            continue;
        }
        if in_options && !line.starts_with(' ') && !line.is_empty() {
            in_options = false;
        }
        if !in_options {
            continue;
        }
        // Option names are at the start of the line: "  -a, --announce    text".
        let t = line.trim_start();
        if !t.starts_with('-') || line.len() - t.len() > 4 {
            continue;
        }
        for tok in t.split("  ").next().unwrap().split(", ") {
            let tok = tok.split_whitespace().next().unwrap_or("");
            if tok.starts_with('-') {
                out.push(tok.to_string());
            }
        }
    }
    out
}

/// Man page text with roff escapes for `-` and font changes removed.
fn man_plain(src: &str) -> String {
    let mut s = src.replace("\\-", "-").replace("\\(em", "-");
    for f in ["\\fB", "\\fI", "\\fR", "\\fP", "\\f(CW"] {
        s = s.replace(f, "");
    }
    s
}

/// Whether `opt` (like `-a` or `--announce`) occurs as a whole option in `text`.
fn mentions(text: &str, opt: &str) -> bool {
    let b = text.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_';
    text.match_indices(opt).any(|(i, _)| {
        let before = i == 0 || !word(b[i - 1]);
        let j = i + opt.len();
        let after = j >= b.len() || !word(b[j]);
        before && after
    })
}

#[test]
fn every_help_option_is_in_the_man_page() {
    let man_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&man_dir).expect("man/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("1") {
            continue;
        }
        let tool = path.file_stem().unwrap().to_str().unwrap().to_string();
        assert!(bin(&tool).is_file(), "man/{tool}.1 has no binary {tool}");
        let src = std::fs::read_to_string(&path).unwrap();
        let text = man_plain(&src);
        for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"] {
            assert!(
                src.lines().any(|l| l.starts_with(".SH") && l.trim_start_matches(".SH").trim().trim_matches('"') == section),
                "man/{tool}.1 lacks section {section}"
            );
        }
        assert!(src.lines().any(|l| l.starts_with(".TH ") && l.to_ascii_lowercase().contains(&tool)), "man/{tool}.1: no .TH");
        // It renders without warnings (man-db is in scripts/test.sh's package list).
        if have("man") {
            let o = run(Command::new("man").args(["--warnings", "-l"]).arg(&path).env("MANWIDTH", "80").env("MANPAGER", "cat"));
            assert_exit(&o, 0);
            assert!(stderr(&o).trim().is_empty(), "man/{tool}.1 renders with warnings: {}", stderr(&o));
            assert!(stdout(&o).contains("EXIT STATUS"), "man/{tool}.1 rendered: {}", stdout(&o));
        }
        let help = ok(cmd(&tool).arg("--help"));
        let opts = help_options(&stdout(&help));
        assert!(!opts.is_empty(), "{tool} --help lists no options: {}", stdout(&help));
        // `--help` is argh's, the same in every tool (the README says so): not required.
        for opt in opts.iter().filter(|o| *o != "--help") {
            assert!(mentions(&text, opt), "man/{tool}.1 does not document {opt} (from {tool} --help)");
        }
        checked.push(tool);
    }
    checked.sort();
    for needed in ["bdecode", "bverify", "mktorrent"] {
        assert!(checked.iter().any(|t| t == needed), "man/{needed}.1 is missing");
    }
}

#[test]
fn help_option_parser_finds_long_and_short() {
    // The man-page test above must not pass because the parser found nothing.
    let help = "Usage: x\n\nOptions:\n  -a, --announce    tracker\n                    more text --not-an-option\n  --json            j\n  --help, help      display\n\nNotes:\n  -z nope\n";
    assert_eq!(help_options(help), vec!["-a", "--announce", "--json", "--help"]);
    assert!(mentions(&man_plain("use \\fB\\-a\\fR here"), "-a"));
    assert!(!mentions("--announce", "-a"));
    assert!(!mentions("--json-x", "--json"));
}

/// Issue 9 item 8: a missing 20 GB image must not print 5 000 lines. Runs of bad pieces are
/// named as ranges, the human report stays a screenful, `--json` keeps every piece.
#[test]
fn bverify_names_runs_of_bad_pieces_and_keeps_the_report_a_screenful() {
    let d = Dir::new("bvruns");
    let f = d.join("disk.img");
    let pieces = 600usize;
    write_data(&f, pieces * 16384 - 100, 8);
    let t = d.join("disk.torrent");
    ok(cmd("mktorrent").args(["-q", "-l", "16K", "-o"]).arg(&t).arg(&f));

    // Missing content: one range line.
    let o = run(cmd("bverify").arg(&t).arg(d.join("nowhere/disk.img")));
    assert_exit(&o, 1);
    let text = stdout(&o);
    assert_eq!(
        text,
        format!(
            "FAILED {}: 600 of 600 pieces bad, 1 of 1 files not ok\nmissing: disk.img\nbad pieces 0-599 (600): disk.img\n",
            d.join("nowhere/disk.img").display()
        )
    );
    let (code, j) = verify_json(&t, &d.join("nowhere/disk.img"));
    assert_eq!(code, 1);
    assert_eq!(bad_pieces(&j), (0..pieces as u64).collect::<Vec<_>>());

    // Every other piece of the second half flipped, plus a run: capped at a screenful.
    let mut bytes = std::fs::read(&f).unwrap();
    let mut want: Vec<u64> = Vec::new();
    for p in (10..=14).chain((300..pieces).step_by(2)) {
        bytes[p * 16384] ^= 1;
        want.push(p as u64);
    }
    std::fs::write(&f, &bytes).unwrap();
    let o = run(cmd("bverify").arg(&t).arg(&f));
    assert_exit(&o, 1);
    let text = stdout(&o);
    assert!(text.contains("\nbad pieces 10-14 (5): disk.img\nbad piece 300: disk.img\nbad piece 302: disk.img\n"), "{text}");
    assert!(text.lines().count() <= 24, "{} lines:\n{text}", text.lines().count());
    // 1 run + 150 single pieces = 151 runs; 20 shown; the rest counted.
    assert!(text.ends_with("… and 131 more bad pieces in 131 runs (--json lists every piece)\n"), "{text}");
    let (_, j) = verify_json(&t, &f);
    assert_eq!(bad_pieces(&j), want);
}

/// Issue 10: only a broken pipe is success (tests/hardening.rs checks that one); any other
/// write error on stdout, here ENOSPC from /dev/full, is exit 2 with one line naming stdout
/// and the cause kept from the io::Error.
#[test]
fn bdecode_write_errors_other_than_a_closed_pipe_fail_with_one_line() {
    let d = Dir::new("devfull");
    let f = d.join("small.bencode");
    std::fs::write(&f, b"d4:data5:helloe").unwrap();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let o = run(cmd("bdecode").arg(&f).stdout(full));
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("bdecode: error: writing to stdout: "), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
}
