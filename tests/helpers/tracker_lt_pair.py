#!/usr/bin/python3
"""Two libtorrent sessions, one seeding and one downloading, that can only find each other
through the torrent's tracker (DHT, LSD, UPnP, NAT-PMP and PEX sources all off; no peers
added by hand). Used by tests/btrack.rs to prove btrack works with a client nobody here wrote.

usage: tracker_lt_pair.py TORRENT SEED_DIR DOWNLOAD_DIR TIMEOUT_SECONDS
Prints one JSON line: {"done": bool, "seconds": float, "seed_port": N, "fetch_port": N,
"downloaded": bytes, "peers_from_tracker": most peers one tracker reply to either session
held, "tracker_errors": [...]} and exits 0 when the
download completed, 1 otherwise.
"""
import json
import sys
import time

import libtorrent as lt


def session(port):
    s = lt.session({
        'listen_interfaces': '127.0.0.1:%d' % port,
        'enable_dht': False,
        'enable_lsd': False,
        'enable_upnp': False,
        'enable_natpmp': False,
        'allow_multiple_connections_per_ip': True,
        'alert_mask': lt.alert.category_t.all_categories,
        'announce_to_all_trackers': True,
        'min_announce_interval': 1,
    })
    return s


def main():
    torrent, seed_dir, dl_dir, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    info = lt.torrent_info(torrent)
    seeder, fetcher = session(0), session(0)
    hs = seeder.add_torrent({'ti': info, 'save_path': seed_dir})
    hf = fetcher.add_torrent({'ti': lt.torrent_info(torrent), 'save_path': dl_dir})
    errors = []
    peers_from_tracker = 0
    start = time.time()
    done = False
    while time.time() - start < timeout:
        for s in (seeder, fetcher):
            for a in s.pop_alerts():
                if isinstance(a, lt.tracker_error_alert):
                    errors.append(a.message())
                if isinstance(a, lt.tracker_reply_alert):
                    # Whichever announced second learns of the other from the tracker.
                    peers_from_tracker = max(peers_from_tracker, a.num_peers)
        st = hf.status()
        if st.is_seeding:
            done = True
            break
        # Re-announce quickly while the seeder has not shown up yet.
        if int(time.time() - start) % 3 == 0:
            hf.force_reannounce(0, -1)
            hs.force_reannounce(0, -1)
        time.sleep(0.5)
    if done:
        # Let the fetcher's 'completed' announce reach the tracker before exiting.
        done_at = time.time()
        replied = False
        while time.time() < done_at + 15 and not (replied and time.time() > done_at + 3):
            for a in fetcher.pop_alerts():
                if isinstance(a, lt.tracker_reply_alert):
                    replied = True
            time.sleep(0.2)
    st = hf.status()
    print(json.dumps({
        'done': done,
        'seconds': round(time.time() - start, 2),
        'seed_port': seeder.listen_port(),
        'fetch_port': fetcher.listen_port(),
        'downloaded': st.total_wanted_done,
        'peers_from_tracker': peers_from_tracker,
        'tracker_errors': errors[:10],
        'fetch_peer_id': str(fetcher.get_settings().get('peer_fingerprint', '')),
    }))
    sys.stdout.flush()
    sys.exit(0 if done else 1)


if __name__ == '__main__':
    main()
