"""benchmarks/fairness_figures.py: the share ratio, percentiles, arrival schedules and the
other arithmetic the fairness benchmark prints."""

from __future__ import annotations

import random

import pytest

from benchmarks.fairness_figures import (
    Latency,
    arrivals,
    mean_and_max,
    percentile,
    ratio_ceiling,
    retry_after,
    share_ratio,
    wrk_delay_ms,
)


def test_units_shared_like_the_accounts_give_a_ratio_of_one() -> None:
    assert share_ratio(60, 240, 200, 800) == pytest.approx(1.0)


def test_scripts_taking_two_thirds_with_a_fifth_of_the_accounts_score_three_and_a_third() -> None:
    assert share_ratio(200, 100, 200, 800) == pytest.approx(10 / 3)


def test_no_unit_sold_scores_zero_and_scripts_without_accounts_are_refused() -> None:
    assert share_ratio(0, 0, 200, 800) == 0.0
    with pytest.raises(ValueError, match="accounts"):
        share_ratio(1, 1, 0, 800)


def test_the_ceiling_is_every_script_account_buying_its_limit_first() -> None:
    assert ratio_ceiling(300, 200, 800) == pytest.approx(10 / 3)
    assert ratio_ceiling(100, 200, 800) == pytest.approx(5.0)  # scripts take it all
    assert ratio_ceiling(300, 200, 800, per_user_limit=2) == pytest.approx(5.0)


def test_percentiles_interpolate_between_the_closest_ranks() -> None:
    values = [40.0, 10.0, 30.0, 20.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(values, 100) == 40.0
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    assert percentile([7.0], 99) == 7.0


def test_percentiles_of_nothing_or_outside_the_range_are_refused() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_latency_figures_and_the_spread_target() -> None:
    even = Latency.of([100.0] * 99 + [250.0])
    assert (even.count, even.p50, even.max) == (100, 100.0, 250.0)
    assert even.mean == pytest.approx(101.5)
    assert even.spread_ok()  # p99 <= 3x mean
    skewed = Latency.of([100.0] * 90 + [5000.0] * 10)
    assert skewed.p99 == 5000.0 and not skewed.spread_ok()


def test_arrivals_are_sorted_within_the_window_and_repeat_for_a_seed() -> None:
    moments = arrivals(800, 0.2, 3.0, random.Random(7))
    assert len(moments) == 800
    assert moments == sorted(moments)
    assert moments[0] >= 0.2 and moments[-1] <= 3.0
    assert moments == arrivals(800, 0.2, 3.0, random.Random(7))
    assert moments != arrivals(800, 0.2, 3.0, random.Random(8))
    halves = sum(m < 1.6 for m in moments)
    assert 320 < halves < 480  # uniform: about half in each half of the window


def test_an_arrival_window_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError):
        arrivals(1, 3.0, 0.2, random.Random(1))


@pytest.mark.parametrize(("header", "seconds"), [
    ("2", 2.0), ("0.5", 0.5), (None, 1.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0),
    ("-3", 0.0), ("nan", 1.0)])
def test_retry_after_reads_delta_seconds_and_falls_back(header: str | None,
                                                       seconds: float) -> None:
    assert retry_after(header) == seconds


def test_the_wrk_pause_spreads_the_asked_rate_over_the_connections() -> None:
    assert wrk_delay_ms(800, 20) == 25
    assert wrk_delay_ms(100_000, 1) == 0
    with pytest.raises(ValueError):
        wrk_delay_ms(0, 20)


def test_mean_and_max_of_the_runs() -> None:
    assert mean_and_max([3.0, 3.5, 2.5]) == (3.0, 3.5)
