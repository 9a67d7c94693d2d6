"""The Redis master owning the deal's slot dies during a swarm (SIGKILL): its replica is
promoted, buyers meanwhile get 503s until then, the old node is restarted (once the
promotion is seen) as its replica and the sale goes on;
afterwards nothing is lost, nothing oversold, the audit holds and every payment is settled.
Needs REDIS_CLUSTER=true (the Redis Cluster of scripts/cluster/redis.sh, as `make
test-cluster-e2e` runs it)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import RedisCluster

from hotdeal_core.stock.redis_store import RES, deal_keys
from hotdeal_core.usecases.context import Context
from tests.cluster.conftest import ClusterStack
from tests.cluster.sale import assert_nothing_lost_or_oversold, orders_of, sale_with_fault
from tests.redis_nodes import kill, promoted, restart_dead_nodes, script_pid

pytestmark = pytest.mark.skipif(os.environ.get("REDIS_CLUSTER", "").lower() != "true",
                                reason="needs the Redis Cluster (make test-cluster-e2e)")


@pytest.mark.timeout(420)
async def test_a_redis_master_killed_mid_swarm_loses_nothing_and_oversells_nothing(
        ctx: Context, redis: RedisCluster, cluster_stack: ClusterStack,
        tmp_path: Path) -> None:
    killed: list[int] = []
    orders_at_kill: list[int] = []

    async def kill_master(product_id: int) -> Callable[[], Awaitable[None]]:
        await redis.initialize()  # the slot map (a no-op once the client has been used)
        key = deal_keys(product_id)[RES]
        master = redis.get_node_from_key(key)
        assert master is not None
        pid = await script_pid(redis, master)
        assert pid is not None, f"node :{master.port} was not started by redis.sh"
        kill(pid)
        killed.append(int(master.port))
        orders_at_kill.append(await orders_of(ctx, product_id))
        # Restarted only once a replica took over, as an operator would: `up` right after
        # the kill could bring the node back as master before the promotion, with only what
        # its append-only file held (fsync every second: the last acknowledged writes lost).
        await promoted(redis, key, int(master.port))
        # `up` then has the old node back as a replica of the promoted one, in sync; the
        # swarms keep buying meanwhile.
        await restart_dead_nodes(redis)

        async def nothing() -> None:
            return None
        return nothing

    sale = await sale_with_fault(ctx, cluster_stack, tmp_path, kill_master,
                                 failures_allowed=True, swarm_seconds=40)
    assert_nothing_lost_or_oversold(sale)
    # The sale went on after the failover (on the promoted master).
    assert await orders_of(ctx, sale.product_id) > orders_at_kill[0] + 20
    print(f"Redis master :{killed} killed mid-swarm: {len(sale.accepted)} accepted orders; "
          f"{sale.checks['OrderPlaced on Kafka exactly once'].detail}; "
          f"{orders_at_kill[0]} orders at the kill; "
          f"audit {sale.audit.as_dict()}")
