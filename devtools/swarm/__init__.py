"""One load swarm end to end, then its verifications (`make swarm MODE=db USERS=100`):
`run_swarm` (run.py), `verify_deal` (verify.py); `main` restarts the processes in the mode's
environment and leaves them running."""

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
