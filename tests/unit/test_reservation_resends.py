"""A reservation that never reached Redis (NotSent: a Cluster failover) is sent again for a
bounded time; any other failure, and one past the bound, goes to the buyer at once."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

import pytest

from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.stock.port import NotSent, ReserveOutcome, ReserveRequest, ReserveResult
from hotdeal_core.stock.reserver import ReserveItem, reservation_batcher


class FlakyStore:
    """reserve_groups fails with `errors` in turn, then reserves."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    async def reserve_groups(self, groups: Sequence[tuple[int, list[ReserveRequest]]]
                             ) -> list[list[ReserveResult] | BaseException]:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return [[ReserveResult(ReserveOutcome.RESERVED, 1, 9, 7, 100) for _ in requests]
                for _, requests in groups]


def _item() -> ReserveItem:
    return ReserveItem(1, ReserveRequest(uuid4(), "buyer-1", 1, None))


async def test_a_reservation_that_never_reached_redis_is_sent_again_until_it_runs() -> None:
    store = FlakyStore(NotSent("refused"), NotSent("MOVED"))
    batcher = reservation_batcher(store, 10, failover_wait_s=5)  # type: ignore[arg-type]
    batcher.resend_pause_s = 0.001
    batcher.start()  # as in the order API: through the running batcher
    try:
        result = await batcher.submit(_item())
    finally:
        await batcher.stop()
    assert result.outcome is ReserveOutcome.RESERVED and store.calls == 3


async def test_the_buyer_gets_the_503_once_the_failover_wait_is_spent() -> None:
    store = FlakyStore(*[NotSent("refused")] * 1000)
    batcher = reservation_batcher(store, 10, failover_wait_s=0.02)  # type: ignore[arg-type]
    batcher.resend_pause_s = 0.005
    with pytest.raises(NotSent):
        await batcher.submit(_item())
    assert 2 <= store.calls < 1000


async def test_a_reservation_that_may_have_run_is_never_sent_again() -> None:
    store = FlakyStore(DependencyUnavailable("redis", "connection reset mid-reply"))
    batcher = reservation_batcher(store, 10, failover_wait_s=5)  # type: ignore[arg-type]
    batcher.resend_pause_s = 0.001
    with pytest.raises(DependencyUnavailable) as caught:
        await batcher.submit(_item())
    assert not isinstance(caught.value, NotSent) and store.calls == 1


async def test_without_a_failover_wait_not_sent_is_answered_at_once() -> None:
    store = FlakyStore(NotSent("refused"))
    batcher = reservation_batcher(store, 10)  # type: ignore[arg-type]
    with pytest.raises(NotSent):
        await batcher.submit(_item())
    assert store.calls == 1
