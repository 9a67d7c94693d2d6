"""Buyer tokens for the load tools: each buyer's JWT minted once and reused for the run.
Pure (no locust import: it monkey-patches the process with gevent), so every load tool shares it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hotdeal_core.identity import TokenMinter
from hotdeal_core.settings import Settings, load_settings

#: How long a token outlives the run it is minted for (set-up, drain, slow shutdowns).
TTL_MARGIN_SECONDS = 3600
#: The lifetime of tokens for a run whose length is not known up front (a day).
UNKNOWN_RUN_TTL_SECONDS = 24 * 3600


def token_ttl(run_seconds: float | None) -> int:
    """A token lifetime that outlives a run of `run_seconds` (None: of unknown length)."""
    if run_seconds is None or run_seconds <= 0:
        return UNKNOWN_RUN_TTL_SECONDS
    return int(run_seconds) + 1 + TTL_MARGIN_SECONDS


class BuyerAuth:
    """Each buyer's `Authorization: Bearer <JWT>` header (`sub` = the buyer id), minted on
    first use and then reused."""

    def __init__(self, minter: TokenMinter, ttl_seconds: float) -> None:
        self._minter, self._ttl = minter, ttl_seconds
        self._headers: dict[str, dict[str, str]] = {}

    @classmethod
    def from_settings(cls, run_seconds: float | None,
                      settings: Settings | None = None) -> BuyerAuth:
        """Signed with the buyer-token settings the API reads (the environment, .env);
        InsecureSecrets without ALLOW_DEV_SECRETS=true."""
        return cls(TokenMinter(settings or load_settings()), token_ttl(run_seconds))

    def header(self, buyer: str) -> dict[str, str]:
        found = self._headers.get(buyer)
        if found is None:
            found = {"Authorization": f"Bearer {self._minter.token(buyer, self._ttl)}"}
            self._headers[buyer] = found
        return found

    def token(self, buyer: str) -> str:
        return self.header(buyer)["Authorization"].removeprefix("Bearer ")


def write_token_file(path: Path, auth: BuyerAuth, buyers: Iterable[str]) -> int:
    """One `<buyer id>\\t<token>` line per buyer (read by benchmarks/wrk/orders.lua);
    returns how many lines."""
    lines = [f"{buyer}\t{auth.token(buyer)}\n" for buyer in buyers]
    path.write_text("".join(lines))
    return len(lines)
