"""A Kafka broker dies during a swarm (SIGKILL of the one leading the first orders
partition): with 3 replicas and min.insync.replicas=2 the cluster keeps taking writes, the
outbox relays and consumers fail over, and afterwards nothing is lost, nothing oversold, the
audit holds and every payment is settled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from hotdeal_core.usecases.context import Context
from tests.cluster.conftest import ClusterStack, kafka_cluster
from tests.cluster.sale import assert_nothing_lost_or_oversold, sale_with_fault


async def _leader_of_first_partition(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [meta] = await admin.describe_topics([topic])
        return int(next(p["leader"] for p in meta["partitions"] if p["partition"] == 0))
    finally:
        await admin.close()


@pytest.mark.timeout(420)
async def test_a_broker_killed_mid_swarm_loses_nothing_and_oversells_nothing(
        ctx: Context, cluster_stack: ClusterStack, tmp_path: Path) -> None:
    victim = await _leader_of_first_partition(ctx.settings.kafka_bootstrap_servers,
                                              ctx.topics.orders)

    async def kill_broker(product_id: int) -> Callable[[], Awaitable[None]]:
        await asyncio.to_thread(kafka_cluster, "kill", str(victim))

        async def restart() -> None:  # the victim back, all 3 brokers in the metadata
            await asyncio.to_thread(kafka_cluster, "up")
        return restart

    sale = await sale_with_fault(ctx, cluster_stack, tmp_path, kill_broker)
    assert_nothing_lost_or_oversold(sale)
    print(f"broker {victim} killed mid-swarm: {len(sale.accepted)} accepted orders; "
          f"{sale.checks['OrderPlaced on Kafka exactly once'].detail}; OrderPlaced publish "
          f"delay {sale.figures['outbox_delay']}; audit {sale.audit.as_dict()}")
