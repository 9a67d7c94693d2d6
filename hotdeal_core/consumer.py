"""What every Kafka subscriber shares: parse strictly, dead-letter what cannot be parsed,
back off before a retriable failure is redelivered.

Subscribers use `AckPolicy.NACK_ON_ERROR`: the offset is committed only after the handler
returns; an exception seeks back so the message is delivered again (at-least-once). A
message that cannot be parsed never will be: it goes to the dead-letter topic with the
reason, and only then is its offset committed, so it is neither lost nor blocking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from pydantic import TypeAdapter, ValidationError

from hotdeal_core.topics import Topics
from schemas.events import DeadLetter

log = logging.getLogger(__name__)
E = TypeVar("E")

RETRY_BACKOFF_SECONDS = 1.0


async def dead_letter(broker: KafkaBroker, topics: Topics, msg: KafkaMessage, consumer: str,
                      reason: str) -> None:
    raw = msg.raw_message
    record: Any = raw[0] if isinstance(raw, tuple) else raw
    key = record.key.decode(errors="replace") if record.key else None
    letter = DeadLetter(source_topic=record.topic, partition=record.partition,
                        offset=record.offset, key=key, reason=reason[:2000],
                        raw=msg.body.decode(errors="replace")[:100_000], consumer=consumer)
    await broker.publish(letter.model_dump(mode="json"), topic=topics.dead_letter,
                         key=key.encode() if key else None)
    log.error("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset,
              reason[:200])


async def handle(broker: KafkaBroker, topics: Topics, msg: KafkaMessage, consumer: str,
                 adapter: TypeAdapter[E], apply: Callable[[E], Awaitable[None]]) -> None:
    try:
        event = adapter.validate_json(msg.body)
    except ValidationError as exc:
        await dead_letter(broker, topics, msg, consumer, f"unparseable event: {exc}")
        return
    try:
        await apply(event)
    except Exception:
        log.exception("%s: handler failed; the message will be redelivered", consumer)
        await asyncio.sleep(RETRY_BACKOFF_SECONDS)
        raise
