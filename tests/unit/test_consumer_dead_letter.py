"""Consumers parse strictly: what cannot be parsed is dead-lettered with its reason (not
dropped, not blocking); what parses is applied. In-memory broker (TestKafkaBroker)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from hotdeal_core.consumer import handle
from hotdeal_core.topics import Topics
from schemas.events import PaymentEvent, PaymentSucceeded, payment_event_adapter

TOPICS = Topics("unit.")


def _app() -> tuple[KafkaBroker, list[PaymentEvent], list[dict[str, Any]]]:
    broker = KafkaBroker()
    applied: list[PaymentEvent] = []
    letters: list[dict[str, Any]] = []

    async def apply(event: PaymentEvent) -> None:
        applied.append(event)

    @broker.subscriber(TOPICS.payments, group_id="unit", ack_policy=AckPolicy.NACK_ON_ERROR)
    async def payments(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, TOPICS, msg, "unit", payment_event_adapter, apply)

    @broker.subscriber(TOPICS.dead_letter, group_id="unit-dlq")
    async def dead(body: dict[str, Any]) -> None:
        letters.append(body)

    return broker, applied, letters


async def test_unparseable_message_goes_to_the_dead_letter_topic_with_its_reason() -> None:
    broker, applied, letters = _app()
    async with TestKafkaBroker(broker) as br:
        await br.publish(b"{not json", topic=TOPICS.payments, key=b"k1")
        await br.publish({"type": "PaymentSucceeded", "order_id": "nope"}, topic=TOPICS.payments)
    assert applied == []
    assert len(letters) == 2
    assert letters[0]["source_topic"] == TOPICS.payments and letters[0]["key"] == "k1"
    assert "unparseable" in letters[0]["reason"] and letters[0]["raw"] == "{not json"
    assert "order_id" in letters[1]["reason"]


async def test_a_poison_message_does_not_block_the_next_one() -> None:
    broker, applied, letters = _app()
    good = PaymentSucceeded(order_id=uuid4(), payment_id="p1", amount=100)
    async with TestKafkaBroker(broker) as br:
        await br.publish(b"garbage", topic=TOPICS.payments)
        await br.publish(good.model_dump_json().encode(), topic=TOPICS.payments)
    assert applied == [good] and len(letters) == 1
