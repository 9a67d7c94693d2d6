"""Building the shared resources of a process (called inside each composition root)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.batching import Batcher
from hotdeal_core.db.engine import make_engine
from hotdeal_core.outbox import OutboxRelay, make_producer
from hotdeal_core.settings import Settings
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.stock.reserver import reservation_batcher
from hotdeal_core.stock.sold_out import SoldOutMemo
from hotdeal_core.topics import Topics
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.order_writes import ReservedOrder, write_reserved_orders
from hotdeal_core.usecases.payment_writes import PaymentCallback, PaymentReceipt, write_payments
from hotdeal_core.usecases.views import OrderView

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    ctx: Context
    redis: Redis
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

    def writers(self) -> list[Batcher[Any, Any]]:
        return [w for w in (self.ctx.reserver, self.ctx.order_writer, self.ctx.payment_writer)
                if w is not None]

    def start(self) -> None:
        """Start the process's background tasks: the outbox relay, the group commits."""
        self.relay.start()
        for writer in self.writers():
            writer.start()

    async def close(self) -> None:
        for writer in self.writers():  # what is queued is written (and handed to the relay)
            await writer.stop()
        await self.relay.stop()
        await self.redis.aclose(close_connection_pool=True)  # a pool we passed in: close it
        await self.engine.dispose()


def build_runtime(settings: Settings, *, pool_size: int | None = None,
                  group_commits: bool = True) -> Runtime:
    """`group_commits`: the batched reservations, order and payment writes of the order
    API (the consumers never place orders or record payments, so they go without)."""
    engine = make_engine(settings, pool_size=pool_size)
    # A bounded pool where callers wait for a free connection: Redis runs one command at a
    # time anyway, and a burst of 1,000 requests must not open 1,000 sockets at once
    # (measured: connect timeouts -> 503s).
    redis = Redis(connection_pool=BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_max_connections, timeout=10,
        socket_timeout=5, socket_connect_timeout=5))
    topics = Topics(settings.kafka_topic_prefix)

    def new_producer() -> AIOKafkaProducer:
        return make_producer(settings.kafka_bootstrap_servers)

    relay = OutboxRelay(engine, new_producer(), producer_factory=new_producer,
                        bootstrap_servers=settings.kafka_bootstrap_servers,
                        batch_size=settings.outbox_batch_size,
                        poll_interval=settings.outbox_poll_interval_ms / 1000,
                        topics=topics.all(), partitions=settings.kafka_partitions,
                        max_attempts=settings.outbox_max_attempts)

    async def write_orders(items: list[ReservedOrder]) -> list[OrderView | BaseException]:
        return await write_reserved_orders(engine, items, relay.publish_now)

    async def write_callbacks(items: list[PaymentCallback],
                              ) -> list[PaymentReceipt | BaseException]:
        return await write_payments(engine, topics, items, relay.publish_now)

    store = RedisStockStore(redis)
    ctx = Context(engine=engine, stock=store, settings=settings,
                  topics=topics, outbox_written=relay.wake,
                  sold_out=SoldOutMemo(settings.sold_out_cache_ms / 1000))
    if group_commits:
        ctx.reserver = reservation_batcher(store, settings.write_batch_max)
        ctx.order_writer = Batcher("orders", write_orders, max_batch=settings.write_batch_max)
        ctx.payment_writer = Batcher("payments", write_callbacks,
                                     max_batch=settings.write_batch_max)
    return Runtime(ctx, redis, relay)
