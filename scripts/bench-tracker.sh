#!/bin/sh
# Tracker benchmark: announces per second of btrack (in memory; on Redis with one and with
# two btrack processes sharing one redis-server) against Debian's opentracker on loopback, over HTTP (wrk + a Lua script) and UDP (examples/tracker_udp_load.rs), with
# 1 000 torrents x 1 000 peers: every request picks a random info-hash, peer id and port.
#
# usage: scripts/bench-tracker.sh [SECONDS] [CONNECTIONS] [ROUNDS]
#   SECONDS      length of each run (default 10)
#   CONNECTIONS  wrk connections (default 64)
#   ROUNDS       the btrack / opentracker HTTP keep-alive and UDP runs are repeated this
#                many times, alternating, and the best of each is kept (default 3)
#
# Fairness: both trackers run on the same machine as the load generator (2 cores are shared
# by everyone); both get the same 1 000 info-hashes (opentracker in its Debian build only
# tracks whitelisted hashes: they are all whitelisted, in its chroot; btrack runs with --open). btrack runs
# with --udp-rate-limit 0, since the load comes from one address (opentracker has no such
# limit) and with --max-connections-per-ip 1024 (its default of 32 would turn half of the
# 64 connections into fast 503 answers, which wrk counts as requests). Each run is preceded by a 2 s warm-up that fills the swarms.
# Redis rows: redis-server on a unix socket in the work directory, btrack --store unix://...;
# with two btracks the load is split in half (two wrk / two UDP generators at once, one per
# btrack) and the rates are summed. The HTTP-close column is measured for in-memory btrack
# and opentracker only.
# UDP load: the same generator for every tracker, 2 threads x 64 announces in flight over 4
# source sockets each (8 client ports, so a tracker with one SO_REUSEPORT socket per core
# gets its load spread as from many clients); it sends in batches (sendmmsg, or one UDP GSO
# send per batch) and receives in batches (recvmmsg), so that on 2 cores the trackers, not
# the generator, are measured. Its threads run under SCHED_BATCH, so that an answer waking
# one of them does not preempt the tracker thread sending it (clients on other machines
# never do); that is the same for every tracker and changes nothing in what is counted
# (UDPLOAD_NO_BATCH=1 turns it off). The generator still shares the 2 cores with the tracker,
# and a tracker need not use both (opentracker answers UDP on one thread), so the rate
# ratio is not a cost ratio: the "UDP CPU-us/ann" column gives each tracker's own CPU time
# (user + system, from /proc) per answered announce, the lowest over the rounds (like the
# rates, the best), and its ratio row opentracker's over btrack's. Run it under `flock -o` when
# other jobs share the lock: the trackers started here must not inherit the lock's file
# descriptor.
set -eu
SECS=${1:-10}
CONNS=${2:-64}
ROUNDS=${3:-3}
UDP_LOAD="2 64 4"   # threads, window per thread, source sockets per thread
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in wrk opentracker python3 redis-server; do
  command -v $tool >/dev/null || { echo "bench-tracker: $tool is not installed" >&2; exit 2; }
done
echo "bench-tracker: building btrack and the UDP load generator (release)" >&2
(cd "$ROOT" && cargo build -q --release --bin btrack --example tracker_udp_load)
BTRACK=${BTRACK:-$CARGO_TARGET_DIR/release/btrack}   # BTRACK=/path/to/another/btrack to compare builds
UDPLOAD=$CARGO_TARGET_DIR/release/examples/tracker_udp_load

