//! fleetsim: run the real swarm core on N simulated hosts and report how the fleet fares.
//!
//!   cargo run --release --example fleetsim -- --hosts 1000 --size 20G --rate 1gbit --json
//!
//! The model and its limits are in docs/SIMULATION.md and `shoal::sim`. Output: a table on
//! standard error as the run ends, and with `--json` one JSON object on standard output.
//! Exit status: 0 when every honest host ended complete and no invariant broke, 1 when not,
//! 2 on a usage error.

use argh::FromArgs;
use shoal::sim::{Outcome, Scenario, Sim};
use shoal::units;
use std::time::Duration;

/// Simulate a fleet syncing one file with the real shoal swarm core.
#[derive(FromArgs)]
struct Args {
    /// fetching hosts, besides the origin (default 16)
    #[argh(option, default = "16")]
    hosts: usize,
    /// file size, K/M/G suffix (default 256M)
    #[argh(option, default = "String::from(\"256M\")")]
    size: String,
    /// piece length (default: what mktorrent picks for the size)
    #[argh(option)]
    piece_length: Option<String>,
    /// block size (default 16K; larger blocks make big runs cheaper)
    #[argh(option)]
    block: Option<String>,
    /// per-host link rate both ways, e.g. 1gbit, 100mbit, 50M (bytes/s), or a mix such as 90%:1gbit,10%:100mbit (default 100mbit)
    #[argh(option, default = "String::from(\"100mbit\")")]
    rate: String,
    /// the origin's link rate (default: the fastest class)
    #[argh(option)]
    origin_rate: Option<String>,
    /// one-way latency of every link (default 1ms)
    #[argh(option, default = "String::from(\"1ms\")")]
    latency: String,
    /// the origin super-seeds (as bench-fleet's shoal row)
    #[argh(switch)]
    super_seed: bool,
    /// random seed (default 1): the same seed gives the same run
    #[argh(option, default = "1")]
    seed: u64,
    /// fraction of hosts killed once and restarted from their resume data (default 0)
    #[argh(option, default = "0.0")]
    churn: f64,
    /// the origin crashes at this fraction of F/B for this many seconds, e.g. 0.5:60
    #[argh(option)]
    origin_crash: Option<String>,
    /// the origin is an HTTP web seed (nginx), not a peer: fetchers ask it for the pieces no connected peer has (BEP 19)
    #[argh(switch)]
    web_seed: bool,
    /// fraction of hosts that send corrupt blocks (default 0)
    #[argh(option, default = "0.0")]
    hostile: f64,
    /// most peers per fetcher (default 50, as bfetch)
    #[argh(option, default = "50")]
    max_peers: usize,
    /// upload slots per fetcher (default 8, as bfetch)
    #[argh(option, default = "8")]
    upload_slots: usize,
    /// simulation step (default 10ms)
    #[argh(option, default = "String::from(\"10ms\")")]
    step: String,
    /// check every core's internal counts every N steps (default 0: never; slow)
    #[argh(option, default = "0")]
    check_every: u64,
    /// print one JSON object on standard output
    #[argh(switch)]
    json: bool,
    /// draw completion over time to this PNG file (needs python3 with matplotlib)
    #[argh(option)]
    plot: Option<String>,
}

fn rate(s: &str) -> Result<u64, String> {
    let l = s.to_ascii_lowercase();
    for (suffix, mult) in [
        ("gbit", 1e9 / 8.0),
        ("mbit", 1e6 / 8.0),
        ("kbit", 1e3 / 8.0),
    ] {
        if let Some(n) = l.strip_suffix(suffix) {
            let v: f64 = n.parse().map_err(|_| format!("bad rate: {s}"))?;
            return Ok((v * mult) as u64);
        }
    }
    units::parse_size(s)
}

/// A duration that may be given in milliseconds ("1ms", "10ms") as well as units::parse_duration's forms.
fn duration(s: &str) -> Result<Duration, String> {
    match s.strip_suffix("ms") {
        Some(n) => n
            .parse::<f64>()
            .map(|v| Duration::from_secs_f64(v / 1000.0))
            .map_err(|_| format!("bad duration: {s}")),
        None => units::parse_duration(s),
    }
}

fn rates(s: &str) -> Result<Vec<(f64, u64)>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once(':') {
            Some((pct, r)) => {
                let p: f64 = pct
                    .trim_end_matches('%')
                    .parse()
                    .map_err(|_| format!("bad share: {pct}"))?;
                out.push((p / 100.0, rate(r)?));
            }
            None => out.push((1.0, rate(part)?)),
        }
    }
    Ok(out)
}

