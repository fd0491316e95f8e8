#!/usr/bin/python3
"""libtorrent downloader for the interop tests: a client nobody here wrote.

    lt_fetch.py TORRENT|MAGNET SAVE_PATH --port N [--host ADDR] [--peer HOST:PORT]... [--timeout SECS]
                [--max-download-rate BYTES] [--bench]

Downloads into SAVE_PATH (from --peer addresses, connected to again every 5 s while not
connected, and/or the torrent's tracker). Exit 0 once libtorrent has every piece hash-checked
and the torrent is seeding (a magnet link: the metadata is fetched from the peers first), 1 on timeout, 3 on a libtorrent error. Always prints one JSON line
on stdout: {"complete", "downloaded" (payload bytes), "duration_secs", "peers": [{"addr",
"client","downloaded","uploaded"}]}. Progress lines every 5 s on stderr.
"""
import argparse
import sys
import time

import libtorrent as lt

from lt_common import PeerBook, add, drain_errors, parse_peer, report, session, stop_flag

PROG = "lt_fetch"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("save_path")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1", help="local address to listen on and connect from")
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--max-download-rate", type=int, default=0, help="bytes/s, 0 = unlimited")
    ap.add_argument("--bench", action="store_true", help="libtorrent's high_performance_seed settings")
    args = ap.parse_args()
    flag = stop_flag()
    start = time.monotonic()
    ses = session(args.port, args.bench, args.host)
    if args.max_download_rate:
        ses.apply_settings({"download_rate_limit": args.max_download_rate})
    h = add(ses, args.torrent, args.save_path)
    book = PeerBook()
    peers = [parse_peer(p) for p in args.peer]
    last_connect = last_status = 0.0
    complete = False
    while not flag["stop"]:
        now = time.monotonic()
        st = h.status()
        if st.is_seeding:
            complete = True
            break
        if st.errc.value() != 0:
            print("%s: error: %s" % (PROG, st.errc.message()), file=sys.stderr)
            break
        if now - start > args.timeout:
            print("%s: timeout after %.0f s at %.1f%%" % (PROG, args.timeout, st.progress * 100), file=sys.stderr)
            break
        if peers and now - last_connect > 5:
            connected = {(p.ip[0], p.ip[1]) for p in h.get_peer_info()}
            for p in peers:
                if p not in connected:
                    h.connect_peer(p)
            last_connect = now
        if now - last_status > 5:
            print("%s: %.1f%% %d peers %.1f MB/s" % (PROG, st.progress * 100, st.num_peers,
                                                      st.download_payload_rate / 1e6), file=sys.stderr, flush=True)
            last_status = now
        book.sample(h)
        drain_errors(ses, PROG)
        time.sleep(0.05)
    book.sample(h)
    st = h.status()
    report({"complete": complete, "downloaded": st.total_payload_download,
            "duration_secs": round(time.monotonic() - start, 3), "peers": book.list()})
    if complete:
        return 0
    return 3 if st.errc.value() != 0 else 1


if __name__ == "__main__":
    sys.exit(main())
