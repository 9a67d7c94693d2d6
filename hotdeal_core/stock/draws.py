"""The requests of this process waiting for a deal's opening draw: one wake-up per deal,
one `drawn` call for all of them (10,000 waiters cost one round trip, not 10,000)."""

from __future__ import annotations

import asyncio
from uuid import UUID

from hotdeal_core.stock.port import ReserveResult, StockStore

DrawAnswer = tuple[UUID, ReserveResult] | None


class DrawWaiters:
    def __init__(self, store: StockStore) -> None:
        self._store = store
        self._waiting: dict[int, dict[str, list[asyncio.Future[DrawAnswer]]]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def answer(self, product_id: int, buyer: str, wait_ms: int) -> DrawAnswer:
        """The draw's answer for `buyer` (entry order id, outcome), once the draw is held;
        None if the store holds no entry of theirs (its state was rebuilt)."""
        future: asyncio.Future[DrawAnswer] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(product_id, {}).setdefault(buyer, []).append(future)
        if product_id not in self._tasks:
            self._tasks[product_id] = asyncio.create_task(self._wake(product_id, wait_ms))
        return await future

    async def _wake(self, product_id: int, wait_ms: int) -> None:
        delay = max(wait_ms, 0) / 1000
        try:
            while self._waiting.get(product_id):
                await asyncio.sleep(delay)
                waiting = self._waiting.pop(product_id)
                try:
                    drawn = await self._store.drawn(product_id, list(waiting))
                except Exception as exc:  # noqa: BLE001 - each waiter answers with it
                    _settle(waiting, exc=exc)
                    continue
                if drawn.wait_ms > 0:  # woke early (clocks): put them back, wait again
                    for buyer, futures in waiting.items():
                        self._waiting.setdefault(product_id, {}).setdefault(
                            buyer, []).extend(futures)
                    delay = drawn.wait_ms / 1000
                    continue
                _settle(waiting, answers=drawn.answers)
                delay = 0  # late joiners of this same wake-up: ask again at once
        finally:
            del self._tasks[product_id]
            for futures in self._waiting.pop(product_id, {}).values():  # cancelled mid-wait
                for future in futures:
                    future.cancel()


def _settle(waiting: dict[str, list[asyncio.Future[DrawAnswer]]],
            answers: dict[str, DrawAnswer] | None = None, exc: BaseException | None = None,
            ) -> None:
    for buyer, futures in waiting.items():
        for future in futures:
            if future.done():  # its request was cancelled
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(None if answers is None else answers.get(buyer))
