"""A property-based sweep of the HTTP edge on the real services: whatever a client sends to a
route, the status is one the OpenAPI document lists, never a 5xx but a mapped 503, and every
error has the error shape. Generated ids never reach other sessions' rows (shared database)."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import pytest
from asgi_lifespan import LifespanManager
from hypothesis import Phase, event, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from hotdeal_core import signature
from hotdeal_core.settings import Settings
from hotdeal_core.usecases import deals, products
from order_api.app import create_app
from tests.buyers import buyer_token
from tests.random_refs import random_name, random_user

FUZZ = fuzz_settings(max_examples=150, deadline=None, database=None)
SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*")
PAYMENT_PREFIX = f"fuzz-{uuid.uuid4().hex[:8]}-"
USERS = [random_user("fuzz") for _ in range(5)]
BUYER_BEARERS = [f"Bearer {buyer_token(user)}".encode() for user in USERS]
# An id another session's rows may have (sequences start at 1 and never get near 2**62).
_FOREIGN_ID = TypeAdapter(Annotated[int, Field(ge=1, lt=2**62)])


@dataclass
class Api:
    client: httpx.AsyncClient
    product_id: int  # this module's product, with a live Redis deal
    admin_token: str
    webhook_secret: str
    document: dict[str, Any]  # the app's OpenAPI document
    orders: list[tuple[str, int]] = field(default_factory=list)  # placed: (id, total)


@pytest.fixture(scope="module")
async def api() -> AsyncIterator[Api]:
    settings = Settings(_env_file=None)
    app = create_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30):
        ctx = app.state.ctx
        product = await products.create_product(ctx, random_name("fuzz"), 1000, 1000)
        # Fewer units than the buyers may hold: the sweep reaches sold out too.
        await deals.start_deal(ctx, deals.StartDeal(product.id, 10, 3, 3600))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                     base_url="http://test") as client:
            yield Api(client, product.id, settings.admin_token.get_secret_value(),
                      settings.payment_webhook_secret.get_secret_value(), app.openapi())
    # open_resources closes its Redis client but not the pool it was given (redis-py
    # closes only a pool it made itself): close it, or its sockets outlive the loop.
    await app.state.resources.redis.connection_pool.aclose()


def check(response: httpx.Response, api: Api | None = None, route: str | None = None
          ) -> None:
    """No 5xx but a mapped 503, errors in the error shape; with `route` (a path of the
    document), a status the document lists for it."""
    event(f"{response.request.method} {response.status_code}")  # --hypothesis-show-statistics
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    declared: dict[str, Any] = {}
    if api is not None and route is not None:
        declared = api.document["paths"][route][response.request.method.lower()]["responses"]
        assert str(response.status_code) in declared, f"{where}, not in {sorted(declared)}: " \
                                                      f"{response.text[:300]}"
    if response.status_code >= 500:
        assert response.status_code == 503, f"{where}: {response.text}"
        assert "retry-after" in response.headers, where
    # /readyz documents its own 503 body (which checks failed); every other error is ours.
    if response.status_code >= 400 and not (route == "/readyz" and response.status_code == 503):
        error = response.json()["error"]
        assert SNAKE_CASE.fullmatch(error["code"]), where
        assert isinstance(error["message"], str), where
        if response.status_code == 503:
            assert error["code"].endswith("_unavailable"), where


# JSON strings may carry anything, lone surrogates included ("\ud800" escapes).
TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


def mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` about four times out of five, else `odd`."""
    return st.integers(0, 4).flatmap(lambda n: odd if n == 0 else usual)


MISSING = object()  # a field left out
# The classic troublemakers: int64 and float limits, NUL, a lone surrogate, long text.
INT_EDGES = [0, -1, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400]
EDGES = [MISSING, None, True, 1.5, float("inf"), float("nan"), "", "1", "\x00", "a\x00b",
         "\ud800", "\u00e9" * 200, [], {}, *INT_EDGES]
ODD = mostly(st.sampled_from(EDGES), JSON)
ODD_INT = mostly(st.sampled_from(INT_EDGES), ODD)
# Header values as an HTTP/1.1 server passes them on: any byte but NUL, CR and LF (h11 and
# httptools refuse those), read as latin-1; UTF-8 text arrives as its bytes.
HEADER_VALUES = (st.text(st.characters(min_codepoint=1, max_codepoint=255,
                                       exclude_characters="\r\n"), max_size=160)
                 .map(lambda s: s.encode("latin-1"))
                 | st.text(max_size=40).map(str.encode)
                 .filter(lambda b: not {0, 10, 13} & set(b)))
BAD_SIGNATURES = st.one_of(
    # A fresh timestamp, to reach the comparison of the v1 values.
    HEADER_VALUES.map(lambda v1: f"t={int(time.time())},v1=".encode() + v1),
    st.sampled_from(INT_EDGES).map(lambda t: f"t={t},v1=0".encode()), HEADER_VALUES)
