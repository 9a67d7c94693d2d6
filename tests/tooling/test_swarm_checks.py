"""The swarm's verification helpers and CPU accounting (pure functions; no services)."""

from __future__ import annotations

from devtools.swarm.checks import (
    check_audit,
    check_kafka_counts,
    check_limits,
    check_oversell,
    check_persisted,
)
from devtools.swarm.cli import mode_env
from devtools.swarm.cpu import Snapshot, cpu_seconds

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


def test_oversell_detail_compares_the_units_sold_with_the_initial_stock() -> None:
    held = check_oversell(1_000, 1_000)
    assert held.detail == "1,000 units in PENDING+CONFIRMED orders <= initial 1,000"
    assert held.data == {"sold_units": 1_000, "initial": 1_000}
    oversold = check_oversell(1_001, 1_000)
    assert not oversold.ok and "1,001 units in PENDING+CONFIRMED orders > initial" in \
        oversold.detail


def test_limits_of_no_buyer_pass() -> None:
    check = check_limits([], limit=1)
    assert check.ok and check.data == {"buyers": 0, "over": 0}
    assert check.detail == "0 buyers, at most 0 units each (limit 1)"


def test_limits_at_the_limit_pass_and_name_the_top_holding() -> None:
    check = check_limits([("buyer-1", 2), ("buyer-2", 2)], limit=2)
    assert check.ok and check.detail == "2 buyers, at most 2 units each (limit 2)"


def test_limits_name_at_most_five_buyers_but_count_them_all() -> None:
    check = check_limits([(f"buyer-{i}", 2) for i in range(7)], limit=1)
    assert not check.ok and check.data == {"buyers": 7, "over": 7}
    assert check.detail.startswith("7 buyer(s) over the limit 1: ")
    assert check.detail.count("=2") == 5


def test_persisted_of_no_accepted_order_pass() -> None:
    check = check_persisted([], {"extra"})
    assert check.ok and check.data == {"accepted": 0, "missing": 0}


def test_persisted_detail_counts_the_orders_found_and_names_the_first_missing() -> None:
    assert check_persisted(IDS, IDS).detail == "3 of 3 accepted ids are orders"
    check = check_persisted(IDS, {"a1"})
    assert check.detail == "1 of 3 accepted ids are orders; missing e.g. b2, c3"


def test_kafka_counts_fail_on_a_duplicate_alone() -> None:
    check = check_kafka_counts(IDS, {"a1": 1, "b2": 1, "c3": 3})
    assert not check.ok and check.data == {"exactly_once": 2, "missing": 0, "duplicated": 1}


def test_kafka_counts_fail_on_a_missing_order_alone() -> None:
    check = check_kafka_counts(IDS, {"a1": 1, "b2": 1, "other": 1})
    assert not check.ok and check.data == {"exactly_once": 2, "missing": 1, "duplicated": 0}


def test_audit_detail_spells_out_the_balance_and_the_status() -> None:
    assert check_audit(_audit()).detail == "10 = 7 + 2 + 1 + 0 (RECONCILED)"
    unbalanced = check_audit(_audit(on_sale=8, balanced=False))
    assert not unbalanced.ok and unbalanced.detail == "10 = 8 + 2 + 1 + 0 (RECONCILED)"
    assert check_audit(_audit(status="ENDED")).detail.endswith("(ENDED)")


def test_cpu_of_a_component_first_seen_after_the_window_started_counts_whole() -> None:
    after: Snapshot = {"late": {(4, 0.0): 2.5}, "unread before": {(5, 0.0): 1.5}}
    seconds = cpu_seconds({"unread before": None}, after)
    assert seconds == {"late": 2.5, "unread before": 1.5}


def test_cpu_tells_a_reused_pid_from_the_process_that_ended() -> None:
    parent, old, reused = (1, 0.0), (5, 1.0), (5, 2.0)
    before: Snapshot = {"x": {parent: 10.0, old: 3.0}}
    # The old pid-5 process ended with 4 s (reaped: +4 s on the parent); a new one got its pid.
    after: Snapshot = {"x": {parent: 14.0, reused: 0.5}}
    assert cpu_seconds(before, after)["x"] == (4.0 - 3.0) + 0.5


def test_cpu_never_goes_negative_when_an_ended_process_was_reaped_out_of_sight() -> None:
    # A child that outlived its parent is reaped by init: its seconds never reach the tree.
    before: Snapshot = {"x": {(1, 0.0): 2.0, (2, 0.0): 5.0}}
    after: Snapshot = {"x": {(1, 0.0): 2.5}}
    assert cpu_seconds(before, after)["x"] == 0.0


def test_cpu_of_an_idle_component_is_zero() -> None:
    snap: Snapshot = {"x": {(1, 0.0): 3.0, (2, 0.0): 1.0}}
    assert cpu_seconds(snap, snap) == {"x": 0.0}


def test_db_mode_keeps_the_deal_stock_out_of_redis() -> None:
    assert mode_env("db") == {"HOTDEAL_STOCK_REDIS": "false"}
    assert mode_env("redis") == {"HOTDEAL_STOCK_REDIS": "true"}
