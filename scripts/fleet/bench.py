#!/usr/bin/python3
"""bench.py — the fleet benchmark behind scripts/bench-fleet.sh (run that, as root).

On the namespace testbed (scripts/testbed.sh), distribute one random file from the origin (host 0)
to N hosts with every method, one method after another, and compare:

  ring       calibration, not a way to distribute: every host streams F bytes of zeros to its
             neighbour over one TCP connection, all at once — what this box's kernel and CPUs can
             carry when every link is busy (a swarm cannot beat it)
  seq        status quo: rsync daemon on the origin, hosts copy one after another
  parallel   the same, every host at once
  shoal      btrack + bseed --super-seed on the origin, bfetch --seed-until-done on every host
  shoal-web  no bseed: nginx on the origin serves the file, the torrent names it as a web seed
             (BEP 19 url-list), bfetch --seed-until-done on every host (issue 11); the origin's
             upload is then nginx's egress
  libtorrent python3-libtorrent seed on the origin, a libtorrent peer on every host
  transmission transmission-cli on the origin and on every host
  aria2      aria2c on the origin and on every host
  shoal-site shoal with btrack --site CIDR=NAME for each site's subnet (only with --sites or --only)

With --sites S (issue 11), the testbed has S sites, each its own bridge and subnet, joined by one
router whose links are shaped (scripts/testbed.sh); origin and tracker are on site 1. The default
methods are then shoal and shoal-site, and every row also reports the bytes that crossed the
inter-site link (the router's interface counters, after minus before): into the remote sites, into
site 1, and the total as a multiple of F per remote site.

Every swarm uses the same .torrent (made by our mktorrent) announcing to a tracker on the origin:
our btrack. A fresh tracker is started for every method, so no method sees another's peers.

Measured per method: time until the last host has a complete copy (rsync: the copy finished — rsync
checks a whole-file checksum itself; torrent clients: the client declared the torrent complete, which
it only does after every piece passed its SHA-1 check), the median host time, the origin's upload
(tx_bytes of eth0 inside the origin namespace, after minus before) as a multiple of the file size F,
and the last host's time over the physical limit F/B (B = link rate). Every copy is then checked
byte-for-byte (SHA-1 against the origin's, plus `bverify` for the shoal row); a method where any
host misses or fails the check is reported as failed with the reason. Each method has its own
timeout. Every process is started in its own process group and killed when its method ends.

Invariants: only testbed addresses are ever contacted; nothing outlives the run (the caller,
bench-fleet.sh, also tears the testbed down on exit)."""
import argparse
import datetime
import hashlib
import json
import os
import resource
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TESTBED = os.path.join(REPO, "scripts", "testbed.sh")
PY = "/usr/bin/python3"  # Debian's, with python3-libtorrent and python3-matplotlib
METHODS = ["ring", "seq", "parallel", "shoal", "shoal-web", "libtorrent", "transmission", "aria2"]
EXTRA_METHODS = ["shoal-plain", "shoal-site"]  # only with --only (shoal-site: the default with --sites)
SITE_METHODS = ["shoal", "shoal-site"]  # the default with --sites
LABELS = {
    "ring": "calibration: raw TCP ring, no BT",
    "seq": "rsync, one host after another",
    "parallel": "rsync, all hosts at once",
    "shoal": "shoal (bseed --super-seed, bfetch)",
    "shoal-plain": "shoal (bseed, bfetch)",
    "shoal-site": "shoal, btrack --site per site",
    "shoal-web": "shoal, nginx web seed as the only origin",
    "libtorrent": "libtorrent 2.0 swarm",
    "transmission": "transmission-cli swarm",
    "aria2": "aria2c swarm",
}
PORT = 6881
TRACKER_PORT = 6969

PREFIX = os.environ.get("SHOAL_TESTBED_PREFIX", "shoal")
LIVE = []  # every Popen we started, for the final cleanup
# The testbed's layout (scripts/testbed.sh): SITES sites over hosts 1..COUNT, set by main().
SITES = 1
COUNT = 1


def log(msg):
    print("bench-fleet: " + msg, file=sys.stderr, flush=True)


def ns(i):
    return "%s-h%d" % (PREFIX, i)


def site_of(i):
    """Site (1..SITES) of host i, as scripts/testbed.sh assigns it: the origin in site 1, hosts
    1..COUNT split into SITES contiguous groups."""
    if i == 0 or SITES <= 1:
        return 1
    return 1 + (i - 1) * SITES // COUNT


def site_net(k):
    return "10.%d.0.0/16" % (76 + k)


def addr(i):
    return "10.%d.%d.%d" % (76 + site_of(i), i // 250, i % 250 + 1)


def site_of_addr(ip):
    """Site of a testbed address (10.(76+K).x.y), or None."""
    m = re.fullmatch(r"10\.(\d+)\.\d+\.\d+", ip)
    if not m or not 1 <= int(m.group(1)) - 76 <= SITES:
        return None
    return int(m.group(1)) - 76


def link_bytes():
    """{site: (into, out)}: bytes that entered and left each site through the inter-site router
    (its interface sK: tx = into site K, rx = out of site K)."""
    out = {}
    for k in range(1, SITES + 1):
        r = subprocess.run(["ip", "netns", "exec", "%s-rt" % PREFIX, "cat",
                            "/sys/class/net/s%d/statistics/tx_bytes" % k,
                            "/sys/class/net/s%d/statistics/rx_bytes" % k], capture_output=True, check=True)
        tx, rx = (int(x) for x in r.stdout.split())
        out[k] = (tx, rx)
    return out


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMGT]?)(i?B)?", s.strip(), re.I)
    if not m:
        raise SystemExit("bench-fleet: error: bad size %r (e.g. 64M, 1G)" % s)
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(m.group(1)) * mult


