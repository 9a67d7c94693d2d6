"""Tick logic of the swarm's load shapes, as pure functions of the elapsed run time (testable
without importing locust); a tick returns `(users, spawn_rate)`, or None to end the run."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

Tick = tuple[int, float] | None


def env_int(name: str, default: int, minimum: int | None = None,
            env: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def env_float(name: str, default: float, minimum: float | None = None,
              maximum: float | None = None, env: Mapping[str, str] | None = None) -> float:
    raw = (os.environ if env is None else env).get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {raw!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


@dataclass(frozen=True)
class SpikeConfig:
    """0 -> `peak` users within `ramp` s, hold `hold` s, drop to `tail_fraction` of the peak
    for `tail_seconds` s, then stop."""

    peak: int = 500
    ramp: float = 2.0
    hold: float = 20.0
    tail_fraction: float = 0.1
    tail_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.peak < 1 or self.ramp <= 0 or self.hold < 0 or self.tail_seconds < 0:
            raise ValueError(f"invalid spike shape: {self}")
        if not 0 < self.tail_fraction <= 1:
            raise ValueError(f"tail_fraction must be in (0, 1]: {self}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SpikeConfig:
        return cls(peak=env_int("HOTDEAL_SPIKE_USERS", 500, 1, env),
                   ramp=env_float("HOTDEAL_SPIKE_RAMP", 2.0, 0.001, env=env),
                   hold=env_float("HOTDEAL_SPIKE_HOLD", 20.0, 0.0, env=env))

    @property
    def spawn_rate(self) -> float:
        """Users per second that reach the peak exactly at the end of the ramp."""
        return self.peak / self.ramp

    @property
    def tail_users(self) -> int:
        return max(1, round(self.peak * self.tail_fraction))

    @property
    def duration(self) -> float:
        return self.ramp + self.hold + self.tail_seconds


def spike_tick(elapsed: float, cfg: SpikeConfig) -> Tick:
    """The peak from t=0 (locust spawns at `spawn_rate`, so it is reached at t=ramp) until
    ramp+hold; then the tail (users stopped at the same fast rate); None after that."""
    if elapsed < cfg.ramp + cfg.hold:
        return cfg.peak, cfg.spawn_rate
    if elapsed < cfg.duration:
        return cfg.tail_users, cfg.spawn_rate
    return None


@dataclass(frozen=True)
class StepConfig:
    """Start at `start` users, add `step` every `seconds` s up to `max_users`, hold that last
    level for one step, then stop."""

    start: int = 25
    step: int = 25
    seconds: float = 10.0
    max_users: int = 300

    def __post_init__(self) -> None:
        if self.start < 1 or self.step < 1 or self.seconds <= 0 or self.max_users < self.start:
            raise ValueError(f"invalid step shape: {self}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StepConfig:
        return cls(start=env_int("HOTDEAL_STEP_START", 25, 1, env),
                   step=env_int("HOTDEAL_STEP_USERS", 25, 1, env),
                   seconds=env_float("HOTDEAL_STEP_SECONDS", 10.0, 0.001, env=env),
                   max_users=env_int("HOTDEAL_STEP_MAX", 300, 1, env))

    @property
    def levels(self) -> int:
        """How many levels: start, start+step, ..., the last one capped at max_users."""
        return math.ceil((self.max_users - self.start) / self.step) + 1

    @property
    def duration(self) -> float:
        return self.levels * self.seconds

    @property
    def spawn_rate(self) -> float:
        """Fast enough that every level (the first one included) is reached within ~1 s."""
        return float(max(self.start, self.step))


def step_tick(elapsed: float, cfg: StepConfig) -> Tick:
    if elapsed >= cfg.duration:
        return None
    level = int(elapsed // cfg.seconds)
    return min(cfg.start + level * cfg.step, cfg.max_users), cfg.spawn_rate
