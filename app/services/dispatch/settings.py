"""The dispatcher's settings, read from the app config, and the tally of what a run did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

from app.services.quiet_hours import parse_hhmm


@dataclass(frozen=True)
class DispatchSettings:
    batch_size: int = 500
    max_attempts: int = 8
    concurrency: int = 16
    claim_seconds: int = 120
    quiet_start: time = time(22, 0)
    quiet_end: time = time(9, 0)
    quiet_spread: timedelta = timedelta(minutes=60)
    default_timezone: str = "Europe/Moscow"

    @classmethod
    def from_config(cls, config: Any) -> DispatchSettings:
        def get(name: str) -> int:
            return int(config[name])

        return cls(
            batch_size=get("DISPATCH_BATCH_SIZE"),
            max_attempts=get("DISPATCH_MAX_ATTEMPTS"),
            concurrency=get("DISPATCH_CONCURRENCY"),
            claim_seconds=get("DISPATCH_CLAIM_SECONDS"),
            quiet_start=parse_hhmm(config["QUIET_HOURS_START"]),
            quiet_end=parse_hhmm(config["QUIET_HOURS_END"]),
            quiet_spread=timedelta(minutes=get("QUIET_HOURS_SPREAD_MINUTES")),
            default_timezone=config["DEFAULT_TIMEZONE"],
        )


@dataclass
class DispatchSummary:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unconfirmed: int = 0
    deferred: int = 0  # moved to the morning by quiet hours
    recovered: int = 0  # expired claims turned unconfirmed

    def add(self, other: DispatchSummary) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
