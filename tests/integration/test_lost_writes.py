"""Redis state that lost writes (a failover to a replica that had not received them) is
found and rebuilt from Postgres; a healthy one never is, and a reservation no replica
acknowledged is given back before the buyer hears of it. Real Postgres and Redis (a single
node or, under `make test-cluster`, the Redis Cluster)."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis, RedisCluster

from hotdeal_core.domain import CancelReason
from hotdeal_core.errors import DependencyUnavailable
from hotdeal_core.stock.client import ReplicaAckTimeout
from hotdeal_core.stock.port import ReserveOutcome, ReserveRequest
from hotdeal_core.stock.redis_store import (
    IDEM,
    RES,
    SINCE,
    STATE,
    STOCK,
    USERS,
    RedisStockStore,
    deal_keys,
)
from hotdeal_core.usecases.context import Context
from hotdeal_core.usecases.deals import StartDeal, start_deal
from hotdeal_core.usecases.orders import PlaceOrder, place_order
from hotdeal_core.usecases.recovery import RecoverReport, recover_lost_states
from hotdeal_core.usecases.settlement import cancel_order
from tests.conftest import ProductFactory
from tests.random_refs import random_user
from tests.redis_nodes import owners


async def _deal(ctx: Context, new_product: ProductFactory, stock: int) -> tuple[int, int]:
    pid = await new_product(stock=stock, price=700)
    started = await start_deal(ctx, StartDeal(pid, stock, 1))
    return pid, started.deal_id


async def _lose_reservation(redis: Redis, pid: int, order_id: uuid.UUID, user: str) -> None:
    """Undo one reservation in Redis, as a promoted replica that never received it."""
    keys = deal_keys(pid)
    assert await redis.hdel(keys[RES], str(order_id)) == 1
    await redis.zrem(keys[SINCE], str(order_id))
    await redis.hincrby(keys[USERS], user, -1)
    await redis.incrby(keys[STOCK], 1)


def _mine(reports: list[RecoverReport], deal_id: int) -> list[RecoverReport]:
    return [r for r in reports if r.deal_id == deal_id]  # other tests' deals live here too


async def test_a_deal_whose_reservations_were_lost_is_rebuilt_from_postgres(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    pid, deal_id = await _deal(ctx, new_product, 10)
    buyers = [random_user() for _ in range(3)]
    placed = [await place_order(ctx, PlaceOrder(pid, b, 1)) for b in buyers]
    await _lose_reservation(redis, pid, placed[0].id, buyers[0])
    assert (await ctx.stock.peek(pid)).stock == 8  # one unit offered twice

    [report] = _mine(await recover_lost_states(ctx), deal_id)
    assert "reservations lost" in report.reason
    snap = await ctx.stock.snapshot(pid)
    assert snap.stock == 7 and snap.epoch == report.epoch
    assert {r.order_id for r in snap.reservations} == {o.id for o in placed}
    assert _mine(await recover_lost_states(ctx), deal_id) == []  # rebuilt once, then healthy


async def test_a_deal_whose_rebuild_was_lost_is_rebuilt_again(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    pid, deal_id = await _deal(ctx, new_product, 5)
    epoch = (await ctx.stock.peek(pid)).epoch
    await redis.hset(deal_keys(pid)[STATE], "epoch", epoch - 1)  # the state before a rebuild

    [report] = _mine(await recover_lost_states(ctx), deal_id)
    assert report.reason.startswith("Redis state of epoch") and report.epoch == epoch + 1


async def test_a_healthy_deal_is_never_rebuilt_whatever_is_in_flight(
        ctx: Context, new_product: ProductFactory) -> None:
    """Reservations whose orders are not written yet, pending and cancelled orders: Redis
    offers less than Postgres leaves, never more, so nothing is rebuilt."""
    pid, deal_id = await _deal(ctx, new_product, 10)
    buyer = random_user()
    kept = await place_order(ctx, PlaceOrder(pid, buyer, 1))
    gone = await place_order(ctx, PlaceOrder(pid, random_user(), 1))
    await cancel_order(ctx, gone.id, CancelReason.USER_CANCELLED)
    in_flight_id = uuid.uuid4()
    in_flight = await ctx.stock.reserve(pid, in_flight_id, random_user(), 1, None)
    assert in_flight.outcome is ReserveOutcome.RESERVED
    epoch = (await ctx.stock.peek(pid)).epoch

    assert _mine(await recover_lost_states(ctx), deal_id) == []
    snap = await ctx.stock.snapshot(pid)
    assert snap.epoch == epoch and snap.stock == 8 and kept.id in {
        r.order_id for r in snap.reservations}
    await ctx.stock.release(pid, in_flight_id)  # no orphan left for the other tests' sweeps


async def test_a_reservation_no_replica_acknowledged_is_given_back(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    if isinstance(redis, RedisCluster):
        pytest.skip("every master of the test cluster has a replica that acknowledges")
    # A single Redis has no replica: WAIT 1 times out, as with a replica cut off.
    store = RedisStockStore(redis, replica_acks=20)
    pid, _ = await _deal(ctx, new_product, 5)
    requests = [ReserveRequest(uuid.uuid4(), random_user(), 1, "key-1"),
                ReserveRequest(uuid.uuid4(), random_user(), 1)]
    with pytest.raises(ReplicaAckTimeout) as refused:
        await store.reserve_many(pid, requests)
    assert refused.value.code == "redis_unavailable" and refused.value.retriable
    snap = await store.snapshot(pid)
    assert snap.stock == 5 and snap.reservations == []  # the units are back
    assert not await store.key_used(pid, requests[0].user_id, "key-1")  # a retry is served anew

    acked_ctx = Context(engine=ctx.engine, stock=store, settings=ctx.settings, topics=ctx.topics)
    with pytest.raises(DependencyUnavailable):  # the API's 503 + Retry-After
        await place_order(acked_ctx, PlaceOrder(pid, random_user(), 1))
    assert (await store.peek(pid)).stock == 5


async def test_an_acknowledged_reservation_is_on_the_replica(
        ctx: Context, redis: Redis, new_product: ProductFactory) -> None:
    if not isinstance(redis, RedisCluster):
        pytest.skip("needs the Redis Cluster (make test-cluster)")
    pid, _ = await _deal(ctx, new_product, 5)
    order = await place_order(ctx, PlaceOrder(pid, random_user(), 1, "key-1"))
    _, replica = await owners(redis, deal_keys(pid)[RES])
    direct = Redis(host=replica.host, port=int(replica.port))  # the replica itself
    try:
        await direct.execute_command("READONLY")  # else it answers MOVED to its master
        assert await direct.hexists(deal_keys(pid)[RES], str(order.id))
        assert await direct.hget(deal_keys(pid)[IDEM], f"{order.user_id}\tkey-1") == \
            str(order.id).encode()
    finally:
        await direct.aclose()
