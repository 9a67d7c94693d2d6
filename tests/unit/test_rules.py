"""The rules, with fakes and pure functions (no services)."""

from __future__ import annotations

import time
import uuid

import pytest
from pydantic import ValidationError

from hotdeal_core.domain import OrderStatus, can_transition
from hotdeal_core.errors import Unauthorized
from hotdeal_core.signature import sign, verify
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.port import ReleaseOutcome, ReserveOutcome
from schemas.events import OrderPlaced, order_event_adapter
from schemas.http import PlaceOrderRequest


async def _store(stock: int, limit: int = 1) -> FakeStockStore:
    store = FakeStockStore()
    assert await store.open(7, 1, stock, limit, epoch=1, unit_price=10)
    return store


async def test_fake_store_sells_the_last_unit_once_and_refuses_the_rest() -> None:
    store = await _store(1)
    first = await store.reserve(7, uuid.uuid4(), "a", 1, None)
    second = await store.reserve(7, uuid.uuid4(), "b", 1, None)
    assert (first.outcome, second.outcome) == (ReserveOutcome.RESERVED, ReserveOutcome.SOLD_OUT)


async def test_duplicate_click_is_detected_before_any_stock_moves() -> None:
    store = await _store(5, limit=5)
    first = uuid.uuid4()
    await store.reserve(7, first, "a", 1, "key")
    again = await store.reserve(7, uuid.uuid4(), "a", 1, "key")
    assert again.outcome is ReserveOutcome.DUPLICATE and again.first_order_id == first
    assert (await store.snapshot(7)).stock == 4


async def test_per_user_limit_counts_units_not_orders() -> None:
    store = await _store(10, limit=3)
    assert (await store.reserve(7, uuid.uuid4(), "a", 2, None)).outcome \
        is ReserveOutcome.RESERVED
    assert (await store.reserve(7, uuid.uuid4(), "a", 2, None)).outcome \
        is ReserveOutcome.LIMIT_EXCEEDED


async def test_release_is_exactly_once_and_refused_once_closed() -> None:
    store = await _store(2)
    order = uuid.uuid4()
    await store.reserve(7, order, "a", 1, None)
    assert await store.release(7, order) is ReleaseOutcome.RELEASED
    assert await store.release(7, order) is ReleaseOutcome.NO_RESERVATION
    other = uuid.uuid4()
    await store.reserve(7, other, "a", 1, None)
    assert await store.close(7, 1)
    assert await store.release(7, other) is ReleaseOutcome.NOT_OPEN
    assert (await store.reserve(7, uuid.uuid4(), "b", 1, None)).outcome \
        is ReserveOutcome.NOT_ACTIVE


def test_order_status_moves_only_forward_from_pending() -> None:
    assert can_transition(OrderStatus.PENDING, OrderStatus.CONFIRMED)
    assert can_transition(OrderStatus.PENDING, OrderStatus.CANCELLED)
    assert not can_transition(OrderStatus.CANCELLED, OrderStatus.CONFIRMED)
    assert not can_transition(OrderStatus.CONFIRMED, OrderStatus.CANCELLED)
    assert can_transition(OrderStatus.PENDING, OrderStatus.CONFIRMED, paid=True)
    assert not can_transition(OrderStatus.PENDING, OrderStatus.CANCELLED, paid=True)


def test_signature_round_trip_and_refusals() -> None:
    body, now = b'{"a":1}', int(time.time())
    verify("s", sign("s", now, body), body, now, 300)
    for header, at in [(None, now), ("", now), ("t=x,v1=ab", now),
                       (sign("other", now, body), now), (sign("s", now, body + b" "), now),
                       (sign("s", now - 301, body), now)]:
        with pytest.raises(Unauthorized):
            verify("s", header, body, at, 300)


def test_events_carry_the_common_fields_and_parse_by_type() -> None:
    event = OrderPlaced(order_id=uuid.uuid4(), product_id=1, hot_deal_id=None, user_id="u",
                        quantity=1, unit_price=5, expires_at="2030-01-01T00:00:00Z")
    parsed = order_event_adapter.validate_json(event.model_dump_json())
    assert parsed == event and parsed.version == 1 and parsed.type == "OrderPlaced"
    with pytest.raises(ValidationError):
        order_event_adapter.validate_json(b'{"type": "OrderShipped"}')


def test_order_request_refuses_strings_for_numbers_and_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        PlaceOrderRequest.model_validate({"product_id": "1", "user_id": "u", "quantity": 1})
    with pytest.raises(ValidationError):
        PlaceOrderRequest.model_validate({"product_id": 1, "user_id": "u", "quantity": 1,
                                          "x": 1})
    with pytest.raises(ValidationError):
        PlaceOrderRequest.model_validate({"product_id": 1, "user_id": "a\tb", "quantity": 1})
