"""The foundation against the real services: Kafka round trip with a consumer group,
Alembic upgrade/downgrade on a fresh database, a Lua script registered and called."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hotdeal_core.db import migrate
from hotdeal_core.db.engine import make_engine
from hotdeal_core.db.tables import metadata, orders, products
from hotdeal_core.settings import Settings


async def _consume(consumer: AIOKafkaConsumer, n: int,
                   timeout: float = 30) -> list[tuple[bytes, bytes]]:
    got: list[tuple[bytes, bytes]] = []
    async with asyncio.timeout(timeout):
        while len(got) < n:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend((r.key, r.value) for r in records)
    return got


async def test_kafka_round_trip_resumes_after_committed_offset(settings: Settings) -> None:
    topic, group = f"test.roundtrip-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    bootstrap = settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait(topic, f"v{i}".encode(), key=b"order-1")
    finally:
        await producer.stop()

    first = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    await first.start()
    try:
        got = await _consume(first, 2)
        assert got[0] == (b"order-1", b"v0")
        # Commit after the second message only: the group's position is offset 2.
        await first.commit({TopicPartition(topic, 0): 2})
    finally:
        await first.stop()

    second = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                              enable_auto_commit=False, auto_offset_reset="earliest")
    await second.start()
    try:
        rest = await _consume(second, 2)
    finally:
        await second.stop()
    assert rest == [(b"order-1", b"v2"), (b"order-1", b"v3")]


async def test_alembic_upgrade_and_downgrade_on_a_fresh_database(settings: Settings) -> None:
    url = make_url(settings.database_url)
    name = f"hotdeal_migr_{uuid.uuid4().hex[:8]}"
    dsn = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    fresh = url.set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(migrate.upgrade, fresh)
        engine = create_async_engine(fresh)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert set(metadata.tables) <= tables
        await asyncio.to_thread(migrate.downgrade, fresh)
        async with engine.connect() as conn:
            left = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        assert left == {"alembic_version"}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_redis_lua_script_is_registered_and_called(redis: Redis) -> None:
    key = f"test:lua:{{{uuid.uuid4().hex}}}"
    script = redis.register_script(
        "local v = redis.call('INCRBY', KEYS[1], ARGV[1]); return v * 2")
    assert await script(keys=[key], args=[21]) == 42
    await redis.script_flush()  # the script is gone from Redis: redis-py re-loads it
    assert await script(keys=[key], args=[1]) == 44
    await redis.delete(key)


async def test_schema_refuses_negative_stock(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(IntegrityError, match="stock_non_negative"):
            await conn.execute(products.insert().values(name="x", price=1, stock=-1))


async def test_schema_refuses_a_zero_quantity_order(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        pid = (await conn.execute(products.insert().values(
            name="x", price=1, stock=1).returning(products.c.id))).scalar_one()
        with pytest.raises(IntegrityError, match="quantity_positive"):
            await conn.execute(orders.insert().values(
                id=uuid.uuid4(), product_id=pid, user_id="u", quantity=0, unit_price=1,
                status="PENDING", expires_at=datetime.now(UTC)))
        await conn.rollback()


async def test_engine_runs_every_transaction_in_read_committed(settings: Settings) -> None:
    """The deal fence needs READ COMMITTED (a fresh snapshot after the lock): our engine
    keeps it even on a connection whose default isolation was raised."""
    eng = make_engine(settings, pool_size=1)
    try:
        async with eng.connect() as conn:
            await conn.execute(text(
                "SET SESSION default_transaction_isolation = 'serializable'"))
            await conn.commit()
            async with conn.begin():
                level = (await conn.execute(text("SHOW transaction_isolation"))).scalar_one()
    finally:
        await eng.dispose()
    assert level == "read committed"
