"""How a consumer process is a member of its Kafka consumer group (docs/scaling.md).

With CONSUMER_INSTANCE_ID set, each subscriber joins as a static member (KIP-345,
`group.instance.id`): a process killed and restarted under the same id is handed its
partitions back by the coordinator as they were, without a rebalance, so neither it nor the
other members stall. The price: a static member never leaves the group on its own (not
even on a graceful stop), so a process that does not come back holds its partitions until
KAFKA_SESSION_TIMEOUT_MS expires; the session timeout is chosen for both cases.
"""

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
