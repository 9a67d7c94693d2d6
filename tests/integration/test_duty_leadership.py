"""Several replicas, one runner per duty: the Postgres advisory locks of
hotdeal_core.bootstrap.duty_locks and the ConsumerProcess loop that obeys them (two instances
in one test)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.bootstrap.consumer_process import ConsumerProcess, Duty
from hotdeal_core.bootstrap.duty_locks import (
    _NAMESPACE,
    DutyLocks,
    LocalDutyLocks,
    PgDutyLocks,
    lock_key,
)
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.context import Context
from tests.waiting import eventually


def _duty_name() -> str:
    return f"test-duty-{uuid.uuid4().hex[:8]}"


async def _holder_pid(engine: AsyncEngine, name: str) -> int | None:
    """The backend holding the duty's session lock (objid is the key as an unsigned oid)."""
    async with engine.connect() as conn:
        return (await conn.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = :ns AND objid = :key AND objsubid = 2"),
            {"ns": _NAMESPACE, "key": lock_key(name) & 0xFFFFFFFF})).scalar_one_or_none()


def _pair(kind: str, settings: Settings) -> tuple[DutyLocks, DutyLocks]:
    """Two replicas' locks: the Postgres adapter, or the fake (one shared dict)."""
    if kind == "postgres":
        return PgDutyLocks(settings.database_url), PgDutyLocks(settings.database_url)
    owners: dict[str, object] = {}
    return LocalDutyLocks(owners), LocalDutyLocks(owners)


@pytest.mark.parametrize("kind", ["postgres", "fake"])
async def test_one_replica_holds_a_duty_and_another_takes_it_when_it_closes(
        kind: str, settings: Settings) -> None:
    name = _duty_name()
    first, second = _pair(kind, settings)
    try:
        assert await first.hold(name)
        assert not await second.hold(name)
        assert await first.hold(name)  # kept from run to run
        await first.close()
        assert await second.hold(name)
        assert not await first.hold(name)
    finally:
        await first.close()
        await second.close()


async def test_a_leader_whose_session_dies_steps_down_and_the_lock_moves(
        settings: Settings, engine: AsyncEngine) -> None:
    name = _duty_name()
    first, second = PgDutyLocks(settings.database_url), PgDutyLocks(settings.database_url)
    try:
        assert await first.hold(name)
        pid = await _holder_pid(engine, name)
        assert pid is not None
        # What the server sees when the leader's process is killed: its session ends.
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                    ).scalar()

        async def moved() -> bool:
            return await second.hold(name)
        await eventually(moved, 10, "the second replica to take the duty")
        assert not await first.hold(name)  # noticed the lost session: not the leader
        assert name not in first.held
    finally:
        await first.close()
        await second.close()


@dataclass
class Runs:
    """Every run of the test duty: (replica, start, end), and how many run right now."""

    spans: list[tuple[str, float, float]] = field(default_factory=list)
    running: int = 0
    most_at_once: int = 0

    def duty(self, name: str, replica: str) -> Duty:
        async def run(ctx: Context) -> bool:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            start = time.monotonic()
            try:
                await asyncio.sleep(0.02)  # the duty's "work": room for an overlap
            finally:
                self.running -= 1
            self.spans.append((replica, start, time.monotonic()))
            return False
        return Duty(name, 0.01, run)

    def by(self, replica: str) -> int:
        return sum(1 for r, _, _ in self.spans if r == replica)


async def test_two_services_never_run_an_exclusive_duty_at_once_and_hand_it_over(
        settings: Settings) -> None:
    name, runs = _duty_name(), Runs()
    a = ConsumerProcess(settings, [runs.duty(name, "a")], pool_size=2)
    b = ConsumerProcess(settings, [runs.duty(name, "b")], pool_size=2)
    await a.start()
    await b.start()
    stopped: list[ConsumerProcess] = []
    try:
        await eventually(lambda: _ready(len(runs.spans) >= 30), 30, "30 runs of the duty")
        leader, other = ("a", "b") if runs.by("a") else ("b", "a")
        assert runs.by(leader) == len(runs.spans)  # the same replica, every run
        await (a if leader == "a" else b).stop()
        stopped.append(a if leader == "a" else b)
        # Counted by replica: the other may take over while the stopped one closes its
        # resources (its lock is released first), before stop() returns.
        ran = runs.by(leader)
        await eventually(lambda: _ready(runs.by(other) >= 10), 30,
                         "the other replica to take the duty over")
        assert runs.by(leader) == ran  # the stopped one ran no more
    finally:
        for service in (a, b):
            if service not in stopped:
                await service.stop()
    assert runs.most_at_once == 1


async def test_a_duty_not_exclusive_runs_in_every_replica(settings: Settings) -> None:
    name, runs = _duty_name(), Runs()

    def shared(replica: str) -> Duty:
        exclusive = runs.duty(name, replica)
        return Duty(exclusive.name, exclusive.interval, exclusive.run, exclusive=False)
    a = ConsumerProcess(settings, [shared("a")], pool_size=2)
    b = ConsumerProcess(settings, [shared("b")], pool_size=2)
    await a.start()
    await b.start()
    try:
        await eventually(lambda: _ready(runs.by("a") >= 5 and runs.by("b") >= 5), 30,
                         "runs in both replicas")
    finally:
        await a.stop()
        await b.stop()


async def _ready(value: bool) -> bool:
    return value


async def test_a_duty_that_does_not_stop_when_cancelled_does_not_hold_the_process(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """stop() waits DUTY_STOP_SECONDS for the cancelled duties, then goes on (a duty stuck
    in a statement must not keep the process alive until its supervisor's SIGKILL)."""
    from hotdeal_core.bootstrap import consumer_process
    monkeypatch.setattr(consumer_process, "DUTY_STOP_SECONDS", 0.5)
    started, release = asyncio.Event(), asyncio.Event()

    async def stubborn(ctx: Context) -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await release.wait()  # as a statement waiting for the server to answer
        return 0
    process = ConsumerProcess(settings, [Duty(_duty_name(), 0.1, stubborn, exclusive=False)],
                              pool_size=2)
    await process.start()
    await asyncio.wait_for(started.wait(), 30)
    began = time.monotonic()
    await asyncio.wait_for(process.stop(), 20)
    assert time.monotonic() - began < 10
    assert any("did not stop within" in r.getMessage() for r in caplog.records)
    release.set()


async def test_a_duty_whose_cancellation_is_lost_ends_at_its_next_round(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    """On Python 3.11 a cancellation can be lost inside asyncio.wait_for (redis-py sends
    through it): the duty then returns normally. Its loop must still end."""
    started, runs = asyncio.Event(), [0]

    async def swallows(ctx: Context) -> int:
        runs[0] += 1
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return 0  # the cancellation lost, as a racing wait_for does
        return 0
    process = ConsumerProcess(settings, [Duty(_duty_name(), 0.05, swallows, exclusive=False)],
                              pool_size=2)
    await process.start()
    await asyncio.wait_for(started.wait(), 30)
    await asyncio.wait_for(process.stop(), 20)
    assert all(t.done() for t in process._tasks)
    assert not any("did not stop within" in r.getMessage() for r in caplog.records)
    assert runs[0] == 1
