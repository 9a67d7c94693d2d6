"""The nodes that own a key in the Redis Cluster, for tests that kill or read one of them."""

from __future__ import annotations

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode

from tests.waiting import eventually


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
