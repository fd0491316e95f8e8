#!/usr/bin/env bash
# demo.sh — build shoal (release) and run a small demo of its main job on this machine.
#
# Always: generate a file, make a torrent of it (mktorrent), inspect it (bdecode), verify it
# (bverify), then show that bverify catches one flipped byte.
# Then: a tracker (btrack), an origin seeder (bseed) and 3 fetchers (bfetch) on loopback,
# every copy verified with bverify. Every tool listens on port 0 and the port it bound is
# read back from its `listening on` line, so nothing races for a port picked in advance.
#
# Everything happens in a temporary directory removed on exit; every process started here is
# stopped on exit. Only 127.0.0.1 is used.
# Environment: DEMO_SIZE (default 64M), CARGO_TARGET_DIR, DEMO_TIMEOUT (seconds per fetch,
# default 300).
set -euo pipefail

SIZE=${DEMO_SIZE:-64M}
TIMEOUT=${DEMO_TIMEOUT:-300}
FETCHERS=3
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "building (cargo build --release)"
cargo build --release --quiet
export PATH="$BIN:$PATH"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-demo.XXXXXX")
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The port a process bound, from the first `listening on port N` / `listening on ADDR:N` line
# of its log (waits up to 60 s; fails if the process exits first).
bound_port() {
    local log=$1 pid=$2 port
    for _ in $(seq 600); do
        port=$(sed -n 's/.*listening on \(port \)\{0,1\}\([^ ]*:\)\{0,1\}\([0-9][0-9]*\).*/\3/p' "$log" 2>/dev/null | head -1)
        if [ -n "$port" ]; then echo "$port"; return 0; fi
        kill -0 "$pid" 2>/dev/null || { echo "demo: $log: the process exited:" >&2; tail -5 "$log" >&2; return 1; }
        sleep 0.1
    done
    echo "demo: $log: no 'listening on' line after 60 s" >&2
    return 1
}

step "0. a tracker on loopback (btrack, port 0)"
mkdir -p "$WORK/tracker"
btrack --listen 127.0.0.1:0 --data-dir "$WORK/tracker" --open > "$WORK/btrack.log" 2>&1 &
PIDS+=($!)
TRACKER_PORT=$(bound_port "$WORK/btrack.log" "$!")
ANNOUNCE=http://127.0.0.1:$TRACKER_PORT/announce
echo "tracker on $ANNOUNCE"

step "1. a $SIZE file to share"
mkdir -p "$WORK/origin"
head -c "$(numfmt --from=iec "$SIZE")" /dev/urandom > "$WORK/origin/demo.img"
ls -l "$WORK/origin/demo.img"

step "2. make a torrent (hashing on every core)"
show mktorrent -a "$ANNOUNCE" -o "$WORK/demo.torrent" "$WORK/origin/demo.img"

step "3. inspect it"
show bdecode --info "$WORK/demo.torrent"
show bdecode --magnet "$WORK/demo.torrent"

step "4. verify the content against it"
show bverify "$WORK/demo.torrent" "$WORK/origin/demo.img"

step "5. flip one byte in a copy: bverify names the piece and exits 1"
cp "$WORK/origin/demo.img" "$WORK/damaged.img"
printf '\xff' | dd of="$WORK/damaged.img" bs=1 seek=3000000 conv=notrunc status=none
set +e
bverify "$WORK/demo.torrent" "$WORK/damaged.img"
echo "(exit status $?)"
set -e

step "6. an origin seeder and $FETCHERS fetchers on loopback, finding each other through the tracker"
bseed "$WORK/demo.torrent" "$WORK/origin/demo.img" --port 0 > "$WORK/bseed.log" 2>&1 &
PIDS+=($!)
SEED_PORT=$(bound_port "$WORK/bseed.log" "$!")
echo "origin seeding on 127.0.0.1:$SEED_PORT"
# Finished fetchers keep serving the others while the tracker says someone still downloads.
PEER_ARGS=(--seed-until-done --seed-time 60s)

