#!/usr/bin/python3
"""libtorrent seeder for the interop tests: a client nobody here wrote.

    lt_seed.py TORRENT SAVE_PATH --port N [--host ADDR] [--peer HOST:PORT]... [--max-upload-rate BYTES] [--bench] [--seed-mode]

SAVE_PATH is the directory that holds the content (the file of a single-file torrent or the
top directory of a multi-file one). The data is fully hash-checked first (unless --seed-mode),
and the helper exits 3 if it is not complete. Prints `lt_seed: seeding on HOST:N` on
stderr once it serves; connects out to each --peer (again every 5 s while they are not
connected, so a peer may start later). Runs until SIGTERM/SIGINT, then prints one JSON line on
stdout: {"uploaded": payload bytes, "peers": [{"addr","client","downloaded","uploaded"}]}.
"""
import argparse
import sys
import time

import libtorrent as lt

from lt_common import PeerBook, add, drain_errors, parse_peer, report, session, stop_flag

PROG = "lt_seed"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1", help="local address to listen on and connect from")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--bench", action="store_true", help="libtorrent's high_performance_seed settings")
    ap.add_argument("--max-upload-rate", type=int, default=0, help="bytes/s, 0 = unlimited")
    ap.add_argument("--seed-mode", action="store_true", help="trust the data, skip the hash check")
    args = ap.parse_args()
    flag = stop_flag()
    ses = session(args.port, args.bench, args.host)
    if args.max_upload_rate:
        ses.apply_settings({"upload_rate_limit": args.max_upload_rate})
    h = add(ses, args.torrent, args.save_path, args.seed_mode)
    book = PeerBook()
    checked = False
    while not flag["stop"] and not checked:
        for a in ses.pop_alerts():
            if isinstance(a, lt.torrent_checked_alert):
                checked = True
            elif a.category() & lt.alert.category_t.error_notification:
                print("%s: %s: %s" % (PROG, a.what(), a.message()), file=sys.stderr, flush=True)
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while not flag["stop"] and not h.status().is_seeding:
        if time.monotonic() > deadline:
            print("%s: error: content is incomplete (%.1f%% present)" % (PROG, h.status().progress * 100),
                  file=sys.stderr)
            return 3
        time.sleep(0.05)
    print("%s: seeding on %s:%d" % (PROG, args.host, ses.listen_port()), file=sys.stderr, flush=True)
    peers = [parse_peer(p) for p in args.peer]
    last_connect = 0.0
    while not flag["stop"]:
        now = time.monotonic()
        if peers and now - last_connect > 5:
            connected = {(p.ip[0], p.ip[1]) for p in h.get_peer_info()}
            for p in peers:
                if p not in connected:
                    h.connect_peer(p)
            last_connect = now
        book.sample(h)
        drain_errors(ses, PROG)
        time.sleep(0.2)
    book.sample(h)
    report({"uploaded": h.status().total_payload_upload, "peers": book.list()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
