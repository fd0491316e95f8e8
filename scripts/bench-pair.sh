#!/usr/bin/env bash
# bench-pair.sh: one seeder and one downloader on loopback, unshaped, for three implementations
# in the same run: shoal (bseed -> bfetch --no-linger, release build), libtorrent -> libtorrent
# (tests/helpers/lt_seed.py / lt_fetch.py with libtorrent's high_performance_seed settings) and
# transmission-cli -> transmission-cli, plus the yardstick of issue 12: a plain TCP file copy
# (the sender sendfile()s the file from the page cache, the receiver recv()s into a 1 MiB buffer
# and write()s it to a file; no hashing, no fsync). Prints, per pair: download rate (MB/s = 10^6
# bytes/s over the downloader's wall time, whole process, start to verified completion), CPU
# seconds (user+sys) and peak RSS of downloader and seeder (from /usr/bin/time), CPU seconds per
# GB (10^9 bytes) of each, and the ratios of shoal to the others. The seeder's CPU is what it
# used while the download ran (from /proc; its content check at start is not counted), the
# downloader's is its whole process.
#
#   scripts/bench-pair.sh [SIZE]        SIZE like 512M, 2G (default 2G)
#   PAIRS="lt tr" scripts/bench-pair.sh 512M   run only some pairs (tcp, shoal, lt, tr); the tcp
#                                              copy always runs before shoal (its ratio's base)
#   TIMEOUT=900 ...                            seconds per download (default 600)
#   KEEP=1 ...                                 keep the work dir (logs) for inspection
#   WARM=0 ...                                 skip the page warm-up (below)
#   BIN=/some/dir ...                          use bseed, bfetch, mktorrent from there (no build;
#                                              to compare two builds in one sitting)
#
# Page warm-up: on a VM whose balloon takes back free memory (virtio-balloon free page
# reporting, as on the build machines), memory freed more than ~2 s ago costs the host a page
# fault on first touch again, about 6 s per GiB written into the page cache against under 1 s;
# whichever downloader happens to get such pages loses. So right before each timed download
# a scratch file of SIZE is written and deleted, and every downloader writes into warm pages.
#
# Transmission refuses 127.0.0.0/8 peers, so its pair runs in a private network namespace (its
# own loopback with a 10.199.250.1 address; needs root) with tests/helpers/peer_tracker.py as
# the tracker there. The seeders verify the content before serving (not timed). Every result is
# compared with the source (cmp). Everything started is stopped and the work dir removed on exit.
set -euo pipefail

SIZE=${1:-2G}
PAIRS=${PAIRS:-"tcp shoal lt tr"}
# shoal's target is a ratio to the TCP copy in the same run: run that first.
case " $PAIRS " in *" shoal "*) case " $PAIRS " in *" tcp "*) ;; *) PAIRS="tcp $PAIRS" ;; esac ;; esac
TIMEOUT=${TIMEOUT:-600}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HELPERS=$ROOT/tests/helpers
PY=/usr/bin/python3
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/bench-pair.XXXXXX)
NS=shoal-bench-$$
NSADDR=10.199.250.1
PIDS=()

cleanup() {
    set +e
    # PIDS are /usr/bin/time (or helper) processes: stop their children first, then them.
    for p in "${PIDS[@]}"; do
        for c in $(pgrep -P "$p"); do kill -TERM "$c" 2>/dev/null; done
        kill -TERM "$p" 2>/dev/null
    done
    sleep 0.5
    for p in "${PIDS[@]}"; do
        for c in $(pgrep -P "$p"); do kill -KILL "$c" 2>/dev/null; done
        kill -KILL "$p" 2>/dev/null
    done
    ip netns del "$NS" 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "bench-pair: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "bench-pair: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null || die "$1 is not installed"; }
need /usr/bin/time; need ss; need cmp

