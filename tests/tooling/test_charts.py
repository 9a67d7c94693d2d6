"""The report charts on synthetic runs: PNG files exist, are drawn side by side, and the
report's markdown embeds them."""

from __future__ import annotations

import csv
import struct
from pathlib import Path
from typing import Any

from devtools import charts, compare, report
from devtools.sampler import COLUMNS
from hotdeal_core.observability.outcomes import CLIENT_OUTCOMES

HEADER = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "66%",
          "75%", "80%", "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%",
          "Total Request Count", "Total Failure Count"]
T0 = 1_796_140_000


def write_history(path: Path, seconds: int = 20, name: str = "POST /orders") -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        for i in range(seconds):
            p50, p95 = ("N/A", "N/A") if i == 0 else (str(10 + i), str(40 + 2 * i))
            for row_name in ("Aggregated", name):
                # 500 requests a second, one failure in the 6th
                out.writerow([T0 + i, 100, "" if row_name == "Aggregated" else "POST",
                              row_name, 490, 0, p50, *[p95] * 10, 500 * i,
                              1 if i >= 5 else 0])


def write_samples(path: Path, stock: int = 100, seconds: int = 30) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for i in range(seconds):
            sold = min(stock, 10 * i)
            settled = max(0, min(sold, 5 * (i - 5)))
            status = "ACTIVE" if i < 20 else "ENDED" if i < 25 else "RECONCILED"
            out.writerow([T0 - 1 + i, status, stock - sold, sold - settled, settled * 4 // 5,
                          settled // 5, 10, sold - settled])


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_history_and_samples_are_read_with_missing_percentiles_as_none(tmp_path: Path) -> None:
    write_history(tmp_path / charts.HISTORY)
    write_samples(tmp_path / charts.SAMPLES)
    run = charts.read_run(tmp_path)
    # rates from the cumulative counts: one point per row after the first
    assert len(run.load) == 19 and run.load[2].p95_ms == 46
    assert {p.rps for p in run.load} == {500.0}
    assert [p.failures_per_s for p in run.load][3:5] == [0.0, 1.0]
    assert run.t0 == T0 - 1  # the sampler starts first
    assert run.load_end == 20 and run.reconciled_at == 25
    assert run.stock[-1].on_sale == 0 and run.stock[-1].status == "RECONCILED"


def test_a_history_without_the_orders_rows_draws_no_load_chart(tmp_path: Path) -> None:
    write_history(tmp_path / charts.HISTORY, name="POST /noop")
    assert charts.read_history(tmp_path / charts.HISTORY) == []
    assert charts.draw({"run": charts.read_run(tmp_path)}, tmp_path) == []
    assert charts.markdown([]) == []


def test_both_charts_are_non_empty_pngs_and_runs_go_side_by_side(tmp_path: Path) -> None:
    for mode in ("db", "redis"):
        (tmp_path / mode).mkdir()
        write_history(tmp_path / mode / charts.HISTORY)
        write_samples(tmp_path / mode / charts.SAMPLES)
    one = charts.draw({"redis": charts.read_run(tmp_path / "redis")}, tmp_path, "one-")
    two = charts.draw({m: charts.read_run(tmp_path / m) for m in ("db", "redis")}, tmp_path,
                      "two-")
    assert [p.name for p in one] == ["one-chart-load.png", "one-chart-stock.png"]
    for single, double in zip(one, two, strict=True):
        assert single.stat().st_size > 5_000
        (w1, h1), (w2, h2) = png_size(single), png_size(double)
        assert w2 == 2 * w1 and h2 == h1  # one column per run, same height


def minimal_report(**extra: Any) -> dict[str, Any]:
    zero = {"requests": 0, "failures": 0, "rps": 0.0, "seconds": 0.0}
    return report.build_report({
        "label": "demo", "started_at": "2026-12-01T16:00:00+00:00", "locust_command": "locust",
        "config": {"duration": "20s", "shape": "constant", "mode": "redis", "users": 10,
                   "buyers": 10, "stock": 100, "per_user_limit": 1},
        "stats": {"orders": zero, "outcomes": dict.fromkeys(CLIENT_OUTCOMES, 0),
                  "outcome_rps": dict.fromkeys(CLIENT_OUTCOMES, 0.0), "error_rate_pct": 0.0,
                  "webhook": None, "top_failures": []},
        "cpu": {"wall_seconds": 1.0, "cpus": 2, "components": {},
                "machine_busy_seconds": 0.5}, **extra},
        {"cpus": 2, "platform": "test", "python": "3.11", "postgres": "15", "redis": "7",
         "kafka": "4.1.2"}, "make demo")


def test_the_report_embeds_the_charts_it_drew(tmp_path: Path) -> None:
    write_history(tmp_path / charts.HISTORY)
    write_samples(tmp_path / charts.SAMPLES)
    markdown = report.write_report(minimal_report(), tmp_path)
    assert "## Over time" in markdown
    for png in (charts.LOAD_PNG, charts.STOCK_PNG):
        assert f"]({png})" in markdown and (tmp_path / png).stat().st_size > 0
    assert (tmp_path / "report.md").read_text() == markdown
    assert '"charts": [' in (tmp_path / "report.json").read_text()


def test_a_report_without_samples_or_history_has_no_charts_section(tmp_path: Path) -> None:
    markdown = report.write_report(minimal_report(), tmp_path)
    assert "## Over time" not in markdown and "no charts" in markdown
    assert not list(tmp_path.glob("*.png"))


def test_compare_draws_db_and_redis_side_by_side_and_embeds_them(tmp_path: Path) -> None:
    runs = {}
    for name in ("trivial", "redis", "sold_out", "accepted", "db"):
        folder = tmp_path / name.replace("_", "-")
        folder.mkdir()
        if name in ("db", "redis"):
            write_history(folder / charts.HISTORY)
            write_samples(folder / charts.SAMPLES)
        run = minimal_report()
        run["config"]["out_dir"] = folder
        runs[name] = run
    pngs = compare.mode_charts(runs, tmp_path)
    assert [p.name for p in pngs] == ["compare-chart-load.png", "compare-chart-stock.png"]
    assert png_size(pngs[0])[0] == 2 * 600  # DB | Redis
    doc = {"command": "make compare", "runs": runs, "machine": runs["db"]["machine"],
           "passed": True, "charts": [p.name for p in pngs],
           "args": {"users": 10, "duration": "5s", "shape": "constant", "stock": 100,
                    "limit": 1}}
    markdown = compare.render(doc)
    assert "## Over time" in markdown and "](compare-chart-stock.png)" in markdown
