"""What the order API records per request (duration by route template and status; the
`POST /orders` outcome, left in the scope by the fast path or read from a refusal's body),
and its /metrics answer. Cost: docs/observability.md, "Cost on the order path"."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client.core import Metric
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hotdeal_core.bootstrap.resources import Resources
from hotdeal_core.observability.exposition import (
    CONTENT_TYPE,
    deal_families,
    read_or_skip,
    render,
)
from hotdeal_core.observability.metrics import count_order, http_observer, order_outcome
from hotdeal_core.observability.outcomes import error_code
from hotdeal_core.usecases import audit

log = logging.getLogger(__name__)
OUTCOME = "hotdeal.order_outcome"  # the scope key the fast path sets
ORDERS_ROUTE = "/orders"
UNMATCHED = "unmatched"  # no route: a 404 (any path a client makes up is one label)


def route_of(scope: Scope) -> str:
    """The matched route's template (a label; also the server span's name)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return ORDERS_ROUTE if OUTCOME in scope else UNMATCHED


def _error_code(body: bytes) -> str | None:
    try:
        return error_code(json.loads(body))
    except ValueError:  # not JSON, not UTF-8
        return None


class ObservedApp:
    def __init__(self, app: ASGIApp, log_requests: bool = False) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts: an exception becomes Starlette's 500
        is_order = scope["method"] == "POST" and scope["path"] == ORDERS_ROUTE
        # The fast path leaves its outcome in the scope; a refusal FastAPI answered gives
        # its error code in its body (small, and rare next to the fast path's).
        refusal: list[bytes] = []

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif is_order and status >= 400 and OUTCOME not in scope:
                refusal.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - start
            route = route_of(scope)
            http_observer(route, status)(elapsed)
            if is_order:
                outcome = scope.get(OUTCOME)
                count_order(outcome if outcome is not None else order_outcome(
                    status, _error_code(b"".join(refusal)) if refusal else None))
            if self.log_requests:
                log.info("%s %s %s %.1f ms", scope["method"], route, status, elapsed * 1000)


async def metrics_response(resources: Resources) -> Response:
    """GET /metrics: everything recorded (by every worker), the outbox and the live deals."""
    async def deals() -> list[Metric]:
        return deal_families(await audit.audit_live_deals(resources.ctx))
    families: list[Any] = [*await resources.metric_families(),
                           *await read_or_skip("the deal audit", deals())]
    return Response(render(families), media_type=CONTENT_TYPE)
