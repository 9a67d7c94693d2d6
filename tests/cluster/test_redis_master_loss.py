"""The Redis master owning the deal's slot dies during a swarm (SIGKILL): its replica is
promoted, buyers meanwhile get 503s (and go on getting them while the promoted master has
no replica: replica acks), the old node is restarted as its replica and the sale goes on;
afterwards nothing is lost, nothing oversold, the audit holds and every payment is settled.
Needs REDIS_CLUSTER=true (the Redis Cluster of scripts/cluster/redis.sh, as `make
test-cluster-e2e` runs it)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import RedisCluster

from hotdeal_core.stock.redis_store import RES, deal_keys
from hotdeal_core.usecases.context import Context
from tests.cluster.conftest import ROOT, ClusterStack
from tests.cluster.sale import assert_nothing_lost_or_oversold, orders_of, sale_with_fault

SCRIPT = ROOT / "scripts" / "cluster" / "redis.sh"
INFRA = Path(os.environ.get("HOTDEAL_INFRA_DIR", ROOT / ".infra"))

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
        master = redis.get_node_from_key(deal_keys(product_id)[RES])
        assert master is not None
        pidfile = INFRA / "redis-cluster" / str(master.port) / "redis.pid"
        server_pid = int((await redis.info("server", target_nodes=master))["process_id"])
        assert int(pidfile.read_text().split()[0]) == server_pid, \
            f"node :{master.port} was not started by {SCRIPT.name}"
        os.kill(server_pid, signal.SIGKILL)
        killed.append(int(master.port))
        orders_at_kill.append(await orders_of(ctx, product_id))
        # `up` waits for the replica's promotion (cluster_state:ok), then has the old node
        # back as its replica, in sync: the swarms keep buying meanwhile.
        first_port = min(int(n.port) for n in redis.get_nodes())
        up = await asyncio.create_subprocess_exec(
            str(SCRIPT), "up", env={**os.environ, "HOTDEAL_REDIS_CLUSTER_PORT": str(first_port)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(up.communicate(), 120)
        assert up.returncode == 0, out.decode()

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
