"""The commands a swarm drives: the `hotdeal` CLI (--json) and `devtools.procs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from devtools.procs import LOAD_API_ENV
from devtools.swarm.config import BIN, ROOT


def hotdeal(*args: str, env: Mapping[str, str] | None = None, codes: Iterable[int] = (0,)) -> Any:
    """One `hotdeal ... --json` command; its stderr (progress) goes to the console."""
    proc = subprocess.run([str(BIN / "hotdeal"), *args, "--json"], cwd=ROOT, text=True,
                          stdout=subprocess.PIPE, env={**os.environ, **(env or {})},
                          timeout=600, check=False)
    if proc.returncode not in codes or '"error"' in proc.stdout:
        raise RuntimeError(f"hotdeal {' '.join(args)} exited {proc.returncode}: {proc.stdout}")
    return json.loads(proc.stdout)


def mode_env(mode: str) -> dict[str, str]:
    return {"HOTDEAL_STOCK_REDIS": "false" if mode == "db" else "true"}


def procs(command: str, env: Mapping[str, str] | None = None) -> None:
    """`python -m devtools.procs <command>`; the processes it starts get LOAD_API_ENV and
    `env` over this process's environment (demo, swarm and compare start theirs here)."""
    subprocess.run([sys.executable, "-m", "devtools.procs", command], cwd=ROOT, check=True,
                   env={**os.environ, **LOAD_API_ENV, **(env or {})})