def parse_rate(s):
    """tc rate (100mbit, 20mbit, 1gbit, 12mbps) -> bytes per second."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)(bit|bps)", s.strip().lower())
    if not m:
        raise SystemExit("bench-fleet: error: bad rate %r (e.g. 100mbit)" % s)
    mult = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
    v = float(m.group(1)) * mult
    return v / 8 if m.group(3) == "bit" else v


def spawn(host, argv, logpath, env=None, cwd=None):
    """Start argv inside host's namespace in its own process group."""
    full = ["ip", "netns", "exec", ns(host)] + [str(a) for a in argv]
    lf = open(logpath, "ab")
    lf.write(("$ %s\n" % " ".join(full)).encode())
    lf.flush()
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                         env=e, cwd=cwd, start_new_session=True)
    p._logfile = lf
    p._host = host
    LIVE.append(p)
    return p


def spawn_capture(host, argv, out_path, logpath, env=None):
    """Like spawn, but stdout goes to out_path (for --json reports) and stderr to the log."""
    full = ["ip", "netns", "exec", ns(host)] + [str(a) for a in argv]
    lf = open(logpath, "ab")
    lf.write(("$ %s\n" % " ".join(full)).encode())
    lf.flush()
    of = open(out_path, "wb")
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=of, stderr=lf, env=e, start_new_session=True)
    p._logfile = lf
    p._outfile = of
    p._host = host
    LIVE.append(p)
    return p


