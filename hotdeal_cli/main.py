"""The `hotdeal` operator CLI: parse, call one use case, print. No business rule lives here.
Every command takes --json; `hotdeal --help` lists them, `hotdeal_cli.context` the exit codes."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Awaitable
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from hotdeal_cli.buyer import buyer_app
from hotdeal_cli.context import EXIT_REFUSED, CliFailure, run
from hotdeal_cli.render import (
    audit_json,
    audit_lines,
    emit,
    emit_json,
    product_lines,
    progress_line,
    recovered_lines,
    show,
    started_lines,
    status_lines,
    stopped_lines,
)
from hotdeal_cli.watch import watch
from hotdeal_cli.watch_view import Frame, render
from hotdeal_core.domain import MAX_OPENING_WINDOW_SECONDS, DealStatus
from hotdeal_core.usecases.audit import Audit, audit_deal, latest_deal_id
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import (
    StartDeal,
    StartedDeal,
    end_deal,
    opening_window,
    start_deal,
)
from hotdeal_core.usecases.products import create_product, get_product
from hotdeal_core.usecases.recovery import recover_deal

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?")
POLL_SECONDS = 0.2
PROGRESS_EVERY_SECONDS = 1.0


def parse_duration(value: str | float) -> float:
    """`90s`, `10m`, `1h`, `1h30m` or plain seconds (`45`, `2.5`) -> seconds."""
    if isinstance(value, int | float):  # a default, already in seconds
        return float(value)
    text = value.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise typer.BadParameter(
            f"{value!r} is not a duration; use e.g. 90s, 10m, 1h, 1h30m or plain seconds")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


app = typer.Typer(name="hotdeal", no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Operate hot deals: products, deal start/stop, status, audit, recovery.")
product_app = typer.Typer(no_args_is_help=True, help="Create and inspect products.")
deal_app = typer.Typer(no_args_is_help=True,
                       help="Start, stop, inspect, audit and recover a product's hot deal.")
app.add_typer(product_app, name="product")
app.add_typer(deal_app, name="deal")
app.add_typer(buyer_app, name="buyer")

Json = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ProductId = Annotated[int, typer.Argument(help="The product's id.", show_default=False)]


@product_app.command("create")
def product_create(
    name: Annotated[str, typer.Option(help="Product name.")],
    price: Annotated[int, typer.Option(help="Unit price (minor units).")],
    stock: Annotated[int, typer.Option(help="Units in stock.")],
    as_json: Json = False,
) -> None:
    """Create a product; prints its id."""
    view = run(lambda ctx: create_product(ctx, name, price, stock), as_json=as_json)
    show(view, [str(view.id)], as_json=as_json)


@product_app.command("show")
def product_show(product_id: ProductId, as_json: Json = False) -> None:
    """A product and its live deal, with the deal's live remaining stock."""
    view = run(lambda ctx: get_product(ctx, product_id), as_json=as_json)
    show(view, product_lines(view), as_json=as_json)


@deal_app.command("start")
def deal_start(
    product_id: ProductId,
    stock: Annotated[int, typer.Option(help="Units moved from the product into the deal.")],
    per_user_limit: Annotated[int, typer.Option(help="Units one buyer may hold.")] = 1,
    duration: Annotated[float | None, typer.Option(
        parser=parse_duration, metavar="DURATION",
        help="Ends the deal after e.g. 90s, 10m, 1h30m or plain seconds; none: until stopped.",
    )] = None,
    window: Annotated[float | None, typer.Option(
        "--opening-window", min=0, max=MAX_OPENING_WINDOW_SECONDS, metavar="SECONDS",
        help="Orders of the first SECONDS enter a random draw held when they end (one entry "
             "per buyer); default DEAL_OPENING_WINDOW_SECONDS (3); 0: first come first served.",
    )] = None,
    as_json: Json = False,
) -> None:
    """Start a hot deal: move --stock units from the product into a new ACTIVE deal."""
    def start(ctx: Context) -> Awaitable[StartedDeal]:
        return start_deal(ctx, StartDeal(product_id, stock, per_user_limit, duration,
                                         opening_window(ctx.settings, window)))
    started = run(start, as_json=as_json)
    show(started, started_lines(started), as_json=as_json)


