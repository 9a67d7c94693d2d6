"""Metrics and logs without services: outcome mapping, the scrape format with many deals,
the consumers' HTTP port, the settlement timing, the log formats."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from hotdeal_core.bootstrap.consumer_process import ConsumerProcess
from hotdeal_core.domain import OrderStatus
from hotdeal_core.observability.exposition import (
    consumer_lags,
    deal_families,
    lag_family,
    outbox_families,
    read_or_skip,
    render,
)
from hotdeal_core.observability.logs import JsonFormatter, TextFormatter, bind_ids
from hotdeal_core.observability.metrics import order_outcome
from hotdeal_core.settings import Settings
from hotdeal_core.usecases.audit import Audit
from hotdeal_core.usecases.settlement_plan import SettleResult
from schemas.events import PaymentEvent, PaymentFailed, PaymentSucceeded
from stock_worker.app import observe_settlements

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("status", "code", "outcome"), [
    (202, None, "accepted"), (409, "sold_out", "sold_out"),
    (409, "limit_exceeded", "limit_exceeded"), (409, "deal_not_active", "deal_not_active"),
    (429, "rate_limited", "rate_limited"),
    (409, "idempotency_in_progress", "rejected"), (422, "validation_error", "rejected"),
    (404, "product_not_found", "rejected"), (503, "redis_unavailable", "error"),
    (500, None, "error")])
def test_an_order_answer_maps_to_one_outcome(status: int, code: str | None,
                                             outcome: str) -> None:
    assert order_outcome(status, code) == outcome


def _audit(deal_id: int) -> Audit:
    return Audit(deal_id=deal_id, product_id=deal_id * 10, status="ACTIVE",
                 stock_backend="redis", initial=10, on_sale=7, pending=2, confirmed=1,
                 in_flight=0, cancelled=0)


def test_a_scrape_with_three_deals_parses_with_each_family_once() -> None:
    text = render([*deal_families([_audit(1), _audit(2), _audit(3)]),
                   *outbox_families(1.5, False), lag_family({("g", "t"): 4})]).decode()
    families = list(text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names))
    for line in text.splitlines():  # one HELP and one TYPE per family, as Prometheus wants
        if line.startswith("# TYPE "):
            assert text.count(line) == 1, line
    by_name = {f.name: f for f in families}
    units = by_name["hotdeal_deal_units"]
    assert units.type == "gauge" and len(units.samples) == 15
    assert {(s.labels["deal"], s.labels["term"]): s.value for s in units.samples}[
        ("2", "pending")] == 2
    assert [s.value for s in by_name["hotdeal_deal_audit_balanced"].samples] == [1, 1, 1]
    assert by_name["hotdeal_outbox_published"].type == "counter"  # a total, not a gauge
    assert by_name["hotdeal_kafka_connected"].samples[0].value == 0
    assert by_name["hotdeal_consumer_lag"].samples[0].labels == {"group": "g", "topic": "t"}


class _Lagging(ConsumerProcess):
    async def metric_families(self) -> list[Metric]:
        return [lag_family({("stock-worker", "payments.v1"): 3})]


async def test_a_consumers_http_port_serves_the_scrape_and_says_when_it_is_ready() -> None:
    process = _Lagging(Settings(_env_file=None), [], broker=KafkaBroker())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(process.app()),
                                 base_url="http://consumer") as client:
        assert (await client.get("/readyz")).status_code == 503  # not subscribed yet
        assert (await client.get("/healthz")).status_code == 200  # but alive
        await process.ready()
        assert (await client.get("/readyz")).status_code == 200
        scrape = await client.get("/metrics")
        assert scrape.status_code == 200, scrape.text
        assert "version=0.0.4" in scrape.headers["content-type"]
        lag = [s for f in text_string_to_metric_families(scrape.text) for s in f.samples
               if s.name == "hotdeal_consumer_lag"]
        assert [(s.labels["topic"], s.value) for s in lag] == [("payments.v1", 3)]
        assert (await client.get("/x")).status_code == 404
        assert (await client.post("/metrics")).status_code == 405
        await process.stop()
        assert (await client.get("/readyz")).status_code == 503  # stopping: not ready


async def test_a_failing_scrape_time_reader_is_left_out() -> None:
    async def down() -> list:
        raise ConnectionRefusedError("postgres down")
    assert await read_or_skip("test", down()) == []


def _settled() -> float:
    return REGISTRY.get_sample_value("hotdeal_settlement_duration_seconds_count") or 0.0


def test_only_payments_this_batch_confirmed_are_timed() -> None:
    paid = datetime.now(UTC) - timedelta(seconds=2)
    events: list[PaymentEvent] = [
        PaymentSucceeded(order_id=uuid4(), payment_id="p1", amount=1, occurred_at=paid),
        PaymentFailed(order_id=uuid4(), payment_id="p2", amount=1),
        PaymentSucceeded(order_id=uuid4(), payment_id="p3", amount=1)]
    before = _settled()
    observe_settlements(events, [SettleResult("applied", OrderStatus.CONFIRMED),
                                 SettleResult("applied", OrderStatus.CANCELLED),
                                 SettleResult("already_processed")])
    assert _settled() - before == 1
    total = REGISTRY.get_sample_value("hotdeal_settlement_duration_seconds_sum") or 0.0
    assert total >= 2


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("hotdeal.test", logging.WARNING, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_ids_given_or_bound() -> None:
    formatter = JsonFormatter("stock-worker")
    order_id = uuid4()
    with bind_ids(deal_id=7, event_id="e-1"):
        line = json.loads(formatter.format(_record("settled", order_id=order_id)))
    assert line["service"] == "stock-worker" and line["message"] == "settled"
    assert (line["order_id"], line["deal_id"], line["event_id"]) == (str(order_id), "7", "e-1")
    assert line["level"] == "WARNING" and line["ts"].endswith("+00:00")
    assert "deal_id" not in json.loads(formatter.format(_record("after")))  # unbound again


def test_json_keeps_a_traceback_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (),
                                   sys.exc_info())
    text = JsonFormatter("order-api").format(record)
    assert "\n" not in text and "ValueError: boom" in json.loads(text)["exc"]


def test_text_lines_show_the_ids_after_the_message() -> None:
    text = TextFormatter().format(_record("flushed", deal_id=3))
    assert text.endswith("WARNING hotdeal.test flushed [deal_id=3]")


class _LagConsumer:
    """Only what a scrape may touch: no committed()/position() (they would send requests
    through the live consumer's coordinator and fetcher)."""

    def __init__(self, highwater: dict[Any, int | None]) -> None:
        self._highwater = highwater

    def assignment(self) -> set[Any]:
        return set(self._highwater)

    def highwater(self, tp: Any) -> int | None:
        return self._highwater[tp]

    def subscription(self) -> set[str]:
        return {"t", "quiet"}


class _LagAdmin:
    def __init__(self, committed: dict[Any, int]) -> None:
        self.committed = committed
        self.asked: list[tuple[str, list[Any]]] = []

    async def list_consumer_group_offsets(self, group: str, partitions: list[Any]
                                          ) -> dict[Any, Any]:
        self.asked.append((group, partitions))
        return {tp: OffsetAndMetadata(self.committed[tp], "") for tp in partitions
                if tp in self.committed}


async def test_the_consumer_lag_reads_committed_offsets_through_its_own_client() -> None:
    p0, p1, p2 = (TopicPartition("t", i) for i in range(3))
    sub = SimpleNamespace(consumer=_LagConsumer({p0: 10, p1: 7, p2: None}), group_id="g")
    admin = _LagAdmin({p0: 4})
    lags = await consumer_lags([sub], admin)  # type: ignore[arg-type,unused-ignore]
    # p0: 10 - 4; p1: no committed offset, counted from 0; p2: never fetched, not counted.
    assert lags == {("g", "t"): 6 + 7, ("g", "quiet"): 0}
    assert admin.asked == [("g", [p0, p1])]
