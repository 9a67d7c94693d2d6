"""Sending claimed outbox rows with the idempotent producer, and judging each failure:
`translated` is the one place a Kafka error is judged, `is_transient` says whether it counts
against the row (docs/events.md, "Producing: transactional outbox")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from hotdeal_core.errors import DependencyUnavailable, is_retriable
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.observability import tracing

# The idempotent producer's own state is out of step with the broker's: not the row's fault.
_PRODUCER_STATE_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerEpoch,
                          InvalidProducerIdMapping, ProducerFenced)

NOT_TRIED = object()  # a row left for the next batch (the producer is being replaced)


def is_outage(exc: BaseException) -> bool:
    """True if this error of a Kafka client says Kafka cannot serve now (but will)."""
    if isinstance(exc, _PRODUCER_STATE_ERRORS):
        return False  # the producer's own state: it is replaced, Kafka is fine
    if isinstance(exc, KafkaConnectionError | KafkaTimeoutError):
        return True
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    # Socket errors and timeouts (the builtin TimeoutError is asyncio's).
    return isinstance(exc, OSError)


def translated(exc: BaseException) -> BaseException:
    """`exc` as the rest of the code must see it: an outage becomes DependencyUnavailable."""
    if not is_outage(exc):
        return exc
    unavailable = DependencyUnavailable("kafka", f"kafka is unavailable: {describe(exc)}")
    unavailable.__cause__ = exc
    return unavailable


def is_transient(exc: BaseException) -> bool:
    """A failed send that says nothing about the row: retried without counting an attempt."""
    return is_retriable(exc) or isinstance(exc, (*_PRODUCER_STATE_ERRORS, asyncio.CancelledError))


def describe(exc: BaseException) -> str:
    text_ = str(exc)
    name = type(exc).__name__
    return (text_ if name in text_ else f"{name}: {text_}")[:2000]


async def send_all(producer: AIOKafkaProducer,
                   rows: Sequence[OutboxRow]) -> tuple[dict[int, object], bool]:
    """Each row's outcome (None: acknowledged, its exception, or NOT_TRIED), and whether
    the producer must be replaced before it sends anything else."""
    outcome: dict[int, object] = {}
    broken = False  # the producer must be replaced before it sends anything else
    # Rows that failed before: one at a time, each alone in its produce request.
    for r in (r for r in rows if r.attempts > 0):
        if broken:
            outcome[r.id] = NOT_TRIED
            continue
        (outcome[r.id],), broken = await _send(producer, [r])
    fresh = [r for r in rows if r.attempts == 0]
    if broken:
        outcome.update((r.id, NOT_TRIED) for r in fresh)
    elif fresh:
        errors, broken = await _send(producer, fresh)
        outcome.update(zip((r.id for r in fresh), errors, strict=True))
    return outcome, broken


async def _send(producer: AIOKafkaProducer,
                rows: Sequence[OutboxRow]) -> tuple[list[BaseException | None], bool]:
    """Send `rows` pipelined; each row's error (None: acknowledged), and whether the
    producer is now out of step with the broker."""
    sent: list[asyncio.Future[Any] | BaseException] = []
    # With tracing on, a span per row from its send to its ack, child of the row's context;
    # the record carries the span's context (off: the row's headers, if it has any).
    spans = [tracing.send_span(r.topic, r.key, r.headers) for r in rows]
    for r, span in zip(rows, spans, strict=True):
        try:  # send() itself refuses some rows (too large, buffer full): no future then
            sent.append(await producer.send(
                r.topic, value=_encode(r.payload), key=r.key.encode(),
                headers=tracing.kafka_headers(r.headers if span is None else span.headers)))
        except Exception as exc:  # noqa: BLE001 - recorded against the row
            sent.append(translated(exc))
    futures = [s for s in sent if isinstance(s, asyncio.Future)]
    acks = iter(await asyncio.gather(*futures, return_exceptions=True))
    errors: list[BaseException | None] = []
    broken = False
    for s, span in zip(sent, spans, strict=True):
        if isinstance(s, asyncio.Future):
            ack = next(acks)
            error = translated(ack) if isinstance(ack, BaseException) else None
            # The broker refused a request: the sequence numbers are out of step now.
            broken = broken or (error is not None and not is_transient(error))
        else:
            error = s
        broken = broken or isinstance(error, _PRODUCER_STATE_ERRORS)
        errors.append(error)
        if span is not None:
            span.end(error)
    return errors, broken


def _encode(payload: Any) -> bytes:
    if isinstance(payload, str):  # already JSON (a row written by a group commit)
        return payload.encode()
    return json.dumps(payload, separators=(",", ":")).encode()
