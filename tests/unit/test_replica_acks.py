"""When a reservation waits for a replica's ack: the setting, and a single primary's
replica count asked once a period (INFO replication). A fake primary, no services."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from hotdeal_core.settings import Settings
from hotdeal_core.stock.client import ReplicaAcks, ReplicaWatch, replica_acks


class _Primary:
    """Answers INFO replication with `replicas` connected, or fails while `down`."""

    def __init__(self, replicas: int) -> None:
        self.replicas, self.down, self.asked = replicas, False, 0
        self.answer = asyncio.Event()
        self.answer.set()

    async def info(self, section: str) -> dict[str, Any]:
        assert section == "replication"
        self.asked += 1
        await self.answer.wait()
        if self.down:
            raise ConnectionError("Connection refused")
        return {"role": "master", "connected_slaves": self.replicas}


def _watch(primary: _Primary, acks: ReplicaAcks, every_s: float = 3600) -> ReplicaWatch:
    return ReplicaWatch(cast(Any, primary), acks, every_s)


AUTO = ReplicaAcks(100, if_replicated=True)


@pytest.mark.parametrize(("cluster", "setting", "expected"), [
    (True, None, ReplicaAcks(100)), (False, None, AUTO),
    (True, 0, ReplicaAcks(0)), (False, 0, ReplicaAcks(0)), (False, 250, ReplicaAcks(250))])
def test_replica_acks_default_to_a_cluster_and_to_a_primary_with_replicas(
        cluster: bool, setting: int | None, expected: ReplicaAcks) -> None:
    settings = Settings(_env_file=None, redis_cluster=cluster,
                        redis_replica_ack_timeout_ms=setting)
    assert replica_acks(settings) == expected


async def test_a_primary_with_replicas_is_waited_on() -> None:
    assert await _watch(_Primary(replicas=1), AUTO).wait_ms() == 100


async def test_a_primary_without_replicas_is_not_waited_on_and_asked_once_a_period() -> None:
    primary = _Primary(replicas=0)
    watch = _watch(primary, AUTO)
    assert [await watch.wait_ms() for _ in range(3)] == [0, 0, 0]
    assert primary.asked == 1


async def test_a_replica_attached_or_gone_is_seen_at_the_next_period() -> None:
    primary = _Primary(replicas=0)
    watch = _watch(primary, AUTO, every_s=0)
    assert await watch.wait_ms() == 0
    primary.replicas = 1
    assert await watch.wait_ms() == 100
    primary.replicas = 0
    assert await watch.wait_ms() == 0


async def test_a_primary_that_never_answered_is_waited_on_and_a_known_answer_is_kept() -> None:
    primary = _Primary(replicas=0)
    primary.down = True
    watch = _watch(primary, AUTO, every_s=0)
    assert await watch.wait_ms() == 100  # unknown: a 503 rather than a loss
    primary.down = False
    assert await watch.wait_ms() == 0
    primary.down = True
    assert await watch.wait_ms() == 0 and primary.asked == 3


async def test_a_set_timeout_waits_whatever_the_replicas_and_zero_never_waits() -> None:
    primary = _Primary(replicas=0)
    assert await _watch(primary, ReplicaAcks(250)).wait_ms() == 250
    assert await _watch(primary, ReplicaAcks(0, if_replicated=True)).wait_ms() == 0
    assert primary.asked == 0


async def test_callers_arriving_during_the_first_question_wait_for_its_answer() -> None:
    primary = _Primary(replicas=0)
    primary.answer.clear()
    watch = _watch(primary, AUTO)
    callers = [asyncio.ensure_future(watch.wait_ms()) for _ in range(3)]
    await asyncio.sleep(0)  # every caller is now waiting on the one INFO
    primary.answer.set()
    assert await asyncio.gather(*callers) == [0, 0, 0] and primary.asked == 1


async def test_callers_during_a_refresh_keep_the_last_answer() -> None:
    primary = _Primary(replicas=0)
    watch = _watch(primary, AUTO, every_s=0)
    assert await watch.wait_ms() == 0
    primary.answer.clear()
    refresh = asyncio.ensure_future(watch.wait_ms())
    await asyncio.sleep(0)
    assert await watch.wait_ms() == 0  # not queued behind the INFO in flight
    primary.answer.set()
    assert await refresh == 0 and primary.asked == 2
