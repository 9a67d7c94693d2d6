"""Composition root of the reconciler.

Consumes `hotdeals.v1` in the consumer group `reconciler` (HotDealEnded -> flush) and runs
the deal duties: end deals whose duration is over, rebuild Redis state lost by a restart,
release orphan reservations, and flush ended deals whose event has not arrived yet.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from sqlalchemy import select, text

from hotdeal_core.consumer import RetryPolicy, handle
from hotdeal_core.db.tables import hot_deals
from hotdeal_core.service import Duty, Service
from hotdeal_core.settings import Settings
from hotdeal_core.topics import Topics
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.reconcile import (
    end_due_deals,
    flush_deal,
    recover_lost_states,
    release_orphans,
)
from schemas.events import HotDealEnded, HotDealEvent, hotdeal_event_adapter

log = logging.getLogger(__name__)
GROUP = "reconciler"
STUCK_AFTER_SECONDS = 10


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


def create_app(settings: Settings) -> FastStream:
    topics = Topics(settings.kafka_topic_prefix)
    group = settings.kafka_topic_prefix + GROUP  # environments sharing a broker stay apart
    retry = RetryPolicy.from_settings(settings)  # a failing handler: bounded, then dead letter
    # Per-message logs at DEBUG: at flash-sale rates they would cost more than the work.
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id=group,
                         graceful_timeout=20.0, log_level=logging.DEBUG)
    every = settings.reconcile_interval_seconds

    async def orphans(ctx: Context) -> bool:
        return (await release_orphans(ctx, settings.orphan_grace_seconds)).more

    async def lost(ctx: Context) -> int:
        await recover_lost_states(ctx)
        return 0

    async def due(ctx: Context) -> int:
        await end_due_deals(ctx)
        return 0

    service = Service(settings, [Duty("end-due-deals", every, due),
                                 Duty("recover-lost-redis-state", every, lost),
                                 Duty("release-orphans", every, orphans),
                                 Duty("flush-stuck-deals", every * 5, flush_stuck)])

    async def on_hotdeal(event: HotDealEvent) -> None:
        if isinstance(event, HotDealEnded):
            report = await flush_deal(service.ctx, event.hot_deal_id)
            log.info("HotDealEnded %s: %s", event.hot_deal_id, report)

    @broker.subscriber(topics.hotdeals, group_id=group, ack_policy=AckPolicy.NACK_ON_ERROR,
                       auto_offset_reset="earliest", title=f"{GROUP}:hotdeals")
    async def hotdeals_handler(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, topics, msg, GROUP, hotdeal_event_adapter, on_hotdeal,
                     retry=retry)

    return FastStream(broker, on_startup=[service.start], after_startup=[service.ready],
                      after_shutdown=[service.stop])


def asyncapi_app() -> FastStream:
    """For the AsyncAPI document (`python -m devtools.apidocs`)."""
    return create_app(Settings())
