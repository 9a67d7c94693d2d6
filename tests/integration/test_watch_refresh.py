"""`hotdeal_cli.watch.watch` in-process against Postgres and Redis: the figures of each
refresh, a Redis blip shown as stale figures instead of ending the view, the end."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from typer.testing import CliRunner

from hotdeal_cli.main import app
from hotdeal_cli.watch import watch
from hotdeal_cli.watch_view import Frame
from hotdeal_core.stock.port import DealSnapshot, StockStore
from hotdeal_core.stock.redis_errors import translated
from hotdeal_core.usecases import deals, orders
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import flush_deal
from tests.conftest import ProductFactory
from tests.waiting import eventually

runner = CliRunner()


class FlakyPeek:
    """The real stock store, whose `peek` fails while `down` is set (a Redis blip)."""

    def __init__(self, store: StockStore) -> None:
        self.store, self.down = store, False

    async def peek(self, product_id: int) -> DealSnapshot:
        if self.down:
            # As the store raises it (hotdeal_core.stock.redis_errors).
            raise translated(RedisConnectionError("Connection closed by server."))
        return await self.store.peek(product_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_watch_keeps_its_last_figures_through_a_redis_blip_then_ends(
        ctx: Context, new_product: ProductFactory) -> None:
    product_id = await new_product(stock=5)
    await deals.start_deal(ctx, deals.StartDeal(product_id, 5, 2, None))
    flaky = FlakyPeek(ctx.stock)
    watched = replace(ctx, stock=flaky)
    frames: list[Frame] = []
    task = asyncio.create_task(watch(watched, product_id, frames.append, api_url=None,
                                     interval=0.05, audit_every=0.05))

    async def frame_where(test: Any) -> Frame | None:
        if task.done():
            task.result()  # its error, if it failed
        return next((f for f in reversed(frames) if test(f)), None)

    await eventually(lambda: frame_where(lambda f: f.stock_left == 5 and f.audit), 20)
    await orders.place_order(ctx, orders.PlaceOrder(product_id, f"w-{uuid.uuid4().hex}", 2,
                                                    None))
    await eventually(lambda: frame_where(lambda f: f.stock_left == 3 and f.pending == 1), 20)
    flaky.down = True
    stale = await eventually(lambda: frame_where(lambda f: f.problem), 20, "a stale frame")
    assert "Connection closed by server" in (stale.problem or "") and stale.stock_left == 3
    flaky.down = False
    seen = len(frames)
    await eventually(lambda: frame_where(lambda f: frames.index(f) >= seen
                                         and f.problem is None), 20, "fresh figures again")
    deal_id, _ = await deals.end_deal(ctx, product_id)
    await flush_deal(ctx, deal_id)
    last, audit = await asyncio.wait_for(task, 20)
    assert last.status == "RECONCILED" and audit.balanced
    assert (last.stock_left, last.pending, last.audit) == (3, 1, "5 = 3 + 2 + 0 + 0 holds")


def test_watch_refuses_a_product_without_a_deal_and_a_zero_interval(
        new_product_sync: int) -> None:
    no_deal = runner.invoke(app, ["deal", "watch", str(new_product_sync), "--json"])
    assert no_deal.exit_code == 1, no_deal.output
    assert '"code": "deal_not_found"' in no_deal.stdout
    zero = runner.invoke(app, ["deal", "watch", str(new_product_sync), "--interval", "0"])
    assert zero.exit_code == 2 and "must be positive" in " ".join(zero.output.split())


@pytest.fixture
def new_product_sync() -> int:
    created = runner.invoke(app, ["product", "create", "--name", f"w-{uuid.uuid4().hex[:8]}",
                                  "--price", "100", "--stock", "5", "--json"])
    assert created.exit_code == 0, created.output
    return int(json.loads(created.stdout)["id"])
