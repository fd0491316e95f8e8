//! btrack: the internal BitTorrent tracker (HTTP and UDP on one port) and the torrent
//! manager web page. Exit: 0 after SIGINT/SIGTERM, 2 usage or I/O error (e.g. the port is
//! taken, the data directory is unusable).

use argh::FromArgs;
use shoal::cli::{self, Failure};
use shoal::manager::{self, httpd, registry::Registry, App};
use shoal::tracker::server::{self, Tracker};
use shoal::units;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The internal BitTorrent tracker (HTTP and UDP on one port) and torrent manager.
/// Exit status: 0 after SIGINT/SIGTERM, 2 usage or I/O error.
#[derive(FromArgs)]
struct Args {
    /// address and port for HTTP and UDP (default 0.0.0.0:6969)
    #[argh(option, default = "String::from(\"0.0.0.0:6969\")")]
    listen: String,
    /// directory for registered .torrent files and uploaded content (default ./btrack-data)
    #[argh(option, default = "PathBuf::from(\"btrack-data\")")]
    data_dir: PathBuf,
    /// track any info-hash, not only registered torrents
    #[argh(switch)]
    open: bool,
    /// require announces to /announce/SECRET (UDP: the same path in the request string)
    #[argh(option)]
    token: Option<String>,
    /// require this token for uploads, registrations and deletions
    #[argh(option)]
    admin_token: Option<String>,
    /// base URL clients reach this tracker at (http://host:port), for uploaded torrents' announce URL (default: the Host the uploader used)
    #[argh(option)]
    public_url: Option<String>,
    /// largest upload accepted, e.g. 50G (default 1T)
    #[argh(option, default = "String::from(\"1T\")")]
    max_upload: String,
    /// announce interval given to clients, e.g. 5m (default 5m); silent peers expire after three intervals (at most two plus a minute)
    #[argh(option, default = "String::from(\"5m\")")]
    interval: String,
    /// most peers kept per torrent (default 10000)
    #[argh(option, default = "10_000")]
    max_peers: usize,
    /// most torrents tracked (default 100000)
    #[argh(option, default = "100_000")]
    max_torrents: usize,
    /// most simultaneous HTTP connections (default 512)
    #[argh(option, default = "512")]
    max_connections: usize,
    /// most UDP packets per second accepted from one address, 0 for no limit (default 5000)
    #[argh(option, default = "5000")]
    udp_rate_limit: u32,
    /// seed every registered torrent whose content is in the data directory (uploads included)
    #[argh(switch)]
    seed: bool,
    /// first TCP port for seeding with --seed; each torrent takes the next free one (default 6881)
    #[argh(option, default = "6881")]
    seed_port: u16,
    /// with --seed: reveal pieces one peer at a time so each byte leaves the origin about once
    #[argh(switch)]
    super_seed: bool,
    /// with --seed: cap on the upload rate of each seeded torrent, K/M/G suffix allowed
    #[argh(option)]
    seed_upload_rate: Option<String>,
}

fn main() {
    let args: Args = cli::parse_args();
    cli::main("btrack", || run(args))
}

