"""Topics created at start-up with enough partitions, the wanted replication and retention.

Why and the defaults: docs/scaling.md ("The application on three brokers", "Bounded tables")."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidPartitionsError

from hotdeal_core.settings import TOPIC_SEGMENT_HOURS

log = logging.getLogger(__name__)

_ALREADY_EXISTS = 36
_HOUR_MS = 3_600_000
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


def retention_configs(retention_hours: float) -> dict[str, str]:
    """The topic configs that bound how long a message stays (see the module's docstring)."""
    return {"retention.ms": str(int(retention_hours * _HOUR_MS)),
            "segment.ms": str(int(TOPIC_SEGMENT_HOURS * _HOUR_MS))}


async def topic_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's retention.ms and segment.ms as the brokers apply them."""
    if not names:
        return {}
    wanted = {"retention.ms": None, "segment.ms": None}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, dict(wanted)) for n in names])
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            found[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in resource["config_entries"]}
    return found


async def _warn_long_retention(admin: AIOKafkaAdminClient, names: list[str],
                               retention_hours: float) -> None:
    limit = retention_configs(retention_hours)
    for name, configs in sorted((await topic_configs(admin, names)).items()):
        longer = {k: v for k, v in configs.items()
                  if k in limit and (int(v) < 0 or int(v) > int(limit[k]))}
        if longer:
            log.warning("topic %s keeps messages longer than KAFKA_TOPIC_RETENTION_HOURS=%g "
                        "allows (%s; wanted %s): a redelivery may come after its "
                        "processed-event record is deleted; lower them (kafka-configs "
                        "--alter)", name, retention_hours, longer, limit)


async def ensure_topics(bootstrap_servers: str, names: list[str], partitions: int,
                        replication_factor: int = BROKER_DEFAULT,
                        retention_hours: float | None = None) -> None:
    """Create the missing topics (with `retention_hours`' configs when given), grow the
    small ones."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics()}
        existing = {name: len(t["partitions"]) for name, t in described.items()}
        replication = replication_factor if replication_factor > 0 \
            else await broker_default_replication(admin)
        missing = [n for n in names if n not in existing]
        if missing:
            configs = None if retention_hours is None else retention_configs(retention_hours)
            response = await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=replication,
                          topic_configs=configs) for n in missing])
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
        if retention_hours is not None:
            await _warn_long_retention(admin, [n for n in names if n in described],
                                       retention_hours)
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
