from hotdeal_core.stock.port import (
    DealSnapshot,
    ReleaseOutcome,
    Reservation,
    ReserveOutcome,
    ReserveResult,
    StockStore,
)

__all__ = ["DealSnapshot", "ReleaseOutcome", "Reservation", "ReserveOutcome", "ReserveResult",
           "StockStore"]
