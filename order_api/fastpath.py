"""`POST /orders` answered before FastAPI: rate limits, the buyer's token, then a body the
request model accepts is refused from the sold-out memo or placed; anything else goes to
FastAPI unchanged (docs/architecture.md, "In front of FastAPI")."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hotdeal_core.errors import TooManyRequests
from hotdeal_core.observability.metrics import order_outcome
from hotdeal_core.observability.outcomes import Outcome
from hotdeal_core.usecases import orders
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.orders import refused_by_memo
from order_api.buyers import authenticate, claimed
from order_api.errors import error_answer, error_response
from order_api.limits import order_limits
from order_api.observe import OUTCOME
from order_api.responses import order_response
from schemas.http import IdempotencyKey, PlaceOrderRequest

# The message of hotdeal_core.usecases.orders' sold-out Conflict (a test keeps them equal).
SOLD_OUT_MESSAGE = "the product is sold out"
# A larger body is no order the model accepts; it goes to FastAPI unread past this.
MAX_BODY = 4096
_KEY: TypeAdapter[str] = TypeAdapter(IdempotencyKey)  # the route's header check


# The route's answer, built once by the same function (body and headers byte-identical).
_REFUSAL = error_response(409, "sold_out", SOLD_OUT_MESSAGE)


def parse_order(body: bytes) -> PlaceOrderRequest | None:
    """The body as the route's model reads it, else None (FastAPI then answers its 422)."""
    try:  # on the raw bytes: faster than json.loads and a hand check (benchmarks/order_body.py)
        return PlaceOrderRequest.model_validate_json(body)
    except ValidationError:  # not JSON, not UTF-8, too deep, or a field the model refuses
        return None


def _is_json(value: bytes) -> bool:
    return value.split(b";", 1)[0].strip().lower() == b"application/json"


_NO_KEY = ""  # an order request without an Idempotency-Key header


def _is_order(scope: Scope) -> bool:
    return bool(scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/orders")


def _plain_order_request(scope: Scope) -> str | None:
    """For POST /orders with a JSON content type and no Idempotency-Key header or a valid
    one: the key (or _NO_KEY); None for anything else."""
    content_type, key = None, None
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            if key is not None:
                return None  # repeated: FastAPI answers it
            try:  # latin-1, as Starlette decodes a header
                key = _KEY.validate_python(value.decode("latin-1"))
            except ValidationError:
                return None  # invalid: FastAPI answers it
        elif name == b"content-type" and content_type is None:
            content_type = value  # the first one, as Starlette's Headers.get reads it
    if content_type is None or not _is_json(content_type):
        return None
    return _NO_KEY if key is None else key


class SoldOutFastPath:
    """Answer `POST /orders` for a memo'd sold-out product without running FastAPI.

    `state` is the FastAPI app's state: its `ctx` (set by the lifespan) holds the memo."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_order(scope):
            await self.app(scope, receive, send)
            return
        try:  # RATE LIMIT (address): any order request, before its body is read
            order_limits(self.state).check_address(scope)
        except TooManyRequests as exc:
            scope[OUTCOME] = Outcome.RATE_LIMITED
            await _send(send, await _rate_limited(scope, exc))
            return
        ctx: Context | None = getattr(self.state, "ctx", None)  # None before the lifespan
        if ctx is None:
            await self.app(scope, receive, send)
            return
        try:  # the buyer first: no body read, no stock work without a valid token
            buyer = authenticate(self.state, scope)
        except Exception as exc:  # noqa: BLE001 - answered as FastAPI would
            await _answer(scope, send, exc)
            return
        key = _plain_order_request(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        chunks: list[bytes] = []
        size, complete = 0, False
        while size <= MAX_BODY:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break  # a disconnect: FastAPI handles it as it always does
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                complete = True
                break
        if complete and size <= MAX_BODY:
            order = parse_order(b"".join(chunks))
            if order is not None:
                await self._place(scope, send, ctx, buyer, order, key or None)
                return
        await self.app(scope, _replay(read, receive), send)

    async def _place(self, scope: Scope, send: Send, ctx: Context, buyer: str,
                     order: PlaceOrderRequest, key: str | None) -> None:
        """The route's work and answer for a well-formed order: the same use case, the
        same response model and the same error handlers, without FastAPI's machinery."""
        response: Response
        try:
            user_id = claimed(buyer, order.user_id)
        except Exception as exc:  # noqa: BLE001 - answered as FastAPI would
            await _answer(scope, send, exc)
            return
        try:  # RATE LIMIT (buyer): the one call on this path, as the route makes it
            order_limits(self.state).check_buyer(user_id)
        except TooManyRequests as exc:
            scope[OUTCOME] = Outcome.RATE_LIMITED
            await _send(send, await _rate_limited(scope, exc))
            return
        try:  # the memo's key check reads Redis too: its failures are answered the same way
            if await refused_by_memo(ctx, order.product_id, user_id, key):
                response = _REFUSAL
                scope[OUTCOME] = Outcome.SOLD_OUT  # counted by order_api/observe.py
            else:
                placed = await orders.place_order(ctx, orders.PlaceOrder(
                    order.product_id, user_id, order.quantity, key))
                response = JSONResponse(order_response(placed).model_dump(mode="json"),
                                        status_code=202)
                scope[OUTCOME] = Outcome.ACCEPTED
        except Exception as exc:  # noqa: BLE001 - answered as FastAPI would
            await _answer(scope, send, exc)
            return
        await _send(send, response)


async def _answer(scope: Scope, send: Send, exc: Exception) -> None:
    """Send FastAPI's answer to `exc` (order_api/errors.py), counted as the route counts."""
    response = await error_answer(Request(scope), exc)
    scope[OUTCOME] = order_outcome(response.status_code, getattr(exc, "code", None))
    await _send(send, response)


_RATE_LIMITED: dict[tuple[str, str, int], Response] = {}  # the error handler's 429s, by content


async def _rate_limited(scope: Scope, exc: TooManyRequests) -> Response:
    """The error handler's answer to `exc`, built once per message and Retry-After, as the
    sold-out refusal is: built each time it cost ~12 us more (benchmarks/refusals.py)."""
    key = (exc.code, exc.message, exc.retry_after)
    response = _RATE_LIMITED.get(key)
    if response is None:
        if len(_RATE_LIMITED) >= 256:  # as many Retry-After values as a limit has seconds
            _RATE_LIMITED.clear()
        response = _RATE_LIMITED[key] = await error_answer(Request(scope), exc)
    return response


async def _send(send: Send, response: Response) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": list(response.raw_headers)})
    await send({"type": "http.response.body", "body": response.body})


def _replay(read: list[Message], receive: Receive) -> Receive:
    pending = list(read)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()
    return replay
