"""Plain-HTTP benchmark of the order API with wrk, every target side by side in one run.

    .venv/bin/python -m benchmarks.http [--duration 10] [--connections 64] [--spike]
        [--server uvicorn[,granian]] [--workers 1[,2]] [--targets trivial,orders,webhook,sold_out]
    make bench [BENCH_ARGS="--server uvicorn,granian --workers 1,2"]

For each server configuration (every --server x --workers pair), in this order:

1. trivial: `python -m loadtest.trivial_app` (the smallest FastAPI app, a dict body) under
   the same server settings as the API: `POST /noop` with the order body and token.
2. orders: the API (`python -m order_api`, its own process on a free port, topic prefix
   "bench.", the app database, `devtools.procs.LOAD_API_ENV`); `POST /orders` on a hot deal
   of 1,000,000 units with a per-user limit of 1,000, the requests rotating over --buyers
   buyers (benchmarks/wrk/orders.lua): all 202.
3. webhook: `POST /payments/webhook`, validly signed (HMAC-SHA256 over "<t>.<raw body>"),
   each paying one PENDING order of the orders target (topped up with an unmeasured wrk
   pass when there are too few); the bodies and headers are signed just before the run
   into a file that benchmarks/wrk/webhook.lua cycles through (a second pass over the file
   would be replays, counted as `duplicates`).
4. sold_out: `POST /orders` on a deal of 1 unit already sold, rotating over the same
   buyers: all 409 sold_out, answered
   by the sold-out fast path (order_api/fastpath.py) from the process's memo.
5. sold_out_full: the same refusals sent with the content type
   application/vnd.hotdeal+json, which FastAPI parses as JSON but the fast path leaves to
   FastAPI: the refusal through routing, validation and `place_order`, as before the fast
   path (plus the fast path's header scan).

Buyers: every order carries `Authorization: Bearer <JWT>` (`sub` = the body's user_id).
Before the first target each configuration mints one token per buyer (`loadtest.buyers`,
ALLOW_DEV_SECRETS=true as for the API it starts) into a file of `<buyer>\t<token>` lines;
orders.lua formats each buyer's request once, at its first use, so a request costs wrk no
more than before. The per-user limit of 1,000 keeps a buyer's later rounds accepted.

Between targets the outbox rows the API wrote are left to its relay (published to Kafka)
and the CPU window closes only once they are all published, so "CPU ms per request"
includes publishing. CPU per component: psutil user+system of each process tree (API, its
workers included; Redis; Postgres; Kafka), wrk from this process's reaped children; `other`
is the rest of the machine (other sessions' work on the same cores). No stock worker runs:
webhook payments stay recorded, not settled. The deals are ended and flushed afterwards
(`flush.flush_deal`, as the reconciler does).

--spike: wrk -c1000 with a 10 s timeout (timeouts, p99 and mean are the figures to read).
Prints a table per configuration with ratios to the trivial endpoint; --json writes all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.provenance import git_commit
from benchmarks.results import Recorder
from devtools.procs import LOAD_API_ENV, ROOT, Proc
from devtools.tables import markdown_table
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import load_settings
from hotdeal_core.signature import sign
from hotdeal_core.stock.client import close_redis, make_redis
from hotdeal_core.stock.redis_store import RedisStockStore
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.flush import flush_deal
from loadtest.buyers import BuyerAuth, write_token_file

WRK_DIR = ROOT / "benchmarks" / "wrk"
PREFIX = "bench."
TARGETS = ("trivial", "orders", "webhook", "sold_out", "sold_out_full")
EXPECTED = {"trivial": 202, "orders": 202, "webhook": 200, "sold_out": 409, "sold_out_full": 409}
# A JSON content type FastAPI parses but the sold-out fast path (order_api/fastpath.py)
# leaves to FastAPI: the refusal through the whole framework, as before the fast path.
FULL_PATH_CONTENT_TYPE = "application/vnd.hotdeal+json"
# The big deal's per-user limit (the API's maximum): a buyer's later rounds over the token
# pool are accepted too (20,000 buyers cover 20 million orders).
BIG_DEAL_LIMIT = 1000
COMPONENTS = ("API", "Redis", "Postgres", "Kafka", "wrk", "other")


# ---------------------------------------------------------------- CPU per component
def _tree(pids: list[int]) -> dict[tuple[int, float], float]:
    times: dict[tuple[int, float], float] = {}
    for pid in pids:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            continue
        for p in procs:
            try:
                t = p.cpu_times()
                times[(p.pid, p.create_time())] = t.user + t.system
            except psutil.Error:
                continue
    return times


def _roots(api_pid: int) -> dict[str, list[int]]:
    roots: dict[str, list[int]] = {"API": [api_pid], "Redis": [], "Postgres": [], "Kafka": []}
    for p in psutil.process_iter(["name", "username", "cmdline"]):
        name, cmd = p.info["name"] or "", " ".join(p.info["cmdline"] or ())
        if name.startswith("redis-server"):
            roots["Redis"].append(p.pid)
        elif name == "postgres" and p.info["username"] == "postgres":
            roots["Postgres"].append(p.pid)
        elif "kafka.Kafka" in cmd:
            roots["Kafka"].append(p.pid)
    return roots


class CpuWindow:
    """CPU seconds of each component between start() and stop()."""

    def __init__(self, api_pid: int) -> None:
        self.roots = _roots(api_pid)

    def _sample(self) -> tuple[dict[str, dict[tuple[int, float], float]], float, float]:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
        return ({n: _tree(p) for n, p in self.roots.items()}, ru.ru_utime + ru.ru_stime, busy)

    def start(self) -> None:
        self.before, self.t0 = self._sample(), time.monotonic()

    def stop(self) -> dict[str, float]:
        (trees0, kids0, busy0), (trees1, kids1, busy1) = self.before, self._sample()
        out = {n: sum(v - trees0[n].get(k, 0.0) for k, v in trees1[n].items()) for n in trees1}
        out["wrk"] = kids1 - kids0
        out["other"] = max(0.0, (busy1 - busy0) - sum(out.values()))
        out["wall"] = time.monotonic() - self.t0
        return out


# ---------------------------------------------------------------- wrk
def wrk(url: str, script: str, args: list[str], a: argparse.Namespace,
        seconds: float | None = None) -> dict[str, Any]:
    seconds = max(1, round(seconds or a.duration))  # wrk takes whole seconds
    cmd = ["wrk", f"-t{a.threads}", f"-c{a.connections}", f"-d{seconds}s",
           f"--timeout={max(1, round(a.timeout))}s", "-s", str(WRK_DIR / script), url, "--", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          timeout=seconds + a.timeout + 60)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    result["command"] = " ".join(cmd)
    return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _wait_http(proc: Proc, probe: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _post(proc.api_url + probe, {}) < 500:
                return
        except OSError:
            pass
        if (proc.popen is not None and proc.popen.poll() is not None) or \
                time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start; see {proc.log}")
        time.sleep(0.1)


# ---------------------------------------------------------------- the runs
class Bench:
    def __init__(self, a: argparse.Namespace, server: str, workers: int, out: Path) -> None:
        self.a, self.server, self.workers, self.out = a, server, workers, out
        self.settings = load_settings()
        self.secret = self.settings.payment_webhook_secret.get_secret_value()
        self.admin = self.settings.admin_token.get_secret_value()
        self.engine = create_async_engine(self.settings.database_url, pool_size=2)
        self.loop = asyncio.new_event_loop()  # one loop for the engine's connections
        # The environment of the API (and trivial app) this benchmark starts.
        self.env = {**LOAD_API_ENV, "ORDER_API_PORT": str(a.port or _free_port()),
                    "ORDER_API_SERVER": server, "ORDER_API_WORKERS": str(workers),
                    "KAFKA_TOPIC_PREFIX": PREFIX,
                    "ALLOW_DEV_SECRETS": os.environ["ALLOW_DEV_SECRETS"]}  # main's default
        self.tag = uuid.uuid4().hex[:6]
        # Signed as the API it starts verifies; the run's length is not known up front
        # (top-ups, drains), so the tokens live a day.
        self.auth = BuyerAuth.from_settings(None, self.settings)
        self.tokens = out / f"buyers-{self.tag}.tsv"
        t0 = time.monotonic()
        write_token_file(self.tokens, self.auth, (f"b{self.tag}-{n}" for n in range(a.buyers)))
        print(f"[bench] {a.buyers:,} buyer tokens minted in {time.monotonic() - t0:.1f} s",
              flush=True)
        self.results: dict[str, dict[str, Any]] = {}
        self.products: list[int] = []

    def run_target(self, name: str, proc: Proc, script: str, args: list[str]) -> None:
        cpu = CpuWindow(proc.pid() or 0)
        cpu.start()
        result = wrk(proc.api_url, script, args, self.a)
        result["outbox_drain_s"] = self.drain() if name != "trivial" else 0.0
        result["cpu_s"] = cpu.stop()
        ok = result["statuses"].get(str(EXPECTED[name]), 0)
        e = result["errors"]
        result["unexpected"] = sum(result["statuses"].values()) - ok
        result["socket_errors"] = e["connect"] + e["read"] + e["write"]
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
        self.results[name] = result
        print(f"[bench] {self.server} x{self.workers} {name}: {result['rps']:,.0f} req/s, "
              f"{ok:,} x {EXPECTED[name]}, {result['unexpected']:,} unexpected, "
              f"{e['timeout']:,} timeouts", flush=True)

    def drain(self, timeout: float = 120.0) -> float:
        t0 = time.monotonic()
        while self.sql("SELECT count(*) FROM outbox WHERE published_at IS NULL "
                       "AND topic LIKE :p", p=PREFIX + "%")[0][0] and \
                time.monotonic() - t0 < timeout:
            time.sleep(0.1)
        return time.monotonic() - t0

    def sql(self, query: str, **params: Any) -> list[Any]:
        async def go() -> list[Any]:
            async with self.engine.begin() as conn:
                return list((await conn.execute(text(query), params)).all())
        return self.loop.run_until_complete(go())

    def orders_args(self, path: str, product: int, *content_type: str) -> list[str]:
        """benchmarks/wrk/orders.lua's arguments: the pool's buyers and tokens."""
        return [path, str(product), str(self.tokens), str(self.a.threads), *content_type]

    def deal(self, proc: Proc, stock: int, limit: int = 1) -> int:
        pid = int(self.sql("INSERT INTO products (name, price, stock) VALUES (:n, 1000, :s) "
                           "RETURNING id", n=f"bench-{self.tag}-{stock}", s=stock)[0][0])
        status = _post(f"{proc.api_url}/products/{pid}/hotdeal/start",
                       # No opening draw: the targets measure first come first served.
                       {"stock": stock, "per_user_limit": limit, "opening_window_seconds": 0},
                       {"Authorization": f"Bearer {self.admin}"})
        if status != 201:
            raise RuntimeError(f"deal start answered {status}")
        self.products.append(pid)
        return pid

    def trivial(self) -> None:
        proc = Proc("trivial", self.out, self.env, module="loadtest.trivial_app").start()
        try:
            _wait_http(proc, "/noop")
            self.run_target("trivial", proc, "orders.lua", self.orders_args("/noop", 1))
        finally:
            proc.stop()

    def api(self, targets: list[str]) -> None:
        proc = Proc("order-api", self.out, self.env, module="order_api").start()
        try:
            proc.wait_ready(90)
            big = self.deal(proc, 1_000_000, BIG_DEAL_LIMIT)
            if "orders" in targets:
                self.run_target("orders", proc, "orders.lua", self.orders_args("/orders", big))
            if "webhook" in targets:
                self.webhook(proc, big)
            if {"sold_out", "sold_out_full"} & set(targets):
                one, buyer = self.deal(proc, 1), f"first-{self.tag}"
                first = _post(f"{proc.api_url}/orders", {"product_id": one, "user_id": buyer,
                                                         "quantity": 1}, self.auth.header(buyer))
                assert first == 202, first
            if "sold_out" in targets:
                self.run_target("sold_out", proc, "orders.lua", self.orders_args("/orders", one))
            if "sold_out_full" in targets:
                self.run_target("sold_out_full", proc, "orders.lua", self.orders_args(
                    "/orders", one, FULL_PATH_CONTENT_TYPE))
        finally:
            self.end_deals(proc)
            self.drain(30)  # their HotDealEnded events, before the relay stops
            code = proc.stop()
            if code not in (0, -15):
                print(f"[bench] WARNING: the API exited {code}; see {proc.log}")

    def webhook(self, proc: Proc, deal_product: int) -> None:
        deal_id = self.sql("SELECT id FROM hot_deals WHERE product_id = :p", p=deal_product)[0][0]
        want = int(self.a.duration * max(3000, 2 * self.results.get("orders", {}).get("rps", 0)))
        for _ in range(3):  # top up with unmeasured order passes
            have = self.sql("SELECT count(*) FROM orders WHERE hot_deal_id = :d AND "
                            "status = 'PENDING'", d=deal_id)[0][0]
            if have >= want:
                break
            rate = self.results.get("orders", {}).get("rps", 1000)
            wrk(proc.api_url, "orders.lua", self.orders_args("/orders", deal_product),
                self.a, seconds=min(60, (want - have) / rate + 1))
            self.drain()
        rows = self.sql("SELECT id, quantity * unit_price FROM orders WHERE hot_deal_id = :d "
                        "AND status = 'PENDING' LIMIT :n", d=deal_id, n=want)
        now, path = int(time.time()), self.out / "webhooks.tsv"
        with path.open("w") as f:
            for order_id, amount in rows:
                raw = json.dumps({"payment_id": f"bench-{self.tag}-{uuid.uuid4().hex}",
                                  "order_id": str(order_id), "status": "succeeded",
                                  "amount": int(amount)}, separators=(",", ":")).encode()
                f.write(f"{sign(self.secret, now, raw)}\t{raw.decode()}\n")
        self.run_target("webhook", proc, "webhook.lua", [str(path), str(self.a.threads)])
        paid = self.sql("SELECT count(*) FROM payments WHERE payment_id LIKE :p",
                        p=f"bench-{self.tag}-%")[0][0]
        self.results["webhook"]["signed_orders"] = len(rows)
        self.results["webhook"]["duplicates"] = max(0, self.results["webhook"]["statuses"].get(
            "200", 0) - paid)

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()

    def end_deals(self, proc: Proc) -> None:
        """End the run's deals (HTTP) and flush them back to Postgres here, as the
        reconciler would (`flush_deal`: safe to re-run), while the API's relay still runs
        to publish their events."""
        for pid in self.products:
            try:
                _post(f"{proc.api_url}/products/{pid}/hotdeal/end", {},
                      {"Authorization": f"Bearer {self.admin}"})
            except OSError as exc:
                print(f"[bench] WARNING: could not end the deal of product {pid}: {exc}")
        deals = [d for (d,) in self.sql("SELECT id FROM hot_deals WHERE product_id = ANY(:p) "
                                        "AND status = 'ENDED'", p=self.products)]

        async def flush() -> None:
            redis = make_redis(self.settings, max_connections=4)
            ctx = Context(engine=self.engine, stock=RedisStockStore(redis),
                          settings=self.settings, topics=Topics(PREFIX))
            try:
                for deal_id in deals:
                    await flush_deal(ctx, int(deal_id))
            finally:
                await close_redis(redis)
        try:
            self.loop.run_until_complete(flush())
        except Exception as exc:  # noqa: BLE001 - a reconciler's safety net flushes them later
            print(f"[bench] WARNING: could not flush deals {deals}: {exc}")
        self.products.clear()


# ---------------------------------------------------------------- report
def _ms(us: float) -> str:
    return f"{us / 1000:,.1f}"


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One target over the rounds: medians (req/s also min-max), timeouts and errors summed."""
    med = statistics.median
    n = [max(1, r["requests"]) for r in rounds]
    return {"rounds": len(rounds), "rps": med(r["rps"] for r in rounds),
            "rps_min": min(r["rps"] for r in rounds), "rps_max": max(r["rps"] for r in rounds),
            **{k: med(r["latency_us"][k] for r in rounds) / 1000
               for k in ("mean", "p50", "p99", "max")},
            "timeouts": sum(r["errors"]["timeout"] for r in rounds),
            "errors": sum(r["unexpected"] + r["socket_errors"] for r in rounds),
            "cpu_ms": {c: med(1000 * r["cpu_s"][c] / k for r, k in zip(rounds, n, strict=True))
                       for c in COMPONENTS}}