def stop(procs, grace=5.0):
    """SIGTERM each process group, wait up to grace seconds, then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        for f in ("_logfile", "_outfile"):
            if hasattr(p, f):
                getattr(p, f).close()
        if p in LIVE:
            LIVE.remove(p)


def run_in(host, argv, timeout=60):
    return subprocess.run(["ip", "netns", "exec", ns(host)] + [str(a) for a in argv],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)


def origin_tx():
    out = run_in(0, ["cat", "/sys/class/net/eth0/statistics/tx_bytes"]).stdout
    return int(out.strip())


def cpu_times():
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def sha1_file(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def wait_port(host, ip, port, proc, timeout=30):
    """Wait until something accepts TCP connections on ip:port inside host."""
    deadline = time.monotonic() + timeout
    probe = ("import socket,sys\ns=socket.socket()\ns.settimeout(1)\n"
             "sys.exit(0 if s.connect_ex((%r,%d))==0 else 1)" % (ip, port))
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if run_in(host, [PY, "-c", probe]).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def scrape(bin_dir, info_hash_hex):
    """(complete, incomplete) as the origin's tracker sees it, or None. The bencoded answer is
    decoded by our own `bdecode` (JSON out; the binary info-hash key is not needed)."""
    ih = "".join("%%%s" % info_hash_hex[k:k + 2] for k in range(0, 40, 2))
    url = "http://%s:%d/scrape?info_hash=%s" % (addr(0), TRACKER_PORT, ih)
    try:
        r = run_in(0, ["curl", "-s", "--max-time", "3", url], timeout=10)
        j = subprocess.run([os.path.join(bin_dir, "bdecode"), "--compact"], input=r.stdout,
                           capture_output=True, timeout=10)
        if j.returncode != 0:
            return None
        files = json.loads(j.stdout).get("files", {})
        for v in files.values():
            return v.get("complete", 0), v.get("incomplete", 0)
        return (0, 0)
    except (OSError, ValueError, AttributeError, subprocess.SubprocessError):
        return None


class Bench:
    def __init__(self, a):
        self.a = a
        self.n = a.hosts
        self.size = parse_size(a.size)
        self.rate_bps = parse_rate(a.rate)
        self.fb = self.size / self.rate_bps
        self.bin = a.bin_dir
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = os.path.abspath(a.out or os.path.join(REPO, "results", "fleet-" + stamp))
        os.makedirs(self.out, exist_ok=True)
        self.logs = os.path.join(self.out, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.work = a.work or "/tmp/shoal-fleet-%d" % os.getpid()
        os.makedirs(self.work, exist_ok=True)
        self.name = "fleet-%s.bin" % a.size
        self.origin_dir = os.path.join(self.work, "origin")
        self.origin_file = os.path.join(self.origin_dir, self.name)
        self.torrent = os.path.join(self.work, self.name + ".torrent")
        self.results = []

    # ---------------------------------------------------------------- setup
    def require_tools(self):
        """Our binaries must be built (scripts/bench-fleet.sh builds them)."""
        missing = [t for t in ("mktorrent", "bdecode", "bverify", "btrack", "bseed", "bfetch")
                   if not os.access(os.path.join(self.bin, t), os.X_OK)]
        if missing:
            raise RuntimeError("not built in %s: %s (cargo build --release)" % (self.bin, ", ".join(missing)))

    def setup(self):
        a = self.a
        self.require_tools()
        up = [TESTBED, "up", str(self.n), "--rate", a.rate]
        if SITES > 1:
            up += ["--sites", str(SITES), "--inter-rate", a.inter_rate or a.rate]
            log("testbed: %d hosts + origin in %d sites (%s), %s links, inter-site link %s" % (
                self.n, SITES, ", ".join("site %d: hosts %s" % (k, ",".join(str(i) for i in range(self.n + 1) if site_of(i) == k))
                                         for k in range(1, SITES + 1)), a.rate, a.inter_rate or a.rate))
        else:
            log("testbed: %d hosts + origin, %s links" % (self.n, a.rate))
        subprocess.run(up, check=True)
        os.makedirs(self.origin_dir, exist_ok=True)
        log("writing %d random bytes to %s" % (self.size, self.origin_file))
        with open(self.origin_file, "wb") as f:
            left = self.size
            while left:
                n = min(left, 1 << 22)
                f.write(os.urandom(n))
                left -= n
        self.sha1 = sha1_file(self.origin_file)
        mk = os.path.join(self.bin, "mktorrent")
        r = subprocess.run([mk, "-q", "-f", "--json", "-a", "http://%s:%d/announce" % (addr(0), TRACKER_PORT),
                            "-o", self.torrent, self.origin_file], capture_output=True, check=True)
        info = json.loads(r.stdout)
        self.info_hash = info.get("info_hash") or info.get("infohash")
        self.piece_length = info.get("piece_length")
        log("torrent %s info_hash %s piece length %s" % (self.torrent, self.info_hash, self.piece_length))

    # ---------------------------------------------------------------- tracker
    def start_tracker(self, tag, extra=()):
        d = os.path.join(self.work, "tracker-" + tag)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        lp = os.path.join(self.logs, "%s-tracker.log" % tag)
        p = spawn(0, [os.path.join(self.bin, "btrack"), "--listen", "%s:%d" % (addr(0), TRACKER_PORT),
                      "--data-dir", d, "--open",
                      # A testbed of our own namespaces: uploads and registrations stay open.
                      "--open-admin"] + list(extra), lp)
        if not wait_port(0, addr(0), TRACKER_PORT, p, timeout=30):
            stop([p])
            raise RuntimeError("btrack did not start (see %s)" % lp)
        # Register the torrent too (harmless with --open; needed without it).
        run_in(0, ["curl", "-s", "--max-time", "10", "-X", "POST", "--data-binary", "@" + self.torrent,
                   "-H", "Content-Type: application/x-bittorrent",
                   "http://%s:%d/api/torrents" % (addr(0), TRACKER_PORT)], timeout=20)
        return p

    def wait_seeded(self, seed_proc, timeout):
        """Wait until the tracker lists a complete peer (the origin's seed has checked its data)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if seed_proc.poll() is not None:
                return "origin seed exited with %s" % seed_proc.returncode
            s = scrape(self.bin, self.info_hash)
            if s and s[0] >= 1:
                return None
            time.sleep(0.3)
        return "origin seed not registered as complete with the tracker after %ds" % timeout

    # ---------------------------------------------------------------- one method
    def host_dir(self, method, i):
        return os.path.join(self.work, method, "h%d" % i)

    def timeout_for(self, method):
        if self.a.timeout:
            return self.a.timeout
        if method in ("seq", "parallel"):
            return max(120.0, 2.0 * self.n * self.fb + 60)
        return max(120.0, 10.0 * self.fb + 60)

    def run_method(self, method):
        log("=== %s ===" % method)
        res = {"method": method, "label": LABELS[method], "status": "ok", "notes": [],
               "times": {}, "tracker": None}
        for i in range(1, self.n + 1):
            d = self.host_dir(method, i)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        procs = []
        cpu0 = cpu_times()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        link0 = link_bytes() if SITES > 1 else None
        try:
            fn = getattr(self, "m_" + method.replace("-", "_"))
            fn(res, procs)
        except Exception as e:  # a method that breaks is reported, never hidden
            res["status"] = "failed"
            res["notes"].append("error: %s" % e)
        finally:
            cpu1 = cpu_times()
            if link0 is not None:
                # Before stopping anything: what the run itself sent across (lingering seeds included).
                link1 = link_bytes()
                res["link"] = {k: (link1[k][0] - link0[k][0], link1[k][1] - link0[k][1]) for k in link1}
            stop(procs)
        # CPU used by the processes the method started (all reaped by now; every tool of the
        # method: trackers, seeds, fetchers), per GB (10^9 bytes) delivered to the hosts.
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res["tools_cpu_s"] = (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime)
        if not res.get("no_copy"):
            res["tools_cpu_per_gb"] = res["tools_cpu_s"] / (self.n * self.size / 1e9)
            res["notes"].append("tools used %.1f CPU-s, %.2f CPU-s per GB delivered" % (
                res["tools_cpu_s"], res["tools_cpu_per_gb"]))
        # How busy the whole machine was (every process, every core) while the method ran: near 100%
        # means the numbers are CPU-bound, not network-bound.
        if cpu1[1] > cpu0[1]:
            res["cpu_busy"] = (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1])
            res["notes"].append("machine CPU busy %.0f%% (%d cores)" % (100 * res["cpu_busy"], os.cpu_count()))
        if res.get("no_copy"):
            res["notes"].append("no file copied: link capacity check only")
        elif res["status"] == "ok" or res["times"]:
            self.check_copies(method, res)
        n_done = len(res["times"])
        if n_done < self.n and res["status"] == "ok":
            res["status"] = "failed"
        if res["times"]:
            ts = sorted(res["times"].values())
            res["last"] = ts[-1] if n_done == self.n else None
            res["median"] = statistics.median(ts) if n_done == self.n else None
        res["done_hosts"] = n_done
        if res.get("origin_tx") is not None:
            res["origin_x"] = res["origin_tx"] / self.size
        if res.get("last"):
            res["vs_limit"] = res["last"] / self.fb
        if res.get("link"):
            lk = res["link"]
            res["into_remote"] = sum(lk[k][0] for k in lk if k != 1)
            res["into_site1"] = lk[1][0]
            # Every byte that crosses enters exactly one site.
            res["cross_x"] = (res["into_remote"] + res["into_site1"]) / (self.size * (SITES - 1))
            res["into_remote_max_x"] = max(lk[k][0] for k in lk if k != 1) / self.size
            res["notes"].append("inter-site link: %s" % "; ".join(
                "site %d in %.1f MB out %.1f MB" % (k, lk[k][0] / 1e6, lk[k][1] / 1e6) for k in sorted(lk)))
        # Reports (bfetch --json: per-peer bytes each way) are kept with the logs.
        mdir = os.path.join(self.work, method)
        for f in sorted(os.listdir(mdir)) if os.path.isdir(mdir) else []:
            if f.startswith("report-") and f.endswith(".json"):
                shutil.copy(os.path.join(mdir, f), os.path.join(self.logs, "%s-%s" % (method, f)))
        for i in range(1, self.n + 1):
            shutil.rmtree(self.host_dir(method, i), ignore_errors=True)
        shutil.rmtree(mdir, ignore_errors=True)
        self.results.append(res)
        self.print_row(res)
        self.save()

    def check_copies(self, method, res):
        bad = []
        for i in sorted(res["times"]):
            f = os.path.join(self.host_dir(method, i), self.name)
            if not os.path.exists(f) or os.path.getsize(f) != self.size or sha1_file(f) != self.sha1:
                bad.append(i)
                continue
            if method.startswith("shoal"):
                r = subprocess.run([os.path.join(self.bin, "bverify"), self.torrent, f], capture_output=True)
                if r.returncode != 0:
                    bad.append(i)
        if bad:
            res["status"] = "failed"
            res["notes"].append("copy missing or wrong on host(s) %s" % ",".join(map(str, bad)))
            for i in bad:
                res["times"].pop(i, None)
        else:
            res["notes"].append("%d/%d copies byte-identical%s" % (
                len(res["times"]), self.n, " (bverify ok)" if method.startswith("shoal") else ""))

    def watch(self, res, procs_by_host, done_fn, t0, timeout, what):
        """Poll until every host is done (done_fn(i) -> wall time or None), a host fails, or timeout."""
        deadline = time.monotonic() + timeout
        pending = set(range(1, self.n + 1))
        while pending and time.monotonic() < deadline:
            for i in sorted(pending):
                t = done_fn(i)
                if t is not None:
                    res["times"][i] = max(0.0, t - t0)
                    pending.discard(i)
                    continue
                p = procs_by_host.get(i)
                if p is not None and p.poll() is not None:
                    t = done_fn(i)  # it may have finished just before exiting
                    if t is not None:
                        res["times"][i] = max(0.0, t - t0)
                    else:
                        res["notes"].append("host %d: %s exited with %s before completing" % (i, what, p.returncode))
                        res["status"] = "failed"
                    pending.discard(i)
            time.sleep(0.1)
        if pending:
            res["status"] = "failed"
            res["notes"].append("timeout after %ds: %d/%d hosts done" % (timeout, len(res["times"]), self.n))

    # ---------------------------------------------------------------- calibration
    def m_ring(self, res, procs):
        res["tracker"] = "-"
        nc = os.path.join(HERE, "netcheck.py")
        if self.n < 2:
            res["status"] = "n/a"
            res["notes"].append("needs 2 hosts")
            return
        outs = {}
        by_host = {}
        # Senders retry connecting for 10 s, so receivers need no readiness probe (a probe would
        # be the receiver's one accepted connection).
        for i in range(1, self.n + 1):
            outs[i] = os.path.join(self.work, "ring", "recv-h%d.json" % i)
            p = spawn_capture(i, [PY, nc, "recv", addr(i), 5001], outs[i], os.path.join(self.logs, "ring-recv-h%d.log" % i))
            procs.append(p)
            by_host[i] = p
        time.sleep(0.5)
        tx0 = origin_tx()
        t0 = time.time()
        for i in range(1, self.n + 1):
            nxt = i % self.n + 1
            procs.append(spawn(i, [PY, nc, "send", addr(nxt), 5001, self.size], os.path.join(self.logs, "ring-send-h%d.log" % i)))
        ends = {}

        def done(i):
            if by_host[i].poll() == 0:
                ends.setdefault(i, time.time())
                return ends[i]
            return None
        self.watch(res, by_host, done, t0, max(60.0, 4 * self.fb + 30), "receiver")
        res["origin_tx"] = origin_tx() - tx0
        res["no_copy"] = True

    # ---------------------------------------------------------------- rsync
    def start_rsyncd(self, procs, tag):
        conf = os.path.join(self.work, "rsyncd.conf")
        with open(conf, "w") as f:
            f.write("address = %s\nport = 873\nuse chroot = no\nuid = root\ngid = root\nmax connections = 0\n"
                    "[data]\n    path = %s\n    read only = yes\n" % (addr(0), self.origin_dir))
        p = spawn(0, ["rsync", "--daemon", "--no-detach", "--config=" + conf], os.path.join(self.logs, tag + "-rsyncd.log"))
        procs.append(p)
        if not wait_port(0, addr(0), 873, p):
            raise RuntimeError("rsync daemon did not start")

    def rsync_argv(self, i):
        return ["rsync", "--whole-file", "rsync://%s/data/%s" % (addr(0), self.name), self.host_dir_cur(i) + "/"]

    def m_seq(self, res, procs):
        self.cur = "seq"
        self.start_rsyncd(procs, "seq")
        res["tracker"] = "-"
        tx0 = origin_tx()
        t0 = time.time()
        deadline = time.monotonic() + self.timeout_for("seq")
        for i in range(1, self.n + 1):
            p = spawn(i, self.rsync_argv(i), os.path.join(self.logs, "seq-h%d.log" % i))
            procs.append(p)
            try:
                rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                res["status"] = "failed"
                res["notes"].append("timeout after %ds: %d/%d hosts done" % (self.timeout_for("seq"), i - 1, self.n))
                break
            if rc == 0:
                res["times"][i] = time.time() - t0
            else:
                res["status"] = "failed"
                res["notes"].append("host %d: rsync exited with %d" % (i, rc))
        res["origin_tx"] = origin_tx() - tx0

    def host_dir_cur(self, i):
        return self.host_dir(self.cur, i)

    def m_parallel(self, res, procs):
        self.cur = "parallel"
        self.start_rsyncd(procs, "parallel")
        res["tracker"] = "-"
        tx0 = origin_tx()
        t0 = time.time()
        by_host = {}
        ends = {}
        for i in range(1, self.n + 1):
            p = spawn(i, self.rsync_argv(i), os.path.join(self.logs, "parallel-h%d.log" % i))
            procs.append(p)
            by_host[i] = p

        def done(i):
            p = by_host[i]
            if p.poll() == 0:
                ends.setdefault(i, time.time())
                return ends[i]
            return None
        self.watch(res, by_host, done, t0, self.timeout_for("parallel"), "rsync")
        res["origin_tx"] = origin_tx() - tx0

    # ---------------------------------------------------------------- swarms
    def swarm(self, res, procs, method, seed_argv, host_argv, done_fn, env_fn=None, seed_env=None,
              after=None, tracker_extra=()):
        """Common shape of every swarm: tracker, origin seed, then every host at once."""
        res["tracker"] = "btrack+site" if tracker_extra else "btrack"
        procs.append(self.start_tracker(method, tracker_extra))
        seed = spawn(0, seed_argv, os.path.join(self.logs, "%s-origin.log" % method), env=seed_env)
        procs.append(seed)
        err = self.wait_seeded(seed, timeout=max(120, self.size / 50e6 * 4))
        if err:
            raise RuntimeError(err)
        tx0 = origin_tx()
        t0 = time.time()
        by_host = {}
        for i in range(1, self.n + 1):
            env = env_fn(i) if env_fn else None
            argv = host_argv(i)
            if isinstance(argv, tuple):  # (argv, stdout path)
                p = spawn_capture(i, argv[0], argv[1], os.path.join(self.logs, "%s-h%d.log" % (method, i)), env=env)
            else:
                p = spawn(i, argv, os.path.join(self.logs, "%s-h%d.log" % (method, i)), env=env)
            procs.append(p)
            by_host[i] = p
        self.watch(res, by_host, done_fn, t0, self.timeout_for(method), method)
        if after:
            after(res, by_host, t0)
        res["origin_tx"] = origin_tx() - tx0

    def marker(self, method, i):
        return os.path.join(self.work, method, "done-h%d" % i)

    def marker_time(self, path):
        try:
            with open(path) as f:
                return float(f.read().strip())
        except (OSError, ValueError):
            return None

    def appeared(self, method, i, seen={}):
        """Wall time at which DIR/<name> (the final, verified name) was first seen."""
        key = (method, i)
        if key in seen:
            return seen[key]
        if os.path.exists(os.path.join(self.host_dir(method, i), self.name)):
            seen[key] = time.time()
            return seen[key]
        return None

    def m_shoal_web(self, res, procs):
        """nginx on the origin is the only source: no bseed. Its egress is the origin's tx."""
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(nginx, os.X_OK):
            raise RuntimeError("nginx is not installed (nginx-light; see scripts/test.sh)")
        m = "shoal-web"
        b = lambda t: os.path.join(self.bin, t)
        d = os.path.join(self.work, "nginx")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(os.path.join(d, "tmp"))
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("daemon off;\nmaster_process off;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                    "events { worker_connections 1024; }\nhttp {\n  access_log %s/access.log;\n"
                    "  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;\n"
                    "  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;\n  sendfile on;\n"
                    "  server { listen %s:8080; root %s; }\n}\n" % ((d,) * 8 + (addr(0), self.origin_dir)))
        p = spawn(0, [nginx, "-c", conf, "-p", d], os.path.join(self.logs, "%s-nginx.log" % m))
        procs.append(p)
        if not wait_port(0, addr(0), 8080, p):
            raise RuntimeError("nginx did not start")
        url = "http://%s:8080/" % addr(0)
        torrent = os.path.join(self.work, "web-" + os.path.basename(self.torrent))
        subprocess.run([b("mktorrent"), "-q", "-f", "-a", "http://%s:%d/announce" % (addr(0), TRACKER_PORT),
                        "-w", url, "-l", str(self.piece_length), "-o", torrent, self.origin_file],
                       capture_output=True, check=True)
        res["notes"].append("web seed %s (nginx, sendfile on); origin upload = nginx egress" % url)
        res["tracker"] = "btrack"
        procs.append(self.start_tracker(m))
        reports = {i: os.path.join(self.work, m, "report-h%d.json" % i) for i in range(1, self.n + 1)}
        tx0 = origin_tx()
        t0 = time.time()
        by_host = {}
        for i in range(1, self.n + 1):
            argv = [b("bfetch"), torrent, "-o", self.host_dir(m, i), "--port", PORT,
                    "--seed-until-done", "--json", "--timeout", "%ds" % int(self.timeout_for(m))]
            p = spawn_capture(i, argv, reports[i], os.path.join(self.logs, "%s-h%d.log" % (m, i)))
            procs.append(p)
            by_host[i] = p
        self.watch(res, by_host, lambda i: self.appeared(m, i), t0, self.timeout_for(m), m)
        res["origin_tx"] = origin_tx() - tx0
        # --seed-until-done: each bfetch leaves once the swarm is done and prints its report.
        deadline = time.monotonic() + 60 + self.fb
        while time.monotonic() < deadline and any(p.poll() is None for p in by_host.values()):
            time.sleep(0.2)
        res["notes"].append("bfetch exited 0 by itself on %d/%d hosts" % (
            sum(p.poll() == 0 for p in by_host.values()), self.n))
        web = 0
        fetchers = 0
        for i in by_host:
            try:
                by_host[i]._outfile.flush()
                with open(reports[i]) as f:
                    rep = json.load(f)
            except (OSError, ValueError):
                continue  # still lingering: its report comes when it exits
            got = sum(w.get("downloaded", 0) for w in rep.get("web_seeds", []))
            web += got
            fetchers += got > 0
        if web:
            res["notes"].append("web seed bytes counted by the exited bfetches: %.2f x F, from %d hosts" % (web / self.size, fetchers))

    def m_shoal_plain(self, res, procs):
        self.m_shoal(res, procs, plain=True)

    def m_shoal_site(self, res, procs):
        self.m_shoal(res, procs, sites=True)

    def m_shoal(self, res, procs, plain=False, sites=False):
        m = "shoal-plain" if plain else "shoal-site" if sites else "shoal"
        tracker_extra = []
        if sites:
            for k in range(1, SITES + 1):
                tracker_extra += ["--site", "%s=site%d" % (site_net(k), k)]
            res["notes"].append("btrack %s" % " ".join(tracker_extra))
        b = lambda t: os.path.join(self.bin, t)
        reports = {i: os.path.join(self.work, m, "report-h%d.json" % i) for i in range(1, self.n + 1)}
        seed_argv = [b("bseed"), self.torrent, self.origin_file, "--port", PORT]
        if plain or self.a.shoal_plain_seed:
            res["notes"].append("origin without --super-seed")
            res["label"] = LABELS["shoal-plain"]
        else:
            seed_argv.append("--super-seed")

        def host_argv(i):
            return ([b("bfetch"), self.torrent, "-o", self.host_dir(m, i), "--port", PORT,
                     "--seed-until-done", "--json", "--timeout", "%ds" % int(self.timeout_for(m))],
                    reports[i])

        def after(res, by_host, t0):
            # --seed-until-done: every bfetch should now leave on its own, exit 0, once the swarm is done.
            deadline = time.monotonic() + 60 + self.fb
            exit_at = {}
            while time.monotonic() < deadline and len(exit_at) < len(by_host):
                for i, p in by_host.items():
                    if i not in exit_at and p.poll() is not None:
                        exit_at[i] = time.time() - t0
                time.sleep(0.1)
            exited = [i for i, p in by_host.items() if p.poll() == 0]
            res["exit_times"] = exit_at
            res["notes"].append("bfetch exited 0 by itself on %d/%d hosts%s" % (
                len(exited), self.n, ", the last at %.1f s (when an Ansible run would finish)" % max(exit_at.values())
                if len(exited) == self.n else ""))
            up = {}
            for i in by_host:
                by_host[i]._outfile.flush()
                try:
                    with open(reports[i]) as f:
                        rep = json.load(f)
                    up[i] = rep.get("uploaded")
                except (OSError, ValueError):
                    up[i] = None
            res["host_uploaded"] = up
            helped = [i for i, u in up.items() if u]
            res["notes"].append("%d/%d hosts uploaded to others" % (len(helped), self.n))
            if SITES > 1:
                self.cross_site_peers(res, reports)

        self.swarm(res, procs, m, seed_argv, host_argv, lambda i: self.appeared(m, i), after=after,
                   tracker_extra=tracker_extra)

    def cross_site_peers(self, res, reports):
        """From every bfetch --json report: which hosts downloaded from another site, and how much
        (the tools' own payload counts, next to the router's counters)."""
        got = {}
        for i, path in reports.items():
            try:
                with open(path) as f:
                    rep = json.load(f)
            except (OSError, ValueError):
                continue
            far = 0
            n_far = 0
            for p in rep.get("peers", []):
                a = p.get("addr", "")
                ip = a.rsplit(":", 1)[0].strip("[]") if ":" in a else a
                k = site_of_addr(ip)
                if k is not None and k != site_of(i) and p.get("downloaded", 0) > 0:
                    far += p.get("downloaded", 0)
                    n_far += 1
            if far:
                got[i] = (far, n_far)
        res["cross_site_downloads"] = got
        res["notes"].append("hosts that downloaded from another site (payload MB from N peers): %s" % (
            ", ".join("h%d(site %d) %.1f MB from %d" % (i, site_of(i), v[0] / 1e6, v[1]) for i, v in sorted(got.items()))
            or "none"))

    def m_libtorrent(self, res, procs):
        s = os.path.join(HERE, "lt_swarm.py")
        os.makedirs(os.path.join(self.work, "libtorrent"), exist_ok=True)
        seed_argv = [PY, s, "seed", self.torrent, self.origin_dir, "--port", PORT]
        if self.a.lt_super_seed:
            seed_argv.append("--super-seed")
            res["notes"].append("origin super-seeding")
        self.swarm(res, procs, "libtorrent", seed_argv,
                   lambda i: [PY, s, "fetch", self.torrent, self.host_dir("libtorrent", i), "--port", PORT,
                              "--done-file", self.marker("libtorrent", i)],
                   lambda i: self.marker_time(self.marker("libtorrent", i)))

    def tr_config(self, d):
        os.makedirs(d, exist_ok=True)
        settings = {
            "dht-enabled": False, "lpd-enabled": False, "port-forwarding-enabled": False,
            "pex-enabled": True, "utp-enabled": True, "encryption": 0,
            "peer-limit-global": 500, "peer-limit-per-torrent": 200,
            "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False,
            "speed-limit-up-enabled": False, "speed-limit-down-enabled": False,
            "rename-partial-files": True, "incomplete-dir-enabled": False,
            "message-level": 1, "peer-port": PORT, "peer-port-random-on-start": False,
            "blocklist-enabled": False, "start-added-torrents": True,
        }
        with open(os.path.join(d, "settings.json"), "w") as f:
            json.dump(settings, f)
        return d

    def m_transmission(self, res, procs):
        base = os.path.join(self.work, "transmission")
        os.makedirs(base, exist_ok=True)
        common = ["-p", PORT, "-et", "-M", "-U", "-D"]
        seed_argv = ["transmission-cli", "-g", self.tr_config(os.path.join(base, "cfg-h0")), "-w", self.origin_dir] + common + [self.torrent]
        hook = os.path.join(HERE, "mark-done.sh")

        def host_argv(i):
            return ["transmission-cli", "-g", self.tr_config(os.path.join(base, "cfg-h%d" % i)),
                    "-w", self.host_dir("transmission", i), "-f", hook] + common + [self.torrent]

        def done(i):
            return self.marker_time(self.marker("transmission", i)) or self.appeared("transmission", i)
        self.swarm(res, procs, "transmission", seed_argv, host_argv, done,
                   env_fn=lambda i: {"SHOAL_DONE_FILE": self.marker("transmission", i)})

    def m_aria2(self, res, procs):
        os.makedirs(os.path.join(self.work, "aria2"), exist_ok=True)
        common = ["--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--disable-ipv6=true",
                  "--listen-port=%d" % PORT, "--seed-ratio=0.0", "--summary-interval=0", "--console-log-level=warn",
                  "--file-allocation=falloc", "--bt-max-peers=0", "--check-certificate=false",
                  "--follow-torrent=false", "--allow-overwrite=true", "--auto-save-interval=0"]
        seed_argv = ["aria2c", "-d", self.origin_dir, "--check-integrity=true", "--bt-seed-unverified=false"] + common + [self.torrent]
        hook = os.path.join(HERE, "mark-done.sh")
        self.swarm(res, procs, "aria2", seed_argv,
                   lambda i: ["aria2c", "-d", self.host_dir("aria2", i), "--on-bt-download-complete=" + hook] + common + [self.torrent],
                   lambda i: self.marker_time(self.marker("aria2", i)),
                   env_fn=lambda i: {"SHOAL_DONE_FILE": self.marker("aria2", i)})

    # ---------------------------------------------------------------- output
    def fmt_row(self, r):
        def f(v, fmt):
            return fmt % v if v is not None else "-"
        status = r["status"]
        if status == "failed":
            status = "FAILED (%d/%d)" % (r.get("done_hosts", 0), self.n)
        per_gb = r.get("tools_cpu_per_gb") if r["status"] == "ok" else None
        busy = 100 * r["cpu_busy"] if r.get("cpu_busy") is not None else None
        row = "| %-36s | %-11s | %-14s | %8s | %8s | %7s | %9s | %9s | %8s |" % (
            r["label"], r.get("tracker") or "-", status, f(r.get("last"), "%.1f"), f(r.get("median"), "%.1f"),
            f(r.get("vs_limit"), "%.2f"), f(r.get("origin_x"), "%.2f"), f(per_gb, "%.2f"), f(busy, "%.0f%%"))
        if SITES > 1:
            mb = lambda v: f(v / 1e6 if v is not None else None, "%.1f")
            row += " %11s | %11s | %11s |" % (mb(r.get("into_remote")), mb(r.get("into_site1")), f(r.get("cross_x"), "%.2f"))
        return row

    def header(self):
        h = "| %-36s | %-11s | %-14s | %8s | %8s | %7s | %9s | %9s | %8s |" % (
            "method", "tracker", "result", "last (s)", "median", "last/FB", "origin ×F", "CPU-s/GB", "CPU busy")
        sep = "|%s|%s|%s|%s|%s|%s|%s|%s|%s|" % (
            "-" * 38, "-" * 13, "-" * 16, "-" * 10, "-" * 10, "-" * 9, "-" * 11, "-" * 11, "-" * 10)
        if SITES > 1:
            remote = "1→2 (MB)" if SITES == 2 else "→remote (MB)"
            back = "2→1 (MB)" if SITES == 2 else "→site 1 (MB)"
            h += " %11s | %11s | %11s |" % (remote, back, "×F/remote")
            sep += "%s|%s|%s|" % ("-" * 13, "-" * 13, "-" * 13)
        return h + "\n" + sep

    def print_row(self, r):
        print(self.fmt_row(r), flush=True)
        for n in r["notes"]:
            log("  %s: %s" % (r["method"], n))

    def table(self):
        lines = ["Fleet benchmark: %d hosts + origin, file %s (%d bytes), links %s both ways (B = %.2f MB/s)"
                 % (self.n, self.a.size, self.size, self.a.rate, self.rate_bps / 1e6),
                 "physical limit F/B = %.1f s; times are from the start of the transfers to a complete, "
                 "checked copy" % self.fb]
        if SITES > 1:
            lines.append("%d sites (%s; origin and tracker in site 1) joined by one inter-site link shaped to %s "
                         "both ways; 1→2 / 2→1: bytes (Ethernet frames) that crossed it each way during the run; "
                         "×F/remote: all crossing bytes / (F × %d remote site%s)" % (
                             SITES, ", ".join("site %d %s: %d hosts" % (k, site_net(k), sum(1 for i in range(1, self.n + 1) if site_of(i) == k))
                                              for k in range(1, SITES + 1)),
                             self.a.inter_rate or self.a.rate, SITES - 1, "" if SITES == 2 else "s"))
        lines += ["", self.header()]
        lines += [self.fmt_row(r) for r in self.results]
        lines.append("")
        for r in self.results:
            if r["notes"]:
                lines.append("- %s: %s" % (r["method"], "; ".join(r["notes"])))
        return "\n".join(lines) + "\n"

    def save(self):
        meta = {"hosts": self.n, "sites": SITES, "inter_rate": self.a.inter_rate or self.a.rate, "size": self.size, "size_arg": self.a.size, "rate": self.a.rate,
                "rate_bytes_per_s": self.rate_bps, "f_over_b": self.fb, "info_hash": getattr(self, "info_hash", None),
                "piece_length": getattr(self, "piece_length", None),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                         text=True).stdout.strip(),
                "command": " ".join(sys.argv[1:]), "results": self.results}
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(meta, f, indent=1, default=str)
        with open(os.path.join(self.out, "table.md"), "w") as f:
            f.write(self.table())

    def plot(self):
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            import matplotlib.ticker
        except ImportError:
            log("python3-matplotlib missing: no plot")
            return
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for r in self.results:
            ts = sorted(r["times"].values())
            if not ts:
                continue
            xs = [0.0] + ts
            ys = list(range(0, len(ts) + 1))
            ours = r["method"].startswith("shoal")
            ax.step(xs, ys, where="post", label="%s%s" % (r["label"], "" if r["status"] == "ok" else " (%s)" % r["status"]),
                    linewidth=3 if ours else 1.8, linestyle=":" if r["method"] == "ring" else "-",
                    color="black" if r["method"] == "shoal" else None)
            ax.plot(ts, ys[1:], "o", markersize=3, color=ax.lines[-1].get_color())
        ax.axvline(self.fb, color="grey", linestyle="--", linewidth=1)
        ax.text(self.fb, self.n + 0.3, " F/B = %.1f s" % self.fb, color="grey", fontsize=8)
        ax.set_xscale("log")
        hi = max([self.fb] + [t for r in self.results for t in r["times"].values()])
        ticks = [t for t in (1, 2, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 5000) if t <= hi * 1.5]
        lo = min([self.fb] + [t for r in self.results for t in r["times"].values()]) * 0.7
        ticks = [t for t in ticks if t >= lo]
        ax.set_xlim(left=lo)
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("seconds since the start (log scale)")
        ax.set_ylabel("hosts with a complete, checked copy")
        ax.set_ylim(0, self.n + 1)
        ax.set_title("%d hosts, %s file, %s links" % (self.n, self.a.size, self.a.rate))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        p = os.path.join(self.out, "completion.png")
        fig.savefig(p, dpi=110)
        log("plot: %s" % p)

    def run(self):
        self.setup()
        only = [m.strip() for m in self.a.only.split(",")] if self.a.only else (SITE_METHODS if SITES > 1 else METHODS)
        for m in only:
            if m not in METHODS + EXTRA_METHODS:
                raise SystemExit("bench-fleet: error: unknown method %r (known: %s)" % (m, ",".join(METHODS + EXTRA_METHODS)))
        print("\n" + self.header(), flush=True)
        for m in only:
            self.run_method(m)
        self.save()
        self.plot()
        print()
        sys.stdout.write(self.table())
        log("results: %s" % self.out)


