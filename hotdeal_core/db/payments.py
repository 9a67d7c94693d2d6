"""The payments' SQL: facts recorded once by (payment_id, status), order totals, and
marking an order paid in time (`PAYABLE`, hotdeal_core/db/settlement_rules.py)."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from hotdeal_core.db.settlement_rules import PAYABLE
from hotdeal_core.ports.settlement import PaymentFact

_TOTALS = text("SELECT id, quantity * unit_price AS total FROM orders WHERE id = ANY(:ids)")
_INSERT = text("""
    INSERT INTO payments (payment_id, order_id, status, amount, outcome)
    SELECT * FROM unnest(CAST(:payment_ids AS text[]), CAST(:order_ids AS uuid[]),
                         CAST(:statuses AS text[]), CAST(:amounts AS bigint[]),
                         CAST(:outcomes AS text[]))
    ON CONFLICT (payment_id, status) DO NOTHING
    RETURNING payment_id, status
""")
_FIRST = text("SELECT payment_id, status, outcome FROM payments "
              "WHERE payment_id = ANY(:ids)")
_MARK_PAID = text(f"UPDATE orders SET paid_at = now() WHERE id = ANY(:ids) AND {PAYABLE}")


async def order_totals(conn: AsyncConnection, order_ids: Sequence[UUID]) -> dict[UUID, int]:
    rows = (await conn.execute(_TOTALS, {"ids": list(order_ids)})).all()
    return {row.id: int(row.total) for row in rows}


async def record_payment_facts(conn: AsyncConnection, facts: Sequence[PaymentFact]
                               ) -> set[tuple[str, str]]:
    """Insert the facts not recorded yet; returns their (payment_id, status)."""
    if not facts:
        return set()
    rows = (await conn.execute(_INSERT, {
        "payment_ids": [f.payment_id for f in facts], "order_ids": [f.order_id for f in facts],
        "statuses": [f.status for f in facts], "amounts": [f.amount for f in facts],
        "outcomes": [f.outcome for f in facts]})).all()
    return {(str(p), str(s)) for p, s in rows}


async def mark_paid_in_time(conn: AsyncConnection, order_ids: Sequence[UUID]) -> None:
    await conn.execute(_MARK_PAID, {"ids": list(order_ids)})


async def first_outcomes(conn: AsyncConnection, payment_ids: Sequence[str]
                         ) -> dict[tuple[str, str], str]:
    rows = (await conn.execute(_FIRST, {"ids": list(payment_ids)})).all()
    return {(str(p), str(s)): str(o) for p, s, o in rows}
