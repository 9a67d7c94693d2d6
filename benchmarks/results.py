"""A benchmark's committed result file: its command, commit, machine, load and figures.

Every figure a document under docs/scenarios/ quotes comes from one of these files
(docs/scenarios/results/*.json), so it can be traced to the command and commit that made it.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.provenance import ROOT, git_commit

RESULTS = ROOT / "docs" / "scenarios" / "results"


def machine() -> str:
    """CPU model and count, memory, OS and Python, in one line."""
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return (f"{psutil.cpu_count()} CPUs ({model}), "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}; load generator on the same machine")


def invocation() -> str:
    """The command line this process was started with, as `python -m <module> ...`."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = f"python -m {spec.name.removesuffix('.__main__')}" if spec else f"python {sys.argv[0]}"
    return " ".join([head, *map(shlex.quote, sys.argv[1:])])


class Recorder:
    """Notes the load average when a run starts, writes the result file when it ends."""

    def __init__(self, command: str | None = None) -> None:
        self.command = command or invocation()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.load_before = [round(x, 2) for x in os.getloadavg()]

    def document(self, figures: Any) -> dict[str, Any]:
        return {"command": self.command, "commit": git_commit(), "machine": machine(),
                "started": self.started,
                "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "load_average_1_5_15": {"before": self.load_before,
                                        "after": [round(x, 2) for x in os.getloadavg()]},
                "figures": figures}

    def write(self, path: Path, figures: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.document(figures), indent=2, default=str) + "\n")
        print(f"[result] written to {path}")
        return path


def swarm_figures(run: dict[str, Any]) -> dict[str, Any]:
    """A locust swarm's figures (devtools.swarm.run_swarm's run), without its raw data."""
    stats, cpu = run["stats"], run["cpu"]
    wall = cpu["wall_seconds"]
    known = sum(v or 0.0 for v in cpu["components"].values())
    figures: dict[str, Any] = {
        "config": {k: run["config"][k] for k in ("label", "mode", "target", "users", "buyers",
                                                 "duration", "shape", "stock", "per_user_limit")},
        "orders": stats["orders"], "outcomes": stats["outcomes"],
        "outcome_rps": {k: round(v, 1) for k, v in stats["outcome_rps"].items()},
        "error_rate_pct": round(stats["error_rate_pct"], 3),
        "webhook": stats.get("webhook"), "top_failures": stats.get("top_failures", []),
        "cpu_pct_of_a_core": {
            **{k: None if v is None else round(100 * v / wall) for k, v in
               cpu["components"].items()},
            "other processes": round(max(0.0, 100 * (cpu["machine_busy_seconds"] - known) / wall)),
            "whole machine": round(100 * cpu["machine_busy_seconds"] / wall)},
        "outbox_delay": run.get("outbox_delay"),
        "checks": {c["name"]: {"ok": c["ok"], "detail": c.get("detail")}
                   for c in run.get("checks", [])}}
    return figures
