"""The swarm's verifications after a real (short) locust swarm against the test stack."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from devtools.swarm import verify_deal
from hotdeal_core.domain import DealStatus
from hotdeal_core.usecases.audit import Audit, audit_deal, latest_deal_id
from hotdeal_core.usecases.context import Context
from tests.e2e.conftest import ADMIN, SECRET, Stack, eventually, start_hot_deal

ROOT = Path(__file__).resolve().parents[2]
USERS = 20


async def _swarm(stack: Stack, product_id: int, accepted_file: Path) -> str:
    env = {**os.environ, "HOTDEAL_PRODUCT_ID": str(product_id), "HOTDEAL_USERS": str(USERS),
           "HOTDEAL_ACCEPTED_FILE": str(accepted_file), "PAYMENT_WEBHOOK_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless",
        "-u", str(USERS), "-r", str(USERS), "-t", "5s", "--only-summary",
        "-H", stack.api.api_url, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


@pytest.mark.timeout(240)
async def test_swarm_verifications_hold_after_a_short_swarm_and_catch_a_lost_order(
        ctx: Context, client: httpx.AsyncClient, stack: Stack, tmp_path: Path) -> None:
    # 20 buyers x 2 units > 30: the deal sells out during the run.
    product_id = await start_hot_deal(ctx, client, 30, limit=2)
    deal_id = await latest_deal_id(ctx, product_id)
    accepted_file = tmp_path / "accepted.txt"
    await _swarm(stack, product_id, accepted_file)
    ended = await client.post(f"/products/{product_id}/hotdeal/end",
                              headers={"Authorization": f"Bearer {ADMIN}"})
    assert ended.status_code == 200, ended.text

    async def reconciled() -> Audit | None:
        audit = await audit_deal(ctx, deal_id)
        return audit if audit.status == DealStatus.RECONCILED else None
    audit = await eventually(reconciled, timeout=60, what=f"deal {deal_id} reconciled")

    accepted = set(accepted_file.read_text().split())
    assert accepted
    servers, topic = ctx.settings.kafka_bootstrap_servers, ctx.topics.orders
    checks = await verify_deal(ctx.engine, deal_id, accepted, bootstrap=servers, topic=topic,
                               audit=audit.as_dict())
    assert [c.name for c in checks] == [
        "no oversell", "stock audit", "per-user limit", "accepted orders in Postgres",
        "OrderPlaced on Kafka exactly once"]
    assert all(c.ok for c in checks), checks
    assert checks[-1].data["exactly_once"] == len(accepted)

    # An accepted id that never became an order is caught by both the Postgres and Kafka checks.
    lost = str(uuid4())
    checks = await verify_deal(ctx.engine, deal_id, {*accepted, lost}, bootstrap=servers,
                               topic=topic, audit=None)
    by_name = {c.name: c for c in checks}
    assert not by_name["accepted orders in Postgres"].ok
    assert lost in by_name["accepted orders in Postgres"].detail
    assert by_name["OrderPlaced on Kafka exactly once"].data["missing"] == 1
