"""The deal fence: a transaction-scoped advisory lock per deal.

Order inserts and cancellations take it shared; the flush and the rebuild take it
exclusive, so while they read a deal's orders no order of that deal can appear or change.
An advisory lock lives in the lock manager's memory. A row lock (`FOR KEY SHARE` on the
deal row, or the one a foreign-key check takes on the parent row) would instead rewrite the
hot row's tuple header for every buyer, and all buyers would queue on it (measured:
`Lock:tuple` waits on nearly every session; see docs/scenarios/deal-order-latency.md).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_NAMESPACE = 7001  # first key of the two-key advisory lock space, reserved for deals


async def share_deal(conn: AsyncConnection, deal_id: int) -> None:
    await conn.execute(text("SELECT pg_advisory_xact_lock_shared(:ns, :d)"),
                       {"ns": _NAMESPACE, "d": deal_id})


async def own_deal(conn: AsyncConnection, deal_id: int) -> None:
    await conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :d)"),
                       {"ns": _NAMESPACE, "d": deal_id})
