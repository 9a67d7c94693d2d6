"""A sold-out refusal answered before FastAPI: routing, dependencies and body validation.

Every `POST /orders` first passes the per-address rate limit here, before its body is read;
a well-formed one then the per-buyer limit, as the route checks it (order_api/limits.py).

Once a deal sells out, nearly every `POST /orders` of a flash sale is refused, and most of
the refusal's cost is framework work per request (docs/scenarios/deal-order-latency.md,
target 3). This pure-ASGI middleware answers the same `409 sold_out` as the route would
when the product is in this process's sold-out memo, and passes anything else through
untouched (the body it read is replayed, message by message).

First of all it checks the buyer's bearer token (order_api/buyers.py, the route's own
check): without a valid one the answer is the route's 401, before the body is read and
before any stock work. Then it answers only what the route would answer the same way:
- a request with an `Idempotency-Key` only if the key holds no reservation (one Redis read,
  `orders.refused_by_memo`, the check `place_order` makes: a retry of an accepted order
  must get its order back), and only a key the route accepts (else FastAPI answers);
- only a body the route would accept: a JSON content type, and a JSON object of exactly
  `product_id`, `quantity` and optionally `user_id`, with the request model's types and
  bounds, checked by hand (`schemas.http.PlaceOrderRequest`); anything else goes to
  FastAPI, so its 422s stay identical; a `user_id` that is not the token's buyer is the
  route's 403;
- only while the memo says sold out, the very check `place_order` makes first. The memo
  only ever refuses more, never sells more.
"""

from __future__ import annotations

import json
import re

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hotdeal_core.errors import TooManyRequests
from hotdeal_core.observability.metrics import order_outcome
from hotdeal_core.usecases import orders
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.orders import refused_by_memo
from order_api.buyers import authenticate, claimed
from order_api.errors import error_answer, error_response
from order_api.limits import order_limits
from order_api.observe import OUTCOME
from order_api.routes import order_response
from schemas.http import BIGINT_LIMIT, MAX_ORDER_QUANTITY

# The message of hotdeal_core.usecases.orders' sold-out Conflict (a test keeps them equal).
SOLD_OUT_MESSAGE = "the product is sold out"
# A larger body is no order the model accepts; it goes to FastAPI unread past this.
MAX_BODY = 4096
_USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")  # schemas.http.UserId, anchored at both ends
_FIELDS = frozenset({"product_id", "user_id", "quantity"})
_REQUIRED = frozenset({"product_id", "quantity"})  # user_id is optional (the token names the buyer)
_KEY = re.compile(rb"[\x21-\x7e]{1,128}")  # the route's Idempotency-Key, anchored


# The route's answer, built once by the same function (body and headers byte-identical).
_REFUSAL = error_response(409, "sold_out", SOLD_OUT_MESSAGE)


def order_product_id(body: bytes) -> int | None:
    """The product id of a body that `PlaceOrderRequest` would accept, else None."""
    buyer = order_buyer(body)
    return None if buyer is None else buyer[0]


def order_buyer(body: bytes) -> tuple[int, str | None] | None:
    """(product id, user id or None) of a body that `PlaceOrderRequest` would accept."""
    order = parse_order(body)
    return None if order is None else (order[0], order[1])


def parse_order(body: bytes) -> tuple[int, str | None, int] | None:
    """(product id, user id or None, quantity) of a body `PlaceOrderRequest` accepts,
    else None."""
    try:
        data = json.loads(body)  # what Starlette's Request.json() does
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None
    if type(data) is not dict or not _REQUIRED <= data.keys() <= _FIELDS:
        return None
    product_id, user_id, quantity = data["product_id"], data.get("user_id"), data["quantity"]
    # StrictInt: an int and not a bool (type() rather than isinstance for that reason).
    if type(product_id) is not int or not 1 <= product_id < BIGINT_LIMIT:
        return None
    if type(quantity) is not int or not 1 <= quantity <= MAX_ORDER_QUANTITY:
        return None
    if user_id is not None and (type(user_id) is not str
                                or _USER_ID.fullmatch(user_id) is None):
        return None
    return product_id, user_id, quantity


def _is_json(value: bytes) -> bool:
    return value.split(b";", 1)[0].strip().lower() == b"application/json"


_NO_KEY = ""  # an order request without an Idempotency-Key header


def _is_order(scope: Scope) -> bool:
    return bool(scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"] == "/orders")


def _plain_order_request(scope: Scope) -> str | None:
    """For POST /orders with a JSON content type and no Idempotency-Key header or a valid
    one: the key (or _NO_KEY); None for anything else."""
    if not _is_order(scope):
        return None
    content_type, key = None, None
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            if key is not None or _KEY.fullmatch(value) is None:
                return None  # repeated or invalid: FastAPI answers it
            key = value.decode()
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
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/orders":
            await self.app(scope, receive, send)
            return
        try:  # RATE LIMIT (address): any order request, before its body is read
            order_limits(self.state).check_address(scope)
        except TooManyRequests as exc:
            scope[OUTCOME] = "rate_limited"
            await _send(send, await _rate_limited(scope, exc))
            return
        ctx: Context | None = getattr(self.state, "ctx", None)  # None before the lifespan
        if ctx is None or not _is_order(scope):
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
                     order: tuple[int, str | None, int], key: str | None) -> None:
        """The route's work and answer for a well-formed order: the same use case, the
        same response model and the same error handlers, without FastAPI's machinery."""
        product_id, claimed_id, quantity = order
        response: Response
        try:
            user_id = claimed(buyer, claimed_id)
        except Exception as exc:  # noqa: BLE001 - answered as FastAPI would
            await _answer(scope, send, exc)
            return
        try:  # RATE LIMIT (buyer): the one call on this path, as the route makes it
            order_limits(self.state).check_buyer(user_id)
        except TooManyRequests as exc:
            scope[OUTCOME] = "rate_limited"
            await _send(send, await _rate_limited(scope, exc))
            return
        try:  # the memo's key check reads Redis too: its failures are answered the same way
            if await refused_by_memo(ctx, product_id, user_id, key):
                response = _REFUSAL
                scope[OUTCOME] = "sold_out"  # counted by order_api/observe.py
            else:
                placed = await orders.place_order(ctx, orders.PlaceOrder(
                    product_id, user_id, quantity, key))
                response = JSONResponse(order_response(placed).model_dump(mode="json"),
                                        status_code=202)
                scope[OUTCOME] = "accepted"
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
