"""The hot-deal load swarm: many buyers hit `POST /orders` on one product at once.

    HOTDEAL_PRODUCT_ID=42 locust -f loadtest/locustfile.py --headless -u 500 -r 100 -t 30s"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:  # locust puts only loadtest/ itself on sys.path
    sys.path.insert(0, _ROOT)

from hotdeal_core.settings import (  # noqa: E402
    DEV_WEBHOOK_SECRET,
    ORDER_API_PORT,
    InsecureSecrets,
)
from hotdeal_core.signature import sign  # noqa: E402
from loadtest.buyers import BuyerAuth  # noqa: E402
from loadtest.outcomes import CLIENT_OUTCOMES, Outcome, classify, error_code  # noqa: E402
from loadtest.shapes import (  # noqa: E402
    SpikeConfig,
    StepConfig,
    Tick,
    env_float,
    env_int,
    spike_tick,
    step_tick,
)

log = logging.getLogger("hotdeal.loadtest")

API_URL = os.environ.get("HOTDEAL_API_URL", f"http://127.0.0.1:{ORDER_API_PORT}")
TARGET = os.environ.get("HOTDEAL_TARGET", "orders").strip().lower() or "orders"
PRODUCT_ID = env_int("HOTDEAL_PRODUCT_ID", 0)
BUYERS = env_int("HOTDEAL_USERS", 100, minimum=1)
QUANTITY = env_int("HOTDEAL_QUANTITY", 1, minimum=1)
PAY_SUCCESS = env_float("HOTDEAL_PAY_SUCCESS_RATIO", 0.8, 0.0, 1.0)
PAY_FAIL = env_float("HOTDEAL_PAY_FAIL_RATIO", 0.1, 0.0, 1.0)
SECRET = os.environ.get("PAYMENT_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET)
WAIT = env_float("HOTDEAL_WAIT", 0.0, minimum=0.0)
ACCEPTED_FILE = os.environ.get("HOTDEAL_ACCEPTED_FILE", "").strip()
SHAPE = os.environ.get("HOTDEAL_SHAPE", "constant").strip().lower() or "constant"

if TARGET not in ("orders", "noop"):
    raise ValueError(f"HOTDEAL_TARGET must be 'orders' or 'noop', got {TARGET!r}")
if PAY_SUCCESS + PAY_FAIL > 1.0:
    raise ValueError("HOTDEAL_PAY_SUCCESS_RATIO + HOTDEAL_PAY_FAIL_RATIO must be <= 1")
if SHAPE not in ("constant", "spike", "step"):
    raise ValueError(f"HOTDEAL_SHAPE must be constant, spike or step, got {SHAPE!r}")

BUY_PATH, BUY_NAME = ("/noop", "POST /noop") if TARGET == "noop" else ("/orders", "POST /orders")

#: This process's outcome counts (locust stats carry the cross-process sums).
OUTCOME_COUNTS: dict[str, int] = {o.value: 0 for o in CLIENT_OUTCOMES}

_buyer_seq = itertools.count()
_auth: BuyerAuth | None = None
_accepted_fd: int | None = None
_accepted_pid: int | None = None


def _json_or_none(content: bytes | None) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def _describe(status: int, error: object, body: Any, content: bytes | None) -> str:
    if status == 0:
        return f"no response: {error!r}"
    code = error_code(body)
    if code is not None:
        return f"HTTP {status} {code}"
    return f"HTTP {status}: {(content or b'')[:200]!r}"


def _append_accepted(order_id: str) -> None:
    """One unbuffered O_APPEND write of a whole line, opened lazily (after any fork)."""
    global _accepted_fd, _accepted_pid
    if not ACCEPTED_FILE:
        return
    if _accepted_fd is None or _accepted_pid != os.getpid():
        _accepted_fd = os.open(ACCEPTED_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _accepted_pid = os.getpid()
    os.write(_accepted_fd, f"{order_id}\n".encode())


def _worker_slot(environment: Environment) -> tuple[int, int]:
    """(this process's index, how many processes run users): worker k of W hands out buyer ids
    k, k+W, ..., so ids stay distinct across workers."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        workers = getattr(environment.parsed_options, "expect_workers", 1) or 1
        index = max(runner.worker_index, 0)
        return index, max(int(workers), index + 1)
    return 0, 1


def _run_seconds(environment: Environment) -> float | None:
    """How long the run lasts, if known: the shape's length, else locust's -t."""
    if SHAPE == "spike":
        return _SPIKE.duration
    if SHAPE == "step":
        return _STEP.duration
    run_time = getattr(environment.parsed_options, "run_time", None)
    return float(run_time) if run_time else None


def buyer_auth(environment: Environment) -> BuyerAuth:
    """This process's token book, made at first use (after locust forked its workers)."""
    global _auth
    if _auth is None:
        _auth = BuyerAuth.from_settings(_run_seconds(environment))
    return _auth


def record_outcome(environment: Environment, outcome: str) -> None:
    """Count the outcome and fire it as a locust request `outcome:<outcome>`: locust's stats then
    sum it over processes into its table, CSV and HTML (so read throughput from the
    "POST /orders" row, not "Aggregated")."""
    OUTCOME_COUNTS[outcome] += 1
    environment.events.request.fire(
        request_type="OUTCOME", name=f"outcome:{outcome}", response_time=0,
        response_length=0, response=None, context={}, exception=None)


class Buyer(FastHttpUser):
    """One buyer: orders the hot product, then pays (or not) for what it got."""

    host = API_URL
    wait_time = constant(WAIT)

    def on_start(self) -> None:
        index, stride = _worker_slot(self.environment)
        self.buyer_id = f"buyer-{(next(_buyer_seq) * stride + index) % BUYERS + 1}"
        self.auth = buyer_auth(self.environment).header(self.buyer_id)

    @task
    def buy(self) -> None:
        body = {"product_id": PRODUCT_ID, "user_id": self.buyer_id, "quantity": QUANTITY}
        headers = {"Idempotency-Key": str(uuid.uuid4()), **self.auth}
        order_id: str | None = None
        total = 0
        with self.client.post(BUY_PATH, json=body, headers=headers, name=BUY_NAME,
                              catch_response=True) as resp:
            status = resp.status_code or 0
            content = resp.content if status else None
            payload = _json_or_none(content)
            outcome = classify(status, payload)
            if outcome == Outcome.ACCEPTED and TARGET == "orders":
                order_id, total = _accepted_order(payload)
                if order_id is None:
                    outcome = Outcome.FAILURE
            if outcome == Outcome.FAILURE:
                resp.failure(_describe(status, getattr(resp, "error", None), payload, content))
            else:
                resp.success()
        record_outcome(self.environment, outcome)
        if order_id is not None:
            _append_accepted(order_id)
            self._maybe_pay(order_id, total)

    def _maybe_pay(self, order_id: str, total: int) -> None:
        roll = random.random()
        if roll < PAY_SUCCESS:
            status = "succeeded"
        elif roll < PAY_SUCCESS + PAY_FAIL:
            status = "failed"
        else:
            return  # never pays: the reservation expires
        raw = json.dumps({"payment_id": f"pay-{uuid.uuid4()}", "order_id": order_id,
                          "status": status, "amount": total}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   "X-Payment-Signature": sign(SECRET, int(time.time()), raw)}
        # The exact bytes that were signed (bytes are supported; the stub says str).
        with self.client.post("/payments/webhook", data=raw,  # type: ignore[arg-type]
                              headers=headers, name="POST /payments/webhook",
                              catch_response=True) as resp:
            if resp.status_code == 200:
                resp.success()
            else:
                code = resp.status_code or 0
                content = resp.content if code else None
                resp.failure(_describe(code, getattr(resp, "error", None),
                                       _json_or_none(content), content))


def _accepted_order(payload: Any) -> tuple[str | None, int]:
    """(order id, total) of a 202 body, or (None, 0) if it lacks them."""
    if not isinstance(payload, dict):
        return None, 0
    order_id, total = payload.get("order_id"), payload.get("total")
    if not isinstance(order_id, str) or not isinstance(total, int):
        return None, 0
    try:
        return str(uuid.UUID(order_id)), total
    except ValueError:
        return None, 0


def _check_config(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        return  # the master runs no users
    if TARGET == "orders" and PRODUCT_ID < 1:
        log.error("HOTDEAL_PRODUCT_ID is required (the hot product's id)")
        sys.exit(2)
    try:
        buyer_auth(environment)
    except InsecureSecrets as exc:
        log.error("cannot mint buyer tokens: %s", exc)
        sys.exit(2)


def _on_quit(environment: Environment, **_: Any) -> None:
    global _accepted_fd
    if not isinstance(environment.runner, MasterRunner):
        log.info("outcomes in process %d: %s", os.getpid(), OUTCOME_COUNTS)
    if _accepted_fd is not None and _accepted_pid == os.getpid():
        os.close(_accepted_fd)
        _accepted_fd = None


events.init.add_listener(_check_config)
events.quitting.add_listener(_on_quit)


# Locust uses any LoadTestShape subclass found in this module, so a shape class exists only
# when HOTDEAL_SHAPE asks for one; "constant" leaves -u/-r/-t in charge.
if SHAPE == "spike":
    _SPIKE = SpikeConfig.from_env()

    class SpikeShape(LoadTestShape):
        """0 -> peak within the ramp, hold, drop to 10 % for 10 s, stop."""

        def tick(self) -> Tick:
            return spike_tick(self.get_run_time(), _SPIKE)

elif SHAPE == "step":
    _STEP = StepConfig.from_env()

    class StepShape(LoadTestShape):
        """start, +step every `seconds` up to max, hold one step, stop."""

        def tick(self) -> Tick:
            return step_tick(self.get_run_time(), _STEP)
