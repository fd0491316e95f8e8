#!/bin/sh
# profile-fleet.sh: one shoal run of the fleet benchmark with the machine profiled in the middle
# of the transfer, reported the way docs/BENCHMARKS.md does (issue 12): CPU per thread class
# and per system call, the top symbols, and the context switches per second of bfetch's threads.
#
#   sudo scripts/profile-fleet.sh [HOSTS] [BIN_DIR]    defaults: 32, the release build
#
# Steps: scripts/bench-fleet.sh --only shoal (its table row and CPU line are printed), and once
# HOSTS bfetch processes run plus 4 s: `perf record -a -g` for 10 s, then the switches sampled
# from /proc for 10 s. Everything lands in results/profile-<time>/ (perf.data, perf.txt, the
# bench's own folder). Needs root, perf and python3. Holds the bench lock (/tmp/shoal-bench.lock)
# for the whole run, as the other benchmarks do.
set -eu
HOSTS=${1:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-}
for tool in perf python3; do
    command -v $tool >/dev/null || { echo "profile-fleet: $tool is not installed" >&2; exit 2; }
done
OUT=$ROOT/results/profile-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
NOBUILD=""
if [ -n "$BIN" ]; then
    export SHOAL_BIN_DIR=$BIN
    NOBUILD=--no-build
fi
touch "$OUT/running"
(
    # Mid-run: every host's bfetch started, and a few seconds into the transfer (the bench may
    # first wait for the lock).
    while [ "$(pgrep -c -x bfetch || true)" -lt "$HOSTS" ]; do
        [ -e "$OUT/running" ] || exit 0
        sleep 0.1
    done
    sleep 4
    perf record -a -g -F 999 -o "$OUT/perf.data" -- sleep 10 >/dev/null 2>&1 || true
    python3 "$ROOT/scripts/fleet/profile.py" --wakeups 5 > "$OUT/wakeups.txt" 2>&1 || true
) &
SAMPLER=$!
flock -o /tmp/shoal-bench.lock "$ROOT/scripts/bench-fleet.sh" --hosts "$HOSTS" --only shoal $NOBUILD \
    --no-page-reporting --out "$OUT/bench" > "$OUT/bench.log" 2>&1 || { rm -f "$OUT/running"; tail -20 "$OUT/bench.log" >&2; exit 1; }
rm -f "$OUT/running"
wait $SAMPLER
grep '^| shoal' "$OUT/bench.log" | head -1
grep -o 'tools used.*busy [0-9]*%' "$OUT/bench.log" | head -1
[ -s "$OUT/perf.data" ] || { echo "profile-fleet: no profile taken (the run ended first?)" >&2; exit 1; }
perf script -i "$OUT/perf.data" -F comm,tid,ip,sym 2>/dev/null | python3 "$ROOT/scripts/fleet/profile.py" > "$OUT/perf.txt"
cat "$OUT/perf.txt"
echo
cat "$OUT/wakeups.txt"
echo "profile-fleet: all in $OUT" >&2
