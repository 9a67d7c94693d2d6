"""A per-process memo of products sold out a moment ago: spares a Redis round trip per late
request. It only ever refuses more, never sells more (a released unit is offered again when
the window ends); a window of 0 disables it."""

from __future__ import annotations

import time


class SoldOutMemo:
    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._until: dict[int, float] = {}

    def remember(self, product_id: int) -> None:
        if self.window > 0:
            self._until[product_id] = time.monotonic() + self.window

    def sold_out(self, product_id: int) -> bool:
        until = self._until.get(product_id)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        del self._until[product_id]
        return False
