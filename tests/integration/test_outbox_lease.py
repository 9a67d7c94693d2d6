"""A relay waiting on Kafka keeps its rows; a dead relay's rows move on within the lease
(found by `make chaos`: ~40 % of OrderPlaced sent twice while a broker restarted). Real
Postgres (a private outbox table), fake producers the test acknowledges."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.tables import outbox
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.messaging.relay import OutboxRelay
from tests.integration.test_outbox_poison import _insert, private_outbox  # noqa: F401
from tests.waiting import eventually

LEASE = 0.6


class HeldProducer:
    """A producer whose sends are acknowledged only when the test says so."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.acks: list[asyncio.Future[Any]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: Any = None) -> asyncio.Future[Any]:
        self.sent.append(value)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks.append(fut)
        return fut

    def ack_all(self) -> None:
        for fut in self.acks:
            if not fut.done():
                fut.set_result(None)


class InstantProducer(HeldProducer):
    async def send(self, topic: str, value: bytes, key: bytes,
                   headers: Any = None) -> asyncio.Future[Any]:
        fut = await super().send(topic, value, key)
        fut.set_result(None)
        return fut


def _relay(engine: AsyncEngine, producer: HeldProducer) -> OutboxRelay:
    relay = OutboxRelay(engine, producer, lease_seconds=LEASE)
    relay.connected = True
    return relay


async def _published(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(outbox.c.id).where(
            outbox.c.published_at.is_not(None)))).scalars().all())


async def test_a_relay_waiting_on_kafka_keeps_its_claim_past_the_lease(
        private_outbox: AsyncEngine) -> None:  # noqa: F811
    ids = await _insert(private_outbox, "t", [{"n": 1}, {"n": 2}])
    slow, other = HeldProducer(), InstantProducer()
    a, b = _relay(private_outbox, slow), _relay(private_outbox, other)
    sending = asyncio.create_task(a.publish_batch())
    await eventually(lambda: asyncio.sleep(0, len(slow.sent) == 2), what="a's sends")
    # Three leases pass while a's sends wait; b polls all along and gets nothing to send.
    until = time.monotonic() + 3 * LEASE
    while time.monotonic() < until:
        assert await b.publish_batch() == 0
        await asyncio.sleep(0.05)
    slow.ack_all()
    assert await sending == 2
    assert other.sent == []
    assert sorted(await _published(private_outbox)) == sorted(ids)


async def test_a_dead_relays_rows_are_published_by_another_after_the_lease(
        private_outbox: AsyncEngine) -> None:  # noqa: F811
    ids = await _insert(private_outbox, "t", [{"n": 1}])
    slow, other = HeldProducer(), InstantProducer()
    a, b = _relay(private_outbox, slow), _relay(private_outbox, other)
    sending = asyncio.create_task(a.publish_batch())
    await eventually(lambda: asyncio.sleep(0, bool(slow.sent)), what="a's send")
    sending.cancel()  # a dies: no more heartbeats
    died = time.monotonic()

    async def taken_over() -> bool:
        return await b.publish_batch() == 1
    await eventually(taken_over, timeout=10, what="b to publish a's row")
    assert time.monotonic() - died < 5 * LEASE
    assert await _published(private_outbox) == ids


async def test_handed_over_rows_taken_over_by_another_relay_are_not_sent_again(
        private_outbox: AsyncEngine) -> None:  # noqa: F811
    """A group commit's rows are born claimed (no owner); if their process waited past the
    lease and another relay claimed or published them meanwhile, the first one drops them."""
    mine, published, claimed = await _insert(private_outbox, "t", [{"n": 1}, {"n": 2}, {"n": 3}])
    async with private_outbox.begin() as conn:
        await conn.execute(update(outbox).where(outbox.c.id == published).values(
            claimed_by="b", published_at=func.now()))
        await conn.execute(update(outbox).where(outbox.c.id == claimed).values(
            claimed_by="b", claimed_until=func.now() + timedelta(seconds=30)))
    a = _relay(private_outbox, InstantProducer())
    long_ago = time.monotonic() - LEASE
    handed = [(long_ago, OutboxRow(i, "t", "k", {"n": i}, datetime.now(UTC)))
              for i in (mine, published, claimed)]
    assert [r.id for r in await a.still_ours(handed)] == [mine]
    async with private_outbox.connect() as conn:
        owner = (await conn.execute(select(outbox.c.claimed_by).where(
            outbox.c.id == mine))).scalar_one()
    assert owner == a.relay_id
