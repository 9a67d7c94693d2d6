"""Building the shared resources of a process (called inside each composition root)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.engine import make_engine
from hotdeal_core.outbox import OutboxRelay, make_producer
from hotdeal_core.settings import Settings
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.stock.sold_out import SoldOutMemo
from hotdeal_core.topics import Topics
from hotdeal_core.usecases.context import Context

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

    async def close(self) -> None:
        await self.relay.stop()
        await self.redis.aclose(close_connection_pool=True)  # a pool we passed in: close it
        await self.engine.dispose()


def build_runtime(settings: Settings, *, pool_size: int | None = None) -> Runtime:
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
    ctx = Context(engine=engine, stock=RedisStockStore(redis), settings=settings,
                  topics=topics, outbox_written=relay.wake,
                  sold_out=SoldOutMemo(settings.sold_out_cache_ms / 1000))
    return Runtime(ctx, redis, relay)
