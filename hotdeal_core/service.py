"""The shell of a consumer process: its runtime, its periodic duties, its ready file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hotdeal_core.runtime import Runtime, build_runtime
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duty:
    """A periodic job; it runs again at once while it reports work done (a truthy result)."""

    name: str
    interval: float
    run: Callable[[Context], Awaitable[object]]


class Service:
    def __init__(self, settings: Settings, duties: list[Duty], pool_size: int = 10) -> None:
        self.settings = settings
        self.duties = duties
        self.pool_size = pool_size
        self.runtime: Runtime | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ctx(self) -> Context:
        assert self.runtime is not None, "service not started"
        return self.runtime.ctx

    async def start(self) -> None:
        self.runtime = build_runtime(self.settings, pool_size=self.pool_size)
        self.runtime.relay.start()
        self._tasks = [asyncio.create_task(self._every(d), name=d.name) for d in self.duties]

    async def ready(self) -> None:
        if self.settings.ready_file:
            await asyncio.to_thread(Path(self.settings.ready_file).write_text, "ready\n")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.runtime is not None:
            await self.runtime.close()
        log.info("stopped gracefully")

    async def _every(self, duty: Duty) -> None:
        while True:
            try:
                if await duty.run(self.ctx):
                    continue  # more work may be waiting
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; retrying", duty.name)
            await asyncio.sleep(duty.interval)