WORK=$(mktemp -d /tmp/bench-tracker.XXXXXX)
BT_PID=""; OT_PID=""; RD_PID=""; R1_PID=""; R2_PID=""
cleanup() {
  for p in "$R1_PID" "$R2_PID" "$RD_PID"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  [ -n "$BT_PID" ] && kill "$BT_PID" 2>/dev/null || true
  [ -n "$OT_PID" ] && kill "$OT_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# 1 000 info-hashes: hex for the whitelist and the UDP generator, %XX for the Lua script.
python3 - "$WORK" <<'EOF'
import hashlib, sys
w = sys.argv[1]
hs = [hashlib.sha1(b"shoal-bench-%d" % i).digest() for i in range(1000)]
open(w + "/hashes.txt", "w").write("".join(h.hex() + "\n" for h in hs))
enc = ['"' + "".join("%%%02X" % b for b in h) + '"' for h in hs]
open(w + "/announce.lua", "w").write("""
local hashes = { %s }
local n = 0
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local t = math.random(1, #hashes)
  local p = math.random(1, 1000)
  local left = 0
  if p %% 2 == 1 then left = 1000 end
  local path = "/announce?info_hash=" .. hashes[t] .. "&peer_id=-WR0001-" .. string.format("%%012d", p) ..
    "&port=" .. (10000 + p) .. "&uploaded=0&downloaded=0&left=" .. left .. "&compact=1&numwant=50"
  return wrk.format("GET", path)
end
""" % ", ".join(enc))
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { i=0; while ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && { echo "bench-tracker: nothing listens on $1" >&2; exit 2; }; sleep 0.1; done; }

BT_PORT=$(free_port)
"$BTRACK" --listen 127.0.0.1:$BT_PORT --data-dir "$WORK/btrack-data" --open --udp-rate-limit 0 --http-rate-limit 0 --max-connections-per-ip 1024 2>"$WORK/btrack.log" &
BT_PID=$!
OT_PORT=$(free_port)
mkdir -p "$WORK/ot"
cp "$WORK/hashes.txt" "$WORK/ot/whitelist.txt"
cat > "$WORK/ot/opentracker.conf" <<EOF
listen.tcp 127.0.0.1:$OT_PORT
listen.udp 127.0.0.1:$OT_PORT
access.whitelist whitelist.txt
tracker.rootdir $WORK/ot
EOF
chmod 755 "$WORK" "$WORK/ot"; chmod 644 "$WORK/ot/whitelist.txt"
opentracker -f "$WORK/ot/opentracker.conf" -u nobody >"$WORK/opentracker.log" 2>&1 &
OT_PID=$!
mkdir -p "$WORK/redis"
printf 'daemonize no\nport 0\nunixsocket %s\nunixsocketperm 700\ndir %s\nlogfile %s\nsave ""\nappendonly no\n' \
  "$WORK/redis/redis.sock" "$WORK/redis" "$WORK/redis/redis.log" > "$WORK/redis/redis.conf"
redis-server "$WORK/redis/redis.conf" &
RD_PID=$!
i=0; while [ ! -S "$WORK/redis/redis.sock" ]; do i=$((i+1)); [ $i -gt 100 ] && { echo "bench-tracker: redis-server did not start" >&2; exit 2; }; sleep 0.1; done
R1_PORT=$(free_port)
"$BTRACK" --listen 127.0.0.1:$R1_PORT --data-dir "$WORK/r1-data" --open --udp-rate-limit 0 --http-rate-limit 0 --max-connections-per-ip 1024 --store "unix://$WORK/redis/redis.sock" 2>"$WORK/r1.log" &
R1_PID=$!
R2_PORT=$(free_port)
"$BTRACK" --listen 127.0.0.1:$R2_PORT --data-dir "$WORK/r2-data" --open --udp-rate-limit 0 --http-rate-limit 0 --max-connections-per-ip 1024 --store "unix://$WORK/redis/redis.sock" 2>"$WORK/r2.log" &
R2_PID=$!
wait_port $BT_PORT
wait_port $OT_PORT
wait_port $R1_PORT
wait_port $R2_PORT

# Both must really answer announces (not failures) before we count anything.
check() {
  H=$(head -1 "$WORK/hashes.txt" | python3 -c 'import sys; print("".join("%%%02X" % b for b in bytes.fromhex(sys.stdin.read().strip())))')
  R=$(curl -s "http://127.0.0.1:$1/announce?info_hash=$H&peer_id=-CK0001-000000000001&port=9&uploaded=0&downloaded=0&left=0&compact=1")
  case "$R" in *interval*) ;; *) echo "bench-tracker: $2 does not answer announces: $R" >&2; exit 2;; esac
}
check $BT_PORT btrack
check $OT_PORT opentracker
check $R1_PORT "btrack (redis)"
check $R2_PORT "btrack (redis, second)"

