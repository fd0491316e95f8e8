#!/usr/bin/python3
"""A hostile BitTorrent peer for the robustness tests (tests/peer.rs, tests/interop.rs).

    hostile_peer.py TORRENT --port N [--host ADDR] --mode MODE[,MODE...] [--log FILE]

Listens on ADDR:N (default 127.0.0.1), answers every incoming connection with a correct
BitTorrent handshake for TORRENT's info-hash (except in mode wrong-hash) and then misbehaves.
With several modes, connection k uses mode k mod len(modes). Modes:

  corrupt       bitfield "has everything", unchoke, and answer every request with a block of
                the right size full of random bytes (the piece hash check must catch it)
  huge-length   bitfield, then a message whose length prefix claims 0xFFFFFFF0 bytes (4 GiB)
                followed by a trickle of bytes (the client must not allocate that)
  bad-index     bitfield, unchoke, HAVE for indices past the end (num_pieces+7, 2^32-1), an
                unsolicited PIECE for index 2^32-256, then requests are answered with a wrong index
  bad-bitfield  a bitfield 50 bytes longer than the torrent needs, all bits set
  spare-bits    a bitfield of the right length with the spare bits of the last byte set
                (falls back to bad-bitfield when the piece count is a multiple of 8)
  bad-block     bitfield, unchoke, and requests answered with a block past the end of the piece
                (begin = piece length) and twice the requested length
  wrong-hash    handshake back with a different info-hash
  garbage       after the handshake, 4 KiB of random bytes
  stall         bitfield, unchoke, then never answer a request (the client must still finish
                from other peers)

Every event is one JSON line on stdout (or appended to --log FILE):
{"t": unix time, "port": N, "conn": k, "mode": m, "event": "accepted"|"handshake"|"sent"|"request"|
"closed", ...}; "closed" has "by": "remote" (the client hung up on us: what the tests want
to see) or "local" (we gave up after --linger seconds, default 600) and a "reason".
Prints `hostile_peer: listening on ADDR:N` on stderr when ready (N is the bound port, so
`--port 0` works). Stops on SIGTERM/SIGINT.
"""
import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

PSTR = b"\x13BitTorrent protocol"
MODES = ["corrupt", "huge-length", "bad-index", "bad-bitfield", "spare-bits", "bad-block",
         "wrong-hash", "garbage", "stall"]


def bdecode(data, i=0):
    """Minimal bencode decoder: returns (value, next offset)."""
    c = data[i:i + 1]
    if c == b"i":
        j = data.index(b"e", i)
        return int(data[i + 1:j]), j + 1
    if c == b"l":
        i, out = i + 1, []
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        i, out = i + 1, {}
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            v, i = bdecode(data, i)
            out[k] = v
        return out, i + 1
    j = data.index(b":", i)
    n = int(data[i:j])
    return data[j + 1:j + 1 + n], j + 1 + n


def info_span(data):
    """Byte range of the raw info dictionary (to hash exactly what the file holds)."""
    assert data[:1] == b"d"
    i = 1
    while data[i:i + 1] != b"e":
        k, i = bdecode(data, i)
        start = i
        _, i = bdecode(data, i)
        if k == b"info":
            return start, i
    raise ValueError("no info dictionary")


class Torrent:
    def __init__(self, path):
        raw = open(path, "rb").read()
        s, e = info_span(raw)
        self.info_hash = hashlib.sha1(raw[s:e]).digest()
        info, _ = bdecode(raw[s:e])
        self.piece_length = info[b"piece length"]
        self.num_pieces = len(info[b"pieces"]) // 20
        if b"files" in info:
            self.total = sum(f[b"length"] for f in info[b"files"])
        else:
            self.total = info[b"length"]

    def piece_size(self, i):
        if i == self.num_pieces - 1:
            return self.total - self.piece_length * (self.num_pieces - 1)
        return self.piece_length

    def full_bitfield(self, extra=0, spare=False):
        n = (self.num_pieces + 7) // 8
        bits = bytearray(b"\xff" * n)
        rem = self.num_pieces % 8
        if rem and not spare:
            bits[-1] = (0xFF << (8 - rem)) & 0xFF
        return bytes(bits) + b"\xff" * extra


def msg(mid, payload=b""):
    return struct.pack(">IB", len(payload) + 1, mid) + payload


class Log:
    def __init__(self, path, port):
        self.port = port
        self.lock = threading.Lock()
        self.out = open(path, "a") if path else sys.stdout

    def __call__(self, conn, mode, event, **kw):
        rec = {"t": round(time.time(), 3), "port": self.port, "conn": conn, "mode": mode, "event": event}
        rec.update(kw)
        with self.lock:
            print(json.dumps(rec), file=self.out, flush=True)


class Closed(Exception):
    pass


def recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        if time.monotonic() > deadline:
            raise TimeoutError()
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            continue
        except OSError as e:
            raise Closed("read: %s" % e)
        if not chunk:
            raise Closed("eof")
        buf += chunk
    return buf


def send(sock, data):
    try:
        sock.sendall(data)
    except OSError as e:
        raise Closed("write: %s" % e)


