"""compose.yaml stays consistent: start-up order, healthchecks, Kafka version, README's services."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
README = ROOT / "README.md"
KAFKA_POM = ROOT / "scripts" / "kafka" / "pom.xml"

ALLOWED_CONDITIONS = {"service_healthy", "service_completed_successfully"}

# A top-level bullet ("- ", "* " or "+ ", not indented) that begins with a backticked name.
_SERVICE_BULLET = re.compile(r"^[-*+]\s+`([^`]+)`")


def readme_services(text: str) -> list[str]:
    """The backticked names that begin the top-level bullets of the `## Services` section.

    The section runs from the line `## Services` to the next `## ` heading (a `### ` sub-heading
    does not end it); indented sub-bullets are details, not services. Raises ValueError when
    there is no such section. Lines inside fenced code blocks are neither headings nor bullets.
    """
    names: list[str] = []
    in_section = False
    found = False
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        if stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            continue
        if line.startswith("## "):
            if in_section:
                break
            if line.rstrip() == "## Services":
                in_section = found = True
            continue
        if in_section and (match := _SERVICE_BULLET.match(line)):
            names.append(match.group(1).strip())
    if not found:
        raise ValueError("no '## Services' section")
    return names


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "compose.yaml is not a mapping"
    services = data.get("services")
    assert isinstance(services, dict) and services, "compose.yaml has no services"
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def test_depends_on_waits_for_health_or_completion() -> None:
    services = _services()
    checked = 0
    for name, svc in services.items():
        deps = svc.get("depends_on")
        if deps is None:
            continue
        # The short list form means "started", which waits for nothing useful.
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert isinstance(spec, dict), f"{name} -> {dep}: no condition"
            assert spec.get("condition") in ALLOWED_CONDITIONS, (
                f"{name} -> {dep}: condition {spec.get('condition')!r} not in {ALLOWED_CONDITIONS}"
            )
            checked += 1
    assert checked, "no service declares depends_on"


def test_every_healthy_dependency_has_a_healthcheck() -> None:
    services = _services()
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            if spec.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), (
                    f"{name} waits for {dep} to be healthy but {dep} has no healthcheck"
                )


@pytest.mark.parametrize("service", ["postgres", "redis", "kafka"])
def test_infrastructure_has_a_healthcheck(service: str) -> None:
    services = _services()
    assert service in services
    healthcheck = services[service].get("healthcheck")
    assert isinstance(healthcheck, dict) and healthcheck.get("test"), f"{service}: no healthcheck"


def test_kafka_healthcheck_checks_output_not_exit_code() -> None:
    # kafka-broker-api-versions.sh exits 0 even when it prints an error.
    test = _services()["kafka"]["healthcheck"]["test"]
    command = test if isinstance(test, str) else " ".join(str(part) for part in test)
    assert "kafka-broker-api-versions.sh" in command
    assert "grep" in command


def test_kafka_image_matches_the_local_broker_version() -> None:
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>",
                      KAFKA_POM.read_text(encoding="utf-8"))
    assert match, f"no <kafka.version> in {KAFKA_POM}"
    image = _services()["kafka"]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository == "apache/kafka"
    assert tag == match.group(1), f"compose runs Kafka {tag}, scripts/infra.sh {match.group(1)}"


def test_readme_services_exist_in_compose() -> None:
    assert README.exists(), "README.md is missing"
    try:
        names = readme_services(README.read_text(encoding="utf-8"))
    except ValueError:
        pytest.fail("README.md has no '## Services' section (a line exactly '## Services')")
    assert names, "README's '## Services' section lists no `service` bullet"
    missing = sorted(set(names) - set(_services()))
    assert not missing, f"README names services that compose.yaml lacks: {missing}"


README_SAMPLE = """\
# hotdeal

## Quick start
- `not-a-service`: a bullet of another section

## Services

Intro paragraph mentioning `also-not-a-service` in prose.

- `order-api`: the HTTP API
* `stock-worker` - consumes payments
  - `POST /orders`: a sub-bullet, not a service
- plain bullet without a name
### Load test
- `locust-master`: Locust's web UI

```bash
## a shell comment, not a heading
- `in-a-code-block`: ignored
```
- `locust-worker`: after the code block

## Development
- `after-the-section`: ignored
"""


def test_readme_parser_reads_only_the_services_section() -> None:
    assert readme_services(README_SAMPLE) == [
        "order-api",
        "stock-worker",
        "locust-master",
        "locust-worker",
    ]


def test_readme_parser_section_at_end_and_missing_section() -> None:
    assert readme_services("## Services\n- `redis`: stock\n") == ["redis"]
    assert readme_services("## Services\n\nNothing listed.\n") == []
    with pytest.raises(ValueError):
        readme_services("# hotdeal\n## Service\n- `redis`\n")


# --- what an operator runs: graceful stops, Kafka's data, consumer health, the image, the
# observability profile.

DOCKERFILE = ROOT / "Dockerfile"
OBSERVABILITY = ROOT / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "grafana" / "dashboards" / "hotdeal.json"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
PYPROJECT = ROOT / "pyproject.toml"
CONSUMERS = ("stock-worker", "reconciler")
# The metrics the issue asks an operator to see, each on the dashboard.
DASHBOARD_METRICS = (
    "hotdeal_orders_total", "hotdeal_http_request_duration_seconds",
    "hotdeal_reservation_duration_seconds", "hotdeal_outbox_oldest_unpublished_seconds",
    "hotdeal_consumer_lag", "hotdeal_settlement_duration_seconds", "hotdeal_deal_units",
    "hotdeal_dead_letters_total")


def seconds(duration: str) -> float:
    """A compose duration ("30s", "1m30s", "1h") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


