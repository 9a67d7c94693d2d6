"""How a consumer process joins its Kafka group: static under CONSUMER_INSTANCE_ID, and the
session timeout (why: docs/scaling.md, "Consumer group membership")."""

from __future__ import annotations

from typing import TypedDict

from hotdeal_core.settings import Settings

HEARTBEAT_MS = 1000


class Membership(TypedDict, total=False):
    """Keyword arguments of `KafkaBroker.subscriber` (passed on to `AIOKafkaConsumer`)."""

    group_instance_id: str
    session_timeout_ms: int
    heartbeat_interval_ms: int


def membership(settings: Settings, subscription: str) -> Membership:
    """The group membership of one subscriber of this process. Each subscriber is its own
    consumer in the group, hence its own instance id: `<CONSUMER_INSTANCE_ID>.<subscription>`."""
    session = settings.kafka_session_timeout_ms
    # At most a second: the survivors of a rebalance learn of it on their next heartbeat
    # (measured: +3.3 s at a third of 10 s); and at most a third of the session, so that a
    # member survives two lost heartbeats.
    found = Membership(session_timeout_ms=session,
                       heartbeat_interval_ms=max(100, min(HEARTBEAT_MS, session // 3)))
    if settings.consumer_instance_id:
        found["group_instance_id"] = f"{settings.consumer_instance_id}.{subscription}"
    return found
