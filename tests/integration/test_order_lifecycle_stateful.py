"""One deal's orders explored by Hypothesis: webhooks, cancels, confirms, expiries,
the flush and a lagging, redelivering worker (real Postgres, the fake store). A paid order is
never cancelled, no charge refunded twice, the audit balances; at the end every charge confirms
its order or has exactly one refund."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import select, text

from hotdeal_core.db.engine import make_engine
from hotdeal_core.db.tables import orders, outbox
from hotdeal_core.errors import Conflict
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.usecases.audit import audit_deal
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, end_deal, start_deal
from hotdeal_core.usecases.flush import flush_deal
from hotdeal_core.usecases.orders import (
    PlaceOrder,
    place_order,
    request_cancellation,
    request_confirmation,
)
from hotdeal_core.usecases.payments import PaymentCallback, record_payment
from hotdeal_core.usecases.settlement import GROUP, expire_due_orders, settle_batch
from hotdeal_core.usecases.settlement_plan import Command
from schemas.events import order_request_adapter, payment_event_adapter
from stock_worker.app import payment_commands, request_commands

T = TypeVar("T")
STOCK, PRICE, LIMIT = 4, 700, 2
EXAMPLES = int(os.environ.get("LIFECYCLE_EXAMPLES", "150"))
WORKER_INPUTS = ("PaymentSucceeded", "PaymentFailed", "OrderConfirmationRequested",
                 "OrderCancellationRequested")
TERMINAL = ("CONFIRMED", "CANCELLED")


@dataclass
class Services:
    loop: asyncio.AbstractEventLoop
    ctx: Context

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    loop = asyncio.new_event_loop()
    settings_ = Settings(_env_file=None)
    engine = make_engine(settings_, pool_size=4)
    ctx = Context(engine=engine, stock=FakeStockStore(), settings=settings_,
                  topics=Topics(settings_.kafka_topic_prefix))
    yield Services(loop, ctx)
    loop.run_until_complete(engine.dispose())
    loop.close()


class OrderLifecycle(RuleBasedStateMachine):
    svc: Services

    def __init__(self) -> None:
        super().__init__()
        self.ctx = self.svc.ctx
        self.tag = uuid.uuid4().hex[:8]
        self.product_id, self.deal_id = self.svc.run(self._deal())
        self.orders: list[tuple[uuid.UUID, str, int]] = []  # id, buyer, total
        self.payment_ids: dict[uuid.UUID, list[str]] = {}
        self.callbacks: list[PaymentCallback] = []
        self.successes: set[tuple[str, uuid.UUID]] = set()  # (payment id, order) recorded
        self.pending: dict[uuid.UUID, list[Command]] = {}  # consumed by the lagging worker
        self.applied: list[Command] = []
        self.cursor = 0
        self.final: dict[uuid.UUID, str] = {}
        self.ended = False

    async def _deal(self) -> tuple[int, int]:
        from hotdeal_core.usecases.products import create_product
        product = await create_product(self.ctx, f"stateful-{uuid.uuid4().hex[:8]}", PRICE,
                                       STOCK)
        started = await start_deal(self.ctx, StartDeal(product.id, STOCK, LIMIT))
        return product.id, started.deal_id

    def _order(self, index: int) -> tuple[uuid.UUID, str, int] | None:
        return self.orders[index % len(self.orders)] if self.orders else None

    # ------------------------------------------------------------------ the API's side
    @rule(buyer=st.integers(0, 3))
    def reserve(self, buyer: int) -> None:
        if self.ended:  # the product then sells from its own stock: not this deal's orders
            return
        user = f"buyer-{self.tag}-{buyer}"
        try:
            order = self.svc.run(place_order(self.ctx, PlaceOrder(self.product_id, user, 1)))
        except Conflict as exc:
            assert exc.code in ("sold_out", "limit_exceeded"), exc.code
            return
        self.orders.append((order.id, user, order.total))
        self.pending[order.id] = []

    @rule(index=st.integers(0, 50), succeeded=st.booleans(), known_id=st.booleans(),
          right_amount=st.booleans())
    def webhook(self, index: int, succeeded: bool, known_id: bool, right_amount: bool) -> None:
        picked = self._order(index)
        if picked is None:
            return
        order_id, _, total = picked
        ids = self.payment_ids.setdefault(order_id, [])
        if known_id and ids:
            payment_id = ids[index % len(ids)]
        else:
            payment_id = f"pay-{uuid.uuid4().hex}"
            ids.append(payment_id)
        cb = PaymentCallback(payment_id, order_id, "succeeded" if succeeded else "failed",
                             total if right_amount else total + 1)
        self._send(cb)

    @rule(index=st.integers(0, 50))
    def replay(self, index: int) -> None:
        if self.callbacks:
            receipt = self._send(self.callbacks[index % len(self.callbacks)])
            assert receipt.duplicate

    def _send(self, cb: PaymentCallback) -> Any:
        receipt = self.svc.run(record_payment(self.ctx, cb))
        self.callbacks.append(cb)
        if cb.status == "succeeded":
            self.successes.add((cb.payment_id, cb.order_id))
        self._consume_outbox()
        return receipt

    @rule(index=st.integers(0, 50))
    def buyer_cancels(self, index: int) -> None:
        picked = self._order(index)
        if picked is None:
            return
        try:
            self.svc.run(request_cancellation(self.ctx, picked[0], picked[1]))
        except Conflict as exc:
            assert exc.code == "invalid_state"
        self._consume_outbox()

    @rule(index=st.integers(0, 50))
    def admin_confirms(self, index: int) -> None:
        picked = self._order(index)
        if picked is None:
            return
        try:
            self.svc.run(request_confirmation(self.ctx, picked[0]))
        except Conflict as exc:
            assert exc.code == "invalid_state"
        self._consume_outbox()

    # ------------------------------------------------------------------ time and the deal
    @rule(index=st.integers(0, 50))
    def reservation_runs_out(self, index: int) -> None:
        picked = self._order(index)
        if picked is not None:
            self.svc.run(self._past_expiry(picked[0]))

    async def _past_expiry(self, order_id: uuid.UUID) -> None:
        async with self.ctx.engine.begin() as conn:
            await conn.execute(text("UPDATE orders SET expires_at = now() - interval '1 second'"
                                    " WHERE id = :id"), {"id": order_id})

    @rule()
    def sweeper_runs(self) -> None:
        self.svc.run(expire_due_orders(self.ctx, batch_size=10_000))

    @rule()
    def deal_ends_and_is_flushed(self) -> None:
        if self.ended:
            return
        self.svc.run(end_deal(self.ctx, self.product_id))
        report = self.svc.run(flush_deal(self.ctx, self.deal_id))
        assert report.balanced
        self.ended = True

    # ------------------------------------------------------------------ the lagging worker
    def _consume_outbox(self) -> None:
        """What the stock worker would receive: the new worker-bound events of our orders."""
        rows = self.svc.run(self._new_rows())
        for row_id, event_type, payload in rows:
            self.cursor = max(self.cursor, row_id)
            if event_type.startswith("Payment"):
                commands = payment_commands([payment_event_adapter.validate_python(payload)])
            else:
                commands = request_commands([order_request_adapter.validate_python(payload)])
            for command in commands:
                self.pending[command.order_id].append(command)

    async def _new_rows(self) -> list[tuple[int, str, dict[str, Any]]]:
        async with self.ctx.engine.connect() as conn:
            rows = (await conn.execute(select(outbox.c.id, outbox.c.event_type,
                                              outbox.c.payload).where(
                outbox.c.id > self.cursor, outbox.c.event_type.in_(WORKER_INPUTS),
                outbox.c.key.in_([str(o) for o, _, _ in self.orders])).order_by(outbox.c.id)
            )).all()
        return [(int(r.id), str(r.event_type), dict(r.payload)) for r in rows]

    @rule(picks=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 3)), min_size=1,
                         max_size=4))
    def worker_applies(self, picks: list[tuple[int, int]]) -> None:
        """One batch: the first few waiting events of some orders (offset order per order)."""
        batch: list[Command] = []
        for index, count in picks:
            picked = self._order(index)
            if picked is None:
                continue
            waiting = self.pending[picked[0]]
            batch += waiting[:count]
            del waiting[:count]
        self._apply(batch)

    @rule(index=st.integers(0, 200))
    def worker_gets_a_redelivery(self, index: int) -> None:
        if self.applied:
            again = self.applied[index % len(self.applied)]
            [result] = self.svc.run(settle_batch(self.ctx, [again], consumer=GROUP))
            assert result.outcome == "already_processed"

    def _apply(self, batch: list[Command]) -> None:
        if batch:
            self.svc.run(settle_batch(self.ctx, batch, consumer=GROUP))
            self.applied += [c for c in batch if c.event_id is not None]
            self._consume_outbox()

    # ------------------------------------------------------------------ what must hold
    async def _rows(self) -> dict[uuid.UUID, Any]:
        async with self.ctx.engine.connect() as conn:
            rows = (await conn.execute(select(
                orders.c.id, orders.c.status, orders.c.payment_id, orders.c.paid_at).where(
                orders.c.id.in_([o for o, _, _ in self.orders])))).all()
        return {r.id: r for r in rows}

    async def _refunds(self) -> list[str]:
        async with self.ctx.engine.connect() as conn:
            return [str(p) for p in (await conn.execute(select(
                outbox.c.payload["payment_id"].astext).where(
                outbox.c.event_type == "RefundRequested",
                outbox.c.key.in_([str(o) for o, _, _ in self.orders])))).scalars().all()]

    @invariant()
    def orders_hold_their_promises(self) -> None:
        if not self.orders:
            return
        rows = self.svc.run(self._rows())
        assert len(rows) == len(self.orders), "an accepted order is missing"
        for order_id, row in rows.items():
            if order_id in self.final:
                assert row.status == self.final[order_id], "left a terminal state"
            elif row.status in TERMINAL:
                self.final[order_id] = row.status
            assert not (row.paid_at is not None and row.status == "CANCELLED"), \
                "an order paid in time was cancelled"
        refunds = self.svc.run(self._refunds())
        for payment_id, order_id in self.successes:
            assert refunds.count(payment_id) <= 1, f"{payment_id} refunded twice"
            row = rows[order_id]
            if row.status == "CONFIRMED" and row.payment_id == payment_id:
                assert payment_id not in refunds, f"{payment_id} confirms and is refunded"

    @invariant()
    def units_are_conserved(self) -> None:
        audit = self.svc.run(audit_deal(self.ctx, self.deal_id, attempts=1))
        assert audit.balanced, audit

    def teardown(self) -> None:
        """The worker catches up; then every charge has found its end."""
        self._apply([c for waiting in self.pending.values() for c in waiting])
        self.pending = {o: [] for o in self.pending}
        rows = self.svc.run(self._rows())
        refunds = self.svc.run(self._refunds())
        for row in rows.values():
            if row.paid_at is not None:
                assert row.status == "CONFIRMED", "paid in time, yet not confirmed"
        for payment_id, order_id in self.successes:
            row = rows[order_id]
            attached = row.status == "CONFIRMED" and row.payment_id == payment_id
            assert attached or refunds.count(payment_id) == 1, \
                f"charge {payment_id} neither confirms its order nor is refunded"
        assert self.svc.run(audit_deal(self.ctx, self.deal_id, attempts=1)).balanced


@pytest.mark.timeout(300)
def test_the_order_lifecycle_keeps_every_promise(services: Services) -> None:
    OrderLifecycle.svc = services
    # No shrinking: every step costs Postgres round trips, and shrinking a long sequence can
    # take minutes; the failing sequence is printed as it was found.
    run_state_machine_as_test(OrderLifecycle, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=40, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
