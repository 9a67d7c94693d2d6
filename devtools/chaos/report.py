"""The chaos run's report: report.json (everything) and report.md (the tables)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devtools.tables import markdown_table


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _restart(command: str) -> str:
    if "devtools.procs up" in command:
        return "`python -m devtools.procs up` (`make up`)"
    if "infra.sh up" in command:
        return "`scripts/infra.sh up` (`make infra-up`)"
    return f"`{command}`"


def _reasons(by: Mapping[str, int]) -> str:
    return ", ".join(f"{n} x {r}" for r, n in list(by.items())[:3]) or "-"


def _whole_run(rep: Mapping[str, Any]) -> list[str]:
    w = rep.get("whole_run")
    if not w:
        return []
    return [f"Whole run: **{w['failed']:,} of {w['attempts']:,} attempts failed "
            f"({100 * w['failed_share']:.1f} %)**, {w['failed_orders']:,} orders / "
            f"{w['failed_payments']:,} payments: "
            + (", ".join(f"{n:,} x {r}" for r, n in w["failed_by_reason"].items()) or "none")
            + ".", "", *_during(rep.get("during_faults"))]


def _during(d: Mapping[str, Any] | None) -> list[str]:
    if not d or not d["attempts"]:
        return []
    return [f"From the first kill to 10 s after the last: {d['failed']:,} of {d['attempts']:,} "
            f"attempts failed ({100 * d['failed_share']:.1f} %).", ""]


def _fault_row(f: Mapping[str, Any]) -> list[str]:
    promoted = f.get("extra", {}).get("ready_to_restart_after_s", "absent")
    how = f["how"] if promoted == "absent" else f"{f['how']} (after {_s(promoted)})"
    return [f"{f['name']}: {how}", _restart(f["restart_command"]), f"{f['window_s']:.1f} s",
            f"{f['attempts']:,}",
            f"{f['failed']:,} ({f['failed_orders']:,} / {f['failed_payments']:,})",
            _reasons(f["failed_by_reason"]), _s(f["answered_after_s"]),
            f"{_s(f['accepting_after_s'])} / {_s(f.get('first_202_answered_after_s'))}",
            f"{f['longest_gap_without_202_s']:.1f} s"]


def render(rep: Mapping[str, Any]) -> str:
    m = rep["machine"]
    plan = rep["plan"]
    lines = [
        f"# hotdeal chaos run: {'PASS' if rep['passed'] else 'FAIL'}", "",
        f"Command: `{rep['command']}`  ",
        f"Started {rep['started_at']}, {rep['duration_s']:g} s of load; machine: {m['cpus']} "
        f"CPUs, {m['platform']}, Python {m['python']}, PostgreSQL {m['postgres']}, Redis "
        f"{m['redis']}, Kafka {m['kafka']} (load generator on the same machine).", "",
        f"{plan['buyers']} buyers retrying with the same idempotency key / payment id, "
        f"{plan['warmup']:g} s warm-up, each component held down {plan['down']:g} s, then "
        f"restarted with the project's command and {plan['after']:g} s of steady load. "
        f"{rep['attempts']:,} attempts, {rep['accepted']:,} orders accepted, "
        f"{rep['payments']:,} payments.", "",
        *_whole_run(rep),
        "## Per fault", "",
        *markdown_table(
            ["fault", "restart command", "window", "attempts in it",
             "failed (orders / payments)", "main reasons", "component answered after",
             "orders accepted again after (sent / answered)", "longest gap without a 202"],
            [_fault_row(f) for f in rep["faults"]], "llrrrlrrr"),
    ]
    lines += ["", "Window: from the kill until the component answered, the restart command "
              "returned and a request sent after the kill was accepted (whichever is last). "
              "Orders accepted again: the first 202 to a request sent after the kill, by the "
              "time it was sent / by the time it was answered. "
              "Failed: no response, a 503, or `idempotency_in_progress`; every one of them "
              "was retried by its client.", "", "## Promises", "",
              *markdown_table(["check", "result", "detail"], [
                  [c["name"], "ok" if c["ok"] else "**FAILED**", c["detail"]]
                  for c in rep["checks"]])]
    a = rep["audit"]
    lines += ["", f"Audit at reconciliation: initial {a['initial']:,} = on sale "
              f"{a['on_sale']:,} + pending {a['pending']:,} + confirmed {a['confirmed']:,} "
              f"+ in flight {a['in_flight']:,} ({a['status']}).", ""]
    return "\n".join(lines)


def write(rep: Mapping[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(rep, indent=2, default=str) + "\n")
    md = out_dir / "report.md"
    md.write_text(render(rep))
    return md
