"""What the clients saw around each fault: pure functions over the attempts (unit-tested)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from devtools.chaos.load import Attempt


@dataclass
class FaultRun:
    """One fault's timeline, in seconds since the run's start."""

    name: str
    component: str
    how: str
    restart_command: str
    kill_at: float = 0.0
    restart_at: float = 0.0  # the restart command issued (after the outage was held)
    restarted_at: float = 0.0  # the restart command returned
    restart_exit: int = 0
    restart_output: str = ""
    answered_at: float | None = None  # the component's probe passed again
    accepting_at: float | None = None  # first 202 of a request sent after the kill
    window_end: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def failed(a: Attempt) -> bool:
    """An attempt that did not settle its request: no answer, a 5xx, or in progress."""
    return a.status == 0 or a.status >= 500 or a.code == "idempotency_in_progress"


def reason(a: Attempt) -> str:
    return f"{a.status} {a.code}" if a.status else f"no response ({a.code})"


def first_accept_after(accepted_at: Iterable[float], t: float) -> float | None:
    return min((s for s in accepted_at if s >= t), default=None)


def longest_gap(accepted_at: Sequence[float], start: float, end: float) -> float:
    """The longest stretch of [start, end] without a 202 sent in it."""
    points = [start, *sorted(s for s in accepted_at if start <= s <= end), end]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)


def window_figures(f: FaultRun, attempts: Sequence[Attempt],
                   accepted_at: Sequence[float]) -> dict[str, Any]:
    inside = [a for a in attempts if f.kill_at <= a.sent <= f.window_end]
    # When a buyer held a 202 again: a request sent after the kill may wait inside the API
    # (its Redis client retrying a dead master) and be accepted only after the promotion.
    answered_202 = min((a.sent + a.latency for a in attempts if a.kind == "order"
                        and a.status == 202 and a.sent >= f.kill_at), default=None)
    bad = [a for a in inside if failed(a)]
    orders = [a for a in inside if a.kind == "order"]
    return {
        "window_s": round(f.window_end - f.kill_at, 2),
        "attempts": len(inside), "failed": len(bad),
        "failed_orders": sum(a.kind == "order" for a in bad),
        "failed_payments": sum(a.kind == "payment" for a in bad),
        "failed_by_reason": dict(Counter(reason(a) for a in bad).most_common()),
        "order_attempts": len(orders),
        "answered_after_s": None if f.answered_at is None else round(f.answered_at - f.kill_at, 2),
        "accepting_after_s": None if f.accepting_at is None
        else round(f.accepting_at - f.kill_at, 2),
        "first_202_answered_after_s": None if answered_202 is None
        else round(answered_202 - f.kill_at, 2),
        "longest_gap_without_202_s": round(longest_gap(accepted_at, f.kill_at, f.window_end), 2),
    }


def run_figures(attempts: Sequence[Attempt]) -> dict[str, Any]:
    """Over the whole run: the attempts, the failed ones and their share, by kind and reason."""
    bad = [a for a in attempts if failed(a)]
    return {"attempts": len(attempts), "failed": len(bad),
            "failed_share": round(len(bad) / len(attempts), 4) if attempts else 0.0,
            "failed_orders": sum(a.kind == "order" for a in bad),
            "failed_payments": sum(a.kind == "payment" for a in bad),
            "failed_by_reason": dict(Counter(reason(a) for a in bad).most_common())}


def unexpected_errors(attempts: Iterable[Attempt]) -> dict[str, int]:
    """5xx answers other than a 503, and 503s without Retry-After: never allowed."""
    out: Counter[str] = Counter()
    for a in attempts:
        if a.status >= 500 and a.status != 503:
            out[f"{a.kind} {reason(a)}"] += 1
        elif a.status == 503 and not a.retry_after:
            out[f"{a.kind} 503 without Retry-After"] += 1
    return dict(out)


def split_keys(key_orders: dict[str, set[str]]) -> list[str]:
    """Idempotency keys that were answered with more than one order id."""
    return sorted(k for k, ids in key_orders.items() if len(ids) > 1)
