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

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from devtools import report
from hotdeal_cli.main import parse_duration
from hotdeal_core.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RUN_DIR, INFRA = ROOT / ".run", ROOT / ".infra"
PROCS = {"order API": "order-api", "stock worker": "stock-worker", "reconciler": "reconciler"}
Snapshot = dict[str, dict[tuple[int, float], float] | None]


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
    api_url: str = "http://127.0.0.1:58000"
    env: Mapping[str, str] = field(default_factory=dict)  # more locust env (payment ratios)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    data: Mapping[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- pure checks
def check_oversell(sold_units: int, initial: int) -> Check:
    rel = "<=" if sold_units <= initial else ">"
    return Check("no oversell", sold_units <= initial,
                 f"{sold_units:,} units in PENDING+CONFIRMED orders {rel} initial {initial:,}",
                 {"sold_units": sold_units, "initial": initial})


def check_limits(rows: Iterable[tuple[str, int]], limit: int) -> Check:
    held = list(rows)
    over = sorted((user, units) for user, units in held if units > limit)
    top = max((units for _, units in held), default=0)
    detail = (f"{len(held):,} buyers, at most {top} units each (limit {limit})" if not over else
              f"{len(over)} buyer(s) over the limit {limit}: "
              + ", ".join(f"{u}={n}" for u, n in over[:5]))
    return Check("per-user limit", not over, detail, {"buyers": len(held), "over": len(over)})


def check_persisted(accepted: Collection[str], found: Collection[str]) -> Check:
    missing = sorted(set(accepted) - set(found))
    detail = f"{len(accepted) - len(missing):,} of {len(accepted):,} accepted ids are orders"
    return Check("accepted orders in Postgres", not missing,
                 detail + (f"; missing e.g. {', '.join(missing[:3])}" if missing else ""),
                 {"accepted": len(accepted), "missing": len(missing)})


def check_kafka_counts(accepted: Collection[str], placed_counts: Mapping[str, int]) -> Check:
    missing = sum(1 for i in accepted if placed_counts.get(i, 0) == 0)
    duplicated = sum(1 for i in accepted if placed_counts.get(i, 0) > 1)
    once = len(accepted) - missing - duplicated
    return Check("OrderPlaced on Kafka exactly once", not missing and not duplicated,
                 f"{once:,} exactly once, {missing:,} missing, {duplicated:,} duplicated",
                 {"exactly_once": once, "missing": missing, "duplicated": duplicated})


def check_audit(audit: Mapping[str, Any]) -> Check:
    ok = bool(audit["balanced"]) and audit["status"] == "RECONCILED"
    return Check("stock audit", ok, f"{audit['initial']:,} = {audit['on_sale']:,} + "
                 f"{audit['pending']:,} + {audit['confirmed']:,} + {audit['in_flight']:,} "
                 f"({audit['status']})")


# ---------------------------------------------------------------- verifications
_UNITS_PER_USER = text("SELECT user_id, sum(quantity) FROM orders WHERE hot_deal_id = :d "
                       "AND status IN ('PENDING', 'CONFIRMED') GROUP BY user_id")
_PLACED = ("FROM outbox o JOIN orders r ON o.key = r.id::text "
           "WHERE r.hot_deal_id = :d AND o.event_type = 'OrderPlaced'")


UNPUBLISHED = f"SELECT count(*) {_PLACED} AND o.published_at IS NULL"
#: Orders whose payment the API recorded but the stock worker has not applied yet.
UNSETTLED = ("SELECT count(*) FROM orders o JOIN payments p ON p.order_id = o.id WHERE "
             "o.hot_deal_id = :d AND o.status = 'PENDING' AND p.outcome = 'accepted'")


async def wait_zero(engine: AsyncEngine, count_sql: str, deal_id: int, timeout: float,
                    what: str = "") -> int:
    """Poll `count_sql` (a count for deal :d) until it is 0 or the deadline; returns the last
    count. With `what`, prints the count every 5 s."""
    deadline = time.monotonic() + timeout
    next_print = time.monotonic() + 5
    while True:
        async with engine.connect() as conn:
            left = int((await conn.execute(text(count_sql), {"d": deal_id})).scalar_one())
        if left == 0 or time.monotonic() > deadline:
            return left
        if what and time.monotonic() >= next_print:
            print(f"[swarm] {left:,} {what}", flush=True)
            next_print += 5
        await asyncio.sleep(0.2)


