#!/usr/bin/python3
"""netcheck.py — a tiny iperf: measure the throughput of one TCP stream between two testbed hosts.

    netcheck.py recv ADDR PORT            accept one connection, count bytes, print MB/s as JSON, exit
    netcheck.py send ADDR PORT BYTES      connect, send BYTES zero bytes, exit

Used by scripts/testbed.sh users and scripts/bench-fleet.sh to check that a link shaped to 100 Mbit/s
really carries ~11-12 MB/s. Only ever talks to the address it is given (a testbed host)."""
import json
import socket
import sys
import time


def recv(addr, port):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(1)
    srv.settimeout(60)
    conn, peer = srv.accept()
    conn.settimeout(60)
    total = 0
    start = None
    buf = bytearray(1 << 20)
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        if start is None:
            start = time.monotonic()
        total += n
    secs = time.monotonic() - (start or time.monotonic())
    print(json.dumps({"bytes": total, "secs": round(secs, 3),
                      "mb_per_s": round(total / secs / 1e6, 2) if secs > 0 else None,
                      "mbit_per_s": round(total * 8 / secs / 1e6, 1) if secs > 0 else None,
                      "peer": peer[0]}))


def send(addr, port, nbytes):
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection((addr, port), timeout=10)
            break
        except (ConnectionRefusedError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    chunk = bytes(1 << 20)
    left = nbytes
    while left > 0:
        n = s.send(chunk[: min(left, len(chunk))])
        left -= n
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()


def main(argv):
    if len(argv) >= 3 and argv[0] == "recv":
        recv(argv[1], int(argv[2]))
    elif len(argv) >= 4 and argv[0] == "send":
        send(argv[1], int(argv[2]), int(argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
