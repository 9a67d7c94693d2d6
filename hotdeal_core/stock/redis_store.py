"""Redis adapter of the stock store: every step is one Lua script on one deal's keys (one hash
tag, so one Cluster slot); calls for many deals are split by owning node
(`hotdeal_core.stock.client`). Outages are raised as `DependencyUnavailable`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from importlib.resources import files
from typing import Any
from uuid import UUID

from redis.commands.core import AsyncScript

from hotdeal_core.stock.client import (
    RedisClient,
    ReplicaAcks,
    ReplicaAckTimeout,
    ReplicaWatch,
    evalsha_on_owners,
)
from hotdeal_core.stock.port import (
    DealSnapshot,
    Drawn,
    DueReservations,
    RebuiltState,
    ReleaseOutcome,
    Reservation,
    ReserveOutcome,
    ReserveRequest,
    ReserveResult,
)
from hotdeal_core.stock.redis_errors import translated, translating

log = logging.getLogger(__name__)

STATE, STOCK, USERS, RES, IDEM, SINCE, ENTRIES, TICKETS, DRAWN = range(9)
# Buyers per call of draw.lua (Lua's unpack takes a few thousand values at most).
DRAWN_PER_CALL = 1000
# Orders per call of a *_many script: Redis runs one script at a time, so a call must stay
# short (500 releases take about a millisecond) for the buyers' reservations queued behind.
MANY_PER_CALL = 500


def deal_keys(product_id: int) -> list[str]:
    """state, stock, users, res, idem, since, entries, tickets, drawn: one hash tag per deal
    (one Redis Cluster slot)."""
    tag = f"hotdeal:{{{product_id}}}"
    return [f"{tag}:{name}" for name in ("state", "stock", "users", "res", "idem", "since",
                                         "entries", "tickets", "drawn")]


def _lua(name: str) -> str:
    return (files("hotdeal_core.stock") / "lua" / f"{name}.lua").read_text()


def _script(redis: RedisClient, name: str) -> AsyncScript:
    """A script, with `-- #include <name>` lines replaced by that file (one rule, one file)."""
    lines = [_lua(line.split()[-1]) if line.startswith("-- #include ") else line
             for line in _lua(name).splitlines()]
    return redis.register_script("\n".join(lines))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _reserve_result(code: Any, a: Any, b: Any, c: Any, d: Any) -> ReserveResult:
    outcome = ReserveOutcome(int(code))
    if outcome is ReserveOutcome.ENTERED:
        return ReserveResult(outcome, wait_ms=int(a), first_order_id=UUID(_text(b)))
    if outcome is ReserveOutcome.ALREADY_ENTERED:
        return ReserveResult(outcome, wait_ms=int(a))
    if outcome is ReserveOutcome.RESERVED:
        return ReserveResult(outcome, epoch=int(a), remaining=int(b), deal_id=int(c),
                             unit_price=int(d))
    if outcome is ReserveOutcome.DUPLICATE:
        return ReserveResult(outcome, first_order_id=UUID(_text(a)))
    if outcome is ReserveOutcome.SOLD_OUT:
        return ReserveResult(outcome, remaining=int(b))
    if outcome is ReserveOutcome.LIMIT_EXCEEDED:
        return ReserveResult(outcome, held=int(a), limit=int(b))
    return ReserveResult(outcome)


def _draw_answer(answer: Any) -> tuple[UUID, ReserveResult]:
    order_id, *result = _text(answer).split("\t")
    return UUID(order_id), _reserve_result(*result)


def parse_reservation(order_id: Any, record: Any) -> Reservation:
    user, qty, ms, idem = _text(record).split("\t", 3)
    return Reservation(UUID(_text(order_id)), user, int(qty), int(ms), idem)


class RedisStockStore:
    def __init__(self, redis: RedisClient, replica_acks: ReplicaAcks | int = 0) -> None:
        """`replica_acks`: when a reservation counts only once a replica holds it (see
        `reserve_groups`); an int: always, with that timeout (0: never)."""
        self._redis = redis
        self._acks = ReplicaWatch(redis, replica_acks if isinstance(replica_acks, ReplicaAcks)
                                  else ReplicaAcks(replica_acks))
        self._reserve = _script(redis, "reserve")
        self._drawn = _script(redis, "draw")
        self._release = _script(redis, "release")
        self._forget = _script(redis, "forget")
        self._release_many = _script(redis, "release_many")
        self._forget_many = _script(redis, "forget_many")
        self._open = _script(redis, "open")
        self._close = _script(redis, "close")
        self._snapshot = _script(redis, "snapshot")
        self._drop = _script(redis, "drop")
        self._rebuild = _script(redis, "rebuild")
        self._peek = _script(redis, "peek")
        self._due = _script(redis, "due")
        self._reschedule = _script(redis, "reschedule")

    @translating
    async def reserve(self, product_id: int, order_id: UUID, user_id: str, quantity: int,
                      idempotency_key: str | None) -> ReserveResult:
        request = ReserveRequest(order_id, user_id, quantity, idempotency_key)
        return (await self.reserve_many(product_id, [request]))[0]

    @translating
    async def reserve_many(self, product_id: int, requests: list[ReserveRequest],
                           ) -> list[ReserveResult]:
        outcome = (await self.reserve_groups([(product_id, requests)]))[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @translating
    async def reserve_groups(self, groups: Sequence[tuple[int, list[ReserveRequest]]],
                             ) -> list[list[ReserveResult] | BaseException]:
        """One reserve script per deal, one round trip per node. With a replica ack timeout, a deal
        whose reservations no replica acknowledged in time has them released and gets
        `ReplicaAckTimeout` (a failover could lose them)."""
        calls: list[tuple[list[str], list[str | int]]] = []
        for product_id, requests in groups:
            args: list[str | int] = []
            for r in requests:
                # The draw ticket (used only in an opening window): the server's, at random.
                args += [str(r.order_id), r.user_id, r.quantity, r.idempotency_key or "",
                         secrets.randbits(52)]
            calls.append((deal_keys(product_id), args))
        ack_ms = await self._acks.wait_ms()
        replies = await evalsha_on_owners(self._redis, self._reserve, calls, ack_ms)
        outcomes: list[list[ReserveResult] | BaseException] = []
        unacked: list[tuple[int, UUID]] = []
        for (product_id, requests), reply in zip(groups, replies, strict=True):
            if isinstance(reply.reply, BaseException):
                outcomes.append(translated(reply.reply))
                continue
            flat = reply.reply
            results = [_reserve_result(*flat[i:i + 5]) for i in range(0, len(flat), 5)]
            if reply.acked:
                outcomes.append(results)
                continue
            unacked += [(product_id, r.order_id) for r, res in zip(requests, results, strict=True)
                        if res.outcome is ReserveOutcome.RESERVED]
            outcomes.append(ReplicaAckTimeout(ack_ms))
        if unacked:
            try:
                await self.release_many(unacked)
            except Exception as exc:  # noqa: BLE001 - the orphan sweep gives them back
                log.warning("%d unacknowledged reservations not released now (%s); left to "
                            "the orphan sweep", len(unacked), exc)
        return outcomes

    @translating
    async def drawn(self, product_id: int, buyers: Sequence[str]) -> Drawn:
        """With replica acks, answered only once a replica holds what the draw reserved."""
        keys, wait_ms = deal_keys(product_id), 0
        answers: dict[str, tuple[UUID, ReserveResult] | None] = {}
        ack_ms = await self._acks.wait_ms()
        for start in range(0, max(len(buyers), 1), DRAWN_PER_CALL):
            part: list[str | int] = list(buyers[start:start + DRAWN_PER_CALL])
            reply = (await evalsha_on_owners(self._redis, self._drawn, [(keys, part)],
                                             ack_ms))[0]
            if isinstance(reply.reply, BaseException):
                raise translated(reply.reply)
            if not reply.acked:  # what it reserved stays for the orphan sweep to judge
                raise ReplicaAckTimeout(ack_ms)
            wait_ms = int(reply.reply[0])
            if wait_ms > 0:
                return Drawn(wait_ms, {})
            for buyer, answer in zip(part, reply.reply[1:], strict=True):
                answers[str(buyer)] = None if not answer else _draw_answer(answer)
        return Drawn(0, answers)

    @translating
    async def key_used(self, product_id: int, user_id: str, key: str) -> bool:
        return bool(await self._redis.hexists(deal_keys(product_id)[IDEM], f"{user_id}\t{key}"))

    @translating
    async def release(self, product_id: int, order_id: UUID) -> ReleaseOutcome:
        keys = deal_keys(product_id)
        return ReleaseOutcome(int(await self._release(keys=keys, args=[str(order_id)])))

    @translating
    async def forget(self, product_id: int, order_id: UUID) -> bool:
        keys = deal_keys(product_id)
        return int(await self._forget(keys=[keys[RES], keys[SINCE]],
                                      args=[str(order_id)])) == 1

    @translating
    async def release_many(self, items: Sequence[tuple[int, UUID]]) -> list[ReleaseOutcome]:
        codes = await self._many(self._release_many, items, deal_keys)
        return [ReleaseOutcome(code) for code in codes]

    @translating
    async def forget_many(self, items: Sequence[tuple[int, UUID]]) -> list[bool]:
        def keys(product_id: int) -> list[str]:
            every = deal_keys(product_id)
            return [every[RES], every[SINCE]]
        return [code == 1 for code in await self._many(self._forget_many, items, keys)]

    async def _many(self, script: AsyncScript, items: Sequence[tuple[int, UUID]],
                    keys: Callable[[int], list[str]]) -> list[int]:
        """One script call per deal (and per MANY_PER_CALL orders), one round trip per node."""
        by_deal: dict[int, list[int]] = {}
        for position, (product_id, _) in enumerate(items):
            by_deal.setdefault(product_id, []).append(position)
        calls = [(product_id, positions[start:start + MANY_PER_CALL])
                 for product_id, positions in by_deal.items()
                 for start in range(0, len(positions), MANY_PER_CALL)]
        if not calls:
            return []
        replies = await evalsha_on_owners(self._redis, script, [
            (keys(product_id), [str(items[p][1]) for p in positions])
            for product_id, positions in calls], 0)
        codes = [0] * len(items)
        for (_, positions), reply in zip(calls, replies, strict=True):
            if isinstance(reply.reply, BaseException):
                raise translated(reply.reply)  # its cause is set when it is new
            for position, code in zip(positions, reply.reply, strict=True):
                codes[position] = int(code)
        return codes

    @translating
    async def open(self, product_id: int, deal_id: int, stock: int, per_user_limit: int,
                   epoch: int, unit_price: int, opening_window_ms: int = 0) -> bool:
        args = [deal_id, stock, per_user_limit, epoch, unit_price, opening_window_ms]
        return int(await self._open(keys=deal_keys(product_id), args=args)) == 1

    @translating
    async def close(self, product_id: int, deal_id: int) -> bool:
        state = deal_keys(product_id)[STATE]
        return int(await self._close(keys=[state], args=[deal_id])) == 1

    @translating
    async def snapshot(self, product_id: int) -> DealSnapshot:
        status, epoch, deal_id, stock, flat = await self._snapshot(
            keys=deal_keys(product_id)[:4], args=[])
        if not status:
            return DealSnapshot(None, 0, 0, 0)
        reservations = [parse_reservation(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return DealSnapshot(_text(status), int(epoch), int(deal_id), int(stock), reservations)

    @translating
    async def peek(self, product_id: int) -> DealSnapshot:
        status, epoch, deal_id, stock = await self._peek(keys=deal_keys(product_id)[:2], args=[])
        if not status:
            return DealSnapshot(None, 0, 0, 0)
        return DealSnapshot(_text(status), int(epoch), int(deal_id), int(stock))

    @translating
    async def due(self, product_id: int, grace_ms: int, limit: int) -> DueReservations:
        keys = deal_keys(product_id)
        status, deal_id, flat, now_ms = await self._due(
            keys=[keys[STATE], keys[RES], keys[SINCE]], args=[grace_ms, limit])
        if not status:
            return DueReservations(None, 0, [], int(now_ms))
        return DueReservations(_text(status), int(deal_id), [
            parse_reservation(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)],
            int(now_ms))

    @translating
    async def reschedule(self, product_id: int, since_ms: dict[UUID, int]) -> int:
        if not since_ms:
            return 0
        args: list[str | int] = []
        for order_id, ms in since_ms.items():
            args += [str(order_id), ms]
        return int(await self._reschedule(keys=[deal_keys(product_id)[SINCE]], args=args))

    @translating
    async def drop(self, product_id: int, deal_id: int) -> bool:
        return int(await self._drop(keys=deal_keys(product_id), args=[deal_id])) == 1

    @translating
    async def rebuild(self, product_id: int, state: RebuiltState) -> bool:
        args: list[str | int] = [state.deal_id, state.stock, state.per_user_limit, state.epoch,
                                 state.unit_price, len(state.users), len(state.reservations),
                                 len(state.idempotency)]
        for user, units in state.users.items():
            args += [user, units]
        for r in state.reservations:
            args += [str(r.order_id),
                     f"{r.user_id}\t{r.quantity}\t{r.reserved_at_ms}\t{r.idempotency_key}"]
        for (user, key), order_id in state.idempotency.items():
            args += [f"{user}\t{key}", str(order_id)]
        return int(await self._rebuild(keys=deal_keys(product_id), args=args)) == 1
