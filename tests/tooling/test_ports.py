"""The default ports: the scripts' list (scripts/lib/ports.sh) and the app's
(hotdeal_core/settings.py) agree, compose publishes them, and every one lies below the
kernel's ephemeral range, apart from the others."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
from pathlib import Path

import yaml

from devtools.chaos.cluster import ClusterStack
from devtools.chaos.faults import Stack, accepts
from devtools.procs import CLUSTER_REPLICAS
from hotdeal_core import settings

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "lib"
# Linux's default net.ipv4.ip_local_port_range starts here: a client's source port (and so
# a connection to itself, or a TIME_WAIT) can take any port from it on.
EPHEMERAL_START = 32768
REDIS_CLUSTER_NODES = 9
REDIS_BUS_OFFSET = -10000  # scripts/cluster/redis.sh: --cluster-port


def script_defaults() -> dict[str, list[int]]:
    """Each variable of ports.sh -> its ports, as the scripts see them with no override."""
    out = subprocess.run(["env", "-i", "bash", "-c", f'. "{LIB}/ports.sh"; set'],
                         check=True, capture_output=True, text=True).stdout
    names = re.findall(r'^: "\$\{(\w+):=', (LIB / "ports.sh").read_text(), re.MULTILINE)
    values = dict(re.findall(r"^(\w+)=(.*)$", out, re.MULTILINE))
    return {n: [int(p) for p in re.split(r"[, ]+", values[n].strip("'"))] for n in names}


def _redis_cluster(first: int) -> set[int]:
    nodes = {first + i for i in range(REDIS_CLUSTER_NODES)}
    return nodes | {p + REDIS_BUS_OFFSET for p in nodes}


def stacks() -> dict[str, set[int]]:
    """The ports of every set of services that may run on one machine at once."""
    d = script_defaults()
    api = settings.ORDER_API_PORT
    chaos, cluster = Stack(), ClusterStack()
    return {
        "local": {d["HOTDEAL_PG_PORT"][0], d["HOTDEAL_REDIS_PORT"][0], d["HOTDEAL_KAFKA_PORT"][0],
                  d["HOTDEAL_KAFKA_CONTROLLER_PORT"][0]}
        | {api + i for i in range(CLUSTER_REPLICAS + 1)},
        "redis cluster": _redis_cluster(d["HOTDEAL_REDIS_CLUSTER_PORT"][0]),
        "test redis cluster": _redis_cluster(d["REDIS_CLUSTER_TEST_PORT"][0]),
        "kafka cluster": {*d["HOTDEAL_KAFKA_CLUSTER_PORTS"],
                          *d["HOTDEAL_KAFKA_CLUSTER_CONTROLLER_PORTS"]},
        "chaos": {chaos.pg_port, chaos.redis_port, chaos.kafka_port, chaos.kafka_port + 1,
                  chaos.api_port},
        "chaos cluster": _redis_cluster(cluster.redis_port)
        | {cluster.kafka_port + i for i in range(6)}
        | {cluster.api_port + i for i in range(CLUSTER_REPLICAS + 1)},
    }


def test_the_scripts_default_ports_are_the_apps() -> None:
    d = script_defaults()
    assert d["HOTDEAL_PG_PORT"] == [settings.PG_PORT]
    assert d["HOTDEAL_REDIS_PORT"] == [settings.REDIS_PORT]
    assert d["HOTDEAL_KAFKA_PORT"] == [settings.KAFKA_PORT]
    defaults = settings.Settings.model_fields
    assert defaults["database_url"].default == settings.local_database_url()
    assert f":{settings.PG_PORT}/" in defaults["database_url"].default
    assert defaults["redis_url"].default == f"redis://127.0.0.1:{settings.REDIS_PORT}/0"
    assert defaults["kafka_bootstrap_servers"].default == f"127.0.0.1:{settings.KAFKA_PORT}"
    assert defaults["order_api_port"].default == settings.ORDER_API_PORT


def test_every_default_port_is_below_the_ephemeral_range_and_apart_from_the_others() -> None:
    seen: dict[int, str] = {}
    for name, ports in stacks().items():
        for port in ports:
            assert 1024 <= port < EPHEMERAL_START, f"{name}: {port}"
            assert port not in seen, f"{name} and {seen.get(port)} share {port}"
            seen[port] = name


def test_compose_publishes_the_local_default_ports() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    published = {name: {int(p.split(":")[-2]) for p in s.get("ports", [])}
                 for name, s in compose["services"].items()}
    assert published["postgres"] == {settings.PG_PORT}
    assert published["redis"] == {settings.REDIS_PORT}
    assert published["kafka"] == {settings.KAFKA_PORT}
    assert published["order-api"] == {settings.ORDER_API_PORT}
    brokers = sorted(p for n, ports in published.items() if n.startswith("kafka-") for p in ports)
    assert brokers == script_defaults()["HOTDEAL_KAFKA_CLUSTER_PORTS"]
    every = {p for ports in published.values() for p in ports}
    assert all(p < EPHEMERAL_START for p in every), sorted(every)


def _port_open(port: int) -> bool:
    return subprocess.run(["bash", "-c", f'ROOT="{ROOT}" LOG_TAG=t; . "{LIB}/common.sh"; '
                           f"port_open {port}"], check=False).returncode == 0


def test_the_connection_checks_see_a_listener_and_not_a_closed_port() -> None:
    """scripts/lib/common.sh `port_open` and devtools/chaos/faults.py `accepts`."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert _port_open(port) and asyncio.run(accepts(port))
    assert not _port_open(port) and not asyncio.run(accepts(port))
