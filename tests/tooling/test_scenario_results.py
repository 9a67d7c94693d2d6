"""Every figure in the measured documents is traceable: each document links a committed
result file (docs/scenarios/results/*.json), every linked file exists, and a scenario's
result file says which command, commit and machine produced it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.results import Recorder

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "docs" / "scenarios"
RESULTS = SCENARIOS / "results"
MEASURED = sorted([*(p for p in SCENARIOS.glob("*.md") if p.name != "TEMPLATE.md"),
                   ROOT / "docs" / "scaling.md"])
_RESULT = re.compile(r"(?:docs/scenarios/)?results/([\w.\-]+\.json)")


def linked(doc: Path) -> set[str]:
    return set(_RESULT.findall(doc.read_text()))


@pytest.mark.parametrize("doc", MEASURED, ids=lambda p: p.name)
def test_a_measured_document_links_at_least_one_result_file(doc: Path) -> None:
    assert linked(doc), f"{doc.name} quotes figures but links no docs/scenarios/results/*.json"


@pytest.mark.parametrize("doc", sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_linked_result_file_exists_and_is_json(doc: Path) -> None:
    for name in linked(doc):
        path = RESULTS / name
        assert path.is_file(), f"{doc.name} links {name}, which is not in {RESULTS}"
        json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted({n for d in SCENARIOS.glob("*.md") for n in linked(d)}))
def test_a_scenario_result_file_names_its_command_and_machine(name: str) -> None:
    result = json.loads((RESULTS / name).read_text())
    assert result.get("command"), f"{name} has no command"
    assert result.get("machine"), f"{name} has no machine"


def test_the_result_writer_records_command_commit_machine_load_and_figures(
        tmp_path: Path) -> None:
    path = Recorder("make bench").write(tmp_path / "r.json", {"rps": 1.0})
    result = json.loads(path.read_text())
    assert result["command"] == "make bench"
    assert result["commit"] and result["machine"]
    assert len(result["load_average_1_5_15"]["before"]) == 3
    assert result["figures"] == {"rps": 1.0}
