"""Batch consumption (`handle_batch`): one apply and one commit per batch, in offset order;
a poison message inside a batch is found by splitting and dead-lettered alone while the
others are applied; an outage anywhere rewinds the whole batch for redelivery. In-memory
broker (TestKafkaBroker), or a hand-made batch where the consumer's seeks and commits
are what is checked."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.message import KafkaAckableMessage
from redis.exceptions import ConnectionError as RedisConnectionError

from hotdeal_core.domain import CancelReason
from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.messaging.consumer import RetryPolicy, handle_batch
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.stock.redis_errors import translated
from hotdeal_core.usecases.settlement_plan import Cancel, Confirm
from schemas.events import (
    OrderCancellationRequested,
    OrderConfirmationRequested,
    PaymentEvent,
    PaymentFailed,
    PaymentSucceeded,
    RefundRequested,
    payment_event_adapter,
)
from stock_worker.app import payment_commands, raw_bodies, request_commands

TOPICS = Topics("unit-batch.")
FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, outage_backoff=0.0)


def _paid(payment_id: str) -> PaymentSucceeded:
    return PaymentSucceeded(order_id=uuid4(), payment_id=payment_id, amount=100)


class _App:
    """A batch subscriber like the stock worker's; `apply` fails on the payment ids it is
    told to (with `error`), and records every call."""

    def __init__(self, fail_on: set[str] | None = None,
                 error: Exception | None = None) -> None:
        self.broker = KafkaBroker()
        self.calls: list[list[PaymentEvent]] = []
        self.applied: list[PaymentEvent] = []
        self.letters: list[dict[str, Any]] = []
        fail_on, error = fail_on or set(), error or ValueError("cannot apply")

        async def apply(events: list[PaymentEvent]) -> None:
            self.calls.append(list(events))
            if any(getattr(e, "payment_id", None) in fail_on for e in events):
                raise error
            self.applied.extend(events)

        @self.broker.subscriber(TOPICS.payments, group_id="unit", batch=True,
                                max_records=100, ack_policy=AckPolicy.MANUAL,
                                decoder=raw_bodies)
        async def payments(body: Any, msg: KafkaMessage) -> None:
            await handle_batch(self.broker, TOPICS, msg, "unit", payment_event_adapter, apply,
                               retry=FAST)

        @self.broker.subscriber(TOPICS.dead_letter, group_id="unit-dlq")
        async def dead(body: dict[str, Any]) -> None:
            self.letters.append(body)


async def test_a_batch_is_applied_with_one_call_in_the_order_it_was_written() -> None:
    app = _App()
    events = [_paid(f"p{i}") for i in range(6)]
    async with TestKafkaBroker(app.broker) as br:
        await br.publish_batch(*(e.model_dump_json().encode() for e in events),
                               topic=TOPICS.payments)
    assert app.calls == [events]
    assert app.letters == []


async def test_a_poison_message_inside_a_batch_is_dead_lettered_and_the_others_applied(
        ) -> None:
    app = _App(fail_on={"poison"})
    events = [_paid("p0"), _paid("p1"), _paid("poison"), _paid("p3"), _paid("p4")]
    async with TestKafkaBroker(app.broker) as br:
        # Returns normally: the batch is committed, the partition moves on.
        await br.publish_batch(*(e.model_dump_json().encode() for e in events),
                               topic=TOPICS.payments)
    assert app.applied == [e for e in events if e.payment_id != "poison"]
    # Alone, the poison gets the bounded retries of a single message.
    assert [c for c in app.calls if c == [events[2]]] == [[events[2]]] * FAST.max_attempts
    assert len(app.letters) == 1
    letter = app.letters[0]
    assert PaymentSucceeded.model_validate_json(letter["raw"]) == events[2]
    assert "ValueError" in letter["reason"] and f"{FAST.max_attempts} attempts" in letter[
        "reason"]
    assert letter["source_topic"] == TOPICS.payments and letter["consumer"] == "unit"


async def test_unparseable_records_of_a_batch_are_dead_lettered_alone() -> None:
    app = _App()
    good = [_paid("p0"), _paid("p1")]
    async with TestKafkaBroker(app.broker) as br:
        await br.publish_batch(good[0].model_dump_json().encode(), b"{not json",
                               b'{"type": "PaymentSucceeded", "order_id": "nope"}',
                               good[1].model_dump_json().encode(), topic=TOPICS.payments)
    assert app.calls == [good]  # the valid ones, still in one call
    assert sorted(letter["raw"] for letter in app.letters) == [
        '{"type": "PaymentSucceeded", "order_id": "nope"}', "{not json"]
    assert all("unparseable" in letter["reason"] for letter in app.letters)


class _Consumer:
    """Records what handle_batch asks of the Kafka consumer."""

    def __init__(self) -> None:
        self.commits = 0
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def commit(self) -> None:
        self.commits += 1

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))


def _batch(events: list[tuple[int, int, PaymentEvent]]) -> tuple[KafkaAckableMessage,
                                                                   _Consumer]:
    """A fetched batch as FastStream hands it: (partition, offset, event) records."""
    records = tuple(ConsumerRecord(TOPICS.payments, partition, offset, 0, 0,
                                   str(e.order_id).encode(), e.model_dump_json().encode(),
                                   None, 0, 0, [])
                    for partition, offset, e in events)
    consumer = _Consumer()
    msg = KafkaAckableMessage(raw_message=records, body=[r.value for r in records],
                              consumer=consumer)
    return msg, consumer


async def test_records_are_applied_in_offset_order_per_partition_and_committed_once(
        ) -> None:
    a, b, c, d = (_paid(f"p{i}") for i in range(4))
    msg, consumer = _batch([(1, 7, c), (1, 8, d), (0, 3, a), (0, 4, b)])
    calls: list[list[PaymentEvent]] = []

    async def apply(events: list[PaymentEvent]) -> None:
        calls.append(events)
    await handle_batch(KafkaBroker(), TOPICS, msg, "unit", payment_event_adapter, apply)
    assert calls == [[a, b, c, d]]
    assert (consumer.commits, consumer.seeks) == (1, [])


@pytest.mark.parametrize("outage", [
    DependencyUnavailable("postgres"),
    # As the stock store raises a refused connection (hotdeal_core.stock.redis_errors).
    translated(RedisConnectionError("Error 111 connecting"))], ids=["postgres", "redis"])
async def test_a_batch_with_an_outage_is_rewound_whole_for_redelivery(outage: Exception
                                                                      ) -> None:
    msg, consumer = _batch([(0, 10, _paid("p0")), (0, 11, _paid("p1")),
                            (2, 5, _paid("p2")), (2, 6, _paid("p3"))])
    calls: list[list[PaymentEvent]] = []

    async def apply(events: list[PaymentEvent]) -> None:
        calls.append(events)
        raise outage
    with pytest.raises(type(outage)):
        await handle_batch(KafkaBroker(), TOPICS, msg, "unit", payment_event_adapter, apply,
                           retry=FAST)
    assert len(calls) == 1  # neither split nor retried: the outage may last
    assert consumer.commits == 0
    assert sorted(consumer.seeks) == [(TopicPartition(TOPICS.payments, 0), 10),
                                      (TopicPartition(TOPICS.payments, 2), 5)]


async def test_an_outage_met_after_a_split_still_redelivers_the_whole_batch() -> None:
    events = [_paid("p0"), _paid("p1"), _paid("bad"), _paid("down")]
    msg, consumer = _batch([(0, 20 + i, e) for i, e in enumerate(events)])
    applied: list[PaymentEvent] = []

    async def apply(batch: list[PaymentEvent]) -> None:
        ids = {e.payment_id for e in batch if isinstance(e, PaymentSucceeded)}
        if "down" in ids and len(batch) < len(events):
            raise DependencyUnavailable("redis")
        if "bad" in ids:
            raise ValueError("bad")
        applied.extend(batch)
    with pytest.raises(DependencyUnavailable):
        await handle_batch(KafkaBroker(), TOPICS, msg, "unit", payment_event_adapter, apply,
                           retry=FAST)
    # The first half was applied (the redelivery skips it: handlers are idempotent); the
    # batch is rewound to its first record, nothing is committed or dead-lettered.
    assert applied == events[:2]
    assert (consumer.commits, consumer.seeks) == (0, [(TopicPartition(TOPICS.payments, 0),
                                                       20)])


def test_the_stock_worker_turns_events_into_settlement_commands() -> None:
    paid, failed = _paid("p1"), PaymentFailed(order_id=uuid4(), payment_id="p2", amount=5)
    refund = RefundRequested(order_id=uuid4(), payment_id="p3", amount=5, reason="x")
    assert payment_commands([paid, refund, failed]) == [
        Confirm(paid.order_id, "p1", 100, paid.event_id),
        Cancel(failed.order_id, CancelReason.PAYMENT_FAILED, failed.event_id)]
    confirm = OrderConfirmationRequested(order_id=uuid4())
    cancel = OrderCancellationRequested(order_id=uuid4())
    assert request_commands([cancel, confirm]) == [
        Cancel(cancel.order_id, CancelReason.USER_CANCELLED, cancel.event_id),
        Confirm(confirm.order_id, None, None, confirm.event_id)]
