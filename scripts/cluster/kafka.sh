#!/usr/bin/env bash
# A 3-node Apache Kafka cluster (KRaft) on this machine, without Docker: every node is both
# broker and controller (a 3-voter quorum), topics are replicated 3 times and a write needs
# 2 in-sync replicas (min.insync.replicas=2), so one node may die without losing a write
# acknowledged with acks=all, or stopping the cluster.
#
#   scripts/cluster/kafka.sh up       start the nodes that are not running, wait for all 3
#   scripts/cluster/kafka.sh down     stop the nodes this script started (SIGTERM, then KILL)
#   scripts/cluster/kafka.sh status   one line per node, and the brokers in the metadata
#   scripts/cluster/kafka.sh kill N   SIGKILL node N (1-3): for failure tests
#   scripts/cluster/kafka.sh start N  start node N again (after `kill`)
#
# Idempotent: `up` twice reuses the running nodes. Data, logs and pids live under
# ${HOTDEAL_INFRA_DIR:-.infra}/kafka-cluster/node-N/; the broker jars are scripts/infra.sh's
# (scripts/lib/kafka.sh fetches them once). Environment (ports: scripts/lib/ports.sh):
#   HOTDEAL_KAFKA_CLUSTER_PORTS, HOTDEAL_KAFKA_CLUSTER_CONTROLLER_PORTS   three each
#   HOTDEAL_KAFKA_CLUSTER_HEAP=512m   (each JVM's -Xmx: the machine has 2 cores, 3 JVMs)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INFRA="${HOTDEAL_INFRA_DIR:-$ROOT/.infra}"
PY="${HOTDEAL_PYTHON:-$ROOT/.venv/bin/python}"
DIR="$INFRA/kafka-cluster"
HEAP="${HOTDEAL_KAFKA_CLUSTER_HEAP:-512m}"
NODES=(1 2 3)

LOG_TAG=kafka-cluster
# log, die, fail_with_log, pid_alive, wait_ports_free; the ports
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
# fetch_kafka_jars, write_kafka_log4j, KAFKA_LIBS
# shellcheck source=scripts/lib/kafka.sh
. "$ROOT/scripts/lib/kafka.sh"
LIBS=$KAFKA_LIBS
read -r -a PORTS <<<"$(tr ',' ' ' <<<"$HOTDEAL_KAFKA_CLUSTER_PORTS")"
read -r -a CPORTS <<<"$(tr ',' ' ' <<<"$HOTDEAL_KAFKA_CLUSTER_CONTROLLER_PORTS")"
[ "${#PORTS[@]}" = 3 ] && [ "${#CPORTS[@]}" = 3 ] \
  || die "HOTDEAL_KAFKA_CLUSTER_PORTS and HOTDEAL_KAFKA_CLUSTER_CONTROLLER_PORTS need 3 ports each"

port_of() { echo "${PORTS[$(($1 - 1))]}"; }
cport_of() { echo "${CPORTS[$(($1 - 1))]}"; }
node_dir() { echo "$DIR/node-$1"; }
pid_file() { echo "$DIR/node-$1/kafka.pid"; }
bootstrap() { local n s=""; for n in "${NODES[@]}"; do s="$s${s:+,}127.0.0.1:$(port_of "$n")"; done; echo "$s"; }
voters() { local n s=""; for n in "${NODES[@]}"; do s="$s${s:+,}$n@127.0.0.1:$(cport_of "$n")"; done; echo "$s"; }

jvm_alive() { pid_alive "$1" 'kafka\.Kafka'; }  # not a pid reused by another program

# How many brokers the cluster's metadata lists, and whether the group coordinator answers
# (the offsets topic, 3 replicas, is ready): prints the count, exits 0 only when all 3 are in.
brokers_in_metadata() { # timeout seconds
  "$PY" - "$(bootstrap)" "${1:-3}" <<'EOF'
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient

async def main(bootstrap: str, timeout: float) -> tuple[int, bool]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout)
        count = len(cluster["brokers"])
        try:  # the group coordinator answers: __consumer_offsets is ready
            await asyncio.wait_for(admin.describe_consumer_groups(["hotdeal-readiness"]), timeout)
            return count, True
        except Exception:
            return count, False
    finally:
        await admin.close()

try:
    count, coordinator = asyncio.run(main(sys.argv[1], float(sys.argv[2])))
except Exception:  # no broker answers
    count, coordinator = 0, False
print(count if coordinator else f"{count} (no group coordinator yet)")
sys.exit(0 if count == 3 and coordinator else 1)
EOF
}

write_config() { # node
  local n=$1 d; d=$(node_dir "$1")
  mkdir -p "$d/data"
  cat >"$d/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
listeners=PLAINTEXT://127.0.0.1:$(port_of "$n"),CONTROLLER://127.0.0.1:$(cport_of "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port_of "$n")
controller.quorum.voters=$(voters)
log.dirs=$d/data
num.partitions=6
auto.create.topics.enable=true
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
# A node that dies without a word (SIGKILL) is fenced by the controller, and its partitions
# get new leaders, once it missed heartbeats this long (Kafka's default: 9 s of refused
# writes on its partitions). One machine: no network jitter to allow for.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
group.initial.rebalance.delay.ms=0
log.retention.hours=24
EOF
  write_kafka_log4j "$d"
}

