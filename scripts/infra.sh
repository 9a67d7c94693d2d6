#!/usr/bin/env bash
# Local infrastructure without Docker: PostgreSQL 15, Redis 7 and Apache Kafka 4.1 (KRaft),
# each run as a local process with its data, logs and pid under .infra/ (git-ignored).
#
#   scripts/infra.sh up       install what is missing, start what is not answering, wait until ready
#   scripts/infra.sh down     stop what this script started (never a service it found running)
#   scripts/infra.sh status   one line per service
#
# Idempotent: `up` twice reuses running services. If a service already answers at the
# configured address (the user's own, or compose's), it is used and never started or stopped.
# Ports: HOTDEAL_PG_PORT, HOTDEAL_REDIS_PORT, HOTDEAL_KAFKA_PORT, HOTDEAL_KAFKA_CONTROLLER_PORT
# (defaults in scripts/lib/ports.sh). HOTDEAL_CLUSTER=1 (`make infra-up CLUSTER=1`): Postgres
# as above, a Redis Cluster (scripts/cluster/redis.sh) and a 3-broker Kafka
# (scripts/cluster/kafka.sh) instead of the single Redis and Kafka; `down` then stops those two
# and leaves Postgres (shared by both modes) running.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA="${HOTDEAL_INFRA_DIR:-$ROOT/.infra}"
PY="${HOTDEAL_PYTHON:-$ROOT/.venv/bin/python}"

LOG_TAG=infra
# log, die, fail_with_log, pid_alive, stop_pid, wait_ports_free, apt_ensure; the ports
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# fetch_kafka_jars, write_kafka_log4j
# shellcheck source=scripts/lib/kafka.sh
. "$ROOT/scripts/lib/kafka.sh"

PG_PORT=$HOTDEAL_PG_PORT
REDIS_PORT=$HOTDEAL_REDIS_PORT
KAFKA_PORT=$HOTDEAL_KAFKA_PORT
KAFKA_CPORT=$HOTDEAL_KAFKA_CONTROLLER_PORT
PG_BIN="${HOTDEAL_PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DBS="${HOTDEAL_PG_DATABASES:-hotdeal hotdeal_test}"
PG_USER=hotdeal
PG_PASSWORD=hotdeal

# PostgreSQL runs as the postgres user, which must reach its data directory. A checkout in a
# root-only directory (mktemp -d is 0700) is out of its reach: use a folder of its own then.
PG_DIR="$INFRA/postgres"
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 && ! runuser -u postgres -- test -x "$ROOT"; then
  # Named after the infra directory (the checkout's for the default one, as before): a
  # second set of services of the same checkout (HOTDEAL_INFRA_DIR, e.g. make chaos) must not
  # share the cluster, or its `down` stops the other's Postgres.
  pg_key=$ROOT; [ "$INFRA" = "$ROOT/.infra" ] || pg_key=$INFRA
  PG_DIR="/var/lib/postgresql/hotdeal-$(printf '%s' "$pg_key" | md5sum | cut -c1-12)"
fi
REDIS_DIR="$INFRA/redis"
KAFKA_DIR="$INFRA/kafka"

