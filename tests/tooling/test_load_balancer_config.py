"""The HAProxy configuration of the buyers' address (devtools/haproxy.py): health-checked on
/readyz, a dead replica out within about a second, and no request that a replica may have
processed sent to the other unless it is a GET."""

from __future__ import annotations

import re

from devtools import haproxy


def _config() -> str:
    return haproxy.config("127.0.0.1:58000", [("order-api-1", "127.0.0.1:58001"),
                                              ("order-api-2", "127.0.0.1:58002")])


def _directive(config: str, name: str) -> str:
    found = re.findall(rf"^\s+{re.escape(name)}\b(.*)$", config, re.MULTILINE)
    assert len(found) == 1, (name, found)
    return str(found[0]).strip()


def test_every_replica_is_a_server_checked_on_its_readyz() -> None:
    config = _config()
    assert "bind 127.0.0.1:58000" in config
    assert re.search(r"^\s+server order-api-1 127\.0\.0\.1:58001$", config, re.MULTILINE)
    assert re.search(r"^\s+server order-api-2 127\.0\.0\.1:58002$", config, re.MULTILINE)
    assert _directive(config, "http-check send").startswith("meth GET uri /readyz ")
    assert _directive(config, "http-check expect") == "status 200"
    assert "check" in _directive(config, "default-server").split()


def test_a_dead_replica_leaves_rotation_within_a_second() -> None:
    servers = _directive(_config(), "default-server").split()
    inter = int(servers[servers.index("inter") + 1])
    fall = int(servers[servers.index("fall") + 1])
    assert inter * fall <= 1000
    # A refused connection of real traffic takes it out at once, without waiting for checks.
    assert "observe layer4" in " ".join(servers) and "on-error mark-down" in " ".join(servers)


def test_only_unsent_requests_and_gets_are_retried_and_on_the_other_replica() -> None:
    config = _config()
    assert _directive(config, "retry-on") == "conn-failure empty-response"
    # A POST /orders (or webhook) a replica received may have been processed: only GET and
    # HEAD (METH_GET) are retried after the request was sent.
    assert _directive(config, "http-request disable-l7-retry") == "unless METH_GET"
    assert _directive(config, "option redispatch") == "1"


def test_compose_resolves_the_replicas_by_name_and_keeps_following_them() -> None:
    config = haproxy.compose_config()
    assert "nameserver dns 127.0.0.11:53" in config
    assert re.search(r"^\s+server order-api-1 order-api-1:8000 resolvers docker ", config,
                     re.MULTILINE)
    assert "resolvers" not in _config()
