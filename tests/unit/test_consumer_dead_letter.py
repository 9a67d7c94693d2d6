"""Consumers parse strictly: what cannot be parsed is dead-lettered with its reason (not
dropped, not blocking); what parses is applied. A handler that keeps failing is retried a
bounded number of times, then dead-lettered; a dependency outage is redelivered instead.
In-memory broker (TestKafkaBroker)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from aiokafka.errors import KafkaConnectionError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from redis.exceptions import ResponseError as RedisResponseError

from hotdeal_core.errors import DependencyUnavailable, NotFound, is_retriable
from hotdeal_core.messaging.consumer import RetryPolicy, dead_letter_record, handle
from hotdeal_core.messaging.sending import translated
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import Settings
from schemas.events import PaymentEvent, PaymentSucceeded, payment_event_adapter
from tests.closed_ports import engine_on_a_closed_port, store_on_a_closed_port

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


# A handler that keeps failing: bounded retries, then the dead-letter topic. The backoffs are
# zero here; the defaults are in hotdeal_core.messaging.consumer.RetryPolicy.
FAST = RetryPolicy(max_attempts=3, backoff_base=0.0, outage_backoff=0.0)


def _failing_app(error: Exception, retry: RetryPolicy = FAST
                 ) -> tuple[KafkaBroker, list[PaymentEvent], list[PaymentEvent],
                            list[dict[str, Any]]]:
    """`poison` (the event that always fails) raises `error`; every other event applies."""
    broker = KafkaBroker()
    attempted: list[PaymentEvent] = []
    applied: list[PaymentEvent] = []
    letters: list[dict[str, Any]] = []

    async def apply(event: PaymentEvent) -> None:
        attempted.append(event)
        if isinstance(event, PaymentSucceeded) and event.payment_id == "poison":
            raise error
        applied.append(event)

    @broker.subscriber(TOPICS.payments, group_id="unit", ack_policy=AckPolicy.NACK_ON_ERROR)
    async def payments(body: Any, msg: KafkaMessage) -> None:
        await handle(broker, TOPICS, msg, "unit", payment_event_adapter, apply, retry=retry)

    @broker.subscriber(TOPICS.dead_letter, group_id="unit-dlq")
    async def dead(body: dict[str, Any]) -> None:
        letters.append(body)

    return broker, attempted, applied, letters


async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered() -> None:
    broker, attempted, applied, letters = _failing_app(ValueError("no such thing"))
    poison = PaymentSucceeded(order_id=uuid4(), payment_id="poison", amount=100)
    good = PaymentSucceeded(order_id=uuid4(), payment_id="p2", amount=100)
    async with TestKafkaBroker(broker) as br:
        # Returns normally: the offset is committed, the partition moves on.
        await br.publish(poison.model_dump_json().encode(), topic=TOPICS.payments,
                         key=b"k1", partition=0)
        await br.publish(good.model_dump_json().encode(), topic=TOPICS.payments,
                         key=b"k2", partition=0)
    assert attempted == [poison] * FAST.max_attempts + [good]
    assert applied == [good]
    assert len(letters) == 1
    letter = letters[0]
    assert letter["source_topic"] == TOPICS.payments and letter["key"] == "k1"
    assert letter["partition"] == 0 and letter["consumer"] == "unit"
    assert "ValueError" in letter["reason"] and "no such thing" in letter["reason"]
    assert f"{FAST.max_attempts} attempts" in letter["reason"]
    assert PaymentSucceeded.model_validate_json(letter["raw"]) == poison


async def test_the_attempts_come_from_the_setting() -> None:
    retry = RetryPolicy.from_settings(Settings(_env_file=None, handler_max_attempts=2))
    assert retry.max_attempts == 2
    broker, attempted, _, letters = _failing_app(
        RuntimeError("bug"), RetryPolicy(retry.max_attempts, backoff_base=0.0))
    poison = PaymentSucceeded(order_id=uuid4(), payment_id="poison", amount=100)
    async with TestKafkaBroker(broker) as br:
        await br.publish(poison.model_dump_json().encode(), topic=TOPICS.payments)
    assert len(attempted) == 2 and len(letters) == 1


async def _store_outage() -> BaseException:
    store, redis = store_on_a_closed_port()
    try:
        await store.key_used(7, "u-1", "k-1")
    except Exception as exc:  # noqa: BLE001 - what the store raised is the point
        return exc
    finally:
        await redis.aclose(close_connection_pool=True)
    raise AssertionError("a Redis on a closed port answered")


async def _engine_outage() -> BaseException:
    engine = engine_on_a_closed_port()
    try:
        async with engine.connect():
            pass
    except Exception as exc:  # noqa: BLE001
        return exc
    finally:
        await engine.dispose()
    raise AssertionError("a Postgres on a closed port answered")


async def _kafka_outage() -> BaseException:
    return translated(KafkaConnectionError("Unable to bootstrap from 127.0.0.1:59092"))


async def _use_case_outage() -> BaseException:
    return DependencyUnavailable("postgres")


# Outages as the adapters raise them: Redis and Postgres on a closed port, Kafka's sender.
OUTAGES = {"redis": _store_outage, "postgres": _engine_outage, "kafka": _kafka_outage,
           "raised-by-a-use-case": _use_case_outage}


@pytest.mark.parametrize("outage_of", OUTAGES.values(), ids=OUTAGES.keys())
async def test_a_dependency_outage_is_redelivered_never_dead_lettered(
        outage_of: Callable[[], Awaitable[BaseException]]) -> None:
    outage = await outage_of()
    assert isinstance(outage, Exception)
    broker, attempted, applied, letters = _failing_app(outage)
    poison = PaymentSucceeded(order_id=uuid4(), payment_id="poison", amount=100)
    async with TestKafkaBroker(broker) as br:
        # The handler raises: NACK_ON_ERROR seeks back and the message comes again.
        with pytest.raises(type(outage)):
            await br.publish(poison.model_dump_json().encode(), topic=TOPICS.payments)
    assert attempted == [poison]  # not retried in-process: the outage may last
    assert applied == [] and letters == []


def test_only_what_an_adapter_judged_an_outage_is_one() -> None:
    assert not is_retriable(ValueError("x"))
    assert not is_retriable(NotFound("order_not_found", "no such order"))
    # A third-party error no adapter translated: a bug of that adapter, not an outage.
    assert not is_retriable(RedisResponseError("WRONGTYPE Operation against a key"))
    assert not is_retriable(ConnectionRefusedError(111, "Connection refused"))


def test_a_wrapped_outage_is_still_an_outage() -> None:
    try:
        try:
            raise DependencyUnavailable("postgres")
        except DependencyUnavailable as cause:
            raise RuntimeError("flush failed") from cause
    except RuntimeError as exc:
        assert is_retriable(exc)


async def test_a_dead_letter_kafka_refuses_is_an_outage_redelivered() -> None:
    async def publish(*_: object, **__: object) -> None:
        raise KafkaConnectionError("Unable to bootstrap from 127.0.0.1:59092")
    broker = SimpleNamespace(publish=publish)
    record = SimpleNamespace(topic=TOPICS.payments, partition=0, offset=5, key=b"k", value=b"x")
    with pytest.raises(DependencyUnavailable) as raised:
        await dead_letter_record(broker, TOPICS, record, "unit", "bad")  # type: ignore[arg-type]
    assert raised.value.code == "kafka_unavailable" and is_retriable(raised.value)
