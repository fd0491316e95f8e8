//! bdecode: print any bencoded file as JSON, or summarise a torrent.
//! Exit: 0 ok, 1 input is not valid bencode / not a valid torrent (or, for a magnet link, no
//! peer gave valid metadata in time), 2 usage or I/O error.
//! Input that libtorrent and Transmission read (keys out of order, bytes after the value) is
//! read with a warning on stderr; `--strict` refuses it. Names and paths from the torrent are
//! printed with control characters escaped (see `shoal::sanitize`).

use argh::FromArgs;
use shoal::bencode;
use shoal::cli::{self, Failure};
use shoal::metainfo::Metainfo;
use shoal::sanitize::printable;
use shoal::source;
use shoal::units::human_bytes;

/// Print a bencoded file (or stdin) as JSON, or summarise a .torrent file.
/// Exit status: 0 ok, 1 malformed input or no valid metadata from peers, 2 usage or I/O error.
#[derive(FromArgs)]
struct Args {
    /// print a human summary of the torrent (name, sizes, pieces, files, trackers, info hash)
    #[argh(switch)]
    info: bool,
    /// print only the info-hash of the torrent (40 hex digits)
    #[argh(switch)]
    info_hash: bool,
    /// print the magnet URI of the torrent
    #[argh(switch)]
    magnet: bool,
    /// print JSON on one line instead of indented
    #[argh(switch)]
    compact: bool,
    /// refuse input that is not canonical bencode (dictionary keys out of order, data after the value) instead of reading it with a warning
    #[argh(switch)]
    strict: bool,
    /// for a magnet link or info-hash: a peer to fetch the metadata from, HOST:PORT; may be repeated
    #[argh(option)]
    peer: Vec<String>,
    /// for a magnet link or info-hash: a tracker announce URL to find peers with; may be repeated
    #[argh(option)]
    tracker: Vec<String>,
    /// for a magnet link or info-hash: give up (exit 1) when no peer gave valid metadata within this long (default 2m)
    #[argh(option, default = "String::from(\"2m\")")]
    metadata_timeout: String,
    /// the bencoded file to read: a path, an http:// URL, - (or nothing) for standard input, or a magnet: link or bare info-hash (with --peer/--tracker: the torrent is built from metadata fetched from peers)
    #[argh(positional, default = "String::from(\"-\")")]
    file: String,
}

fn main() {
    let args: Args = source::parse_args();
    cli::main("bdecode", || run(args))
}

/// Where to fetch a magnet link's metadata from (`--peer`, `--tracker`, the link itself).
fn magnet_options(args: &Args) -> Result<source::MagnetOptions<'_>, Failure> {
    Ok(source::MagnetOptions {
        trackers: &args.tracker,
        peers: &args.peer,
        timeout: shoal::units::parse_duration(&args.metadata_timeout)?,
        prog: "bdecode",
        quiet: false,
        shutdown: Default::default(),
    })
}

fn run(args: Args) -> Result<i32, Failure> {
    let modes = [args.info, args.info_hash, args.magnet].iter().filter(|b| **b).count();
    if modes > 1 {
        return Err("--info, --info-hash and --magnet are exclusive".into());
    }
    let (bytes, origin) = source::read_torrent_or_magnet(&args.file, &magnet_options(&args)?)?;
    let name = origin.to_string();
    if modes == 0 {
        let decoded = if args.strict {
            bencode::decode(&bytes).map(|value| bencode::Lenient { value, warnings: Vec::new() })
        } else {
            bencode::decode_lenient(&bytes)
        };
        let decoded = decoded.map_err(|e| Failure::new(1, format!("{name}: {e}")))?;
        warn(&name, &decoded.warnings);
        let json = bencode::to_json(&decoded.value, &[b"pieces"]);
        let mut text = if args.compact {
            serde_json::to_string(&json)
        } else {
            serde_json::to_string_pretty(&json)
        }
        .map_err(|e| e.to_string())?;
        text.push('\n');
        cli::write_stdout(text.as_bytes())?;
        return Ok(0);
    }
    let parsed = if args.strict { Metainfo::parse_strict(&bytes) } else { Metainfo::parse(&bytes) };
    let m = parsed.map_err(|e| Failure::new(1, format!("{name}: {e}")))?;
    warn(&name, &m.warnings);
    let out = if args.info_hash {
        format!("{}\n", m.info_hash)
    } else if args.magnet {
        format!("{}\n", m.magnet())
    } else {
        summary(&m)
    };
    cli::write_stdout(out.as_bytes())?;
    Ok(0)
}

/// One `bdecode: warning:` line per tolerated departure from canonical bencode. A closed
/// stderr is not worth failing (or panicking, as `eprintln!` would) over.
fn warn(name: &str, warnings: &[bencode::Error]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for w in warnings {
        let _ = writeln!(
            err,
            "bdecode: warning: {name}: byte {}: {} (read as libtorrent and Transmission do; --strict refuses)",
            w.offset, w.kind
        );
    }
}

fn summary(m: &Metainfo) -> String {
    let i = &m.info;
    let mut s = String::new();
    s += &format!("name: {}\n", printable(&i.name));
    s += &format!("info hash: {}\n", m.info_hash);
    s += &format!("total size: {} ({} bytes)\n", human_bytes(i.total_length), i.total_length);
    s += &format!("piece length: {} ({} bytes)\n", human_bytes(i.piece_length), i.piece_length);
    s += &format!("piece count: {}\n", i.num_pieces());
    s += &format!("private: {}\n", if i.private { "yes" } else { "no" });
    for (n, tier) in m.trackers().iter().enumerate() {
        for url in tier {
            s += &format!("tracker: {} (tier {})\n", printable(url), n + 1);
        }
    }
    for ws in &m.url_list {
        s += &format!("web seed: {}\n", printable(ws));
    }
    if let Some(c) = &m.comment {
        s += &format!("comment: {}\n", printable(&c.replace('\n', " ")));
    }
    if let Some(c) = &m.created_by {
        s += &format!("created by: {}\n", printable(c));
    }
    if let Some(d) = m.creation_date {
        s += &format!("creation date: {d}\n");
    }
    s += &format!("files: {}\n", i.files.len());
    for f in &i.files {
        s += &format!("  {:>14}  {}\n", f.length, printable(&f.display_path(&i.name)));
    }
    s
}
