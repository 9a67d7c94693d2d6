"""A batch subscriber on the real Kafka broker (`batch=True`, `AckPolicy.MANUAL`, the
stock worker's settings): a batch that met an outage is fetched again whole, and the
offsets are committed once it is applied."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.messaging.admin import ensure_topics
from hotdeal_core.messaging.consumer import RetryPolicy, handle_batch
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import Settings
from schemas.events import PaymentEvent, PaymentSucceeded, payment_event_adapter
from stock_worker.app import raw_bodies

FAST = RetryPolicy(max_attempts=2, backoff_base=0.0, outage_backoff=0.0)
PARTITIONS = 2


async def _committed_everything(servers: str, group: str, topic: str) -> bool:
    """Whether `group` committed every partition of `topic` up to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(parts)
        committed = {tp: await consumer.committed(tp) for tp in parts}
        return all(committed[tp] == ends[tp] for tp in parts)
    finally:
        await consumer.stop()


async def test_a_batch_that_met_an_outage_is_fetched_again_whole(settings: Settings) -> None:
    servers = settings.kafka_bootstrap_servers
    topics = Topics(settings.kafka_topic_prefix)
    topic = f"{settings.kafka_topic_prefix}batch-redelivery.{uuid.uuid4().hex[:6]}"
    group = f"{topic}.group"
    await ensure_topics(servers, [topic, topics.dead_letter], PARTITIONS)
    events = [PaymentSucceeded(order_id=uuid.uuid4(), payment_id=f"p{i}", amount=1)
              for i in range(40)]
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=50)
    await producer.start()
    try:  # all in Kafka before the consumer starts: they come in one or a few batches
        await asyncio.gather(*[await producer.send(topic, e.model_dump_json().encode(),
                                                   key=str(e.order_id).encode())
                               for e in events])
    finally:
        await producer.stop()

    calls: list[list[PaymentEvent]] = []
    applied: list[PaymentEvent] = []
    done = asyncio.Event()

    async def apply(batch: list[PaymentEvent]) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise DependencyUnavailable("postgres")  # the first batch meets an outage
        applied.extend(batch)

    broker = KafkaBroker(servers)

    @broker.subscriber(topic, group_id=group, batch=True, max_records=100,
                       batch_timeout_ms=20, ack_policy=AckPolicy.MANUAL, decoder=raw_bodies,
                       auto_offset_reset="earliest")
    async def handler(body: Any, msg: KafkaMessage) -> None:
        await handle_batch(broker, topics, msg, "it", payment_event_adapter, apply,
                           retry=FAST)
        if {e.event_id for e in applied} >= {e.event_id for e in events}:
            done.set()  # after handle_batch returned: the batch is committed

    async with broker:
        await broker.start()
        await asyncio.wait_for(done.wait(), timeout=60)
    first = {e.event_id for e in calls[0]}
    assert first <= {e.event_id for e in applied}  # every event of it came again
    # Applied once each (nothing else failed), in offset order within each partition.
    assert sorted(e.payment_id for e in applied) == sorted(e.payment_id for e in events)
    assert await _committed_everything(servers, group, topic)
