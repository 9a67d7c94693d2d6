"""The shell of a consumer process (stock worker, reconciler): its Kafka broker, its periodic
duties with their leadership, its HTTP port (/metrics, /healthz, /readyz), SIGUSR1. Its
shared resources come from `open_resources` (resources.py), entered at start and left at
stop: it builds and closes nothing of them itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import traceback
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

import uvicorn
from aiokafka.admin import AIOKafkaAdminClient
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY
from prometheus_client.core import Metric

from hotdeal_core.bootstrap.duty_locks import DutyLocks, PgDutyLocks
from hotdeal_core.bootstrap.resources import Resources, open_resources
from hotdeal_core.messaging.admin import ensure_topics, server_list
from hotdeal_core.messaging.membership import Membership, membership
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.observability import tracing
from hotdeal_core.observability.exposition import (
    CONTENT_TYPE,
    consumer_lags,
    lag_family,
    read_or_skip,
    render,
)
from hotdeal_core.observability.logs import configure_logging
from hotdeal_core.settings import Settings, load_settings, parse_command_line
from hotdeal_core.usecases.context import Context

log = logging.getLogger(__name__)


def run_consumer(create_app: Callable[[Settings], AsgiFastStream], prog: str, summary: str,
                 ) -> None:
    """`python -m stock_worker` / `python -m reconciler`: settings read once, run under
    uvicorn until SIGTERM/SIGINT (graceful: in-flight messages finish or stay uncommitted
    for redelivery)."""
    parse_command_line(prog, summary)
    settings = load_settings()
    configure_logging(prog.removeprefix("python -m ").replace("_", "-"), settings.log_format,
                      settings.log_level)
    # log_config=None: the logs keep our set-up (LOG_FORMAT); the asyncio loop, as before.
    config = uvicorn.Config(create_app(settings), host=settings.metrics_host,
                            port=settings.metrics_port, loop="asyncio", lifespan="on",
                            log_config=None, log_level="warning", access_log=False)
    # Bound before the lifespan starts the consumer: a port in use fails before it joins.
    sock = config.bind_socket()
    log.info("metrics and health on http://%s:%s", settings.metrics_host, sock.getsockname()[1])
    uvicorn.Server(config).run(sockets=[sock])


class Subscription(Membership):
    """Keyword arguments of `KafkaBroker.subscriber` for one subscription of a consumer."""

    group_id: str
    title: str
    auto_offset_reset: Literal["earliest"]


def consumer_broker(settings: Settings, group: str, graceful_timeout: float) -> KafkaBroker:
    """The Kafka broker of the consumer process of `group` (its client id, metrics and
    tracing middlewares, acks); `subscription` gives each subscriber its group membership."""
    tracing.configure(settings, f"hotdeal-{group}")  # off by default (TRACING_ENABLED)
    # Per-message logs at DEBUG: at flash-sale rates they would cost more than the work.
    # acks="all": a dead letter survives the loss of a broker (min.insync.replicas=2).
    return KafkaBroker(server_list(settings.kafka_bootstrap_servers),
                       client_id=settings.kafka_topic_prefix + group, acks="all",
                       graceful_timeout=graceful_timeout, log_level=logging.DEBUG,
                       # Through the root logger: LOG_FORMAT's handler, not FastStream's own.
                       logger=logging.getLogger("hotdeal.faststream.kafka"),
                       # FastStream's consumer metrics, served with ours (METRICS_PORT).
                       middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY,
                                                              app_name=group),
                                    *tracing.kafka_middlewares()])


def subscription(settings: Settings, group: str, name: str) -> Subscription:
    """The consumer group (prefixed: environments sharing a broker stay apart) and the
    membership (messaging/membership.py) of the subscriber `name` of `group`."""
    return Subscription(group_id=settings.kafka_topic_prefix + group, title=f"{group}:{name}",
                        auto_offset_reset="earliest", **membership(settings, name))


def dump_tasks() -> None:
    """SIGUSR1: log where every asyncio task is waiting (to diagnose a stuck process)."""
    for task in asyncio.all_tasks():
        stack = "".join(traceback.format_list(
            [(f.f_code.co_filename, f.f_lineno, f.f_code.co_name, None)
             for f in _await_chain(task)]))
        log.warning("task %s:\n%s", task.get_name(), stack or "  (no frames)")


def _await_chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of what a task awaits, outermost first (`Task.get_stack` gives only the
    task's own coroutine frame while it is suspended)."""
    frames: list[FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(frames) < 50:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


@dataclass(frozen=True)
class Duty:
    """A periodic job; it runs again at once while it reports work done (a truthy result).

    `exclusive`: with several replicas of the process, only the one holding the duty's
    Postgres advisory lock runs it (hotdeal_core/bootstrap/duty_locks.py); the others take
    over within one interval when it stops or dies. False: every replica runs it.
    """

    name: str
    interval: float
    run: Callable[[Context], Awaitable[object]]
    exclusive: bool = True


#: How long stop() waits for the cancelled duties (then goes on without them).
DUTY_STOP_SECONDS = 5.0


class ConsumerProcess:
    """FastStream's hooks of a consumer process: `start` (topics, resources, duties),
    `ready` (/readyz answers 200), `stop` (the reverse, resources last); `app` its ASGI app."""

    def __init__(self, settings: Settings, duties: list[Duty], pool_size: int = 10,
                 locks: DutyLocks | None = None, broker: KafkaBroker | None = None) -> None:
        self.settings = settings
        # The broker whose subscribers' lag the metrics port reports (METRICS_PORT).
        self.broker = broker
        self.is_ready = False
        self.duties = duties
        self.pool_size = pool_size
        self.locks: DutyLocks = locks or PgDutyLocks(settings.database_url)
        self.resources: Resources | None = None
        self._opened = AsyncExitStack()  # open_resources: entered at start, left at stop
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._lag_admin: AIOKafkaAdminClient | None = None

    @property
    def ctx(self) -> Context:
        assert self.resources is not None, "consumer process not started"
        return self.resources.ctx

    async def start(self) -> None:
        # Before the broker subscribes: its topics must exist with all their partitions.
        await ensure_topics(self.settings.kafka_bootstrap_servers,
                            Topics(self.settings.kafka_topic_prefix).all(),
                            self.settings.kafka_partitions,
                            retention_hours=self.settings.kafka_topic_retention_hours)
        self.resources = await self._opened.enter_async_context(
            open_resources(self.settings, pool_size=self.pool_size, group_commits=False))
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
        self._tasks = [asyncio.create_task(self._every(d), name=d.name) for d in self.duties]

    async def ready(self) -> None:
        """After the broker started: subscribed, and the duties run."""
        self.is_ready = True

    def app(self) -> AsgiFastStream:
        """The process as an ASGI app: FastStream's lifespan runs these hooks around the
        broker; GET /metrics, /healthz (the event loop answers), /readyz (`ready`)."""
        assert self.broker is not None, "a consumer app needs its broker"
        return AsgiFastStream(self.broker, asgi_routes=self.routes(),
                              on_startup=[self.start], after_startup=[self.ready],
                              after_shutdown=[self.stop],
                              logger=logging.getLogger("hotdeal.faststream"))

    def routes(self) -> list[tuple[str, ASGIApp]]:
        @get(include_in_schema=False)
        async def metrics(scope: Scope) -> AsgiResponse:
            return AsgiResponse(render(await self.metric_families()), 200,
                                {"Content-Type": CONTENT_TYPE})

        @get(include_in_schema=False)
        async def healthz(scope: Scope) -> AsgiResponse:
            return AsgiResponse(b"ok\n", 200)

        @get(include_in_schema=False)
        async def readyz(scope: Scope) -> AsgiResponse:
            return AsgiResponse(b"ready\n", 200) if self.is_ready \
                else AsgiResponse(b"not ready\n", 503)
        return [("/metrics", metrics), ("/healthz", healthz), ("/readyz", readyz)]

    async def metric_families(self) -> list[Metric]:
        """The scrape-time gauges of a consumer process: its outbox, its consumers' lag."""
        families = [] if self.resources is None else await self.resources.metric_families()
        if self.broker is not None:
            subscribers = list(self.broker.subscribers)

            async def lag() -> list[Metric]:
                return [lag_family(await consumer_lags(subscribers, await self._admin()))]
            families += await read_or_skip("the consumer lag", lag())
        return families

    async def _admin(self) -> AIOKafkaAdminClient:
        """The metrics port's own Kafka client (committed offsets for the lag)."""
        if self._lag_admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.kafka_bootstrap_servers.split(","))
            await admin.start()
            self._lag_admin = admin
        return self._lag_admin

    async def stop(self) -> None:
        self.is_ready = False
        if self._lag_admin is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._lag_admin.close(), 5)
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # A duty cancelled inside a statement waits for its server to answer, and one whose
        # cancellation was lost ends only at its next round: neither may hold the process past
        # its graceful timeout (the e2e tier saw both end in the supervisor's SIGKILL). An
        # open transaction is rolled back on the server when the connections close.
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=DUTY_STOP_SECONDS)
            for task in stuck:
                log.warning("duty %s did not stop within %g s; leaving it behind",
                            task.get_name(), DUTY_STOP_SECONDS)
        await self.locks.close()  # the exclusive duties are free for another replica now
        await self._opened.aclose()  # resources.py stops and closes what it built
        log.info("stopped gracefully")

    async def _every(self, duty: Duty) -> None:
        # Not `while True`: on Python 3.11 a cancellation that lands as an awaited
        # asyncio.wait_for completes can be lost (redis-py sends through wait_for); the duty
        # would go on looping after stop() cancelled it (the e2e tier saw duties run on).
        while not self._stopping:
            try:
                # The lock is per topic prefix, as the consumer groups are: environments
                # sharing a database but not a broker (test sessions) lead apart.
                lock = self.settings.kafka_topic_prefix + duty.name
                if (not duty.exclusive or await self.locks.hold(lock)) \
                        and await duty.run(self.ctx):
                    continue  # more work may be waiting
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; retrying", duty.name)
            await asyncio.sleep(duty.interval)
