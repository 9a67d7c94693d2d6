from hotdeal_core.stock.port import (
    DealSnapshot,
    RebuiltState,
    ReleaseOutcome,
    Reservation,
    ReserveOutcome,
    ReserveResult,
    StockStore,
)

__all__ = [
    "DealSnapshot",
    "RebuiltState",
    "ReleaseOutcome",
    "Reservation",
    "ReserveOutcome",
    "ReserveResult",
    "StockStore",
]
