"""Is a series flat? After the warm-up, the median of the last third against the first's:
flat when `last <= first * (1 + rel) + abs` (only growth fails; `abs` is the noise floor of
a series near zero). Pure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: Fewer judged samples than this per third and the series is not judged (it fails).
MIN_PER_THIRD = 2


@dataclass(frozen=True)
class Rule:
    rel: float  # allowed growth, as a fraction of the first third's median
    abs: float  # plus this much, in the series' unit (its noise floor)


@dataclass(frozen=True)
class Verdict:
    series: str
    unit: str
    flat: bool
    first: float | None  # median of the first third
    last: float | None  # median of the last third
    limit: float | None  # the most `last` may be
    samples: int
    detail: str


def thirds(points: Sequence[tuple[float, float]], warmup_until: float
           ) -> tuple[list[float], list[float]]:
    """The values of the first and last thirds (by time) of the points after the warm-up."""
    kept = sorted((t, v) for t, v in points if t >= warmup_until)
    if not kept:
        return [], []
    start, end = kept[0][0], kept[-1][0]
    cut1, cut2 = start + (end - start) / 3, start + 2 * (end - start) / 3
    return [v for t, v in kept if t <= cut1], [v for t, v in kept if t >= cut2]


def judge(series: str, unit: str, points: Sequence[tuple[float, float]], rule: Rule,
          warmup_until: float) -> Verdict:
    """The verdict on (t, value) points: `last <= first * (1 + rel) + abs` (module doc)."""
    first, last = thirds(points, warmup_until)
    n = sum(1 for t, _ in points if t >= warmup_until)
    if len(first) < MIN_PER_THIRD or len(last) < MIN_PER_THIRD:
        return Verdict(series, unit, False, None, None, None, n,
                       f"not judged: {n} samples after the warm-up (too few)")
    f, last_m = statistics.median(first), statistics.median(last)
    limit = f * (1 + rule.rel) + rule.abs
    flat = last_m <= limit
    return Verdict(series, unit, flat, f, last_m, limit, n,
                   f"last third {last_m:,.4g} {'<=' if flat else '>'} {limit:,.4g} "
                   f"(first third {f:,.4g} x {1 + rule.rel:g} + {rule.abs:g})")
