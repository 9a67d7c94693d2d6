"""CPU seconds per component over a swarm window: user+system of each process and its
children, reaped ones included; the load generator is this process's reaped children."""

from __future__ import annotations

import resource
from collections.abc import Mapping
from pathlib import Path

import psutil

from devtools.swarm.config import INFRA, RUN_DIR

PROCS = {"order API": "order-api", "stock worker": "stock-worker", "reconciler": "reconciler"}
#: Per component, CPU seconds per live process keyed by (pid, create time) so that a reused
#: pid is a new process; None when none of its processes could be read.
Snapshot = dict[str, dict[tuple[int, float], float] | None]


def _pid_file(path: Path) -> list[int]:
    try:
        return [int(path.read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []


def component_roots(api_pid: int | None = None) -> dict[str, list[int]]:
    roots = {name: _pid_file(RUN_DIR / f"{proc}.pid") for name, proc in PROCS.items()}
    if api_pid is not None:
        roots["order API"] = [api_pid]
    roots["Postgres"] = [p.pid for p in psutil.process_iter(["name", "username"])
                         if p.info["name"] == "postgres" and p.info["username"] == "postgres"]
    roots["Redis"] = _pid_file(INFRA / "redis" / "redis.pid")
    roots["Kafka"] = _pid_file(INFRA / "kafka" / "kafka.pid")
    return roots


def _tree_times(pids: list[int]) -> dict[tuple[int, float], float] | None:
    times: dict[tuple[int, float], float] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                with p.oneshot():
                    t, key = p.cpu_times(), (p.pid, p.create_time())
                times[key] = t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
    return times or None


def cpu_snapshot(roots: Mapping[str, list[int]]) -> Snapshot:
    return {name: _tree_times(pids) for name, pids in roots.items()}


def cpu_seconds(before: Snapshot, after: Snapshot) -> dict[str, float | None]:
    def delta(start: Mapping[tuple[int, float], float],
              end: Mapping[tuple[int, float], float]) -> float:
        grown = sum(v - start.get(k, 0.0) for k, v in end.items())
        gone = sum(v for k, v in start.items() if k not in end)  # counted via the parent
        return max(grown - gone, 0.0)
    return {name: None if end is None else delta(before.get(name) or {}, end)
            for name, end in after.items()}


def children_cpu() -> float:
    """This process's reaped children (locust and its workers): the load generator."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (every core)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)
