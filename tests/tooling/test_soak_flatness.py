"""The soak's verdicts: which series are flat, which are judged, and what the report says."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from devtools.soak.flat import Rule, judge, thirds
from devtools.soak.load import Tally
from devtools.soak.probe import percentile
from devtools.soak.report import render, write
from devtools.soak.run import sold_out_after
from devtools.soak.series import verdicts


def _points(values: list[float], step: float = 2.0) -> list[tuple[float, float]]:
    return [(i * step, v) for i, v in enumerate(values)]


def test_a_steady_series_with_noise_is_flat() -> None:
    v = judge("rss", "MB", _points([100, 103, 99, 101, 104, 100, 102, 99, 103]),
              Rule(0.10, 0), warmup_until=0)
    assert v.flat and v.first == 100 and v.last == 102


def test_a_series_that_keeps_growing_is_not_flat() -> None:
    v = judge("rss", "MB", _points([100 + 5 * i for i in range(12)]), Rule(0.10, 0), 0)
    assert not v.flat
    assert v.last is not None and v.limit is not None and v.last > v.limit


def test_a_falling_series_is_flat_a_backlog_draining_is_the_good_case() -> None:
    assert judge("backlog", "rows", _points([900, 700, 500, 300, 100, 50, 10, 0, 0]),
                 Rule(0.5, 0), 0).flat


def test_the_noise_floor_lets_a_near_zero_series_move_a_little() -> None:
    points = _points([0, 1, 0, 2, 1, 3, 5, 4, 6])
    assert not judge("lag", "records", points, Rule(0.5, 0), 0).flat
    assert judge("lag", "records", points, Rule(0.5, 10), 0).flat


def test_one_slow_sample_in_the_last_third_does_not_decide_the_median_does() -> None:
    assert judge("p99", "ms", _points([50, 52, 49, 51, 50, 53, 50, 900, 51]),
                 Rule(0.5, 0), 0).flat


def test_the_warm_up_is_not_judged() -> None:
    points = _points([10, 40, 80, 100, 101, 99, 100, 102, 100, 101])
    assert not judge("rss", "MB", points, Rule(0.1, 0), warmup_until=0).flat
    assert judge("rss", "MB", points, Rule(0.1, 0), warmup_until=6).flat
    first, last = thirds(points, 6)
    assert first == [100, 101, 99] and 10 not in first + last


def test_too_few_samples_fail_rather_than_pass_unjudged() -> None:
    v = judge("rss", "MB", _points([1, 1, 1]), Rule(0.1, 0), 0)
    assert not v.flat and "too few" in v.detail


def test_every_process_is_judged_and_the_kept_tables_are_not() -> None:
    samples = [{"t": 2.0 * i, "rss_mb.order-api": 100.0, "rss_mb.stock-worker": 90 + 3.0 * i,
                "pg_mb.orders": 1.0 + i, "outbox_unpublished": 0} for i in range(12)]
    found = {v.series: v.flat for v in verdicts(samples, warmup=0, duration=60)}
    assert found == {"rss_mb.order-api": True, "rss_mb.stock-worker": False,
                     "outbox_unpublished": True}


def test_the_outbox_table_size_is_judged_only_once_autovacuum_has_had_time() -> None:
    samples = [{"t": 2.0 * i, "pg_mb.outbox": 1.0 + i} for i in range(12)]
    assert verdicts(samples, warmup=0, duration=60) == []
    [v] = verdicts(samples, warmup=0, duration=1800)
    assert v.series == "pg_mb.outbox" and not v.flat


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


def _report(rss_growth: float) -> dict[str, Any]:
    samples = [{"t": 2.0 * i, "rss_mb.order-api": 100 + rss_growth * i, "order_p50_ms": 20.0,
                "pg_mb.orders": 1.0 + i, "cpu_pct.soak": 30.0} for i in range(12)]
    found = verdicts(samples, warmup=0, duration=24)
    return {"passed": all(v.flat for v in found), "command": "python -m devtools.soak",
            "capacity": 200.0, "rate": 100.0, "duration_s": 24.0, "deal_stock": 1500,
            "payments": 10, "plan": {"fraction": 0.5, "interval": 2.0, "warmup": 0.0,
                                     "duration": 24.0},
            "samples": samples, "verdicts": [v.__dict__ for v in found],
            "checks": [{"name": "no 5xx", "ok": True, "detail": "none"}],
            "deals": [{"deal_id": 7, "checks": [{"name": "stock audit", "ok": True,
                                                 "detail": "ok"}]}],
            "outcomes": {"202": 10}, "dropped": 0, "between_deals": 2}


def test_the_report_names_the_series_that_grew_and_writes_its_charts(tmp_path: Path) -> None:
    rep = _report(rss_growth=5.0)
    md = write(rep, tmp_path).read_text()
    assert md.startswith("# Soak: FAILED")
    assert "| rss_mb.order-api (MB) |" in md and "**NO**" in md
    assert "pg_mb.orders" in md and "kept forever" in md
    assert (tmp_path / "report.json").exists() and (tmp_path / "memory.png").exists()


def test_a_flat_run_passes() -> None:
    rep = _report(rss_growth=0.0)
    rep["charts"] = []
    assert render(rep).startswith("# Soak: PASSED")


def test_a_deal_ends_only_on_a_sold_out_of_a_request_sent_after_it_opened() -> None:
    tally, stop = Tally(), threading.Event()
    opened = time.monotonic()
    tally.sold_out_sent = opened - 1.0  # the previous deal's late answer
    tally.sold_out.set()
    sold_out_after(tally, opened, stop, time.monotonic() + 0.3)
    assert tally.sold_out_sent < opened  # it waited its whole deadline: no false end

    def answer() -> None:
        tally.sold_out_sent = time.monotonic()
        tally.sold_out.set()

    threading.Timer(0.05, answer).start()
    sold_out_after(tally, opened, stop, time.monotonic() + 30)
    assert tally.sold_out_sent >= opened