fn scenario(a: &Args) -> Result<Scenario, String> {
    let size = units::parse_size(&a.size)?;
    let rs = rates(&a.rate)?;
    let mut sc = Scenario::new(a.hosts, size, rs[0].1);
    sc.rates = rs;
    if let Some(p) = &a.piece_length {
        sc.piece_length = units::parse_piece_length(p)?;
    }
    if let Some(b) = &a.block {
        sc.block = units::parse_size(b)? as u32;
    }
    sc.origin_rate = a.origin_rate.as_deref().map(rate).transpose()?;
    sc.latency = duration(&a.latency)?;
    sc.super_seed = a.super_seed;
    sc.seed = a.seed;
    sc.churn = a.churn;
    sc.hostile = a.hostile;
    sc.web_seed = a.web_seed;
    sc.max_peers = a.max_peers;
    sc.upload_slots = a.upload_slots;
    sc.step = duration(&a.step)?;
    sc.check_every = a.check_every;
    if let Some(c) = &a.origin_crash {
        let (at, secs) = c
            .split_once(':')
            .ok_or("--origin-crash wants AT_FRACTION:DOWN_SECS")?;
        let at: f64 = at.parse().map_err(|_| format!("bad fraction: {at}"))?;
        let secs: f64 = secs
            .trim_end_matches('s')
            .parse()
            .map_err(|_| format!("bad seconds: {secs}"))?;
        sc.origin_crash = Some((at, Duration::from_secs_f64(secs)));
    }
    if sc.web_seed && (sc.origin_crash.is_some() || sc.super_seed) {
        return Err("--web-seed cannot be combined with --origin-crash or --super-seed".into());
    }
    if sc.step.is_zero() || sc.block == 0 || sc.block as u64 > sc.piece_length {
        return Err("--step and --block must be positive, --block at most the piece length".into());
    }
    Ok(sc)
}

fn plot(o: &Outcome, file: &str) -> Result<(), String> {
    let xs: Vec<String> = o.timeline.iter().map(|p| format!("{:.3}", p.0)).collect();
    let ys: Vec<String> = o.timeline.iter().map(|p| p.1.to_string()).collect();
    let script = format!(
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n\
         xs=[{}]\nys=[{}]\nfb={}\n\
         plt.figure(figsize=(8,4.5))\nplt.step(xs,ys,where='post',label='hosts complete (simulated)')\n\
         plt.axvline(fb,color='grey',ls='--',label='F/B')\n\
         plt.xlabel('seconds');plt.ylabel('hosts with every piece verified')\n\
         plt.title('fleetsim: {} hosts x {} at {}')\nplt.legend(loc='lower right')\nplt.grid(alpha=.3)\n\
         plt.savefig({:?},dpi=110,bbox_inches='tight')\n",
        xs.join(","),
        ys.join(","),
        o.f_over_b_secs,
        o.hosts,
        units::human_bytes(o.size),
        "the given rates",
        file
    );
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let st = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .status()
        .map_err(|e| format!("python3: {e}"))?;
    if !st.success() {
        return Err("python3 could not draw the plot (is matplotlib installed?)".into());
    }
    Ok(())
}

fn secs(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.1} s")).unwrap_or_else(|| "-".into())
}

fn main() {
    let a: Args = argh::from_env();
    let sc = match scenario(&a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fleetsim: {e}");
            std::process::exit(2);
        }
    };
    let o = Sim::new(sc).run();
    let fb = o.f_over_b_secs;
    let ratio = |x: Option<f64>| {
        x.map(|v| format!("{:.3}", v / fb))
            .unwrap_or_else(|| "-".into())
    };
    eprintln!(
        "fleetsim: {} hosts x {} (piece {}, block {}), seed {}",
        o.hosts,
        units::human_bytes(o.size),
        units::human_bytes(o.piece_length),
        units::human_bytes(o.block as u64),
        o.seed
    );
    eprintln!("  F/B              {fb:.1} s");
    eprintln!(
        "  last host        {} ({} x F/B)",
        secs(o.last_secs),
        ratio(o.last_secs)
    );
    eprintln!(
        "  fastest class    {} ({} x F/B)",
        secs(o.fast_last_secs),
        ratio(o.fast_last_secs)
    );
    eprintln!(
        "  median / p99     {} / {}",
        secs(o.median_secs),
        secs(o.p99_secs)
    );
    eprintln!(
        "  origin uploaded  {} ({:.3} x F)",
        units::human_bytes(o.origin_uploaded),
        o.origin_uploaded as f64 / o.size as f64
    );
    eprintln!(
        "  complete         {}/{} honest; hostile banned {}/{}",
        o.complete, o.honest, o.banned, o.hostile
    );
    eprintln!(
        "  wall             {:.1} s for {:.1} simulated s, {} events",
        o.wall_secs, o.sim_secs, o.events
    );
    for v in &o.violations {
        eprintln!("  VIOLATION: {v}");
    }
    if a.json {
        println!("{}", serde_json::to_string(&o).expect("outcome serializes"));
    }
    if let Some(f) = &a.plot {
        if let Err(e) = plot(&o, f) {
            eprintln!("fleetsim: {e}");
            std::process::exit(2);
        }
    }
    let ok = o.violations.is_empty() && o.complete == o.honest;
    std::process::exit(if ok { 0 } else { 1 });
}
