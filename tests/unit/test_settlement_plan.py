"""The settlement's decisions, branch by branch, in memory (no Postgres, no Redis): what a
batch makes of each order before it writes anything (hotdeal_core/usecases/settlement_plan)."""

from __future__ import annotations

from uuid import uuid4

from hotdeal_core.domain import CancelReason, DealStatus, OrderStatus, StockBackend
from hotdeal_core.usecases.settlement_plan import (
    Cancel,
    Confirm,
    DealState,
    LockedOrder,
    Plan,
    apply_command,
)
from schemas.events import OrderCancelled, OrderConfirmed, RefundRequested

DEAL, PRODUCT = 7, 42


def _order(status: OrderStatus = OrderStatus.PENDING, *, deal: int | None = DEAL,
           payment_id: str | None = None, paid: bool = False) -> LockedOrder:
    return LockedOrder(uuid4(), PRODUCT, deal, "buyer-1", 2, status, payment_id, paid)


def _deals(status: DealStatus = DealStatus.ACTIVE,
           backend: StockBackend = StockBackend.REDIS) -> dict[int, DealState]:
    return {DEAL: DealState(DEAL, status, backend)}


def test_a_payment_confirms_a_pending_order_and_only_its_reservation_record_goes() -> None:
    plan, order = Plan(), _order()
    result = apply_command(plan, Confirm(order.id, "pay-1", 200), order, _deals())
    assert (result.outcome, result.status) == ("applied", OrderStatus.CONFIRMED)
    assert (order.status, order.payment_id) == (OrderStatus.CONFIRMED, "pay-1")
    assert plan.forget == {order.id: PRODUCT} and not plan.release
    assert [type(e) for e in plan.events] == [OrderConfirmed]


def test_the_same_payment_again_changes_nothing_and_refunds_nothing() -> None:
    plan, order = Plan(), _order(OrderStatus.CONFIRMED, payment_id="pay-1")
    result = apply_command(plan, Confirm(order.id, "pay-1", 200), order, _deals())
    assert result.outcome == "no_change" and plan.events == []


def test_a_second_payment_of_a_confirmed_order_is_refunded() -> None:
    plan, order = Plan(), _order(OrderStatus.CONFIRMED, payment_id="pay-1")
    apply_command(plan, Confirm(order.id, "pay-2", 200), order, _deals())
    [refund] = plan.events
    assert isinstance(refund, RefundRequested)
    assert (refund.payment_id, refund.reason, refund.amount) == ("pay-2", "duplicate_payment", 200)


def test_a_payment_after_an_admin_confirm_becomes_the_orders_payment() -> None:
    plan, order = Plan(), _order(OrderStatus.CONFIRMED, payment_id=None)
    apply_command(plan, Confirm(order.id, "pay-1", 200), order, _deals())
    assert order.payment_id == "pay-1" and plan.events == []


def test_a_payment_of_a_cancelled_order_is_refunded() -> None:
    plan, order = Plan(), _order(OrderStatus.CANCELLED)
    apply_command(plan, Confirm(order.id, "pay-1", 200), order, _deals())
    [refund] = plan.events
    assert isinstance(refund, RefundRequested) and refund.reason == "order_cancelled"


def test_an_admin_confirm_of_a_cancelled_order_refunds_nothing() -> None:
    plan, order = Plan(), _order(OrderStatus.CANCELLED)
    result = apply_command(plan, Confirm(order.id, None), order, _deals())
    assert result.outcome == "no_change" and plan.events == []


def test_a_cancel_on_an_active_redis_deal_releases_to_redis_after_the_commit() -> None:
    plan, order = Plan(), _order()
    result = apply_command(plan, Cancel(order.id, CancelReason.PAYMENT_FAILED), order, _deals())
    assert (result.outcome, order.status) == ("applied", OrderStatus.CANCELLED)
    assert plan.release == {order.id: PRODUCT} and not plan.product_units
    [event] = plan.events
    assert isinstance(event, OrderCancelled) and event.stock_released_to == "redis"