async def placed_counts(bootstrap: str, topic: str, wanted: Collection[str],
                        timeout: float = 60.0) -> Counter[str]:
    """OrderPlaced events per order id of `wanted`, reading `topic` from the beginning up to
    the end offsets taken at the start (no consumer group, nothing committed)."""
    keys, counts = {i.encode() for i in wanted}, Counter[str]()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        if topic not in await consumer.topics():  # describe_topics would create it
            return counts
        [meta] = await admin.describe_topics([topic])
        tps = [TopicPartition(topic, p["partition"]) for p in meta["partitions"]]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        left = {tp for tp in tps if await consumer.position(tp) < end[tp]}
        deadline = time.monotonic() + timeout
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic} not read to its end offsets within {timeout:g} s")
            for tp, messages in (await consumer.getmany(*left, timeout_ms=500)).items():
                for m in messages:
                    if m.offset < end[tp] and m.key in keys and \
                            json.loads(m.value).get("type") == "OrderPlaced":
                        counts[m.key.decode()] += 1
            left = {tp for tp in left if await consumer.position(tp) < end[tp]}
    finally:
        await admin.close()
        await consumer.stop()
    return counts


async def verify_deal(engine: AsyncEngine, deal_id: int, accepted: Collection[str], *,
                      bootstrap: str, topic: str, audit: Mapping[str, Any] | None,
                      timeout: float = 60.0) -> list[Check]:
    """Every verification of one deal after its swarm (see the module docstring)."""
    async with engine.connect() as conn:
        initial, limit = (await conn.execute(text(
            "SELECT initial_stock, per_user_limit FROM hot_deals WHERE id = :d"),
            {"d": deal_id})).one()
        held = [(str(u), int(n)) for u, n in await conn.execute(_UNITS_PER_USER, {"d": deal_id})]
        ids = {str(i) for i in (await conn.execute(text(
            "SELECT id FROM orders WHERE hot_deal_id = :d"), {"d": deal_id})).scalars()}
    checks = [check_oversell(sum(n for _, n in held), int(initial)), check_limits(held, limit),
              check_persisted(accepted, ids)]
    if audit is not None:
        checks.insert(1, check_audit(audit))
    unpublished = await wait_zero(engine, UNPUBLISHED, deal_id, timeout)
    try:
        kafka = check_kafka_counts(accepted, await placed_counts(bootstrap, topic, accepted,
                                                                 timeout))
    except (TimeoutError, OSError) as exc:
        kafka = Check("OrderPlaced on Kafka exactly once", False, f"not checked: {exc}")
    if unpublished:
        kafka = Check(kafka.name, False, f"{kafka.detail}; {unpublished:,} OrderPlaced outbox "
                      f"rows still unpublished after {timeout:g} s", kafka.data)
    return [*checks, kafka]


