# shellcheck shell=bash
# Sourced by scripts/*.sh after they set ROOT and LOG_TAG: messages, pid checks, port waits
# and package installs shared by every service script; the default ports (lib/ports.sh).

# shellcheck source=scripts/lib/ports.sh
. "$ROOT/scripts/lib/ports.sh"

log() { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }
fail_with_log() { # message, log file
  printf '[%s] ERROR: %s\n' "$LOG_TAG" "$1" >&2
  if [ -f "$2" ]; then printf '[%s] last lines of %s:\n' "$LOG_TAG" "$2" >&2; tail -n 40 "$2" >&2; fi
  exit 1
}

# The pid file's process runs: not a zombie (a killed process answers kill -0 until it is
# reaped) and, given a pattern, one whose command line matches it (not a reused pid).
pid_alive() { # pid file, [command-line pattern]
  [ -f "$1" ] || return 1
  local pid state; pid=$(head -n 1 "$1")
  [ -n "$pid" ] || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
  case "$state" in Z*|X*) return 1 ;; esac
  [ -z "${2:-}" ] || ps -ww -o args= -p "$pid" 2>/dev/null | grep -q -- "$2"
}

# SIGTERM the pid file's process, SIGKILL it after SECONDS; removes the pid file.
stop_pid() { # pid file, seconds, [command-line pattern]
  pid_alive "$1" "${3:-}" || { rm -f "$1"; return 0; }
  local pid deadline=$((SECONDS + $2)); pid=$(head -n 1 "$1")
  kill "$pid" 2>/dev/null || true
  while pid_alive "$1" "${3:-}" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if pid_alive "$1" "${3:-}"; then kill -9 "$pid" 2>/dev/null || true; log "pid $pid killed (no exit within $2 s)"; fi
  rm -f "$1"
}

# Something accepts connections on the local port: a plain connection attempt (our ports are
# outside the ephemeral range, so it cannot connect to itself).
port_open() { # port
  # shellcheck disable=SC2016  # $1 of the inner shell
  timeout 2 bash -c ': <>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}
wait_ports_free() { # seconds, ports...: a dying server may hold its port a moment
  local deadline=$((SECONDS + $1)) port; shift
  for port in "$@"; do
    while port_open "$port"; do
      [ $SECONDS -lt $deadline ] || return 1
      sleep 0.2
    done
  done
}

# Install Debian's package unless its command is on the PATH: as root, or through sudo.
apt_ensure() { # command, package, [apt-get install options...]
  local cmd=$1 pkg=$2 out; shift 2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  local as_root=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "$cmd is missing; run: sudo apt-get install -y $pkg"
    as_root=(sudo)
  fi
  log "installing Debian's $pkg"
  out=$(mktemp)
  if ! { "${as_root[@]}" apt-get update -qq && \
         "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" "$pkg"; } >"$out" 2>&1; then
    printf '[%s] ERROR: apt-get install %s failed:\n' "$LOG_TAG" "$pkg" >&2
    tail -n 30 "$out" >&2; rm -f "$out"; exit 1
  fi
  rm -f "$out"
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd still not on the PATH after installing $pkg"
}
