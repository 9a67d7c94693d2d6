"""The logging set-up of all three processes: LOG_FORMAT (text | json), LOG_LEVEL, and the
ids a handler binds for what it logs (`bind_ids`). Fields and why nothing logs per request:
docs/observability.md, "Logs"."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

IDS = ("order_id", "deal_id", "product_id", "event_id", "payment_id")
LogFormat = Literal["text", "json"]
_bound: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("hotdeal_log_ids",
                                                                        default={})  # noqa: B039
# Libraries that log per message or per connection at INFO.
QUIET = {"aiokafka": logging.WARNING, "uvicorn.access": logging.WARNING}


@contextlib.contextmanager
def bind_ids(**ids: object) -> Iterator[None]:
    """Add these ids to every record logged in this context (a task and what it awaits)."""
    token = _bound.set({**_bound.get(), **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def _ids(record: logging.LogRecord) -> dict[str, str]:
    ids = dict(_bound.get())
    for name in IDS:
        value = record.__dict__.get(name)
        if value is not None:
            ids[name] = str(value)
    return ids


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "service": self.service,
            "message": record.getMessage(), **_ids(record)}
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = _ids(record)
        if not ids:
            return text
        first, newline, rest = text.partition("\n")  # the ids before any traceback
        return first + " [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]" + newline + rest


def configure_logging(service: str, fmt: LogFormat = "text", level: str = "INFO") -> None:
    """Replace the root logger's handlers with one on stderr in `fmt` at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(max(quiet, root.level))