async def deal_figures(engine: AsyncEngine, deal_id: int) -> dict[str, Any]:
    """Orders by status (and cancel reason) and the OrderPlaced outbox publish delay."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT status, cancel_reason, count(*), coalesce(sum(quantity), 0) FROM orders "
            "WHERE hot_deal_id = :d GROUP BY 1, 2 ORDER BY 1, 2"), {"d": deal_id})).all()
        n, p50, p95, top = (await conn.execute(text(
            "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY ms), max(ms) FROM (SELECT "
            "EXTRACT(EPOCH FROM o.published_at - o.created_at) * 1000 AS ms "
            f"{_PLACED} AND o.published_at IS NOT NULL) s"), {"d": deal_id})).one()
    return {"orders_by_status": [{"status": s, "reason": r, "orders": int(c), "units": int(u)}
                                 for s, r, c, u in rows],
            "outbox_delay": {"rows": int(n), **{k: None if v is None else float(v) for k, v in
                                                zip(("p50_ms", "p95_ms", "max_ms"), (p50, p95, top),
                                                    strict=True)}}}


# ---------------------------------------------------------------- CPU per component
def _pid_file(path: Path) -> list[int]:
    try:
        return [int(path.read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []


def component_roots(api_pid: int | None = None) -> dict[str, list[int]]:
    roots = {name: _pid_file(RUN_DIR / f"{proc}.pid") for name, proc in PROCS.items()}
    if api_pid is not None:
        roots["order API"] = [api_pid]
    roots["Postgres"] = [p.pid for p in psutil.process_iter(["name", "username"])
                         if p.info["name"] == "postgres" and p.info["username"] == "postgres"]
    roots["Redis"] = _pid_file(INFRA / "redis" / "redis.pid")
    roots["Kafka"] = _pid_file(INFRA / "kafka" / "kafka.pid")
    return roots


def _tree_times(pids: list[int]) -> dict[tuple[int, float], float] | None:
    times: dict[tuple[int, float], float] = {}
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                with p.oneshot():
                    t, key = p.cpu_times(), (p.pid, p.create_time())
                times[key] = t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                continue
    return times or None


def cpu_snapshot(roots: Mapping[str, list[int]]) -> Snapshot:
    return {name: _tree_times(pids) for name, pids in roots.items()}


def cpu_seconds(before: Snapshot, after: Snapshot) -> dict[str, float | None]:
    def delta(start: Mapping[tuple[int, float], float],
              end: Mapping[tuple[int, float], float]) -> float:
        grown = sum(v - start.get(k, 0.0) for k, v in end.items())
        gone = sum(v for k, v in start.items() if k not in end)  # counted via the parent
        return max(grown - gone, 0.0)
    return {name: None if end is None else delta(before.get(name) or {}, end)
            for name, end in after.items()}


def _children_cpu() -> float:  # reaped children: locust and its workers
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _busy() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


# ---------------------------------------------------------------- processes
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
    subprocess.run([sys.executable, "-m", "devtools.procs", command], cwd=ROOT, check=True,
                   env={**os.environ, **(env or {})})


def run_locust(cfg: SwarmConfig, env: Mapping[str, str], prefix: Path) -> tuple[str, int]:
    """Locust headless; its console (live stats every 2 s) is echoed and kept in locust.log."""
    cmd = [str(BIN / "locust"), "-f", "loadtest/locustfile.py", "--headless", "-H", cfg.api_url,
           "--csv", str(prefix), "--html", str(prefix.parent / "locust.html"),
           "--json-file", str(prefix)]
    if cfg.shape == "constant":
        cmd += ["-u", str(cfg.users), "-r", str(cfg.users), "-t", cfg.duration]
    if cfg.processes > 1:
        cmd += ["--processes", str(cfg.processes)]
    limit = (parse_duration(cfg.duration) if cfg.shape == "constant" else 600.0) + 120.0
    with (prefix.parent / "locust.log").open("w") as log:
        popen = subprocess.Popen(cmd, cwd=ROOT, env=dict(env), text=True, bufsize=1,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        watchdog = threading.Timer(limit, popen.kill)
        watchdog.start()
        assert popen.stdout is not None
        for line in popen.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = popen.wait()
        watchdog.cancel()
    return shlex.join(cmd), code


def run_swarm(cfg: SwarmConfig, api_pid: int | None = None) -> dict[str, Any]:
    """One swarm: deal, locust, CPU, stop --wait, verifications. Returns the run's figures."""
    settings = load_settings()
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    buyers = cfg.buyers or cfg.users
    run: dict[str, Any] = {"label": cfg.label, "started_at": started.isoformat(timespec="seconds"),
                           "config": {**asdict(cfg), "buyers": buyers, "env": dict(cfg.env)}}
    accepted_file, prefix = cfg.out_dir / "accepted.txt", cfg.out_dir / "locust"
    accepted_file.unlink(missing_ok=True)
    env = {**os.environ, "HOTDEAL_API_URL": cfg.api_url, "HOTDEAL_USERS": str(buyers),
           "HOTDEAL_TARGET": cfg.target, "HOTDEAL_SHAPE": cfg.shape,
           "HOTDEAL_ACCEPTED_FILE": str(accepted_file),
           "PAYMENT_WEBHOOK_SECRET": settings.payment_webhook_secret.get_secret_value(),
           "HOTDEAL_SPIKE_USERS": str(cfg.users), "HOTDEAL_STEP_MAX": str(cfg.users), **cfg.env}
    if cfg.target == "orders":
        product = hotdeal("product", "create", "--name", f"{cfg.label} {started:%H:%M:%S}",
                          "--price", "1000", "--stock", str(cfg.stock))
        deal = hotdeal("deal", "start", str(product["id"]), "--stock", str(cfg.stock),
                       "--per-user-limit", str(cfg.per_user_limit), env=mode_env(cfg.mode))
        if deal["stock_backend"] != cfg.mode:
            raise RuntimeError(f"deal {deal['deal_id']} keeps its stock in "
                             f"{deal['stock_backend']}, not {cfg.mode}")
        run.update(product_id=product["id"], deal_id=deal["deal_id"])
        env["HOTDEAL_PRODUCT_ID"] = str(product["id"])
    print(f"[swarm] {cfg.label}: {cfg.users} users, {buyers} buyers, {cfg.duration}, "
          f"{cfg.shape}, target {cfg.target} at {cfg.api_url}", flush=True)
    roots = component_roots(api_pid)
    cpu0, gen0, busy0, t0 = cpu_snapshot(roots), _children_cpu(), _busy(), time.monotonic()
    run["locust_command"], run["locust_exit"] = run_locust(cfg, env, prefix)
    wall = time.monotonic() - t0
    components = cpu_seconds(cpu0, cpu_snapshot(roots))
    components["load generator"] = _children_cpu() - gen0
    run["cpu"] = {"wall_seconds": wall, "cpus": psutil.cpu_count(), "components": components,
                  "machine_busy_seconds": _busy() - busy0}
    run["stats"] = report.locust_stats(prefix, "POST /noop" if cfg.target == "noop"
                                       else report.ORDERS_ROW)
    if cfg.target == "orders":
        print(f"[swarm] stopping deal {run['deal_id']}; waiting for its reconciliation",
              flush=True)
        pid, env = str(run["product_id"]), mode_env(cfg.mode)
        run["audit_at_stop"] = hotdeal("deal", "stop", pid, "--wait", "--timeout", "180",
                                       env=env)["audit"]
        accepted = set(accepted_file.read_text().split()) if accepted_file.exists() else set()
        asyncio.run(_verify(run, accepted, lambda: hotdeal("deal", "audit", pid, env=env,
                                                           codes=(0, 1))))
    return run


