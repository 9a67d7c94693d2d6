"""The shared resources of a process: built once, closed in one place.

`open_resources(settings)` builds the engine, the Redis client, the stock store, the outbox
relay and (for the order API) the group commits, starts their background tasks, yields
them as `Resources`, and closes them all on the way out. It is the only owner: the use
cases' `Context` and the relay use the engine, neither closes it. Each composition root
(`order_api/app.py`'s lifespan, the consumer shell `consumer_process.py`) enters it once.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client.core import Metric
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.batching import Batcher
from hotdeal_core.db.engine import make_engine
from hotdeal_core.db.settlement import PostgresSettlement
from hotdeal_core.messaging.relay import OutboxRelay, make_producer
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability.exposition import (
    oldest_unpublished_seconds,
    outbox_families,
    read_or_skip,
)
from hotdeal_core.observability.metrics import RESERVATION_DURATION
from hotdeal_core.ports.orders import ReservedOrder
from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import (
    RedisClient,
    close_redis,
    make_redis,
    replica_acks,
)
from hotdeal_core.stock.draws import DrawWaiters
from hotdeal_core.stock.port import ReserveRequest, ReserveResult
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.stock.reserver import reservation_batcher
from hotdeal_core.stock.sold_out import SoldOutMemo
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.payments import PaymentCallback, PaymentReceipt, record_payments
from hotdeal_core.usecases.views import OrderView

log = logging.getLogger(__name__)


class TimedRedisStockStore(RedisStockStore):
    """The Redis store, each reservation call timed (hotdeal_reservation_duration_seconds)."""

    async def reserve_groups(self, groups: Sequence[tuple[int, list[ReserveRequest]]],
                             ) -> list[list[ReserveResult] | BaseException]:
        with RESERVATION_DURATION.time():  # reserve_many is one reserve_groups call
            return await super().reserve_groups(groups)


@dataclass
class Resources:
    """What `open_resources` built: the use cases' `Context`, and what only it closes."""

    ctx: Context
    redis: RedisClient
    relay: OutboxRelay

    @property
    def engine(self) -> AsyncEngine:
        return self.ctx.engine

    async def readiness(self, timeout: float = 2.0) -> dict[str, str]:
        checks = {"postgres": self._pg(), "redis": self._redis(), "kafka": self._kafka()}
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check, timeout)
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                results[name] = f"unavailable: {type(exc).__name__}"
        return results

    async def _pg(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def _redis(self) -> None:
        await self.redis.ping()

    async def _kafka(self) -> None:
        if not self.relay.connected:
            raise ConnectionError("producer not connected")
        await self.relay.producer.client.fetch_all_metadata()

    async def metric_families(self) -> list[Metric]:
        """This process's scrape-time gauges (hotdeal_core/observability/exposition.py)."""
        async def outbox() -> list[Metric]:
            age = await oldest_unpublished_seconds(self.engine, self.relay.max_attempts)
            return outbox_families(age, self.relay.connected)
        return (await read_or_skip("the outbox's oldest row", outbox())
                or outbox_families(None, self.relay.connected))

    def writers(self) -> list[Batcher[Any, Any]]:
        return [w for w in (self.ctx.reserver, self.ctx.order_writer, self.ctx.payment_writer)
                if w is not None]


def load_hook(path: str | None) -> Callable[[], None]:
    """The FAULT_HOOK function ("module:function"), or one that does nothing."""
    if not path:
        return lambda: None
    module, _, name = path.partition(":")
    hook: Callable[[], None] = getattr(importlib.import_module(module), name)
    log.warning("fault hook %s installed: for tests only", path)
    return hook


@asynccontextmanager
async def open_resources(settings: Settings, *, pool_size: int | None = None,
                         group_commits: bool = True) -> AsyncIterator[Resources]:
    """Build, start, yield; then stop and close, the writers first: what is queued is
    written (and handed to the relay) before the relay stops, the relay before the engine.

    `group_commits`: the batched reservations, order and payment writes of the order
    API (the consumers never place orders or record payments, so they go without)."""
    resources = _build(settings, pool_size=pool_size, group_commits=group_commits)
    resources.relay.start()
    for writer in resources.writers():
        writer.start()
    try:
        yield resources
    finally:
        for writer in resources.writers():
            await writer.stop()
        await resources.relay.stop()
        await close_redis(resources.redis)
        await resources.engine.dispose()


def _build(settings: Settings, *, pool_size: int | None, group_commits: bool) -> Resources:
    engine = make_engine(settings, pool_size=pool_size)
    redis = make_redis(settings)
    topics = Topics(settings.kafka_topic_prefix)

    def new_producer() -> AIOKafkaProducer:
        return make_producer(settings.kafka_bootstrap_servers)

    relay = OutboxRelay(engine, new_producer(), producer_factory=new_producer,
                        bootstrap_servers=settings.kafka_bootstrap_servers,
                        batch_size=settings.outbox_batch_size,
                        poll_interval=settings.outbox_poll_interval_ms / 1000,
                        topics=topics.all(), partitions=settings.kafka_partitions,
                        replication_factor=settings.kafka_replication_factor,
                        retention_hours=settings.kafka_topic_retention_hours,
                        max_attempts=settings.outbox_max_attempts)

    settlement_db = PostgresSettlement(engine, topics)

    async def write_callbacks(items: list[PaymentCallback],
                              ) -> list[PaymentReceipt | BaseException]:
        return await record_payments(settlement_db, items, relay.publish_now)

    store = TimedRedisStockStore(redis, replica_acks(settings))
    ctx = Context(engine=engine, stock=store, settings=settings,
                  topics=topics, outbox_written=relay.wake,
                  sold_out=SoldOutMemo(settings.sold_out_cache_ms / 1000),
                  after_reserve=load_hook(settings.fault_hook), draws=DrawWaiters(store),
                  settlement_db=settlement_db)
    orders_db = ctx.orders_db

    async def write_orders(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
        return await orders_db.write_reserved_orders(items, relay.publish_now)

    if group_commits:
        ctx.reserver = reservation_batcher(
            store, settings.write_batch_max,
            failover_wait_s=settings.redis_failover_wait_seconds)
        ctx.order_writer = Batcher("orders", write_orders, max_batch=settings.write_batch_max)
        ctx.payment_writer = Batcher("payments", write_callbacks,
                                     max_batch=settings.write_batch_max)
    return Resources(ctx, redis, relay)
