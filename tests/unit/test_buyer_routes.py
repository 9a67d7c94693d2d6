"""The buyer routes' token check (order_api/buyers.py) at the fast path and in FastAPI alone,
without services: a request without a valid token is a 401 before its body is read and
before any stock work; a body's user_id must be the token's buyer."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Scope

from hotdeal_core.settings import Settings
from order_api.app import create_app
from order_api.fastpath import SoldOutFastPath, parse_order
from tests.buyers import buyer_token, without_fast_path
from tests.unit.test_buyer_tokens import expired, forged, unsigned
from tests.unit.test_sold_out_fastpath import BODY, _Downstream, _state

BEARER_REFUSAL = (b"www-authenticate", b'Bearer error="invalid_token"')
# Authorization header values that carry no valid buyer token, and the code each gets.
BAD: list[tuple[str, bytes | None, str]] = [
    ("none", None, "invalid_token"),
    ("not-bearer", b"Token abc", "invalid_token"),
    ("empty-bearer", b"Bearer ", "invalid_token"),
    ("malformed", b"Bearer not.a.jwt", "invalid_token"),
    ("forged", b"Bearer " + forged("u-1").encode(), "invalid_token"),
    ("alg-none", b"Bearer " + unsigned("u-1").encode(), "invalid_token"),
    ("expired", b"Bearer " + expired("u-1").encode(), "token_expired"),
]


def _scope(authorization: bytes | None) -> Scope:
    headers = [(b"content-type", b"application/json")]
    if authorization is not None:
        headers.append((b"authorization", authorization))
    return {"type": "http", "method": "POST", "path": "/orders", "headers": headers}


async def _run(app: SoldOutFastPath, scope: Scope, body: bytes
               ) -> tuple[list[Message], int]:
    """What `app` sent, and how many body messages it read."""
    sent: list[Message] = []
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)
    await app(scope, receive, send)
    return sent, reads


@pytest.mark.parametrize(("authorization", "code"), [(a, c) for _, a, c in BAD],
                         ids=[name for name, _, _ in BAD])
async def test_the_fast_path_refuses_a_request_without_a_valid_token_before_reading_it(
        authorization: bytes | None, code: str) -> None:
    downstream, state = _Downstream(), _state()  # nothing memo'd: an order would reserve
    deal = state.ctx.stock.deals[7]
    deal.stock = 5
    sent, reads = await _run(SoldOutFastPath(downstream, state), _scope(authorization), BODY)
    assert sent[0]["status"] == 401 and BEARER_REFUSAL in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == code
    assert reads == 0 and not downstream.received  # no body read, no route, no stock work
    assert deal.stock == 5 and not deal.res and not deal.users


async def test_the_fast_path_refuses_a_body_naming_another_buyer_with_403() -> None:
    downstream, state = _Downstream(), _state(7)
    sent, _ = await _run(SoldOutFastPath(downstream, state),
                         _scope(f"Bearer {buyer_token('u-2')}".encode()), BODY)  # BODY: u-1
    assert sent[0]["status"] == 403 and not downstream.received
    assert json.loads(sent[1]["body"])["error"]["code"] == "buyer_mismatch"


async def test_the_fast_path_takes_a_body_without_user_id_as_the_tokens_buyer() -> None:
    downstream, state = _Downstream(), _state(7)  # memo'd: the answer is the memo's 409
    sent, _ = await _run(SoldOutFastPath(downstream, state),
                         _scope(f"Bearer {buyer_token('u-2')}".encode()),
                         b'{"product_id": 7, "quantity": 1}')
    assert sent[0]["status"] == 409 and not downstream.received


@pytest.mark.parametrize(("body", "parsed"), [
    (b'{"product_id": 7, "quantity": 2}', (7, None, 2)),
    (b'{"product_id": 7, "user_id": null, "quantity": 2}', (7, None, 2)),
    (b'{"product_id": 7, "user_id": "u-1", "quantity": 2}', (7, "u-1", 2)),
])
def test_the_fast_parse_reads_an_optional_user_id(body: bytes,
                                                  parsed: tuple[int, str | None, int]) -> None:
    order = parse_order(body)
    assert order is not None and (order.product_id, order.user_id, order.quantity) == parsed


def _fastapi_alone() -> FastAPI:
    """The app without the fast path (its ctx never reached: each answer is refused first)."""
    settings = Settings(_env_file=None)
    app = without_fast_path(create_app(settings))
    app.state.ctx = SimpleNamespace(settings=settings)
    return app


async def _call(app: FastAPI, method: str, url: str, **kw: object) -> httpx.Response:
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, url, **kw)  # type: ignore[arg-type]


ORDER = "2b1d3c0e-7a4f-4b8e-9a51-5f0d2c6e8a11"
ROUTES: list[tuple[str, str, Callable[[], bytes]]] = [
    ("POST", "/orders", lambda: BODY), ("GET", f"/orders/{ORDER}", lambda: b""),
    ("POST", f"/orders/{ORDER}/cancel", lambda: b'{"user_id": "u-1"}')]


@pytest.mark.parametrize(("method", "path", "_body"), ROUTES, ids=["place", "get", "cancel"])
@pytest.mark.parametrize(("authorization", "code"), [(a, c) for _, a, c in BAD],
                         ids=[name for name, _, _ in BAD])
async def test_fastapi_refuses_each_buyer_route_without_a_valid_token(
        method: str, path: str, _body: Callable[[], bytes], authorization: bytes | None,
        code: str) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.decode()}
    response = await _call(_fastapi_alone(), method, path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("path", ["/orders", f"/orders/{ORDER}/cancel"])
@pytest.mark.parametrize("body", [b"{not json", b'{"product_id": "x"}', b"\xc3\x28"])
async def test_fastapi_answers_401_before_validating_the_body_and_422_with_a_token(
        path: str, body: bytes) -> None:
    app, json_type = _fastapi_alone(), {"Content-Type": "application/json"}
    anonymous = await _call(app, "POST", path, content=body, headers=json_type)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_token"
    signed = await _call(app, "POST", path, content=body, headers={
        **json_type, "Authorization": f"Bearer {buyer_token('u-1')}"})
    assert signed.status_code == 422 and signed.json()["error"]["code"] == "validation_error"


async def test_fastapi_refuses_a_cancel_body_naming_another_buyer_with_403() -> None:
    response = await _call(_fastapi_alone(), "POST", f"/orders/{ORDER}/cancel",
                           json={"user_id": "u-2"},
                           headers={"Authorization": f"Bearer {buyer_token('u-1')}"})
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "buyer_mismatch"
