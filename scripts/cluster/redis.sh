#!/usr/bin/env bash
# A local Redis Cluster without Docker: 3 masters, each with two replicas, as nine Debian
# redis-server processes, one folder per node under .infra/redis-cluster/<port>/ (git-ignored):
# nodes.conf, the append-only file, redis.log, redis.pid.
#
#   scripts/cluster/redis.sh up       start the nodes that are not running, create the cluster
#                                     if it does not exist (else join to it the nodes that know
#                                     only themselves), wait for cluster_state:ok on every
#                                     node and for every replica to be in sync with its master,
#                                     moving replicas until every master has two
#   scripts/cluster/redis.sh down     stop the nodes this script started and delete their data
#                                     (the next `up` creates a fresh cluster; the logs stay)
#   scripts/cluster/redis.sh status   one line per node (role, pid, replication) + cluster_state
#
# Idempotent: `up` twice reuses the running nodes; `up` after a node died (or was killed)
# restarts only that node, which rejoins the cluster from its nodes.conf (as the replica of
# the node promoted in its place). Environment:
#   HOTDEAL_REDIS_CLUSTER_PORT         first of nine consecutive ports (scripts/lib/ports.sh);
#                                      each node's cluster bus is its port - 10000 (Redis's
#                                      default, port + 10000, would fall in the ephemeral range)
#   HOTDEAL_REDIS_CLUSTER_NODE_TIMEOUT_MS=2000   cluster-node-timeout: how long a master may
#                                      be unreachable before a replica is promoted
#   HOTDEAL_INFRA_DIR=.infra           the nodes' folders are under $HOTDEAL_INFRA_DIR/redis-cluster/
# The application connects to any one node: REDIS_URL=redis://127.0.0.1:<first port>/0 REDIS_CLUSTER=true.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
INFRA="${HOTDEAL_INFRA_DIR:-$ROOT/.infra}"
DIR="$INFRA/redis-cluster"
NODE_TIMEOUT="${HOTDEAL_REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}"

LOG_TAG=redis-cluster
# log, die, fail_with_log, pid_alive, stop_pid, wait_ports_free, apt_ensure; the ports
# shellcheck source=scripts/lib/common.sh
. "$ROOT/scripts/lib/common.sh"
BASE=$HOTDEAL_REDIS_CLUSTER_PORT
PORTS=()
for i in 0 1 2 3 4 5 6 7 8; do PORTS+=($((BASE + i))); done

cli() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }
answers() { [ "$(cli "$1" ping 2>/dev/null)" = PONG ]; }
field() { # port, section command..., field: one "name:value" line of INFO / CLUSTER INFO
  local port=$1 name=$2; shift 2
  cli "$port" "$@" 2>/dev/null | tr -d '\r' | sed -n "s/^$name://p"
}
ours() { pid_alive "$DIR/$1/redis.pid"; }

node_up() { # port
  local port=$1 node="$DIR/$1"
  if answers "$port"; then
    ours "$port" || die "127.0.0.1:$port answers but is not a node of this script (set HOTDEAL_REDIS_CLUSTER_PORT)"
    return 0
  fi
  mkdir -p "$node"
  wait_ports_free 30 "$port" "$((port - 10000))" \
    || die "port $port or $((port - 10000)) still in use 30 s after the old node went away"
  # cluster-require-full-coverage no: while one master is down (before its replica is
  # promoted) the other masters keep serving their deals. appendonly: a node restarted
  # before its replica took over comes back with its data, never empty (an empty master
  # would have its replica wipe itself in the resync). Two replicas per master: the one
  # promoted still has the other (it follows), so reservations, which wait for one replica
  # (WAIT 1), are taken again as soon as the promotion is known, not once the dead node is
  # back; validity factor 0: any replica may be promoted, however long it was cut off (the
  # election favours the most up-to-date). Node timeout 2 s: a dead master's deals are
  # refused for 3-4 s (docs/scaling.md "Losing a Redis master").
  redis-server --bind 127.0.0.1 --port "$port" --dir "$node" --daemonize yes \
    --pidfile "$node/redis.pid" --logfile "$node/redis.log" --maxclients 4000 \
    --cluster-enabled yes --cluster-config-file "$node/nodes.conf" --cluster-port "$((port - 10000))" \
    --cluster-node-timeout "$NODE_TIMEOUT" --cluster-require-full-coverage no \
    --cluster-replica-validity-factor 0 \
    --save '' --appendonly yes --appendfsync everysec \
    || fail_with_log "redis-server :$port did not start" "$node/redis.log"
  local deadline=$((SECONDS + 30))
  until answers "$port"; do
    [ $SECONDS -lt $deadline ] && { [ ! -f "$node/redis.pid" ] || ours "$port"; } \
      || fail_with_log "node :$port does not answer" "$node/redis.log"
    sleep 0.1
  done
  log "node :$port started (pid $(head -n 1 "$node/redis.pid"))"
}

formed() { [ "$(field "${PORTS[0]}" cluster_slots_assigned cluster info)" = 16384 ]; }

create() {
  local known; known=$(field "${PORTS[0]}" cluster_known_nodes cluster info)
  [ "$known" = 1 ] || die "node :${PORTS[0]} knows $known nodes but no cluster owns every slot; run '$0 down' then '$0 up'"
  log "creating the cluster: 3 masters, 2 replicas each"
  local addrs=() port
  for port in "${PORTS[@]}"; do addrs+=("127.0.0.1:$port"); done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 2 --cluster-yes \
    >"$DIR/create.log" 2>&1 || fail_with_log "redis-cli --cluster create failed" "$DIR/create.log"
}

