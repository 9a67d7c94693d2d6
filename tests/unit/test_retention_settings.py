"""A processed-event record must outlive every redelivery of its event: the settings refuse
a retention shorter than a message can stay in its topic, and the topics are created with
the retention the check assumes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hotdeal_core.messaging.admin import retention_configs
from hotdeal_core.settings import Settings, longest_redelivery_hours


def test_the_default_records_outlive_the_default_topics_retention() -> None:
    settings = Settings()
    assert settings.processed_events_retention_hours >= \
        longest_redelivery_hours(settings.kafka_topic_retention_hours)


def test_records_kept_shorter_than_a_message_can_stay_in_its_topic_are_refused() -> None:
    with pytest.raises(ValidationError, match="PROCESSED_EVENTS_RETENTION_HOURS=25"):
        Settings(kafka_topic_retention_hours=24, processed_events_retention_hours=25)


def test_a_longer_topic_retention_needs_longer_records() -> None:
    with pytest.raises(ValidationError, match="a redelivered event would be applied again"):
        Settings(kafka_topic_retention_hours=72)
    assert Settings(kafka_topic_retention_hours=72,
                    processed_events_retention_hours=74).kafka_topic_retention_hours == 72


def test_topics_are_created_with_the_retention_and_the_segment_span_the_check_assumes() -> None:
    configs = retention_configs(24)
    assert configs == {"retention.ms": str(24 * 3_600_000), "segment.ms": str(3_600_000)}
    assert longest_redelivery_hours(24) * 3_600_000 >= \
        int(configs["retention.ms"]) + int(configs["segment.ms"])
