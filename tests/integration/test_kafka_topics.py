"""Topics are created with all their partitions, and single-partition ones are grown."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hotdeal_core.messaging.admin import ensure_topics, retention_configs, topic_configs
from hotdeal_core.settings import Settings
from tests.waiting import eventually


async def _partitions(bootstrap: str, name: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}[name]
    finally:
        await admin.close()


async def test_missing_topics_are_created_and_small_ones_grown(settings: Settings) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    fresh, small = f"test.fresh-{uuid.uuid4().hex[:8]}", f"test.small-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(small, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    await ensure_topics(bootstrap, [fresh, small], 4)
    await ensure_topics(bootstrap, [fresh, small], 4)  # idempotent
    # Partition counts reach the brokers' metadata a moment after the controller's answer.
    async def grown() -> bool:
        return (await _partitions(bootstrap, fresh), await _partitions(bootstrap, small)) \
            == (4, 4)
    await eventually(grown, what="4 partitions on both topics")


async def test_topics_are_created_with_the_retention_the_settings_tie_records_to(
        settings: Settings) -> None:
    name = f"test.retention-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings.kafka_bootstrap_servers, [name], 1, retention_hours=30)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        configs = (await topic_configs(admin, [name]))[name]
    finally:
        await admin.close()
    assert configs == retention_configs(30)


async def test_an_existing_topic_keeping_messages_longer_than_the_setting_is_logged(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    name = f"test.long-retention-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [name], 1, retention_hours=100)
    caplog.clear()
    await ensure_topics(bootstrap, [name], 1, retention_hours=100)
    assert not any("keeps messages longer" in r.getMessage() for r in caplog.records)
    await ensure_topics(bootstrap, [name], 1, retention_hours=24)
    assert any(name in r.getMessage() and "keeps messages longer" in r.getMessage()
               for r in caplog.records)