# Every node sees cluster_state:ok; 3 masters, 6 replicas, every master has at least one
# (replica migration may leave 3 and 1 after a double failure: both still acknowledge
# writes), and every replica's link is up and its sync done (master_link_status:up,
# master_sync_in_progress:0).
healthy() {
  local port masters=0 replicas=0
  for port in "${PORTS[@]}"; do
    [ "$(field "$port" cluster_state cluster info)" = ok ] || return 1
    case "$(field "$port" role info replication)" in
      master) masters=$((masters + 1))
              [ "$(field "$port" connected_slaves info replication)" -ge 1 ] 2>/dev/null || return 1 ;;
      slave) replicas=$((replicas + 1))
             [ "$(field "$port" master_link_status info replication)" = up ] || return 1
             [ "$(field "$port" master_sync_in_progress info replication)" = 0 ] || return 1 ;;
      *) return 1 ;;
    esac
  done
  [ "$masters" = 3 ] && [ "$replicas" = 6 ]
}

# Nodes that know only themselves beside a formed cluster (started for a layout with more
# nodes than the cluster was created with, e.g. the six of one replica per master; or a
# node whose nodes.conf was lost) join it as replicas; `balanced` then places them.
join_loners() {
  local port
  for port in "${PORTS[@]}"; do
    [ "$(field "$port" cluster_known_nodes cluster info)" = 1 ] || continue
    log "node :$port joins the cluster as a replica"
    redis-cli --cluster add-node "127.0.0.1:$port" "127.0.0.1:${PORTS[0]}" --cluster-slave \
      >"$DIR/join.log" 2>&1 || fail_with_log "node :$port could not join the cluster" "$DIR/join.log"
  done
}

# One move towards two replicas per master: a replica of a master with more than two follows
# (CLUSTER REPLICATE) a master with fewer. Failures leave them uneven (a master left without
# replica is given a spare one by replica migration; the dead nodes come back as replicas of
# whoever replaced them), and a master with one replica is one death from refusing orders
# until a replica is back. Prints the move; fails when there is none to make.
rebalance_one() {
  cli "${PORTS[0]}" cluster nodes 2>/dev/null | tr -d '\r' | awk '
    $3 ~ /master/ && $3 !~ /fail/ && NF > 8 { live[$1] = 1 }
    $3 ~ /slave/ && $3 !~ /fail/ { n[$4]++; of[$4] = $2 }
    END {
      for (m in live) { if (n[m] > 2) rich = m; if (n[m] < 2) poor = m }
      if (rich == "" || poor == "") exit 1
      split(of[rich], addr, "[:@]"); print addr[2], poor
    }'
}

balanced() { # every master has two replicas (or one replica is moved, and false)
  local move
  move=$(rebalance_one) || return 0
  log "moving the replica :${move% *} to the master ${move#* } (two replicas per master)"
  cli "${move% *}" cluster replicate "${move#* }" >/dev/null
  return 1
}

up() {
  apt_ensure redis-server redis-server
  mkdir -p "$DIR"
  local port
  for port in "${PORTS[@]}"; do node_up "$port"; done
  if formed; then join_loners; else create; fi
  local deadline=$((SECONDS + 60))
  until healthy && balanced; do
    [ $SECONDS -lt $deadline ] || { status >&2; die "cluster not healthy within 60 s (see $DIR/<port>/redis.log)"; }
    sleep 0.2
  done
  log "cluster ready: cluster_state:ok, 3 masters with 2 replicas each, in sync"
  log "  REDIS_URL=redis://127.0.0.1:${PORTS[0]}/0 REDIS_CLUSTER=true"
}

down() {
  local port
  for port in "${PORTS[@]}"; do
    if ours "$port"; then stop_pid "$DIR/$port/redis.pid" 20; log "node :$port stopped"; fi
    if [ -d "$DIR/$port" ]; then
      rm -rf "$DIR/$port/nodes.conf" "$DIR/$port/appendonlydir" "$DIR/$port/dump.rdb" \
        "$DIR/$port/redis.pid"
    fi
  done
  for port in "${PORTS[@]}"; do
    wait_ports_free 30 "$port" "$((port - 10000))" \
      || die "port $port or $((port - 10000)) still in use 30 s after its node was stopped"
  done
}

status() {
  local port state
  for port in "${PORTS[@]}"; do
    if answers "$port"; then
      state="$(field "$port" role info replication)"
      if [ "$state" = slave ]; then
        state="replica of :$(field "$port" master_port info replication), link $(field "$port" master_link_status info replication)"
      else state="master, $(field "$port" connected_slaves info replication) replica(s)"; fi
      if ours "$port"; then state="up (ours, pid $(head -n 1 "$DIR/$port/redis.pid")), $state"
      else state="up (external), $state"; fi
    else state=down; fi
    printf 'redis-cluster 127.0.0.1:%-6s %s\n' "$port" "$state"
  done
  state=unknown  # as the first node that answers sees it
  for port in "${PORTS[@]}"; do
    if answers "$port"; then state=$(field "$port" cluster_state cluster info); break; fi
  done
  printf 'redis-cluster cluster_state:%s\n' "$state"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