PAGE_REPORTING = "/sys/module/page_reporting/parameters/page_reporting_order"


def hold_page_reporting(nbytes):
    """--no-page-reporting. A VM guest whose virtio-balloon reports free pages hands freed memory
    back to the host, and a page-cache page written later may first fault on the host: the copies
    then measure the host's memory, not the tools (docs/BENCHMARKS.md). Stops reporting (an order
    above any free block's) and touches nbytes of memory once, so that the run writes into pages
    the guest holds; returns what restores the old order."""
    try:
        with open(PAGE_REPORTING) as f:
            old = f.read().strip()
    except OSError:
        log("--no-page-reporting: this kernel reports no free pages (no %s): nothing to do" % PAGE_REPORTING)
        return lambda: None

    def put(v):
        with open(PAGE_REPORTING, "w") as f:
            f.write(str(v))
    for order in range(16, int(old), -1):
        try:
            put(order)
            break
        except OSError:
            continue
    else:
        raise SystemExit("bench-fleet: error: --no-page-reporting: cannot raise %s above %s" % (PAGE_REPORTING, old))
    with open("/proc/meminfo") as f:
        avail = next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemAvailable:"))
    n = max(0, min(nbytes, avail - (2 << 30)))
    scratch = "/dev/shm/shoal-warm-%d" % os.getpid()
    done = 0
    try:
        with open(scratch, "wb") as f:
            chunk = b"\0" * (1 << 20)
            while done < n:
                f.write(chunk)
                done += len(chunk)
    except OSError:
        pass  # /dev/shm full: what was touched is touched
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    log("free page reporting off for the run (order %s -> %d), %d MiB of memory touched first" % (old, order, done >> 20))

    def restore():
        try:
            put(old)
            log("free page reporting restored (order %s)" % old)
        except OSError as e:
            log("warning: could not restore %s to %s: %s" % (PAGE_REPORTING, old, e))
    return restore


