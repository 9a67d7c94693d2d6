"""`make up CLUSTER=1` (devtools.procs --cluster): two of each process, the APIs behind one
load balancer address, and never both sets at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import procs


def test_cluster_mode_runs_two_of_each_process_behind_one_load_balancer_address(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_PORT", "58100")
    cluster = procs._procs(tmp_path, cluster=True)
    assert [(p.name, p.module) for p in cluster] == [
        ("order-api-1", "order_api"), ("order-api-2", "order_api"),
        ("stock-worker-1", "stock_worker"), ("stock-worker-2", "stock_worker"),
        ("reconciler-1", "reconciler"), ("reconciler-2", "reconciler"),
        ("load-balancer", "")]
    # Buyers keep ORDER_API_PORT: the LB's; the replicas are on the ports after it.
    lb = cluster[-1]
    assert lb.api_url == "http://127.0.0.1:58100" and lb.serves_api
    assert [p.api_url for p in cluster[:2]] == ["http://127.0.0.1:58101",
                                                "http://127.0.0.1:58102"]
    assert len({p.log for p in cluster} | {p.log for p in procs._procs(tmp_path)}) == 10


def test_the_load_balancer_runs_haproxy_on_its_config_naming_both_replicas(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_PORT", "58100")
    lb = procs._procs(tmp_path, cluster=True)[-1]
    assert Path(lb.command[0]).name == "haproxy" and lb.command[1:3] == ["-db", "-f"]
    config = lb.files[Path(lb.command[3])]
    assert "bind 127.0.0.1:58100" in config
    assert "server order-api-1 127.0.0.1:58101" in config
    assert "server order-api-2 127.0.0.1:58102" in config


def test_each_cluster_consumer_has_its_own_static_member_id(tmp_path: Path) -> None:
    consumers = [p for p in procs._procs(tmp_path, cluster=True)
                 if p.module in ("stock_worker", "reconciler")]
    assert [p.env["CONSUMER_INSTANCE_ID"] for p in consumers] == [
        "stock-worker-1", "stock-worker-2", "reconciler-1", "reconciler-2"]
    # Single mode: one of each, dynamic membership (no id to collide with a second copy).
    assert all("CONSUMER_INSTANCE_ID" not in p.env for p in procs._procs(tmp_path))


def test_every_consumer_is_awaited_on_its_own_port_after_the_apis(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_API_PORT", "18100")
    consumers = [p for cluster in (False, True) for p in procs._procs(tmp_path, cluster)
                 if not p.serves_api]
    ports = [int(p.env["METRICS_PORT"]) for p in consumers]
    assert len(consumers) == 6 and len(set(ports)) == 6 and min(ports) > 18102, ports
    assert [p.ready_url for p in consumers[:1]] == [f"http://127.0.0.1:{ports[0]}/readyz"]
    assert all(p.env["METRICS_PORT"] == str(procs.consumer_port(p.name, 18100))
               for p in consumers)  # where the chaos run probes a restarted one


def test_a_consumer_started_without_a_port_gets_one_of_its_own(tmp_path: Path) -> None:
    shared: dict[str, str] = {}
    # `python -m this` exits at once; as a consumer (no API), it is given a port to answer on.
    a, b = (procs.Proc(name, tmp_path, shared, module="this").start() for name in "ab")
    for p in (a, b):
        assert p.popen is not None and p.popen.wait(30) == 0
    assert a.env["METRICS_PORT"] != b.env["METRICS_PORT"] and shared == {}


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
