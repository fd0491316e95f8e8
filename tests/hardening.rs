//! Regression tests for issue 10 (hardening), each named after what it guards and each failing
//! on the code before the fix:
//! - symlinks planted in bfetch's output directory (`NAME.part`, `NAME`, a directory inside a
//!   multi-file `.part`, the resume file, the old fixed resume temp name `.NAME.tmp`) never make
//!   bfetch write to their target: it refuses with one error line, or writes around them;
//! - a stale resume file (the `.part` replaced by zeros after a `kill -9`) is not trusted: the
//!   rerun re-checks and fetches everything, and what it calls verified is;
//! - names of 242–255 bytes download without "File name too long" or a stray temporary file;
//! - a 300-file torrent downloads and seeds under `ulimit -n 256`;
//! - 64 MiB of `le` cannot make the decoder take a gigabyte (bdecode under `ulimit -v`).
//!
//! Our tools listen on `--port 0` and are found by the port they log; only loopback is used.
mod common;
#[path = "helpers/peer_util.rs"]
mod peer_util;

use common::*;
use peer_util::*;
use shoal::metainfo::Metainfo;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

fn make_torrent(content: &Path, out: &Path) -> Metainfo {
    let o = run(cmd("mktorrent").args(["-q", "--no-date", "-l", "256K", "-o"]).arg(out).arg(content));
    assert_exit(&o, 0);
    Metainfo::read(out).unwrap()
}

/// Starts `c` (one of our tools given `--port 0`) and answers it with the port it logged.
fn spawn_listening(name: &str, c: Command, dir: &Dir) -> (Proc, u16) {
    let mut p = Proc::spawn(name, c, dir.path());
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let port = p.stderr().split("listening on port ").nth(1).and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok());
        if let Some(port) = port {
            return (p, port);
        }
        if p.poll().is_some() || Instant::now() > end {
            panic!("{name} exited or never logged its port\n{}", p.dump());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A seed for `content` on a free port.
fn seed(dir: &Dir, torrent: &Path, content: &Path, wrap_ulimit: Option<u32>) -> (Proc, u16) {
    let mut c = match wrap_ulimit {
        None => cmd("bseed"),
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(bin("bseed"));
            c
        }
    };
    c.arg(torrent).arg(content).args(["--port", "0"]);
    spawn_listening("bseed", c, dir)
}

fn fetch(torrent: &Path, out: &Path, seed_port: u16, extra: &[&str]) -> Command {
    let mut c = cmd("bfetch");
    c.arg(torrent)
        .arg("-o")
        .arg(out)
        .args(["--port", "0", "--no-linger", "--timeout", "120s", "--peer", &format!("127.0.0.1:{seed_port}")])
        .args(extra);
    c
}

