"""The documents say what the code does: the README's HTTP table is the OpenAPI document's
routes, statuses and error codes (both ways), every topic is listed, every cited path exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from devtools.apidocs import documents
from hotdeal_core.messaging.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s]*)`")
_STATUS = re.compile(r"`([1-5]\d\d)`")
_CODE = re.compile(r"`([a-z][a-z_]*)`")


def _normal(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def readme_routes() -> dict[tuple[str, str], tuple[set[int], set[str]]]:
    """(method, path) -> (statuses, error codes) from the README's endpoint table."""
    routes = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not (found := _ROUTE.match(cells[0])):
            continue
        key = (found.group(1), _normal(found.group(2)))
        assert key not in routes, f"{key} has two rows in the README"
        answers = cells[2]
        routes[key] = ({int(s) for s in _STATUS.findall(answers)}, set(_CODE.findall(answers)))
    return routes


def openapi_routes() -> dict[tuple[str, str], tuple[set[int], set[str]]]:
    routes = {}
    for path, operations in documents()["openapi.json"]["paths"].items():
        for method, op in operations.items():
            statuses = {int(s) for s in op["responses"]}
            codes = {code for s, r in op["responses"].items() if int(s) < 500
                     for code in r.get("content", {}).get("application/json", {})
                     .get("examples", {})}
            routes[(method.upper(), _normal(path))] = (statuses, codes)
    return routes


def test_readme_http_table_is_the_openapi_document_both_ways() -> None:
    readme, openapi = readme_routes(), openapi_routes()
    assert set(readme) == set(openapi), (
        f"routes only in the README: {sorted(set(readme) - set(openapi))}; "
        f"only in the OpenAPI document: {sorted(set(openapi) - set(readme))}")
    for route, (statuses, codes) in openapi.items():
        assert readme[route][0] == statuses, f"{route}: README {readme[route][0]} vs {statuses}"
        assert readme[route][1] == codes, f"{route}: README {readme[route][1]} vs {codes}"


def test_admin_and_buyer_routes_declare_their_bearer_schemes_and_the_others_do_not() -> None:
    doc = documents()["openapi.json"]
    schemes = doc["components"]["securitySchemes"]
    assert schemes["adminBearer"]["scheme"] == schemes["buyerBearer"]["scheme"] == "bearer"
    secured = {(m.upper(), p): op.get("security") for p, ops in doc["paths"].items()
               for m, op in ops.items() if op.get("security")}
    assert secured == {("POST", "/orders/{order_id}/confirm"): [{"adminBearer": []}],
                       ("POST", "/products/{product_id}/hotdeal/start"): [{"adminBearer": []}],
                       ("POST", "/products/{product_id}/hotdeal/end"): [{"adminBearer": []}],
                       ("POST", "/orders"): [{"buyerBearer": []}],
                       ("GET", "/orders/{order_id}"): [{"buyerBearer": []}],
                       ("POST", "/orders/{order_id}/cancel"): [{"buyerBearer": []}]}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            answers_401 = "401" in op["responses"]
            assert answers_401 == ((method.upper(), path) in secured
                                   or path == "/payments/webhook"), (method, path)


def test_every_error_answer_is_documented_with_the_error_shape() -> None:
    doc = documents()["openapi.json"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if int(status) < 400 or path == "/readyz":
                    continue
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, \
                    (method, path, status)
                assert response["content"]["application/json"]["examples"], (method, path)


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md", "docs/events.md"])
def test_every_topic_is_listed(doc: str) -> None:
    text = (ROOT / doc).read_text()
    missing = [t for t in Topics().all() if f"`{t}`" not in text]
    assert not missing, f"{doc} does not list the topics {missing}"


# ---------------------------------------------------------------- cited paths
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
_PATH = re.compile(r"`([\w.\-/]+\.(?:py|sh|lua|md|json|toml|ya?ml|csv|ini|xml|mako|txt|html))`")
_MODULE = re.compile(r"python3? -m ([a-z_]+(?:\.[a-z_]+)*)")
# Files a run writes into its reports/<run>/ folder (git-ignored): cited by name only.
RUN_OUTPUTS = {"report.md", "report.json", "comparison.md", "comparison.json", "locust.html",
               "locust.json", "locust.log", "locust_stats.csv", "locust_stats_history.csv",
               "locust_failures.csv", "locust_exceptions.csv", "accepted.txt", "samples.csv",
               "trivial-app.log"}


def repo_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (ROOT / f).exists()]


def unresolved(doc: Path, cited: str, files: list[str]) -> str | None:
    """Why `cited` (in `doc`) is not a path of the repository, or None if it is."""
    target = cited.rstrip("/")
    if target.startswith("reports/"):  # a run's output folder, git-ignored by design
        return "a script under reports/ is not committed" if \
            target.endswith((".py", ".sh")) else None
    if (ROOT / target).exists() or (doc.parent / target).exists():
        return None
    if "/" in target:  # written relative to a package, e.g. `stock/reserver.py`
        return None if any(f.endswith("/" + target) for f in files) else "no such path"
    if target in RUN_OUTPUTS or any(Path(f).name == target for f in files):
        return None
    return "no such file"


def test_every_path_cited_in_the_docs_exists() -> None:
    files, problems = repo_files(), []
    for doc in DOCS:
        text = doc.read_text()
        for cited in {*_LINK.findall(text), *_PATH.findall(text)}:
            if cited.startswith(("http://", "https://", "mailto:")):
                continue
            why = unresolved(doc, cited, files)
            if why:
                problems.append(f"{doc.relative_to(ROOT)}: {cited}: {why}")
        for module in set(_MODULE.findall(text)):
            base = ROOT / module.replace(".", "/")
            if not (base.with_suffix(".py").exists() or (base / "__main__.py").exists()):
                problems.append(f"{doc.relative_to(ROOT)}: python -m {module}: no such module")
    assert not problems, "\n".join(problems)
