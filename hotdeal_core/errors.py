"""The one error hierarchy: every error has its code, HTTP status and `retriable` flag.

Adapters raise outages as `DependencyUnavailable`; every edge only asks `is_retriable`."""

from __future__ import annotations


class HotdealError(Exception):
    http_status = 400
    retriable = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(HotdealError):
    http_status = 404


class Conflict(HotdealError):
    http_status = 409


class Unauthorized(HotdealError):
    http_status = 401


class Forbidden(HotdealError):
    http_status = 403


class TooManyRequests(HotdealError):
    http_status = 429

    def __init__(self, code: str, message: str, retry_after: int = 1) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class Unprocessable(HotdealError):
    http_status = 422


class DependencyUnavailable(HotdealError):
    http_status = 503
    retriable = True

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(f"{dependency}_unavailable", message or f"{dependency} is unavailable")
        self.dependency = dependency


def retriable_error(exc: BaseException) -> HotdealError | None:
    """The first retriable HotdealError along `exc`'s `raise ... from` chain, or None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, HotdealError) and current.retriable:
            return current
        current = current.__cause__
    return None


def is_retriable(exc: BaseException) -> bool:
    """True when `exc` says "cannot serve now, try again later" (a dependency is down),
    as opposed to a fault of the request or of the code. The one question every edge asks."""
    return retriable_error(exc) is not None
