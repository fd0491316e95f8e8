//! bverify: check local content against a torrent, hashing on every core.
//! Exit: 0 every piece matches and every file has its size, 1 anything does not match (or, for
//! a magnet link, no peer gave valid metadata in time), 2 usage or I/O error.

use argh::FromArgs;
use shoal::cli::{self, Failure};
use shoal::metainfo::Metainfo;
use shoal::source;
use shoal::progress::Progress;
use shoal::sanitize::{printable, printable_path};
use shoal::verify::{self, FileStatus, Report};
use shoal::{hashing, units};
use std::path::PathBuf;

/// Check that local content matches a torrent, piece by piece.
/// Exit status: 0 everything matches, 1 something does not match (bad piece, missing file,
/// wrong size) or no peer gave valid metadata for a magnet link in time, 2 usage or I/O error.
#[derive(FromArgs)]
struct Args {
    /// print a JSON report (pieces total and ok, bad piece indices, per-file status) on standard output
    #[argh(switch)]
    json: bool,
    /// hashing threads (default: every core)
    #[argh(option, short = 't', default = "0")]
    threads: usize,
    /// no progress or status messages
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// for a magnet link or info-hash: a peer to fetch the metadata from, HOST:PORT; may be repeated
    #[argh(option)]
    peer: Vec<String>,
    /// for a magnet link or info-hash: a tracker announce URL to find peers with; may be repeated
    #[argh(option)]
    tracker: Vec<String>,
    /// for a magnet link or info-hash: give up (exit 1) when no peer gave valid metadata within this long (default 2m)
    #[argh(option, default = "String::from(\"2m\")")]
    metadata_timeout: String,
    /// the .torrent: a path, an http:// URL (e.g. btrack's /torrents/<info-hash>.torrent), - for standard input, or a magnet: link or bare info-hash (with --peer/--tracker)
    #[argh(positional)]
    torrent: String,
    /// the content: the file of a single-file torrent, the top directory of a multi-file one (default: ./NAME)
    #[argh(positional)]
    path: Option<PathBuf>,
}

fn main() {
    let args: Args = source::parse_args();
    cli::main("bverify", || run(args))
}

/// Where to fetch a magnet link's metadata from (`--peer`, `--tracker`, the link itself).
fn magnet_options(args: &Args) -> Result<source::MagnetOptions<'_>, Failure> {
    Ok(source::MagnetOptions {
        trackers: &args.tracker,
        peers: &args.peer,
        timeout: shoal::units::parse_duration(&args.metadata_timeout)?,
        prog: "bverify",
        quiet: args.quiet,
        shutdown: Default::default(),
    })
}

fn run(args: Args) -> Result<i32, Failure> {
    let m = source::read_metainfo_or_magnet(&args.torrent, &magnet_options(&args)?)?;
    let root = verify::content_path(&m.info, args.path.as_deref());
    let threads = if args.threads == 0 { hashing::default_threads() } else { args.threads };
    let mut progress = Progress::new("bverify", "verifying", m.info.total_length, args.quiet);
    let report = verify::verify(&m.info, &root, threads, &mut |done| progress.update(done, ""))
        .map_err(|e| e.to_string())?;
    progress.finish();
    if args.json {
        let mut j = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        j["ok"] = serde_json::Value::Bool(report.complete());
        j["info_hash"] = serde_json::Value::String(m.info_hash.hex());
        cli::write_stdout(format!("{j}\n").as_bytes())?;
    } else {
        cli::write_stdout(text_report(&report, &m).as_bytes())?;
    }
    Ok(if report.complete() { 0 } else { 1 })
}

fn text_report(r: &Report, m: &Metainfo) -> String {
    let path = printable_path(&r.path);
    if r.complete() {
        return format!(
            "OK {path}: {} pieces, {} verified\n",
            r.pieces_total,
            units::human_bytes(m.info.total_length)
        );
    }
    let bad_files = r.files.iter().filter(|f| f.status != FileStatus::Ok).count();
    let mut s = format!(
        "FAILED {path}: {} of {} pieces bad, {} of {} files not ok\n",
        r.bad_pieces.len(),
        r.pieces_total,
        bad_files,
        r.files.len()
    );
    let not_ok: Vec<_> = r.files.iter().filter(|f| f.status != FileStatus::Ok).collect();
    for (shown, f) in not_ok.iter().enumerate() {
        if shown == MAX_LINES {
            s += &format!("… and {} more files not ok (--json lists them all)\n", not_ok.len() - shown);
            break;
        }
        match f.status {
            FileStatus::Ok => {}
            FileStatus::Missing => s += &format!("missing: {}\n", printable(&f.path)),
            FileStatus::WrongSize => s += &format!(
                "wrong size: {} (expected {} bytes, found {})\n",
                printable(&f.path),
                f.length,
                f.actual_length.unwrap_or(0)
            ),
            FileStatus::BadPieces => s += &format!("bad data: {} ({} bad pieces)\n", printable(&f.path), f.bad_pieces.len()),
        }
    }
    let runs = verify::bad_runs(&m.info, &r.bad_pieces);
    for (i, run) in runs.iter().enumerate() {
        if i == MAX_LINES {
            let rest: usize = runs[i..].iter().map(|r| r.count()).sum();
            s += &format!("… and {rest} more bad pieces in {} runs (--json lists every piece)\n", runs.len() - i);
            break;
        }
        let names = file_list(r, &run.files);
        if run.first == run.last {
            s += &format!("bad piece {}: {names}\n", run.first);
        } else {
            s += &format!("bad pieces {}-{} ({}): {names}\n", run.first, run.last, run.count());
        }
    }
    s
}

/// Lines of each kind (files not ok, runs of bad pieces) in the human report: a screenful.
const MAX_LINES: usize = 20;

/// The files a run touches, at most 3 named.
fn file_list(r: &Report, files: &[usize]) -> String {
    let mut names: Vec<String> = files.iter().take(3).map(|&f| printable(&r.files[f].path).into_owned()).collect();
    if files.len() > 3 {
        names.push(format!("and {} more files", files.len() - 3));
    }
    names.join(", ")
}
