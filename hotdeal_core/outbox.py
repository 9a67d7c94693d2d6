"""Transactional outbox: events are written in the same Postgres transaction as the state
change, then a relay publishes them to Kafka and marks them sent.

The relay claims a batch with `FOR UPDATE SKIP LOCKED` and a short lease (claimed_until),
commits the claim, publishes (idempotent producer, acks=all, key = entity id), then marks
the rows published. No DB transaction is held across the Kafka await; two relays never
publish the same row at once; a relay that dies mid-batch leaves rows whose lease expires
and are published again (at-least-once: consumers are idempotent by event_id).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hotdeal_core.db.tables import outbox
from hotdeal_core.kafka_topics import ensure_topics
from hotdeal_core.metrics import Histogram
from hotdeal_core.topics import Topics, event_key
from schemas.events import AnyEvent

log = logging.getLogger(__name__)

LEASE_SECONDS = 30

_CLAIM = text(f"""
    UPDATE outbox SET claimed_until = now() + interval '{LEASE_SECONDS} seconds'
    WHERE id IN (
        SELECT id FROM outbox
        WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
        ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, topic, key, payload, created_at
""")
_MARK = text("""
    UPDATE outbox SET published_at = now() WHERE id = ANY(:ids)
    RETURNING EXTRACT(EPOCH FROM (published_at - created_at)) AS delay
""")


async def add_event(conn: AsyncConnection, topics: Topics, event: AnyEvent) -> None:
    await conn.execute(outbox.insert().values(
        topic=topics.of(event), key=event_key(event), event_type=event.type,
        payload=event.model_dump(mode="json")))


def make_producer(bootstrap_servers: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap_servers, enable_idempotence=True,
                            acks="all", linger_ms=2, request_timeout_ms=15000)


@dataclass
class OutboxRelay:
    engine: AsyncEngine
    producer: AIOKafkaProducer
    bootstrap_servers: str = ""
    batch_size: int = 500
    poll_interval: float = 0.05
    publish_delay: Histogram = field(default_factory=lambda: Histogram(
        "hotdeal_outbox_publish_delay_seconds",
        "Time from an outbox row's commit to its publication on Kafka"))
    published_total: int = 0
    connected: bool = False
    # Created (or grown) before the first publish; see hotdeal_core.kafka_topics.
    topics: list[str] = field(default_factory=list)
    partitions: int = 6
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows: publish now, don't wait for the poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.connected:
            await self.producer.stop()
            self.connected = False

    async def _connect(self) -> None:
        # Kafka may be down at start-up: orders keep being accepted (the outbox holds their
        # events) and the relay keeps trying.
        while not self.connected:
            try:
                if self.topics:
                    await ensure_topics(self.bootstrap_servers, self.topics, self.partitions)
                await self.producer.start()
                self.connected = True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("outbox relay: Kafka unreachable (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _run(self) -> None:
        await self._connect()
        while True:
            try:
                published = await self.publish_batch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay: batch failed; retrying")
                published = 0
                await asyncio.sleep(1.0)
            if published < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                self._wake.clear()

    async def publish_batch(self) -> int:
        async with self.engine.begin() as conn:
            rows = (await conn.execute(_CLAIM, {"limit": self.batch_size})).all()
        if not rows:
            return 0
        rows = sorted(rows, key=lambda r: r.id)
        futures = [await self.producer.send(
            r.topic, value=_encode(r.payload), key=r.key.encode()) for r in rows]
        await asyncio.gather(*futures)
        async with self.engine.begin() as conn:
            delays = (await conn.execute(_MARK, {"ids": [r.id for r in rows]})).scalars().all()
        for delay in delays:
            self.publish_delay.observe(float(delay))
        self.published_total += len(rows)
        return len(rows)


def _encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


