"""The soak run: its own processes, a capacity probe, then deal after deal under an open-loop
load while everything is sampled; at the end every deal's promises are checked
(docs/scenarios/soak.md)."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from devtools.chaos.checks import wait_outbox_drained
from devtools.compare import free_port
from devtools.procs import LOAD_API_ENV, Proc
from devtools.soak import probe
from devtools.soak.background import Background, sample_every
from devtools.soak.load import LoadConfig, OpenLoop, Tally, measure_capacity
from devtools.swarm import (
    Check,
    check_audit,
    check_kafka_counts,
    check_limits,
    check_oversell,
    check_persisted,
    placed_counts,
)
from hotdeal_cli.context import open_context
from hotdeal_core.domain import DealStatus
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import Settings, load_settings
from hotdeal_core.usecases.audit import audit_deal
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, end_deal, start_deal
from hotdeal_core.usecases.products import create_product
from loadtest.buyers import BuyerAuth


@dataclass(frozen=True)
class Plan:
    duration: float  # seconds of load
    interval: float  # between samples
    rate: float | None  # orders/s; None: `fraction` of the measured capacity
    fraction: float
    capacity_seconds: float
    deal_seconds: float  # a deal's stock is the rate times this
    reservation_ttl: int
    outbox_retention_s: float
    warmup: float  # seconds not judged at the start


def say(msg: str) -> None:
    print(f"[soak] {msg}", flush=True)


def process_env(plan: Plan) -> dict[str, dict[str, str]]:
    retention = {"OUTBOX_RETENTION_HOURS": f"{plan.outbox_retention_s / 3600:.6f}",
                 "RETENTION_INTERVAL_SECONDS": str(RETENTION_INTERVAL_S)}
    return {"order-api": {**LOAD_API_ENV, "ORDER_API_PORT": str(free_port()),
                          "RESERVATION_TTL_SECONDS": str(plan.reservation_ttl)},
            "stock-worker": {"RESERVATION_TTL_SECONDS": str(plan.reservation_ttl)},
            "reconciler": retention}


#: The retention duty's period in the run (every 60 s by default: too coarse for minutes).
RETENTION_INTERVAL_S = 5
#: A deal flushed (RECONCILED) within this, or the run fails.
FLUSH_TIMEOUT = 180.0


async def start(ctx: Context, product_id: int, stock: int, limit: int) -> int:
    """A deal through the use case `hotdeal deal start --opening-window 0` runs (in process:
    the CLI's own start-up takes seconds on a busy machine, time with no deal on sale)."""
    return (await start_deal(ctx, StartDeal(product_id, stock, limit))).deal_id


async def flush(ctx: Context, product_id: int) -> dict[str, Any]:
    """`hotdeal deal stop --wait`: end the deal, wait for the reconciler; its audit."""
    deal_id, _ = await end_deal(ctx, product_id)
    deadline = time.monotonic() + FLUSH_TIMEOUT
    while (audit := await audit_deal(ctx, deal_id)).status != DealStatus.RECONCILED:
        if time.monotonic() > deadline:
            raise RuntimeError(f"deal {deal_id} not reconciled within {FLUSH_TIMEOUT:g} s")
        await asyncio.sleep(0.1)
    return audit.as_dict()


async def deal_checks(engine: AsyncEngine, deal_id: int, accepted: set[str],
                      audit: Mapping[str, Any]) -> list[Check]:
    async with engine.connect() as conn:
        initial, limit = (await conn.execute(text(
            "SELECT initial_stock, per_user_limit FROM hot_deals WHERE id = :d"),
            {"d": deal_id})).one()
        held = [(str(u), int(n)) for u, n in await conn.execute(text(
            "SELECT user_id, sum(quantity) FROM orders WHERE hot_deal_id = :d AND status IN "
            "('PENDING', 'CONFIRMED') GROUP BY user_id"), {"d": deal_id})]
        ids = {str(i) for i in (await conn.execute(text(
            "SELECT id FROM orders WHERE hot_deal_id = :d"), {"d": deal_id})).scalars()}
    return [check_audit(audit), check_oversell(sum(n for _, n in held), int(initial)),
            check_limits(held, int(limit)), check_persisted(accepted, ids)]


def sold_out_after(tally: Tally, opened: float, stop: threading.Event, until: float) -> None:
    """Block until a request sent after `opened` is answered sold_out, `stop`, or `until`
    (answers to requests sent before are the previous deal's, however late they come)."""
    while tally.sold_out_sent < opened and not stop.is_set() and time.monotonic() < until:
        tally.sold_out.clear()
        if tally.sold_out_sent < opened:  # not set between the check and the clear
            tally.sold_out.wait(0.1)


async def run_deals(plan: Plan, settings: Settings, product_id: int, stock: int, tally: Tally,
                    stop: threading.Event, t0: float) -> list[dict[str, Any]]:
    """Deal after deal until `stop`: start, sell out, flush (stop --wait), check. Runs on a
    thread of its own (devtools/soak/background.py)."""
    deals: list[dict[str, Any]] = []
    async with open_context(settings) as ctx:
        while not stop.is_set():
            deal: dict[str, Any] = {"deal_id": await start(ctx, product_id, stock, 2),
                                    "started_s": round(time.monotonic() - t0, 1)}
            opened = time.monotonic()
            await asyncio.to_thread(sold_out_after, tally, opened, stop,
                                    opened + plan.deal_seconds * 4)
            deal["sold_out_s"] = round(time.monotonic() - t0, 1) \
                if tally.sold_out_sent >= opened else None
            deal["audit"] = audit = await flush(ctx, product_id)
            deal["flushed_s"] = round(time.monotonic() - t0, 1)
            accepted = set(tally.accepted.get(deal["deal_id"], set()))
            deal["accepted"] = len(accepted)
            deal["checks"] = [c.__dict__ for c in await deal_checks(
                ctx.engine, deal["deal_id"], accepted, audit)]
            sold = "never" if deal["sold_out_s"] is None else f"at {deal['sold_out_s']:.0f} s"
            held = all(c["ok"] for c in deal["checks"])
            say(f"deal {deal['deal_id']}: {len(accepted):,} accepted, sold out {sold}, "
                "flushed; " + ("checks hold" if held else "A CHECK FAILED"))
            deals.append(deal)
    return deals


async def final_checks(engine: AsyncEngine, tally: Tally, settings: Settings) -> list[Check]:
    """After the load: payments settled, OrderPlaced once per accepted order, no 5xx."""
    pays = dict(tally.payments)
    q = text("SELECT p.payment_id, o.status FROM payments p JOIN orders o ON o.id = p.order_id "
             "WHERE p.payment_id = ANY(:ids)")
    deadline, rows = time.monotonic() + 120, {}
    while True:
        async with engine.connect() as conn:
            rows = {p: s for p, s in (await conn.execute(q, {"ids": list(pays)})).all()}
        pending = [p for p in pays if rows.get(p) == "PENDING"]
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    missing = [p for p in pays if p not in rows]
    wrong = [p for p, (_, st) in pays.items() if st == "failed" and rows.get(p) == "CONFIRMED"]
    late = sum(1 for p, (_, st) in pays.items() if st == "succeeded" and rows.get(p) == "CANCELLED")
    checks = [Check("every answered payment recorded and settled",
                    not missing and not pending and not wrong,
                    f"{len(pays):,} payments answered 200: {len(missing)} not recorded, "
                    f"{len(pending)} orders still PENDING, {len(wrong)} failed ones confirmed; "
                    f"{late} succeeded after expiry (refunded)")]
    accepted = set().union(*tally.accepted.values()) if tally.accepted else set()
    drained = await wait_outbox_drained(engine, 60)
    try:
        counts = await placed_counts(settings.kafka_bootstrap_servers,
                                     Topics(settings.kafka_topic_prefix).orders, accepted, 180)
        checks.append(check_kafka_counts(accepted, counts))
    except (TimeoutError, OSError) as exc:
        checks.append(Check("OrderPlaced on Kafka exactly once", False, f"not checked: {exc}"))
    checks.append(drained)
    bad = {k: n for k, n in tally.outcomes.items() if k.startswith("5") or k.startswith("error")}
    total = sum(tally.outcomes.values())
    checks.append(Check("no 5xx, no transport error", not bad,
                        f"{total:,} answers; " + (", ".join(f"{k}: {n}" for k, n in bad.items())
                                                  or "none failed")))
    return checks


async def soak(plan: Plan, out: Path) -> dict[str, Any]:
    settings = load_settings()
    envs = process_env(plan)
    procs = [Proc(name, out / "procs", env) for name, env in envs.items()]
    api_url = f"http://127.0.0.1:{envs['order-api']['ORDER_API_PORT']}"
    engine = create_async_engine(settings.database_url, pool_size=3)
    try:
        for p in procs:
            p.start()
        for p in procs:
            await asyncio.to_thread(p.wait_ready, 90)
        say(f"processes ready; order API at {api_url}")
        async with open_context(settings) as ctx:
            return await _load(plan, ctx, api_url, procs, engine)
    finally:
        for p in procs:
            await asyncio.to_thread(p.stop, 60)
        await engine.dispose()


async def _load(plan: Plan, ctx: Context, api_url: str, procs: list[Proc],
                engine: AsyncEngine) -> dict[str, Any]:
    settings = ctx.settings
    pid = (await create_product(ctx, f"soak-{random.randint(1, 10**6)}", 1000, 10**9)).id
    secret = settings.payment_webhook_secret.get_secret_value()
    auth = BuyerAuth.from_settings(plan.duration + 600, settings)
    rate, capacity = plan.rate, None
    if rate is None:
        await start(ctx, pid, 10**6, 1000)
        capacity = await measure_capacity(LoadConfig(api_url, pid, secret, 1), auth,
                                          plan.capacity_seconds)
        await flush(ctx, pid)
        rate = max(1.0, capacity * plan.fraction)
        say(f"capacity ~{capacity:,.0f} orders/s (closed loop, {plan.capacity_seconds:g} s); "
            f"soak rate {rate:,.0f}/s ({plan.fraction:.0%})")
    stock = max(50, int(rate * plan.deal_seconds))
    tally, stop = Tally(), threading.Event()
    loadgen = OpenLoop(LoadConfig(api_url, pid, secret, rate), auth, tally)
    t0 = time.monotonic()
    cpu = probe.CpuMeter({**{p.name: p.pid() or 0 for p in procs}, "soak": os.getpid()})
    deals_thread = Background("the deal loop", lambda: run_deals(
        plan, settings, pid, stock, tally, stop, t0))
    sampler = Background("the sampler", lambda: sample_every(
        plan.interval, settings, cpu, tally, stop, t0))
    load_task = asyncio.create_task(loadgen.run())
    deals_thread.start()
    sampler.start()
    while time.monotonic() - t0 < plan.duration and deals_thread.is_alive() and \
            sampler.is_alive() and not load_task.done():
        await asyncio.wait({load_task}, timeout=0.2)  # an early end: its error is raised below
    load_s = time.monotonic() - t0
    stop.set()
    loadgen.stop()
    await load_task
    samples = await asyncio.to_thread(sampler.outcome, 60)
    deals = await asyncio.to_thread(deals_thread.outcome, FLUSH_TIMEOUT + 60)
    say("load stopped; final checks")
    checks = await final_checks(engine, tally, settings)
    checks.append(Check("the generator kept its rate (no arrival dropped)", not tally.dropped,
                        f"{tally.dropped:,} arrivals found {LoadConfig.max_in_flight} "
                        "requests already waiting"))
    return {"rate": rate, "capacity": capacity, "deal_stock": stock, "product_id": pid,
            "duration_s": round(load_s, 1), "samples": samples, "deals": deals,
            "outcomes": dict(tally.outcomes), "dropped": tally.dropped,
            "between_deals": len(tally.accepted.get(0, set())),
            "pay_errors": dict(tally.pay_errors), "payments": len(tally.payments),
            "checks": [c.__dict__ for c in checks]}