java_opts() { # node
  local d; d=$(node_dir "$1")
  echo "-Xms128m -Xmx$HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true" \
    "-Dkafka.logs.dir=$d -Dlog4j2.configurationFile=file:$d/log4j2.properties"
}

# One cluster id for the three nodes, kept beside them (a node formatted with another id
# would never join).
cluster_id() {
  if [ ! -s "$DIR/cluster.id" ]; then
    mkdir -p "$DIR"
    java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid >"$DIR/cluster.id" 2>"$DIR/format.log" \
      || fail_with_log "kafka StorageTool random-uuid failed" "$DIR/format.log"
  fi
  head -n 1 "$DIR/cluster.id"
}

start_node() { # node
  local n=$1 d port cport; d=$(node_dir "$1"); port=$(port_of "$1"); cport=$(cport_of "$1")
  if jvm_alive "$(pid_file "$n")"; then
    log "node $n already running (pid $(head -n 1 "$(pid_file "$n")"), :$port)"
    return 0
  fi
  write_config "$n"
  # After a crash the old JVM may still hold its ports for a while.
  wait_ports_free 60 "$port" "$cport" \
    || die "ports $port/$cport still in use 60 s after node $n went away (another program?)"
  # shellcheck disable=SC2046
  if [ ! -f "$d/data/meta.properties" ]; then
    log "node $n: formatting storage (cluster $(cluster_id))"
    java $(java_opts "$n") -cp "$LIBS/*" kafka.tools.StorageTool format -t "$(cluster_id)" \
      -c "$d/server.properties" --ignore-formatted >"$d/format.log" 2>&1 \
      || fail_with_log "node $n: storage format failed" "$d/format.log"
  fi
  log "node $n: starting on 127.0.0.1:$port (controller :$cport, heap $HEAP)"
  # shellcheck disable=SC2046
  nohup java $(java_opts "$n") -cp "$LIBS/*" kafka.Kafka "$d/server.properties" \
    >"$d/stdout.log" 2>&1 </dev/null &
  echo $! >"$(pid_file "$n")"
}

wait_all_brokers() { # seconds
  local deadline=$((SECONDS + $1)) n
  until brokers_in_metadata 3 >/dev/null 2>&1; do
    for n in "${NODES[@]}"; do
      jvm_alive "$(pid_file "$n")" || fail_with_log "node $n exited during start-up" "$(node_dir "$n")/server.log"
    done
    [ $SECONDS -lt $deadline ] || fail_with_log "the 3 brokers were not all in the metadata within $1 s" \
      "$(node_dir 1)/server.log"
    sleep 1
  done
}

stop_nodes() { # nodes...: SIGTERM all at once (controlled shutdown), KILL after 45 s
  local n pid pids=()
  for n in "$@"; do
    if jvm_alive "$(pid_file "$n")"; then
      pid=$(head -n 1 "$(pid_file "$n")"); kill "$pid" 2>/dev/null || true; pids+=("$n:$pid")
    fi
  done
  local deadline=$((SECONDS + 45)) entry
  for entry in "${pids[@]}"; do
    n=${entry%%:*}; pid=${entry#*:}
    while jvm_alive "$(pid_file "$n")" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if jvm_alive "$(pid_file "$n")"; then kill -9 "$pid" 2>/dev/null || true; log "node $n killed (no exit within 45 s)"
    else log "node $n stopped"; fi
  done
  for n in "$@"; do rm -f "$(pid_file "$n")"; done
}

node_arg() { # validates N of `kill N` / `start N`
  case "${1:-}" in 1|2|3) echo "$1" ;; *) die "usage: $0 kill|start 1|2|3" ;; esac
}

case "${1:-}" in
  up)
    [ -x "$PY" ] || die "python venv missing at $PY (run: make venv)"
    started=$SECONDS
    fetch_kafka_jars
    for n in "${NODES[@]}"; do start_node "$n"; done
    wait_all_brokers 180
    log "3 brokers in the metadata, ready in $((SECONDS - started)) s:"
    log "  KAFKA_BOOTSTRAP_SERVERS=$(bootstrap)"
    ;;
  down) stop_nodes "${NODES[@]}" ;;
  kill)
    n=$(node_arg "${2:-}")
    if jvm_alive "$(pid_file "$n")"; then kill -9 "$(head -n 1 "$(pid_file "$n")")"; log "node $n killed"; fi
    ;;
  start) fetch_kafka_jars; start_node "$(node_arg "${2:-}")" ;;
  status)
    for n in "${NODES[@]}"; do
      if jvm_alive "$(pid_file "$n")"; then state="up (ours, pid $(head -n 1 "$(pid_file "$n")"))"; else state=down; fi
      printf 'kafka-%s   127.0.0.1:%-6s %s\n' "$n" "$(port_of "$n")" "$state"
    done
    printf 'kafka cluster: %s of 3 brokers in the metadata\n' "$(brokers_in_metadata 3 2>/dev/null || true)"
    ;;
  bootstrap) bootstrap ;;
  *) echo "usage: $0 up|down|status|kill N|start N|bootstrap" >&2; exit 2 ;;
esac