def test_a_cancel_on_an_ended_redis_deal_leaves_the_units_to_the_flush() -> None:
    plan, order = Plan(), _order()
    apply_command(plan, Cancel(order.id, CancelReason.USER_CANCELLED), order,
                  _deals(DealStatus.ENDED))
    assert not plan.release and not plan.product_units
    assert plan.events[0].stock_released_to == "deferred"  # type: ignore[union-attr]


def test_a_cancel_after_reconciliation_gives_the_units_to_the_product() -> None:
    plan, order = Plan(), _order()
    apply_command(plan, Cancel(order.id, CancelReason.EXPIRED), order,
                  _deals(DealStatus.RECONCILED))
    assert plan.product_units == {PRODUCT: 2} and plan.returned_units == {DEAL: 2}


def test_a_cancel_on_a_db_deal_puts_the_units_back_on_its_hot_row() -> None:
    plan, order = Plan(), _order()
    apply_command(plan, Cancel(order.id, CancelReason.EXPIRED), order,
                  _deals(backend=StockBackend.DB))
    assert plan.remaining_units == {DEAL: 2} and not plan.product_units


def test_a_cancel_of_an_ordinary_order_gives_the_units_to_the_product() -> None:
    plan, order = Plan(), _order(deal=None)
    apply_command(plan, Cancel(order.id, CancelReason.USER_CANCELLED), order, {})
    assert plan.product_units == {PRODUCT: 2}


def test_an_order_paid_in_time_is_never_cancelled_whatever_the_reason() -> None:
    """A declined attempt applied late, the expiry, the buyer's cancel: the accepted payment
    decides the order (issue 17, item 1)."""
    for reason in CancelReason:
        plan, order = Plan(), _order(paid=True)
        result = apply_command(plan, Cancel(order.id, reason), order, _deals())
        assert (result.outcome, order.status) == ("no_change", OrderStatus.PENDING), reason
        assert plan.events == [] and not plan.release


def test_a_declined_attempt_then_a_payment_in_time_confirms_without_refund() -> None:
    """The worker applies p1's failure and p2's success in one batch, in offset order."""
    plan, order = Plan(), _order(paid=True)
    apply_command(plan, Cancel(order.id, CancelReason.PAYMENT_FAILED), order, _deals())
    result = apply_command(plan, Confirm(order.id, "pay-2", 200), order, _deals())
    assert (result.outcome, order.status) == ("applied", OrderStatus.CONFIRMED)
    assert [type(e) for e in plan.events] == [OrderConfirmed]


def test_an_unpaid_order_is_cancelled_by_a_declined_payment() -> None:
    plan, order = Plan(), _order(paid=False)
    result = apply_command(plan, Cancel(order.id, CancelReason.PAYMENT_FAILED), order, _deals())
    assert (result.outcome, order.status) == ("applied", OrderStatus.CANCELLED)


def test_a_final_status_never_changes_and_an_unknown_order_is_not_found() -> None:
    for status in (OrderStatus.CONFIRMED, OrderStatus.CANCELLED):
        plan, order = Plan(), _order(status)
        result = apply_command(plan, Cancel(order.id, CancelReason.USER_CANCELLED), order,
                               _deals())
        assert (result.outcome, order.status) == ("no_change", status)
    assert apply_command(Plan(), Cancel(uuid4(), CancelReason.EXPIRED), None,
                         _deals()).outcome == "not_found"


def test_commands_of_one_order_see_each_others_effect() -> None:
    """A payment then a late expiry in one batch: the expiry finds a CONFIRMED order."""
    plan, order = Plan(), _order()
    apply_command(plan, Confirm(order.id, "pay-1", 200), order, _deals())
    late = apply_command(plan, Cancel(order.id, CancelReason.EXPIRED), order, _deals())
    assert late.outcome == "no_change" and order.status == OrderStatus.CONFIRMED
