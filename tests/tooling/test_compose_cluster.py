"""compose.yaml's profile "cluster" matches scripts/cluster/kafka.sh, scripts/cluster/redis.sh
and `make up CLUSTER=1` (the same brokers and Redis nodes, the same load balancer
configuration, static consumer member ids)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from devtools.haproxy import compose_config

ROOT = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = (ROOT / "scripts" / "cluster" / "kafka.sh").read_text()
REDIS_SCRIPT = (ROOT / "scripts" / "cluster" / "redis.sh").read_text()


def _cluster_services() -> dict[str, dict[str, Any]]:
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    return {n: s for n, s in services.items() if "cluster" in (s.get("profiles") or [])}


def _script_setting(name: str) -> str:
    found = re.search(rf"^{re.escape(name)}=(\S+)$", KAFKA_SCRIPT, re.MULTILINE)
    assert found, name
    return found.group(1)


def test_the_cluster_profile_runs_three_brokers_and_two_of_each_process() -> None:
    services = _cluster_services()
    for group, count in (("kafka", 3), ("redis-c", 9), ("order-api", 2),
                         ("stock-worker", 2), ("reconciler", 2)):
        assert len([n for n in services if re.fullmatch(rf"{group}-?\d", n)]) == count, group


def test_the_compose_brokers_are_configured_as_the_scripts_brokers() -> None:
    brokers = [s for n, s in _cluster_services().items() if n.startswith("kafka-")]
    envs = [b["environment"] for b in brokers]
    assert sorted(e["KAFKA_NODE_ID"] for e in envs) == [1, 2, 3]
    assert len({e["CLUSTER_ID"] for e in envs}) == 1
    assert len({e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}) == 1
    for key in ("default.replication.factor", "min.insync.replicas",
                "offsets.topic.replication.factor", "transaction.state.log.min.isr",
                "broker.session.timeout.ms", "broker.heartbeat.interval.ms"):
        env_key = "KAFKA_" + key.upper().replace(".", "_")
        assert {str(e[env_key]) for e in envs} == {_script_setting(key)}, key


def test_the_cluster_processes_use_every_broker_and_the_redis_cluster() -> None:
    for name, service in _cluster_services().items():
        if name.startswith(("order-api-", "stock-worker-", "reconciler-")):
            env = service["environment"]
            assert env["KAFKA_BOOTSTRAP_SERVERS"].count(",") == 2, name
            assert env["REDIS_CLUSTER"] == "true", name


def _option(args: list[str], name: str) -> str:
    assert name in args, name
    return args[args.index(name) + 1]


def test_the_compose_redis_nodes_are_configured_as_the_scripts_nodes() -> None:
    services = _cluster_services()
    timeout = re.search(r'^NODE_TIMEOUT="\$\{\w+:-(\d+)\}"$', REDIS_SCRIPT, re.MULTILINE)
    assert timeout, "NODE_TIMEOUT"
    for name, service in services.items():
        if re.fullmatch(r"redis-c\d", name):
            args = [str(a) for a in service["command"]]
            assert _option(args, "--cluster-node-timeout") == timeout.group(1), name
            assert _option(args, "--cluster-replica-validity-factor") == "0", name
            assert _option(args, "--cluster-require-full-coverage") == "no", name
    # Two replicas per master: the promoted one still has a replica to acknowledge writes.
    init = " ".join(services["redis-cluster-init"]["command"])
    assert "--cluster-replicas 2" in init and "--cluster-replicas 2" in REDIS_SCRIPT
    assert all(f"redis-c{n}" in init for n in range(1, 10))


def test_the_cluster_buyers_reach_both_apis_through_haproxy_health_checking_readyz() -> None:
    lb = _cluster_services()["haproxy"]
    assert lb["image"].startswith("haproxy:2.")
    mounted = {v.split(":")[1]: v.split(":")[0] for v in lb["volumes"]}
    config = (ROOT / mounted["/usr/local/etc/haproxy/haproxy.cfg"]).read_text()
    assert config == compose_config()  # the file is the generator's (`make up CLUSTER=1`'s)
    assert "http-check send meth GET uri /readyz" in config
    apis = {n for n in _cluster_services() if n.startswith("order-api-")}
    assert {f"server {n} {n}:8000" for n in apis} <= {
        line.strip().split(" resolvers")[0] for line in config.splitlines()}
    assert set(lb["depends_on"]) == apis


def test_each_cluster_consumer_has_its_own_static_member_id() -> None:
    ids = [s["environment"]["CONSUMER_INSTANCE_ID"] for n, s in _cluster_services().items()
           if n.startswith(("stock-worker-", "reconciler-"))]
    assert sorted(ids) == ["reconciler-1", "reconciler-2", "stock-worker-1", "stock-worker-2"]
