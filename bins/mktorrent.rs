//! mktorrent: build a .torrent for a file or a directory, hashing on every core.
//! Exit: 0 ok, 2 usage or I/O error.

use argh::FromArgs;
use shoal::cli::{self, Failure};
use shoal::create::{self, Options};
use shoal::metainfo::Metainfo;
use shoal::progress::Progress;
use shoal::units;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Build a .torrent for a file or a directory.
/// Exit status: 0 ok, 2 usage or I/O error.
#[derive(FromArgs)]
struct Args {
    /// tracker announce URL; repeat for more tiers, separate URLs of one tier with commas
    #[argh(option, short = 'a')]
    announce: Vec<String>,
    /// web seed URL (BEP 19); may be repeated
    #[argh(option, short = 'w')]
    web_seed: Vec<String>,
    /// piece length: bytes with optional K/M suffix (4M), or a power-of-two exponent below 32 (22); default: automatic
    #[argh(option, short = 'l')]
    piece_length: Option<String>,
    /// mark the torrent private (BEP 27)
    #[argh(switch, short = 'p')]
    private: bool,
    /// comment to store in the torrent
    #[argh(option, short = 'c')]
    comment: Option<String>,
    /// torrent name (default: the file or directory name)
    #[argh(option, short = 'n')]
    name: Option<String>,
    /// output file (default: NAME.torrent); - writes to standard output
    #[argh(option, short = 'o')]
    output: Option<PathBuf>,
    /// overwrite the output file if it exists
    #[argh(switch, short = 'f')]
    force: bool,
    /// write no creation date (the output is then byte-for-byte reproducible)
    #[argh(switch)]
    no_date: bool,
    /// hashing threads (default: every core)
    #[argh(option, short = 't', default = "0")]
    threads: usize,
    /// print a JSON summary (output path, info hash, name, size, pieces) on standard output
    #[argh(switch)]
    json: bool,
    /// no progress or status messages
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// the file or directory to share
    #[argh(positional)]
    path: PathBuf,
}

fn main() {
    let args: Args = cli::parse_args();
    cli::main("mktorrent", || run(args))
}

fn run(args: Args) -> Result<i32, Failure> {
    let piece_length = args.piece_length.as_deref().map(units::parse_piece_length).transpose()?;
    let trackers: Vec<Vec<String>> = args
        .announce
        .iter()
        .map(|t| t.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect::<Vec<_>>())
        .filter(|t| !t.is_empty())
        .collect();
    let to_stdout = args.output.as_deref() == Some(Path::new("-"));
    if to_stdout && args.json {
        return Err("--json cannot be used with -o - (standard output holds the torrent)".into());
    }
    let opts = Options {
        trackers,
        web_seeds: args.web_seed.clone(),
        piece_length,
        private: args.private,
        comment: args.comment.clone(),
        name: args.name.clone(),
        creation_date: if args.no_date {
            None
        } else {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs() as i64)
        },
        created_by: Some(format!("shoal {}", env!("CARGO_PKG_VERSION"))),
        threads: args.threads,
    };
    // Decide the output before hashing, so a refusal costs nothing.
    let out_path = match &args.output {
        Some(p) if to_stdout => p.clone(),
        Some(p) => p.clone(),
        None => {
            let name = match &args.name {
                Some(n) => n.clone(),
                None => std::fs::canonicalize(&args.path)
                    .map_err(|e| format!("{}: {e}", args.path.display()))?
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| format!("{}: cannot name a torrent after this path", args.path.display()))?,
            };
            PathBuf::from(format!("{name}.torrent"))
        }
    };
    if !to_stdout && !args.force && out_path.exists() {
        return Err(format!("{}: already exists (use -f to overwrite)", shoal::sanitize::printable_path(&out_path)).into());
    }

    let mut progress = Progress::new("mktorrent", "hashing", 0, args.quiet);
    let bytes = create::create(&args.path, &opts, &mut |done, total| {
        progress.set_total(total);
        progress.update(done, "");
    })
    .map_err(|e| e.to_string())?;
    progress.finish();
    let m = Metainfo::parse(&bytes).map_err(|e| format!("internal error: created torrent does not parse: {e}"))?;

    if to_stdout {
        cli::write_stdout(&bytes)?;
        return Ok(0);
    }
    write_atomically(&out_path, &bytes)?;
    if args.json {
        let j = serde_json::json!({
            "torrent": out_path,
            "info_hash": m.info_hash.hex(),
            "name": m.info.name,
            "total_length": m.info.total_length,
            "piece_length": m.info.piece_length,
            "pieces": m.info.num_pieces(),
            "files": m.info.files.len(),
        });
        cli::write_stdout(format!("{j}\n").as_bytes())?;
    } else if !args.quiet {
        eprintln!(
            "mktorrent: wrote {} ({}, {} pieces of {}, info hash {})",
            shoal::sanitize::printable_path(&out_path),
            units::human_bytes(m.info.total_length),
            m.info.num_pieces(),
            units::human_bytes(m.info.piece_length),
            m.info_hash
        );
    }
    Ok(0)
}

/// Writes `path` through a temporary file and a rename: never a half-written torrent.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tmp{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    // create_new (O_EXCL): never through a symlink planted at the temporary name.
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", shoal::sanitize::printable_path(path)).into());
    }
    Ok(())
}