# Run a command as the postgres user when we are root (PostgreSQL refuses to run as root).
as_pg() {  # from /, since the caller's directory may be out of the postgres user's reach
  if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

wait_for() { # description, seconds, command...
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
  log "$what ready"
}

# ---------------------------------------------------------------- PostgreSQL
pg_answers() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_create_databases() {
  local sock=(-h "$PG_DIR" -p "$PG_PORT" -U postgres)
  as_pg "$PG_BIN/psql" "${sock[@]}" -qtAc \
    "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='$PG_USER') THEN
       CREATE ROLE $PG_USER LOGIN CREATEDB PASSWORD '$PG_PASSWORD'; END IF; END\$\$;" postgres
  local db
  for db in $PG_DBS; do
    if [ -z "$(as_pg "$PG_BIN/psql" "${sock[@]}" -qtAc "SELECT 1 FROM pg_database WHERE datname='$db'" postgres)" ]; then
      as_pg "$PG_BIN/createdb" "${sock[@]}" -O "$PG_USER" "$db"
      log "postgres: created database $db"
    fi
  done
}

pg_up() {
  if pg_answers; then
    if pid_alive "$PG_DIR/data/postmaster.pid"; then log "postgres already running (ours) on :$PG_PORT"
    else log "postgres already answers on :$PG_PORT (not ours): using it"; return 0; fi
  else
    [ -x "$PG_BIN/postgres" ] || die "PostgreSQL 15 server not found in $PG_BIN (apt-get install postgresql-15, or set HOTDEAL_PG_BIN)"
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PG_DIR"; fi
    if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
      log "postgres: initdb in $PG_DIR/data"
      as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$PG_DIR/initdb.log" 2>&1 || fail_with_log "initdb failed" "$PG_DIR/initdb.log"
    fi
    wait_ports_free 60 "$PG_PORT" || die "port $PG_PORT still in use 60 s after the old postgres went away"
    log "postgres: starting on 127.0.0.1:$PG_PORT"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DIR -c max_connections=300 -c shared_buffers=256MB" \
      >/dev/null || fail_with_log "postgres did not start" "$PG_DIR/postgres.log"
    wait_for postgres 60 pg_answers || fail_with_log "postgres does not answer on :$PG_PORT" "$PG_DIR/postgres.log"
  fi
  pg_create_databases
}

pg_down() {
  if pid_alive "$PG_DIR/data/postmaster.pid"; then
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w -t 60 stop >/dev/null
    log "postgres stopped"
  fi
}

# ---------------------------------------------------------------- Redis
redis_answers() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_up() {
  apt_ensure redis-server redis-server
  if redis_answers; then
    if pid_alive "$REDIS_DIR/redis.pid"; then log "redis already running (ours) on :$REDIS_PORT"
    else log "redis already answers on :$REDIS_PORT (not ours): using it"; fi
    return 0
  fi
  mkdir -p "$REDIS_DIR"
  wait_ports_free 30 "$REDIS_PORT" || die "port $REDIS_PORT still in use 30 s after the old redis went away"
  log "redis: starting on 127.0.0.1:$REDIS_PORT (no persistence)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
    --daemonize yes --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" \
    --logfile "$REDIS_DIR/redis.log" --maxclients 4000 \
    || fail_with_log "redis-server did not start" "$REDIS_DIR/redis.log"
  wait_for redis 30 redis_answers || fail_with_log "redis does not answer on :$REDIS_PORT" "$REDIS_DIR/redis.log"
}

redis_down() {
  if pid_alive "$REDIS_DIR/redis.pid"; then stop_pid "$REDIS_DIR/redis.pid" 20; log "redis stopped"; fi
}

# ---------------------------------------------------------------- Kafka
kafka_answers() { # a real metadata request (and the group coordinator) from Python
  "$PY" "$ROOT/scripts/kafka_ready.py" "127.0.0.1:$KAFKA_PORT" --timeout "${1:-3}"
}

kafka_write_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.quorum.voters=1@127.0.0.1:$KAFKA_CPORT
log.dirs=$KAFKA_DIR/data
num.partitions=6
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
EOF
  write_kafka_log4j "$KAFKA_DIR"
}

