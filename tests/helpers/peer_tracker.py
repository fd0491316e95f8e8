#!/usr/bin/python3
"""A tiny HTTP BitTorrent tracker for the interop tests and scripts/bench-pair.sh.

It is deliberately independent of our own btrack, so the third-party harnesses can be
validated against each other before (and without) any shoal code.

    peer_tracker.py [HOST:]PORT [--peer HOST:PORT]... [--log FILE]

Serves GET /announce on HOST:PORT (default host 127.0.0.1) (the path must be /announce: libtorrent 2.0 ignores
loopback trackers with any other path). Every announcing peer is remembered per info-hash
(address = the request's source address, port = the `port` parameter) and forgotten on
event=stopped. The reply lists every other known peer for that info-hash plus the fixed
`--peer` addresses, compact (BEP 23) unless compact=0 was asked for, with interval 5 s so
clients re-announce quickly. GET /scrape is answered too. Each announce is logged as one
JSON line (stderr, or --log FILE) so a test can see who announced what. Prints
`peer_tracker: listening on HOST:PORT` on stdout once ready. Stops on SIGTERM/SIGINT.
"""
import json
import signal
import socket
import struct
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def bencode(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(bencode(x) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def parse_query(qs):
    """Query string → dict of bytes (info_hash is raw binary, so no str decoding)."""
    out = {}
    for part in qs.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out[urllib.parse.unquote(k)] = urllib.parse.unquote_to_bytes(v)
    return out


class State:
    def __init__(self, fixed):
        self.lock = threading.Lock()
        self.peers = {}  # info_hash -> {(ip, port): {"left": int, "peer_id": bytes}}
        self.fixed = fixed  # [(ip, port)]
        self.log = sys.stderr


STATE = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):  # silence the default access log
        pass

    def reply(self, body, code=200):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, qs = self.path.partition("?")
        q = parse_query(qs)
        if path == "/scrape":
            files = {}
            with STATE.lock:
                for ih, peers in STATE.peers.items():
                    seeds = sum(1 for p in peers.values() if p["left"] == 0)
                    files[ih] = {"complete": seeds, "incomplete": len(peers) - seeds, "downloaded": 0}
            return self.reply(bencode({"files": files}))
        if path != "/announce":
            return self.reply(bencode({"failure reason": "unknown path"}), 404)
        ih = q.get("info_hash", b"")
        try:
            port = int(q.get("port", b"0"))
            left = int(q.get("left", b"0"))
        except ValueError:
            return self.reply(bencode({"failure reason": "bad port/left"}))
        if len(ih) != 20 or not 0 < port < 65536:
            return self.reply(bencode({"failure reason": "bad info_hash or port"}))
        ip = self.client_address[0]
        event = q.get("event", b"").decode(errors="replace")
        with STATE.lock:
            swarm = STATE.peers.setdefault(ih, {})
            if event == "stopped":
                swarm.pop((ip, port), None)
            else:
                swarm[(ip, port)] = {"left": left, "peer_id": q.get("peer_id", b"")}
            others = [a for a in swarm if a != (ip, port)]
            for a in STATE.fixed:
                if a not in others and a != (ip, port):
                    others.append(a)
            print(json.dumps({"info_hash": ih.hex(), "ip": ip, "port": port, "event": event,
                              "left": left, "returned": ["%s:%d" % a for a in others]}),
                  file=STATE.log, flush=True)
        if q.get("compact", b"1") == b"0":
            peer_list = [{"ip": a[0], "port": a[1]} for a in others]
        else:
            peer_list = b"".join(socket.inet_aton(a[0]) + struct.pack(">H", a[1]) for a in others)
        self.reply(bencode({"interval": 5, "min interval": 1, "complete": 0, "incomplete": 0,
                            "peers": peer_list}))


def main(argv):
    global STATE
    if len(argv) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    host, port = host or "127.0.0.1", int(port)
    fixed, log = [], None
    i = 1
    while i < len(argv):
        if argv[i] == "--peer":
            host, _, p = argv[i + 1].rpartition(":")
            fixed.append((host, int(p)))
            i += 2
        elif argv[i] == "--log":
            log = argv[i + 1]
            i += 2
        else:
            print("peer_tracker: unknown argument %r" % argv[i], file=sys.stderr)
            return 2
    STATE = State(fixed)
    if log:
        STATE.log = open(log, "a")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    # The bound port (port 0 picks a free one; tests read it from this line).
    print("peer_tracker: listening on %s:%d" % server.server_address[:2], file=sys.stderr, flush=True)

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("peer_tracker: listening on %s:%d" % server.server_address[:2], flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
