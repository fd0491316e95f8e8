#!/usr/bin/env bash
# fuzz/run.sh — build and run shoal's coverage-guided fuzz targets on the STABLE toolchain.
#
# libFuzzer comes from the libfuzzer-sys crate (its C++ sources are built with the system
# C++ compiler); coverage comes from LLVM's SanitizerCoverage pass, which stable rustc runs
# with `-C passes=sancov-module` (the flags cargo-fuzz passes, without AddressSanitizer,
# which needs nightly and which safe Rust does not need). `--target` keeps the flags off
# build scripts and proc macros.
#
#   fuzz/run.sh build                  build every target (fuzz/target/…/release/<target>)
#   fuzz/run.sh list                   the targets
#   fuzz/run.sh run TARGET [SECS] [libFuzzer args…]
#                                      fuzz TARGET for SECS seconds (default 300); new inputs go
#                                      to fuzz/corpus/TARGET, crashes to fuzz/artifacts/TARGET
#   fuzz/run.sh smoke [TOTAL_SECS]     every target in turn, TOTAL_SECS in all (default 56)
#   fuzz/run.sh repro TARGET FILE      run one input (a crash artifact) through TARGET
#   fuzz/run.sh seeds                  regenerate fuzz/seeds/ from shoal's encoders
# Exit: 0 when no target crashed, 1 on a crash or a build failure, 2 on a usage error.
set -euo pipefail

cd "$(dirname "$0")"
TARGETS="bencode metainfo wire ext_handshake tracker_http tracker_udp httpd"
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$PWD/target"
BIN="$CARGO_TARGET_DIR/$TRIPLE/release"

SANCOV="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cllvm-args=-sanitizer-coverage-stack-depth \
 --cfg fuzzing -Cforce-frame-pointers=yes"

build() {
    local args=() t
    for t in $TARGETS; do args+=(--bin "$t"); done
    RUSTFLAGS="$SANCOV" cargo build --quiet --release --target "$TRIPLE" "${args[@]}"
}

# Runs TARGET for SECS seconds; prints one summary line; fails on a crash.
run() {
    local t=$1 secs=$2
    shift 2
    mkdir -p "corpus/$t" "artifacts/$t"
    local log
    log=$(mktemp)
    local rc=0
    # -rss_limit_mb: the decoders promise bounded memory; 2 GB is far above any honest need.
    local tmp="$CARGO_TARGET_DIR/tmp-$t"
    rm -rf "$tmp"
    SHOAL_FUZZ_TMP="$tmp" "$BIN/$t" "corpus/$t" "seeds/$t" -max_total_time="$secs" -artifact_prefix="artifacts/$t/" \
        -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 "$@" >"$log" 2>&1 || rc=$?
    rm -rf "$tmp"
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    local cov
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if [ "$rc" -ne 0 ]; then
        echo "fuzz: $t: CRASH after ${execs:-?} executions (exit $rc); artifact in fuzz/artifacts/$t/:" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
        tail -30 "$log" > "artifacts/$t/last-log.txt"
        rm -f "$log"
        return 1
    fi
    echo "fuzz: $t: ${execs:-0} executions in ${secs}s, ${cov:-cov: ?}, corpus $(ls "corpus/$t" | wc -l) files, no crash"
    rm -f "$log"
}

case "${1:-}" in
    build) build ;;
    list) echo "$TARGETS" | tr ' ' '\n' ;;
    run)
        [ $# -ge 2 ] || { echo "usage: fuzz/run.sh run TARGET [SECS] [libFuzzer args]" >&2; exit 2; }
        t=$2; secs=${3:-300}
        echo " $TARGETS " | grep -q " $t " || { echo "fuzz/run.sh: unknown target $t (fuzz/run.sh list)" >&2; exit 2; }
        shift; shift; [ $# -gt 0 ] && shift
        build && run "$t" "$secs" "$@"
        ;;
    smoke)
        total=${2:-56}
        n=$(echo $TARGETS | wc -w)
        per=$(( total / n )); [ "$per" -ge 1 ] || per=1
        build
        status=0
        for t in $TARGETS; do run "$t" "$per" || status=1; done
        exit $status
        ;;
    repro)
        [ $# -eq 3 ] || { echo "usage: fuzz/run.sh repro TARGET FILE" >&2; exit 2; }
        build && "$BIN/$2" "$3"
        ;;
    seeds)
        # make_seeds overwrites its own files; fixtures made by other tools (the torrents from
        # Debian's mktorrent and transmission-create, deb-*.torrent and tr-*.torrent) stay.
        cargo run --quiet --release --bin make_seeds -- seeds
        ;;
    *)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
