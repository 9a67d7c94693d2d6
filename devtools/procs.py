"""Start, await and stop the processes: `python -m devtools.procs up|down|status
[--run-dir .run] [--cluster]` (`--cluster`: two of each behind HAProxy, `make up CLUSTER=1`).
`up` waits for each /readyz and fails with the log's tail if a process exits or stalls."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from devtools.haproxy import config as haproxy_config
from hotdeal_core.settings import ORDER_API_PORT

ROOT = Path(__file__).resolve().parents[1]
MODULES = {"order-api": "order_api", "stock-worker": "stock_worker", "reconciler": "reconciler"}
# Replicas of each process in cluster mode (docs/scaling.md).
CLUSTER_REPLICAS = 2
#: Settings of every order API a load tool starts (make demo, swarm, compare, chaos, bench),
#: over the environment: their whole swarm sends from 127.0.0.1 as a few thousand buyers,
#: which per-address and per-buyer limits meant for real shoppers must not shape. `make up`
#: and the tests do not read it.
# Their buyers reuse each id without pause (locust) or in rotation (wrk): the per-buyer limit
# is off, the per-address one is off by default.
LOAD_API_ENV: dict[str, str] = {"ORDER_RATE_PER_BUYER": "0"}
#: `up` serves each consumer's /metrics and /readyz (METRICS_PORT) on a port of its own,
#: from ORDER_API_PORT + CONSUMER_PORTS on, the same in single and cluster mode.
CONSUMER_PORTS = 10


class ProcessFailed(RuntimeError):
    pass


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class Proc:
    name: str
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    module: str = ""  # defaults to the module of the process named `name`
    popen: subprocess.Popen[bytes] | None = None
    # Not a Python module: the program and its arguments (the load balancer).
    argv: tuple[str, ...] = ()
    files: dict[Path, str] = field(default_factory=dict)  # written on start (its config)

    def __post_init__(self) -> None:
        if not self.argv:
            self.module = self.module or MODULES[self.name]

    @property
    def command(self) -> list[str]:
        return list(self.argv) or [sys.executable, "-m", self.module]

    @property
    def serves_api(self) -> bool:
        """The API or the LB (on ORDER_API_PORT); else a consumer (on METRICS_PORT)."""
        return self.module == "order_api" or bool(self.argv)

    @property
    def log(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def api_url(self) -> str:
        port = self.env.get("ORDER_API_PORT", os.environ.get("ORDER_API_PORT", ORDER_API_PORT))
        return f"http://127.0.0.1:{port}"

    @property
    def ready_url(self) -> str:
        if self.serves_api:
            return f"{self.api_url}/readyz"
        return f"http://127.0.0.1:{self.env['METRICS_PORT']}/readyz"

    def start(self) -> Proc:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.serves_api and "METRICS_PORT" not in self.env:  # where /readyz answers
            self.env = {**self.env, "METRICS_PORT": str(free_port())}  # (a shared env stays)
        for path, text in self.files.items():
            path.write_text(text)
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(
                self.command, cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.pid_file.write_text(f"{self.popen.pid}\n")
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 60.0) -> Proc:
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if self.popen is not None and self.popen.poll() is not None:
                raise ProcessFailed(f"{self.name} exited with {self.popen.returncode}:\n"
                                    f"{log_tail(self.log)}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name} not ready within {timeout:.0f} s:\n"
                                    f"{log_tail(self.log)}")
            time.sleep(0.1)
        return self

    def pid(self) -> int | None:
        if self.popen is not None:
            return self.popen.pid
        return read_pid(self.pid_file)

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        if self.popen is not None:
            return self.popen.poll() is None
        return running(pid, self.command[-1])

    def signal(self, sig: signal.Signals) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, timeout: float = 45.0, *, terminated: bool = False) -> int | None:
        """SIGTERM (graceful; `terminated`: sent already), SIGKILL after `timeout` (longer
        than any process's own graceful timeout). Returns the exit code if known."""
        if self.alive():
            if not terminated:
                self.signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                self.signal(signal.SIGUSR1)  # consumers log their tasks' stacks first
                time.sleep(0.5)
                self.signal(signal.SIGKILL)
                while self.alive():
                    time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return self.popen.returncode if self.popen is not None else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def consumer_port(name: str, base: int) -> int:
    """The METRICS_PORT `up` gives the consumer `name` (single or cluster mode), after the
    API's port `base` (ORDER_API_PORT) and its replicas'."""
    consumers = [n for n in MODULES if n != "order-api"]
    names = [*consumers, *(f"{n}-{i}" for n in consumers for i in range(1, CLUSTER_REPLICAS + 1))]
    return base + CONSUMER_PORTS + names.index(name)


def read_pid(path: Path) -> int | None:
    """The pid a pid file holds (its first word), or None."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def running(pid: int | None, argument: str | None = None) -> bool:
    """The process runs: not a zombie (killed, not reaped yet) and, given `argument` (the
    module of `python -m <module>`, the LB's config file), not a pid reused by another."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        return argument is None or argument in proc.cmdline()
    except psutil.Error:
        return False


def load_balancer(run_dir: Path, port: int, apis: list[Proc], name: str = "load-balancer",
                  ) -> Proc:
    """HAProxy on `port` (ORDER_API_HOST), balancing over `apis` and health-checking
    their /readyz (devtools/haproxy.py); it runs in the foreground (-db) under procs."""
    cfg = run_dir / f"{name}.cfg"
    host = os.environ.get("ORDER_API_HOST", "127.0.0.1")
    text = haproxy_config(f"{host}:{port}", [(p.name, p.api_url.removeprefix("http://"))
                                             for p in apis])
    return Proc(name, run_dir, {"ORDER_API_PORT": str(port)},
                argv=(shutil.which("haproxy") or "haproxy", "-db", "-f", str(cfg)),
                files={cfg: text})


def _procs(run_dir: Path, cluster: bool = False) -> list[Proc]:
    """Single mode: one of each. Cluster mode: the replicas (APIs on the ports after
    ORDER_API_PORT, consumers with their static member ids), then the LB on ORDER_API_PORT."""
    base = int(os.environ.get("ORDER_API_PORT", ORDER_API_PORT))
    if not cluster:
        return [Proc(name, run_dir, {} if name == "order-api" else
                     {"METRICS_PORT": str(consumer_port(name, base))}) for name in MODULES]
    replicas = range(1, CLUSTER_REPLICAS + 1)
    apis = [Proc(f"order-api-{i}", run_dir, {"ORDER_API_PORT": str(base + i)},
                 module="order_api") for i in replicas]
    consumers = [Proc(f"{name}-{i}", run_dir, {"CONSUMER_INSTANCE_ID": f"{name}-{i}",
                                               "METRICS_PORT": str(consumer_port(f"{name}-{i}",
                                                                                 base))},
                      module=MODULES[name])
                 for name in ("stock-worker", "reconciler") for i in replicas]
    return [*apis, *consumers, load_balancer(run_dir, base, apis)]


def up(run_dir: Path, cluster: bool = False) -> None:
    """Start what is not running and wait until all are ready; if one fails, stop the
    ones this call started (a failed `make up` leaves nothing half-running)."""
    procs, started = _procs(run_dir, cluster), []
    others = [p.name for p in _procs(run_dir, not cluster) if p.alive()]
    if others:  # the same ports and groups: one set at a time
        raise ProcessFailed(f"{', '.join(others)} running ({'single' if cluster else 'cluster'}"
                            " mode): stop them first (make down)")
    if cluster and shutil.which("haproxy") is None:
        raise ProcessFailed("haproxy (the buyers' load balancer) is not installed: run "
                            "scripts/ensure-haproxy.sh (make up CLUSTER=1 does)")
    try:
        for proc in procs:
            if proc.alive():
                print(f"[procs] {proc.name} already running (pid {proc.pid()})")
            else:
                started.append(proc.start())
                print(f"[procs] {proc.name} starting (pid {proc.pid()}, log {proc.log})")
        for proc in procs:
            proc.wait_ready()
            print(f"[procs] {proc.name} ready")
    except BaseException:
        for proc in started:
            proc.stop(timeout=15)
        raise
    for proc in procs:
        if proc.module == "order_api":
            print(f"[procs] order API: {proc.api_url}  (docs: {proc.api_url}/docs)")
    if cluster:
        lb = procs[-1].api_url
        print(f"[procs] buyers' address (load balancer): {lb}  (docs: {lb}/docs)")


def down(run_dir: Path, cluster: bool = False) -> None:
    """Stop both sets (single and cluster mode), whichever runs: all are told to stop at
    once, so their graceful shutdowns overlap."""
    alive = [p for p in _procs(run_dir) + _procs(run_dir, cluster=True) if p.alive()]
    for proc in alive:
        proc.signal(signal.SIGTERM)
    for proc in alive:
        code = proc.stop(terminated=True)
        print(f"[procs] {proc.name} stopped" + (f" (exit {code})" if code is not None else ""))


def status(run_dir: Path, cluster: bool = False) -> None:
    for proc in _procs(run_dir, cluster):
        state = f"running (pid {proc.pid()})" if proc.alive() else "stopped"
        print(f"{proc.name:13} {state}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run")
    parser.add_argument("--cluster", action="store_true",
                        default=os.environ.get("HOTDEAL_CLUSTER") == "1",
                        help="two replicas of each process (default: HOTDEAL_CLUSTER=1)")
    args = parser.parse_args()
    try:
        {"up": up, "down": down, "status": status}[args.command](args.run_dir, args.cluster)
    except ProcessFailed as exc:
        print(f"[procs] ERROR: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
