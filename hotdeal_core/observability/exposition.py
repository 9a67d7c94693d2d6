"""A scrape: the recorded metrics (summed over workers in multiprocess mode) plus gauges read
at scrape time from shared state; a reader that fails leaves its families out of that scrape."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from hotdeal_core.usecases.audit import Audit

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEAL_TERMS = ("initial", "on_sale", "pending", "confirmed", "in_flight")
READ_TIMEOUT = 5.0  # a scrape-time reader; Prometheus' own scrape timeout is 10 s

# The oldest row the relay still tries to publish (a row set aside after OUTBOX_MAX_ATTEMPTS
# is reported apart, by the relay's error log): the head of ix_outbox_unpublished.
_OLDEST_UNPUBLISHED = text("""
    SELECT EXTRACT(EPOCH FROM (now() - created_at)) FROM outbox
    WHERE published_at IS NULL AND attempts < :max_attempts ORDER BY id LIMIT 1
""")


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The scrape: every recorded metric (of all workers in multiprocess mode) + `extra`."""
    if os.environ.get(MULTIPROC_ENV):
        recorded: CollectorRegistry = CollectorRegistry()
        MultiProcessCollector(recorded)  # type: ignore[no-untyped-call]
    else:
        recorded = REGISTRY
    out = CollectorRegistry(auto_describe=False)
    out.register(_Families([*recorded.collect(), *extra]))
    return generate_latest(out)


def deal_families(audits: Sequence[Audit]) -> list[Metric]:
    units = GaugeMetricFamily(
        "hotdeal_deal_units", "A live deal's stock by term of the audit invariant "
        "initial = on_sale + pending + confirmed + in_flight", labels=["deal", "product", "term"])
    balanced = GaugeMetricFamily("hotdeal_deal_audit_balanced", "1 while a live deal's "
                                 "audit invariant holds", labels=["deal", "product"])
    for audit in audits:
        ids = [str(audit.deal_id), str(audit.product_id)]
        for term in DEAL_TERMS:
            units.add_metric([*ids, term], getattr(audit, term))
        balanced.add_metric(ids, int(audit.balanced))
    return [units, balanced]


def outbox_families(oldest_seconds: float | None, kafka_connected: bool) -> list[Metric]:
    families: list[Metric] = [GaugeMetricFamily(
        "hotdeal_kafka_connected", "1 while this process's outbox relay is connected to Kafka",
        value=int(kafka_connected))]
    if oldest_seconds is not None:
        families.append(GaugeMetricFamily(
            "hotdeal_outbox_oldest_unpublished_seconds", "Age of the oldest outbox row not "
            "yet published (0 when none waits)", value=oldest_seconds))
    return families


def lag_family(lags: dict[tuple[str, str], int]) -> Metric:
    family = GaugeMetricFamily(
        "hotdeal_consumer_lag", "Records not yet committed on the partitions this process "
        "consumes (sum by group and topic over the processes for the group's lag)",
        labels=["group", "topic"])
    for (group, topic), lag in sorted(lags.items()):
        family.add_metric([group, topic], lag)
    return family


async def oldest_unpublished_seconds(engine: AsyncEngine, max_attempts: int) -> float:
    async with engine.connect() as conn:
        age = (await conn.execute(_OLDEST_UNPUBLISHED, {"max_attempts": max_attempts})
               ).scalar_one_or_none()
    return 0.0 if age is None else max(0.0, float(age))


async def consumer_lags(subscribers: Iterable[Any], admin: AIOKafkaAdminClient
                        ) -> dict[tuple[str, str], int]:
    """Per (group, topic): highwater minus committed offset over this process's partitions. The
    committed offsets come from a separate admin client, so a scrape never sends (or cancels) a
    request through the live consumer; a partition without a committed offset counts from 0."""
    lags: dict[tuple[str, str], int] = {}
    for sub in subscribers:
        consumer, group = getattr(sub, "consumer", None), getattr(sub, "group_id", None)
        if consumer is None or not group:
            continue
        ends = {tp: consumer.highwater(tp) for tp in sorted(consumer.assignment())}
        known = [tp for tp, end in ends.items() if end is not None]  # fetched from already
        committed = await admin.list_consumer_group_offsets(group, partitions=known) \
            if known else {}
        for tp in known:
            meta = committed.get(tp)
            start = meta.offset if meta is not None and meta.offset >= 0 else 0
            key = (group, tp.topic)
            lags[key] = lags.get(key, 0) + max(0, ends[tp] - start)
        for topic in consumer.subscription():  # 0 rather than absent for a quiet topic
            lags.setdefault((group, topic), 0)
    return lags


async def read_or_skip(what: str, reader: Awaitable[list[Metric]]) -> list[Metric]:
    """A scrape-time reader's families, or none (with a warning) when it fails."""
    try:
        return await asyncio.wait_for(reader, READ_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - a scrape must still serve the counters
        log.warning("metrics: %s not read: %s: %s", what, type(exc).__name__, exc)
        return []
