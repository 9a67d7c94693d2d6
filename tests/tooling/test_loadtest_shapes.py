"""The swarm's load shapes and outcome classification (pure functions; no locust import)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.outcomes import CLIENT_OUTCOMES, classify
from loadtest.shapes import SpikeConfig, StepConfig, spike_tick, step_tick


def _conflict(code: str) -> dict[str, object]:
    return {"error": {"code": code, "message": "no"}}


# --- spike -----------------------------------------------------------------------------------

SPIKE = SpikeConfig(peak=500, ramp=2.0, hold=20.0)


def test_spike_reaches_its_peak_within_the_ramp() -> None:
    tick = spike_tick(0.0, SPIKE)
    assert tick is not None
    users, rate = tick
    assert users == 500
    assert users / rate <= SPIKE.ramp + 1e-9  # spawning at `rate` reaches the peak by t=ramp


def test_spike_holds_the_peak_until_ramp_plus_hold() -> None:
    for t in (0.5, 2.0, 10.0, 21.99):
        tick = spike_tick(t, SPIKE)
        assert tick is not None and tick[0] == 500, t


def test_spike_drops_to_a_tenth_for_ten_seconds() -> None:
    for t in (22.0, 27.0, 31.99):
        tick = spike_tick(t, SPIKE)
        assert tick is not None and tick[0] == 50, t
        assert tick[1] > 0


def test_spike_ends_by_itself() -> None:
    assert spike_tick(32.0, SPIKE) is None
    assert spike_tick(1000.0, SPIKE) is None


def test_spike_tail_keeps_at_least_one_user() -> None:
    small = SpikeConfig(peak=3, ramp=1.0, hold=1.0)
    assert spike_tick(2.5, small) == (1, 3.0)


def test_spike_config_from_env() -> None:
    cfg = SpikeConfig.from_env({"HOTDEAL_SPIKE_USERS": "100", "HOTDEAL_SPIKE_RAMP": "4",
                                "HOTDEAL_SPIKE_HOLD": "5"})
    assert (cfg.peak, cfg.ramp, cfg.hold, cfg.spawn_rate) == (100, 4.0, 5.0, 25.0)
    assert SpikeConfig.from_env({}) == SpikeConfig()
    with pytest.raises(ValueError):
        SpikeConfig.from_env({"HOTDEAL_SPIKE_USERS": "0"})
    with pytest.raises(ValueError):
        SpikeConfig.from_env({"HOTDEAL_SPIKE_RAMP": "soon"})


# --- step ------------------------------------------------------------------------------------

STEP = StepConfig(start=25, step=25, seconds=10.0, max_users=300)


def test_step_starts_at_start_and_grows_by_the_step() -> None:
    seen = []
    for level in range(12):
        tick = step_tick(level * 10.0 + 0.1, STEP)
        assert tick is not None
        seen.append(tick[0])
        assert step_tick(level * 10.0 + 9.9, STEP) == tick  # flat within a step
    assert seen == list(range(25, 301, 25))
    assert all(b - a == 25 for a, b in itertools.pairwise(seen))


def test_step_ends_after_holding_the_max_for_one_step() -> None:
    assert STEP.duration == 120.0
    last = step_tick(119.9, STEP)
    assert last is not None and last[0] == 300
    assert step_tick(120.0, STEP) is None
    assert step_tick(10_000.0, STEP) is None


def test_step_caps_an_uneven_last_level_at_max() -> None:
    cfg = StepConfig(start=10, step=30, seconds=1.0, max_users=50)  # 10, 40, 50
    assert [step_tick(t + 0.5, cfg) for t in range(4)] == [
        (10, 30.0), (40, 30.0), (50, 30.0), None]


def test_step_config_from_env_and_validation() -> None:
    cfg = StepConfig.from_env({"HOTDEAL_STEP_START": "5", "HOTDEAL_STEP_USERS": "5",
                               "HOTDEAL_STEP_SECONDS": "2", "HOTDEAL_STEP_MAX": "20"})
    assert (cfg.start, cfg.step, cfg.seconds, cfg.max_users, cfg.duration) == (5, 5, 2.0, 20, 8.0)
    with pytest.raises(ValueError):
        StepConfig(start=50, step=5, seconds=1.0, max_users=10)


# --- outcomes --------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "body", "expected"), [
    (202, {"order_id": "0b9f5c4e-3f7b-4c1e-9a51-1d2a3b4c5d6e", "total": 100}, "accepted"),
    (202, None, "accepted"),
    (409, _conflict("sold_out"), "sold_out"),
    (409, _conflict("limit_exceeded"), "limit_exceeded"),
    (409, _conflict("deal_not_active"), "deal_not_active"),
    (409, _conflict("idempotency_in_progress"), "failure"),
    (409, _conflict("something_new"), "failure"),
    (409, None, "failure"),
    (409, {"error": "sold_out"}, "failure"),
    (409, ["sold_out"], "failure"),
    (500, {"error": {"code": "internal_error", "message": "x"}}, "failure"),
    (503, {"error": {"code": "redis_unavailable", "message": "x"}}, "failure"),
    (503, _conflict("sold_out"), "failure"),
    (422, None, "failure"),
    (404, _conflict("product_not_found"), "failure"),
    (200, None, "failure"),
    (0, None, "failure"),  # connection error or timeout
])
def test_classify(status: int, body: object, expected: str) -> None:
    assert classify(status, body) == expected
    assert expected in CLIENT_OUTCOMES


def test_these_modules_do_not_import_locust() -> None:
    """Importing locust monkey-patches with gevent; the pure modules must not pull it in."""
    code = ("import sys, loadtest.shapes, loadtest.outcomes; "
            "sys.exit(1 if {'locust', 'gevent'} & set(sys.modules) else 0)")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
