"""What a use case needs: its one dependency object (the port the use cases see).

Built once per process by hotdeal_core/bootstrap/resources.py (or by the CLI, a test), which
also owns and closes what it refers to; a use case never closes anything of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.db.deals import PgDeals
from hotdeal_core.db.orders import PostgresOrders
from hotdeal_core.messaging.topics import Topics
from hotdeal_core.ports.deals import DealsDb
from hotdeal_core.ports.orders import OrdersDb
from hotdeal_core.settings import Settings
from hotdeal_core.stock.port import StockStore
from hotdeal_core.stock.sold_out import SoldOutMemo

if TYPE_CHECKING:
    from hotdeal_core.batching import Batcher
    from hotdeal_core.ports.settlement import SettlementDb
    from hotdeal_core.stock.draws import DrawWaiters


def _nothing() -> None:
    return None


@dataclass
class Context:
    engine: AsyncEngine
    stock: StockStore
    settings: Settings
    topics: Topics = field(default_factory=Topics)
    # Called after a commit that wrote outbox rows (wakes this process's relay).
    outbox_written: Callable[[], None] = _nothing
    sold_out: SoldOutMemo = field(default_factory=lambda: SoldOutMemo(0))
    # Group commits of this process (hotdeal_core/batching.py), built by bootstrap/; without
    # them (a CLI, a unit test) each order or payment is written on its own.
    reserver: Batcher[Any, Any] | None = None
    order_writer: Batcher[Any, Any] | None = None
    payment_writer: Batcher[Any, Any] | None = None
    # This process's waiters for opening draws (one wake-up per deal); None: one per request.
    draws: DrawWaiters | None = None
    # Called right after a reservation, before its order is written: a fault hook the
    # composition root injects for crash tests (FAULT_HOOK); nothing otherwise.
    after_reserve: Callable[[], None] = _nothing
    # The Postgres ports (hotdeal_core/ports/): None means the adapter over `engine`. The
    # orders' default follows `engine` and `topics` through dataclasses.replace too; for the
    # others pass None after a replace.
    orders_db: OrdersDb = None  # type: ignore[assignment]
    settlement_db: SettlementDb = None  # type: ignore[assignment]
    deals_db: DealsDb = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        db = self.orders_db
        if db is None or (isinstance(db, PostgresOrders)
                          and (db.engine is not self.engine or db.topics is not self.topics)):
            self.orders_db = PostgresOrders(self.engine, self.topics)
        if self.settlement_db is None:
            # Imported here: the adapter imports use-case modules that import this one.
            from hotdeal_core.db.settlement import PostgresSettlement
            self.settlement_db = PostgresSettlement(self.engine, self.topics)
        if self.deals_db is None:
            self.deals_db = PgDeals(self.engine, self.topics)
