"""What every Kafka subscriber shares: parse strictly, dead-letter what cannot be parsed,
retry a failing handler a bounded number of times, back off while a dependency is down.
Which failure gets what: docs/events.md, "Consuming: at-least-once, idempotent handlers"."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from pydantic import TypeAdapter, ValidationError

from hotdeal_core.errors import is_retriable
from hotdeal_core.messaging import sending
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability import tracing
from hotdeal_core.observability.metrics import DEAD_LETTERS
from hotdeal_core.settings import Settings
from schemas.events import DeadLetter

log = logging.getLogger(__name__)
E = TypeVar("E")


@dataclass(frozen=True)
class RetryPolicy:
    """How `handle` retries. The defaults are production's; tests pass zero backoffs."""

    max_attempts: int = 5            # in all, the first one included (HANDLER_MAX_ATTEMPTS)
    backoff_base: float = 0.1        # before the 2nd attempt; doubled each time...
    backoff_cap: float = 2.0         # ...up to this
    outage_backoff: float = 1.0      # before raising for redelivery on a dependency outage

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max_attempts=settings.handler_max_attempts)

    def backoff(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


def _reason(exc: BaseException, attempts: int) -> str:
    return f"handler failed after {attempts} attempts: {type(exc).__name__}: {exc}"


async def dead_letter(broker: KafkaBroker, topics: Topics, msg: KafkaMessage, consumer: str,
                      reason: str) -> None:
    raw = msg.raw_message
    record: Any = raw[0] if isinstance(raw, tuple) else raw
    await dead_letter_record(broker, topics, record, consumer, reason, msg.body)


async def dead_letter_record(broker: KafkaBroker, topics: Topics, record: Any, consumer: str,
                             reason: str, body: bytes | None = None) -> None:
    """Write one consumed record (an aiokafka ConsumerRecord) to the dead-letter topic."""
    key = record.key.decode(errors="replace") if record.key else None
    raw = body if body is not None else (record.value or b"")
    letter = DeadLetter(source_topic=record.topic, partition=record.partition,
                        offset=record.offset, key=key, reason=reason[:2000],
                        raw=raw.decode(errors="replace")[:100_000], consumer=consumer)
    try:
        await broker.publish(letter.model_dump(mode="json"), topic=topics.dead_letter,
                             key=key.encode() if key else None)
    except Exception as exc:
        new = sending.translated(exc)  # Kafka down: the message comes again, after a pause
        if new is exc:
            raise
        raise new from exc
    DEAD_LETTERS.labels(consumer, record.topic).inc()
    log.error("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset,
              reason[:200])


async def handle(broker: KafkaBroker, topics: Topics, msg: KafkaMessage, consumer: str,
                 adapter: TypeAdapter[E], apply: Callable[[E], Awaitable[None]], *,
                 retry: RetryPolicy = RetryPolicy()) -> None:
    """Parse `msg` and apply it; see the module docstring for what happens on failure.
    Returns normally when the offset may be committed, raises when the message must come
    again."""
    try:
        event = adapter.validate_json(msg.body)
    except ValidationError as exc:
        await dead_letter(broker, topics, msg, consumer, f"unparseable event: {exc}")
        return
    attempt = 0
    while True:
        attempt += 1
        try:
            await apply(event)
            return
        except Exception as exc:
            if is_retriable(exc):
                log.exception("%s: a dependency is unavailable; the message will be "
                              "redelivered", consumer)
                await asyncio.sleep(retry.outage_backoff)
                raise
            if attempt >= retry.max_attempts:
                log.exception("%s: handler failed %d times; dead-lettering the message",
                              consumer, attempt)
                # If this publish fails (Kafka down), it raises: the message is redelivered
                # and tried again from the first attempt, never dropped.
                await dead_letter(broker, topics, msg, consumer, _reason(exc, attempt))
                return
            log.warning("%s: handler failed (attempt %d of %d): %s: %s; retrying", consumer,
                        attempt, retry.max_attempts, type(exc).__name__, exc)
        await asyncio.sleep(retry.backoff(attempt))


async def handle_batch(broker: KafkaBroker, topics: Topics, msg: KafkaMessage, consumer: str,
                       adapter: TypeAdapter[E], apply: Callable[[list[E]], Awaitable[None]],
                       *, retry: RetryPolicy = RetryPolicy()) -> None:
    """`handle` for a batch subscriber (`AckPolicy.MANUAL`): one apply and one offset commit per
    batch; a failing batch is split until the failing message is alone; anything that escapes
    rewinds the whole batch (docs/events.md, "Batches")."""
    raw: Any = msg.raw_message  # a tuple of records (a list in TestKafkaBroker)
    records: tuple[Any, ...] = tuple(raw) if isinstance(raw, tuple | list) else (raw,)
    # Traced: the batch's span links to its records' traces, and each record's trace gets
    # its own settlement span (FastStream's middleware gives a batch a trace of its own).
    carriers = [tracing.record_headers(r) for r in records] if tracing.enabled() else []
    start = time.time_ns()
    try:
        with tracing.batch_span(f"{consumer} batch", tracing.links_of(carriers),
                                len(records)):
            parsed: list[tuple[Any, E]] = []
            # Stable: records of one partition keep their offset order (and so do the
            # events of one order, which share a key and therefore a partition).
            for record in sorted(records, key=lambda r: (r.topic, r.partition, r.offset)):
                try:
                    parsed.append((record, adapter.validate_json(record.value or b"")))
                except ValidationError as exc:
                    await dead_letter_record(broker, topics, record, consumer,
                                             f"unparseable event: {exc}")
            await _apply_split(broker, topics, consumer, parsed, apply, retry)
            tracing.record_spans(f"{consumer} settle", carriers, start,
                                 {"messaging.consumer.group.name": consumer})
        await msg.ack()  # one commit for the batch
    except Exception as exc:
        _rewind(msg, records)
        if is_retriable(exc):
            log.exception("%s: a dependency is unavailable; the batch of %d will be "
                          "redelivered", consumer, len(records))
            await asyncio.sleep(retry.outage_backoff)
        raise


async def _apply_split(broker: KafkaBroker, topics: Topics, consumer: str,
                       items: list[tuple[Any, E]], apply: Callable[[list[E]], Awaitable[None]],
                       retry: RetryPolicy) -> None:
    if len(items) <= 1:
        for record, event in items:
            await _apply_alone(broker, topics, consumer, record, event, apply, retry)
        return
    try:
        await apply([event for _, event in items])
        return
    except Exception as exc:
        if is_retriable(exc):
            raise
        log.warning("%s: a batch of %d failed (%s: %s); splitting it", consumer, len(items),
                    type(exc).__name__, exc)
    half = len(items) // 2  # halves in order: a key's events stay in offset order
    await _apply_split(broker, topics, consumer, items[:half], apply, retry)
    await _apply_split(broker, topics, consumer, items[half:], apply, retry)


async def _apply_alone(broker: KafkaBroker, topics: Topics, consumer: str, record: Any,
                       event: E, apply: Callable[[list[E]], Awaitable[None]],
                       retry: RetryPolicy) -> None:
    attempt = 0
    while True:
        attempt += 1
        try:
            await apply([event])
            return
        except Exception as exc:
            if is_retriable(exc):
                raise
            if attempt >= retry.max_attempts:
                log.exception("%s: handler failed %d times; dead-lettering the message",
                              consumer, attempt)
                await dead_letter_record(broker, topics, record, consumer,
                                         _reason(exc, attempt))
                return
            log.warning("%s: handler failed (attempt %d of %d): %s: %s; retrying", consumer,
                        attempt, retry.max_attempts, type(exc).__name__, exc)
        await asyncio.sleep(retry.backoff(attempt))


def _rewind(msg: KafkaMessage, records: tuple[Any, ...]) -> None:
    """Seek each partition of the batch back to its first record: the consumer's position
    has moved past the batch, so without this the next fetch would skip it."""
    first: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        first[tp] = min(r.offset, first.get(tp, r.offset))
    for tp, offset in first.items():
        try:
            msg.consumer.seek(tp, offset)
        except IllegalStateError:  # revoked meanwhile: its new owner starts from the commit
            log.info("%s no longer assigned; not rewound", tp)