bytes=$($PY -c "
import sys; s=sys.argv[1].strip().upper(); m={'K':1<<10,'M':1<<20,'G':1<<30}
print(int(float(s[:-1])*m[s[-1]]) if s[-1] in m else int(s))" "$SIZE")
free_port() { $PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"; }

# wait_for DESC SECONDS CMD...: poll CMD every 0.1 s.
wait_for() {
    local desc=$1 limit=$2; shift 2
    local end=$((SECONDS + limit))
    until "$@"; do
        [ $SECONDS -lt $end ] || die "timed out after ${limit}s waiting for $desc"
        sleep 0.1
    done
}
listening() { ${2:-} ss -Hltn "sport = :$1" | grep -q .; }
# The process /usr/bin/time runs (so signals reach the tool, and time still reports).
child_of() { local c; for _ in $(seq 100); do c=$(pgrep -P "$1" | head -1) && [ -n "$c" ] && { echo "$c"; return; }; sleep 0.05; done; echo "$1"; }
# stop PID (a /usr/bin/time process): TERM its child, wait for time to write its report.
stop() {
    local t=$1 c; c=$(child_of "$t")
    kill -TERM "$c" 2>/dev/null || true
    for _ in $(seq 200); do kill -0 "$t" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$c" 2>/dev/null || true
    wait "$t" 2>/dev/null || true
}
# CPU ticks (user+sys, all threads) used so far by the process a /usr/bin/time process runs;
# empty once it has exited.
ticks() { local c; c=$(child_of "$1"); sed 's/.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12 + $13}'; }
HZ=$(getconf CLK_TCK)
# seconds between two ticks readings (empty if either is)
tick_secs() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" -v hz="$HZ" 'BEGIN {printf "%.2f", (b - a) / hz}'; }
warm_pages() {
    [ "${WARM:-1}" = 1 ] || return 0
    dd if="$SRC" of="$WORK/warm.tmp" bs=1M 2>/dev/null; rm -f "$WORK/warm.tmp"
}
# "%e %U %S %M" -> cpu seconds and RSS MiB
cpu_of() { awk '/^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$/ {printf "%.1f", $2 + $3}' "$1"; }
rss_of() { awk '/^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$/ {printf "%.0f", $4 / 1024}' "$1"; }
TIMEFMT="%e %U %S %M"
# CPU seconds per GB moved (10^9 bytes), two decimals.
per_gb() { awk -v n="$bytes" '/^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$/ {printf "%.2f", ($2 + $3) / (n / 1e9)}' "$1"; }

echo "bench-pair: size $SIZE ($bytes bytes), pairs: $PAIRS, work dir $WORK" >&2
mkdir -p "$WORK/src"
SRC=$WORK/src/payload.bin
head -c "$bytes" /dev/urandom > "$SRC"

# shoal's release binaries (also used to make the torrents).
if [ -z "${BIN:-}" ]; then
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET cargo build --release --quiet --bin bseed --bin bfetch --bin mktorrent) \
        || die "cargo build --release failed"
    BIN=$TARGET/release
fi
"$BIN/mktorrent" -q --no-date -o "$WORK/plain.torrent" "$SRC"

declare -A RATE FCPU FRSS SCPU SRSS FCPB SCPB

result() { # name start_ns end_ns fetch_time seed_time [seed CPU seconds during the download]
    local secs
    secs=$(awk -v a="$2" -v b="$3" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
    RATE[$1]=$(awk -v n="$bytes" -v s="$secs" 'BEGIN {printf "%.1f", n / s / 1e6}')
    FCPU[$1]=$(cpu_of "$4"); FRSS[$1]=$(rss_of "$4"); SCPU[$1]=$(cpu_of "$5"); SRSS[$1]=$(rss_of "$5")
    FCPB[$1]=$(per_gb "$4"); SCPB[$1]=$(per_gb "$5")
    if [ -n "${6:-}" ]; then
        SCPU[$1]=$6; SCPB[$1]=$(awk -v c="$6" -v n="$bytes" 'BEGIN {printf "%.2f", c / (n / 1e9)}')
    fi
    echo "bench-pair: $1: ${secs}s, ${RATE[$1]} MB/s" >&2
}

check_same() { cmp -s "$SRC" "$1" || die "$2: downloaded file differs from the source"; }

run_shoal() {
    local d=$WORK/shoal sp; mkdir -p "$d/out"; sp=$(free_port)
    /usr/bin/time -f "$TIMEFMT" -o "$d/seed.time" "$BIN/bseed" "$WORK/plain.torrent" "$SRC" --port "$sp" \
        >"$d/seed.out" 2>"$d/seed.err" &
    local seed=$!; PIDS+=($seed)
    wait_for "bseed to listen" 600 listening "$sp"
    warm_pages
    local t0 t1 s0 s1; s0=$(ticks "$seed"); t0=$(date +%s%N)
    /usr/bin/time -f "$TIMEFMT" -o "$d/fetch.time" "$BIN/bfetch" "$WORK/plain.torrent" \
        -o "$d/out" --peer "127.0.0.1:$sp" --port "$(free_port)" --no-linger --timeout "${TIMEOUT}s" >"$d/fetch.out" 2>"$d/fetch.err" \
        || { tail -5 "$d/fetch.err" >&2; die "shoal: bfetch failed"; }
    t1=$(date +%s%N); s1=$(ticks "$seed")
    stop "$seed"
    check_same "$d/out/payload.bin" shoal
    result shoal "$t0" "$t1" "$d/fetch.time" "$d/seed.time" "$(tick_secs "$s0" "$s1")"
    rm -rf "$d/out"
}

# The plain TCP copy: tcp_copy.py send SRC PORT (serves one connection) / recv PORT OUT.
write_tcp_copy() {
    cat >"$WORK/tcp_copy.py" <<'EOF'
import os, socket, sys
if sys.argv[1] == "send":
    src, port = sys.argv[2], int(sys.argv[3])
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    c, _ = ls.accept()
    fd = os.open(src, os.O_RDONLY)
    size, off = os.fstat(fd).st_size, 0
    while off < size:
        n = os.sendfile(c.fileno(), fd, off, size - off)
        if n == 0:
            sys.exit("sendfile: short file")
        off += n
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
else:
    port, out = int(sys.argv[2]), sys.argv[3]
    s = socket.create_connection(("127.0.0.1", port))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    buf = bytearray(1 << 20)
    mv = memoryview(buf)
    while True:
        n = s.recv_into(buf)
        if n == 0:
            break
        done = 0
        while done < n:
            done += os.write(fd, mv[done:n])
    os.close(fd)
EOF
}

run_tcp() {
    local d=$WORK/tcp sp; mkdir -p "$d/out"; sp=$(free_port)
    write_tcp_copy
    /usr/bin/time -f "$TIMEFMT" -o "$d/seed.time" $PY "$WORK/tcp_copy.py" send "$SRC" "$sp" \
        >"$d/seed.out" 2>"$d/seed.err" &
    local seed=$!; PIDS+=($seed)
    wait_for "the TCP sender to listen" 30 listening "$sp"
    warm_pages
    local t0 t1 s0 s1; s0=$(ticks "$seed"); t0=$(date +%s%N)
    /usr/bin/time -f "$TIMEFMT" -o "$d/fetch.time" $PY "$WORK/tcp_copy.py" recv "$sp" "$d/out/payload.bin" \
        >"$d/fetch.out" 2>"$d/fetch.err" || { tail -5 "$d/fetch.err" >&2; die "tcp copy: receiver failed"; }
    t1=$(date +%s%N)
    wait "$seed" 2>/dev/null || true
    check_same "$d/out/payload.bin" "tcp copy"
    result tcp "$t0" "$t1" "$d/fetch.time" "$d/seed.time"
    rm -rf "$d/out"
}

run_lt() {
    local d=$WORK/lt sp; mkdir -p "$d/out"; sp=$(free_port)
    /usr/bin/time -f "$TIMEFMT" -o "$d/seed.time" $PY "$HELPERS/lt_seed.py" "$WORK/plain.torrent" "$WORK/src" \
        --port "$sp" --bench >"$d/seed.out" 2>"$d/seed.err" &
    local seed=$!; PIDS+=($seed)
    wait_for "lt_seed to seed" 900 grep -q "seeding on" "$d/seed.err"
    warm_pages
    local t0 t1 s0 s1; s0=$(ticks "$seed"); t0=$(date +%s%N)
    /usr/bin/time -f "$TIMEFMT" -o "$d/fetch.time" $PY "$HELPERS/lt_fetch.py" "$WORK/plain.torrent" "$d/out" \
        --port "$(free_port)" --peer "127.0.0.1:$sp" --timeout "$TIMEOUT" --bench >"$d/fetch.out" 2>"$d/fetch.err" \
        || { tail -5 "$d/fetch.err" >&2; die "libtorrent: lt_fetch failed"; }
    t1=$(date +%s%N); s1=$(ticks "$seed")
    stop "$seed"
    check_same "$d/out/payload.bin" libtorrent
    result lt "$t0" "$t1" "$d/fetch.time" "$d/seed.time" "$(tick_secs "$s0" "$s1")"
    rm -rf "$d/out"
}

tr_config() {
    mkdir -p "$1"
    cat >"$1/settings.json" <<'EOF'
{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "port-forwarding-enabled": false,
 "utp-enabled": false, "rpc-enabled": false, "blocklist-enabled": false, "rename-partial-files": true,
 "ratio-limit-enabled": false, "idle-seeding-limit-enabled": false, "speed-limit-up-enabled": false,
 "speed-limit-down-enabled": false, "encryption": 1, "message-level": 1, "cache-size-mb": 64}
EOF
}

run_tr() {
    need transmission-cli
    [ "$(id -u)" = 0 ] || die "the transmission pair needs root (network namespace)"
    local d=$WORK/tr tp sp fp; mkdir -p "$d/out"
    ip netns add "$NS"; ip -n "$NS" link set lo up; ip -n "$NS" addr add "$NSADDR/32" dev lo
    local X="ip netns exec $NS"
    tp=$(free_port); sp=$(free_port); fp=$(free_port)
    $X $PY "$HELPERS/peer_tracker.py" "$NSADDR:$tp" --log "$d/tracker.log" >/dev/null 2>&1 &
    PIDS+=($!)
    wait_for "peer_tracker" 30 listening "$tp" "$X"
    "$BIN/mktorrent" -q --no-date -a "http://$NSADDR:$tp/announce" -o "$WORK/tr.torrent" "$SRC"
    tr_config "$d/seedcfg"; tr_config "$d/fetchcfg"
    /usr/bin/time -f "$TIMEFMT" -o "$d/seed.time" $X transmission-cli -g "$d/seedcfg" -w "$WORK/src" -p "$sp" \
        "$WORK/tr.torrent" >"$d/seed.out" 2>"$d/seed.err" &
    local seed=$!; PIDS+=($seed)
    wait_for "transmission seeder to verify and seed" 1800 grep -q Seeding "$d/seed.out"
    warm_pages
    local t0 t1 s0 s1; s0=$(ticks "$seed"); t0=$(date +%s%N)
    /usr/bin/time -f "$TIMEFMT" -o "$d/fetch.time" $X transmission-cli -g "$d/fetchcfg" -w "$d/out" -p "$fp" \
        "$WORK/tr.torrent" >"$d/fetch.out" 2>"$d/fetch.err" &
    local fetch=$!; PIDS+=($fetch)
    # Transmission renames payload.bin.part to payload.bin once every piece is verified.
    wait_for "transmission download" "$TIMEOUT" test -f "$d/out/payload.bin"
    t1=$(date +%s%N); s1=$(ticks "$seed")
    stop "$fetch"; stop "$seed"
    check_same "$d/out/payload.bin" transmission
    result tr "$t0" "$t1" "$d/fetch.time" "$d/seed.time" "$(tick_secs "$s0" "$s1")"
    rm -rf "$d/out"
}

for p in $PAIRS; do
    case $p in
        tcp) run_tcp ;;
        shoal) run_shoal ;;
        lt) run_lt ;;
        tr) run_tr ;;
        *) die "unknown pair $p (tcp, shoal, lt, tr)" ;;
    esac
