"""Topics are created explicitly, with enough partitions to scale consumers out.

Left to auto-creation a topic can end up with a single partition, and a single partition
means one busy consumer per group whatever the number of replicas. Every process calls
`ensure_topics` at start-up: missing topics are created, smaller ones grown.

Replication: KAFKA_REPLICATION_FACTOR, or (-1, the default) the brokers' own
`default.replication.factor`: 1 on the one-node `make infra-up`, 3 on the 3-node cluster of
scripts/cluster/kafka.sh, which also requires 2 in-sync replicas per write
(`min.insync.replicas=2`, with the producers' acks=all). aiokafka's CreateTopics request
(v0-v3) cannot ask the broker to apply its default itself (that is v4+), so the default is
read from a broker's config. An existing topic keeps its replication factor (changing it is
a partition reassignment, an operator's job): a smaller one than wanted is logged.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidPartitionsError

log = logging.getLogger(__name__)

_ALREADY_EXISTS = 36
BROKER_DEFAULT = -1  # KAFKA_REPLICATION_FACTOR: use the brokers' default.replication.factor


async def broker_default_replication(admin: AIOKafkaAdminClient) -> int:
    """`default.replication.factor` of one of the brokers (they share it in a sane cluster)."""
    brokers = (await admin.describe_cluster())["brokers"]
    node = str(brokers[0]["node_id"])
    responses = await admin.describe_configs([ConfigResource(
        ConfigResourceType.BROKER, node, {"default.replication.factor": None})])
    for resource in responses[0].to_object()["resources"]:
        for entry in resource["config_entries"]:
            if entry["config_names"] == "default.replication.factor":
                return int(entry["config_value"])
    raise RuntimeError(f"broker {node} did not report default.replication.factor")


def server_list(bootstrap_servers: str) -> list[str]:
    """KAFKA_BOOTSTRAP_SERVERS as a list: aiokafka splits a comma-separated string itself,
    FastStream's KafkaBroker does not (it would take "a:1,b:2,c:3" for one host)."""
    return [s.strip() for s in bootstrap_servers.split(",") if s.strip()]


def _replicas(topic: dict[str, Any]) -> int:
    return min((len(p["replicas"]) for p in topic["partitions"]), default=0)


async def ensure_topics(bootstrap_servers: str, names: list[str], partitions: int,
                        replication_factor: int = BROKER_DEFAULT) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics()}
        existing = {name: len(t["partitions"]) for name, t in described.items()}
        replication = replication_factor if replication_factor > 0 \
            else await broker_default_replication(admin)
        missing = [n for n in names if n not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=replication)
                 for n in missing])
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code not in (0, _ALREADY_EXISTS):
                    raise RuntimeError(f"could not create topic {name} ({partitions} partitions,"
                                       f" {replication} replicas): error {code}")
            log.info("created topics %s with %d partitions, %d replicas", missing, partitions,
                     replication)
        thin = sorted(n for n in names if n in described
                      and 0 < _replicas(described[n]) < replication)
        if thin:
            log.warning("topics %s have fewer than %d replicas (reassign their partitions to "
                        "replicate them more)", thin, replication)
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
