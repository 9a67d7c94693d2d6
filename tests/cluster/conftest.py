"""Cluster mode for real (`make test-cluster-e2e`): the 3-broker Kafka of
scripts/cluster/kafka.sh (and the Redis Cluster when REDIS_CLUSTER=true), with two order
APIs behind the buyers' load balancer (HAProxy), two stock workers and two reconcilers
(static group members), as `make up CLUSTER=1` runs them."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from devtools.procs import CLUSTER_REPLICAS, Proc, load_balancer
from tests.e2e.conftest import base_env, free_port

ROOT = Path(__file__).resolve().parents[2]
KAFKA = ROOT / "scripts" / "cluster" / "kafka.sh"


def kafka_cluster(command: str, *args: str) -> str:
    """scripts/cluster/kafka.sh <command> [node]."""
    done = subprocess.run([str(KAFKA), command, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def broker_count(bootstrap: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


@dataclass
class ClusterStack:
    run_dir: Path
    apis: list[Proc]
    consumers: list[Proc]
    lb: Proc  # HAProxy in front of `apis`

    @property
    def lb_url(self) -> str:
        """The buyers' one address: every swarm and client goes through it."""
        return self.lb.api_url

    def all(self) -> list[Proc]:
        return [*self.apis, *self.consumers, self.lb]


@pytest.fixture(scope="session")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterStack]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if asyncio.run(broker_count(bootstrap)) < 3:
        pytest.fail(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} is not the 3-broker cluster: "
                    "run `make test-cluster-e2e` (or scripts/cluster/kafka.sh up)")
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy (the buyers' load balancer) is not installed: run "
                    "scripts/ensure-haproxy.sh (make test-cluster-e2e does)")
    run_dir = tmp_path_factory.mktemp("cluster-run")
    replicas = range(1, CLUSTER_REPLICAS + 1)
    env = base_env()  # + whatever the environment says (Kafka servers, REDIS_CLUSTER)
    apis = [Proc(f"order-api-{i}", run_dir, {**env, "ORDER_API_PORT": str(free_port())},
                 module="order_api") for i in replicas]
    stack = ClusterStack(
        run_dir, apis=apis,
        consumers=[Proc(f"{name}-{i}", run_dir, {**env, "CONSUMER_INSTANCE_ID": f"{name}-{i}"},
                        module=module)
                   for name, module in (("stock-worker", "stock_worker"),
                                        ("reconciler", "reconciler")) for i in replicas],
        lb=load_balancer(run_dir, free_port(), apis))
    try:
        for p in stack.all():
            p.start()
        for p in stack.all():
            p.wait_ready(120)
        yield stack
    finally:
        for p in stack.all():
            p.stop()
