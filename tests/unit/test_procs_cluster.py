"""`make up CLUSTER=1` (devtools.procs --cluster): two of each process, the APIs on two
ports, and never both sets at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import procs


def test_cluster_mode_runs_two_of_each_process_and_the_apis_on_two_ports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_PORT", "58100")
    cluster = procs._procs(tmp_path, cluster=True)
    assert [(p.name, p.module) for p in cluster] == [
        ("order-api-1", "order_api"), ("order-api-2", "order_api"),
        ("stock-worker-1", "stock_worker"), ("stock-worker-2", "stock_worker"),
        ("reconciler-1", "reconciler"), ("reconciler-2", "reconciler")]
    assert [p.api_url for p in cluster[:2]] == ["http://127.0.0.1:58100",
                                                "http://127.0.0.1:58101"]
    assert len({p.log for p in cluster} | {p.log for p in procs._procs(tmp_path)}) == 9


def test_cluster_up_refuses_while_the_single_mode_processes_run(tmp_path: Path) -> None:
    # A live `python ... order_api` behind the single-mode API's pid file.
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()",
                              "order_api"], stdin=subprocess.PIPE)
    try:
        procs.Proc("order-api", tmp_path).pid_file.write_text(f"{child.pid}\n")
        with pytest.raises(procs.ProcessFailed, match=re.escape("order-api running (single mode)")):
            procs.up(tmp_path, cluster=True)
        assert not any(p.pid_file.exists() for p in procs._procs(tmp_path, cluster=True))
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
