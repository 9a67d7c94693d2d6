"""The swarm's verification helpers and CPU accounting (pure functions; no services)."""

from __future__ import annotations

from devtools.swarm import (
    Snapshot,
    check_audit,
    check_kafka_counts,
    check_limits,
    check_oversell,
    check_persisted,
    cpu_seconds,
)

IDS = ["a1", "b2", "c3"]


def test_kafka_counts_pass_when_every_accepted_order_was_placed_exactly_once() -> None:
    check = check_kafka_counts(IDS, {"a1": 1, "b2": 1, "c3": 1, "other": 4})
    assert check.ok
    assert check.data == {"exactly_once": 3, "missing": 0, "duplicated": 0}


def test_kafka_counts_report_missing_and_duplicated_orders() -> None:
    check = check_kafka_counts(IDS, {"a1": 1, "b2": 2})
    assert not check.ok
    assert check.data == {"exactly_once": 1, "missing": 1, "duplicated": 1}
    assert "1 missing, 1 duplicated" in check.detail


def test_kafka_counts_of_no_accepted_order_pass() -> None:
    assert check_kafka_counts([], {}).ok


def test_limits_pass_when_nobody_holds_more_than_the_limit() -> None:
    check = check_limits([("buyer-1", 2), ("buyer-2", 1)], limit=2)
    assert check.ok and check.data == {"buyers": 2, "over": 0}


def test_limits_name_the_buyers_over_the_limit() -> None:
    check = check_limits([("buyer-1", 3), ("buyer-2", 1), ("buyer-3", 5)], limit=2)
    assert not check.ok and check.data["over"] == 2
    assert "buyer-1=3" in check.detail and "buyer-3=5" in check.detail


def test_oversell_allows_selling_everything_but_not_one_unit_more() -> None:
    assert check_oversell(100, 100).ok
    assert not check_oversell(101, 100).ok


def test_persisted_lists_accepted_ids_missing_from_postgres() -> None:
    assert check_persisted(IDS, {*IDS, "extra"}).ok
    check = check_persisted(IDS, {"a1"})
    assert not check.ok and check.data == {"accepted": 3, "missing": 2}
    assert "b2" in check.detail


def _audit(**changes: object) -> dict[str, object]:
    base = {"initial": 10, "on_sale": 7, "pending": 2, "confirmed": 1, "in_flight": 0,
            "status": "RECONCILED", "balanced": True}
    return {**base, **changes}


def test_audit_must_balance_after_reconciliation() -> None:
    assert check_audit(_audit()).ok
    assert not check_audit(_audit(balanced=False)).ok
    assert not check_audit(_audit(status="ENDED")).ok


def test_cpu_of_a_process_that_ended_counts_through_its_parent_once() -> None:
    parent, child, newborn = (1, 0.0), (2, 0.0), (3, 5.0)
    before: Snapshot = {"x": {parent: 10.0, child: 4.0}, "gone": {(9, 0.0): 1.0}}
    # The child ended with 6 s and was reaped: the parent's children time grew by 6 s.
    after: Snapshot = {"x": {parent: 10.0 + 1.0 + 6.0, newborn: 0.5}, "gone": None}
    seconds = cpu_seconds(before, after)
    assert seconds["x"] == 1.0 + (6.0 - 4.0) + 0.5
    assert seconds["gone"] is None
