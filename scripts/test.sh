#!/usr/bin/env bash
# test.sh — the one command that installs what the tests need and runs every test.
#
# As root, installs the Debian packages below that are missing (apt-get update + install,
# quietly; nothing happens when all are present, so it is idempotent), then builds
# everything and runs every test target (`cargo test --workspace --all-targets` plus doc
# tests) without stopping at the first failing target, then a bounded fuzz smoke run
# (fuzz/run.sh smoke: every coverage-guided target in turn, under 60 s in all), and prints a
# summary: passed, failed, skipped (#[ignore]d tests plus tests that skipped themselves at run
# time because a tool was missing, which cargo counts as passed), and the fuzz smoke result.
# Exit status: 0 when everything passed, 1 otherwise. `.ci/run` calls exactly this.
# SHOAL_ALLOW_MISSING_TOOLS=1: a missing third-party tool (or fuzz toolchain) skips what needs
# it, loudly, instead of failing. SHOAL_FUZZ_SECS: the smoke run's total seconds (default 56).
#
# Add a package the tests need to PACKAGES (one list, nothing else to edit).
set -euo pipefail

PACKAGES="transmission-cli aria2 python3-libtorrent opentracker iproute2 mktorrent chromium chromium-driver rsync curl wrk man-db python3-matplotlib python3-venv systemd g++ redis-server nginx-light"

cd "$(dirname "$0")/.."
start=$(date +%s)

missing=()
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "test.sh: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "test.sh: warning: not root, cannot install missing packages: ${missing[*]}" >&2
        echo "test.sh: tests that need them will fail (set SHOAL_ALLOW_MISSING_TOOLS=1 to skip those)" >&2
    fi
fi

# Ansible (for the playbook tests in tests/fleet.rs) from PyPI, in its own venv.
if [ "$(id -u)" -eq 0 ] && [ ! -x /opt/shoal-ansible/bin/ansible-playbook ]; then
    echo "test.sh: installing ansible-core into /opt/shoal-ansible"
    /usr/bin/python3 -m venv /opt/shoal-ansible && /opt/shoal-ansible/bin/pip install -q ansible-core
fi

log=$(mktemp "${TMPDIR:-/tmp}/shoal-test.XXXXXX")
# Tests that skip themselves at run time (tests/common/mod.rs `have`) append a line here.
export SHOAL_SKIP_LOG
SHOAL_SKIP_LOG=$(mktemp "${TMPDIR:-/tmp}/shoal-skipped.XXXXXX")
trap 'rm -f "$log" "$SHOAL_SKIP_LOG"' EXIT

echo "test.sh: cargo build"
cargo build --workspace --all-targets

echo "test.sh: cargo test"
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log" || status=1
cargo test --workspace --doc 2>&1 | tee -a "$log" || status=1

# Fuzz smoke: fuzz/ is its own crate (not a workspace member), built on stable with
# SanitizerCoverage by fuzz/run.sh. Needs a C++ compiler (g++, above) and crates.io.
echo "test.sh: fuzz smoke (fuzz/run.sh smoke ${SHOAL_FUZZ_SECS:-56})"
fuzz="not run"
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
    fuzz="MISSING (no C++ compiler to build libFuzzer)"
elif fuzz/run.sh build; then
    if fuzz/run.sh smoke "${SHOAL_FUZZ_SECS:-56}"; then
        fuzz="ok"
    else
        fuzz="FAILED (crash: see fuzz/artifacts/)"
        status=1
    fi
else
    fuzz="MISSING (fuzz targets did not build: see above)"
fi
case "$fuzz" in
    MISSING*)
        if [ -n "${SHOAL_ALLOW_MISSING_TOOLS:-}" ]; then
            echo "test.sh: warning: fuzz smoke skipped: $fuzz" >&2
            fuzz="SKIPPED: $fuzz"
        else
            echo "test.sh: error: fuzz smoke cannot run: $fuzz (set SHOAL_ALLOW_MISSING_TOOLS=1 to skip)" >&2
            status=1
        fi
        ;;
esac

# Summary: add up every "test result:" line.
read -r passed failed ignored < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) g += $i
        }
    } END { print p+0, f+0, g+0 }' "$log")
# Tests that returned early because a tool was missing passed in cargo's count: move them.
# (one line per missing tool: count each test once)
skipped_rt=$(sed 's/: .*//' "$SHOAL_SKIP_LOG" | sort -u | grep -c . || true)
passed=$(( passed - skipped_rt ))
skipped=$(( ignored + skipped_rt ))
# Failed test names: the last "failures:" block before each "test result:" line.
failures=$(awk '/^failures:$/ {on=1; buf=""; next}
    /^test result:/ {if (on) printf "%s", buf; on=0}
    on && /^    [^ ]/ {buf = buf "  " $1 "\n"}' "$log" | sort -u)
secs=$(( $(date +%s) - start ))
echo
echo "==== test.sh summary: $passed passed, $failed failed, $skipped skipped ($ignored ignored, $skipped_rt skipped at run time for a missing tool); fuzz smoke: $fuzz; ${secs}s ===="
if [ "$skipped_rt" -gt 0 ]; then
    echo "skipped at run time (missing tool):"
    sort -u "$SHOAL_SKIP_LOG" | sed 's/^/  /'
fi
echo "$passed passed, $failed failed, $skipped skipped"
if [ -n "$failures" ]; then
    echo "failed tests:"
    echo "$failures"
fi
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
    echo "test.sh: FAILED"
    exit 1
fi
echo "test.sh: OK"
