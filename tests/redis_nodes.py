"""The nodes that own a key in the Redis Cluster, for tests that kill or read one of them,
and the cluster script (scripts/cluster/redis.sh) that brings killed nodes back."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode

from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cluster" / "redis.sh"
INFRA = Path(os.environ.get("HOTDEAL_INFRA_DIR", ROOT / ".infra"))


async def owners(redis: RedisCluster, key: str) -> tuple[ClusterNode, ClusterNode]:
    """The master of the key's slot and its replica. A cluster just created (or just failed
    over) may answer CLUSTER SLOTS before it lists the replica: re-read until it does."""
    async def both() -> tuple[ClusterNode, ClusterNode] | None:
        master = redis.get_node_from_key(key)
        replica = redis.get_node_from_key(key, replica=True)
        if master is not None and replica is not None:
            return master, replica
        await redis.nodes_manager.initialize()
        return None
    return await eventually(both, timeout=30, what=f"a master and a replica owning {key}")


async def role(port: int) -> str:
    """The node's INFO replication role ("master", "slave"), or "down"."""
    direct = Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    try:
        return str((await direct.info("replication"))["role"])
    except Exception:  # noqa: BLE001 - redis-py wraps a refused connection
        return "down"
    finally:
        await direct.aclose()


async def script_pid(redis: RedisCluster, node: ClusterNode) -> int | None:
    """The node's process id if the cluster script started it (its pidfile), else None."""
    pidfile = INFRA / "redis-cluster" / str(node.port) / "redis.pid"
    server_pid = int((await redis.info("server", target_nodes=node))["process_id"])
    if not pidfile.exists() or int(pidfile.read_text().split()[0]) != server_pid:
        return None
    return server_pid


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


async def restart_dead_nodes(redis: RedisCluster) -> None:
    """`redis.sh up`: the killed nodes rejoin (as replicas) and every replica is in sync."""
    # The script's ports start at its first node's (the client may have forgotten a dead one).
    first_port = int(os.environ.get("HOTDEAL_REDIS_CLUSTER_PORT")
                     or min(int(n.port) for n in redis.get_nodes()))
    up = await asyncio.create_subprocess_exec(
        str(SCRIPT), "up", env={**os.environ, "HOTDEAL_REDIS_CLUSTER_PORT": str(first_port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(up.communicate(), 120)
    assert up.returncode == 0, out.decode()


async def promoted(redis: RedisCluster, key: str, dead_port: int) -> ClusterNode:
    """Wait until a node other than the dead master owns the key's slot; that node."""
    async def other() -> ClusterNode | None:
        await redis.nodes_manager.initialize()
        master = redis.get_node_from_key(key)
        return master if master is not None and int(master.port) != dead_port else None
    return await eventually(other, timeout=60, what=f"a replica of :{dead_port} promoted")


async def replicas_per_master(redis: RedisCluster) -> dict[int, int]:
    """Each live master's port -> its live replicas (CLUSTER NODES as a live node sees it)."""
    await redis.nodes_manager.initialize()
    nodes: dict[str, dict[str, Any]] = await redis.cluster_nodes()
    masters = {n["node_id"]: int(a.rsplit(":", 1)[1]) for a, n in nodes.items()
               if "master" in str(n["flags"]) and "fail" not in str(n["flags"]) and n["slots"]}
    counts = dict.fromkeys(masters.values(), 0)
    for node in nodes.values():
        flags = str(node["flags"])
        if "slave" in flags and "fail" not in flags and node["master_id"] in masters:
            counts[masters[node["master_id"]]] += 1
    return counts
