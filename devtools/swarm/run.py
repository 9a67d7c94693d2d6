"""One swarm end to end: product and deal through the `hotdeal` CLI, locust headless, CPU per
component, `hotdeal deal stop --wait`, then `verify_deal`."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

import psutil
from sqlalchemy.ext.asyncio import create_async_engine

from devtools import report
from devtools.sampler import DealSampler
from devtools.swarm.checks import check_audit
from devtools.swarm.cli import hotdeal, mode_env
from devtools.swarm.config import SwarmConfig
from devtools.swarm.cpu import (
    children_cpu,
    component_roots,
    cpu_seconds,
    cpu_snapshot,
    machine_busy,
)
from devtools.swarm.locust_run import run_locust
from devtools.swarm.verify import UNSETTLED, deal_figures, verify_deal, wait_zero
from hotdeal_core.settings import load_settings


def run_swarm(cfg: SwarmConfig, api_pid: int | None = None) -> dict[str, Any]:
    """One swarm: deal, locust, CPU, stop --wait, verifications. Returns the run's figures."""
    settings = load_settings()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    buyers = cfg.buyers or cfg.users
    run: dict[str, Any] = {"label": cfg.label, "started_at": started.isoformat(timespec="seconds"),
                           "config": {**asdict(cfg), "buyers": buyers, "env": dict(cfg.env)}}
    accepted_file, prefix = cfg.out_dir / "accepted.txt", cfg.out_dir / "locust"
    accepted_file.unlink(missing_ok=True)
    env = {**os.environ, "HOTDEAL_API_URL": cfg.api_url, "HOTDEAL_USERS": str(buyers),
           "HOTDEAL_TARGET": cfg.target, "HOTDEAL_SHAPE": cfg.shape,
           "HOTDEAL_ACCEPTED_FILE": str(accepted_file),
           "PAYMENT_WEBHOOK_SECRET": settings.payment_webhook_secret.get_secret_value(),
           "HOTDEAL_SPIKE_USERS": str(cfg.users), "HOTDEAL_STEP_MAX": str(cfg.users), **cfg.env}
    if cfg.target == "orders":
        product = hotdeal("product", "create", "--name", f"{cfg.label} {started:%H:%M:%S}",
                          "--price", "1000", "--stock", str(cfg.stock))
        deal = hotdeal("deal", "start", str(product["id"]), "--stock", str(cfg.stock),
                       "--per-user-limit", str(cfg.per_user_limit),
                       # First come first served: the swarms measure the order path itself
                       # (the opening draw is measured by benchmarks/fairness.py).
                       "--opening-window", "0", env=mode_env(cfg.mode))
        if deal["stock_backend"] != cfg.mode:
            raise RuntimeError(f"deal {deal['deal_id']} keeps its stock in "
                             f"{deal['stock_backend']}, not {cfg.mode}")
        run.update(product_id=product["id"], deal_id=deal["deal_id"])
        env["HOTDEAL_PRODUCT_ID"] = str(product["id"])
        sampler = DealSampler(deal["deal_id"], cfg.out_dir / "samples.csv").start()  # charts
    print(f"[swarm] {cfg.label}: {cfg.users} users, {buyers} buyers, {cfg.duration}, "
          f"{cfg.shape}, target {cfg.target} at {cfg.api_url}", flush=True)
    roots = component_roots(api_pid)
    cpu0, gen0, busy0, t0 = cpu_snapshot(roots), children_cpu(), machine_busy(), time.monotonic()
    run["locust_command"], run["locust_exit"] = run_locust(cfg, env, prefix)
    wall = time.monotonic() - t0
    components = cpu_seconds(cpu0, cpu_snapshot(roots))
    components["load generator"] = children_cpu() - gen0
    run["cpu"] = {"wall_seconds": wall, "cpus": psutil.cpu_count(), "components": components,
                  "machine_busy_seconds": machine_busy() - busy0}
    run["stats"] = report.locust_stats(prefix, "POST /noop" if cfg.target == "noop"
                                       else report.ORDERS_ROW)
    if cfg.target == "orders":
        print(f"[swarm] stopping deal {run['deal_id']}; waiting for its reconciliation",
              flush=True)
        pid, env = str(run["product_id"]), mode_env(cfg.mode)
        run["audit_at_stop"] = hotdeal("deal", "stop", pid, "--wait", "--timeout", "180",
                                       env=env)["audit"]
        accepted = set(accepted_file.read_text().split()) if accepted_file.exists() else set()
        asyncio.run(_verify(run, accepted, lambda: hotdeal("deal", "audit", pid, env=env,
                                                           codes=(0, 1))))
        sampler.stop()
    return run


async def _verify(run: dict[str, Any], accepted: set[str], audit: Callable[[], Any]) -> None:
    """Wait for the stock worker to apply every payment, audit again, verify."""
    settings = load_settings()
    engine = create_async_engine(settings.database_url, pool_size=2)
    try:
        began = time.monotonic()
        left = await wait_zero(engine, UNSETTLED, run["deal_id"], 300,
                               "paid orders not settled yet (stock worker lag)")
        run["settlement"] = {"unsettled": left, "seconds": time.monotonic() - began}
        run["audit"] = await asyncio.to_thread(audit)
        checks = await verify_deal(engine, run["deal_id"], accepted,
                                   bootstrap=settings.kafka_bootstrap_servers,
                                   topic=settings.kafka_topic_prefix + "orders.v1",
                                   audit=run["audit"])
        at_stop = check_audit(run["audit_at_stop"])
        checks.insert(1, replace(at_stop, name="stock audit at reconciliation"))
        run["checks"] = [asdict(c) for c in checks]
        run.update(await deal_figures(engine, run["deal_id"]))
    finally:
        await engine.dispose()
