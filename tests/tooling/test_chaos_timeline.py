"""The chaos report's arithmetic: what counts as failed, windows, gaps, forbidden answers."""

from __future__ import annotations

from devtools.chaos.checks import check_clients
from devtools.chaos.cluster import _owner
from devtools.chaos.load import Attempt, Ledger
from devtools.chaos.timeline import (
    FaultRun,
    first_accept_after,
    longest_gap,
    run_figures,
    split_keys,
    unexpected_errors,
    window_figures,
)


def _a(sent: float, status: int, code: str | None = None, kind: str = "order",
       retry_after: str | None = None) -> Attempt:
    return Attempt(kind, sent, 0.01, status, code, retry_after)


def test_the_window_counts_only_the_unsettled_attempts_sent_inside_it() -> None:
    f = FaultRun("Postgres", "postgres", "crash", "scripts/infra.sh up", kill_at=10.0,
                 answered_at=12.0, accepting_at=12.5, window_end=12.5)
    attempts = [_a(9.9, 0, "ConnectError"),  # before the kill: not counted
                _a(10.1, 503, "postgres_unavailable", retry_after="1"),
                _a(10.2, 0, "ConnectError", kind="payment"),
                _a(10.3, 409, "idempotency_in_progress"),
                _a(10.4, 409, "sold_out"),  # an answer, not a failure
                _a(12.5, 202), _a(12.6, 503, "postgres_unavailable", retry_after="1")]
    fig = window_figures(f, attempts, [9.0, 12.5])
    assert fig["attempts"] == 5 and fig["failed"] == 3
    assert (fig["failed_orders"], fig["failed_payments"]) == (2, 1)
    assert fig["failed_by_reason"] == {"503 postgres_unavailable": 1,
                                       "no response (ConnectError)": 1,
                                       "409 idempotency_in_progress": 1}
    assert (fig["answered_after_s"], fig["accepting_after_s"]) == (2.0, 2.5)
    assert fig["longest_gap_without_202_s"] == 2.5


def test_the_first_accept_after_a_kill_ignores_earlier_ones() -> None:
    assert first_accept_after([1.0, 5.0, 3.0], 2.0) == 3.0
    assert first_accept_after([1.0], 2.0) is None


def test_the_longest_gap_spans_the_window_edges() -> None:
    assert longest_gap([2.0, 3.0], 0.0, 10.0) == 7.0
    assert longest_gap([], 1.0, 4.0) == 3.0


def test_a_500_or_a_503_without_retry_after_is_never_allowed() -> None:
    bad = unexpected_errors([_a(1, 500, "internal"), _a(2, 503, "redis_unavailable"),
                             _a(3, 503, "redis_unavailable", retry_after="1"), _a(4, 202)])
    assert bad == {"order 500 internal": 1, "order 503 without Retry-After": 1}


def test_a_key_answered_with_two_order_ids_fails_the_clients_check() -> None:
    ledger = Ledger()
    ledger.key_orders = {"k1": {"a"}, "k2": {"b", "c"}}
    assert split_keys(ledger.key_orders) == ["k2"]
    checks = {c.name: c for c in check_clients(ledger)}
    assert not checks["one order per idempotency key (client side)"].ok
    assert checks["no 500 at any time (and every 503 has Retry-After)"].ok
    ledger.given_up.append("order k3")
    assert not {c.name: c for c in check_clients(ledger)}[
        "every request answered in the end"].ok


def test_the_whole_run_share_counts_every_unsettled_attempt_of_the_run() -> None:
    attempts = [_a(1.0, 202), _a(2.0, 503, "redis_unavailable", retry_after="1"),
                _a(3.0, 0, "ConnectError", kind="payment"), _a(4.0, 200, kind="payment"),
                _a(5.0, 409, "sold_out"), _a(6.0, 503, "redis_unavailable", retry_after="1"),
                _a(7.0, 202), _a(8.0, 202)]
    fig = run_figures(attempts)
    assert (fig["attempts"], fig["failed"], fig["failed_share"]) == (8, 3, 0.375)
    assert (fig["failed_orders"], fig["failed_payments"]) == (2, 1)
    assert fig["failed_by_reason"] == {"503 redis_unavailable": 2,
                                       "no response (ConnectError)": 1}
    assert run_figures([])["failed_share"] == 0.0


def test_the_cluster_run_finds_the_master_serving_a_slot_and_whether_it_failed() -> None:
    nodes = ("a1 127.0.0.1:26201@16201 master - 0 0 1 connected 0-5460\n"
             "b2 127.0.0.1:26202@16202 master,fail - 0 0 2 connected 5461-10922\n"
             "c3 127.0.0.1:26203@16203 myself,master - 0 0 3 connected 10923-16383\n"
             "d4 127.0.0.1:26204@16204 slave a1 0 0 1 connected\n")
    assert _owner(nodes, 0) == (26201, False)
    assert _owner(nodes, 7000) == (26202, True)
    assert _owner(nodes, 16383) == (26203, False)
    assert _owner("d4 127.0.0.1:26204@16204 slave a1 0 0 1 connected\n", 5) is None


def test_orders_are_accepted_again_when_the_first_202_sent_after_the_kill_is_answered() -> None:
    f = FaultRun("Redis master", "redis-master", "SIGKILL", "scripts/cluster/redis.sh up",
                 kill_at=10.0, accepting_at=10.5, window_end=20.0)
    held = Attempt("order", 10.5, 6.0, 202, None, None)  # waited in the API for the promotion
    quick = Attempt("order", 15.0, 0.2, 202, None, None)
    before = Attempt("order", 9.0, 3.0, 202, None, None)  # sent before the kill: not counted
    fig = window_figures(f, [before, held, quick], [9.0, 10.5, 15.0])
    assert fig["accepting_after_s"] == 0.5
    assert fig["first_202_answered_after_s"] == 5.2