def serve(sock, k, mode, t, log, linger):
    deadline = time.monotonic() + linger
    sock.settimeout(1.0)
    hs = recv_exact(sock, 68, deadline)
    if hs[:20] != PSTR:
        log(k, mode, "closed", by="local", reason="client sent no BitTorrent handshake")
        return
    log(k, mode, "handshake", info_hash=hs[28:48].hex(), peer_id=hs[48:68].decode("latin-1"))
    ih = t.info_hash if mode != "wrong-hash" else hashlib.sha1(b"not this torrent").digest()
    send(sock, PSTR + b"\x00" * 8 + ih + b"-HO0001-" + os.urandom(6).hex()[:12].encode())
    log(k, mode, "sent", what="handshake")
    if mode == "wrong-hash":
        pass
    elif mode == "huge-length":
        send(sock, msg(5, t.full_bitfield()))
        send(sock, struct.pack(">IB", 0xFFFFFFF0, 7) + struct.pack(">II", 0, 0))
        log(k, mode, "sent", what="length prefix 0xFFFFFFF0")
        # Trickle a little more, as if the body were on its way.
        for _ in range(20):
            send(sock, os.urandom(512))
            time.sleep(0.05)
    elif mode == "bad-bitfield":
        send(sock, msg(5, t.full_bitfield(extra=50)))
        log(k, mode, "sent", what="bitfield 50 bytes too long")
    elif mode == "spare-bits":
        if t.num_pieces % 8:
            send(sock, msg(5, t.full_bitfield(spare=True)))
            log(k, mode, "sent", what="bitfield with spare bits set")
        else:
            send(sock, msg(5, t.full_bitfield(extra=50)))
            log(k, mode, "sent", what="bitfield 50 bytes too long (no spare bits to set)")
    elif mode == "garbage":
        send(sock, os.urandom(4096))
        log(k, mode, "sent", what="4 KiB of random bytes")
    else:
        send(sock, msg(5, t.full_bitfield()) + msg(1))
        log(k, mode, "sent", what="bitfield (all pieces), unchoke")
        if mode == "bad-index":
            send(sock, msg(4, struct.pack(">I", t.num_pieces + 7)))
            send(sock, msg(4, struct.pack(">I", 0xFFFFFFFF)))
            send(sock, msg(7, struct.pack(">II", 0xFFFFFF00, 0) + os.urandom(16384)))
            log(k, mode, "sent", what="have(num_pieces+7), have(2^32-1), piece(2^32-256)")
    # Then read the client's messages until it hangs up (what we want) or we give up.
    requests = 0
    while True:
        try:
            (n,) = struct.unpack(">I", recv_exact(sock, 4, deadline))
            if n > (1 << 20):
                log(k, mode, "closed", by="local", reason="client sent a %d-byte message" % n)
                return
            body = recv_exact(sock, n, deadline) if n else b""
        except TimeoutError:
            log(k, mode, "closed", by="local", reason="linger time over, client never hung up")
            return
        if not body:
            continue  # keep-alive
        mid, payload = body[0], body[1:]
        if mid == 2 and mode in ("corrupt", "bad-index", "bad-block", "stall"):
            send(sock, msg(1))
        if mid != 6 or len(payload) != 12:
            continue
        index, begin, length = struct.unpack(">III", payload)
        requests += 1
        if requests <= 3 or requests % 50 == 0:
            log(k, mode, "request", index=index, begin=begin, length=length, count=requests)
        if length > 131072 or index >= t.num_pieces:
            continue
        if mode == "corrupt":
            send(sock, msg(7, struct.pack(">II", index, begin) + os.urandom(length)))
        elif mode == "bad-index":
            send(sock, msg(7, struct.pack(">II", index + t.num_pieces, begin) + os.urandom(length)))
        elif mode == "bad-block":
            send(sock, msg(7, struct.pack(">II", index, t.piece_size(index)) + os.urandom(2 * length)))


def handle(sock, k, mode, t, log, linger):
    log(k, mode, "accepted", addr="%s:%d" % sock.getpeername()[:2])
    try:
        serve(sock, k, mode, t, log, linger)
    except Closed as e:
        log(k, mode, "closed", by="remote", reason=str(e))
    except TimeoutError:
        log(k, mode, "closed", by="local", reason="timeout waiting for the handshake")
    finally:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("torrent")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--mode", required=True)
    ap.add_argument("--log")
    ap.add_argument("--linger", type=float, default=600)
    args = ap.parse_args()
    modes = args.mode.split(",")
    for m in modes:
        if m not in MODES:
            print("hostile_peer: unknown mode %r (known: %s)" % (m, ", ".join(MODES)), file=sys.stderr)
            return 2
    t = Torrent(args.torrent)
    log = Log(args.log, args.port)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(16)
    srv.settimeout(0.5)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # The bound port (--port 0 picks a free one; the test reads it from this line).
    print("hostile_peer: listening on %s:%d" % (args.host, srv.getsockname()[1]), file=sys.stderr, flush=True)
    k = 0
    while not stop.is_set():
        try:
            sock, _ = srv.accept()
        except socket.timeout:
            continue
        mode = modes[k % len(modes)]
        threading.Thread(target=handle, args=(sock, k, mode, t, log, args.linger), daemon=True).start()
        k += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
