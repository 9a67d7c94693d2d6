"""compose.yaml stays consistent: start-up order, healthchecks, Kafka version, README's services."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

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
