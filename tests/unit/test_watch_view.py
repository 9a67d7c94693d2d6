"""`hotdeal deal watch`'s pure parts on fixed inputs: the scrape, the rates, the view."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from rich.console import Console

from hotdeal_cli.watch_view import (
    ApiScrape,
    Sample,
    bucket_delta,
    counter_delta,
    frame,
    lines,
    parse_scrape,
    quantile,
    render,
)

# The format prometheus-client writes (its generate_latest, with *_created samples), plus a
# metric the watch ignores and a second process's samples (summed).
SCRAPE = """\
# HELP hotdeal_orders_total Orders by outcome
# TYPE hotdeal_orders_total counter
hotdeal_orders_total{outcome="accepted"} 5.0
hotdeal_orders_total{outcome="sold_out"} 7.0
hotdeal_orders_total{outcome="limit_exceeded"} 1.0
hotdeal_orders_total{outcome="error"} 0.0
hotdeal_orders_total{outcome="sold_out",pid="2"} 3.0
# HELP hotdeal_orders_created Orders by outcome
# TYPE hotdeal_orders_created gauge
hotdeal_orders_created{outcome="accepted"} 1.796141691068828e+09
# HELP hotdeal_reservation_duration_seconds Reservation
# TYPE hotdeal_reservation_duration_seconds histogram
hotdeal_reservation_duration_seconds_bucket{le="0.005"} 1.0
hotdeal_reservation_duration_seconds_bucket{le="0.01"} 1.0
hotdeal_reservation_duration_seconds_bucket{le="0.025"} 2.0
hotdeal_reservation_duration_seconds_bucket{le="+Inf"} 2.0
hotdeal_reservation_duration_seconds_count 2.0
hotdeal_reservation_duration_seconds_sum 0.024
# HELP hotdeal_outbox_published_total Outbox rows published by this process
# TYPE hotdeal_outbox_published_total counter
hotdeal_outbox_published_total 12.0
"""


def sample(at: float, scrape: ApiScrape | None, **kw: object) -> Sample:
    base: dict[str, object] = dict(
        deal_id=7, product_id=3, status="ACTIVE", stock_backend="redis", initial=100,
        stock_left=40, orders={"PENDING": 50, "CONFIRMED": 8, "CANCELLED": 2},
        accepted_per_s=12.5, unsettled=0, unsettled_age_s=None)
    base.update(kw)
    return Sample(at=at, scrape=scrape, **base)  # type: ignore[arg-type]


def text_of(renderable: object) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_scrape_gives_outcomes_summed_and_the_histogram_buckets() -> None:
    s = parse_scrape(SCRAPE)
    assert s.outcomes == {"accepted": 5.0, "sold_out": 10.0, "limit_exceeded": 1.0,
                          "error": 0.0}
    assert s.buckets == [(0.005, 1.0), (0.01, 1.0), (0.025, 2.0), (math.inf, 2.0)]


def test_a_scrape_without_the_metrics_is_empty_and_garbage_is_refused() -> None:
    assert parse_scrape("# TYPE x counter\nx_total 1\n") == ApiScrape()
    with pytest.raises(ValueError):
        parse_scrape("this is { not prometheus text\n")


def test_counters_and_buckets_survive_a_process_restart() -> None:
    assert counter_delta(10, 15) == 5
    assert counter_delta(10, 3) == 3  # reset: everything counted since
    assert counter_delta(None, 4) == 4
    before, after = [(0.01, 5.0), (math.inf, 6.0)], [(0.01, 7.0), (math.inf, 10.0)]
    assert bucket_delta(before, after) == [(0.01, 2.0), (math.inf, 4.0)]
    assert bucket_delta(after, before) == before


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    buckets = [(0.01, 50.0), (0.02, 100.0), (math.inf, 100.0)]
    assert quantile(0.95, buckets) == pytest.approx(0.019)
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.95, [(0.01, 0.0), (math.inf, 10.0)]) == 0.01  # rank in +Inf
    assert quantile(0.95, [(0.01, 0.0), (math.inf, 0.0)]) is None


def test_the_frame_rates_come_from_two_scrapes_one_second_apart() -> None:
    first = ApiScrape({"sold_out": 100.0, "limit_exceeded": 10.0, "error": 1.0},
                      [(0.005, 10.0), (0.01, 20.0), (math.inf, 20.0)])
    second = ApiScrape({"sold_out": 300.0, "limit_exceeded": 14.0, "error": 1.0},
                       [(0.005, 10.0), (0.01, 120.0), (math.inf, 120.0)])
    f = frame(sample(10.0, first), sample(12.0, second))  # 2 s apart
    assert f.refused_by_code_per_s == {"sold_out": 100.0, "limit_exceeded": 2.0,
                                       "deal_not_active": 0.0}
    assert f.refused_per_s == 102.0
    assert f.errors_per_s == 0.0
    # 100 reservations in the interval, all in (5, 10] ms: p95 at 95 % of the bucket
    assert f.p95_reservation_ms == pytest.approx(9.75)
    assert (f.pending, f.confirmed, f.cancelled, f.stock_left) == (50, 8, 2, 40)


def test_without_an_answering_api_its_figures_are_n_a_and_the_others_are_shown() -> None:
    f = frame(sample(1.0, None), sample(2.0, None, unsettled=3, unsettled_age_s=1.5),
              audit="100 = 40 + 50 + 8 + 2 holds", audit_age_s=2.0)
    rows = dict(lines(f))
    assert rows["refused orders/s"] == rows["errors/s"] == rows["p95 reservation"] == "n/a"
    assert rows["stock left"] == "40 of 100"
    assert rows["accepted orders/s"] == "12.5"
    assert rows["orders"] == "pending 50 / confirmed 8 / cancelled 2"
    assert rows["settlement lag"] == "3 paid orders not settled, oldest 1.5 s"
    assert rows["audit"] == "100 = 40 + 50 + 8 + 2 holds (2 s ago)"


def test_an_idle_api_shows_a_dash_for_the_latency_not_n_a() -> None:
    quiet = ApiScrape({"sold_out": 5.0}, [(0.01, 4.0), (math.inf, 4.0)])
    f = frame(sample(1.0, quiet), sample(2.0, quiet))
    rows = dict(lines(f))
    assert rows["p95 reservation"] == "-"
    assert rows["refused orders/s"].startswith("0.0 (sold_out 0.0")
    first = dict(lines(frame(None, sample(1.0, quiet))))
    assert first["refused orders/s"] == "-"  # one scrape: no rate yet


def test_the_view_draws_the_title_every_figure_and_the_footer() -> None:
    f = frame(None, sample(1.0, None, stock_left=None))
    out = text_of(render(f, interval=1.0))
    assert "deal 7 of product 3: ACTIVE (stock in redis)" in out
    for name in ("stock left", "accepted orders/s", "refused orders/s", "orders",
                 "p95 reservation", "settlement lag", "audit"):
        assert name in out
    assert "stock left n/a" in " ".join(out.split())
    assert "Ctrl-C stops" in out
    assert f.as_json()["deal_id"] == 7


def test_a_stale_frame_says_why_under_its_last_figures() -> None:
    f = replace(frame(None, sample(1.0, None)), problem="ConnectionError: gone; retrying")
    out = " ".join(text_of(render(f, interval=1.0)).split())
    assert "stock left 40 of 100" in out and "stale: ConnectionError: gone; retrying" in out
    assert f.as_json()["problem"] == "ConnectionError: gone; retrying"


def test_a_refusal_code_the_view_does_not_know_is_shown_too() -> None:
    first = ApiScrape({"sold_out": 1.0, "rejected": 2.0, "accepted": 5.0}, [])
    second = ApiScrape({"sold_out": 2.0, "rejected": 6.0, "accepted": 9.0}, [])
    f = frame(sample(1.0, first), sample(2.0, second))
    assert f.refused_by_code_per_s == {"sold_out": 1.0, "limit_exceeded": 0.0,
                                       "deal_not_active": 0.0, "rejected": 4.0}
    assert f.refused_per_s == 5.0 and f.p95_reservation_ms is None
