"""`make help` lists every target of the Makefile, each with what it does."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = re.compile(r"^([a-zA-Z][a-zA-Z0-9_.-]*):(?!=)", re.M)


def test_make_help_lists_every_target() -> None:
    targets = set(TARGET.findall((ROOT / "Makefile").read_text()))
    shown = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=30, check=True).stdout
    listed = {line.split()[1] for line in shown.splitlines() if line.startswith("make ")}
    assert targets - listed == set(), "targets missing from `make help` (add `## what`)"
    assert all(len(line.split(None, 2)) == 3 for line in shown.splitlines()), shown
