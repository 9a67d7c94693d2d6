"""The swarm's paths, its configuration and the load knobs its commands share."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hotdeal_core.settings import ORDER_API_PORT

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN_DIR, INFRA = ROOT / ".run", ROOT / ".infra"


@dataclass(frozen=True)
class SwarmConfig:
    out_dir: Path
    label: str = "swarm"
    mode: str = "redis"  # where the deal keeps its stock: redis | db
    target: str = "orders"  # or "noop": loadtest.trivial_app
    users: int = 100
    buyers: int = 0  # distinct buyer ids; 0: as many as users
    duration: str = "30s"
    shape: str = "constant"
    stock: int = 1000
    per_user_limit: int = 1
    processes: int = 1
    # devtools.procs starts the API on ORDER_API_PORT: the swarm aims at the same port
    api_url: str = field(default_factory=lambda: "http://127.0.0.1:"
                         + os.environ.get("ORDER_API_PORT", str(ORDER_API_PORT)))
    env: Mapping[str, str] = field(default_factory=dict)  # more locust env (payment ratios)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    """The load knobs shared by `make swarm` and `make compare`."""
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--buyers", type=int, default=0,
                   help="distinct buyer ids (default: as many as --users)")
    p.add_argument("--duration", default="30s")
    p.add_argument("--shape", choices=["constant", "spike", "step"], default="constant")
    p.add_argument("--stock", type=int, default=1000)
    p.add_argument("--limit", type=int, default=1, help="per-user limit")
    p.add_argument("--processes", type=int, default=1, help="locust --processes")