# Bodies that are no JSON at all: not UTF-8 (a bare continuation byte, latin-1 text), a
# UTF-16 BOM, nested deeper than the parser goes.
NOT_JSON = [b"\x80", b"\xc3\x28", b'{"user_id": "\xe9"}', b"\xff\xfe{}", b"[" * 3000 + b"]" * 3000]
ANYTHING = st.one_of(JSON.map(json.dumps).map(str.encode), st.binary(max_size=100),
                     st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
                     st.sampled_from(NOT_JSON))  # as a body


def near_valid(valid: Mapping[str, st.SearchStrategy[Any]],
               odd: Mapping[str, st.SearchStrategy[Any]] | None = None,
               ) -> st.SearchStrategy[bytes]:
    """Mostly a JSON object with one field odd (an edge, missing, any JSON) and the others
    valid; else all valid, or any fields odd and perhaps one unknown; else anything."""
    def odd_of(name: str) -> st.SearchStrategy[Any]:
        return (odd or {}).get(name, ODD)

    one_odd = st.sampled_from(sorted(valid)).flatmap(
        lambda name: st.fixed_dictionaries({**valid, name: odd_of(name)}))
    some_odd = st.tuples(
        st.fixed_dictionaries({name: mostly(valid[name], odd_of(name)) for name in valid}),
        st.dictionaries(TEXT, JSON, max_size=1)).map(lambda both: {**both[1], **both[0]})
    close = mostly(one_odd, st.fixed_dictionaries(valid) | some_odd)
    # json.dumps writes ASCII (surrogates as escapes) and NaN/Infinity, which json reads.
    encoded = close.map(lambda fields: json.dumps(
        {k: v for k, v in fields.items() if v is not MISSING}).encode())
    return mostly(encoded, ANYTHING)


def headers(api: Api) -> st.SearchStrategy[dict[bytes, bytes]]:
    bearer = f"Bearer {api.admin_token}".encode()
    return st.fixed_dictionaries({
        # Without a JSON content type FastAPI does not even parse the body.
        b"Content-Type": mostly(st.just(b"application/json"), HEADER_VALUES),
        # Mostly the admin's or a buyer's, to get past require_admin on the admin routes
        # and the buyer check on the buyer routes.
        b"Authorization": mostly(st.sampled_from([bearer, *BUYER_BEARERS]), HEADER_VALUES
                                 | HEADER_VALUES.map(lambda b: b"Bearer " + b)),
    }, optional={
        b"Idempotency-Key": mostly(st.uuids().map(lambda u: u.hex.encode()), HEADER_VALUES),
        b"X-Payment-Signature": BAD_SIGNATURES,
    })


def order_bodies(api: Api) -> st.SearchStrategy[bytes]:
    def foreign(value: Any) -> bool:  # StrictInt takes an int only, not a bool or float
        return type(value) is int and 1 <= value < 2**62 and value != api.product_id

    return near_valid(
        {"product_id": st.just(api.product_id), "user_id": st.sampled_from(USERS),
         "quantity": st.integers(1, 3)},
        {"product_id": ODD_INT.filter(lambda v: not foreign(v)), "quantity": ODD_INT})


def order_ids(api: Api) -> st.SearchStrategy[str]:
    known = st.sampled_from([order_id for order_id, _ in api.orders]) if api.orders \
        else st.nothing()
    return known | st.uuids().map(str)


def payment_bodies(api: Api) -> st.SearchStrategy[bytes]:
    known = st.sampled_from(api.orders) if api.orders else st.nothing()
    # A payment of one of this module's orders, for its total or not, or of no order.
    paid = known | st.tuples(st.uuids().map(str), st.integers(0, 10**6))
    return paid.flatmap(lambda order: near_valid(
        {"payment_id": TEXT.map(lambda s: PAYMENT_PREFIX + s), "order_id": st.just(order[0]),
         "status": st.sampled_from(["succeeded", "failed"]),
         "amount": st.just(order[1]) | st.integers(0, 10**6)},
        {"payment_id": ODD.map(lambda v: PAYMENT_PREFIX + v if isinstance(v, str) else v),
         "amount": ODD_INT}))




def segments(api: Api, template: str) -> st.SearchStrategy[str]:
    """A path segment, mostly of the route's kind, that never names another session's
    product (nor contains a "/")."""
    def foreign(segment: str) -> bool:
        try:
            return _FOREIGN_ID.validate_python(segment) != api.product_id
        except ValidationError:
            return False

    usual = st.just(str(api.product_id)) | st.sampled_from(INT_EDGES).map(str) \
        if template.startswith("/products") else order_ids(api)
    odd = st.text(st.characters(codec="utf-8"), max_size=40) | ODD.map(str)
    return mostly(usual, odd).filter(lambda s: "/" not in s and not foreign(s))