kafka_up() {
  [ -x "$PY" ] || die "python venv missing at $PY (run: make venv)"
  if kafka_answers 2; then
    if pid_alive "$KAFKA_DIR/kafka.pid"; then log "kafka already running (ours) on :$KAFKA_PORT"
    else log "kafka already answers on :$KAFKA_PORT (not ours): using it"; fi
    return 0
  fi
  if pid_alive "$KAFKA_DIR/kafka.pid"; then
    log "kafka: process running but not answering yet; waiting"
  else
    fetch_kafka_jars
    kafka_write_config
    # After a crash the old JVM may still hold its ports for a while.
    wait_ports_free 60 "$KAFKA_PORT" "$KAFKA_CPORT" \
      || die "ports $KAFKA_PORT/$KAFKA_CPORT still in use 60 s after the old kafka went away"
    local java_opts=(-Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
      "-Dkafka.logs.dir=$KAFKA_DIR" "-Dlog4j2.configurationFile=file:$KAFKA_DIR/log4j2.properties")
    if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
      local cluster_id
      cluster_id=$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>"$KAFKA_DIR/format.log") \
        || fail_with_log "kafka StorageTool random-uuid failed" "$KAFKA_DIR/format.log"
      log "kafka: formatting storage (cluster $cluster_id)"
      java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool format \
        -t "$cluster_id" -c "$KAFKA_DIR/server.properties" --ignore-formatted >>"$KAFKA_DIR/format.log" 2>&1 \
        || fail_with_log "kafka storage format failed" "$KAFKA_DIR/format.log"
    fi
    log "kafka: starting on 127.0.0.1:$KAFKA_PORT (KRaft, controller :$KAFKA_CPORT)"
    nohup java "${java_opts[@]}" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
      >"$KAFKA_DIR/stdout.log" 2>&1 </dev/null &
    echo $! >"$KAFKA_DIR/kafka.pid"
  fi
  local deadline=$((SECONDS + 90))
  until kafka_answers 3 >/dev/null 2>&1; do
    pid_alive "$KAFKA_DIR/kafka.pid" || fail_with_log "kafka exited during start-up" "$KAFKA_DIR/server.log"
    [ $SECONDS -lt $deadline ] || fail_with_log "kafka did not answer a metadata request within 90 s" "$KAFKA_DIR/server.log"
    sleep 0.5
  done
  log "kafka ready"
}

kafka_down() { # SIGTERM: a controlled shutdown
  if pid_alive "$KAFKA_DIR/kafka.pid"; then stop_pid "$KAFKA_DIR/kafka.pid" 45; log "kafka stopped"; fi
  rm -f "$KAFKA_DIR/kafka.pid"
}

# ---------------------------------------------------------------- status
status_line() { # name, answers-fn, pidfile, port
  local name=$1 fn=$2 pidfile=$3 port=$4 state
  if $fn >/dev/null 2>&1; then
    if pid_alive "$pidfile"; then state="up (ours, pid $(head -n 1 "$pidfile"))"; else state="up (external)"; fi
  else state=down; fi
  printf '%-9s 127.0.0.1:%-6s %s\n' "$name" "$port" "$state"
}

# ---------------------------------------------------------------- cluster mode
cluster() { # up|down|status: the Redis Cluster and the 3-broker Kafka
  case "$1" in
    up) "$ROOT/scripts/cluster/redis.sh" up; "$ROOT/scripts/cluster/kafka.sh" up ;;
    down) "$ROOT/scripts/cluster/kafka.sh" down; "$ROOT/scripts/cluster/redis.sh" down ;;
    status) "$ROOT/scripts/cluster/redis.sh" status; "$ROOT/scripts/cluster/kafka.sh" status ;;
  esac
}

if [ "${HOTDEAL_CLUSTER:-}" = 1 ]; then
  case "${1:-}" in
    up)
      log "postgres data directory: $PG_DIR"
      pg_up; cluster up
      log "  DATABASE_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/hotdeal"
      ;;
    down) cluster down ;;
    status) status_line postgres pg_answers "$PG_DIR/data/postmaster.pid" "$PG_PORT"; cluster status ;;
    *) echo "usage: HOTDEAL_CLUSTER=1 $0 up|down|status" >&2; exit 2 ;;
  esac
  exit 0
fi

case "${1:-}" in
  up)
    started=$SECONDS
    log "postgres data directory: $PG_DIR"
    pg_up; redis_up; kafka_up
    log "all services ready in $((SECONDS - started)) s:"
    log "  DATABASE_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/hotdeal"
    log "  REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    log "  KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
    ;;
  down) kafka_down; redis_down; pg_down ;;
  status)
    status_line postgres pg_answers "$PG_DIR/data/postmaster.pid" "$PG_PORT"
    status_line redis redis_answers "$REDIS_DIR/redis.pid" "$REDIS_PORT"
    status_line kafka kafka_answers "$KAFKA_DIR/kafka.pid" "$KAFKA_PORT"
    ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