/// Asserts a clean, one-line `bfetch: error:` failure mentioning `what`.
fn assert_refused(o: &std::process::Output, what: &str) {
    assert_clean_failure(o);
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line: {err}");
    assert!(lines[0].starts_with("bfetch: error: ") && lines[0].contains(what), "{err}");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn bfetch_never_writes_through_symlinks_planted_in_the_output_dir() {
    use std::os::unix::fs::symlink;
    let d = Dir::new("symlinks");
    let src = d.join("src/file.bin");
    write_data(&src, 3 * MIB + 77, 1);
    let tree = d.join("src/tree");
    write_data(&tree.join("a.bin"), MIB + 5, 2);
    write_data(&tree.join("sub/b.bin"), MIB + 9, 3);
    let (t_single, t_multi) = (d.join("single.torrent"), d.join("multi.torrent"));
    make_torrent(&src, &t_single);
    make_torrent(&tree, &t_multi);
    let (_s1, p1) = seed(&d, &t_single, &src, None);
    let (_s2, p2) = seed(&d, &t_multi, &tree, None);
    let victim = d.join("victim");
    let victim_dir = d.join("victim-dir");
    fs::create_dir_all(&victim_dir).unwrap();
    let original = b"root:x:0:0:root:/root:/bin/bash\n".to_vec();

    // (label, torrent, seed port, link name in the output dir, link target)
    let cases: Vec<(&str, &Path, u16, &str, &Path)> = vec![
        ("NAME.part -> victim", &t_single, p1, "file.bin.part", &victim),
        ("NAME -> victim", &t_single, p1, "file.bin", &victim),
        ("resume file -> victim", &t_single, p1, ".file.bin.shoal-resume", &victim),
        ("multi NAME.part -> directory", &t_multi, p2, "tree.part", &victim_dir),
        ("multi NAME -> directory", &t_multi, p2, "tree", &victim_dir),
    ];
    for (label, torrent, port, link, target) in cases {
        fs::write(&victim, &original).unwrap();
        let out = d.join(format!("out-{}", link.replace('.', "_")));
        fs::create_dir_all(&out).unwrap();
        symlink(target, out.join(link)).unwrap();
        let o = run(&mut fetch(torrent, &out, port, &[]));
        assert_refused(&o, "symbolic link");
        assert_eq!(fs::read(&victim).unwrap(), original, "{label}: victim changed");
        assert_eq!(fs::read_dir(&victim_dir).unwrap().count(), 0, "{label}: written into the linked directory");
        assert!(fs::symlink_metadata(out.join(link)).unwrap().file_type().is_symlink(), "{label}: link renamed");
    }

    // A directory inside the multi-file .part is a link: refused, nothing written there.
    let out = d.join("out-inner");
    fs::create_dir_all(out.join("tree.part")).unwrap();
    symlink(&victim_dir, out.join("tree.part/sub")).unwrap();
    let o = run(&mut fetch(&t_multi, &out, p2, &[]));
    assert_refused(&o, "symbolic link");
    assert_eq!(fs::read_dir(&victim_dir).unwrap().count(), 0, "written through tree.part/sub");

    // The old fixed resume temp name: the download completes and the victim is untouched
    // (before, every resume save overwrote it with resume text).
    fs::write(&victim, &original).unwrap();
    let out = d.join("out-tmp");
    fs::create_dir_all(&out).unwrap();
    symlink(&victim, out.join(".file.bin.tmp")).unwrap();
    let o = run(&mut fetch(&t_single, &out, p1, &["-q"]));
    assert_exit(&o, 0);
    assert_eq!(fs::read(&victim).unwrap(), original, "victim overwritten through .file.bin.tmp");
    assert_same_content(&src, &out.join("file.bin"));
    assert_eq!(names_in(&out), vec![".file.bin.tmp".to_string(), "file.bin".to_string()]);
}

#[test]
fn stale_resume_file_is_not_trusted_after_the_part_is_replaced() {
    let d = Dir::new("stale");
    let src = d.join("src/stale.bin");
    let size = 12 * MIB + 321;
    write_data(&src, size, 5);
    let torrent = d.join("t.torrent");
    let m = make_torrent(&src, &torrent);
    let n = m.info.num_pieces();
    let (_seed, port) = seed(&d, &torrent, &src, None);
    let out = d.join("out");
    fs::create_dir_all(&out).unwrap();
    let part = out.join("stale.bin.part");
    let resume = out.join(".stale.bin.shoal-resume");

    // Run 1, rate-limited; SIGKILL once over 6 s have passed (the data is fsynced and recorded
    // as synced every 5 s) and part of the file is verified.
    let mut f1 = Proc::spawn("bfetch-1", fetch(&torrent, &out, port, &["--max-download-rate", "1M"]), d.path());
    let start = Instant::now();
    while !(start.elapsed() > Duration::from_secs(6) && resume.exists() && pieces_ok_on_disk(&m, &part) >= n / 3) {
        assert!(f1.poll().is_none(), "run 1 ended early\n{}", f1.dump());
        assert!(start.elapsed() < Duration::from_secs(60), "run 1 did not get far enough\n{}", f1.dump());
        std::thread::sleep(Duration::from_millis(100));
    }
    f1.signal(9);
    f1.wait_or_panic(Duration::from_secs(10));
    assert!(pieces_ok_on_disk(&m, &part) < n, "run 1 finished before the kill");

    // The .part is overwritten in place with zeros of the same size (same inode).
    let len = fs::metadata(&part).unwrap().len();
    fs::OpenOptions::new().write(true).open(&part).unwrap().write_all_at(&vec![0u8; len as usize], 0).unwrap();
    assert_eq!(pieces_ok_on_disk(&m, &part), 0);

    // Run 2 must notice, re-check, fetch everything, and only then say verified.
    let mut f2 = Proc::spawn("bfetch-2", fetch(&torrent, &out, port, &["--json"]), d.path());
    let st = f2.wait_or_panic(Duration::from_secs(180));
    assert_eq!(st.code(), Some(0), "{}", f2.dump());
    assert!(f2.stderr().contains("re-checked partial download (resume data did not match the files): 0 of"), "{}", f2.dump());
    assert_same_content(&src, &out.join("stale.bin"));
    assert_exit(&run(cmd("bverify").args(["-q"]).arg(&torrent).arg(out.join("stale.bin"))), 0);
    let j = json_of(&f2);
    assert!(json_u64(&j, "downloaded", "run 2") >= size as u64, "run 2 trusted stale pieces: {j}");
    assert!(!resume.exists());
}

use std::os::unix::fs::FileExt;

#[test]
fn names_up_to_255_bytes_download_without_stray_files() {
    let d = Dir::new("longname");
    for len in [242usize, 250, 252, 255] {
        let name = format!("{}.bin", "L".repeat(len - 4));
        assert_eq!(name.len(), len);
        let src = d.join("src").join(&name);
        write_data(&src, MIB + len, len as u64);
        let torrent = d.join(format!("{len}.torrent"));
        make_torrent(&src, &torrent);
        let (mut s, port) = seed(&d, &torrent, &src, None);
        let out = d.join(format!("out{len}"));
        let o = run(&mut fetch(&torrent, &out, port, &[]));
        assert_exit(&o, 0);
        assert!(!stderr(&o).contains("cannot save resume"), "{len}: {}", stderr(&o));
        assert_same_content(&src, &out.join(&name));
        assert_eq!(names_in(&out), vec![name.clone()], "{len}: stray files");
        s.stop(Duration::from_secs(30));
    }
}

#[test]
fn three_hundred_files_fetch_and_seed_under_ulimit_n_256() {
    let d = Dir::new("manyfiles");
    let tree = d.join("src/many");
    for i in 0..300 {
        write_data(&tree.join(format!("d{}/f{i:03}.bin", i % 7)), 1000 + i * 37, i as u64);
    }
    let torrent = d.join("many.torrent");
    make_torrent(&tree, &torrent);
    let (_s, port) = seed(&d, &torrent, &tree, Some(256));
    let out = d.join("out");
    let mut c = Command::new("sh");
    c.arg("-c").arg("ulimit -n 256 && exec \"$0\" \"$@\"").arg(bin("bfetch"));
    c.args(fetch(&torrent, &out, port, &["-q"]).get_args());
    let o = run(&mut c);
    assert_exit(&o, 0);
    assert_same_content(&tree, &out.join("many"));
}

#[test]
fn decoder_memory_is_bounded_for_64_mib_of_empty_lists() {
    let d = Dir::new("decoder");
    let f = d.join("le.bin");
    let n = (64 * MIB - 2) / 2;
    let mut body = Vec::with_capacity(64 * MIB);
    body.push(b'l');
    for _ in 0..n {
        body.extend_from_slice(b"le");
    }
    body.push(b'e');
    fs::write(&f, &body).unwrap();
    // 512 MiB of address space: the input (64 MiB) and a bounded decode fit; the old decoder
    // (1.38 GB peak) aborts on allocation failure (killed by a signal, no exit code).
    for mode in [&[][..], &["--info"][..]] {
        let o = run(Command::new("sh").arg("-c").arg("ulimit -v 524288 && exec \"$0\" \"$@\"").arg(bin("bdecode")).args(mode).arg(&f));
        assert_exit(&o, 1);
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("more than 2000000 values"), "{mode:?}: {err}");
    }
}

