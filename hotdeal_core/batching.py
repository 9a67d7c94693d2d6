"""Natural batching: a batch is whatever arrived while the previous one was being written.

Failures, `OutcomeUnknown` and `stop()`: docs/architecture.md, "The batched design"."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from hotdeal_core.errors import DependencyUnavailable, is_retriable
from hotdeal_core.observability import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Link

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# Writes one batch; returns one outcome per item, in order: a result or the item's error.
WriteMany = Callable[[list[T]], Awaitable[list[R | BaseException]]]


class OutcomeUnknown(DependencyUnavailable):
    """The write may or may not have landed; the caller keeps what the write depends on."""

    def __init__(self, dependency: str = "postgres", message: str | None = None) -> None:
        super().__init__(dependency, message or "the outcome is unknown; retry the same "
                                                "request (with the same Idempotency-Key)")


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
    dependency: str = "postgres"  # named in the errors its callers get
    # How long stop() lets the write in flight finish before it cancels the writer (the
    # API stops three writers within compose.yaml's stop_grace_period, after 10 s of HTTP).
    stop_timeout: float = 5.0
    stats: BatchStats = field(default_factory=BatchStats)
    # Each item with its caller's future and, when traced, a link to its caller's span.
    _queue: list[tuple[T, asyncio.Future[R], Link | None]] = field(default_factory=list)
    _signal: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Write what is queued, the write in flight included, then stop. Past
        `stop_timeout` the writer is cancelled: the callers of its batch are told the
        outcome is unknown, those still queued that nothing of theirs was written."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        self._signal.set()
        done, _ = await asyncio.wait({task}, timeout=self.stop_timeout)
        if not done:
            log.warning("%s: the write in flight outlived %.1f s; cancelling it", self.name,
                        self.stop_timeout)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._fail_queued()
        self._task = None

    async def submit(self, item: T) -> R:
        if self._task is None:  # not started (a CLI, a test): write it alone, right away
            outcome = (await self.write_isolated([item]))[0]
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future, tracing.current_link()))
        self._signal.set()
        return await future

    async def _run(self) -> None:
        try:
            while True:
                while self._queue:
                    await self._write_queued()
                if self._stopping:
                    return
                await self._signal.wait()
                self._signal.clear()
        finally:
            self._fail_queued()

    def _fail_queued(self) -> None:
        """Items never handed to a write: nothing of theirs was written."""
        for _, future, _ in self._queue:
            if not future.done():
                future.set_exception(DependencyUnavailable(self.dependency, "shutting down"))
        self._queue.clear()

    async def _write_queued(self) -> None:
        batch = self._queue[:self.max_batch]
        del self._queue[:self.max_batch]
        try:
            # One span per batch (with tracing on), linked to the spans of its callers.
            with tracing.batch_span(f"{self.name} batch", [link for _, _, link in batch],
                                    len(batch)):
                outcomes = await self.write_isolated([item for item, _, _ in batch])
        except BaseException as exc:  # cut off mid-write: it may have landed
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(OutcomeUnknown(self.dependency))
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.exception("%s: batch writer failed", self.name)
            return
        for (_, future, _), outcome in zip(batch, outcomes, strict=True):
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
            # A write that may have landed is never retried: a second try would find its
            # own rows and report them "not written".
            if (len(items) == 1 or not self.split_on_failure or isinstance(exc, OutcomeUnknown)
                    or _whole_batch_error(exc)):
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
