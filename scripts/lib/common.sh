# Sourced by scripts/infra.sh and scripts/cluster/*.sh after they set ROOT and LOG_TAG:
# messages, zombie-proof pid checks and port waits shared by every service script.

log() { printf '[%s] %s\n' "$LOG_TAG" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }
fail_with_log() { # message, log file
  printf '[%s] ERROR: %s\n' "$LOG_TAG" "$1" >&2
  if [ -f "$2" ]; then printf '[%s] last lines of %s:\n' "$LOG_TAG" "$2" >&2; tail -n 40 "$2" >&2; fi
  exit 1
}
# Alive = exists and is not a zombie (a killed process answers kill -0 until it is reaped).
pid_alive() {
  [ -f "$1" ] || return 1
  local pid; pid=$(head -n 1 "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

# listening / port_free: from /proc/net/tcp, never a probe connection (see the file).
# shellcheck source=scripts/lib/ports.sh
. "$ROOT/scripts/lib/ports.sh"
wait_ports_free() { # seconds, ports...: a killed server's listening socket lingers a while
  local deadline=$((SECONDS + $1)) port; shift
  for port in "$@"; do
    until port_free "$port"; do
      [ $SECONDS -lt $deadline ] || return 1
      sleep 0.2
    done
  done
}

# The Kafka broker's log4j2 configuration: INFO of the broker to DIR/server.log.
write_kafka_log4j() { # dir
  cat >"$1/log4j2.properties" <<EOL
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $1/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
EOL
}
