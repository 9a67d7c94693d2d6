"""The CLI's composition root and the one place where failures become exit codes:
0 done, 1 refused (HotdealError, a failed audit, a wait that timed out), 2 usage or invalid
settings, 3 a dependency down. A known failure is one line (or JSON), never a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import ValidationError

from hotdeal_cli.render import print_error
from hotdeal_core.db.engine import make_engine
from hotdeal_core.errors import HotdealError, retriable_error
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import Settings, load_settings
from hotdeal_core.stock.client import close_redis, make_redis, replica_acks
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.usecases.context import Context

T = TypeVar("T")

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_DEPENDENCY = 3


class CliFailure(Exception):
    """A failure of the CLI itself (not of a use case), e.g. a wait that timed out."""

    def __init__(self, code: str, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


@asynccontextmanager
async def open_context(settings: Settings) -> AsyncIterator[Context]:
    engine = make_engine(settings, pool_size=2)
    redis = make_redis(settings)
    try:
        # outbox_written stays a no-op: the relays of the running processes publish the rows.
        yield Context(engine=engine, stock=RedisStockStore(redis, replica_acks(settings)),
                      settings=settings, topics=Topics(settings.kafka_topic_prefix))
    finally:
        await close_redis(redis)
        await engine.dispose()


def run(action: Callable[[Context], Awaitable[T]], *, as_json: bool) -> T:
    """Run one command's async work in a fresh context; translate every known failure."""
    settings: Settings | None = None
    try:
        settings = load_settings()
        return asyncio.run(_in_context(settings, action))
    except ValidationError as exc:
        _fail(as_json, "invalid_settings", _one_line(exc), EXIT_USAGE)
    except CliFailure as exc:
        _fail(as_json, exc.code, exc.message, exc.exit_code)
    except Exception as exc:
        down = retriable_error(exc)  # the adapters raise a dependency that is down as one
        if down is not None:
            _dependency_down(as_json, down, settings)
        if not isinstance(exc, HotdealError):
            raise
        code = EXIT_USAGE if exc.code == "validation_error" else EXIT_REFUSED
        _fail(as_json, exc.code, exc.message, code)


async def _in_context(settings: Settings, action: Callable[[Context], Awaitable[T]]) -> T:
    async with open_context(settings) as ctx:
        return await action(ctx)


def _fail(as_json: bool, code: str, message: str, exit_code: int) -> NoReturn:
    print_error(code, message, as_json=as_json)
    raise typer.Exit(exit_code)


def _dependency_down(as_json: bool, down: HotdealError, settings: Settings | None
                     ) -> NoReturn:
    dependency = getattr(down, "dependency", "")
    url = {"redis": settings.redis_url, "postgres": settings.database_url}.get(dependency) \
        if settings is not None else None
    where = f" at {_without_password(url)}" if url else ""
    cause = down.__cause__
    cause = getattr(cause, "orig", None) or cause  # a DBAPIError's driver error reads better
    detail = f": {_one_line(cause)}" if cause is not None else f": {down.message}"
    _fail(as_json, down.code, _hint(f"{dependency or 'a dependency'} is unavailable{where}"
                                    f"{detail}"), EXIT_DEPENDENCY)


def _hint(message: str) -> str:
    return f"{message}. Is it running? Start the local services with `make infra-up`."


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(".")
