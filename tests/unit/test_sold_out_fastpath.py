"""The sold-out fast path's body check (order_api/fastpath.py) accepts exactly the bodies the
route's model accepts, and what it passes on reaches FastAPI unchanged."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.datastructures import State
from starlette.types import Message, Receive, Scope, Send

from hotdeal_core.identity import BuyerTokens
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore, _Deal
from hotdeal_core.stock.sold_out import SoldOutMemo
from order_api.fastpath import MAX_BODY, SoldOutFastPath, parse_order
from order_api.limits import OrderLimits
from schemas.http import PlaceOrderRequest
from tests.buyers import buyer_token
from tests.closed_ports import store_on_a_closed_port


def _route_reads(body: bytes) -> PlaceOrderRequest | None:
    try:
        return PlaceOrderRequest.model_validate(json.loads(body))  # what the route does
    except (ValueError, RecursionError, ValidationError):
        return None


def test_a_valid_order_body_yields_the_order() -> None:
    order = parse_order(b'{"product_id": 7, "user_id": "u-1", "quantity": 2}')
    assert order is not None and (order.product_id, order.user_id, order.quantity) == (7, "u-1", 2)


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1]", b'"x"', b"\xff\xfe", b"[" * (MAX_BODY - 1),
    b'{"product_id": 7, "user_id": "u-1"}',
    b'{"product_id": 7, "user_id": "u-1", "quantity": 1, "extra": 0}',
    b'{"product_id": true, "user_id": "u-1", "quantity": 1}',
    b'{"product_id": 7.0, "user_id": "u-1", "quantity": 1}',
    b'{"product_id": "7", "user_id": "u-1", "quantity": 1}',
    b'{"product_id": 0, "user_id": "u-1", "quantity": 1}',
    b'{"product_id": 9223372036854775808, "user_id": "u-1", "quantity": 1}',
    b'{"product_id": 7, "user_id": "u-1", "quantity": 0}',
    b'{"product_id": 7, "user_id": "u-1", "quantity": 101}',
    b'{"product_id": 7, "user_id": "u-1", "quantity": false}',
    b'{"product_id": 7, "user_id": "", "quantity": 1}',
    b'{"product_id": 7, "user_id": "u 1", "quantity": 1}',
    b'{"product_id": 7, "user_id": "u-1\\n", "quantity": 1}',
    b'{"product_id": 7, "user_id": "' + b"u" * 129 + b'", "quantity": 1}',
    b'{"product_id": 7, "user_id": 1, "quantity": 1}',
])
def test_a_body_the_model_refuses_yields_nothing(body: bytes) -> None:
    assert _route_reads(body) is None
    assert parse_order(body) is None


@pytest.mark.parametrize("body", [
    b'{"product_id": 7, "product_id": 8, "quantity": 1}',
    b'{"product_id": 7, "quantity": 1, "user_id": "x y", "user_id": "u-1"}',
    b'{"product_id": 7, "quantity": 1, "user_id": "u\\u002d1"}',
])
def test_a_repeated_or_escaped_field_reads_as_the_route_reads_it(body: bytes) -> None:
    assert parse_order(body) == _route_reads(body) is not None


_near_ints = st.one_of(st.integers(-2, 3), st.integers(99, 101),
                       st.integers(2**63 - 2, 2**63 + 1), st.booleans(), st.floats(0, 3),
                       st.text(max_size=3), st.none())
_user_ids = st.one_of(st.from_regex(r"[A-Za-z0-9_.:@-]{1,3}", fullmatch=True),
                      st.text(max_size=4), st.just("u" * 128), st.just("u" * 129), st.integers())
_bodies = st.dictionaries(
    st.sampled_from(["product_id", "user_id", "quantity", "other"]),
    st.one_of(_near_ints, _user_ids), max_size=4).map(lambda d: json.dumps(d).encode())


@fuzz_settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(_bodies, st.builds(
    lambda p, u, q: json.dumps({"product_id": p, "user_id": u, "quantity": q}).encode(),
    _near_ints, _user_ids, _near_ints)))
def test_the_fast_parse_agrees_with_the_request_model(body: bytes) -> None:
    assert parse_order(body) == _route_reads(body)


async def _through(app: SoldOutFastPath, scope: Scope, messages: list[Message]
                   ) -> list[Message]:
    """Run `app` on `messages`; returns what it sent."""
    incoming, sent = list(messages), []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
    await app(scope, receive, send)
    return sent


AUTH = (b"authorization", f"Bearer {buyer_token('u-1')}".encode())  # buyer u-1


def _scope(*headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "method": "POST", "path": "/orders",
            "headers": [(b"content-type", b"application/json"), AUTH, *headers]}


class _Downstream:
    """Stands for FastAPI: reads the whole body it is handed and answers 204."""

    def __init__(self) -> None:
        self.received: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _app_state() -> State:
    """What create_app puts in its state before the lifespan: no rate limits here (they
    are tests/unit/test_order_limits.py's)."""
    state = State()
    state.order_limits = OrderLimits(None, None)
    return state


def _state(*sold_out: int) -> State:
    """A ctx whose memo holds `sold_out`, and whose stock store knows that buyer u-1's key
    k-1 reserved on product 7 (its first answer exists)."""
    memo = SoldOutMemo(3600)
    for product_id in sold_out:
        memo.remember(product_id)
    stock = FakeStockStore()
    stock.deals[7] = _Deal(1, 0, 1, 1, 100, idem={("u-1", "k-1"): uuid.uuid4()})
    state = _app_state()
    state.ctx = type("Ctx", (), {"sold_out": memo, "stock": stock})()
    state.buyer_tokens = BuyerTokens(Settings(_env_file=None))
    return state


BODY = b'{"product_id": 7, "user_id": "u-1", "quantity": 1}'
CHUNKS: list[Message] = [{"type": "http.request", "body": BODY[:10], "more_body": True},
                         {"type": "http.request", "body": BODY[10:], "more_body": False}]


async def test_a_chunked_body_is_refused_for_a_memod_product() -> None:
    downstream = _Downstream()
    sent = await _through(SoldOutFastPath(downstream, _state(7)), _scope(), CHUNKS)
    assert sent[0]["status"] == 409 and not downstream.received
    assert json.loads(sent[1]["body"])["error"]["code"] == "sold_out"


@pytest.mark.parametrize("scope", [
    _scope((b"idempotency-key", b"k-new")), _scope((b"idempotency-key", b"k-1x")),
    _scope((b"idempotency-key", b"k" * 128))], ids=["new-key", "another-key", "longest-key"])
async def test_a_new_idempotency_key_on_a_memod_product_is_refused(scope: Scope) -> None:
    downstream = _Downstream()
    sent = await _through(SoldOutFastPath(downstream, _state(7)), scope, CHUNKS)
    assert sent[0]["status"] == 409 and not downstream.received


@pytest.mark.parametrize(("scope", "memod"), [
    (_scope((b"idempotency-key", b"")), 7),  # an invalid key: FastAPI answers it
    (_scope((b"idempotency-key", b"k 1")), 7),
    (_scope((b"idempotency-key", b"k\xe9")), 7),
    (_scope((b"idempotency-key", b"k" * 129)), 7),
    (_scope((b"idempotency-key", b"k-2"), (b"idempotency-key", b"k-3")), 7),
    ({**_scope(), "headers": [(b"content-type", b"text/plain"), AUTH]}, 7),
    ({**_scope(), "headers": [AUTH]}, 7),  # no content type: the route's strict parse refuses it
    ({**_scope(), "path": "/orders/"}, 7),
    ({**_scope(), "method": "PUT"}, 7),
], ids=["empty-key", "spaced-key", "latin-1-key", "long-key", "two-keys", "text-plain",
        "no-content-type", "slash", "put"])
async def test_anything_else_reaches_fastapi_with_its_body_unchanged(scope: Scope,
                                                                     memod: int) -> None:
    downstream = _Downstream()
    sent = await _through(SoldOutFastPath(downstream, _state(memod)), scope, CHUNKS)
    assert sent[0]["status"] == 204
    assert downstream.received == CHUNKS


async def test_a_body_too_large_for_an_order_is_passed_on_whole() -> None:
    big: list[Message] = [{"type": "http.request", "body": b" " * 3000, "more_body": True}
                          for _ in range(3)]
    big.append({"type": "http.request", "body": BODY, "more_body": False})
    downstream = _Downstream()
    sent = await _through(SoldOutFastPath(downstream, _state(7)), _scope(), big)
    assert sent[0]["status"] == 204 and downstream.received == big


async def test_before_the_lifespan_ran_everything_reaches_fastapi() -> None:
    downstream = _Downstream()
    sent = await _through(SoldOutFastPath(downstream, _app_state()), _scope(), CHUNKS)
    assert sent[0]["status"] == 204 and downstream.received == CHUNKS


async def test_a_keyed_order_while_redis_is_down_is_a_503_with_retry_after() -> None:
    # The memo's key check reads Redis (`key_used`): with Redis down (here a closed port)
    # the fast path answers what the route would, never a 500.
    memo = SoldOutMemo(3600)
    memo.remember(7)
    store, redis = store_on_a_closed_port()
    state = _app_state()
    state.ctx = type("Ctx", (), {"sold_out": memo, "stock": store})()
    state.buyer_tokens = BuyerTokens(Settings(_env_file=None))
    downstream = _Downstream()
    try:
        sent = await _through(SoldOutFastPath(downstream, state),
                              _scope((b"idempotency-key", b"k-9")), CHUNKS)
    finally:
        await redis.aclose(close_connection_pool=True)
    assert sent[0]["status"] == 503 and not downstream.received
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "redis_unavailable"
