"""The one error hierarchy of hotdeal.

    HotdealError                      code, http_status, retriable
    ├── NotFound (404)                product_not_found, order_not_found, deal_not_found
    ├── Conflict (409)                sold_out, limit_exceeded, deal_not_active,
    │                                 deal_already_active, invalid_state,
    │                                 idempotency_in_progress, insufficient_stock
    ├── Unauthorized (401)            unauthorized, bad_signature
    ├── Unprocessable (422)           validation_error
    └── DependencyUnavailable (503)   postgres/redis/kafka unavailable; retriable

Entry points translate it: HTTP in `order_api.errors`, ack/nack in the worker's handlers.
"""

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


class Unprocessable(HotdealError):
    http_status = 422


class DependencyUnavailable(HotdealError):
    http_status = 503
    retriable = True

    def __init__(self, dependency: str, message: str | None = None) -> None:
        super().__init__(f"{dependency}_unavailable", message or f"{dependency} is unavailable")
        self.dependency = dependency
