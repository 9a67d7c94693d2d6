"""The natural-batching writer: what is queued while a write runs becomes the next batch,
one bad item fails alone, an outage fails the batch at once, queued items outlive stop(), and
a write cut off mid-way tells its callers its outcome is unknown."""

from __future__ import annotations

import asyncio

import pytest

from hotdeal_core.batching import Batcher, OutcomeUnknown
from hotdeal_core.errors import DependencyUnavailable


class Recorder:
    def __init__(self, fail_on: int | None = None, outage: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail_on, self.outage = fail_on, outage

    async def write(self, items: list[int]) -> list[int | BaseException]:
        self.calls.append(list(items))
        await asyncio.sleep(0)  # a real write yields to the loop
        if self.outage:
            raise DependencyUnavailable("postgres")
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [i * 10 for i in items]


async def submit_all(batcher: Batcher[int, int], count: int) -> list[int | BaseException]:
    """Start `batcher`, submit 0..count-1 at once, stop it; each item's result or error."""
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(i) for i in range(count)),
                                    return_exceptions=True)
    finally:
        await batcher.stop()


async def test_items_queued_together_are_written_in_one_call() -> None:
    rec = Recorder()
    batcher = Batcher("t", rec.write)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    finally:
        await batcher.stop()
    assert results == [0, 10, 20, 30, 40]
    assert rec.calls == [[0, 1, 2, 3, 4]]


async def test_a_lone_item_is_written_at_once_and_batches_respect_the_maximum() -> None:
    rec = Recorder()
    batcher = Batcher("t", rec.write, max_batch=2)
    batcher.start()
    try:
        assert await batcher.submit(7) == 70
        await asyncio.gather(*(batcher.submit(i) for i in range(5)))
    finally:
        await batcher.stop()
    assert rec.calls == [[7], [0, 1], [2, 3], [4]]


async def test_one_bad_item_fails_alone() -> None:
    rec = Recorder(fail_on=2)
    batcher = Batcher("t", rec.write)
    results = await submit_all(batcher, 4)
    assert results[:2] == [0, 10] and results[3] == 30
    assert isinstance(results[2], ValueError)
    assert rec.calls == [[0, 1, 2, 3], [0], [1], [2], [3]]
    assert batcher.stats.split == 1


async def test_an_outage_fails_the_whole_batch_without_retrying_each_item() -> None:
    rec = Recorder(outage=True)
    results = await submit_all(Batcher("t", rec.write), 3)
    assert all(isinstance(r, DependencyUnavailable) for r in results)
    assert rec.calls == [[0, 1, 2]]


async def test_a_cancelled_caller_does_not_stop_the_write() -> None:
    rec = Recorder()
    batcher = Batcher("t", rec.write)
    batcher.start()
    try:
        gone = asyncio.ensure_future(batcher.submit(1))
        stays = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0)  # both are queued
        gone.cancel()
        assert await stays == 20
    finally:
        await batcher.stop()
    assert rec.calls == [[1, 2]]
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_without_a_writer_task_an_item_is_written_alone() -> None:
    rec = Recorder(fail_on=3)
    batcher = Batcher("t", rec.write)
    assert await batcher.submit(4) == 40
    with pytest.raises(ValueError, match="bad item 3"):
        await batcher.submit(3)


class Blocking:
    """A write that has started (its items handed over) and waits until let through."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go_on = asyncio.Event()
        self.calls: list[list[int]] = []

    async def write(self, items: list[int]) -> list[int | BaseException]:
        self.calls.append(list(items))
        self.started.set()
        await self.go_on.wait()
        return [i * 10 for i in items]


async def test_stop_lets_the_write_in_flight_finish() -> None:
    rec = Blocking()
    batcher = Batcher("t", rec.write)
    batcher.start()
    caller = asyncio.ensure_future(batcher.submit(1))
    await asyncio.wait_for(rec.started.wait(), 5)
    stopping = asyncio.ensure_future(batcher.stop())
    await asyncio.sleep(0)  # stop() has begun while the write runs
    rec.go_on.set()
    await asyncio.wait_for(stopping, 5)
    assert await caller == 10
    assert rec.calls == [[1]]


async def test_a_write_cut_off_by_stop_tells_its_callers_the_outcome_is_unknown() -> None:
    rec = Blocking()  # never let through: the write outlives the stop's bound
    batcher = Batcher("t", rec.write, max_batch=2, stop_timeout=0)
    batcher.start()
    callers = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.wait_for(rec.started.wait(), 5)
    await asyncio.wait_for(batcher.stop(), 5)
    results = await asyncio.gather(*callers, return_exceptions=True)
    # The first two were being written: that write may have landed.
    assert all(isinstance(r, OutcomeUnknown) for r in results[:2])
    # The third was still queued: nothing of it was written, and its caller is told so.
    assert isinstance(results[2], DependencyUnavailable)
    assert not isinstance(results[2], OutcomeUnknown)
    assert rec.calls == [[0, 1]]


async def test_a_writer_cancelled_mid_write_tells_its_callers_the_outcome_is_unknown() -> None:
    rec = Blocking()
    batcher = Batcher("t", rec.write)
    batcher.start()
    caller = asyncio.ensure_future(batcher.submit(1))
    await asyncio.wait_for(rec.started.wait(), 5)
    assert batcher._task is not None
    batcher._task.cancel()  # the event loop tearing down, say
    with pytest.raises(OutcomeUnknown):
        await asyncio.wait_for(caller, 5)


async def test_a_write_that_may_have_landed_is_not_retried_item_by_item() -> None:
    calls: list[list[int]] = []

    async def cut_off(items: list[int]) -> list[int | BaseException]:
        calls.append(list(items))
        await asyncio.sleep(0)
        raise OutcomeUnknown()

    results = await submit_all(Batcher("t", cut_off), 3)
    assert all(isinstance(r, OutcomeUnknown) for r in results)
    assert calls == [[0, 1, 2]]  # a retry would find its own rows and say "not written"