fn run(args: Args) -> Result<i32, Failure> {
    let max_upload = units::parse_size(&args.max_upload).map_err(|e| format!("--max-upload: {e}"))?;
    let interval = units::parse_duration(&args.interval).map_err(|e| format!("--interval: {e}"))?;
    if interval < Duration::from_secs(1) {
        return Err("--interval must be at least 1s".into());
    }
    for (flag, t) in [("--token", &args.token), ("--admin-token", &args.admin_token)] {
        if let Some(t) = t {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return Err(format!("{flag}: use letters, digits and - . _ ~ only (it goes into URLs)").into());
            }
        }
    }
    if let Some(u) = &args.public_url {
        if !u.starts_with("http://") {
            return Err("--public-url must start with http://".into());
        }
    }
    let addr: SocketAddr = args
        .listen
        .to_socket_addrs()
        .map_err(|e| format!("--listen {}: {e}", args.listen))?
        .next()
        .ok_or_else(|| format!("--listen {}: no address", args.listen))?;

    let (registry, warnings) = Registry::open(&args.data_dir).map_err(|e| format!("data directory: {e}"))?;
    for w in warnings {
        eprintln!("btrack: warning: skipping {w}");
    }
    let tcp = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} (tcp): {e}"))?;
    let bound = tcp.local_addr().map_err(|e| e.to_string())?;
    let udp = UdpSocket::bind(bound).map_err(|e| format!("cannot listen on {bound} (udp): {e}"))?;

    let iv = interval.as_secs().min(u32::MAX as u64) as u32;
    let tracker = Arc::new(Tracker::new(server::Config {
        open: args.open,
        token: args.token.clone(),
        interval: iv,
        min_interval: (iv / 10).max(1),
        max_peers_per_torrent: args.max_peers.max(1),
        max_torrents: args.max_torrents.max(1),
        udp_rate_limit: args.udp_rate_limit,
        ..server::Config::default()
    }));
    let app = Arc::new(App {
        tracker: tracker.clone(),
        registry,
        cfg: manager::Config { public_url: args.public_url.clone(), max_upload, admin_token: args.admin_token.clone(), listen: bound.to_string() },
    });
    app.sync_tracker();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    let udp = Arc::new(udp);
    for _ in 0..2 {
        let (t, u, s) = (tracker.clone(), udp.clone(), stop.clone());
        std::thread::Builder::new().name("btrack-udp".into()).spawn(move || t.serve_udp(&u, &s)).map_err(|e| e.to_string())?;
    }
    {
        let (t, s) = (tracker.clone(), stop.clone());
        std::thread::spawn(move || t.sweeper(s));
    }
    {
        let a = app.clone();
        let t = tracker.clone();
        let cfg = httpd::Config { max_workers: args.max_connections.max(4), ..httpd::Config::default() };
        std::thread::Builder::new()
            .name("btrack-accept".into())
            .spawn(move || {
                httpd::serve(
                    tcp,
                    cfg,
                    Box::new(move |req| a.handle(req)),
                    Box::new(move || {
                        t.metrics.http_connections_refused.fetch_add(1, Ordering::Relaxed);
                    }),
                )
            })
            .map_err(|e| e.to_string())?;
    }
    eprintln!(
        "btrack: listening on {bound} (HTTP and UDP), {} mode{}, data in {}, {} torrents registered",
        if args.open { "open" } else { "closed" },
        if args.token.is_some() { ", announce token required" } else { "" },
        app.registry.dir().display(),
        app.registry.len()
    );
    eprintln!("btrack: announce URLs http://{bound}/announce{t} and udp://{bound}/announce{t}; manager at http://{bound}/", t = if args.token.is_some() { "/<token>" } else { "" });
    let seeder = if args.seed {
        let rate = args.seed_upload_rate.as_deref().map(units::parse_size).transpose().map_err(|e| format!("--seed-upload-rate: {e}"))?;
        Some(shoal::seeder::Seeder::new(shoal::seeder::Options {
            base_port: args.seed_port,
            super_seed: args.super_seed,
            max_upload_rate: rate.unwrap_or(0),
            upload_slots: 16,
            quiet: false,
        }))
    } else {
        None
    };
    let mut last_sync = std::time::Instant::now() - Duration::from_secs(10);
    while !stop.load(Ordering::Relaxed) {
        if let Some(s) = &seeder {
            if last_sync.elapsed() >= Duration::from_secs(2) {
                last_sync = std::time::Instant::now();
                let wanted = app
                    .registry
                    .list()
                    .iter()
                    .filter_map(|e| {
                        let path = app.registry.content_of(e)?;
                        let meta = shoal::metainfo::Metainfo::parse(&e.torrent).ok()?;
                        Some((meta, path))
                    })
                    .collect();
                s.sync(wanted);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(s) = &seeder {
        s.stop_all();
        std::thread::sleep(Duration::from_millis(1500));
    }
    eprintln!("btrack: shutting down");
    Ok(0)
}
