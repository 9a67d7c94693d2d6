"""Composition root of the stock worker.

Consumes `payments.v1` and `orders.v1` in the consumer group `stock-worker` and runs the
expiry sweeper. It is the only writer of order status after creation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from hotdeal_core.consumer import handle
from hotdeal_core.domain import CancelReason
from hotdeal_core.runtime import Runtime, build_runtime
from hotdeal_core.settings import Settings
from hotdeal_core.topics import Topics
from hotdeal_core.usecases.settlement import cancel_order, confirm_order, expire_due_orders
from schemas.events import (
    OrderCancellationRequested,
    OrderConfirmationRequested,
    OrderEvent,
    PaymentEvent,
    PaymentFailed,
    PaymentSucceeded,
    order_event_adapter,
    payment_event_adapter,
)

log = logging.getLogger(__name__)
GROUP = "stock-worker"


class Worker:
    """Holds the runtime built at start-up; handlers close over it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime: Runtime | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None, "worker not started"
        return self.runtime

    async def start(self) -> None:
        self.runtime = build_runtime(self.settings, pool_size=10)
        self.runtime.relay.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="expiry-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self.runtime is not None:
            await self.runtime.close()

    async def on_payment(self, event: PaymentEvent) -> None:
        ctx = self.rt.ctx
        if isinstance(event, PaymentSucceeded):
            await confirm_order(ctx, event.order_id, payment_id=event.payment_id,
                                amount=event.amount, event_id=event.event_id, consumer=GROUP)
        elif isinstance(event, PaymentFailed):
            await cancel_order(ctx, event.order_id, CancelReason.PAYMENT_FAILED,
                               event_id=event.event_id, consumer=GROUP)

    async def on_order(self, event: OrderEvent) -> None:
        ctx = self.rt.ctx
        if isinstance(event, OrderConfirmationRequested):
            await confirm_order(ctx, event.order_id, payment_id=None,
                                event_id=event.event_id, consumer=GROUP)
        elif isinstance(event, OrderCancellationRequested):
            await cancel_order(ctx, event.order_id, CancelReason.USER_CANCELLED,
                               event_id=event.event_id, consumer=GROUP)

    async def _sweep_forever(self) -> None:
        """Cancel reservations past RESERVATION_TTL_SECONDS, in batches."""
        while True:
            try:
                n = await expire_due_orders(self.rt.ctx, self.settings.sweep_batch_size)
                if n:
                    log.info("expiry sweeper: cancelled %d expired orders", n)
                    continue  # more may be due
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("expiry sweeper failed; retrying")
            await asyncio.sleep(self.settings.sweep_interval_seconds)


def create_app(settings: Settings) -> FastStream:
    topics = Topics(settings.kafka_topic_prefix)
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id=GROUP,
                         graceful_timeout=15.0)
    worker = Worker(settings)

    @broker.subscriber(topics.payments, group_id=GROUP, ack_policy=AckPolicy.NACK_ON_ERROR,
                       auto_offset_reset="earliest", title=f"{GROUP}:payments")
    async def payments_handler(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, topics, msg, GROUP, payment_event_adapter, worker.on_payment)

    @broker.subscriber(topics.orders, group_id=GROUP, ack_policy=AckPolicy.NACK_ON_ERROR,
                       auto_offset_reset="earliest", title=f"{GROUP}:orders")
    async def orders_handler(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, topics, msg, GROUP, order_event_adapter, worker.on_order)

    return FastStream(broker, on_startup=[worker.start], after_shutdown=[worker.stop])


def asyncapi_app() -> FastStream:
    """For `faststream docs gen stock_worker.app:asyncapi_app --factory`."""
    return create_app(Settings())
