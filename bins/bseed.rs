//! bseed: seed a torrent's content to the swarm until stopped by SIGINT or SIGTERM.
//! Exit: 0 after a clean shutdown, 1 the content does not match the torrent, 2 usage error
//! or bad torrent, 3 disk or I/O error.

use argh::FromArgs;
use shoal::cli::{self, Failure};
use shoal::source;
use shoal::session::{self, Config, Setup};
use shoal::storage::Storage;
use shoal::{congestion, hashing, units, verify};
use std::path::PathBuf;
use std::sync::Arc;

/// Seed a torrent's content until stopped (SIGINT or SIGTERM), then report what was sent to whom.
/// Several torrents are seeded at once over one port when given as TORRENT PATH pairs.
/// Exit status: 0 clean shutdown, 1 content does not match the torrent, 2 usage error or
/// bad torrent, 3 disk or I/O error.
#[derive(FromArgs)]
struct Args {
    /// TCP port to listen on for peers; taken is an error, 0 picks any free one (default: the first free of 6881-6889, else any free port)
    #[argh(option)]
    port: Option<u16>,
    /// cap on upload rate in bytes per second, K/M/G suffix allowed (default: none)
    #[argh(option)]
    max_upload_rate: Option<String>,
    /// most peers connected at once (default 100)
    #[argh(option, default = "100")]
    max_peers: usize,
    /// peers uploaded to at once (default 16)
    #[argh(option, default = "16")]
    upload_slots: usize,
    /// reveal pieces one peer at a time so each byte leaves this host about once (BEP 16 style)
    #[argh(switch)]
    super_seed: bool,
    /// trust PATH without re-hashing it
    #[argh(switch)]
    no_verify: bool,
    /// a peer to connect to, HOST:PORT; may be repeated
    #[argh(option)]
    peer: Vec<String>,
    /// TCP congestion control of peer connections: a kernel name such as cubic, reno or bbr, or system for the kernel's default (default cubic: it shares a host's uplink fairly among its many flows)
    #[argh(option, default = "String::from(\"cubic\")")]
    tcp_congestion: String,
    /// print a JSON report (bytes sent to each peer) on standard output at exit
    #[argh(switch)]
    json: bool,
    /// no progress or log messages
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// TORRENT [PATH], or several TORRENT PATH pairs. TORRENT: a path, an http:// URL (e.g. btrack's /torrents/<info-hash>.torrent), or - for standard input; PATH: the file of a single-file torrent, the top directory of a multi-file one (default: ./NAME)
    #[argh(positional)]
    torrent: Vec<String>,
}

fn main() {
    let args: Args = source::parse_args();
    cli::main("bseed", || run(args))
}

/// The torrents and content paths given: `T`, `T P`, or pairs `T1 P1 T2 P2 …`.
fn pairs(items: &[String]) -> Result<Vec<(String, Option<PathBuf>)>, Failure> {
    match items.len() {
        0 => Err(Failure::new(2, "no torrent given (see --help)")),
        1 => Ok(vec![(items[0].clone(), None)]),
        n if n % 2 == 1 => Err(Failure::new(2, "several torrents are given as TORRENT PATH pairs: the last torrent has no path")),
        _ => Ok(items.chunks(2).map(|c| (c[0].clone(), Some(PathBuf::from(&c[1])))).collect()),
    }
}

fn run(args: Args) -> Result<i32, Failure> {
    let congestion = congestion::parse(&args.tcp_congestion).map_err(|e| Failure::new(2, format!("--tcp-congestion: {e}")))?;
    let threads = hashing::default_threads();
    let peers = cli::resolve_peers(&args.peer)?;
    let shutdown = cli::shutdown_flag()?;
    let mut setups: Vec<Setup> = Vec::new();
    for (t, path) in pairs(&args.torrent)? {
        let (meta, _) = source::read_metainfo(&t)?;
        if setups.iter().any(|s| s.meta.info_hash == meta.info_hash) {
            return Err(Failure::new(2, format!("{}: given twice", shoal::sanitize::printable(&t))));
        }
        let root = verify::content_path(&meta.info, path.as_deref());
        if !args.no_verify {
            let report = verify::verify(&meta.info, &root, threads, &mut |_| {}).map_err(|e| Failure::new(3, e.to_string()))?;
            if !report.complete() {
                return Err(Failure::new(
                    1,
                    format!(
                        "{}: does not match the torrent ({} of {} pieces bad); run bverify for details",
                        root.display(),
                        report.bad_pieces.len(),
                        report.pieces_total
                    ),
                ));
            }
        }
        let storage = Storage::open_seed(Arc::new(meta.info.clone()), meta.info_hash, &root).map_err(|e| Failure::new(3, e.to_string()))?;
        let config = Config {
            peers: peers.clone(),
            max_peers: args.max_peers.max(1),
            upload_slots: args.upload_slots.max(1),
            max_upload_rate: args.max_upload_rate.as_deref().map(units::parse_size).transpose()?.unwrap_or(0),
            super_seed: args.super_seed,
            quiet: args.quiet,
            threads,
            tcp_congestion: congestion.clone(),
            ..Config::seeder("bseed", args.port, meta.trackers())
        };
        let have = vec![true; meta.info.num_pieces()];
        setups.push(Setup { meta, storage, have, config, shutdown: shutdown.clone() });
    }
    let totals: Vec<u64> = setups.iter().map(|s| s.meta.info.total_length).collect();
    let results = session::run_many(setups, args.port).map_err(|e| Failure::new(2, e.to_string()))?;
    let mut code = 0;
    let mut last_err = String::new();
    for (r, total) in results.into_iter().zip(totals) {
        let report = match r {
            Ok(r) => r,
            Err(e) => {
                code = code.max(if matches!(e, session::Error::Disk(_)) { 3 } else { 2 });
                last_err = e.to_string();
                continue;
            }
        };
        if !args.quiet {
            eprintln!(
                "bseed: {}: sent {} ({:.2} × the content) to {} peers",
                shoal::sanitize::printable(&report.name),
                units::human_bytes(report.uploaded),
                report.uploaded as f64 / total.max(1) as f64,
                report.peers.len()
            );
            for p in &report.peers {
                eprintln!("bseed:   {} ({}): sent {}", p.addr, p.client, units::human_bytes(p.uploaded));
            }
        }
        if args.json {
            let mut j = serde_json::to_value(&report).map_err(|e| e.to_string())?;
            j["port"] = shoal::listen::last_bound().into();
            cli::write_stdout(format!("{j}\n").as_bytes())?;
        }
    }
    if code != 0 {
        return Err(Failure::new(code, last_err));
    }
    Ok(0)
}
