"""A per-process memo of products that were sold out a moment ago.

Once a deal sells out, most requests of a flash sale arrive after the last unit is gone;
answering them from memory spares a Redis round trip each. The memo only ever refuses
more, never sells more: a unit released (a cancellation) inside the window is offered
again when the window ends. A window of 0 disables it.
"""

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