done

declare -A LABEL=([tcp]="tcp copy (sendfile->write)" [shoal]="shoal bseed->bfetch" [lt]="libtorrent->libtorrent" [tr]="transmission->transmission")
printf "\nloopback pair, %s, unshaped (%s)\n" "$SIZE" "$(date -u +%Y-%m-%dT%H:%MZ)"
F="%-28s %9s %11s %11s %13s %10s %10s %12s\n"
printf "$F" pair "MB/s" "fetch CPU s" "fetch s/GB" "fetch RSS MiB" "seed CPU s" "seed s/GB" "seed RSS MiB"
for p in $PAIRS; do
    printf "$F" "${LABEL[$p]}" "${RATE[$p]}" "${FCPU[$p]}" "${FCPB[$p]}" "${FRSS[$p]}" "${SCPU[$p]}" "${SCPB[$p]}" "${SRSS[$p]}"
done
if [ -n "${RATE[shoal]:-}" ]; then
    for p in tcp lt tr; do
        [ -n "${RATE[$p]:-}" ] || continue
        awk -v a="${RATE[shoal]}" -v b="${RATE[$p]}" -v c="${FCPU[shoal]}" -v d="${FCPU[$p]}" -v e="${FRSS[shoal]}" -v f="${FRSS[$p]}" -v n="${LABEL[$p]}" \
            'BEGIN {printf "shoal vs %s: rate x%.2f, fetch CPU x%.2f, fetch RSS x%.2f\n", n, a / b, (d > 0 ? c / d : 0), (f > 0 ? e / f : 0)}'
    done
