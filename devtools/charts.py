"""Charts of a swarm over time, as PNG files beside its report.md (matplotlib, Agg): load from
locust's full-history CSV (rates as differences of its cumulative counts), stock and orders
from the sampler's samples.csv; several runs side by side on the same axes."""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ORDERS_NAME = "POST /orders"
HISTORY, SAMPLES = "locust_stats_history.csv", "samples.csv"
LOAD_PNG, STOCK_PNG = "chart-load.png", "chart-stock.png"
STATUS_COLORS = {"on sale": "tab:blue", "pending": "tab:orange", "confirmed": "tab:green",
                 "cancelled": "tab:red"}


@dataclass(frozen=True)
class LoadPoint:
    t: float  # unix seconds
    users: int
    rps: float
    failures_per_s: float
    p50_ms: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class StockPoint:
    t: float  # unix seconds
    status: str
    on_sale: int | None
    pending: int
    confirmed: int
    cancelled: int


def _number(text: str) -> float | None:
    return None if text in ("", "N/A") else float(text)


def read_history(path: Path, name: str = ORDERS_NAME) -> list[LoadPoint]:
    """One point per row of the request `name` after its first; [] when the file has no
    such rows (a run without --csv-full-history writes only the "Aggregated" row)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] == name]
    return [LoadPoint(float(r["Timestamp"]), int(r["User Count"]),
                      _rate(before, r, "Total Request Count"),
                      _rate(before, r, "Total Failure Count"), _number(r["50%"]),
                      _number(r["95%"]))
            for before, r in itertools.pairwise(rows)
            if float(r["Timestamp"]) > float(before["Timestamp"])]


def _rate(before: Mapping[str, str], after: Mapping[str, str], column: str) -> float:
    seconds = float(after["Timestamp"]) - float(before["Timestamp"])
    return (int(after[column]) - int(before[column])) / seconds


def read_samples(path: Path) -> list[StockPoint]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [StockPoint(float(r["t"]), r["status"],
                           None if r["on_sale"] == "" else int(r["on_sale"]), int(r["pending"]),
                           int(r["confirmed"]), int(r["cancelled"]))
                for r in csv.DictReader(f)]


@dataclass(frozen=True)
class RunSeries:
    """What one run's charts need; t0 is the run's time zero (its first point)."""

    load: Sequence[LoadPoint]
    stock: Sequence[StockPoint]

    @property
    def t0(self) -> float:
        firsts = [s[0].t for s in (self.load, self.stock) if s]
        return min(firsts) if firsts else 0.0

    @property
    def load_end(self) -> float | None:
        return self.load[-1].t - self.t0 if self.load else None

    @property
    def reconciled_at(self) -> float | None:
        return next((p.t - self.t0 for p in self.stock if p.status == "RECONCILED"), None)


def read_run(out_dir: Path) -> RunSeries:
    return RunSeries(read_history(out_dir / HISTORY), read_samples(out_dir / SAMPLES))


def _figure(columns: int, rows: int) -> tuple[Figure, list[list[Axes]]]:
    fig = Figure(figsize=(6.0 * columns, 3.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: PNG files, no display needed
    axes = fig.subplots(rows, columns, squeeze=False, sharex="col", sharey="row")
    return fig, [list(r) for r in axes]


def load_chart(runs: Mapping[str, RunSeries], path: Path) -> Path | None:
    """Requests/s and p50/p95 per second, one column per run; None if no run has points."""
    drawn = {label: r for label, r in runs.items() if r.load}
    if not drawn:
        return None
    fig, axes = _figure(len(drawn), 2)
    for col, (label, run) in enumerate(drawn.items()):
        top, bottom = axes[0][col], axes[1][col]
        t = [p.t - run.t0 for p in run.load]
        top.plot(t, [p.rps for p in run.load], label="requests/s")
        top.plot(t, [p.failures_per_s for p in run.load],
                 label="failures/s", color="tab:red")
        top.set_title(f"{label}: POST /orders per second")
        for pct, color in (("p50", "tab:blue"), ("p95", "tab:purple")):
            values = [getattr(p, f"{pct}_ms") for p in run.load]
            bottom.plot(t, [math.nan if v is None else v for v in values],
                        label=f"{pct} (last ~10 s)", color=color)
        bottom.set_xlabel("seconds since the start")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", fontsize="small")
    axes[0][0].set_ylabel("per second")
    axes[1][0].set_ylabel("latency (ms)")
    fig.savefig(path, dpi=100)
    return path


def stock_chart(runs: Mapping[str, RunSeries], path: Path) -> Path | None:
    """Units on sale and orders by status, one column per run; None if nothing sampled."""
    drawn = {label: r for label, r in runs.items() if r.stock}
    if not drawn:
        return None
    fig, axes = _figure(len(drawn), 1)
    for col, (label, run) in enumerate(drawn.items()):
        ax = axes[0][col]
        t = [p.t - run.t0 for p in run.stock]
        series: dict[str, list[float]] = {
            "on sale": [math.nan if p.on_sale is None else p.on_sale for p in run.stock],
            "pending": [p.pending for p in run.stock],
            "confirmed": [p.confirmed for p in run.stock],
            "cancelled": [p.cancelled for p in run.stock]}
        for name, values in series.items():
            ax.plot(t, values, label=name, color=STATUS_COLORS[name])
        for at, what, style in ((run.load_end, "load ends", ":"),
                                (run.reconciled_at, "reconciled", "--")):
            if at is not None:
                ax.axvline(at, color="grey", linestyle=style, label=what)
        ax.set_title(f"{label}: units on sale, orders by status")
        ax.set_xlabel("seconds since the start")
        ax.grid(alpha=0.3)
        ax.legend(loc="center right", fontsize="small")
    axes[0][0].set_ylabel("units / orders")
    fig.savefig(path, dpi=100)
    return path


def draw(runs: Mapping[str, RunSeries], out_dir: Path, prefix: str = "") -> list[Path]:
    """Both charts of `runs` into out_dir (those with something to draw)."""
    made = [load_chart(runs, out_dir / f"{prefix}{LOAD_PNG}"),
            stock_chart(runs, out_dir / f"{prefix}{STOCK_PNG}")]
    return [p for p in made if p is not None]


CAPTIONS = {LOAD_PNG: "Throughput and latency of `POST /orders` per second",
            STOCK_PNG: "Units on sale and orders by status (sampled every second)"}


def markdown(files: Sequence[str]) -> list[str]:
    """The `## Over time` section embedding the charts (paths relative to the report)."""
    if not files:
        return []
    out = ["## Over time", ""]
    for name in files:
        caption = next((c for png, c in CAPTIONS.items() if name.endswith(png)), name)
        out += [f"![{caption}]({name})", ""]
    return out