@FUZZ
@given(data=st.data())
async def test_placing_orders_never_fails_on_the_server(api: Api, data: st.DataObject) -> None:
    response = await api.client.post("/orders", content=data.draw(order_bodies(api)),
                                     headers=data.draw(headers(api)))
    check(response, api, "/orders")
    if response.status_code == 202:
        api.orders.append((response.json()["order_id"], response.json()["total"]))


@FUZZ
@given(data=st.data())
async def test_payment_callbacks_never_fail_on_the_server(api: Api, data: st.DataObject) -> None:
    body = data.draw(payment_bodies(api))
    sent = data.draw(headers(api))
    bad = data.draw(mostly(st.none(), BAD_SIGNATURES), label="bad signature")
    # Mostly signed, to get past the signature into the body.
    sent[b"X-Payment-Signature"] = signature.sign(
        api.webhook_secret, int(time.time()), body).encode() if bad is None else bad
    check(await api.client.post("/payments/webhook", content=body, headers=sent), api,
          "/payments/webhook")


NO_BODY = st.none()
CANCEL = near_valid({"user_id": st.sampled_from(USERS)})
START = near_valid({"stock": st.integers(1, 5), "per_user_limit": st.integers(1, 3),
                    "duration_seconds": st.floats(1, 3600)},
                   {"stock": ODD_INT, "per_user_limit": ODD_INT})
# A segment for {product_id} or {order_id}: never one that URL normalization removes.
DOT_SEGMENTS = {"", ".", ".."}


def documented_routes(api: Api) -> list[tuple[str, str]]:
    """(method, path template) of every operation of the OpenAPI document."""
    return sorted((method.upper(), path) for path, operations in api.document["paths"].items()
                  for method in operations)


def route_body(api: Api, method: str, path: str) -> st.SearchStrategy[bytes | None]:
    """Mostly a body shaped for the route (none if it takes none), else anything."""
    bodies: dict[str, st.SearchStrategy[bytes | None]] = {
        "/orders": order_bodies(api), "/orders/{order_id}/cancel": CANCEL,
        "/products/{product_id}/hotdeal/start": START, "/payments/webhook": payment_bodies(api)}
    operation = api.document["paths"][path][method.lower()]
    assert ("requestBody" in operation) == (path in bodies), f"{method} {path}: a body?"
    return mostly(bodies.get(path, NO_BODY), ANYTHING)


# Without shrinking. Measured: with the app's lifespan running in the test's loop, any
# failure of this test makes Hypothesis report FlakyStrategyDefinition instead (the same
# test passes or fails cleanly without the fixture), so each violation is printed before
# it raises: the report's captured output names the request and its answer.
@fuzz_settings(max_examples=400, deadline=None, database=None, phases=[Phase.generate])
@given(data=st.data())
async def test_every_documented_route_answers_only_what_the_document_lists(
        api: Api, data: st.DataObject) -> None:
    method, template = data.draw(st.sampled_from(documented_routes(api)), label="route")
    path = template
    for name in re.findall(r"{(\w+)}", template):
        kind = "/products/{}" if name == "product_id" else "/orders/{}"
        segment = data.draw(segments(api, kind).filter(lambda s: s not in DOT_SEGMENTS),
                            label=name)
        # Percent-encoded bytes, invalid UTF-8 too (a lone surrogate's).
        path = path.replace(f"{{{name}}}", quote(segment, safe="", errors="surrogatepass"))
    body = data.draw(route_body(api, method, template), label="body")
    sent = data.draw(headers(api))
    if template == "/payments/webhook" and body is not None and \
            data.draw(st.booleans(), label="signed"):
        sent[b"X-Payment-Signature"] = signature.sign(api.webhook_secret, int(time.time()),
                                                      body).encode()
    response = await api.client.request(method, path, content=body, headers=sent)
    try:
        check(response, api, template)
    except AssertionError as exc:
        print(f"VIOLATION {exc}")  # see the settings above
        raise


UNDOCUMENTED = [("GET", "/{}", NO_BODY), ("DELETE", "/orders/{}", CANCEL),
                ("PUT", "/products/{}", START)]


@FUZZ
@given(data=st.data())
async def test_a_path_outside_the_document_never_fails_on_the_server(
        api: Api, data: st.DataObject) -> None:
    method, template, body = data.draw(st.sampled_from(UNDOCUMENTED), label="route")
    segment = data.draw(segments(api, template), label="segment")
    path = template.format(quote(segment, safe="", errors="surrogatepass"))
    check(await api.client.request(method, path, content=data.draw(mostly(body, ANYTHING)),
                                   headers=data.draw(headers(api))))
