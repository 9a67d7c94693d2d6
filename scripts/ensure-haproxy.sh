#!/usr/bin/env bash
# Make sure `haproxy` (the buyers' load balancer of `make up CLUSTER=1` and the cluster tests:
# devtools/haproxy.py) is installed. Idempotent: does nothing when it is on the PATH;
# otherwise installs Debian's package (2.6 on Debian 12), as root or through sudo.
set -euo pipefail

if command -v haproxy >/dev/null 2>&1; then
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "[lb] haproxy is missing; run: sudo apt-get install -y haproxy" >&2; exit 1; }
  as_root=(sudo)
fi
echo "[lb] installing Debian's haproxy"
log="$(mktemp)"
# The package's own service is not used (procs run haproxy in the foreground with our config).
if ! { "${as_root[@]}" apt-get update -qq && \
       DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq \
         --no-install-recommends haproxy; } >"$log" 2>&1; then
  echo "[lb] ERROR: apt-get install haproxy failed:" >&2
  tail -n 30 "$log" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
command -v haproxy >/dev/null 2>&1 || { echo "[lb] ERROR: haproxy still not on the PATH" >&2; exit 1; }
