#!/usr/bin/env bash
# Make sure `wrk` (the HTTP benchmarking tool used by `make bench`) is installed.
# Idempotent: does nothing when wrk is already on the PATH; otherwise installs Debian's
# package (as root, or through sudo when it is available).
set -euo pipefail

if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "[bench] wrk is missing; run: sudo apt-get install -y wrk" >&2; exit 1; }
  as_root=(sudo)
fi
echo "[bench] installing Debian's wrk"
log="$(mktemp)"
if ! { "${as_root[@]}" apt-get update -qq && \
       DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq wrk; } >"$log" 2>&1; then
  echo "[bench] ERROR: apt-get install wrk failed:" >&2
  tail -n 30 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
command -v wrk >/dev/null 2>&1 || { echo "[bench] ERROR: wrk still not on the PATH" >&2; exit 1; }
