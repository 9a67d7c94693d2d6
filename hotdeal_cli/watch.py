"""`hotdeal deal watch PRODUCT_ID`: a live view of a deal, refreshed every second, until it is
reconciled. Figures from Postgres, the stock store's `peek`, the audit in the background
(every --audit-every: it reads every live reservation), and with --api-url the API's /metrics."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import text

from hotdeal_cli.watch_view import ApiScrape, Frame, Sample, audit_text, frame, parse_scrape
from hotdeal_core.domain import DealStatus, StockBackend
from hotdeal_core.errors import is_retriable
from hotdeal_core.usecases.audit import Audit, audit_deal, latest_deal_id
from hotdeal_core.usecases.context import Context

# Orders are committed a moment after their transaction starts (created_at = its now()), so
# the accepted rate counts a window that ended this long ago, when its orders are visible.
RATE_WINDOW_S, RATE_SETTLED_S = 2.0, 0.5
SCRAPE_TIMEOUT_S = 0.8

_DEAL = text("SELECT id, product_id, status, stock_backend, initial_stock, remaining_stock, "
             "returned_stock FROM hot_deals WHERE id = :d")
_BY_STATUS = text("SELECT status, count(*) FROM orders WHERE hot_deal_id = :d GROUP BY 1")
_ACCEPTED = text(
    "SELECT count(*) FROM orders WHERE hot_deal_id = :d "
    "AND created_at > now() - make_interval(secs => :since) "
    "AND created_at <= now() - make_interval(secs => :until)")
_UNSETTLED = text(  # the same orders as devtools/swarm/verify.py's UNSETTLED
    "SELECT count(*), EXTRACT(EPOCH FROM now() - min(p.created_at)) FROM orders o "
    "JOIN payments p ON p.order_id = o.id WHERE o.hot_deal_id = :d "
    "AND o.status = 'PENDING' AND p.outcome = 'accepted'")


def scrape(api_url: str, timeout: float = SCRAPE_TIMEOUT_S) -> ApiScrape | None:
    """The API's /metrics, or None if it does not answer (or answers something else)."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/metrics", timeout=timeout) as r:
            return parse_scrape(r.read().decode())
    except (urllib.error.URLError, OSError, ValueError, UnicodeDecodeError):
        return None


async def read_sample(ctx: Context, deal_id: int, api_url: str | None, at: float) -> Sample:
    scraping = asyncio.create_task(asyncio.to_thread(scrape, api_url)) if api_url else None
    async with ctx.engine.connect() as conn:
        deal = (await conn.execute(_DEAL, {"d": deal_id})).one()
        orders = {str(s): int(n) for s, n in await conn.execute(_BY_STATUS, {"d": deal_id})}
        accepted = int((await conn.execute(_ACCEPTED, {
            "d": deal_id, "since": RATE_WINDOW_S + RATE_SETTLED_S,
            "until": RATE_SETTLED_S})).scalar_one())
        unsettled, age = (await conn.execute(_UNSETTLED, {"d": deal_id})).one()
    return Sample(at, deal_id, int(deal.product_id), str(deal.status), str(deal.stock_backend),
                  int(deal.initial_stock), await _stock_left(ctx, deal), orders,
                  accepted / RATE_WINDOW_S, int(unsettled),
                  None if age is None else float(age),
                  await scraping if scraping is not None else None)


async def _stock_left(ctx: Context, deal: Any) -> int | None:
    """Units still on sale (after the flush: the units given back to the product)."""
    if deal.status == DealStatus.RECONCILED:
        return int(deal.returned_stock)
    if deal.stock_backend == StockBackend.DB:
        return int(deal.remaining_stock) + int(deal.returned_stock)
    snap = await ctx.stock.peek(int(deal.product_id))
    return snap.stock + int(deal.returned_stock) if snap.deal_id == int(deal.id) else None


@dataclass
class _Audits:
    """The latest background audit and when it finished."""

    every: float
    latest: Audit | None = None
    at: float | None = None
    task: asyncio.Task[Audit] | None = None

    def poll(self, ctx: Context, deal_id: int, now: float) -> None:
        """Collect a finished audit (a failed one raises here), start the next when due."""
        if self.task is not None and self.task.done():
            task, self.task, self.at = self.task, None, now
            self.latest = task.result()
        if self.task is None and (self.at is None or now - self.at >= self.every):
            self.task = asyncio.create_task(audit_deal(ctx, deal_id))

    def text(self) -> str | None:
        return None if self.latest is None else audit_text(self.latest.as_dict(),
                                                           self.latest.balanced)


async def watch(ctx: Context, product_id: int, show: Callable[[Frame], None], *,
                api_url: str | None, interval: float = 1.0, audit_every: float = 5.0,
                ) -> tuple[Frame, Audit]:
    """Refresh until the product's latest deal is reconciled; returns the last frame and
    the final audit. Cancelled by Ctrl-C (asyncio.run cancels this task)."""
    deal_id = await latest_deal_id(ctx, product_id)
    loop = asyncio.get_running_loop()
    audits, prev, shown = _Audits(audit_every), None, None
    try:
        while True:
            now = loop.time()
            try:
                audits.poll(ctx, deal_id, now)
                cur = await read_sample(ctx, deal_id, api_url, now)
            except Exception as exc:
                # Never read: the command fails (exit 3) as the others do; not an outage:
                # a bug, it fails too.
                if shown is None or not is_retriable(exc):
                    raise
                # A live view outlives a blip: the last figures stay, marked stale.
                show(replace(shown, problem=f"{_what(exc)}; retrying"))
                await asyncio.sleep(max(0.0, now + interval - loop.time()))
                continue
            age = None if audits.at is None else loop.time() - audits.at
            shown = frame(prev, cur, audits.text(), age)
            if cur.status == DealStatus.RECONCILED:
                final = await audit_deal(ctx, deal_id)
                shown = replace(shown, audit=audit_text(final.as_dict(), final.balanced),
                                audit_age_s=0.0)
                show(shown)
                return shown, final
            show(shown)
            prev = cur
            await asyncio.sleep(max(0.0, now + interval - loop.time()))
    finally:
        if audits.task is not None:
            audits.task.cancel()


def _what(exc: BaseException) -> str:
    cause = exc.__cause__ or exc  # what the adapter met, e.g. the socket's error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else 'no detail'}"

