"""Fairness of a deal's opening: scripts vs people, forged tokens, identity cost, floods, bursts.

    python -m benchmarks.fairness [--parts fairness,auth,identity,flood,burst] [--runs 5]
        [--window SECONDS] [--label before] [--json PATH]
    make bench-fairness [FAIRNESS_ARGS="--runs 5 --window 3"]

Starts its own order API on a free port (this checkout, the database and Redis of the
environment, topic prefix KAFKA_TOPIC_PREFIX or "bench."); no stock worker (orders stay
PENDING, counted as sold). Buyer tokens come from `TokenMinter` (ALLOW_DEV_SECRETS=true);
every request carries one (`Authorization: Bearer`), and the buyer also as `user_id` in the
body unless --no-body-user. Parts, each on deals of its own (ended and flushed at the end):

- fairness: a deal of --stock 300 units, limit 1; --scripts 200 accounts fire from the opening
  at full speed (wrk, benchmarks/wrk/tokens.lua rotating over their tokens) while --people 800
  each click once at a uniform moment 0.2-3 s after it (asyncio; retry on 503/429 after
  Retry-After). Units counted in Postgres by buyer prefix; the figure is the scripts' share of
  the units over their share of the accounts (1.0 = fair; ceiling printed). --runs times.
- auth: --auth-requests orders each with a forged token, an expired token, no token, and (the
  control) a valid token: 202s and Postgres rows of each.
- identity: accepted orders/s and sold-out refusals/s (wrk, new buyer per request) on this
  API ("on") and on an API without identity ("off", --identity-off: `commit:<rev>`, that
  commit's API from `git archive`, or `env:KEY=VALUE,...`, this API with those settings),
  --identity-rounds pairs in ABBA order; the mean rate of each side and their ratio.
- flood: people's latency (first click to final answer) at --people-rate/s with no scripts,
  then with scripts at --flood-factor times that rate (wrk paced by benchmarks/wrk/
  tokens_paced.lua), same deal; p95 of each and their ratio.
- burst: for each of --burst (1000,5000,10000) wrk -c N connections opened at the deal's
  opening (each request a new buyer), --burst-seconds long; then N one-shot buyers at once
  (a connection and one request each, raw asyncio, the connect counted): mean/p50/p99/max,
  timeouts; target no timeouts and p99 <= 3x mean. Raises this process's open-file limit
  (wrk and the API inherit it); --backlog sets the API's ORDER_API_BACKLOG (the kernel caps it at
  net.core.somaxconn: warned).
--window is sent as opening_window_seconds for the fairness and burst deals only when given.
Before each measurement the API settles: the outbox published and /readyz quick again.
Figures printed and written as JSON (default docs/scenarios/results/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks import fairness_parts as parts
from benchmarks.fairness_rig import Api, Deals, Sql
from benchmarks.provenance import git_commit
from devtools.procs import ROOT
from hotdeal_core.identity import TokenMinter
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import load_settings

PARTS = ("fairness", "auth", "identity", "flood", "burst")
RESULTS = ROOT / "docs" / "scenarios" / "results"
# The API before buyer tokens are enforced: main when this benchmark was written.
PRE_IDENTITY_COMMIT = "7ea49ac"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return (f"{psutil.cpu_count()} CPUs ({model}), "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}, "
            f"Python {platform.python_version()}; load generators on the same machine")


def _raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 0


def _env_pairs(spec: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in spec.split(",") if kv)


@dataclass
class Setup:
    a: argparse.Namespace
    out: Path
    env: dict[str, str]
    tag: str


async def run(s: Setup) -> dict[str, Any]:
    a = s.a
    settings = load_settings()
    minter = TokenMinter(settings)
    engine = create_async_engine(settings.database_url, pool_size=2)
    api = Api("order-api", s.env, s.out)
    await asyncio.to_thread(api.start)
    deals = Deals(api, Sql(engine), settings, s.tag)
    bench = parts.Bench(a, api, deals, minter, s.out, s.tag)
    figures: dict[str, Any] = {}
    try:
        for part in a.parts:
            if part == "identity":
                off = _off_api(s)
                await asyncio.to_thread(off.start)
                off_deals = Deals(off, Sql(engine), settings, s.tag + "x")
                try:
                    figures[part] = await bench.identity(off, off_deals)
                finally:
                    await off_deals.end_all(Topics(s.env["KAFKA_TOPIC_PREFIX"]))
                    await asyncio.to_thread(off.stop)
            else:
                figures[part] = await getattr(bench, part)()
    finally:
        await deals.end_all(Topics(s.env["KAFKA_TOPIC_PREFIX"]))
        await asyncio.to_thread(api.stop)
        await engine.dispose()
    return figures


def _off_api(s: Setup) -> Api:
    env = {**s.env, "ORDER_API_PORT": str(_free_port())}
    kind, _sep, spec = s.a.identity_off.partition(":")
    if kind == "commit":
        return Api.at_commit(spec, env, s.out)
    if kind == "env":
        return Api("order-api-off", {**env, **_env_pairs(spec)}, s.out)
    sys.exit(f"--identity-off: commit:<rev> or env:KEY=VALUE,..., not {s.a.identity_off!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--runs", type=int, default=5, help="fairness runs")
    p.add_argument("--window", type=float, help="opening_window_seconds (sent only if given)")
    p.add_argument("--stock", type=int, default=300)
    p.add_argument("--scripts", type=int, default=200, help="script accounts")
    p.add_argument("--people", type=int, default=800, help="people accounts")
    p.add_argument("--earliest", type=float, default=0.2, help="people click from (s)")
    p.add_argument("--latest", type=float, default=3.0, help="people click until (s)")
    p.add_argument("--script-seconds", type=float, default=4.0,
                   help="scripts fire this long after the window (if any)")
    # Two connections per script account: a script holds one open per account at least (with
    # fewer, an account whose request waits for the draw would block its connection, and wrk
    # could not even ask for the others: the scripts would look weaker than they are).
    p.add_argument("--script-connections", type=int, default=400)
    p.add_argument("--threads", type=int, default=1, help="wrk threads (not burst)")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--auth-requests", type=int, default=50)
    p.add_argument("--identity-off", default=f"commit:{PRE_IDENTITY_COMMIT}",
                   help="the API without identity: commit:<rev> or env:KEY=VALUE,...")
    p.add_argument("--duration", type=int, default=5, help="identity: wrk seconds")
    p.add_argument("--identity-rounds", type=int, default=2,
                   help="identity: on/off pairs, in ABBA order")
    p.add_argument("--connections", type=int, default=64, help="identity: wrk connections")
    p.add_argument("--identity-tokens", type=int, default=40_000,
                   help="identity: buyers per wrk run (rotated over; more than it sends)")
    p.add_argument("--people-rate", type=float, default=40.0, help="flood: people per s")
    p.add_argument("--flood-factor", type=float, default=20.0)
    p.add_argument("--flood-seconds", type=int, default=5)
    p.add_argument("--flood-connections", type=int, default=20)
    p.add_argument("--burst", default="1000,5000,10000", help="connections per burst")
    p.add_argument("--burst-seconds", type=int, default=12,
                   help="wrk's run; longer than --burst-timeout, so an opening request "
                        "left unanswered counts as a timeout")
    p.add_argument("--burst-timeout", type=float, default=10.0)
    p.add_argument("--burst-tokens", type=int, default=40_000,
                   help="burst: buyers per run (rotated over; more than it sends)")
    p.add_argument("--backlog", type=int, help="the API's ORDER_API_BACKLOG (default: its own)")
    p.add_argument("--api-env", default="", help="extra API settings: KEY=VALUE,...")
    p.add_argument("--no-body-user", dest="body_user", action="store_false",
                   help="buyer only in the token, not as user_id in the body")
    p.add_argument("--label", default="run", help="names the JSON file (e.g. before, after)")
    p.add_argument("--json", type=Path, help=f"default: {RESULTS.relative_to(ROOT)}/"
                   "deal-opening-fairness-<label>-<time>.json")
    a = p.parse_args()
    a.parts = [x for x in a.parts.split(",") if x]
    a.topic_prefix = os.environ.get("KAFKA_TOPIC_PREFIX") or "bench."
    if unknown := set(a.parts) - set(PARTS):
        sys.exit(f"unknown parts: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/ensure-wrk.sh (make bench-fairness does)")
    files = _raise_open_files()
    env = {"ORDER_API_PORT": str(_free_port()),
           "KAFKA_TOPIC_PREFIX": a.topic_prefix,
           "ALLOW_DEV_SECRETS": os.environ.get("ALLOW_DEV_SECRETS", "true"),
           **_env_pairs(a.api_env)}
    if a.backlog:
        env["ORDER_API_BACKLOG"] = str(a.backlog)
        if a.backlog > _somaxconn():
            print(f"[fairness] WARNING: backlog {a.backlog} > net.core.somaxconn "
                  f"{_somaxconn()}: the kernel caps it (sysctl -w net.core.somaxconn=...)")
    command = " ".join(["python -m benchmarks.fairness", *sys.argv[1:]])
    print(f"[fairness] hotdeal {git_commit()}; {_machine()}; open files {files}; somaxconn "
          f"{_somaxconn()}", flush=True)
    out = Path(tempfile.mkdtemp(prefix="hotdeal-fairness-"))
    setup = Setup(a, out, env, uuid.uuid4().hex[:6])
    random.seed(a.seed)
    figures = asyncio.run(run(setup))
    path = a.json or RESULTS / (f"deal-opening-fairness-{a.label}-"
                                f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    parts.write_json(path, {"command": command, "commit": git_commit(), "machine": _machine(),
                            "label": a.label, "window": a.window, "open_files": files,
                            "somaxconn": _somaxconn(), "figures": figures})
    print(f"[fairness] figures in {path}; logs in {out}")


if __name__ == "__main__":
    main()
