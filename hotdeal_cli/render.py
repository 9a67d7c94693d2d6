"""What the CLI prints: one JSON document on stdout with --json, plain lines otherwise."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any
from uuid import UUID

import typer

from hotdeal_core.usecases.audit import Audit
from hotdeal_core.usecases.deals import StartedDeal
from hotdeal_core.usecases.products import ProductView
from hotdeal_core.usecases.recovery import RecoverReport

TERMS = ("initial", "on_sale", "pending", "confirmed", "in_flight")


def _default(value: Any) -> Any:
    if isinstance(value, Audit):
        return audit_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=_default, indent=2))


def emit(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line)


def show(data: Any, lines: list[str], *, as_json: bool) -> None:
    if as_json:
        emit_json(data)
    else:
        emit(lines)


def print_error(code: str, message: str, *, as_json: bool) -> None:
    if as_json:
        emit_json({"error": {"code": code, "message": message}})
    else:
        typer.echo(f"error: {code}: {message}", err=True)


def verdict(audit: Audit) -> str:
    return "holds" if audit.balanced else "DOES NOT HOLD"


def audit_json(audit: Audit) -> dict[str, Any]:
    return {**audit.as_dict(), "remaining": audit.on_sale, "verdict": verdict(audit)}


def product_lines(p: ProductView) -> list[str]:
    lines = [f"product {p.id}: {p.name!r}, price {p.price}, stock {p.stock}"]
    d = p.deal
    if d is None:
        return [*lines, "no live deal"]
    remaining = "unknown (no live stock state)" if d.remaining is None else str(d.remaining)
    ends = d.ends_at.isoformat() if d.ends_at else "when stopped"
    return [*lines,
            f"deal {d.id}: {d.status}, stock in {d.stock_backend}, epoch {d.epoch}",
            f"  initial {d.initial_stock}, remaining {remaining}, "
            f"per-user limit {d.per_user_limit}, ends {ends}"]


def started_lines(s: StartedDeal) -> list[str]:
    ends = s.ends_at.isoformat() if s.ends_at else "when stopped"
    return [f"deal {s.deal_id} started on product {s.product_id}: {s.stock} units, "
            f"per-user limit {s.per_user_limit}, stock in {s.stock_backend}, ends {ends}"
            + (f"; opening draw after {s.opening_window_seconds:g} s"
               if s.opening_window_seconds else "")]


def stopped_lines(deal_id: int, product_id: int, ended_now: bool) -> list[str]:
    what = "ended" if ended_now else "was already ended"
    return [f"deal {deal_id} of product {product_id} {what}; "
            "the reconciler gives its unsold stock back to the product"]


def status_lines(a: Audit) -> list[str]:
    rows = [("on sale", a.on_sale), ("pending", a.pending), ("confirmed", a.confirmed),
            ("cancelled", a.cancelled), ("in flight", a.in_flight)]
    return [f"deal {a.deal_id} of product {a.product_id}: {a.status} "
            f"(stock in {a.stock_backend})",
            f"  {'initial':<10} {a.initial:>8}",
            *(f"  {name:<10} {units:>8}" for name, units in rows),
            f"  {'audit':<10} {verdict(a):>8}"]


def audit_lines(a: Audit) -> list[str]:
    """The invariant with its numbers under its terms, e.g. `10 = 7 + 2 + 1 + 0  holds`."""
    values = [a.initial, a.on_sale, a.pending, a.confirmed, a.in_flight]
    widths = [max(len(t), len(str(v))) for t, v in zip(TERMS, values, strict=True)]

    def equation(cells: list[str]) -> str:
        padded = [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
        return f"{padded[0]} = " + " + ".join(padded[1:])

    return [f"deal {a.deal_id} of product {a.product_id}: {a.status}",
            equation(list(TERMS)),
            f"{equation([str(v) for v in values])}   {verdict(a)}"]


def progress_line(a: Audit) -> str:
    return (f"deal {a.deal_id}: {a.status}, pending {a.pending}, confirmed {a.confirmed}, "
            f"on sale {a.on_sale}")


def recovered_lines(r: RecoverReport) -> list[str]:
    return [f"deal {r.deal_id} of product {r.product_id} rebuilt in Redis: epoch {r.epoch}, "
            f"stock {r.stock}, {r.reservations} reservation(s) rebuilt"]
