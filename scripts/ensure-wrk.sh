#!/usr/bin/env bash
# Make sure `wrk` (the HTTP benchmarking tool used by `make bench`) is installed: Debian's
# package unless it is on the PATH.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_TAG=bench
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
apt_ensure wrk wrk
