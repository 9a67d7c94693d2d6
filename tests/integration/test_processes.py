"""Real Python processes, no service: each process answers --help without starting, the API
refuses the development secrets, the metrics of several worker processes add up (multiprocess
mode). Here rather than in the unit tier: each test starts interpreters (seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["order_api", "stock_worker", "reconciler"])
def test_every_process_answers_help_without_starting(module: str) -> None:
    env = {**os.environ, "ALLOW_DEV_SECRETS": "false"}  # --help must not need settings
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {module}")
    assert "DATABASE_URL" in done.stdout and "dev-" not in done.stdout


def test_the_api_process_ends_with_a_clear_message_on_default_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ADMIN_TOKEN", "PAYMENT_WEBHOOK_SECRET")}
    env["ALLOW_DEV_SECRETS"] = "false"
    done = subprocess.run([sys.executable, "-m", "order_api"], cwd=tmp_path, env={
        **env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
        check=False)
    assert done.returncode != 0
    assert "refusing to start: PAYMENT_WEBHOOK_SECRET is the development default" \
        in done.stderr


_COUNT_IN_A_WORKER = """
from hotdeal_core.observability.metrics import count_order
for _ in range({n}):
    count_order("accepted")
"""


def test_multiprocess_mode_adds_up_every_workers_counts(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for n in (3, 4):  # two "workers", each its own process
        subprocess.run([sys.executable, "-c", _COUNT_IN_A_WORKER.format(n=n)], env=env,
                       cwd=ROOT, check=True, timeout=60)
    scrape = subprocess.run(
        [sys.executable, "-c", "import sys; from hotdeal_core.observability.exposition "
         "import render; sys.stdout.write(render().decode())"],
        env=env, cwd=ROOT, check=True, timeout=60, capture_output=True, text=True).stdout
    accepted = [s.value for f in text_string_to_metric_families(scrape) for s in f.samples
                if s.name == "hotdeal_orders_total" and s.labels["outcome"] == "accepted"]
    assert accepted == [7]
