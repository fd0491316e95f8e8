//! bfetch: download a torrent's content from the swarm, verifying every piece, uploading to
//! other peers meanwhile.
//! Exit: 0 complete and verified, 1 could not finish (timeout, no peers; for a magnet link:
//! no peer gave valid metadata in time), 2 usage error or bad torrent, 3 disk or I/O error.

use argh::FromArgs;
use shoal::cli::{self, Failure};
use shoal::metainfo::Metainfo;
use shoal::sanitize::printable;
use shoal::source;
use shoal::session::{self, Config, Lifecycle, Setup};
use shoal::storage::Storage;
use shoal::{congestion, hashing, units, webseed};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Download torrents' content into DIR/NAME, verifying every piece; several torrents are
/// fetched at once over one listening port. TORRENT may be a magnet link or a bare info-hash:
/// the metadata is fetched from peers first.
/// Exit status: 0 complete and verified, 1 could not finish (timeout, no peers, no valid
/// metadata from peers), 2 usage error or bad torrent, 3 disk or I/O error.
#[derive(FromArgs)]
struct Args {
    /// directory to download into (default: the current directory)
    #[argh(option, short = 'o', default = "PathBuf::from(\".\")")]
    output: PathBuf,
    /// TCP port to listen on for peers; taken is an error, 0 picks any free one (default: the first free of 6881-6889, else any free port)
    #[argh(option)]
    port: Option<u16>,
    /// a peer to connect to, HOST:PORT; may be repeated (no tracker needed)
    #[argh(option)]
    peer: Vec<String>,
    /// a tracker announce URL (http:// or udp://) used besides the torrent's or the magnet link's; may be repeated
    #[argh(option)]
    tracker: Vec<String>,
    /// an http:// web seed (BEP 19) to fetch pieces from, besides the torrent's url-list; may be repeated. Web seeds are asked only for pieces no connected peer has
    #[argh(option)]
    web_seed: Vec<String>,
    /// ignore the torrent's url-list (web seeds given with --web-seed are still used)
    #[argh(switch)]
    no_url_list: bool,
    /// for a magnet link or info-hash: give up (exit 1) when no peer gave valid metadata within this long (default 2m)
    #[argh(option, default = "String::from(\"2m\")")]
    metadata_timeout: String,
    /// cap on download rate in bytes per second, K/M/G suffix allowed (default: none)
    #[argh(option)]
    max_download_rate: Option<String>,
    /// cap on upload rate in bytes per second, K/M/G suffix allowed (default: none)
    #[argh(option)]
    max_upload_rate: Option<String>,
    /// after completing, keep seeding this long, e.g. 90s, 5m (default 0)
    #[argh(option)]
    seed_time: Option<String>,
    /// after completing, keep seeding while the tracker reports peers still downloading, capped by --seed-time if given (the default; kept for scripts that name it)
    #[argh(switch)]
    seed_until_done: bool,
    /// exit as soon as our own copy is verified (or after --seed-time), without waiting for the rest of the swarm
    #[argh(switch)]
    no_linger: bool,
    /// give up (exit 1) when not complete after this long, e.g. 30m
    #[argh(option)]
    timeout: Option<String>,
    /// give up (exit 1) after this long without any peer (default 5m)
    #[argh(option, default = "String::from(\"5m\")")]
    stall_timeout: String,
    /// most peers connected at once (default 50)
    #[argh(option, default = "50")]
    max_peers: usize,
    /// peers uploaded to at once (default 8)
    #[argh(option, default = "8")]
    upload_slots: usize,
    /// TCP congestion control of peer connections: a kernel name such as cubic, reno or bbr, or system for the kernel's default (default cubic: it shares a host's uplink fairly among its many flows)
    #[argh(option, default = "String::from(\"cubic\")")]
    tcp_congestion: String,
    /// print a JSON report (bytes from and to each peer, duration) on standard output
    #[argh(switch)]
    json: bool,
    /// no progress or log messages
    #[argh(switch, short = 'q')]
    quiet: bool,
    /// the .torrent: a path, an http:// URL (e.g. btrack's /torrents/<info-hash>.torrent), - for standard input, a magnet: link, or a bare info-hash (40 hex or 32 base32 characters); several may be given
    #[argh(positional)]
    torrent: Vec<String>,
}

