#!/usr/bin/python3
"""lt_swarm.py — one libtorrent (python3-libtorrent 2.0) peer for the fleet benchmark.

    lt_swarm.py seed  TORRENT DIR [--port N] [--super-seed] [--ready-file F]
    lt_swarm.py fetch TORRENT DIR [--port N] [--done-file F]

`seed` hash-checks DIR/<name> and seeds it; `fetch` downloads into DIR and keeps seeding afterwards.
Both run until SIGTERM/SIGINT (the benchmark stops every peer once the last host is done).
--ready-file / --done-file get the wall-clock time (time.time()) written into them the moment the
torrent is complete and every piece has passed libtorrent's SHA-1 check.
DHT, local peer discovery, UPnP and NAT-PMP are off: peers come from the torrent's tracker only (and
PEX between those peers), so no packet goes anywhere but the testbed hosts."""
import argparse
import signal
import sys
import time

import libtorrent as lt

stop = False


def on_signal(_sig, _frame):
    global stop
    stop = True


def write_stamp(path, stamp):
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%.6f\n" % stamp)
        import os
        os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["seed", "fetch"])
    ap.add_argument("torrent")
    ap.add_argument("dir")
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--super-seed", action="store_true")
    ap.add_argument("--ready-file")
    ap.add_argument("--done-file")
    a = ap.parse_args()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    settings = {
        "listen_interfaces": "0.0.0.0:%d" % a.port,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
        "user_agent": "shoal-bench-libtorrent/" + lt.__version__,
        # The origin may get many connections at once; keep limits out of the way.
        "connections_limit": 500,
        "unchoke_slots_limit": 16 if a.mode == "seed" else 8,
    }
    ses = lt.session(settings)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(a.torrent)
    atp.save_path = a.dir
    if a.mode == "seed" and a.super_seed:
        atp.flags |= lt.torrent_flags.super_seeding
    h = ses.add_torrent(atp)

    stamp_path = a.ready_file if a.mode == "seed" else a.done_file
    stamped = False
    last_report = 0.0
    while not stop:
        st = h.status()
        if not stamped and st.is_seeding:
            write_stamp(stamp_path, time.time())
            stamped = True
            print("lt_swarm: %s complete (%d bytes)" % (a.mode, st.total_wanted), file=sys.stderr, flush=True)
        for al in ses.pop_alerts():
            if al.category() & lt.alert.category_t.error_notification:
                print("lt_swarm: %s" % al.message(), file=sys.stderr, flush=True)
        now = time.time()
        if now - last_report > 5:
            last_report = now
            print("lt_swarm: %s state=%s progress=%.1f%% down=%.1fMB/s up=%.1fMB/s peers=%d uploaded=%d"
                  % (a.mode, st.state, st.progress * 100, st.download_rate / 1e6, st.upload_rate / 1e6,
                     st.num_peers, st.total_payload_upload), file=sys.stderr, flush=True)
        time.sleep(0.1)
    st = h.status()
    print("lt_swarm: stopping: uploaded %d payload bytes, downloaded %d"
          % (st.total_payload_upload, st.total_payload_download), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
