#!/usr/bin/env bash
# Make sure `prometheus` (the server the e2e tier scrapes the three processes with:
# tests/e2e/test_prometheus_e2e.py) is installed: Debian's package unless it is on the PATH.
# Without recommends: only the server (no node exporter); the tests start their own server.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_TAG="test"
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
apt_ensure prometheus prometheus --no-install-recommends
