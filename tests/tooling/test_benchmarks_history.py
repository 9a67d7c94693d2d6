"""benchmarks/history.py (the scenario documents' per-step and spike readings) on a
synthetic full history."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmarks import history

HEADER = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "95%",
          "99%", "Total Request Count", "Total Failure Count"]


def write(path: Path, users_per_second: list[int], name: str = "POST /orders") -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(HEADER)
        total = failures = 0
        for i, users in enumerate(users_per_second):
            total += 10 * users  # 10 requests per user per second
            failures += 1 if users >= 15 else 0
            out.writerow([1_000 + i, users, "", "Aggregated", 0, 0, 1, 1, 1, 0, 0])
            out.writerow([1_000 + i, users, "POST", name, 10 * users, 0, users, 2 * users,
                          3 * users, total, failures])


def test_steps_read_each_step_from_the_previous_steps_last_row(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    write(path, [5] * 10 + [10] * 10 + [15] * 10)
    table = history.steps(history.read(path), 5, 5, 10, 20)
    assert table[2:] == ["| 1 | 5 | 500 | 50 | 0 | 0.00 | 5 | 10 | 15 |",
                         "| 2 | 10 | 1,000 | 100 | 0 | 0.00 | 10 | 20 | 30 |",
                         "| 3 | 15 | 1,500 | 150 | 10 | 0.67 | 15 | 30 | 45 |"]


def test_spike_reads_from_the_end_of_the_ramp_to_the_last_row_at_the_peak(
        tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    write(path, [0, 10, 20, 20, 20, 20, 2, 2])
    table = history.spike(history.read(path), 20)
    assert table[2] == "| 3 | 600 | 200 | 3 | 0.50 | 20 | 40 | 60 |"


def test_a_history_without_the_orders_rows_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    write(path, [5, 5], name="POST /noop")
    with pytest.raises(SystemExit, match="--csv-full-history"):
        history.read(path)
