"""`make up` (devtools.procs up) that fails part-way stops what it started."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import procs
from tests.e2e.conftest import free_port


def test_a_failed_up_stops_the_processes_it_started(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The order API refuses the development secrets without the switch: it exits at once.
    monkeypatch.setenv("ALLOW_DEV_SECRETS", "false")
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("PAYMENT_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("ORDER_API_PORT", str(free_port()))
    with pytest.raises(procs.ProcessFailed, match="refusing to start"):
        procs.up(tmp_path)
    left = [p.name for p in procs._procs(tmp_path) if p.alive()]
    assert left == []
    pids = [p.pid() for p in procs._procs(tmp_path)]
    assert pids == [None, None, None]  # pid files removed
