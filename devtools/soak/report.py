"""The soak's report: report.json (every sample, deal, check and verdict), report.md and
charts over time (PNG, matplotlib Agg)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from devtools.soak.series import SERIES, judged, keys_of, points
from devtools.tables import markdown_table

#: One chart per group: its title and the sample keys (prefixes) drawn on it.
CHARTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("memory", "RSS per process, Redis db (MB)", ("rss_mb.", "redis_db_mb")),
    ("postgres", "Postgres table + index size (MB)", ("pg_mb.",)),
    ("backlog", "outbox unpublished / rows, consumer lag, paid not confirmed",
     ("outbox_unpublished", "outbox_rows", "lag.", "paid_waiting")),
    ("latency", "POST /orders and payment-to-CONFIRMED p50 / p99 (ms)",
     ("order_p50_ms", "order_p99_ms", "confirm_p50_ms", "confirm_p99_ms")),
    ("cpu", "CPU per process (% of one core; soak: the load generator)", ("cpu_pct.",)),
    ("cpu-per-order", "CPU ms per order, its payment included", ("cpu_ms_per_order.",)),
    ("machine", "the machine's 1-minute load average (other work shares it)", ("loadavg_1m",)),
)


def _keys(prefixes: Sequence[str], samples: Sequence[Mapping[str, Any]]) -> list[str]:
    found = {k for row in samples for k in row}
    return sorted(k for k in found if any(k == p or (p.endswith(".") and k.startswith(p))
                                          for p in prefixes))


def draw(samples: Sequence[Mapping[str, Any]], warmup: float, out: Path) -> list[str]:
    files = []
    for name, title, prefixes in CHARTS:
        keys = _keys(prefixes, samples)
        if not keys:
            continue
        fig = Figure(figsize=(9, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for key in keys:
            pts = points(key, samples)
            ax.plot([t for t, _ in pts], [v for _, v in pts], label=key, linewidth=1.2)
        ax.axvspan(0, warmup, color="0.9", label="warm-up (not judged)")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        files.append(f"{name}.png")
    return files


def _v(x: float | None) -> str:
    return "-" if x is None else f"{x:,.4g}"


def render(rep: Mapping[str, Any]) -> str:
    cap = rep["capacity"]
    lines = [f"# Soak: {'PASSED' if rep['passed'] else 'FAILED'}", "",
             f"`{rep['command']}`, {rep['duration_s']:g} s of open-loop load at "
             f"{rep['rate']:,.0f} orders/s"
             + (f" ({rep['plan']['fraction']:.0%} of a measured ~{cap:,.0f}/s)" if cap else "")
             + f"; {len(rep['deals'])} deals of {rep['deal_stock']:,} units; "
             f"{rep['payments']:,} payments; sampled every {rep['plan']['interval']:g} s; "
             f"the first {rep['plan']['warmup']:g} s not judged.", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in rep.get("machine", {}).items())
             + ". The load generator shares it with the processes and the services.", "",
             "## Flatness (median of the last third vs the first, after the warm-up)", "",
             *markdown_table(["series", "first third", "last third", "limit", "flat"], [
                 [f"{v['series']} ({v['unit']})", _v(v["first"]), _v(v["last"]), _v(v["limit"]),
                  "yes" if v["flat"] else "**NO**: " + v["detail"]] for v in rep["verdicts"]])]
    lines += ["", "Not judged (charted; first and last sample):", ""]
    samples = rep["samples"]
    for spec in SERIES:
        if not judged(spec, rep["plan"]["duration"]):
            for key in keys_of(spec, samples):
                pts = points(key, samples)
                ends = f"{pts[0][1]:,.4g} -> {pts[-1][1]:,.4g} {spec.unit}" if pts else "-"
                lines.append(f"- {key}: {ends}; {spec.why}")
    bad = [(d["deal_id"], c) for d in rep["deals"] for c in d["checks"] if not c["ok"]]
    lines += ["", "## Checks", "", *markdown_table(["check", "ok", "detail"], [
        *([c["name"], "yes" if c["ok"] else "**NO**", c["detail"]] for c in rep["checks"]),
        ["every deal: audit, no oversell, per-user limit, accepted orders stored",
         "yes" if not bad else "**NO**", f"{len(rep['deals'])} deals"
         + "".join(f"; deal {i}: {c['name']}: {c['detail']}" for i, c in bad[:5])]])]
    lines += ["", "## Answers", "", ", ".join(f"{k}: {n:,}" for k, n in
                                              sorted(rep["outcomes"].items()))
              + f"; dropped by the generator: {rep['dropped']:,}; accepted between deals (no "
             f"deal on sale: ordinary orders from the product's stock): {rep['between_deals']:,}",
             "", "## Charts", ""]
    lines += [f"![{f}]({f})" for f in rep["charts"]]
    return "\n".join(lines) + "\n"


def write(rep: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rep["charts"] = draw(rep["samples"], rep["plan"]["warmup"], out)
    (out / "report.json").write_text(json.dumps(rep, indent=1, default=str))
    path = out / "report.md"
    path.write_text(render(rep))
    return path


def result_figures(rep: Mapping[str, Any]) -> dict[str, Any]:
    """The run's figures for its committed result file: everything but the samples and the
    per-deal details (the report's JSON keeps those)."""
    deals = rep["deals"]
    return {
        "passed": rep["passed"], "duration_s": rep["duration_s"], "rate": round(rep["rate"], 1),
        "capacity": None if rep.get("capacity") is None else round(rep["capacity"], 1),
        "plan": rep["plan"], "verdicts": rep["verdicts"], "checks": rep["checks"],
        "outcomes": rep["outcomes"], "dropped": rep["dropped"],
        "between_deals": rep["between_deals"], "payments": rep["payments"],
        "deals": {"count": len(deals), "accepted": sum(d["accepted"] for d in deals),
                  "sold_out": sum(d["sold_out_s"] is not None for d in deals),
                  "checks_held": sum(all(c["ok"] for c in d["checks"]) for d in deals)},
        "loadavg_1m_first_last": [s.get("loadavg_1m") for s in
                                  (rep["samples"][0], rep["samples"][-1])]
        if rep["samples"] else None,
        "machine": rep.get("machine")}
