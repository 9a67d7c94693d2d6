"""Every branch of the settlement and of payment recording, on the in-memory fakes
(tests/fakes/settlement.py, hotdeal_core/stock/fake.py): no services, milliseconds."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from hotdeal_core.domain import CancelReason, DealStatus, OrderStatus, StockBackend
from hotdeal_core.settings import Settings
from hotdeal_core.stock.fake import FakeStockStore
from hotdeal_core.stock.port import RebuiltState, ReleaseOutcome
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.payments import PaymentCallback, record_payment, record_payments
from hotdeal_core.usecases.settlement import (
    cancel_order,
    confirm_order,
    expire_due_orders,
    settle_batch,
)
from hotdeal_core.usecases.settlement_plan import Cancel, Command, Confirm
from tests.fakes.settlement import CommitFailed, FakeSettlement

PRODUCT = 42
USER, FAILED, EXPIRED = (CancelReason.USER_CANCELLED, CancelReason.PAYMENT_FAILED,
                         CancelReason.EXPIRED)
PAST = timedelta(seconds=-1)
# Never connected: every use case here reaches Postgres through `settlement_db`.
UNUSED_ENGINE = create_async_engine("postgresql+asyncpg://unused@127.0.0.1:1/unused")


class Store(FakeStockStore):
    """The fake store, its release calls recorded; `fail_releases` of them raise."""

    def __init__(self) -> None:
        super().__init__()
        self.released: list[list[tuple[int, UUID]]] = []
        self.fail_releases = 0

    async def release_many(self, items: Sequence[tuple[int, UUID]]) -> list[ReleaseOutcome]:
        self.released.append(list(items))
        if self.fail_releases:
            self.fail_releases -= 1
            raise ConnectionError("redis went away after the commit")
        return await super().release_many(items)


@pytest.fixture
def db() -> FakeSettlement:
    return FakeSettlement()


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def ctx(db: FakeSettlement, store: Store) -> Context:
    return Context(engine=UNUSED_ENGINE, stock=store, settings=Settings(_env_file=None),
                   settlement_db=db)


async def _live_deal(db: FakeSettlement, store: Store, units: int = 5) -> int:
    deal_id = db.add_deal(DealStatus.ACTIVE, StockBackend.REDIS)
    assert await store.open(PRODUCT, deal_id, units, 5, epoch=1, unit_price=700)
    return deal_id


async def _reserved(db: FakeSettlement, store: Store, deal_id: int, *,
                    expires_in: timedelta = timedelta(minutes=10)) -> UUID:
    order_id = db.add_order(PRODUCT, deal_id, expires_in=expires_in)
    await store.reserve(PRODUCT, order_id, f"buyer-{order_id.hex[:8]}", 1, None)
    return order_id


def _state(db: FakeSettlement, order_id: UUID) -> tuple[str, str | None]:
    row = db.tables.orders[order_id]
    return row.status, row.payment_id


def _refunds(db: FakeSettlement, order_id: UUID) -> list[tuple[str, str]]:
    return [(e.payment_id, e.reason) for e in db.tables.outbox
            if e.type == "RefundRequested" and e.order_id == order_id]


async def _stock(store: Store) -> int:
    return (await store.peek(PRODUCT)).stock


# Confirm.

async def test_a_payment_confirms_a_pending_order_and_only_its_reservation_record_goes(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    result = await confirm_order(ctx, order, payment_id="p1", amount=700)
    assert (result.outcome, result.status) == ("applied", OrderStatus.CONFIRMED)
    assert _state(db, order) == (OrderStatus.CONFIRMED, "p1")
    assert db.event_types(order) == ["OrderConfirmed"]
    assert (await store.snapshot(PRODUCT)).reservations == [] and await _stock(store) == 4


async def test_the_same_payment_applied_again_is_a_duplicate_that_changes_nothing(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    await confirm_order(ctx, order, payment_id="p1", amount=700)
    again = await confirm_order(ctx, order, payment_id="p1", amount=700)
    assert (again.outcome, again.status) == ("no_change", OrderStatus.CONFIRMED)
    assert db.event_types(order) == ["OrderConfirmed"]


async def test_a_second_payment_of_a_confirmed_order_is_refunded_as_a_duplicate(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    await confirm_order(ctx, order, payment_id="p1", amount=700)
    await confirm_order(ctx, order, payment_id="p2", amount=700)
    assert _state(db, order) == (OrderStatus.CONFIRMED, "p1")
    assert _refunds(db, order) == [("p2", "duplicate_payment")]


async def test_a_payment_of_a_cancelled_order_is_refunded(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    await cancel_order(ctx, order, USER)
    result = await confirm_order(ctx, order, payment_id="p1", amount=700)
    assert (result.outcome, result.status) == ("no_change", OrderStatus.CANCELLED)
    assert _refunds(db, order) == [("p1", "order_cancelled")]


async def test_an_admin_confirm_then_the_orders_payment_keeps_that_payment_unrefunded(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    results = await settle_batch(ctx, [Confirm(order, None), Confirm(order, "p1", 700)])
    assert [r.outcome for r in results] == ["applied", "no_change"]
    assert _state(db, order) == (OrderStatus.CONFIRMED, "p1") and _refunds(db, order) == []


async def test_a_command_for_an_unknown_order_is_not_found(ctx: Context) -> None:
    assert (await confirm_order(ctx, uuid.uuid4(), payment_id="p1")).outcome == "not_found"
    assert (await cancel_order(ctx, uuid.uuid4(), USER)).outcome == "not_found"


# Cancel.

@pytest.mark.parametrize("reason", [USER, FAILED, EXPIRED])
async def test_a_cancel_of_a_pending_order_applies_for_every_reason(
        ctx: Context, db: FakeSettlement, store: Store, reason: CancelReason) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    result = await cancel_order(ctx, order, reason)
    assert (result.outcome, result.status) == ("applied", OrderStatus.CANCELLED)
    assert db.tables.orders[order].cancel_reason == reason
    [cancelled] = [e for e in db.tables.outbox if e.type == "OrderCancelled"]
    assert cancelled.reason == reason


async def test_a_cancel_of_a_confirmed_order_changes_nothing(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    await confirm_order(ctx, order, payment_id="p1")
    assert (await cancel_order(ctx, order, FAILED)).outcome == "no_change"
    assert await _stock(store) == 4


@pytest.mark.parametrize("reason", [USER, FAILED, EXPIRED])
async def test_an_order_paid_in_time_is_never_cancelled(
        ctx: Context, db: FakeSettlement, store: Store, reason: CancelReason) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    receipt = await record_payment(ctx, PaymentCallback("p1", order, "succeeded", 700))
    assert receipt.outcome == "accepted" and db.tables.orders[order].paid_at is not None
    result = await cancel_order(ctx, order, reason)
    assert (result.outcome, result.status) == ("no_change", OrderStatus.PENDING)
    await confirm_order(ctx, order, payment_id="p1", amount=700)
    assert _state(db, order) == (OrderStatus.CONFIRMED, "p1") and _refunds(db, order) == []


async def test_the_sweeper_expires_due_unpaid_orders_and_never_one_paid_in_time(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    deal_id = await _live_deal(db, store)
    due = await _reserved(db, store, deal_id, expires_in=PAST)
    not_due = await _reserved(db, store, deal_id)
    paid = db.add_order(PRODUCT, deal_id, expires_in=PAST, paid=True)  # worker lagging
    assert await db.claim_due_orders(10) == [due]
    assert await expire_due_orders(ctx, 10) == 1
    assert db.tables.orders[due].cancel_reason == EXPIRED
    assert {_state(db, o)[0] for o in (not_due, paid)} == {OrderStatus.PENDING}
    assert store.released == [[(PRODUCT, due)]] and await _stock(store) == 4


async def test_a_payment_after_the_reservation_expired_is_not_in_time_and_gets_refunded(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store), expires_in=PAST)
    assert (await record_payment(ctx, PaymentCallback("p1", order, "succeeded", 700))
            ).outcome == "accepted"
    assert db.tables.orders[order].paid_at is None  # too late to be paid in time
    assert await expire_due_orders(ctx, 10) == 1
    await confirm_order(ctx, order, payment_id="p1", amount=700)
    assert _refunds(db, order) == [("p1", "order_cancelled")]


# Giving the units back, exactly once.

async def test_a_cancel_on_a_live_redis_deal_gives_the_units_back_to_redis_after_commit(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    deal_id = await _live_deal(db, store)
    order = await _reserved(db, store, deal_id)
    await cancel_order(ctx, order, USER)
    assert await _stock(store) == 5 and store.released == [[(PRODUCT, order)]]
    assert db.tables.product_stock[PRODUCT] == 0
    assert (db.tables.deals[deal_id].returned_stock,
            db.tables.deals[deal_id].remaining_stock) == (0, 0)


@pytest.mark.parametrize(("status", "backend", "released_to", "product", "returned",
                          "remaining"), [
    (DealStatus.ENDED, StockBackend.REDIS, "deferred", 0, 0, 0),   # the flush counts it
    (DealStatus.RECONCILED, StockBackend.REDIS, "db", 2, 2, 0),    # flushed: the product's
    (DealStatus.ACTIVE, StockBackend.DB, "db", 0, 0, 2),           # the db design's hot row
])
async def test_a_cancel_gives_the_units_back_where_its_deal_keeps_them(
        ctx: Context, db: FakeSettlement, store: Store, status: DealStatus,
        backend: StockBackend, released_to: str, product: int, returned: int,
        remaining: int) -> None:
    deal_id = db.add_deal(status, backend)
    order = db.add_order(PRODUCT, deal_id, quantity=2)
    await cancel_order(ctx, order, USER)
    [cancelled] = [e for e in db.tables.outbox if e.type == "OrderCancelled"]
    assert cancelled.stock_released_to == released_to
    deal = db.tables.deals[deal_id]
    assert (db.tables.product_stock[PRODUCT], deal.returned_stock, deal.remaining_stock) \
        == (product, returned, remaining)
    assert store.released == []


async def test_a_cancel_of_an_order_without_a_deal_gives_its_units_to_the_product(
        ctx: Context, db: FakeSettlement) -> None:
    order = db.add_order(PRODUCT, None, quantity=3)
    await cancel_order(ctx, order, USER)
    assert db.tables.product_stock[PRODUCT] == 3 and db.fenced == []


async def test_a_redelivered_cancel_releases_again_and_gives_back_nothing_twice(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    event = uuid.uuid4()
    await cancel_order(ctx, order, USER, event_id=event)
    again = await cancel_order(ctx, order, USER, event_id=event)
    assert again.outcome == "already_processed"
    assert store.released == [[(PRODUCT, order)], [(PRODUCT, order)]]
    assert await _stock(store) == 5 and db.event_types(order) == ["OrderCancelled"]


async def test_a_release_lost_after_the_commit_is_made_good_by_the_redelivery(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    event, store.fail_releases = uuid.uuid4(), 1
    with pytest.raises(ConnectionError):
        await cancel_order(ctx, order, FAILED, event_id=event)
    assert _state(db, order)[0] == OrderStatus.CANCELLED and await _stock(store) == 4
    assert (await cancel_order(ctx, order, FAILED, event_id=event)).outcome \
        == "already_processed"
    assert await _stock(store) == 5


async def test_a_failed_commit_applies_nothing_and_releases_nothing(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    event, db.fail_commits = uuid.uuid4(), 1
    with pytest.raises(CommitFailed):
        await cancel_order(ctx, order, USER, event_id=event)
    assert _state(db, order)[0] == OrderStatus.PENDING and db.tables.outbox == []
    assert store.released == [] and await _stock(store) == 4
    assert (await cancel_order(ctx, order, USER, event_id=event)).outcome == "applied"
    assert await _stock(store) == 5


# The deal fence and the epoch.

async def test_only_cancellations_share_the_deal_fence_in_deal_id_order(
        ctx: Context, db: FakeSettlement) -> None:
    high, low, other = (db.add_deal(deal_id=d) for d in (9, 3, 5))
    confirmed = db.add_order(PRODUCT, other)
    await settle_batch(ctx, [Confirm(confirmed, "p1")])
    assert db.fenced == []
    await settle_batch(ctx, [Cancel(db.add_order(PRODUCT, high), USER),
                             Confirm(db.add_order(PRODUCT, other), "p2"),
                             Cancel(db.add_order(PRODUCT, low), USER)])
    assert db.fenced == [[low, high]]


async def test_a_release_into_a_redis_state_being_rebuilt_is_deferred_without_failing(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    deal_id = await _live_deal(db, store)
    order = await _reserved(db, store, deal_id)
    assert await store.drop(PRODUCT, deal_id)  # the rebuild counts it from Postgres
    result = await cancel_order(ctx, order, USER)
    assert result.outcome == "applied" and _state(db, order)[0] == OrderStatus.CANCELLED
    assert store.released == [[(PRODUCT, order)]]


async def test_a_redelivered_cancel_after_a_rebuild_gives_nothing_back_twice(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    deal_id = await _live_deal(db, store)
    order = await _reserved(db, store, deal_id)
    event = uuid.uuid4()
    await cancel_order(ctx, order, USER, event_id=event)
    # A rebuild at a new epoch from Postgres: the cancelled order's unit is on sale again.
    assert await store.rebuild(PRODUCT, RebuiltState(deal_id, 5, 5, 2, 700, {}, [], {}))
    await cancel_order(ctx, order, USER, event_id=event)
    assert await _stock(store) == 5


# Each event applied once.

async def test_a_redelivered_batch_applies_nothing_twice(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    deal_id = await _live_deal(db, store)
    paid, cancelled = [await _reserved(db, store, deal_id) for _ in range(2)]
    batch: list[Command] = [Confirm(paid, "p1", 700, uuid.uuid4()),
                            Cancel(cancelled, FAILED, uuid.uuid4())]
    assert {r.outcome for r in await settle_batch(ctx, batch)} == {"applied"}
    outbox = list(db.tables.outbox)
    assert {r.outcome for r in await settle_batch(ctx, batch)} == {"already_processed"}
    assert db.tables.outbox == outbox and await _stock(store) == 4


async def test_an_event_twice_in_one_batch_counts_once(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    event = uuid.uuid4()
    results = await settle_batch(ctx, [Cancel(order, FAILED, event), Cancel(order, FAILED, event)])
    assert [r.outcome for r in results] == ["applied", "already_processed"]
    assert db.event_types(order) == ["OrderCancelled"] and await _stock(store) == 5


async def test_the_events_of_one_order_apply_in_order_within_one_batch(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    results = await settle_batch(ctx, [Cancel(order, USER, uuid.uuid4()),
                                       Confirm(order, "p1", 700, uuid.uuid4())])
    assert [(r.outcome, r.status) for r in results] == [
        ("applied", OrderStatus.CANCELLED), ("no_change", OrderStatus.CANCELLED)]
    assert db.event_types(order) == ["OrderCancelled", "RefundRequested"]
    assert db.commits == 1


async def test_an_event_seen_by_one_consumer_is_new_to_another(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    event = uuid.uuid4()
    await confirm_order(ctx, order, payment_id="p1", event_id=event, consumer="a")
    other = await confirm_order(ctx, order, payment_id="p1", event_id=event, consumer="b")
    assert other.outcome == "no_change"


# Recording payments.

async def test_a_first_payment_fact_is_accepted_and_published(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    receipt = await record_payment(ctx, PaymentCallback("p1", order, "succeeded", 700))
    assert (receipt.outcome, receipt.duplicate) == ("accepted", False)
    assert db.event_types(order) == ["PaymentSucceeded"]
    replay = await record_payment(ctx, PaymentCallback("p1", order, "succeeded", 700))
    assert (replay.outcome, replay.duplicate) == ("accepted", True)
    assert db.event_types(order) == ["PaymentSucceeded"]


async def test_one_payment_id_failed_then_succeeded_is_two_facts(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    failed = await record_payment(ctx, PaymentCallback("p1", order, "failed", 700))
    paid = await record_payment(ctx, PaymentCallback("p1", order, "succeeded", 700))
    assert (failed.duplicate, paid.duplicate) == (False, False)
    assert db.event_types(order) == ["PaymentFailed", "PaymentSucceeded"]
    assert db.tables.orders[order].paid_at is not None


async def test_a_payment_of_the_wrong_amount_is_refunded_and_the_order_keeps_its_fate(
        ctx: Context, db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    receipt = await record_payment(ctx, PaymentCallback("p1", order, "succeeded", 1))
    assert receipt.outcome == "amount_mismatch"
    assert _refunds(db, order) == [("p1", "amount_mismatch")]
    assert db.event_types(order) == ["RefundRequested"]
    assert db.tables.orders[order].paid_at is None and _state(db, order)[0] == "PENDING"


async def test_a_payment_for_no_known_order_is_refunded_only_if_money_was_taken(
        ctx: Context, db: FakeSettlement) -> None:
    missing = uuid.uuid4()
    taken = await record_payment(ctx, PaymentCallback("p1", missing, "succeeded", 9))
    declined = await record_payment(ctx, PaymentCallback("p2", missing, "failed", 9))
    assert (taken.outcome, declined.outcome) == ("order_not_found", "order_not_found")
    assert db.event_types(missing) == ["RefundRequested"]


async def test_a_payment_batch_judges_a_replay_inside_it_as_a_duplicate(
        db: FakeSettlement, store: Store) -> None:
    order = await _reserved(db, store, await _live_deal(db, store))
    handed: list[object] = []
    first, replay = await record_payments(db, [
        PaymentCallback("p1", order, "succeeded", 700, {"traceparent": "t"}),
        PaymentCallback("p1", order, "succeeded", 700)], handed.extend)
    assert (first.duplicate, replay.duplicate) == (False, True)  # type: ignore[union-attr]
    assert [(r.key, r.headers) for r in handed] == [  # type: ignore[attr-defined]
        (str(order), {"traceparent": "t"})]