def main():
    ap = argparse.ArgumentParser(description="fleet benchmark (see scripts/bench-fleet.sh)")
    ap.add_argument("--hosts", type=int, default=16)
    ap.add_argument("--size", default="256M")
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--only", help="comma-separated methods: " + ",".join(METHODS))
    ap.add_argument("--out")
    ap.add_argument("--work", help="scratch directory (default /tmp/shoal-fleet-PID)")
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--timeout", type=float, help="per-method timeout in seconds (default: scaled to F/B)")
    ap.add_argument("--lt-super-seed", action="store_true", help="libtorrent origin super-seeds")
    ap.add_argument("--shoal-plain-seed", action="store_true", help="bseed without --super-seed (diagnosis)")
    ap.add_argument("--sites", type=int, default=1, help="sites joined by one shaped inter-site link (default 1)")
    ap.add_argument("--inter-rate", help="inter-site link rate, both ways (default: --rate)")
    ap.add_argument("--no-page-reporting", action="store_true",
                    help="VM guests: no free page reporting during the run, memory touched first")
    a = ap.parse_args()
    if a.hosts < 1 or a.hosts > 250:
        raise SystemExit("bench-fleet: error: --hosts must be 1..250")
    if a.sites < 1 or a.sites > 10 or a.sites > a.hosts:
        raise SystemExit("bench-fleet: error: --sites must be 1..10 and at most --hosts")
    if a.inter_rate:
        parse_rate(a.inter_rate)
    global SITES, COUNT
    SITES, COUNT = a.sites, a.hosts
    b = Bench(a)

    def on_signal(sig, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    restore = lambda: None
    try:
        if a.no_page_reporting:
            # Every host's copy plus the origin's, with room for the tools.
            restore = hold_page_reporting((a.hosts + 1) * parse_size(a.size) * 5 // 4)
        b.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        stop(list(LIVE), grace=3)
        restore()
        if not a.work:
            shutil.rmtree(b.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
