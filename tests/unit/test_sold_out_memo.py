"""The sold-out memo only ever refuses more, and forgets after its window."""

from __future__ import annotations

import time
import uuid

import pytest

from hotdeal_core.errors import Conflict
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.sold_out import SoldOutMemo
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.orders import PlaceOrder, place_order


def test_memo_remembers_within_its_window_and_forgets_after() -> None:
    memo = SoldOutMemo(60)
    assert not memo.sold_out(1)
    memo.remember(1)
    assert memo.sold_out(1) and not memo.sold_out(2)
    memo._until[1] = time.monotonic() - 0.001  # the window has passed
    assert not memo.sold_out(1)


def test_a_zero_window_disables_the_memo() -> None:
    memo = SoldOutMemo(0)
    memo.remember(1)
    assert not memo.sold_out(1)


async def test_after_a_sold_out_answer_the_next_refusal_does_not_reach_the_store() -> None:
    store = FakeStockStore()
    await store.open(5, 1, 1, 1, epoch=1, unit_price=10)
    ctx = Context(engine=None, stock=store, settings=Settings(_env_file=None),  # type: ignore[arg-type]
                  sold_out=SoldOutMemo(60))
    await store.reserve(5, uuid.uuid4(), "first", 1, None)
    with pytest.raises(Conflict, match="sold out"):
        await place_order(ctx, PlaceOrder(5, "second", 1))
    store.deals[5].stock = 1  # a cancellation gives a unit back inside the window
    with pytest.raises(Conflict, match="sold out"):  # refused from memory: never oversold
        await place_order(ctx, PlaceOrder(5, "third", 1))
    assert store.deals[5].stock == 1
