"""Structured (JSON) logging for production, readable lines for a terminal."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
HIDDEN_DETAIL = "[detail hidden: it shows the row's values]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _database_details(exc: BaseException | None) -> set[str]:
    """PostgreSQL's DETAIL texts anywhere in an exception's chain ("Failing row contains (...)",
    "Key (phone_hash)=(...) already exists"): they quote the row, so its personal data too."""
    details: set[str] = set()
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        detail = getattr(getattr(current, "diag", None), "message_detail", None)
        if isinstance(detail, str) and detail:
            details.add(detail)
        pending += [current.__cause__, current.__context__, getattr(current, "orig", None)]
    return details


def safe_exception_text(formatter: logging.Formatter, exc_info: Any) -> str:
    """The traceback as `formatter` prints it, without the database's quotes of row values.

    (Statement parameters are already left out of database errors: hide_parameters in app/__init__.py.)"""
    text = logging.Formatter.formatException(formatter, exc_info)
    for detail in sorted(_database_details(exc_info[1]), key=len, reverse=True):
        text = text.replace(detail, HIDDEN_DETAIL)
    return text


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        # Not the traceback text another handler's formatter may have cached on the record.
        cached, record.exc_text = record.exc_text, None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatException(self, ei: Any) -> str:
        return safe_exception_text(self, ei)


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
            entry["exc"] = safe_exception_text(self, record.exc_info)
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
        handler.setFormatter(TextFormatter())
    root.setLevel(level)
    # The scheduler logs every run of every job at INFO; our job wrapper already logs a summary.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLevelName(level)))
