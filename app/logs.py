"""Structured (JSON) logging for production, readable lines for a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra= fields are kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(fmt: str, level: str) -> None:
    """Install one stderr handler on the root logger (idempotent across create_app calls)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_checkin_handler", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._checkin_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(level)
    # The scheduler logs every run of every job at INFO; our job wrapper already logs a summary.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))
