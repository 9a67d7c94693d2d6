#!/usr/bin/env bash
# Make sure `prometheus` (the server the e2e tier scrapes the three processes with:
# tests/e2e/test_prometheus_e2e.py) is installed. Idempotent: does nothing when it is on the
# PATH; otherwise installs Debian's package (as root, or through sudo when available).
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "[test] prometheus is missing; run: sudo apt-get install -y prometheus" >&2; exit 1; }
  as_root=(sudo)
fi
echo "[test] installing Debian's prometheus"
log="$(mktemp)"
# Without recommends: only the server (no node exporter); the tests start their own server.
if ! { "${as_root[@]}" apt-get update -qq && \
       DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq \
         --no-install-recommends prometheus; } >"$log" 2>&1; then
  echo "[test] ERROR: apt-get install prometheus failed:" >&2
  tail -n 30 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
command -v prometheus >/dev/null 2>&1 || { echo "[test] ERROR: prometheus still not on the PATH" >&2; exit 1; }