fi
# The targets for shoal: >= 0.5 x the TCP copy's rate in this run (issue 12), bfetch peak RSS
# < 64 MiB; and from the first round: >= 1 GB/s, faster than both other clients.
if [ -n "${RATE[shoal]:-}" ]; then
    verdict() { if [ "$2" = 1 ]; then echo "target met: $1"; else echo "TARGET MISSED: $1"; fi; }
    if [ -n "${RATE[tcp]:-}" ]; then
        verdict "shoal >= 0.5 x tcp copy (${RATE[shoal]} / ${RATE[tcp]} MB/s = $(awk -v a="${RATE[shoal]}" -v b="${RATE[tcp]}" 'BEGIN {printf "%.2f", a / b}'))" \
            "$(awk -v a="${RATE[shoal]}" -v b="${RATE[tcp]}" 'BEGIN {print (a >= 0.5 * b) ? 1 : 0}')"
    fi
    verdict "shoal >= 1000 MB/s (${RATE[shoal]})" "$(awk -v r="${RATE[shoal]}" 'BEGIN {print (r >= 1000) ? 1 : 0}')"
    verdict "bfetch peak RSS < 64 MiB (${FRSS[shoal]} MiB)" "$(awk -v r="${FRSS[shoal]}" 'BEGIN {print (r < 64) ? 1 : 0}')"
    for p in lt tr; do
        [ -n "${RATE[$p]:-}" ] || continue
        verdict "shoal faster than ${LABEL[$p]} (${RATE[shoal]} vs ${RATE[$p]} MB/s)" \
            "$(awk -v a="${RATE[shoal]}" -v b="${RATE[$p]}" 'BEGIN {print (a > b) ? 1 : 0}')"
    done
fi
