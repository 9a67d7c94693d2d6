"""One load swarm end to end, then its verifications (`make swarm MODE=db USERS=100`).

    python -m devtools.swarm [--mode redis|db] [--users 100] [--duration 30s]
                             [--shape constant|spike|step] [--stock 1000] [--limit 1]

`run_swarm`: product and deal through the `hotdeal` CLI (--json; the deal started with the
mode's HOTDEAL_STOCK_REDIS), locust headless (live console stats; --csv, --html, --json-file),
CPU per component over the swarm window, `hotdeal deal stop --wait`, then `verify_deal`: no
oversell (PENDING+CONFIRMED units <= initial; the audit holds), nobody over the per-user
limit, every accepted id (HOTDEAL_ACCEPTED_FILE) an order of the deal, and its OrderPlaced on
Kafka exactly once (the topic read from the start without a group, up to the end offsets
taken once the deal's outbox rows are published). The checks take engine, servers and topic
as parameters, so the tests run them on the test stack. CPU: user+system of each process and
its children, reaped ones included, before/after the window (a process that ended meanwhile
counts through its parent); the load generator is this process's reaped children (locust).
`main` restarts the processes in the mode's environment and leaves them running.
"""

# By job: config.py (paths, SwarmConfig, the shared load knobs), checks.py (pure verdicts),
# verify.py (Postgres and Kafka reads), cpu.py (CPU per component), locust_run.py, cli.py
# (`hotdeal` and `devtools.procs`), run.py (run_swarm), __main__.py (`python -m devtools.swarm`).
# The names below are the package's API: devtools.compare, devtools.demo, devtools.chaos and
# the tests import them from here.

from devtools.swarm.checks import (
    Check,
    check_audit,
    check_kafka_counts,
    check_limits,
    check_oversell,
    check_persisted,
)
from devtools.swarm.cli import hotdeal, mode_env, procs
from devtools.swarm.config import BIN, INFRA, ROOT, RUN_DIR, SwarmConfig, add_load_arguments, stamp
from devtools.swarm.cpu import PROCS, Snapshot, component_roots, cpu_seconds, cpu_snapshot
from devtools.swarm.locust_run import run_locust
from devtools.swarm.run import run_swarm
from devtools.swarm.verify import (
    UNPUBLISHED,
    UNSETTLED,
    deal_figures,
    placed_counts,
    verify_deal,
    wait_zero,
)

__all__ = [
    "BIN", "INFRA", "PROCS", "ROOT", "RUN_DIR", "UNPUBLISHED", "UNSETTLED", "Check", "Snapshot",
    "SwarmConfig", "add_load_arguments", "check_audit", "check_kafka_counts", "check_limits",
    "check_oversell", "check_persisted", "component_roots", "cpu_seconds", "cpu_snapshot",
    "deal_figures", "hotdeal", "mode_env", "placed_counts", "procs", "run_locust", "run_swarm",
    "stamp", "verify_deal", "wait_zero",
]