/// A reader that goes away (`bdecode big | head -c 1`) is success, not an error line: bdecode
/// finds the broken pipe by its `io::ErrorKind`, whatever the message text.
#[test]
fn bdecode_into_a_closed_pipe_exits_0_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let d = Dir::new("pipe");
    let f = d.join("big.bencode");
    let mut body = b"l".to_vec();
    for i in 0..200_000 {
        body.extend_from_slice(format!("i{i}e").as_bytes());
    }
    body.push(b'e');
    fs::write(&f, &body).unwrap();
    let mut child = cmd("bdecode").arg(&f).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    out.read_exact(&mut one).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

/// The fuzz targets' properties (fuzz/checks.rs) on every seed (fuzz/seeds/) and every input
/// the fuzzer ever failed on (fuzz/regressions/), plus each input's prefixes and one-byte
/// flips: so the ordinary test run keeps what fuzzing found, without a fuzzer installed.
#[path = "../fuzz/checks.rs"]
mod checks;

#[test]
fn fuzz_seeds_and_regressions_replay_through_every_parser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 6] = [
        ("bencode", checks::bencode),
        ("metainfo", checks::metainfo),
        ("wire", checks::wire),
        ("ext_handshake", checks::ext_handshake),
        ("tracker_http", checks::tracker_http),
        ("tracker_udp", checks::tracker_udp),
    ];
    for (name, check) in targets {
        let mut inputs = Vec::new();
        for dir in ["seeds", "regressions"] {
            let Ok(rd) = fs::read_dir(root.join(dir).join(name)) else { continue };
            for e in rd {
                let p = e.unwrap().path();
                inputs.push((p.display().to_string(), fs::read(&p).unwrap()));
            }
        }
        assert!(inputs.len() >= 3, "{name}: only {} seed files under fuzz/seeds/{name} (run fuzz/run.sh seeds)", inputs.len());
        let mut runs = 0usize;
        for (path, bytes) in &inputs {
            let run = |b: &[u8], what: &str| {
                if let Err(e) = std::panic::catch_unwind(|| check(b)) {
                    let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                    panic!("{name}: {path} ({what}): {msg}");
                }
            };
            run(bytes, "as is");
            // Prefixes: every one for small inputs, 64 spread over a large one.
            let step = (bytes.len() / 64).max(1);
            for cut in (0..bytes.len()).step_by(step) {
                run(&bytes[..cut], &format!("first {cut} bytes"));
                runs += 1;
            }
            // One-byte flips in the first 256 bytes (headers, lengths, keys).
            for i in 0..bytes.len().min(256) {
                let mut b = bytes.clone();
                b[i] ^= 0xff;
                run(&b, &format!("byte {i} flipped"));
                runs += 1;
            }
        }
        assert!(runs > 0, "{name}: nothing replayed");
    }
}
