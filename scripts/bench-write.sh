#!/bin/sh
# bench-write.sh: what a disk thread pays the kernel to write received blocks, by write size.
#
#   scripts/bench-write.sh [DIR] [MiB] [ROUNDS]    defaults: results/, 256, 3
#
# Writes MiB of 16 KiB buffers into a new file in DIR, in order, once as one pwrite per
# 16 KiB block (what bfetch's disk threads did before the ninth session) and once as one
# pwritev per run of 4 and of 16 neighbouring blocks (Storage::write_blocks), and prints the
# system CPU time of each (best of ROUNDS) with its ratio to the 16 KiB writes. The file is
# deleted after each pass; nothing is synced. No root needed; python3 only.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$ROOT/results}
MIB=${2:-256}
ROUNDS=${3:-3}
mkdir -p "$DIR"
exec python3 - "$DIR" "$MIB" "$ROUNDS" <<'EOF'
import os, resource, sys
d, mib, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BLOCK = 16384
bufs = [bytes([i % 251]) * BLOCK for i in range(16)]

def one(run):
    path = os.path.join(d, f"bench-write.{os.getpid()}")
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    total = mib << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
    off = 0
    while off < total:
        n = os.pwritev(fd, bufs[:run], off) if run > 1 else os.pwrite(fd, bufs[0], off)
        if n != run * BLOCK:
            sys.exit(f"bench-write: short write ({n} bytes)")
        off += n
    spent = resource.getrusage(resource.RUSAGE_SELF).ru_stime - before
    os.close(fd)
    os.unlink(path)
    return spent

fs = os.popen(f"df -T {d} | tail -1").read().split()
print(f"bench-write: {mib} MiB in 16 KiB blocks on {fs[1] if len(fs) > 1 else '?'} ({d}), best of {rounds}")
print(f"{'write':<28}{'system s':>10}{'x 16 KiB writes':>17}")
base = None
for run in (1, 4, 16):
    best = min(one(run) for _ in range(rounds))
    base = base or best
    name = "pwrite, 16 KiB" if run == 1 else f"pwritev, runs of {run} blocks"
    print(f"{name:<28}{best:>10.3f}{best / base:>17.2f}")
EOF
