"""Fault hooks the composition root injects for crash tests (FAULT_HOOK="module:function");
production code carries none of them."""

from __future__ import annotations

import os
import signal


def kill_after_reserve() -> None:
    """The order API process dies between a reservation and its order's write."""
    os.kill(os.getpid(), signal.SIGKILL)
