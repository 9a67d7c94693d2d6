#!/usr/bin/env bash
# Make sure `haproxy` (the buyers' load balancer of `make up CLUSTER=1` and the cluster tests:
# devtools/haproxy.py) is installed: Debian's package (2.6 on Debian 12) unless it is on the
# PATH. Without recommends: the package's own service is not used (procs run haproxy in the
# foreground with our config).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_TAG=lb
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
apt_ensure haproxy haproxy --no-install-recommends
