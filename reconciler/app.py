"""Composition root of the reconciler.

Consumes `hotdeals.v1` in the consumer group `reconciler` (HotDealEnded -> flush) and runs
the deal duties: end deals whose duration is over, rebuild Redis state lost by a restart,
release orphan reservations, and flush ended deals whose event has not arrived yet; and
keeps the outbox and processed_events bounded (the retention duty).

Several reconcilers may run (`make up CLUSTER=1` starts two): the group shares the topic's
partitions, and each duty runs in one replica at a time, the holder of its Postgres advisory
lock (`Duty.exclusive`, hotdeal_core/bootstrap/duty_locks.py); another takes over within an
interval when it stops or dies. Would a duty also be safe run by two at once (the lock's one
window: a leader that lost its session mid-run)? All are; the lock saves the doubled work, the lock
waits and the log noise of N replicas doing the same thing:

- end-due-deals: safe. `end_deal` moves ACTIVE -> ENDED by compare-and-set; one call wins
  and writes the one HotDealEnded, the other ends nothing (or finds the deal gone).
- recover-lost-redis-state: safe. A flagged deal is looked at again under the exclusive deal
  fence and rebuilt only if the loss is still there, so the second of two replicas finds
  the first one's rebuild and leaves it. (Without that second look, a second rebuild under
  a newer epoch would fence the reservations taken on the first: refused buyers, never an
  oversold unit.)
- release-orphans: safe. Voiding is an insert ON CONFLICT DO NOTHING, a release is guarded
  by the reservation record (a second release is a no-op); only the work is doubled.
- flush-stuck-deals: safe. `flush_deal` locks the deal (fence + row) and returns the stored
  report if the deal is RECONCILED already.
- retention: safe. Each batch is a DELETE of rows past their retention; two at once delete
  different rows or the same ones once (a deleted row is skipped by the other).
- the hotdeals.v1 subscriber: one member per partition (Kafka's group), and a redelivered
  HotDealEnded is a flush again: safe, as above.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import select, text

from hotdeal_core.bootstrap.consumer_process import (
    ConsumerProcess,
    Duty,
    consumer_broker,
    subscription,
)
from hotdeal_core.db.tables import hot_deals
from hotdeal_core.messaging.consumer import RetryPolicy, handle
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability.logs import bind_ids
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import end_due_deals
from hotdeal_core.usecases.flush import flush_deal
from hotdeal_core.usecases.orphans import release_orphans
from hotdeal_core.usecases.recovery import recover_lost_states
from hotdeal_core.usecases.retention import purge_expired
from schemas.events import HotDealEnded, HotDealEvent, hotdeal_event_adapter

log = logging.getLogger(__name__)
GROUP = "reconciler"
RETENTION_DUTY = "retention"
STUCK_AFTER_SECONDS = 10
# SIGTERM: an in-flight flush gets this long to finish (compose's stop_grace_period is longer).
GRACEFUL_TIMEOUT = 20.0


async def flush_stuck(ctx: Context) -> int:
    """Safety net: ENDED deals not reconciled a while after they ended are flushed here."""
    async with ctx.engine.connect() as conn:
        stuck = (await conn.execute(select(hot_deals.c.id).where(
            hot_deals.c.status == "ENDED",
            hot_deals.c.ended_at < text(f"now() - interval '{STUCK_AFTER_SECONDS} seconds'"))
        )).scalars().all()
    for deal_id in stuck:
        await flush_deal(ctx, int(deal_id))
    return 0


def retention_duty(settings: Settings) -> Duty:
    """Old published outbox rows and processed-event records deleted, a batch at a time."""
    async def retention(ctx: Context) -> bool:
        purged = await purge_expired(
            ctx.engine, outbox_hours=settings.outbox_retention_hours,
            processed_hours=settings.processed_events_retention_hours,
            batch=settings.retention_batch_rows)
        if purged.outbox or purged.processed_events:
            log.debug("retention: %s", purged)
        return purged.more
    return Duty(RETENTION_DUTY, settings.retention_interval_seconds, retention)


def create_app(settings: Settings) -> AsgiFastStream:
    broker = consumer_broker(settings, GROUP, GRACEFUL_TIMEOUT)
    topics = Topics(settings.kafka_topic_prefix)
    retry = RetryPolicy.from_settings(settings)  # a failing handler: bounded, then dead letter
    every = settings.reconcile_interval_seconds

    async def orphans(ctx: Context) -> bool:
        return (await release_orphans(ctx, settings.orphan_grace_seconds)).more

    async def lost(ctx: Context) -> int:
        await recover_lost_states(ctx)
        return 0

    async def due(ctx: Context) -> int:
        await end_due_deals(ctx)
        return 0

    process = ConsumerProcess(settings, [Duty("end-due-deals", every, due),
                                         Duty("recover-lost-redis-state", every, lost),
                                         Duty("release-orphans", every, orphans),
                                         Duty("flush-stuck-deals", every * 5, flush_stuck),
                                         retention_duty(settings)],
                              broker=broker)

    async def on_hotdeal(event: HotDealEvent) -> None:
        if isinstance(event, HotDealEnded):
            with bind_ids(deal_id=event.hot_deal_id, event_id=event.event_id):
                report = await flush_deal(process.ctx, event.hot_deal_id)
                log.info("HotDealEnded %s: %s", event.hot_deal_id, report)

    @broker.subscriber(topics.hotdeals, ack_policy=AckPolicy.NACK_ON_ERROR,
                       **subscription(settings, GROUP, "hotdeals"))
    async def hotdeals_handler(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, topics, msg, GROUP, hotdeal_event_adapter, on_hotdeal,
                     retry=retry)

    return process.app()


def asyncapi_app() -> AsgiFastStream:
    """For the AsyncAPI document (`python -m devtools.apidocs`)."""
    return create_app(Settings())