http_rate() { # port [wrk header args] -> requests/s
  P=$1; shift
  wrk -t2 -c$CONNS -d2s "$@" -s "$WORK/announce.lua" "http://127.0.0.1:$P" >/dev/null 2>&1 || true
  OUT=$(wrk -t2 -c$CONNS -d${SECS}s "$@" -s "$WORK/announce.lua" "http://127.0.0.1:$P")
  echo "$OUT" | sed 's/^/    /' >&2
  # opentracker closes every connection after its answer: wrk counts that as a read
  # error; the answers themselves are complete, so only Non-2xx and timeouts matter.
  case "$OUT" in *Non-2xx*|*"timeout [1-9]"*) echo "bench-tracker: warning: errors in this run" >&2;; esac
  echo "$OUT" | awk '/Requests\/sec/ {printf "%d", $2}'
}
cpu_ticks() { # pid -> user + system clock ticks the process used so far
  awk '{print $14 + $15}' "/proc/$1/stat"
}
udp_rate() { # port [pid] -> announces/s; with pid, also the tracker's CPU-microseconds per
             # answered announce over the run, in $WORK/cpu-us
  "$UDPLOAD" 127.0.0.1:$1 2 "$WORK/hashes.txt" $UDP_LOAD >/dev/null
  T0=$([ -n "${2:-}" ] && cpu_ticks "$2" || echo 0)
  OUT=$("$UDPLOAD" 127.0.0.1:$1 "$SECS" "$WORK/hashes.txt" $UDP_LOAD)
  T1=$([ -n "${2:-}" ] && cpu_ticks "$2" || echo 0)
  echo "    $OUT" >&2
  echo "$OUT" | python3 -c '
import json, os, sys
j = json.load(sys.stdin)
ticks, hz = int(sys.argv[1]), os.sysconf("SC_CLK_TCK")
us = ticks / hz * 1e6 / j["answered"] if j["answered"] and ticks else 0
open(sys.argv[2], "w").write("%.2f" % us)
if us: print("    tracker CPU: %.2f us per announce" % us, file=sys.stderr)
print(int(j["per_second"]) if j["errors"] == 0 else 0)' $((T1 - T0)) "$WORK/cpu-us"
}

http_rate2() { # port1 port2 -> summed requests/s, half the connections on each
  H=$((CONNS / 2))
  wrk -t1 -c$H -d2s -s "$WORK/announce.lua" "http://127.0.0.1:$1" >/dev/null 2>&1 &
  wrk -t1 -c$H -d2s -s "$WORK/announce.lua" "http://127.0.0.1:$2" >/dev/null 2>&1; wait
  wrk -t1 -c$H -d${SECS}s -s "$WORK/announce.lua" "http://127.0.0.1:$1" >"$WORK/w1.txt" &
  wrk -t1 -c$H -d${SECS}s -s "$WORK/announce.lua" "http://127.0.0.1:$2" >"$WORK/w2.txt"; wait
  sed 's/^/    /' "$WORK/w1.txt" "$WORK/w2.txt" >&2
  cat "$WORK/w1.txt" "$WORK/w2.txt" | awk '/Requests\/sec/ {s += $2} END {printf "%d", s}'
}
udp_rate2() { # port1 port2 -> summed announces/s
  "$UDPLOAD" 127.0.0.1:$1 "$SECS" "$WORK/hashes.txt" 1 64 4 >"$WORK/u1.json" &
  "$UDPLOAD" 127.0.0.1:$2 "$SECS" "$WORK/hashes.txt" 1 64 4 >"$WORK/u2.json"; wait
  sed 's/^/    /' "$WORK/u1.json" "$WORK/u2.json" >&2
  cat "$WORK/u1.json" "$WORK/u2.json" | python3 -c 'import json,sys; js=[json.loads(l) for l in sys.stdin if l.strip()]; print(int(sum(j["per_second"] for j in js)) if all(j["errors"]==0 for j in js) else 0)'
}