def render(label: str, rounds: list[dict[str, dict[str, Any]]]) -> str:
    by_target = {t: summarize([r[t] for r in rounds]) for t in TARGETS if t in rounds[0]}
    base = by_target.get("trivial", {}).get("rps")
    head = ["target", "req/s", "of trivial", "mean ms", "p50 ms", "p99 ms", "max ms", "timeouts",
            "errors", *(f"CPU ms/req {c}" for c in COMPONENTS)]
    many = f" (medians of {len(rounds)} rounds; req/s min-max)" if len(rounds) > 1 else ""
    rows = []
    for name, t in by_target.items():
        ratio = f"{100 * t['rps'] / base:.0f} %" if base else "-"
        spread = f" ({t['rps_min']:,.0f}-{t['rps_max']:,.0f})" if len(rounds) > 1 else ""
        rows.append([name, f"{t['rps']:,.0f}{spread}", ratio, f"{t['mean']:,.1f}",
                     f"{t['p50']:,.1f}", f"{t['p99']:,.1f}", f"{t['max']:,.1f}",
                     f"{t['timeouts']:,}", f"{t['errors']:,}",
                     *(f"{t['cpu_ms'][c]:.3f}" for c in COMPONENTS)])
    lines = [f"### {label}{many}", "", *markdown_table(head, rows, "l" + "r" * (len(head) - 1))]
    notes = [f"webhook: {r['webhook']['signed_orders']:,} signed orders, "
             f"{r['webhook']['duplicates']:,} replays" for r in rounds if "webhook" in r]
    notes += [f"{n}: outbox drained {x['outbox_drain_s']:.1f} s after wrk (CPU window "
              f"{x['cpu_s']['wall']:.1f} s)" for r in rounds for n, x in r.items()
              if x["outbox_drain_s"] > 0.5]
    return "\n".join([*lines, "", *(f"- {x}" for x in notes), ""])


