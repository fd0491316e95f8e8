#!/usr/bin/env bash
# bench-fleet.sh — distribute one file from an origin to N hosts on the namespace testbed with every
# method (rsync one-by-one, rsync all at once, shoal, libtorrent, Transmission, aria2) and compare.
#
#   sudo scripts/bench-fleet.sh [--hosts N] [--size SIZE] [--rate RATE] [--only LIST] [--out DIR]
#                               [--timeout SECS] [--lt-super-seed] [--no-build]
#                               [--sites S [--inter-rate RATE]] [--no-page-reporting]
#
#   --hosts 16 --size 256M --rate 100mbit   defaults (the target configuration; F/B = 21.5 s)
#   --only ring,seq,parallel,shoal,shoal-web,libtorrent,transmission,aria2   a subset, in that order (also
#                        shoal-plain: shoal with bseed not super-seeding, for diagnosis)
#   --sites 2            two sites (issue 11): hosts split between two bridges and subnets joined by
#                        one inter-site link shaped to --inter-rate (default --rate) both ways, origin
#                        and tracker on site 1; runs shoal with btrack without and with --site (methods
#                        shoal,shoal-site unless --only) and adds the bytes that crossed the inter-site
#                        link each way and their total as a multiple of F per remote site
#   --no-page-reporting  on a VM guest whose virtio-balloon reports free pages to the host
#                        (/sys/module/page_reporting), stop reporting for the run (restored on exit)
#                        and touch (hosts+1) x SIZE of memory first: the copies then write into pages
#                        the guest holds instead of faulting each one in from the host (a cost of the
#                        VM, not of any tool: see docs/BENCHMARKS.md)
#   --out DIR            results folder (default results/fleet-<timestamp>/): table.md, results.json,
#                        completion.png (hosts done over time), logs/ (every process's output)
#
# Prints the comparison table (last host's time, median host time, last/(F/B), origin upload as a
# multiple of F, CPU-seconds per GB delivered of every process the method started, and how busy
# the whole machine was while it ran) and writes it with the plot to the results folder. Each
# method has its own timeout and a failing method is reported as FAILED in the table. Our
# binaries come from SHOAL_BIN_DIR, or are built with `cargo build --release` (skip with
# --no-build). Needs root; the testbed
# (scripts/testbed.sh, prefix SHOAL_TESTBED_PREFIX, default "shoal") is torn down on exit whatever
# happens. The orchestration lives in scripts/fleet/bench.py.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
build=1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) args+=("$1"); shift ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "bench-fleet: error: needs root (network namespaces)" >&2; exit 1; }
for t in ip tc rsync curl transmission-cli aria2c opentracker /usr/bin/python3; do
    command -v "$t" >/dev/null || { echo "bench-fleet: error: $t is not installed (see scripts/test.sh)" >&2; exit 1; }
done

if [ -n "${SHOAL_BIN_DIR:-}" ]; then
    bin_dir="$SHOAL_BIN_DIR"
else
    bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"
    if [ "$build" = 1 ]; then
        (cd "$repo" && cargo build --release --bins) >&2
    fi
fi
[ -x "$bin_dir/mktorrent" ] || { echo "bench-fleet: error: no $bin_dir/mktorrent (build with cargo build --release)" >&2; exit 1; }

child=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    "$here/testbed.sh" down >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

/usr/bin/python3 "$here/fleet/bench.py" --bin-dir "$bin_dir" "${args[@]}" &
child=$!
wait "$child"
