"""The swarm's deal sampler against Postgres and Redis: one row per interval, the figures
of the moment, until stopped."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

from devtools.charts import StockPoint, read_samples
from devtools.sampler import DealSampler
from hotdeal_core.settings import Settings
from hotdeal_core.usecases import deals, orders
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import flush_deal
from tests.conftest import ProductFactory
from tests.waiting import eventually


async def test_the_sampler_records_the_sell_out_and_the_reconciliation(
        ctx: Context, new_product: ProductFactory, settings: Settings, tmp_path: Path) -> None:
    product_id = await new_product(stock=4)
    started = await deals.start_deal(ctx, deals.StartDeal(product_id, 4, 4, None))
    path = tmp_path / "samples.csv"
    sampler = DealSampler(started.deal_id, path, interval=0.05, settings=settings).start()
    try:
        async def rows_where(test: Callable[[StockPoint], bool]) -> list[StockPoint] | None:
            rows = read_samples(path) if path.exists() else []
            return [r for r in rows if test(r)] or None

        await eventually(lambda: rows_where(lambda r: r.on_sale == 4), 20, "a first sample")
        await orders.place_order(ctx, orders.PlaceOrder(product_id, f"s-{uuid.uuid4().hex}",
                                                        4, None))
        await eventually(lambda: rows_where(lambda r: r.on_sale == 0 and r.pending == 1), 20,
                         "the sell-out sampled")
        deal_id, _ = await deals.end_deal(ctx, product_id)
        await flush_deal(ctx, deal_id)
        await eventually(lambda: rows_where(lambda r: r.status == "RECONCILED"), 20,
                         "the reconciliation sampled")
    finally:
        await asyncio.to_thread(sampler.stop)
    rows = read_samples(path)
    assert sampler.rows == len(rows) >= 3
    assert [r.t for r in rows] == sorted(r.t for r in rows)
    assert rows[0].status == "ACTIVE" and rows[-1].status == "RECONCILED"
