"""Bounded tables: the retention duty deletes old published outbox rows and old
processed-event records, a bounded batch at a time, in one reconciler; nothing else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.bootstrap.consumer_process import ConsumerProcess, Duty
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.retention import Purged, purge_expired
from reconciler.app import retention_duty
from tests.random_refs import random_user, suffix
from tests.waiting import eventually

OUTBOX_HOURS, PROCESSED_HOURS = 24.0, 48.0


async def _outbox_row(engine: AsyncEngine, *, age_hours: float, published: bool,
                      attempts: int = 0) -> int:
    """An outbox row written `age_hours` ago, published then too (or never)."""
    async with engine.begin() as conn:
        return int((await conn.execute(text("""
            INSERT INTO outbox (topic, key, event_type, payload, created_at, published_at,
                                attempts)
            VALUES ('test.retention', :key, 'OrderPlaced', '{}',
                    now() - make_interval(hours => :age),
                    CASE WHEN :published THEN now() - make_interval(hours => :age) END,
                    :attempts)
            RETURNING id"""), {"key": suffix(), "age": int(age_hours), "published": published,
                               "attempts": attempts})).scalar_one())


async def _record(engine: AsyncEngine, consumer: str, *, age_hours: float) -> uuid.UUID:
    event_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO processed_events (consumer, event_id, processed_at) "
            "VALUES (:c, :e, now() - make_interval(hours => :age))"),
            {"c": consumer, "e": event_id, "age": int(age_hours)})
    return event_id


async def _outbox_left(engine: AsyncEngine, ids: list[int]) -> set[int]:
    async with engine.connect() as conn:
        return {int(i) for i in (await conn.execute(
            text("SELECT id FROM outbox WHERE id = ANY(:ids)"), {"ids": ids})).scalars()}


async def _records_left(engine: AsyncEngine, consumer: str) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        return set((await conn.execute(text(
            "SELECT event_id FROM processed_events WHERE consumer = :c"), {"c": consumer}))
            .scalars())


async def _purge_all(engine: AsyncEngine, batch: int = 5000) -> list[Purged]:
    runs = [await purge_expired(engine, outbox_hours=OUTBOX_HOURS,
                                processed_hours=PROCESSED_HOURS, batch=batch)]
    while runs[-1].more:
        runs.append(await purge_expired(engine, outbox_hours=OUTBOX_HOURS,
                                        processed_hours=PROCESSED_HOURS, batch=batch))
    return runs


async def test_old_published_rows_and_old_records_are_deleted_and_nothing_else(
        engine: AsyncEngine) -> None:
    old_published = await _outbox_row(engine, age_hours=30, published=True)
    recent_published = await _outbox_row(engine, age_hours=20, published=True)
    old_unpublished = await _outbox_row(engine, age_hours=300, published=False)
    set_aside = await _outbox_row(engine, age_hours=300, published=False, attempts=99)
    consumer = f"test-retention-{suffix()}"
    old_record = await _record(engine, consumer, age_hours=50)
    recent_record = await _record(engine, consumer, age_hours=40)
    order_id, payment_id = uuid.uuid4(), f"pay-{suffix()}"
    async with engine.begin() as conn:  # a year-old order and its payment: the record
        await conn.execute(text("""
            INSERT INTO orders (id, product_id, user_id, quantity, unit_price, status,
                                expires_at, created_at, updated_at, payment_id)
            VALUES (:id, 1, :user, 1, 100, 'CONFIRMED', now() - interval '365 days',
                    now() - interval '365 days', now() - interval '365 days', :pay)"""),
            {"id": order_id, "user": random_user(), "pay": payment_id})
        await conn.execute(text("""
            INSERT INTO payments (payment_id, order_id, status, amount, outcome, created_at)
            VALUES (:pay, :id, 'succeeded', 100, 'accepted', now() - interval '365 days')"""),
            {"id": order_id, "pay": payment_id})

    await _purge_all(engine)

    mine = [old_published, recent_published, old_unpublished, set_aside]
    assert await _outbox_left(engine, mine) == {recent_published, old_unpublished, set_aside}
    assert await _records_left(engine, consumer) == {recent_record}
    assert old_record != recent_record
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM orders WHERE id = :id"),
                                   {"id": order_id})).scalar_one() == 1
        assert (await conn.execute(text("SELECT count(*) FROM payments WHERE payment_id = :p"),
                                   {"p": payment_id})).scalar_one() == 1


async def test_each_run_deletes_at_most_one_batch_per_table_and_says_when_there_is_more(
        engine: AsyncEngine) -> None:
    await _purge_all(engine)  # what other tests left: this one counts its own rows
    rows = [await _outbox_row(engine, age_hours=30, published=True) for _ in range(7)]
    consumer = f"test-retention-{suffix()}"
    for _ in range(7):
        await _record(engine, consumer, age_hours=50)

    first = await purge_expired(engine, outbox_hours=OUTBOX_HOURS,
                                processed_hours=PROCESSED_HOURS, batch=3)

    assert first == Purged(outbox=3, processed_events=3, more=True)
    assert len(await _outbox_left(engine, rows)) == 4
    assert len(await _records_left(engine, consumer)) == 4
    rest = await _purge_all(engine, batch=3)
    assert [(r.outbox, r.processed_events) for r in rest] == [(3, 3), (1, 1)]
    assert not rest[-1].more
    assert await _outbox_left(engine, rows) == set()
    assert await _records_left(engine, consumer) == set()


@dataclass
class Deleting:
    """Which replica's runs of the retention duty deleted rows."""

    by: dict[str, int] = field(default_factory=dict)

    def duty(self, settings: Settings, replica: str) -> Duty:
        real = retention_duty(settings)

        async def run(ctx: Context) -> object:
            before = await _counts(ctx.engine)
            more = await real.run(ctx)
            if await _counts(ctx.engine) != before:
                self.by[replica] = self.by.get(replica, 0) + 1
            return more
        return Duty(real.name, real.interval, run)


async def _counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        return ((await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one(),
                (await conn.execute(text("SELECT count(*) FROM processed_events")))
                .scalar_one())


async def test_two_reconcilers_run_the_retention_duty_and_only_one_deletes(
        settings: Settings, engine: AsyncEngine) -> None:
    fast = settings.model_copy(update={"retention_interval_seconds": 0.05,
                                       "retention_batch_rows": 2})
    deleting = Deleting()
    a = ConsumerProcess(fast, [deleting.duty(fast, "a")], pool_size=2)
    b = ConsumerProcess(fast, [deleting.duty(fast, "b")], pool_size=2)
    await a.start()
    await b.start()
    try:
        for _ in range(3):  # rounds of old rows, each deleted in batches of 2
            consumer = f"test-retention-{suffix()}"
            rows = [await _outbox_row(engine, age_hours=30, published=True) for _ in range(5)]
            for _ in range(5):
                await _record(engine, consumer, age_hours=50)

            async def gone(rows: list[int] = rows, consumer: str = consumer) -> bool:
                return not await _outbox_left(engine, rows) \
                    and not await _records_left(engine, consumer)
            await eventually(gone, 30, "the old rows to be deleted")
    finally:
        await a.stop()
        await b.stop()
    assert len(deleting.by) == 1, deleting.by  # every deleting run was one replica's
    assert sum(deleting.by.values()) >= 3 * 3  # 5 rows a table, 2 a batch: 3 runs a round
