"""Topics get the replication factor asked for, or the brokers' default.replication.factor."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from hotdeal_core.messaging.admin import broker_default_replication, ensure_topics, server_list
from hotdeal_core.settings import Settings


async def _replicas(bootstrap: str, name: str) -> tuple[int, int]:
    """(brokers in the cluster, replicas of the topic's first partition)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        [topic] = await admin.describe_topics([name])
        return brokers, len(topic["partitions"][0]["replicas"])
    finally:
        await admin.close()


async def test_a_topic_without_a_factor_gets_the_brokers_default(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    name = f"test.replicas-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [name], 2)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        default = await broker_default_replication(admin)
    finally:
        await admin.close()
    brokers, replicas = await _replicas(bootstrap, name)
    assert replicas == default <= brokers


async def test_more_replicas_than_brokers_is_refused_with_the_figures(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    brokers, _ = await _replicas(bootstrap, "__consumer_offsets")
    with pytest.raises(RuntimeError, match=f"{brokers + 1} replicas"):
        await ensure_topics(bootstrap, [f"test.too-many-{uuid.uuid4().hex[:8]}"], 1,
                            replication_factor=brokers + 1)


def test_the_server_list_splits_commas_for_faststream() -> None:
    assert server_list("a:1, b:2,,c:3") == ["a:1", "b:2", "c:3"]
    assert server_list("127.0.0.1:59092") == ["127.0.0.1:59092"]
