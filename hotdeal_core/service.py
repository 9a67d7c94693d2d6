"""The shell of a consumer process: its runtime, its periodic duties, its ready file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from faststream import FastStream

from hotdeal_core.kafka_topics import ensure_topics
from hotdeal_core.runtime import Runtime, build_runtime
from hotdeal_core.settings import Settings, load_settings, parse_command_line
from hotdeal_core.topics import Topics
from hotdeal_core.usecases.context import Context

log = logging.getLogger(__name__)


def run_consumer(create_app: Callable[[Settings], FastStream], prog: str, summary: str) -> None:
    """`python -m stock_worker` / `python -m reconciler`: settings read once, run until
    SIGTERM/SIGINT (graceful: in-flight messages finish or stay uncommitted for redelivery)."""
    parse_command_line(prog, summary)
    settings = load_settings()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    asyncio.run(create_app(settings).run())


def dump_tasks() -> None:
    """SIGUSR1: log where every asyncio task is waiting (to diagnose a stuck process)."""
    for task in asyncio.all_tasks():
        stack = "".join(traceback.format_list(
            [(f.f_code.co_filename, f.f_lineno, f.f_code.co_name, None) for f in
             task.get_stack()]))
        log.warning("task %s:\n%s", task.get_name(), stack or "  (no frames)")


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
        # Before the broker subscribes: its topics must exist with all their partitions.
        await ensure_topics(self.settings.kafka_bootstrap_servers,
                            Topics(self.settings.kafka_topic_prefix).all(),
                            self.settings.kafka_partitions)
        self.runtime = build_runtime(self.settings, pool_size=self.pool_size,
                                     group_commits=False)
        self.runtime.start()
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
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