max() { [ "$1" -ge "$2" ] && echo "$1" || echo "$2"; }
fmin() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:] if float(x) > 0]; print('%.2f' % min(v) if v else 0)" "$@"; }
BT_HTTP=0; OT_HTTP=0; BT_UDP=0; OT_UDP=0; BT_CPU=0; OT_CPU=0
for r in $(seq "$ROUNDS"); do
  echo "bench-tracker: round $r/$ROUNDS: HTTP keep-alive, btrack (--open), $SECS s, $CONNS connections" >&2
  BT_HTTP=$(max "$BT_HTTP" "$(http_rate $BT_PORT)")
  echo "bench-tracker: round $r/$ROUNDS: HTTP keep-alive, opentracker (it closes every connection anyway)" >&2
  OT_HTTP=$(max "$OT_HTTP" "$(http_rate $OT_PORT)")
  echo "bench-tracker: round $r/$ROUNDS: UDP, btrack ($UDP_LOAD)" >&2
  BT_UDP=$(max "$BT_UDP" "$(udp_rate $BT_PORT $BT_PID)")
  BT_CPU=$(fmin "$BT_CPU" "$(cat "$WORK/cpu-us")")
  echo "bench-tracker: round $r/$ROUNDS: UDP, opentracker" >&2
  OT_UDP=$(max "$OT_UDP" "$(udp_rate $OT_PORT $OT_PID)")
  OT_CPU=$(fmin "$OT_CPU" "$(cat "$WORK/cpu-us")")
done
echo "bench-tracker: HTTP one request per connection, btrack" >&2
BT_HTTPC=$(http_rate $BT_PORT -H "Connection: close")
echo "bench-tracker: HTTP one request per connection, opentracker" >&2
OT_HTTPC=$(http_rate $OT_PORT -H "Connection: close")
echo "bench-tracker: HTTP keep-alive, btrack --store redis (one process)" >&2
R1_HTTP=$(http_rate $R1_PORT)
echo "bench-tracker: UDP, btrack --store redis (one process)" >&2
R1_UDP=$(udp_rate $R1_PORT)
echo "bench-tracker: HTTP keep-alive, btrack --store redis (two processes, load split)" >&2
R2_HTTP=$(http_rate2 $R1_PORT $R2_PORT)
echo "bench-tracker: UDP, btrack --store redis (two processes, load split)" >&2
R2_UDP=$(udp_rate2 $R1_PORT $R2_PORT)
BT_RSS=$(awk '/VmHWM/ {print $2}' /proc/$BT_PID/status)
OT_RSS=$(awk '/VmHWM/ {print $2}' /proc/$OT_PID/status)

ratio() { python3 -c "print('%.2f' % ($1 / $2) if $2 else 'n/a')"; }
printf '%-12s %16s %18s %12s %16s %12s\n' tracker "HTTP ann/s" "HTTP close ann/s" "UDP ann/s" "UDP CPU-us/ann" "peak RSS"
printf '%-12s %16s %18s %12s %16s %8s MiB\n' btrack "$BT_HTTP" "$BT_HTTPC" "$BT_UDP" "$BT_CPU" $((BT_RSS / 1024))
printf '%-12s %16s %18s %12s %16s %8s MiB\n' opentracker "$OT_HTTP" "$OT_HTTPC" "$OT_UDP" "$OT_CPU" $((OT_RSS / 1024))
printf '%-12s %16s %18s %12s\n' "redis x1" "$R1_HTTP" - "$R1_UDP"
printf '%-12s %16s %18s %12s\n' "redis x2" "$R2_HTTP" - "$R2_UDP"
printf '%-12s %16s %18s %12s %16s\n' "ratio" "$(ratio $BT_HTTP $OT_HTTP)" "$(ratio $BT_HTTPC $OT_HTTPC)" "$(ratio $BT_UDP $OT_UDP)" "$(ratio $OT_CPU $BT_CPU)"
