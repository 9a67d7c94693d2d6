"""The order API's server span, installed only with TRACING_ENABLED: one SERVER span per
request, the root of its order's trace (or the child of the caller's `traceparent`), named
after the route template as the metrics label it."""

from __future__ import annotations

from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hotdeal_core.observability import tracing
from order_api.observe import route_of

_PROPAGATED = (b"traceparent", b"tracestate")


class TracedApp:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        carrier = {name.decode(): value.decode("latin-1") for name, value in scope["headers"]
                   if name in _PROPAGATED}
        if not carrier and not tracing.head_sampled():  # not traced: no span at all
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracing.span(scope["method"], kind=SpanKind.SERVER,
                          parent=tracing.context_of(carrier), root=True) as span:
            try:
                await self.app(scope, receive, traced_send)
            finally:
                if span is not None and span.is_recording():
                    route = route_of(scope)
                    span.update_name(f"{scope['method']} {route}")
                    span.set_attributes({"http.request.method": scope["method"],
                                         "http.route": route,
                                         "http.response.status_code": status})
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)

