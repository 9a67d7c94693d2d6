"""A real Prometheus scrapes the real processes: the order API (one process, and one with
two workers), the stock worker and the reconciler (METRICS_PORT), every target `up` with no
scrape error while three deals are live; the two-worker API reports every order whichever
worker answers the scrape (prometheus-client's multiprocess mode)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.procs import ROOT, Proc
from hotdeal_core.usecases.context import Context
from tests.buyers import buyer_headers
from tests.e2e.conftest import Stack, api_proc, eventually, free_port, start_hot_deal
from tests.random_refs import random_user

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="no prometheus binary (scripts/ensure-prometheus.sh installs Debian's; "
           "`make test` runs it)")]


DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "hotdeal.json"
_METRIC = re.compile(r"\b(?:hotdeal|faststream)_[a-z_]+\b|\bup\b")


@pytest.fixture(scope="module")
def two_workers(stack: Stack) -> Iterator[Proc]:
    proc = api_proc("order-api-2w", stack.run_dir, ORDER_API_WORKERS="2").start()
    try:
        yield proc.wait_ready(90)
    finally:
        code = proc.stop()
    assert code in (0, -15), code


def _target(proc: Proc, port_env: str) -> str:
    return f"127.0.0.1:{proc.env[port_env]}"


@pytest.fixture(scope="module")
def prometheus(stack: Stack, two_workers: Proc,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prometheus")
    jobs = {"order-api": [_target(stack.api, "ORDER_API_PORT")],
            "order-api-2w": [_target(two_workers, "ORDER_API_PORT")],
            "stock-worker": [_target(stack.worker, "METRICS_PORT")],
            "reconciler": [_target(stack.reconciler, "METRICS_PORT")]}
    # YAML is a superset of JSON: the generated config needs no YAML writer.
    (home / "prometheus.yml").write_text(json.dumps({
        # The API's scrape audits every live deal: the suite leaves ~180 live (about 0.6-0.9 s
        # on a busy machine): 2 s leaves room, Prometheus' own default is 10 s.
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}
                           for job, targets in jobs.items()]}))
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    server = subprocess.Popen(
        ["prometheus", f"--config.file={home / 'prometheus.yml'}",
         f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _at(rfc3339: str) -> datetime:
    """Prometheus' timestamps (nanoseconds, Z) to a datetime (microseconds)."""
    whole, _, fraction = rfc3339.removesuffix("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")


async def _api(client: httpx.AsyncClient, path: str) -> Any:
    try:
        answer = await client.get(path)
    except httpx.TransportError:  # not listening yet
        return None
    body = answer.json() if answer.status_code == 200 else {}
    return body.get("data")


async def test_prometheus_scrapes_every_process_without_error(
        stack: Stack, two_workers: Proc, prometheus: str, ctx: Context) -> None:
    async with httpx.AsyncClient(base_url=stack.api.api_url, timeout=30) as api:
        pids = [await start_hot_deal(ctx, api, 10) for _ in range(3)]
    async with httpx.AsyncClient(base_url=two_workers.api_url, timeout=30) as api2:
        accepted = 0
        for pid in pids * 2:
            buyer = random_user()
            placed = await api2.post("/orders", json={
                "product_id": pid, "user_id": buyer, "quantity": 1},
                headers=buyer_headers(buyer))
            assert placed.status_code == 202, placed.text
            accepted += 1
        # Whichever worker answers a scrape, it reports the orders of both.
        for _ in range(6):
            scrape = (await api2.get("/metrics")).text
            counted = sum(s.value for f in text_string_to_metric_families(scrape)
                          for s in f.samples if s.name == "hotdeal_orders_total"
                          and s.labels["outcome"] == "accepted")
            assert counted == accepted, scrape
    after = datetime.now(UTC)

    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:
        async def all_up() -> list[dict[str, Any]] | None:
            data = await _api(client, "/api/v1/targets")
            targets = [] if data is None else data["activeTargets"]
            # Each one's last scrape after the deals and orders above, and a good one.
            ok = len(targets) == 4 and all(
                t["health"] == "up" and t["lastError"] == "" and _at(t["lastScrape"]) > after
                for t in targets)
            return targets if ok else None
        try:
            await eventually(all_up, 60, "every target up with no scrape error")
        except AssertionError:
            pytest.fail(json.dumps(await _api(client, "/api/v1/targets"), indent=1))

        async def query(promql: str) -> list[dict[str, Any]] | None:
            data = await _api(client, "/api/v1/query?query=" + urllib.parse.quote(promql))
            return data["result"] if data and data["result"] else None
        deals = await eventually(lambda: query(
            'hotdeal_deal_units{job="order-api",term="initial"}'), 30, "the deals' units")
        assert {str(p) for p in pids} <= {r["metric"]["product"] for r in deals}
        orders = await eventually(lambda: query(
            f'hotdeal_orders_total{{job="order-api-2w",outcome="accepted"}} == {accepted}'),
            30, "the two-worker API's orders in Prometheus")
        assert len(orders) == 1, orders
        for job in ("stock-worker", "reconciler"):
            lag = await eventually(partial(query, f'hotdeal_consumer_lag{{job="{job}"}}'),
                                   30, f"{job}'s consumer lag")
            assert all(r["metric"]["group"].endswith(job) for r in lag), lag

        # The provisioned dashboard: every query valid, every metric it reads exposed (a
        # labelled counter appears with its first increment: the dead letters may not).
        exprs = [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"]
                 for t in panel["targets"]]
        for expr in exprs:
            answer = (await client.get("/api/v1/query", params={"query": expr})).json()
            assert answer["status"] == "success", (expr, answer)
        names = set((await client.get("/api/v1/label/__name__/values")).json()["data"])
        used = {name for expr in exprs for name in _METRIC.findall(expr)}
        missing = used - names - {"hotdeal_dead_letters_total"}
        assert not missing, missing