@deal_app.command("stop")
def deal_stop(
    product_id: ProductId,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Block until the reconciler has reconciled the deal.")] = False,
    timeout: Annotated[float, typer.Option(
        parser=parse_duration, metavar="DURATION",
        help="How long --wait waits (e.g. 120, 2m).")] = 120.0,
    as_json: Json = False,
) -> None:
    """Stop intake at once; the reconciler flushes the unsold stock back to the product."""
    async def action(ctx: Context) -> tuple[int, bool, Audit | None]:
        deal_id, ended_now = await end_deal(ctx, product_id)
        audit = await _wait_reconciled(ctx, deal_id, timeout) if wait else None
        return deal_id, ended_now, audit

    deal_id, ended_now, audit = run(action, as_json=as_json)
    if as_json:
        emit_json({"deal_id": deal_id, "product_id": product_id, "ended_now": ended_now,
                   "audit": audit})
        return
    emit(stopped_lines(deal_id, product_id, ended_now))
    if audit is not None:
        emit(audit_lines(audit))


async def _wait_reconciled(ctx: Context, deal_id: int, timeout: float) -> Audit:
    """Poll the deal's audit until RECONCILED; progress on stderr about once a second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    next_progress = loop.time()
    while True:
        audit = await audit_deal(ctx, deal_id)
        if audit.status == DealStatus.RECONCILED:
            return audit
        now = loop.time()
        if now >= deadline:
            raise CliFailure("reconcile_timeout", (
                f"deal {deal_id} is {audit.status} but was not reconciled within "
                f"{timeout:g}s; the reconciler process must be running (start it with "
                "`make up`), then run `hotdeal deal stop --wait` again"), EXIT_REFUSED)
        if now >= next_progress:
            typer.echo(progress_line(audit), err=True)
            next_progress = now + PROGRESS_EVERY_SECONDS
        await asyncio.sleep(min(POLL_SECONDS, max(deadline - now, 0.0)))


async def _latest_audit(ctx: Context, product_id: int) -> Audit:
    return await audit_deal(ctx, await latest_deal_id(ctx, product_id))


@deal_app.command("status")
def deal_status(product_id: ProductId, as_json: Json = False) -> None:
    """The product's latest deal: status, units on sale, pending, confirmed, cancelled."""
    audit = run(lambda ctx: _latest_audit(ctx, product_id), as_json=as_json)
    show(audit_json(audit), status_lines(audit), as_json=as_json)


@deal_app.command("audit")
def deal_audit(product_id: ProductId, as_json: Json = False) -> None:
    """Check initial = on_sale + pending + confirmed + in_flight; exit 1 if it does not hold."""
    audit = run(lambda ctx: _latest_audit(ctx, product_id), as_json=as_json)
    show(audit_json(audit), audit_lines(audit), as_json=as_json)
    if not audit.balanced:
        raise typer.Exit(EXIT_REFUSED)


@deal_app.command("recover")
def deal_recover(product_id: ProductId, as_json: Json = False) -> None:
    """Rebuild an ACTIVE deal's lost Redis state from Postgres under a new epoch."""
    report = run(lambda ctx: recover_deal(ctx, product_id), as_json=as_json)
    show(report, recovered_lines(report), as_json=as_json)


@deal_app.command("watch")
def deal_watch(
    product_id: ProductId,
    api_url: Annotated[str | None, typer.Option(
        help="The order API (e.g. http://127.0.0.1:18000): refusals/s and p95 reservation "
             "latency from its /metrics; without it they show n/a.")] = None,
    interval: Annotated[float, typer.Option(
        parser=parse_duration, metavar="DURATION", help="Refresh period.")] = 1.0,
    audit_every: Annotated[float, typer.Option(
        parser=parse_duration, metavar="DURATION",
        help="How often the audit runs (it reads every live reservation).")] = 5.0,
    as_json: Json = False,
) -> None:
    """Live view of the latest deal until it is reconciled (exit 0; 1 if its audit fails).

    Ctrl-C stops it (exit 0). With --json, one JSON object per refresh, one per line."""
    if interval <= 0 or audit_every <= 0:
        raise typer.BadParameter("--interval and --audit-every must be positive")

    def line(frame: Frame) -> None:
        typer.echo(json.dumps(frame.as_json()))

    async def action(ctx: Context) -> bool:
        if as_json:
            _, audit = await watch(ctx, product_id, line, api_url=api_url, interval=interval,
                                   audit_every=audit_every)
            return audit.balanced
        with Live(console=Console(), auto_refresh=False) as live:
            def draw(frame: Frame) -> None:
                live.update(render(frame, interval), refresh=True)
            _, audit = await watch(ctx, product_id, draw, api_url=api_url, interval=interval,
                                   audit_every=audit_every)
        typer.echo(f"deal reconciled; the audit {'holds' if audit.balanced else 'DOES NOT HOLD'}")
        return audit.balanced

    try:
        balanced = run(action, as_json=as_json)
    except KeyboardInterrupt:
        typer.echo("stopped watching (Ctrl-C)", err=True)
        return
    if not balanced:
        raise typer.Exit(EXIT_REFUSED)


def main() -> None:
    app(prog_name="hotdeal")
