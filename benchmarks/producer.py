"""The outbox relay's Kafka producer settings, measured: events/s and CPU per event.

    .venv/bin/python -m benchmarks.producer [--events 20000]

Publishes `--events` OrderPlaced-sized messages (about 300 bytes, keyed by a random order
id, 6 partitions) the way the relay does (send() each, then gather the futures, in batches
of 500) with acks=all and idempotence, for each combination of linger_ms, max_batch_size
and compression_type; prints events/s and the process CPU per event (this process only:
the broker's own cost is not counted). A fresh topic per run, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hotdeal_core.settings import KAFKA_PORT

BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{KAFKA_PORT}")
VARIANTS = [  # (linger_ms, max_batch_size, compression)
    (0, 16384, None), (2, 16384, None), (10, 16384, None), (2, 262144, None),
    (10, 262144, None), (2, 16384, "gzip"), (10, 262144, "gzip")]


def payload() -> bytes:
    return json.dumps({"type": "OrderPlaced", "event_id": str(uuid.uuid4()),
                       "order_id": str(uuid.uuid4()), "product_id": 12345,
                       "hot_deal_id": 678, "user_id": "buyer-123456", "quantity": 1,
                       "unit_price": 49900, "expires_at": "2026-12-01T15:00:00+00:00",
                       "occurred_at": "2026-12-01T14:50:00+00:00", "version": 1}).encode()


async def run_variant(topic: str, events: int, linger: int, batch: int,
                      compression: str | None) -> tuple[float, float]:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all",
                                enable_idempotence=True, linger_ms=linger,
                                max_batch_size=batch, compression_type=compression)
    await producer.start()
    try:
        body = payload()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for start in range(0, events, 500):
            futures = [await producer.send(topic, body, key=uuid.uuid4().bytes)
                       for _ in range(min(500, events - start))]
            await asyncio.gather(*futures)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await producer.stop()
    return events / wall, cpu / events * 1e6


async def main(events: int) -> None:
    topic = f"bench.producer.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
        await run_variant(topic, 2000, 2, 16384, None)  # warm-up
        print(f"{events} events of {len(payload())} bytes, acks=all, idempotent, 6 partitions")
        print(f"{'linger_ms':>9} | {'max_batch':>9} | {'compression':>11} | {'events/s':>9} | "
              f"{'client CPU us/event':>19}")
        for linger, batch, compression in VARIANTS:
            rate, cpu = await run_variant(topic, events, linger, batch, compression)
            print(f"{linger:>9} | {batch:>9} | {compression or 'none':>11} | {rate:>9,.0f} | "
                  f"{cpu:>19.1f}")
        await admin.delete_topics([topic])
    finally:
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    asyncio.run(main(parser.parse_args().events))
