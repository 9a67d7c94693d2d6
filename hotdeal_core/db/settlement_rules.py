""""Paid in time is never expired", in SQL, once (the same rule in Python:
`in_time`, `marks_paid`, `due_to_expire` in hotdeal_core/usecases/settlement_plan.py)."""

from __future__ import annotations

from hotdeal_core.domain import OrderStatus

# A payment made now is in time: the reservation has not expired (`expires_at` included).
IN_TIME = "expires_at >= now()"
# Paid in time: only a payment accepted while PAYABLE sets paid_at (db/payments.py).
PAID_IN_TIME = "paid_at IS NOT NULL"
# The status as a literal, not a parameter: the sweeper's partial index
# (ix_orders_pending_expiry, WHERE status = 'PENDING') only matches a constant.
_PENDING = f"status = '{OrderStatus.PENDING.value}'"
# A successful payment now marks the order paid in time...
PAYABLE = f"{_PENDING} AND NOT ({PAID_IN_TIME}) AND {IN_TIME}"
# ...and an order the sweeper may expire is exactly one no payment can mark any more.
DUE = f"{_PENDING} AND NOT ({PAID_IN_TIME}) AND NOT ({IN_TIME})"
