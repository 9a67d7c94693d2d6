"""How the consumers join their group (hotdeal_core/messaging/membership.py, through
consumer_process.subscription): static members under CONSUMER_INSTANCE_ID, one id per
subscriber, the session timeout from settings, the group under the topic prefix."""

from __future__ import annotations

import importlib

import pytest
from pydantic import ValidationError

from hotdeal_core.messaging.membership import membership
from hotdeal_core.settings import Settings


def test_with_an_instance_id_each_subscriber_is_a_static_member_of_its_own() -> None:
    settings = Settings(_env_file=None, consumer_instance_id="stock-worker-1",
                        kafka_session_timeout_ms=9000)
    assert membership(settings, "payments") == {"group_instance_id": "stock-worker-1.payments",
                                                 "session_timeout_ms": 9000,
                                                 "heartbeat_interval_ms": 1000}
    # The stock worker's two subscribers are two consumers in one group: one id would fence.
    assert membership(settings, "order-requests")["group_instance_id"] \
        != membership(settings, "payments")["group_instance_id"]


def test_without_an_instance_id_a_consumer_is_a_dynamic_member() -> None:
    found = membership(Settings(_env_file=None), "hotdeals")
    assert "group_instance_id" not in found
    assert found["session_timeout_ms"] == Settings.model_fields[
        "kafka_session_timeout_ms"].default


@pytest.mark.parametrize("bad", ["", "stock worker", "a/b", "x" * 201])
def test_an_instance_id_kafka_would_refuse_is_refused_at_start_up(bad: str) -> None:
    with pytest.raises(ValidationError, match="consumer_instance_id"):
        Settings(_env_file=None, consumer_instance_id=bad)


@pytest.mark.parametrize("module", ["stock_worker.app", "reconciler.app"])
def test_every_subscriber_of_the_consumer_processes_joins_as_a_static_member(
        module: str) -> None:
    create_app = importlib.import_module(module).create_app
    app = create_app(Settings(_env_file=None, consumer_instance_id="proc-1",
                              kafka_session_timeout_ms=7000))
    assert app.broker is not None
    # FastStream hands these to AIOKafkaConsumer (no public accessor).
    joined = [(s._connection_args["group_instance_id"], s._connection_args["session_timeout_ms"])
              for s in app.broker.subscribers]
    assert joined and len({i for i, _ in joined}) == len(joined)
    assert all(i.startswith("proc-1.") and ms == 7000 for i, ms in joined), joined


@pytest.mark.parametrize(("module", "group"), [("stock_worker.app", "stock-worker"),
                                               ("reconciler.app", "reconciler")])
def test_each_consumer_joins_its_group_under_the_topic_prefix_with_every_ack(
        module: str, group: str) -> None:
    app = importlib.import_module(module).create_app(
        Settings(_env_file=None, kafka_topic_prefix="env-a."))
    assert app.broker is not None
    # consumer_process.consumer_broker and subscription (no public accessor either).
    client = app.broker._connection_kwargs
    assert (client["client_id"], client["acks"]) == (f"env-a.{group}", "all")
    assert {(s.group_id, s._connection_args["auto_offset_reset"])
            for s in app.broker.subscribers} == {(f"env-a.{group}", "earliest")}


@pytest.mark.parametrize(("session_ms", "heartbeat_ms"), [(10_000, 1000), (6000, 1000),
                                                          (1500, 500)])
def test_heartbeats_go_every_second_or_a_third_of_a_shorter_session(
        session_ms: int, heartbeat_ms: int) -> None:
    found = membership(Settings(_env_file=None, kafka_session_timeout_ms=session_ms), "x")
    assert found["heartbeat_interval_ms"] == heartbeat_ms