async def _verify(run: dict[str, Any], accepted: set[str], audit: Callable[[], Any]) -> None:
    """Wait for the stock worker to apply every payment, audit again, verify."""
    settings = load_settings()
    engine = create_async_engine(settings.database_url, pool_size=2)
    try:
        began = time.monotonic()
        left = await wait_zero(engine, UNSETTLED, run["deal_id"], 300,
                               "paid orders not settled yet (stock worker lag)")
        run["settlement"] = {"unsettled": left, "seconds": time.monotonic() - began}
        run["audit"] = await asyncio.to_thread(audit)
        checks = await verify_deal(engine, run["deal_id"], accepted,
                                   bootstrap=settings.kafka_bootstrap_servers,
                                   topic=settings.kafka_topic_prefix + "orders.v1",
                                   audit=run["audit"])
        at_stop = check_audit(run["audit_at_stop"])
        checks.insert(1, replace(at_stop, name="stock audit at reconciliation"))
        run["checks"] = [asdict(c) for c in checks]
        run.update(await deal_figures(engine, run["deal_id"]))
    finally:
        await engine.dispose()


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def add_load_arguments(p: argparse.ArgumentParser) -> None:
    """The load knobs shared by `make swarm` and `make compare`."""
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--duration", default="30s")
    p.add_argument("--shape", choices=["constant", "spike", "step"], default="constant")
    p.add_argument("--stock", type=int, default=1000)
    p.add_argument("--limit", type=int, default=1, help="per-user limit")
    p.add_argument("--processes", type=int, default=1, help="locust --processes")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["redis", "db"], default="redis")
    add_load_arguments(p)
    p.add_argument("--command", default=shlex.join(["python", "-m", "devtools.swarm",
                                                     *sys.argv[1:]]))
    a = p.parse_args()
    out = ROOT / "reports" / f"swarm-{a.mode}-{stamp()}"
    procs("down")
    procs("up", mode_env(a.mode))
    run = run_swarm(SwarmConfig(out, f"swarm-{a.mode}", a.mode, users=a.users,
                                duration=a.duration, shape=a.shape, stock=a.stock,
                                per_user_limit=a.limit, processes=a.processes))
    settings = load_settings()
    machine = asyncio.run(report.machine_info(settings.database_url, settings.redis_url))
    rep = report.build_report(run, machine, a.command, title=f"hotdeal swarm ({a.mode} stock)")
    print(report.write_report(rep, out))
    print(f"[swarm] report in {out}; the processes keep running in {a.mode} mode "
          "(`make down` stops them)")
    sys.exit(0 if rep["passed"] else 1)


if __name__ == "__main__":
    main()
