"""Composition root of the stock worker.

Consumes `payments.v1` and `order-requests.v1` in the consumer group `stock-worker` and
runs the expiry sweeper. It is the only writer of order status after creation.
"""

from __future__ import annotations

import logging
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from hotdeal_core.consumer import RetryPolicy, handle
from hotdeal_core.domain import CancelReason
from hotdeal_core.service import Duty, Service
from hotdeal_core.settings import Settings
from hotdeal_core.topics import Topics
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.settlement import cancel_order, confirm_order, expire_due_orders
from schemas.events import (
    OrderCancellationRequested,
    OrderConfirmationRequested,
    OrderRequest,
    PaymentEvent,
    PaymentFailed,
    PaymentSucceeded,
    order_request_adapter,
    payment_event_adapter,
)

GROUP = "stock-worker"


def create_app(settings: Settings) -> FastStream:
    topics = Topics(settings.kafka_topic_prefix)
    group = settings.kafka_topic_prefix + GROUP  # environments sharing a broker stay apart
    retry = RetryPolicy.from_settings(settings)  # a failing handler: bounded, then dead letter
    # Per-message logs at DEBUG: at flash-sale rates they would cost more than the work.
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id=group,
                         graceful_timeout=15.0, log_level=logging.DEBUG)

    async def expire(ctx: Context) -> int:
        """Cancel reservations past RESERVATION_TTL_SECONDS, in batches."""
        return await expire_due_orders(ctx, settings.sweep_batch_size)

    service = Service(settings, [Duty("expiry-sweeper", settings.sweep_interval_seconds, expire)])

    async def on_payment(event: PaymentEvent) -> None:
        if isinstance(event, PaymentSucceeded):
            await confirm_order(service.ctx, event.order_id, payment_id=event.payment_id,
                                amount=event.amount, event_id=event.event_id, consumer=GROUP)
        elif isinstance(event, PaymentFailed):
            await cancel_order(service.ctx, event.order_id, CancelReason.PAYMENT_FAILED,
                               event_id=event.event_id, consumer=GROUP)

    async def on_request(event: OrderRequest) -> None:
        if isinstance(event, OrderConfirmationRequested):
            await confirm_order(service.ctx, event.order_id, payment_id=None,
                                event_id=event.event_id, consumer=GROUP)
        elif isinstance(event, OrderCancellationRequested):
            await cancel_order(service.ctx, event.order_id, CancelReason.USER_CANCELLED,
                               event_id=event.event_id, consumer=GROUP)

    @broker.subscriber(topics.payments, group_id=group, ack_policy=AckPolicy.NACK_ON_ERROR,
                       auto_offset_reset="earliest", title=f"{GROUP}:payments")
    async def payments_handler(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, topics, msg, GROUP, payment_event_adapter, on_payment,
                     retry=retry)

    @broker.subscriber(topics.order_requests, group_id=group,
                       ack_policy=AckPolicy.NACK_ON_ERROR, auto_offset_reset="earliest",
                       title=f"{GROUP}:order-requests")
    async def requests_handler(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, topics, msg, GROUP, order_request_adapter, on_request,
                     retry=retry)

    return FastStream(broker, on_startup=[service.start], after_startup=[service.ready],
                      after_shutdown=[service.stop])


def asyncapi_app() -> FastStream:
    """For the AsyncAPI document (`python -m devtools.apidocs`, or
    `faststream docs gen stock_worker.app:asyncapi_app --factory`)."""
    return create_app(Settings())
