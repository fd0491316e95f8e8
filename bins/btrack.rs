//! btrack: the internal BitTorrent tracker (HTTP and UDP on one port) and the torrent
//! manager web page; its peers in memory or, with --store, in Redis shared with other btracks.
//! Exit: 0 after SIGINT/SIGTERM, 2 usage or I/O error (e.g. the port is
//! taken, the data directory is unusable).

use argh::FromArgs;
use shoal::cli::{self, Failure};
use shoal::manager::{self, httpd, registry::Registry, App};
use shoal::tracker::server::{self, Tracker};
use shoal::units;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
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
    /// require announces to /announce/SECRET (UDP: the same path in the request string); .torrent downloads then need it or the admin token
    #[argh(option)]
    token: Option<String>,
    /// require this token (Authorization: Bearer) for uploads, registrations and deletions
    #[argh(option)]
    admin_token: Option<String>,
    /// allow uploads, registrations and deletions without --admin-token on a non-loopback address (a trusted network only)
    #[argh(switch)]
    open_admin: bool,
    /// a host name the manager answers to besides IP addresses, localhost and this machine's name (repeatable)
    #[argh(option)]
    allow_host: Vec<String>,
    /// take a peer's address from the announce's ip= parameter instead of its source address (behind a proxy or on a trusted network)
    #[argh(switch)]
    accept_ip_param: bool,
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
    /// most peers kept over all torrents (default 1000000, about 165 MB)
    #[argh(option, default = "1_000_000")]
    max_peers_total: usize,
    /// most torrents tracked (default 100000)
    #[argh(option, default = "100_000")]
    max_torrents: usize,
    /// most torrents registered in the data directory (default 10000)
    #[argh(option, default = "10_000")]
    max_registered: usize,
    /// most simultaneous HTTP connections (default 512)
    #[argh(option, default = "512")]
    max_connections: usize,
    /// most simultaneous HTTP connections from one address (default 32)
    #[argh(option, default = "32")]
    max_connections_per_ip: usize,
    /// time a request head may take, and a request body before it must keep up 16 KiB/s on average (default 20s)
    #[argh(option, default = "String::from(\"20s\")")]
    request_timeout: String,
    /// most UDP packets per second accepted from one address, 0 for no limit (default 5000)
    #[argh(option, default = "5000")]
    udp_rate_limit: u32,
    /// most HTTP announces per second accepted from one address, 0 for no limit (default 200)
    #[argh(option, default = "200")]
    http_rate_limit: u32,
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
    /// with --seed: most torrents seeded at once (default 64)
    #[argh(option, default = "64")]
    max_seeds: usize,
    /// keep peers and registrations in Redis so several btracks serve one swarm: redis://HOST:PORT/DB or unix:///path/to/socket (default: in memory)
    #[argh(option)]
    store: Option<String>,
    /// site-aware peer lists: CIDR=NAME names a site (repeatable); 'auto' alone groups by /24 (IPv4) and /64 (IPv6); answers carry peers of the asker's site; each site's gateway (its first host) also gets the gateway of every other site (default: off)
    #[argh(option)]
    site: Vec<String>,
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
    let request_timeout = units::parse_duration(&args.request_timeout).map_err(|e| format!("--request-timeout: {e}"))?;
    if request_timeout < Duration::from_secs(1) {
        return Err("--request-timeout must be at least 1s".into());
    }
    let mut allowed_hosts = Vec::new();
    for h in &args.allow_host {
        if h.parse::<std::net::IpAddr>().is_ok() {
            continue; // IP literals are always allowed
        }
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b)) {
            return Err(format!("--allow-host {h:?}: a host name (letters, digits, - and .), without port").into());
        }
        allowed_hosts.push(h.trim_end_matches('.').to_ascii_lowercase());
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
    if !shoal::tracker::server::canonical_ip(addr.ip()).is_loopback() && args.admin_token.is_none() && !args.open_admin {
        return Err(format!(
            "--listen {addr}: beyond loopback, uploads, registrations and deletions need --admin-token (or --open-admin on a trusted network)"
        )
        .into());
    }

    let (registry, warnings) = Registry::open(&args.data_dir).map_err(|e| format!("data directory: {e}"))?;
    let registry = registry.with_max(args.max_registered);
    for w in warnings {
        eprintln!("btrack: warning: skipping {w}");
    }
    let tcp = TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} (tcp): {e}"))?;
    let bound = tcp.local_addr().map_err(|e| e.to_string())?;
    // One UDP socket per core, all on the port (SO_REUSEPORT): the kernel spreads clients
    // over them and each has its own thread and receive queue.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(16);
    let udp = server::bind_udp(bound, cores).map_err(|e| format!("cannot listen on {bound} (udp): {e}"))?;

    let sites = if args.site.is_empty() {
        None
    } else {
        let specs: Vec<String> = args.site.iter().filter(|s| s.as_str() != "auto").cloned().collect();
        Some(shoal::tracker::store::Sites::parse(&specs).map_err(|e| format!("--site {e}"))?)
    };
    let iv = interval.as_secs().min(u32::MAX as u64) as u32;
    let cfg = server::Config {
        open: args.open,
        token: args.token.clone(),
        interval: iv,
        min_interval: (iv / 10).max(1),
        max_peers_per_torrent: args.max_peers.max(1),
        max_torrents: args.max_torrents.max(1),
        max_peers_total: args.max_peers_total.max(1),
        udp_rate_limit: args.udp_rate_limit,
        http_rate_limit: args.http_rate_limit,
        accept_ip_param: args.accept_ip_param,
        sites,
        ..server::Config::default()
    };
    let mut shared = None;
    let tracker = Arc::new(match &args.store {
        None => Tracker::new(cfg),
        Some(url) => {
            let ttl = Duration::from_secs(server::peer_ttl(iv));
            let store = shoal::tracker::redis::RedisStore::open(url, cfg.open, cfg.max_torrents, cfg.max_peers_per_torrent, cfg.max_peers_total, ttl)
                .map_err(|e| format!("--store {e}"))?
                .with_sites(cfg.sites.clone());
            let store = Arc::new(store);
            shared = Some(store.clone());
            Tracker::with_store(cfg, Box::new(store))
        }
    });
    let app = Arc::new(App {
        tracker: tracker.clone(),
        registry,
        cfg: manager::Config {
            public_url: args.public_url.clone(),
            max_upload,
            admin_token: args.admin_token.clone(),
            listen: bound.to_string(),
            allowed_hosts,
        },
    });
    app.sync_tracker();

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(|e| format!("cannot install signal handler: {e}"))?;
    }
    // In memory, one thread per socket (one per core) answers batches of datagrams, and
    // serves the other sockets when its own has nothing queued (see
    // `Tracker::serve_udp_group`); with Redis each announce waits for a round trip, so 16
    // threads in all take one datagram at a time and keep several round trips in flight.
    let udp = Arc::new(udp);
    for own in 0..udp.len() {
        if args.store.is_some() {
            for _ in 0..16usize.div_ceil(udp.len()) {
                let (t, u, s) = (tracker.clone(), udp.clone(), stop.clone());
                std::thread::Builder::new().name("btrack-udp".into()).spawn(move || t.serve_udp_batched(&u[own], &s, 1)).map_err(|e| e.to_string())?;
            }
        } else {
            let (t, u, s) = (tracker.clone(), udp.clone(), stop.clone());
            std::thread::Builder::new().name("btrack-udp".into()).spawn(move || t.serve_udp_group(&u, own, &s, server::UDP_BATCH)).map_err(|e| e.to_string())?;
        }
    }
    {
        let (t, s) = (tracker.clone(), stop.clone());
        std::thread::spawn(move || t.sweeper(s));
    }
    {
        let a = app.clone();
        let t = tracker.clone();
        let cfg = httpd::Config {
            max_workers: args.max_connections.max(4),
            max_per_ip: args.max_connections_per_ip.max(1),
            head_deadline: request_timeout,
            body_grace: request_timeout,
            ..httpd::Config::default()
        };
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
        "btrack: listening on {bound} (HTTP and UDP), {} mode{}, peers in {}{}, data in {}, {} torrents registered",
        if args.open { "open" } else { "closed" },
        if args.token.is_some() { ", announce token required" } else { "" },
        args.store.as_deref().unwrap_or("memory"),
        if args.site.is_empty() { "" } else { ", site-aware peer lists" },
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
            max_sessions: args.max_seeds.max(1),
            max_verifying: 2,
        }))
    } else {
        None
    };
    let mut last_sync = std::time::Instant::now() - Duration::from_secs(10);
    let mut last_shared = std::time::Instant::now() - Duration::from_secs(10);
    let mut synced = std::collections::HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(shared) = &shared {
            if last_shared.elapsed() >= Duration::from_secs(1) {
                last_shared = std::time::Instant::now();
                for line in shoal::manager::registry::sync_shared(&app.registry, shared, &*app.tracker.store, &mut synced) {
                    eprintln!("btrack: registry: {line}");
                }
            }
        }
        if let Some(s) = &seeder {
            if last_sync.elapsed() >= Duration::from_secs(2) {
                last_sync = std::time::Instant::now();
                s.sync_by(&app.seedable(), &|ih| app.seed_source(ih));
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
