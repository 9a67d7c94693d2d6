"""Random ids so tests never depend on each other's data."""

from __future__ import annotations

import uuid


def suffix() -> str:
    return uuid.uuid4().hex[:8]


def random_user(name: str = "") -> str:
    return f"user-{name}{suffix()}"


def random_name(name: str = "product") -> str:
    return f"{name}-{suffix()}"