def compare(runs: dict[str, list[dict[str, dict[str, Any]]]]) -> str:
    labels = list(runs)
    rows = []
    for name in TARGETS:
        cells = []
        for x in labels:
            if name not in runs[x][0]:
                cells.append("-")
                continue
            t = summarize([r[name] for r in runs[x]])
            cells.append(f"{t['rps']:,.0f} ({t['cpu_ms']['API']:.3f})")
        rows.append([name, *cells])
    return "\n".join(["### by configuration: req/s (API CPU ms per request)", "",
                      *markdown_table(["target", *labels], rows, "l" + "r" * len(labels)), ""])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per target")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="wrk threads")
    p.add_argument("--timeout", type=float, default=2.0, help="wrk request timeout, seconds")
    p.add_argument("--spike", action="store_true", help="-c1000, 10 s timeout")
    p.add_argument("--server", default="uvicorn", help="uvicorn, granian, or both: a,b")
    p.add_argument("--workers", default="1", help="API worker processes: 1, 2, or 1,2")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--port", type=int, default=0, help="the servers' port (0: a free one)")
    p.add_argument("--buyers", type=int, default=20_000,
                   help="buyers (pre-minted tokens) the order targets rotate over")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat the configurations, in alternating order; medians reported")
    p.add_argument("--json", type=Path, help="write every figure here (benchmarks/results.py)")
    a = p.parse_args()
    recorder = Recorder()
    # The API it starts may use the development secrets, and so may the token minter.
    os.environ.setdefault("ALLOW_DEV_SECRETS", "true")
    if a.buyers < a.threads:
        sys.exit("--buyers must be at least --threads (each wrk thread has its own buyers)")
    if a.spike:
        a.connections, a.timeout = 1000, 10.0
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: run scripts/ensure-wrk.sh (make bench does)")
    targets = [t for t in a.targets.split(",") if t]
    if unknown := set(targets) - set(TARGETS):
        sys.exit(f"unknown targets: {', '.join(sorted(unknown))}")
    machine = (f"{psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
               f"load generator (wrk -t{a.threads} -c{a.connections}) on the same machine")
    print(f"[bench] hotdeal {git_commit()}; {machine}", flush=True)
    configs = [(s, int(w)) for s in a.server.split(",") for w in a.workers.split(",")]
    runs: dict[str, list[dict[str, dict[str, Any]]]] = {f"{s} x{w}": [] for s, w in configs}
    out = Path(tempfile.mkdtemp(prefix="hotdeal-bench-"))
    for r in range(a.rounds):
        for server, workers in configs if r % 2 == 0 else reversed(configs):
            bench = Bench(a, server, workers, out)
            try:
                if "trivial" in targets:
                    bench.trivial()
                if set(targets) - {"trivial"}:
                    bench.api(targets)
            finally:
                bench.close()
            runs[f"{server} x{workers}"].append(bench.results)
    report = "\n".join([f"hotdeal {git_commit()}; {machine}; {a.duration:g} s per target, "
                        f"{a.connections} connections, timeout {a.timeout:g} s; command: "
                        f"{' '.join(['python -m benchmarks.http', *sys.argv[1:]])}", "",
                        *(render(k, v) for k, v in runs.items()),
                        *([compare(runs)] if len(runs) > 1 else [])])
    print("\n" + report)
    if a.json:
        recorder.write(a.json, {"load": machine, "args": vars(a), "runs": runs})
    print(f"[bench] logs in {out}")


if __name__ == "__main__":
    main()