fn main() {
    let args: Args = source::parse_args();
    cli::main("bfetch", || run(args))
}

fn rate(s: &Option<String>) -> Result<u64, Failure> {
    Ok(s.as_deref().map(units::parse_size).transpose()?.unwrap_or(0))
}

/// Lingering (the default) is capped by --seed-time when given; without lingering,
/// --seed-time is how long to seed.
fn lifecycle(no_linger: bool, seed_time: Duration) -> Lifecycle {
    match (no_linger, seed_time.is_zero()) {
        (false, true) => Lifecycle::Linger { cap: None },
        (false, false) => Lifecycle::Linger { cap: Some(seed_time) },
        (true, true) => Lifecycle::Exit,
        (true, false) => Lifecycle::SeedFor(seed_time),
    }
}

fn run(args: Args) -> Result<i32, Failure> {
    if args.torrent.is_empty() {
        return Err(Failure::new(2, "no torrent given (see --help)"));
    }
    if args.torrent.iter().filter(|t| *t == "-").count() > 1 {
        return Err(Failure::new(2, "standard input (-) can hold only one of the torrents"));
    }
    let peers = cli::resolve_peers(&args.peer)?;
    let congestion = congestion::parse(&args.tcp_congestion).map_err(|e| Failure::new(2, format!("--tcp-congestion: {e}")))?;
    if let Some((url, why)) = args.web_seed.iter().find_map(|u| webseed::unsupported(u).map(|w| (u, w))) {
        return Err(Failure::new(2, format!("--web-seed {}: {why}", printable(url))));
    }
    let seed_time = args.seed_time.as_deref().map(units::parse_duration).transpose()?.unwrap_or(Duration::ZERO);
    let timeout = args.timeout.as_deref().map(units::parse_duration).transpose()?;
    let stall = units::parse_duration(&args.stall_timeout)?;
    let (up, down) = (rate(&args.max_upload_rate)?, rate(&args.max_download_rate)?);
    let threads = hashing::default_threads();
    let shutdown = cli::shutdown_flag()?;
    // Read and check every torrent before anything is written or any port is bound.
    let mut metas: Vec<(Metainfo, Vec<std::net::SocketAddr>, Vec<String>)> = Vec::new();
    for t in &args.torrent {
        let (meta, peers) = if source::kind(t) == source::Kind::Magnet {
            let opts = source::MagnetOptions {
                trackers: &args.tracker,
                peers: &args.peer,
                timeout: units::parse_duration(&args.metadata_timeout)?,
                prog: "bfetch",
                quiet: args.quiet,
                shutdown: shutdown.clone(),
            };
            let r = source::fetch_magnet(t, &opts)?;
            (r.meta, r.peers)
        } else {
            let (mut meta, _) = source::read_metainfo(t)?;
            if !args.tracker.is_empty() {
                let mut tiers = meta.trackers();
                tiers.extend(args.tracker.iter().map(|t| vec![t.clone()]));
                meta.announce_list = tiers;
            }
            (meta, peers.clone())
        };
        let web_seeds = web_seeds(&meta, &args);
        if peers.is_empty() && meta.trackers().is_empty() && web_seeds.is_empty() {
            return Err(format!("{}: the torrent names no tracker or web seed and no --peer was given: nobody to fetch from", printable(t)).into());
        }
        if let Some((other, _, _)) = metas.iter().find(|(m, _, _)| m.info_hash == meta.info_hash || m.info.name == meta.info.name) {
            return Err(Failure::new(
                2,
                format!("{}: the same content or name as another torrent given ({}); give each once", printable(t), printable(&other.info.name)),
            ));
        }
        metas.push((meta, peers, web_seeds));
    }
    let mut setups = Vec::new();
    for (meta, peers, web_seeds) in metas {
        let config = Config {
            prog: "bfetch",
            port: args.port,
            peers,
            trackers: meta.trackers(),
            max_peers: args.max_peers.max(1),
            upload_slots: args.upload_slots.max(1),
            max_upload_rate: up,
            max_download_rate: down,
            lifecycle: lifecycle(args.no_linger && !args.seed_until_done, seed_time),
            timeout,
            stall_timeout: if stall.is_zero() { None } else { Some(stall) },
            super_seed: false,
            quiet: args.quiet,
            threads,
            web_seeds,
            tcp_congestion: congestion.clone(),
        };
        let info = Arc::new(meta.info.clone());
        let prepared = Storage::prepare_download(info, meta.info_hash, &args.output, threads)
            .map_err(|e| Failure::new(3, e.to_string()))?;
        if !args.quiet {
            eprintln!("bfetch: {}: {}", printable(&meta.info.name), prepared.note);
        }
        setups.push(Setup { meta, storage: prepared.storage, have: prepared.have, config, shutdown: shutdown.clone() });
    }
    let names: Vec<String> = setups.iter().map(|s| printable(&s.meta.info.name).into_owned()).collect();
    let results = session::run_many(setups, args.port).map_err(|e| Failure::new(2, e.to_string()))?;
    // Each torrent's outcome: the report (also of an unfinished one) and an exit code.
    let mut code = 0;
    let mut failed = Vec::new();
    for (name, r) in names.iter().zip(results) {
        let (report, c, why) = match r {
            Ok(r) if r.complete => (Some(r), 0, String::new()),
            Ok(r) => (Some(r), 1, "interrupted before the download completed".to_string()),
            Err(e @ session::Error::Unfinished(..)) => {
                let why = e.to_string();
                let session::Error::Unfinished(_, r) = e else { unreachable!() };
                (Some(*r), 1, why)
            }
            Err(e @ session::Error::Disk(_)) => (None, 3, e.to_string()),
            Err(e) => (None, 2, e.to_string()),
        };
        if args.json {
            if let Some(r) = &report {
                print_json(r)?;
            }
        }
        if c != 0 {
            code = code.max(c);
            failed.push(format!("{name}: {why}"));
        }
    }
    match failed.len() {
        0 => Ok(0),
        1 if names.len() == 1 => Err(Failure::new(code, failed[0].split_once(": ").map(|x| x.1).unwrap_or(&failed[0]).to_string())),
        _ => {
            for f in &failed {
                eprintln!("bfetch: {f}");
            }
            Err(Failure::new(code, format!("{} of {} torrents did not complete", failed.len(), names.len())))
        }
    }
}

/// The torrent's url-list (unless --no-url-list) and the --web-seed URLs, each once; a
/// url-list entry that is not http:// is skipped with a warning.
fn web_seeds(meta: &Metainfo, args: &Args) -> Vec<String> {
    let listed = if args.no_url_list { &[][..] } else { &meta.url_list[..] };
    let mut out: Vec<String> = Vec::new();
    for url in listed.iter().chain(&args.web_seed) {
        if let Some(why) = webseed::unsupported(url) {
            if !args.quiet {
                eprintln!("bfetch: {}: web seed {} skipped: {why}", printable(&meta.info.name), printable(url));
            }
        } else if !out.contains(url) {
            out.push(url.clone());
        }
    }
    out
}

/// The session's report with the port it listened on.
fn print_json(r: &session::Report) -> Result<(), Failure> {
    let mut j = serde_json::to_value(r).map_err(|e| e.to_string())?;
    j["port"] = shoal::listen::last_bound().into();
    cli::write_stdout(format!("{j}\n").as_bytes())
}
