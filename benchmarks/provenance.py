"""Where a benchmark's figures come from: the commit they were measured on."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The short commit hash, with "+ uncommitted changes" when the tracked tree differs."""
    head = subprocess.run(["git", "log", "-1", "--format=%h"], cwd=ROOT, capture_output=True,
                          text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()
    return head + (" + uncommitted changes" if dirty else "")
