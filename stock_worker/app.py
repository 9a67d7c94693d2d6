"""Composition root of the stock worker: `payments.v1` and `order-requests.v1` in batches
(docs/events.md) and the expiry sweeper; the only writer of order status after creation.
Why replicas are safe: docs/architecture.md, "Consumer replicas"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faststream import AckPolicy
from faststream.asgi import AsgiFastStream
from faststream.kafka.annotations import KafkaMessage
from faststream.message import StreamMessage

from hotdeal_core.bootstrap.consumer_process import (
    ConsumerProcess,
    Duty,
    consumer_broker,
    subscription,
)
from hotdeal_core.domain import CancelReason, OrderStatus
from hotdeal_core.messaging.consumer import RetryPolicy, handle_batch
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability.metrics import observe_settled
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.settlement import GROUP, expire_due_orders, settle_batch
from hotdeal_core.usecases.settlement_plan import Cancel, Command, Confirm, SettleResult
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

# Batches (SETTLE_BATCH_MAX_RECORDS, one transaction and one commit each) are whatever the
# consumer has fetched when the previous one is done: no waiting to fill them. An idle
# consumer waits SETTLE_BATCH_TIMEOUT_MS for records before polling again (FastStream then
# pauses as long again): the most a lone message waits on top of its fetch.

# SIGTERM: in-flight batches get this long to finish (compose's stop_grace_period is longer).
GRACEFUL_TIMEOUT = 15.0


def payment_commands(events: Sequence[PaymentEvent]) -> list[Command]:
    """payments.v1 -> settlement commands (RefundRequested is ours, for the provider)."""
    commands: list[Command] = []
    for e in events:
        if isinstance(e, PaymentSucceeded):
            commands.append(Confirm(e.order_id, e.payment_id, e.amount, e.event_id))
        elif isinstance(e, PaymentFailed):
            commands.append(Cancel(e.order_id, CancelReason.PAYMENT_FAILED, e.event_id))
    return commands


def observe_settlements(events: Sequence[PaymentEvent], results: Sequence[SettleResult],
                        ) -> None:
    """hotdeal_settlement_duration_seconds for each payment this batch confirmed (the
    results follow `payment_commands(events)`: one per succeeded or failed payment)."""
    settling = [e for e in events if isinstance(e, PaymentSucceeded | PaymentFailed)]
    for event, result in zip(settling, results, strict=True):
        if isinstance(event, PaymentSucceeded) and result.outcome == "applied" \
                and result.status == OrderStatus.CONFIRMED:
            observe_settled(event.occurred_at)


def request_commands(events: Sequence[OrderRequest]) -> list[Command]:
    """order-requests.v1 -> settlement commands."""
    commands: list[Command] = []
    for e in events:
        if isinstance(e, OrderConfirmationRequested):
            commands.append(Confirm(e.order_id, None, None, e.event_id))
        elif isinstance(e, OrderCancellationRequested):
            commands.append(Cancel(e.order_id, CancelReason.USER_CANCELLED, e.event_id))
    return commands


async def raw_bodies(msg: StreamMessage[Any]) -> Any:
    """No decoding by FastStream: `handle_batch` parses each record itself, so that one
    malformed record is dead-lettered alone instead of failing the batch's decoding."""
    return msg.body


def create_app(settings: Settings) -> AsgiFastStream:
    broker = consumer_broker(settings, GROUP, GRACEFUL_TIMEOUT)
    topics = Topics(settings.kafka_topic_prefix)
    retry = RetryPolicy.from_settings(settings)  # a failing handler: bounded, then dead letter

    async def expire(ctx: Context) -> int:
        """Cancel reservations past RESERVATION_TTL_SECONDS, in batches."""
        return await expire_due_orders(ctx, settings.sweep_batch_size)

    process = ConsumerProcess(settings, [Duty("expiry-sweeper",
                                              settings.sweep_interval_seconds, expire)],
                              broker=broker)

    async def on_payments(events: list[PaymentEvent]) -> None:
        results = await settle_batch(process.ctx, payment_commands(events), consumer=GROUP)
        observe_settlements(events, results)

    async def on_requests(events: list[OrderRequest]) -> None:
        await settle_batch(process.ctx, request_commands(events), consumer=GROUP)

    # Batches: one transaction and one offset commit per batch; the offsets are committed
    # only after the batch is applied (MANUAL: handle_batch acks, or rewinds and raises).
    @broker.subscriber(topics.payments, batch=True,
                       max_records=settings.settle_batch_max_records,
                       batch_timeout_ms=settings.settle_batch_timeout_ms,
                       ack_policy=AckPolicy.MANUAL, decoder=raw_bodies,
                       **subscription(settings, GROUP, "payments"))
    async def payments_handler(body: Any, msg: KafkaMessage) -> None:
        await handle_batch(broker, topics, msg, GROUP, payment_event_adapter, on_payments,
                           retry=retry)

    @broker.subscriber(topics.order_requests, batch=True,
                       max_records=settings.settle_batch_max_records,
                       batch_timeout_ms=settings.settle_batch_timeout_ms,
                       ack_policy=AckPolicy.MANUAL, decoder=raw_bodies,
                       **subscription(settings, GROUP, "order-requests"))
    async def requests_handler(body: Any, msg: KafkaMessage) -> None:
        await handle_batch(broker, topics, msg, GROUP, order_request_adapter, on_requests,
                           retry=retry)

    return process.app()


def asyncapi_app() -> AsgiFastStream:
    """For the AsyncAPI document (`python -m devtools.apidocs`, or
    `faststream docs gen stock_worker.app:asyncapi_app --factory`)."""
    return create_app(Settings())
