"""Composition root of the reconciler: the hotdeals.v1 consumer (HotDealEnded -> flush) and
the deal and retention duties, each safe even if two replicas ran it at once
(docs/architecture.md, "Deals, recovery and the flush")."""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka.annotations import KafkaMessage

from hotdeal_core.bootstrap.consumer_process import (
    ConsumerProcess,
    Duty,
    consumer_broker,
    subscription,
)
from hotdeal_core.messaging.consumer import RetryPolicy, handle
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability.logs import bind_ids
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import end_due_deals
from hotdeal_core.usecases.flush import flush_deal, flush_stuck
from hotdeal_core.usecases.orphans import release_orphans
from hotdeal_core.usecases.recovery import recover_lost_states
from hotdeal_core.usecases.retention import purge_expired
from schemas.events import HotDealEnded, HotDealEvent, hotdeal_event_adapter

log = logging.getLogger(__name__)
GROUP = "reconciler"
RETENTION_DUTY = "retention"
# SIGTERM: an in-flight flush gets this long to finish (compose's stop_grace_period is longer).
GRACEFUL_TIMEOUT = 20.0


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

    async def stuck(ctx: Context) -> int:
        await flush_stuck(ctx)
        return 0

    process = ConsumerProcess(settings, [Duty("end-due-deals", every, due),
                                         Duty("recover-lost-redis-state", every, lost),
                                         Duty("release-orphans", every, orphans),
                                         Duty("flush-stuck-deals", every * 5, stuck),
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
