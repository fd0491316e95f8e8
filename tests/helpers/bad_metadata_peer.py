#!/usr/bin/python3
"""A hostile BitTorrent peer for the magnet tests: it claims a torrent and serves metadata
(BEP 9) that does not hash to its info-hash.

    bad_metadata_peer.py INFO_HASH_HEX FAKE_INFO_FILE [--claim-size N]

Listens on 127.0.0.1 on a free port and prints "bad_metadata_peer: listening on port N" on
stderr. Every connection: answers the handshake for INFO_HASH_HEX with the extension bit,
sends an extension handshake offering ut_metadata with metadata_size = the size of
FAKE_INFO_FILE, and answers every ut_metadata request with that file's bytes (a valid info
dictionary of some other content). Appends "served N" to stderr per piece sent. Runs until
killed. With --claim-size N the extension handshake claims metadata_size N instead (a
peer trying to make its victim allocate N bytes).
"""
import socket
import struct
import sys
import threading

PROG = "bad_metadata_peer"
PIECE = 16384


def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, dict):
        return b"d" + b"".join(benc(k) + benc(v[k]) for k in sorted(v)) + b"e"
    raise TypeError(v)


def read_exact(c, n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            raise EOFError
        b += x
    return b


def msg(mid, payload):
    return struct.pack(">IB", len(payload) + 1, mid) + payload


def serve(c, ih, fake, claim):
    try:
        hs = read_exact(c, 68)
        if hs[28:48] != ih:
            return
        reserved = bytearray(8)
        reserved[5] |= 0x10
        c.sendall(bytes([19]) + b"BitTorrent protocol" + bytes(reserved) + ih + b"-XX0001-hostilepeer!")
        ext = benc({"m": {"ut_metadata": 2}, "metadata_size": claim, "v": "hostile"})
        c.sendall(msg(20, bytes([0]) + ext))
        their_id = None
        while True:
            (n,) = struct.unpack(">I", read_exact(c, 4))
            if n == 0:
                continue
            body = read_exact(c, n)
            if body[0] != 20:
                continue
            eid, payload = body[1], body[2:]
            if eid == 0:
                i = payload.find(b"11:ut_metadatai")
                if i >= 0:
                    their_id = int(payload[i + 15:payload.index(b"e", i + 15)])
            elif eid == 2 and b"8:msg_typei0e" in payload and their_id:
                i = payload.index(b"5:piecei") + 8
                piece = int(payload[i:payload.index(b"e", i)])
                data = fake[piece * PIECE:(piece + 1) * PIECE]
                head = benc({"msg_type": 1, "piece": piece, "total_size": len(fake)})
                c.sendall(msg(20, bytes([their_id]) + head + data))
                print("%s: served %d" % (PROG, piece), file=sys.stderr, flush=True)
    except (EOFError, OSError, ValueError):
        pass
    finally:
        c.close()


def main():
    ih = bytes.fromhex(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        fake = f.read()
    claim = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--claim-size" else len(fake)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    print("%s: listening on port %d" % (PROG, s.getsockname()[1]), file=sys.stderr, flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, ih, fake, claim), daemon=True).start()


if __name__ == "__main__":
    main()
