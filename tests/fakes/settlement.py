"""The settlement port in memory: a transaction works on a copy of the tables and commits it
when its block exits (`fail_commits` makes that many commits raise instead). Row locks and
the deal fence are not modelled beyond recording which deals were fenced."""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from hotdeal_core.domain import DealStatus, OrderStatus, StockBackend
from hotdeal_core.messaging.outbox import OutboxRow
from hotdeal_core.messaging.topics import Topics, event_key
from hotdeal_core.ports.settlement import DealState, LockedOrder, PaymentFact
from hotdeal_core.usecases.settlement_plan import due_to_expire, marks_paid
from schemas.events import AnyEvent


class CommitFailed(ConnectionError):
    """The injected fault: the database went away at commit; nothing was written."""


@dataclass
class FakeOrder:
    id: UUID
    product_id: int
    deal_id: int | None
    user_id: str
    quantity: int
    unit_price: int
    expires_at: datetime
    status: str = OrderStatus.PENDING
    payment_id: str | None = None
    cancel_reason: str | None = None
    paid_at: datetime | None = None


@dataclass
class FakeDeal:
    id: int
    status: str
    stock_backend: str
    remaining_stock: int = 0
    returned_stock: int = 0


@dataclass
class Tables:
    orders: dict[UUID, FakeOrder] = field(default_factory=dict)
    deals: dict[int, FakeDeal] = field(default_factory=dict)
    product_stock: Counter[int] = field(default_factory=Counter)
    processed: set[tuple[str, UUID]] = field(default_factory=set)
    payments: dict[tuple[str, str], PaymentFact] = field(default_factory=dict)
    outbox: list[AnyEvent] = field(default_factory=list)


class FakeSettlement:
    def __init__(self, topics: Topics | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.tables = Tables()
        self.topics = topics or Topics()
        self.clock = clock
        self.fail_commits = 0
        self.commits = 0
        self.fenced: list[list[int]] = []  # the deal ids each transaction fenced, in order
        self._ids = itertools.count(1)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeTx]:
        tx = FakeTx(self, copy.deepcopy(self.tables), self.clock())
        yield tx
        if self.fail_commits:
            self.fail_commits -= 1
            raise CommitFailed("connection lost at commit")
        self.tables = tx.tables
        self.commits += 1

    async def claim_due_orders(self, limit: int) -> list[UUID]:
        now = self.clock()
        due = sorted((o for o in self.tables.orders.values()
                      if due_to_expire(o.status, o.paid_at is not None, o.expires_at, now)),
                     key=lambda o: o.expires_at)
        return [o.id for o in due[:limit]]

    # Seeding and reading, for tests.
    def add_deal(self, status: DealStatus = DealStatus.ACTIVE,
                 backend: StockBackend = StockBackend.REDIS, deal_id: int | None = None,
                 ) -> int:
        deal_id = deal_id or next(self._ids)
        self.tables.deals[deal_id] = FakeDeal(deal_id, status, backend)
        return deal_id

    def add_order(self, product_id: int, deal_id: int | None, *, quantity: int = 1,
                  unit_price: int = 700, expires_in: timedelta = timedelta(minutes=10),
                  status: OrderStatus = OrderStatus.PENDING, paid: bool = False) -> UUID:
        order_id = uuid4()
        now = self.clock()
        self.tables.orders[order_id] = FakeOrder(
            order_id, product_id, deal_id, f"buyer-{order_id.hex[:8]}", quantity, unit_price,
            now + expires_in, status, paid_at=now if paid else None,
            cancel_reason="expired" if status == OrderStatus.CANCELLED else None)
        return order_id

    def event_types(self, order_id: UUID) -> list[str]:
        return [e.type for e in self.tables.outbox if event_key(e) == str(order_id)]


class FakeTx:
    def __init__(self, db: FakeSettlement, tables: Tables, now: datetime) -> None:
        self._db, self.tables, self._now = db, tables, now

    async def record_first_times(self, consumer: str, event_ids: Sequence[UUID]
                                 ) -> set[UUID]:
        new = {e for e in event_ids if (consumer, e) not in self.tables.processed}
        self.tables.processed |= {(consumer, e) for e in new}
        return new

    async def fence_deals_of(self, order_ids: Sequence[UUID]) -> dict[int, DealState]:
        deal_ids = sorted({o.deal_id for i in order_ids
                           if (o := self.tables.orders.get(i)) and o.deal_id is not None})
        if deal_ids:
            self._db.fenced.append(deal_ids)
        return {d: DealState(d, self.tables.deals[d].status, self.tables.deals[d].stock_backend)
                for d in deal_ids if d in self.tables.deals}

    async def lock_orders(self, order_ids: Sequence[UUID]) -> dict[UUID, LockedOrder]:
        return {o.id: LockedOrder(o.id, o.product_id, o.deal_id, o.user_id, o.quantity,
                                  o.status, o.payment_id, o.paid_at is not None,
                                  (o.status, o.payment_id))
                for i in sorted(set(order_ids)) if (o := self.tables.orders.get(i))}

    async def cas_order_status(self, changed: Sequence[LockedOrder]) -> int:
        moved = 0
        for new in changed:
            row = self.tables.orders.get(new.id)
            if row is not None and (row.status, row.payment_id) == new.was:
                row.status, row.payment_id = new.status, new.payment_id
                row.cancel_reason = new.cancel_reason
                moved += 1
        return moved

    async def give_back(self, product_units: Mapping[int, int],
                        returned_units: Mapping[int, int],
                        remaining_units: Mapping[int, int]) -> None:
        self.tables.product_stock.update(product_units)
        for deal_id, units in returned_units.items():
            self.tables.deals[deal_id].returned_stock += units
        for deal_id, units in remaining_units.items():
            self.tables.deals[deal_id].remaining_stock += units

    async def add_events(self, events: Sequence[AnyEvent], *, claim: bool,
                         headers: Sequence[dict[str, str] | None] | None = None,
                         ) -> list[OutboxRow]:
        self.tables.outbox.extend(events)
        hdrs = list(headers) if headers is not None else [None] * len(events)
        return [OutboxRow(next(self._db._ids), self._db.topics.of(e), event_key(e),
                          e.model_dump(mode="json"), self._now, 0, h)
                for e, h in zip(events, hdrs, strict=True)]

    async def order_totals(self, order_ids: Sequence[UUID]) -> dict[UUID, int]:
        return {o.id: o.quantity * o.unit_price
                for i in order_ids if (o := self.tables.orders.get(i))}

    async def record_payment_facts(self, facts: Sequence[PaymentFact]
                                   ) -> set[tuple[str, str]]:
        new = set()
        for fact in facts:
            key = (fact.payment_id, fact.status)
            if key not in self.tables.payments:
                self.tables.payments[key] = fact
                new.add(key)
        return new

    async def mark_paid_in_time(self, order_ids: Sequence[UUID]) -> None:
        for i in order_ids:
            o = self.tables.orders.get(i)
            if o is not None and marks_paid(o.status, o.paid_at is not None, o.expires_at,
                                            self._now):
                o.paid_at = self._now

    async def first_outcomes(self, payment_ids: Sequence[str]) -> dict[tuple[str, str], str]:
        wanted = set(payment_ids)
        return {k: f.outcome for k, f in self.tables.payments.items()
                if f.payment_id in wanted}
