#!/usr/bin/env bash
# test.sh — the one command that installs what the tests need and runs every test.
#
# As root, installs the Debian packages below that are missing (apt-get update + install,
# quietly; nothing happens when all are present, so it is idempotent), then builds
# everything and runs every test target (`cargo test --workspace --all-targets` plus doc
# tests) without stopping at the first failing target, and prints a summary.
# Exit status: 0 when everything passed, 1 otherwise. `.ci/run` calls exactly this.
#
# Add a package the tests need to PACKAGES (one list, nothing else to edit).
set -euo pipefail

PACKAGES="transmission-cli aria2 python3-libtorrent opentracker iproute2 mktorrent chromium chromium-driver rsync curl wrk man-db python3-matplotlib python3-venv systemd redis-server"

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
trap 'rm -f "$log"' EXIT

echo "test.sh: cargo build"
cargo build --workspace --all-targets

echo "test.sh: cargo test"
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log" || status=1
cargo test --workspace --doc 2>&1 | tee -a "$log" || status=1

# Summary: add up every "test result:" line.
read -r passed failed ignored < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) g += $i
        }
    } END { print p+0, f+0, g+0 }' "$log")
# Failed test names: the last "failures:" block before each "test result:" line.
failures=$(awk '/^failures:$/ {on=1; buf=""; next}
    /^test result:/ {if (on) printf "%s", buf; on=0}
    on && /^    [^ ]/ {buf = buf "  " $1 "\n"}' "$log" | sort -u)
secs=$(( $(date +%s) - start ))
echo
echo "==== test.sh summary: $passed passed, $failed failed, $ignored ignored in ${secs}s ===="
if [ -n "$failures" ]; then
    echo "failed tests:"
    echo "$failures"
fi
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
    echo "test.sh: FAILED"
    exit 1
fi
echo "test.sh: OK"