start=$(date +%s.%N)
FETCH_PIDS=()
for i in $(seq "$FETCHERS"); do
    mkdir -p "$WORK/fetch$i"
    timeout "$((TIMEOUT + 30))" bfetch "$WORK/demo.torrent" -o "$WORK/fetch$i" --port 0 \
        --timeout "${TIMEOUT}s" --json -q "${PEER_ARGS[@]}" > "$WORK/bfetch$i.json" 2> "$WORK/bfetch$i.log" &
    FETCH_PIDS+=($!)
    PIDS+=($!)
    echo "fetcher $i -> $WORK/fetch$i"
done
failed=0
for i in $(seq "$FETCHERS"); do
    if wait "${FETCH_PIDS[$((i - 1))]}"; then
        echo "fetcher $i: done"
    else
        echo "fetcher $i: FAILED (exit $?); its log:"
        tail -5 "$WORK/bfetch$i.log"
        failed=1
    fi
done
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" -v n="$FETCHERS" -v b="$(stat -c %s "$WORK/origin/demo.img")" \
    'BEGIN { printf "%d copies of %.0f MB in %.1f s\n", n, b / 1e6, e - s }'
# Where the bytes came from, from the fetchers' --json reports.
python3 - "$SEED_PORT" "$WORK"/bfetch*.json <<'PY' || true
import json, sys
origin = ":" + sys.argv[1]
total_origin = 0
for path in sys.argv[2:]:
    try:
        r = json.load(open(path))
    except (OSError, ValueError):
        continue
    got = sum(p["downloaded"] for p in r["peers"])
    from_origin = sum(p["downloaded"] for p in r["peers"] if p["addr"].endswith(origin))
    total_origin += from_origin
    print(f"{path.rsplit('/', 1)[-1][:-5]}: {got / 1e6:.1f} MB, {from_origin / 1e6:.1f} MB from the origin, "
          f"{(got - from_origin) / 1e6:.1f} MB from other fetchers, {r['uploaded'] / 1e6:.1f} MB sent to them")
print(f"the origin sent {total_origin / 1e6:.1f} MB in all")
PY

step "7. verify every copy"
for i in $(seq "$FETCHERS"); do
    show bverify -q "$WORK/demo.torrent" "$WORK/fetch$i" || failed=1
done

step "8. by magnet link: the metadata comes from the origin (BEP 9), then the content"
MAGNET=$(bdecode --magnet "$WORK/demo.torrent")
mkdir -p "$WORK/magnet"
show timeout "$((TIMEOUT + 30))" bfetch "$MAGNET&x.pe=127.0.0.1:$SEED_PORT" -o "$WORK/magnet" --port 0 --no-linger -q || failed=1
show bverify -q "$WORK/demo.torrent" "$WORK/magnet" || failed=1

step "9. two images in one bfetch, over one port"
head -c "$(numfmt --from=iec "$SIZE")" /dev/urandom > "$WORK/origin/second.img"
mktorrent -q -a "$ANNOUNCE" -o "$WORK/second.torrent" "$WORK/origin/second.img"
bseed "$WORK/second.torrent" "$WORK/origin/second.img" --port 0 > "$WORK/bseed2.log" 2>&1 &
PIDS+=($!)
SEED2_PORT=$(bound_port "$WORK/bseed2.log" "$!")
mkdir -p "$WORK/both"
show timeout "$((TIMEOUT + 30))" bfetch "$WORK/demo.torrent" "$WORK/second.torrent" -o "$WORK/both" --port 0 --no-linger -q \
    --peer "127.0.0.1:$SEED_PORT" --peer "127.0.0.1:$SEED2_PORT" || failed=1
show bverify -q "$WORK/demo.torrent" "$WORK/both" || failed=1
show bverify -q "$WORK/second.torrent" "$WORK/both" || failed=1

if [ "$failed" -ne 0 ]; then
    echo "demo: FAILED" >&2
    exit 1
fi
step "done: every copy verified"
