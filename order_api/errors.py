"""The one place where errors become HTTP answers: `{"error": {"code", "message"}}`; a
client's mistake is a 4xx, a dependency down a 503 with Retry-After (the adapters raise
`DependencyUnavailable`, here only `is_retriable` is asked), never a 500."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from hotdeal_core.errors import HotdealError, TooManyRequests, retriable_error

log = logging.getLogger(__name__)

# Every error code a route answers with, and what it means: the OpenAPI document declares
# them per route and status (`declared`), the README's table lists the same (a test).
ERROR_CODES: dict[str, str] = {
    "validation_error": "the body, a header or a path parameter is invalid",
    "unauthorized": "a valid admin bearer token is required",
    "invalid_token": "a valid buyer bearer token (JWT) is required",
    "token_expired": "the buyer token has expired; get a new one",
    "buyer_mismatch": "the body's user_id is not the token's buyer",
    "bad_signature": "X-Payment-Signature is missing, stale or does not match",
    "product_not_found": "the product does not exist",
    "order_not_found": "the order does not exist (or is not this buyer's)",
    "deal_not_found": "the product has no live deal",
    "sold_out": "the deal has no stock left",
    "limit_exceeded": "the buyer would hold more than the deal's per-user limit",
    "deal_not_active": "the product has no deal taking orders",
    "idempotency_in_progress": "the first request with this Idempotency-Key is still running",
    "already_entered": "the buyer is already in the deal's opening draw (one entry each)",
    "invalid_state": "the order cannot go there from its status",
    "deal_already_active": "the product already has a live deal",
    "insufficient_stock": "the product has fewer units than the deal asks for",
    "rate_limited": "too many order requests from this buyer or address; retry after "
                    "Retry-After",
    "postgres_unavailable": "the order database is down; retry after Retry-After",
    "redis_unavailable": "the stock store is down; retry after Retry-After",
}
# A buyer route's 401s (hotdeal_core/identity.py), answered with WWW-Authenticate.
BEARER_REFUSALS = ("invalid_token", "token_expired")
# No route waits on Kafka (the outbox holds the events while it is down).
UNAVAILABLE = ("postgres_unavailable", "redis_unavailable")
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "integer"}}}


def declared(errors: dict[int, tuple[str, ...]],
             model: type[Any]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a route: each error status with its codes as named examples
    (and a 503 with Retry-After, which every route that reads a dependency can answer; a
    429 has Retry-After too)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, codes in {**errors, 503: UNAVAILABLE}.items():
        examples = {code: {"summary": ERROR_CODES[code], "value": {
            "error": {"code": code, "message": ERROR_CODES[code]}}} for code in codes}
        out[status] = {"model": model, "description": "; ".join(f"`{c}`" for c in codes),
                       "content": {"application/json": {"examples": examples}}}
        if status in (429, 503):
            out[status]["headers"] = _RETRY_AFTER
    return out


def error_response(status: int, code: str, message: str,
                   details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _hotdeal_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HotdealError)
    headers: dict[str, str] | None = None
    if isinstance(exc, TooManyRequests):  # the limiter's wait, in whole seconds
        headers = {"Retry-After": str(exc.retry_after)}
    elif exc.retriable or exc.code == "idempotency_in_progress":
        headers = {"Retry-After": "1"}
    elif exc.code in BEARER_REFUSALS:  # RFC 6750: the client needs a (new) token
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    return error_response(exc.http_status, exc.code, exc.message, headers=headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")}
               for e in exc.errors()]
    return error_response(422, "validation_error", "the request is invalid", details)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def _client_gone(_: Request, exc: Exception) -> JSONResponse:
    # The client hung up while we read its body (a load generator stopping, a timeout):
    # nothing was done, and nobody is left to read an answer.
    log.info("client disconnected before its request was read")
    return error_response(499, "client_closed_request", "the client closed the request")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    retriable = retriable_error(exc)  # an outage wrapped by some other error
    if retriable is not None:
        return await _hotdeal_error(request, retriable)
    log.exception("unexpected error", exc_info=exc)
    return error_response(500, "internal_error", "unexpected error")


class JsonBodyRoute(APIRoute):
    """A route whose body that is no JSON at all (not UTF-8, nested deeper than the parser
    goes) is a 422 `validation_error`, as any other malformed JSON body is and as the
    OpenAPI document says: FastAPI maps only json.JSONDecodeError to a validation error,
    and answers 400 for the rest of what `request.json()` raises."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def parsed(request: Request) -> Response:
            try:
                return await handle(request)
            except StarletteHTTPException as exc:
                cause = exc.__cause__  # FastAPI raises its 400 from what the parse met
                if exc.status_code != 400 or cause is None:
                    raise
                if isinstance(cause, ClientDisconnect):
                    raise cause from None  # gone while its body was read
                if not isinstance(cause, ValueError | RecursionError):
                    raise
                raise RequestValidationError([{
                    "type": "json_invalid", "loc": ("body",), "msg": "JSON decode error",
                    "input": {}, "ctx": {"error": type(cause).__name__}}]) from cause
        return parsed


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]
HANDLERS: dict[type[Exception], Handler] = {
    HotdealError: _hotdeal_error, RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error, ClientDisconnect: _client_gone,
    Exception: _unexpected}


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, handler in HANDLERS.items():
        app.add_exception_handler(exc_type, handler)


async def error_answer(request: Request, exc: Exception) -> JSONResponse:
    """The answer FastAPI gives for `exc` (the handler of its nearest class, as Starlette
    picks it), for code that answers outside FastAPI (order_api/fastpath.py)."""
    for cls in type(exc).__mro__:
        handler = HANDLERS.get(cls)
        if handler is not None:
            return await handler(request, exc)
    return await _unexpected(request, exc)