def test_duration_parser() -> None:
    assert seconds("30s") == 30 and seconds("1m30s") == 90 and seconds("1h") == 3600
    with pytest.raises(AssertionError):
        seconds("30")


def _graceful_timeouts() -> dict[str, float]:
    from order_api.servers import GRACEFUL_SECONDS
    from reconciler.app import GRACEFUL_TIMEOUT as RECONCILER
    from stock_worker.app import GRACEFUL_TIMEOUT as WORKER
    return {"order-api": GRACEFUL_SECONDS, "stock-worker": WORKER, "reconciler": RECONCILER}


@pytest.mark.parametrize("service", ["order-api", *CONSUMERS])
def test_stop_grace_period_outlasts_the_process_graceful_timeout(service: str) -> None:
    grace = _services()[service].get("stop_grace_period")
    assert grace, f"{service}: no stop_grace_period (compose's default is 10 s)"
    # The process's own timeout, then closing its runtime (writers, relay, pools): 5 s more.
    assert seconds(grace) >= _graceful_timeouts()[service] + 5, (service, grace)


def test_kafka_keeps_its_log_on_a_volume_and_creates_no_topic_by_itself() -> None:
    data = _compose()
    kafka = data["services"]["kafka"]
    env = kafka["environment"]
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in kafka.get("volumes", [])}
    log_dir = env.get("KAFKA_LOG_DIRS")
    assert log_dir in mounts, f"KAFKA_LOG_DIRS={log_dir} is not on a volume: {mounts}"
    assert mounts[log_dir] in (data.get("volumes") or {}), "the volume is not declared"
    assert env.get("CLUSTER_ID"), "a formatted volume needs the same cluster id every start"


@pytest.mark.parametrize("service", CONSUMERS)
def test_consumers_health_is_the_readyz_of_their_metrics_port(service: str) -> None:
    svc = _services()[service]
    env = svc["environment"]
    test = svc.get("healthcheck", {}).get("test")
    assert test, f"{service}: no healthcheck"
    command = " ".join(str(part) for part in test)
    assert f"localhost:{env['METRICS_PORT']}/readyz" in command, command
    assert "READY_FILE" not in env  # the ready file is gone: /readyz says it
    assert env["METRICS_HOST"] == "0.0.0.0"  # Prometheus scrapes it from another container


def test_the_runtime_image_is_built_from_the_lock_without_dev_tools() -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.MULTILINE)
    assert stages[-1] == "runtime", stages  # the last stage is what `docker build .` makes
    assert "loadtest" in stages, stages
    assert "-r requirements/runtime.lock" in dockerfile
    assert "[dev]" not in dockerfile and "--no-deps ." in dockerfile
    for name, svc in _services().items():
        build = svc.get("build") or {}
        if svc.get("image") == "hotdeal:local":
            assert build.get("target") == "runtime", name
        if name.startswith("locust"):
            assert build.get("target") == "loadtest", name


def _locked() -> dict[str, str]:
    from packaging.utils import canonicalize_name
    pins: dict[str, str] = {}
    for line in RUNTIME_LOCK.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not a pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_runtime_lock_pins_every_runtime_dependency_and_no_dev_tool() -> None:
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    pins = _locked()
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {RUNTIME_LOCK.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{RUNTIME_LOCK.name} pins {req.name}=={pins[name]}, pyproject wants {req.specifier}:"
            " run `make lock`")
    # The tools of the dev extra (some of its other entries, e.g. pyyaml, are also needed at
    # run time by a runtime dependency).
    tools = {"pytest", "pytest-asyncio", "pytest-timeout", "mypy", "ruff", "locust",
             "hypothesis", "asgi-lifespan"}
    assert tools <= {canonicalize_name(Requirement(s).name)
                     for s in project["optional-dependencies"]["dev"]}
    assert not tools & pins.keys(), f"dev tools in the runtime lock: {tools & pins.keys()}"


def test_observability_profile_scrapes_the_three_processes() -> None:
    services = _services()
    for name in ("prometheus", "grafana"):
        assert services[name].get("profiles") == ["observability"], name
        assert services[name].get("healthcheck", {}).get("test"), name
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: target for job in config["scrape_configs"]
               for conf in job["static_configs"] for target in conf["targets"]}
    api = services["order-api"]["environment"]
    assert targets["order-api"] == f"order-api:{api['ORDER_API_PORT']}"
    for name in CONSUMERS:
        assert targets[name] == f"{name}:{services[name]['environment']['METRICS_PORT']}"
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"{mount}: no such file"


def test_the_dashboard_reads_the_provisioned_prometheus_and_every_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    datasources = yaml.safe_load((OBSERVABILITY / "grafana" / "provisioning" / "datasources"
                                  / "prometheus.yml").read_text(encoding="utf-8"))
    uid = datasources["datasources"][0]["uid"]
    exprs = []
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        exprs += [target["expr"] for target in panel["targets"]]
    text = "\n".join(exprs)
    missing = [m for m in DASHBOARD_METRICS if not re.search(rf"\b{m}(_bucket|_count)?\b", text)]
    assert not missing, f"not on the dashboard: {missing}"
