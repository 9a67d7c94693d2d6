"""A Redis Cluster mid-failover (no node reachable, a slot without a master, a refused
replica ack) is a dependency outage everywhere: the stock store raises it as
`DependencyUnavailable`, which is a 503 with Retry-After at the API and a redelivery (never
a dead letter) at the consumers. Without services."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import ClusterError, RedisClusterException, SlotNotCoveredError

from hotdeal_core.errors import DependencyUnavailable, is_retriable
from hotdeal_core.stock.client import ReplicaAckTimeout
from hotdeal_core.stock.redis_store import RedisStockStore
from order_api.errors import install_error_handlers

FAILOVER_ERRORS = [
    RedisClusterException("Redis Cluster cannot be connected"),
    SlotNotCoveredError('Slot "42" is not covered by the cluster.'),
    ClusterError("TTL exhausted."),
    ReplicaAckTimeout(100),
]


class _Failing:
    """A cluster client whose every command meets `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def register_script(self, source: str) -> object:
        return object()

    async def hexists(self, *_: object) -> bool:
        raise self.error


async def _as_the_store_raises(error: Exception) -> BaseException:
    store = RedisStockStore(_Failing(error))  # type: ignore[arg-type]
    with pytest.raises(DependencyUnavailable) as raised:
        await store.key_used(7, "u-1", "k-1")
    return raised.value


@pytest.mark.parametrize("exc", FAILOVER_ERRORS, ids=lambda e: type(e).__name__)
async def test_a_cluster_mid_failover_is_a_503_with_retry_after(exc: Exception) -> None:
    app = FastAPI()
    install_error_handlers(app)
    raised = await _as_the_store_raises(exc)

    @app.get("/boom")
    async def boom() -> None:
        raise raised

    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "redis_unavailable"
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("exc", FAILOVER_ERRORS, ids=lambda e: type(e).__name__)
async def test_a_cluster_mid_failover_is_an_outage_for_the_consumers(exc: Exception) -> None:
    assert is_retriable(await _as_the_store_raises(exc))
