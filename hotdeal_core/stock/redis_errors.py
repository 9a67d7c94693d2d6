"""The one place a redis-py error is judged: an outage becomes `DependencyUnavailable("redis")`,
any other error reply is a bug and stays as is. The stock store wraps every call with
`translating` (batched calls' errors through `translated`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import ClusterError, RedisClusterException, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hotdeal_core.errors import DependencyUnavailable

P = ParamSpec("P")
R = TypeVar("R")

# Error replies of a Redis that cannot serve for a while (a long script, maxmemory, a
# replica or a failover, loading its data, a cluster resharding).
BUSY_CODES = frozenset(
    {"BUSY", "OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"})
# Unreachable, timing out, or a cluster mid-failover (no node answers, a slot without a
# master). OSError: a socket error redis-py let through unwrapped.
_DOWN = (RedisConnectionError, RedisTimeoutError, ClusterError, RedisClusterException, OSError)


def is_outage(exc: BaseException) -> bool:
    """True if this redis-py error says Redis cannot serve now (but will)."""
    if isinstance(exc, _DOWN):
        return True
    if isinstance(exc, ResponseError):
        # redis-py strips the codes it knows into `status_code` (OOM, READONLY...) and
        # leaves the others (BUSY) at the head of the message.
        code = getattr(exc, "status_code", None) or str(exc).split(" ", 1)[0]
        return code in BUSY_CODES
    return False


def translated(exc: BaseException) -> BaseException:
    """`exc` as the rest of the code must see it: an outage becomes DependencyUnavailable."""
    if not is_outage(exc):
        return exc
    unavailable = DependencyUnavailable("redis", "the stock store is unavailable; retry shortly")
    unavailable.__cause__ = exc
    return unavailable


def translating(call: Callable[P, Coroutine[Any, Any, R]]
                ) -> Callable[P, Coroutine[Any, Any, R]]:
    """Decorate a coroutine function that talks to Redis: its outages raise translated."""
    @functools.wraps(call)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await call(*args, **kwargs)
        except Exception as exc:
            new = translated(exc)
            if new is exc:
                raise
            raise new from exc
    return wrapper
