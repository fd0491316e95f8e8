#!/bin/sh
# mark-done.sh — completion hook for third-party clients in the fleet benchmark (aria2c
# --on-bt-download-complete, transmission-cli --finish): writes the wall-clock time of completion
# into $SHOAL_DONE_FILE (inherited from the client's environment), atomically.
[ -n "${SHOAL_DONE_FILE:-}" ] || exit 0
date +%s.%N > "$SHOAL_DONE_FILE.tmp" && mv -f "$SHOAL_DONE_FILE.tmp" "$SHOAL_DONE_FILE"
