"""A row that can never be published (over max_request_size) does not hold back the rows
around it; it collects attempts until the limit, then is set aside. Real Postgres and Kafka,
the relay on a private copy of the outbox table (the shared one has other tests' relays)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hotdeal_core.db.tables import outbox
from hotdeal_core.messaging.admin import ensure_topics
from hotdeal_core.messaging.outbox import LEASE_SECONDS
from hotdeal_core.messaging.relay import OutboxRelay, make_producer
from hotdeal_core.settings import Settings
from tests.waiting import eventually

MAX_ATTEMPTS = 3


@pytest.fixture
async def private_outbox(engine: AsyncEngine, settings: Settings
                         ) -> AsyncIterator[AsyncEngine]:
    """An engine whose unqualified `outbox` is a fresh, empty copy of the real table."""
    schema = f"outbox_poison_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE SCHEMA {schema}"))
        await conn.execute(text(f"CREATE TABLE {schema}.outbox "
                                "(LIKE public.outbox INCLUDING ALL)"))
    scoped = create_async_engine(settings.database_url, pool_size=2,
                                 connect_args={"server_settings": {"search_path": schema}})
    try:
        yield scoped
    finally:
        await scoped.dispose()
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


async def _consume(bootstrap: str, topic: str, count: int, timeout: float = 30
                   ) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} messages: {got}"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(json.loads(r.value) for r in records)
        return got
    finally:
        await consumer.stop()


async def _insert(engine: AsyncEngine, topic: str, payloads: list[dict[str, Any]]
                  ) -> list[int]:
    async with engine.begin() as conn:
        return list((await conn.execute(outbox.insert().returning(outbox.c.id), [
            {"topic": topic, "key": "same-key", "event_type": "Test", "payload": p}
            for p in payloads])).scalars().all())


async def _run_until_set_aside(engine: AsyncEngine, relay: OutboxRelay, poison_id: int
                               ) -> tuple[Any, Any]:
    """publish_batch until the poison row is out of attempts, then until nothing is left to
    claim; the poison row when it was set aside, and at the end."""
    async def poison_row() -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(select(outbox).where(outbox.c.id == poison_id))).one()

    async def set_aside() -> bool:
        await relay.publish_batch()
        return bool((await poison_row()).attempts >= relay.max_attempts)

    await relay.connect()
    try:
        await eventually(set_aside, what="the poison row to be set aside")
        before = await poison_row()

        async def drained() -> bool:
            return await relay.publish_batch() == 0

        await eventually(drained, what="the other rows to be published")
        return before, await poison_row()
    finally:
        await relay.stop()


async def _assert_outcome(engine: AsyncEngine, relay: OutboxRelay, bootstrap: str, topic: str,
                          good_ids: list[int], before: Any, after: Any,
                          caplog: pytest.LogCaptureFixture) -> None:
    # The good rows: published and marked, despite the poison row between them.
    async with engine.connect() as conn:
        published = (await conn.execute(select(outbox.c.id).where(
            outbox.c.published_at.is_not(None)))).scalars().all()
    assert sorted(published) == sorted(good_ids)
    assert relay.published_total == len(good_ids)
    assert sorted(m["n"] for m in await _consume(bootstrap, topic, len(good_ids))) == [1, 3, 4]

    # The poison row: attempts counted, the reason kept, never published, no longer claimed.
    assert after.attempts == MAX_ATTEMPTS and after.published_at is None
    assert "MessageSizeTooLargeError" in after.last_error
    assert after.claimed_until == before.claimed_until
    assert relay.set_aside_total == 1
    assert await relay.set_aside_count() == 1
    reports = [r for r in caplog.records if "set aside" in r.getMessage()]
    assert len(reports) == 1 and reports[0].levelno == logging.ERROR
    assert f"row {after.id} " in reports[0].getMessage()


async def test_a_row_the_producer_refuses_is_set_aside_and_the_others_are_published(
        private_outbox: AsyncEngine, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    """Over max_request_size (1 MB): aiokafka's send() refuses it, no request is made."""
    bootstrap = settings.kafka_bootstrap_servers
    topic = f"{settings.kafka_topic_prefix}poison-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], 1)
    ids = await _insert(private_outbox, topic,
                        [{"n": 1}, {"n": 2, "blob": "x" * 1_100_000}, {"n": 3}, {"n": 4}])
    # No backoff between failed attempts, so that the test does not wait for it.
    relay = OutboxRelay(private_outbox, make_producer(bootstrap), max_attempts=MAX_ATTEMPTS,
                        retry_backoff_base=0.0)
    with caplog.at_level(logging.WARNING, logger="hotdeal_core.messaging.relay"):
        before, after = await _run_until_set_aside(private_outbox, relay, ids[1])
    await _assert_outcome(private_outbox, relay, bootstrap, topic, [ids[0], *ids[2:]],
                          before, after, caplog)


async def test_a_row_the_broker_refuses_is_set_aside_and_its_batch_mates_are_published(
        private_outbox: AsyncEngine, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    """Over the topic's max.message.bytes: the broker refuses the whole produce batch of the
    partition, and the idempotent producer is out of step with it afterwards."""
    bootstrap = settings.kafka_bootstrap_servers
    topic = f"{settings.kafka_topic_prefix}poison-small-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            topic_configs={"max.message.bytes": "2000"})])
    finally:
        await admin.close()
    ids = await _insert(private_outbox, topic,
                        [{"n": 1}, {"n": 2, "blob": "x" * 5000}, {"n": 3}, {"n": 4}])
    relay = OutboxRelay(private_outbox, make_producer(bootstrap), max_attempts=MAX_ATTEMPTS,
                        retry_backoff_base=0.0,
                        producer_factory=lambda: make_producer(bootstrap))
    with caplog.at_level(logging.WARNING, logger="hotdeal_core.messaging.relay"):
        before, after = await _run_until_set_aside(private_outbox, relay, ids[1])
    await _assert_outcome(private_outbox, relay, bootstrap, topic, [ids[0], *ids[2:]],
                          before, after, caplog)
    # Batch-mates refused with it were counted at most once, then sent on their own.
    async with private_outbox.connect() as conn:
        attempts = (await conn.execute(select(outbox.c.attempts).where(
            outbox.c.id.in_([ids[0], *ids[2:]])))).scalars().all()
    assert max(attempts) <= 1


async def test_rows_left_claimed_by_a_dead_relay_are_published_within_seconds(
        private_outbox: AsyncEngine, settings: Settings) -> None:
    """A process that died between its commit and its publish leaves rows claimed (born
    claimed by a group commit, or claimed by its relay): the lease is short, so another
    relay publishes them seconds later, not after half a minute."""
    topic = f"test.lease-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.kafka_bootstrap_servers
    await ensure_topics(bootstrap, [topic], 1)
    async with private_outbox.begin() as conn:  # what the dead process left behind
        await conn.execute(text(f"""
            INSERT INTO outbox (topic, key, event_type, payload, claimed_until)
            VALUES (:topic, 'k', 'Test', '{{"n": 1}}',
                    now() + interval '{LEASE_SECONDS} seconds')"""), {"topic": topic})
    relay = OutboxRelay(private_outbox, make_producer(bootstrap), bootstrap_servers=bootstrap)
    started = time.monotonic()
    await relay.connect()
    try:
        async def published() -> bool:
            return await relay.publish_batch() == 1

        await eventually(published, timeout=20, what="the orphaned claim to be published")
    finally:
        await relay.stop()
    assert time.monotonic() - started < 20
    assert [m["n"] for m in await _consume(bootstrap, topic, 1)] == [1]
