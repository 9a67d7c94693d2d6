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


# ---------------------------------------------------------------- the code map
CODE_MAP = ROOT / "docs" / "code-map.md"
# Folders whose every subfolder and module the map lists (tests/: its folders and helpers).
_MAPPED = ("order_api", "stock_worker", "reconciler", "hotdeal_cli", "schemas", "hotdeal_core",
           "devtools", "loadtest", "benchmarks", "scripts", "tests")
_ENTRY = re.compile(r"[\w.\-]+/?(?:, [\w.\-]+/?)*")
# Modules issue 19's other branches add; listed ahead of their merge (drop once merged).
LANDING = {f"hotdeal_core/{d}/{m}.py" for d, m in [
    ("ports", "orders"), ("ports", "settlement"), ("ports", "deals"), ("db", "orders"),
    ("db", "settlement"), ("db", "payments"), ("db", "deals")]}


def code_map_entries() -> list[str]:
    """The paths the code map's tree names: a line is `<indent><name>[, <name>]  <what>`, its
    folder the nearest line above it indented less; other lines continue a description."""
    block = CODE_MAP.read_text().split("## The tree", 1)[1].split("```")[1]
    entries: list[str] = []
    parents: list[tuple[int, str]] = []
    for line in block.splitlines():
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        if not _ENTRY.fullmatch(names) or not any(c in names for c in "./"):
            continue
        indent = len(line) - len(line.lstrip())
        while parents and parents[-1][0] >= indent:
            parents.pop()
        folder = parents[-1][1] if parents else ""
        for name in names.split(", "):
            entries.append(folder + name)
            if name.endswith("/"):
                parents.append((indent, folder + name))
    return entries


def mapped_paths() -> set[str]:
    """Every top-level folder, and in the code folders every subfolder and module (not
    `__init__.py`, `__main__.py`, migrations, nor the test modules of tests/<tier>/)."""
    wanted: set[str] = set()
    for f in repo_files():
        parts = f.split("/")
        if len(parts) < 2 or f.startswith(".") or "__pycache__" in parts:
            continue
        wanted.add(parts[0] + "/")
        if parts[0] not in _MAPPED:
            continue
        depth = 2 if parts[0] == "tests" else len(parts) - 1
        wanted.update("/".join(parts[:i]) + "/" for i in range(2, min(depth, len(parts) - 1) + 1))
        if (f.endswith(".py") and parts[-1] not in ("__init__.py", "__main__.py")
                and "versions" not in parts and (parts[0] != "tests" or len(parts) == 2)):
            wanted.add(f)
    return wanted


def test_the_code_map_lists_every_top_level_folder_subfolder_and_module() -> None:
    missing = sorted(mapped_paths() - set(code_map_entries()))
    assert not missing, (
        "docs/code-map.md (## The tree) does not list: " + ", ".join(missing)
        + ". Add each under its folder's line, indented, with a few words on what it owns.")


def test_every_path_of_the_code_map_exists() -> None:
    entries = code_map_entries()
    stale = [e for e in entries if e not in LANDING and not (ROOT / e).exists()]
    twice = sorted({e for e in entries if entries.count(e) > 1})
    assert not stale, f"docs/code-map.md lists paths that do not exist: {stale}"
    assert not twice, f"docs/code-map.md lists these twice: {twice}"


# ---------------------------------------------------------------- the rules index
_TICKED = re.compile(r"`([^`]+)`")
_FILE = re.compile(r"[\w.\-/]+/[\w.\-]+\.\w+")
_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def rules_index() -> list[tuple[str, str, str]]:
    """(rule, owner, test) of each row of the code map's rules index."""
    section = CODE_MAP.read_text().split("## Rules index", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and line.startswith("|") and cells[0] not in ("rule", "---"):
            rows.append((cells[0], cells[1], cells[2]))
    return rows


def defines(text: str, name: str) -> bool:
    n = re.escape(name)
    return bool(re.search(rf"\b(?:def|class|function)\s+{n}\b|^\s*{n}\s*[:=]|[\"']{n}[\"']",
                          text, re.MULTILINE))


def owner_problems(owner: str) -> list[str]:
    """Each `path` must exist and define each `name` after it (a def, class, assignment, Lua
    function or quoted constraint name; for `A.b`, each part)."""
    problems, current = [], None
    for token in _TICKED.findall(owner):
        if _FILE.fullmatch(token):
            current = token
            if not (ROOT / token).is_file():
                problems.append(f"{token}: no such file")
        elif _NAME.fullmatch(token):
            if current is None:
                problems.append(f"`{token}` names no file before it")
                continue
            text = (ROOT / current).read_text() if (ROOT / current).is_file() else ""
            if not all(defines(text, part) for part in token.split(".")):
                problems.append(f"{current} has no `{token}`")
    return problems


def test_every_rule_of_the_index_has_an_existing_owner_and_test() -> None:
    defined = {m for f in ROOT.joinpath("tests").rglob("*.py")
               for m in re.findall(r"def (test_\w+)", f.read_text())}
    rows, problems = rules_index(), []
    assert len(rows) >= 20, "the rules index was not found in docs/code-map.md"
    for rule, owner, tests in rows:
        where = rule[:50]
        problems += [f"{where}: {p}" for p in owner_problems(owner)]
        names = [t.split("[")[0] for t in _TICKED.findall(tests) if t.startswith("test_")]
        paths = [t for t in _TICKED.findall(tests) if t.startswith("tests/")]
        if not names and not paths:
            problems.append(f"{where}: no test named")
        problems += [f"{where}: no test {n}" for n in names if n not in defined]
        problems += [f"{where}: no file {p}" for p in paths if not (ROOT / p).is_file()]
    assert not problems, "docs/code-map.md, rules index:\n" + "\n".join(problems)
