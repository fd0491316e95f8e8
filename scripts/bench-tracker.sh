#!/bin/sh
# Tracker benchmark: announces per second of btrack against Debian's opentracker on
# loopback, over HTTP (wrk + a Lua script) and UDP (examples/tracker_udp_load.rs), with
# 1 000 torrents x 1 000 peers: every request picks a random info-hash, peer id and port.
#
# usage: scripts/bench-tracker.sh [SECONDS] [CONNECTIONS]
#   SECONDS      length of each run (default 10)
#   CONNECTIONS  wrk connections (default 64)
#
# Fairness: both trackers run on the same machine as the load generator (2 cores are shared
# by everyone); both get the same 1 000 info-hashes (opentracker in its Debian build only
# tracks whitelisted hashes: they are all whitelisted, in its chroot; btrack runs with --open). btrack runs
# with --udp-rate-limit 0, since the load comes from one address (opentracker has no such
# limit). Each run is preceded by a 2 s warm-up that fills the swarms.
set -eu
SECS=${1:-10}
CONNS=${2:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in wrk opentracker python3; do
  command -v $tool >/dev/null || { echo "bench-tracker: $tool is not installed" >&2; exit 2; }
done
echo "bench-tracker: building btrack and the UDP load generator (release)" >&2
(cd "$ROOT" && cargo build -q --release --bin btrack --example tracker_udp_load)
BTRACK=$CARGO_TARGET_DIR/release/btrack
UDPLOAD=$CARGO_TARGET_DIR/release/examples/tracker_udp_load

WORK=$(mktemp -d /tmp/bench-tracker.XXXXXX)
BT_PID=""; OT_PID=""
cleanup() {
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
"$BTRACK" --listen 127.0.0.1:$BT_PORT --data-dir "$WORK/btrack-data" --open --udp-rate-limit 0 --http-rate-limit 0 2>"$WORK/btrack.log" &
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
wait_port $BT_PORT
wait_port $OT_PORT

# Both must really answer announces (not failures) before we count anything.
check() {
  H=$(head -1 "$WORK/hashes.txt" | python3 -c 'import sys; print("".join("%%%02X" % b for b in bytes.fromhex(sys.stdin.read().strip())))')
  R=$(curl -s "http://127.0.0.1:$1/announce?info_hash=$H&peer_id=-CK0001-000000000001&port=9&uploaded=0&downloaded=0&left=0&compact=1")
  case "$R" in *interval*) ;; *) echo "bench-tracker: $2 does not answer announces: $R" >&2; exit 2;; esac
}
check $BT_PORT btrack
check $OT_PORT opentracker

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
udp_rate() { # port -> announces/s
  "$UDPLOAD" 127.0.0.1:$1 2 "$WORK/hashes.txt" 2 32 >/dev/null
  OUT=$("$UDPLOAD" 127.0.0.1:$1 "$SECS" "$WORK/hashes.txt" 2 32)
  echo "    $OUT" >&2
  echo "$OUT" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(int(j["per_second"]) if j["errors"]==0 else 0)'
}

echo "bench-tracker: HTTP keep-alive, btrack (--open), $SECS s, $CONNS connections" >&2
BT_HTTP=$(http_rate $BT_PORT)
echo "bench-tracker: HTTP keep-alive, opentracker (it closes every connection anyway)" >&2
OT_HTTP=$(http_rate $OT_PORT)
echo "bench-tracker: HTTP one request per connection, btrack" >&2
BT_HTTPC=$(http_rate $BT_PORT -H "Connection: close")
echo "bench-tracker: HTTP one request per connection, opentracker" >&2
OT_HTTPC=$(http_rate $OT_PORT -H "Connection: close")
echo "bench-tracker: UDP, btrack" >&2
BT_UDP=$(udp_rate $BT_PORT)
echo "bench-tracker: UDP, opentracker" >&2
OT_UDP=$(udp_rate $OT_PORT)
BT_RSS=$(awk '/VmHWM/ {print $2}' /proc/$BT_PID/status)
OT_RSS=$(awk '/VmHWM/ {print $2}' /proc/$OT_PID/status)

ratio() { python3 -c "print('%.2f' % ($1 / $2) if $2 else 'n/a')"; }
printf '%-12s %16s %18s %12s %12s\n' tracker "HTTP ann/s" "HTTP close ann/s" "UDP ann/s" "peak RSS"
printf '%-12s %16s %18s %12s %8s MiB\n' btrack "$BT_HTTP" "$BT_HTTPC" "$BT_UDP" $((BT_RSS / 1024))
printf '%-12s %16s %18s %12s %8s MiB\n' opentracker "$OT_HTTP" "$OT_HTTPC" "$OT_UDP" $((OT_RSS / 1024))
printf '%-12s %16s %18s %12s\n' "ratio" "$(ratio $BT_HTTP $OT_HTTP)" "$(ratio $BT_HTTPC $OT_HTTPC)" "$(ratio $BT_UDP $OT_UDP)"
