"""`make chaos SHORT=1` inside `make test`: one kill per component under a small steady load
(the order API, the stock worker, the reconciler, Kafka: SIGKILL; Postgres: an immediate
stop; Redis: SIGKILL, its state lost), each restarted with the project's own command, then
every promise checked (devtools.chaos). The run owns its services (other ports, .infra-chaos/),
so it kills nothing the rest of the suite uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)
def test_every_promise_holds_while_each_component_is_killed_and_restarted(
        tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "devtools.chaos", "--short", "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=880, check=False)
    report = tmp_path / "report.json"
    assert report.exists(), f"no report; exit {proc.returncode}:\n{proc.stdout[-5000:]}" \
                            f"\n{proc.stderr[-5000:]}"
    rep = json.loads(report.read_text())
    failed = [f"{c['name']}: {c['detail']}" for c in rep["checks"] if not c["ok"]]
    assert not failed, "\n".join(failed)
    assert [f["component"] for f in rep["faults"]] == [
        "order-api", "stock-worker", "reconciler", "kafka", "postgres", "redis"]
    for f in rep["faults"]:
        assert f["restart_exit"] == 0, f"{f['name']}: restart failed:\n{f['restart_output']}"
        assert f["answered_after_s"] is not None, f"{f['name']} never answered again"
        assert f["accepting_after_s"] is not None, f"{f['name']}: no order accepted after it"
    assert rep["accepted"] > 0 and rep["payments"] > 0
    assert proc.returncode == 0, proc.stdout[-3000:]
