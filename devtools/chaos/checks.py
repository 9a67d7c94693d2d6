"""The promises checked after the chaos run, against Postgres, Kafka and what clients saw."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.chaos.load import Ledger
from devtools.chaos.timeline import split_keys, unexpected_errors
from devtools.swarm import UNSETTLED, Check, placed_counts, verify_deal, wait_zero
from hotdeal_core.messaging.claims import count_owed
from hotdeal_core.settings import Settings

_KEYS = text("SELECT idempotency_key, id::text FROM orders WHERE hot_deal_id = :d "
             "AND idempotency_key IS NOT NULL")
_PAYMENTS = text(
    "SELECT p.payment_id, p.status, o.status, o.payment_id, "
    "EXISTS (SELECT 1 FROM outbox x WHERE x.event_type = 'RefundRequested' "
    "        AND x.payload->>'payment_id' = p.payment_id) "
    "FROM payments p JOIN orders o ON o.id = p.order_id WHERE o.hot_deal_id = :d")


_CREATED = text("SELECT id::text, EXTRACT(EPOCH FROM created_at) FROM orders "
                "WHERE id = ANY(CAST(:ids AS uuid[]))")
#: A row written this long before a crash may have been sent but not marked published.
_BEFORE_KILL = 2.0


async def check_kafka(engine: AsyncEngine, ledger: Ledger, bootstrap: str, topic: str,
                      windows: Sequence[tuple[str, float, float]]) -> Check:
    """Every accepted order's OrderPlaced on Kafka; a duplicate is allowed only for an order
    written around a fault (a relay that died, or lost Postgres, between its send and its
    mark publishes the row again: at-least-once, consumers dedupe by event id)."""
    counts = await placed_counts(bootstrap, topic, ledger.accepted, 120)
    missing = [i for i in ledger.accepted if counts.get(i, 0) == 0]
    dups = [i for i in ledger.accepted if counts.get(i, 0) > 1]
    async with engine.connect() as conn:
        created = {i: float(t) - ledger.t0_wall for i, t in
                   (await conn.execute(_CREATED, {"ids": dups})).all()} if dups else {}
    by_fault: Counter[str] = Counter()
    for i in dups:
        t = created.get(i, -1e9)
        name = next((n for n, start, end in windows if start - _BEFORE_KILL <= t <= end), None)
        by_fault[name or "no fault"] += 1
    stray = by_fault.pop("no fault", 0)
    detail = (f"{len(ledger.accepted) - len(missing):,} of {len(ledger.accepted):,} published, "
              f"{len(missing)} missing; {len(dups)} published twice"
              + (f" ({', '.join(f'{n} around the {f} fault' for f, n in by_fault.items())})"
                 if by_fault else "")
              + (f", {stray} outside any fault" if stray else ""))
    return Check("OrderPlaced on Kafka (at least once; twice only around a crash)",
                 not missing and not stray, detail,
                 {"missing": len(missing), "duplicated": len(dups), "stray": stray})


def check_clients(ledger: Ledger) -> list[Check]:
    """What the clients saw: no 500 ever, every request answered, one order per key."""
    bad = unexpected_errors(ledger.attempts)
    split = split_keys(ledger.key_orders)
    return [
        Check("no 500 at any time (and every 503 has Retry-After)", not bad,
              "none" if not bad else ", ".join(f"{k}: {n}" for k, n in bad.items())),
        Check("every request answered in the end", not ledger.given_up and not ledger.refused,
              f"{len(ledger.given_up)} given up, {len(ledger.refused)} refused"
              + (f" (e.g. {(ledger.given_up + ledger.refused)[0]})"
                 if ledger.given_up or ledger.refused else "")),
        Check("one order per idempotency key (client side)", not split,
              f"{len(ledger.key_orders):,} keys answered 202"
              + (f"; {len(split)} answered with several ids, e.g. {split[0]}" if split else "")),
    ]


async def check_keys(engine: AsyncEngine, deal_id: int, ledger: Ledger) -> Check:
    """Postgres holds, per key a client used, the order that client was answered (or none)."""
    async with engine.connect() as conn:
        rows = {k: i for k, i in (await conn.execute(_KEYS, {"d": deal_id})).all()}
    wrong = [k for k, ids in ledger.key_orders.items() if rows.get(k) not in ids]
    return Check("one order per idempotency key (Postgres)", not wrong,
                 f"{len(rows):,} orders with a key; {len(wrong)} keys whose order differs "
                 "from the client's answer" + (f", e.g. {wrong[0]}" if wrong else ""),
                 {"orders_with_key": len(rows), "wrong": len(wrong)})


async def check_payments(engine: AsyncEngine, deal_id: int, ledger: Ledger) -> Check:
    """Every payment a client got 200 for is recorded and settled: the order left PENDING,
    a success confirmed it (by that payment) or asked for a refund."""
    async with engine.connect() as conn:
        rows = {r[0]: r[1:] for r in (await conn.execute(_PAYMENTS, {"d": deal_id})).all()}
    missing = [p for p in ledger.payments if p not in rows]
    pending = [p for p, (_, status, _, _) in rows.items() if status == "PENDING"]
    lost = [p for p, (pay, status, by, refund) in rows.items() if pay == "succeeded"
            and not ((status == "CONFIRMED" and by == p) or refund)]
    ok = not missing and not pending and not lost
    return Check("every accepted payment settled", ok,
                 f"{len(ledger.payments):,} payments answered 200: {len(missing)} not recorded, "
                 f"{len(pending)} orders still PENDING, {len(lost)} successes neither "
                 "confirming nor refunded",
                 {"payments": len(ledger.payments), "missing": len(missing),
                  "pending": len(pending), "lost": len(lost)})


OUTBOX_MAX_ATTEMPTS = Settings.model_fields["outbox_max_attempts"].default


async def wait_outbox_drained(engine: AsyncEngine, timeout: float,
                              max_attempts: int = OUTBOX_MAX_ATTEMPTS) -> Check:
    """Every row the relays owe published (a row set aside after its attempts is not owed:
    tests leave such rows on purpose)."""
    deadline, left = time.monotonic() + timeout, -1
    while True:
        async with engine.connect() as conn:
            left = await count_owed(conn, max_attempts)
        if left == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    return Check("outbox drained", left == 0, f"{left:,} rows unpublished")


async def verify(engine: AsyncEngine, deal_id: int, ledger: Ledger, audit: Mapping[str, Any],
                 *, bootstrap: str, topic: str,
                 windows: Sequence[tuple[str, float, float]]) -> list[Check]:
    unsettled = await wait_zero(engine, UNSETTLED, deal_id, 120,
                                "paid orders not settled yet (stock worker lag)")
    checks = check_clients(ledger)
    # The swarm's checks, but its Kafka one (exactly once) holds only without crashes.
    checks += [c for c in await verify_deal(engine, deal_id, ledger.accepted,
                                            bootstrap=bootstrap, topic=topic, audit=audit,
                                            timeout=120)
               if not c.name.startswith("OrderPlaced on Kafka")]
    checks.append(await check_kafka(engine, ledger, bootstrap, topic, windows))
    checks += [await check_keys(engine, deal_id, ledger),
               await check_payments(engine, deal_id, ledger),
               await wait_outbox_drained(engine, 60)]
    if unsettled:
        checks.append(Check("stock worker caught up", False, f"{unsettled} paid orders PENDING"))
    return checks
