"""Natural batching: a batch is whatever arrived while the previous one was being written.

One writer task per process owns a queue. A caller submits its item and awaits its own
outcome; the writer takes everything queued, writes it with one call (one statement, one
transaction, one WAL flush for the lot), resolves each caller's future and loops. There is
no fixed delay: a lone request is written at once, and under load one commit serves
hundreds of callers.

A write that fails as a whole is retried item by item, so that one bad item fails alone;
except when a dependency is down (every item would fail the same way): then every item
gets the error at once. A caller cancelled while its item is queued or being written does
not stop the write (the outcome is simply not delivered).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hotdeal_core.errors import DependencyUnavailable, is_retriable

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Writes one batch; returns one outcome per item, in order: a result or the item's error.
WriteMany = Callable[[list[T]], Awaitable[list[R | BaseException]]]


def _whole_batch_error(exc: BaseException) -> bool:
    """An error that every item would meet again (no point in retrying one by one)."""
    return is_retriable(exc)


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    split: int = 0  # batches that failed as a whole and were retried item by item


@dataclass
class Batcher(Generic[T, R]):
    name: str
    write_many: WriteMany[T, R]
    max_batch: int = 1000
    # False: a batch that fails is not retried item by item (its write is not idempotent).
    split_on_failure: bool = True
    stats: BatchStats = field(default_factory=BatchStats)
    _queue: list[tuple[T, asyncio.Future[R]]] = field(default_factory=list)
    _signal: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        while self._queue:
            await self._write_queued()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def submit(self, item: T) -> R:
        if self._task is None:  # not started (a CLI, a test): write it alone, right away
            outcome = (await self.write_isolated([item]))[0]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._signal.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._signal.wait()
            self._signal.clear()
            while self._queue:
                await self._write_queued()

    async def _write_queued(self) -> None:
        batch = self._queue[:self.max_batch]
        del self._queue[:self.max_batch]
        try:
            outcomes = await self.write_isolated([item for item, _ in batch])
        except BaseException as exc:  # cancelled mid-write: tell the callers, then stop
            for _, future in batch:
                if not future.done():
                    future.set_exception(DependencyUnavailable("postgres", "shutting down"))
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.exception("%s: batch writer failed", self.name)
            return
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    async def write_isolated(self, items: list[T]) -> list[R | BaseException]:
        self.stats.batches += 1
        self.stats.items += len(items)
        self.stats.largest = max(self.stats.largest, len(items))
        try:
            return await self.write_many(items)
        except Exception as exc:  # noqa: BLE001 - isolated below
            if len(items) == 1 or not self.split_on_failure or _whole_batch_error(exc):
                return [exc] * len(items)
            self.stats.split += 1
            log.warning("%s: a batch of %d failed (%s); retrying item by item", self.name,
                        len(items), exc)
        outcomes: list[R | BaseException] = []
        for item in items:
            try:
                outcomes += await self.write_many([item])
            except Exception as exc:  # noqa: BLE001 - this item's own outcome
                outcomes.append(exc)
        return outcomes
