"""The swarm's verdicts on figures already read: pure functions, no I/O (verify.py reads)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    data: Mapping[str, int] = field(default_factory=dict)


def check_oversell(sold_units: int, initial: int) -> Check:
    rel = "<=" if sold_units <= initial else ">"
    return Check("no oversell", sold_units <= initial,
                 f"{sold_units:,} units in PENDING+CONFIRMED orders {rel} initial {initial:,}",
                 {"sold_units": sold_units, "initial": initial})


def check_limits(rows: Iterable[tuple[str, int]], limit: int) -> Check:
    held = list(rows)
    over = sorted((user, units) for user, units in held if units > limit)
    top = max((units for _, units in held), default=0)
    detail = (f"{len(held):,} buyers, at most {top} units each (limit {limit})" if not over else
              f"{len(over)} buyer(s) over the limit {limit}: "
              + ", ".join(f"{u}={n}" for u, n in over[:5]))
    return Check("per-user limit", not over, detail, {"buyers": len(held), "over": len(over)})


def check_persisted(accepted: Collection[str], found: Collection[str]) -> Check:
    missing = sorted(set(accepted) - set(found))
    detail = f"{len(accepted) - len(missing):,} of {len(accepted):,} accepted ids are orders"
    return Check("accepted orders in Postgres", not missing,
                 detail + (f"; missing e.g. {', '.join(missing[:3])}" if missing else ""),
                 {"accepted": len(accepted), "missing": len(missing)})


def check_kafka_counts(accepted: Collection[str], placed_counts: Mapping[str, int]) -> Check:
    missing = sum(1 for i in accepted if placed_counts.get(i, 0) == 0)
    duplicated = sum(1 for i in accepted if placed_counts.get(i, 0) > 1)
    once = len(accepted) - missing - duplicated
    return Check("OrderPlaced on Kafka exactly once", not missing and not duplicated,
                 f"{once:,} exactly once, {missing:,} missing, {duplicated:,} duplicated",
                 {"exactly_once": once, "missing": missing, "duplicated": duplicated})


def check_audit(audit: Mapping[str, Any]) -> Check:
    ok = bool(audit["balanced"]) and audit["status"] == "RECONCILED"
    return Check("stock audit", ok, f"{audit['initial']:,} = {audit['on_sale']:,} + "
                 f"{audit['pending']:,} + {audit['confirmed']:,} + {audit['in_flight']:,} "
                 f"({audit['status']})")
