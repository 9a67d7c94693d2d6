"""Topics are created explicitly, with enough partitions to scale consumers out.

Left to auto-creation a topic can end up with a single partition, and a single partition
means one busy consumer per group whatever the number of replicas. Every process calls
`ensure_topics` at start-up: missing topics are created, smaller ones grown.
"""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import InvalidPartitionsError

log = logging.getLogger(__name__)

_ALREADY_EXISTS = 36


async def ensure_topics(bootstrap_servers: str, names: list[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()}
        missing = [n for n in names if n not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing])
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, _ALREADY_EXISTS):
                    raise RuntimeError(f"could not create topic {name}: error {code}")
            log.info("created topics %s with %d partitions", missing, partitions)
        grow = {n: NewPartitions(partitions) for n in names
                if 0 < existing.get(n, partitions) < partitions}
        if grow:
            try:
                await admin.create_partitions(grow)
                log.warning("grew topics %s to %d partitions", sorted(grow), partitions)
            except InvalidPartitionsError:  # grown meanwhile (our metadata was stale)
                log.info("topics %s already have enough partitions", sorted(grow))
    finally:
        await admin.close()
