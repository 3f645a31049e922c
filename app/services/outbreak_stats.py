"""Numbers for the officials' dashboard: per-day counts, top venues, failed messages, CSV export."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import case, func, literal, select

from app.extensions import db
from app.models import Case, Exposure, MessageKind, MessageStatus, OutboxMessage, Venue, VenueOutbreak
from app.services.matching import local_midnight

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Day:
    day: date
    cases: int
    exposures: int
    sent: int
    delivered: int
    failed: int


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str


def _per_day(column: Any, bounds: list[datetime], *conditions: Any) -> list[int]:
    """Rows of `column` in each [bounds[i], bounds[i + 1]): one query, bucketed by a CASE over the UTC
    instants of local midnights, so days follow the zone's calendar (23 or 25 hours across a DST change)
    the same way on every database."""
    inner = bounds[1:-1]
    bucket = case(*((column < bound, i) for i, bound in enumerate(inner)), else_=len(inner)) if inner else literal(0)
    rows = db.session.execute(
        select(bucket, func.count()).where(column >= bounds[0], column < bounds[-1], *conditions).group_by(bucket)
    ).all()
    counts = [0] * (len(bounds) - 1)
    for i, n in rows:
        counts[int(i)] += int(n)
    return counts


def daily(now: datetime, days: int = 14, tz: ZoneInfo | None = None) -> list[Day]:
    """Cases, exposures and notice messages (by status) for each of the last `days` calendar days in
    `tz` (the deployment's DEFAULT_TIMEZONE unless given), today included."""
    zone = tz if tz is not None else ZoneInfo(current_app.config["DEFAULT_TIMEZONE"])
    first = now.astimezone(zone).date() - timedelta(days=days - 1)
    bounds = [local_midnight(first + timedelta(days=i), zone) for i in range(days + 1)]
    notice_kinds = OutboxMessage.kind.in_([MessageKind.NOTICE, MessageKind.RETRACTION])

    def notices(status: MessageStatus) -> list[int]:
        return _per_day(OutboxMessage.created_at, bounds, notice_kinds, OutboxMessage.status == status)

    series = zip(
        _per_day(Case.created_at, bounds),
        _per_day(Exposure.created_at, bounds),
        notices(MessageStatus.SENT),
        notices(MessageStatus.DELIVERED),
        notices(MessageStatus.FAILED),
        strict=True,
    )
    return [Day(first + timedelta(days=i), *counts) for i, counts in enumerate(series)]


def top_venues(now: datetime, days: int = 14, limit: int = 10) -> list[tuple[int, str, int]]:
    """(venue id, name, exposures) for the venues with the most exposures recently."""
    since = now - timedelta(days=days)
    count = func.count(Exposure.id)
    rows = db.session.execute(
        select(Venue.id, Venue.name, count)
        .join(Exposure, Exposure.venue_id == Venue.id)
        .where(Exposure.created_at >= since)
        .group_by(Venue.id, Venue.name)
        .order_by(count.desc(), Venue.id)
        .limit(limit)
    ).all()
    return [(int(i), str(n), int(c)) for i, n, c in rows]


def failed_message_count() -> int:
    return int(
        db.session.scalar(
            select(func.count()).where(
                OutboxMessage.status == MessageStatus.FAILED,
                OutboxMessage.kind.in_([MessageKind.NOTICE, MessageKind.RETRACTION]),
            )
        )
        or 0
    )


def outbreak_count(now: datetime, days: int = 14) -> int:
    return int(
        db.session.scalar(select(func.count()).where(VenueOutbreak.detected_at >= now - timedelta(days=days))) or 0
    )


def bars(values: list[tuple[str, int]], width: float = 600, height: float = 160) -> list[Bar]:
    """Geometry of a bar chart drawn server-side as inline SVG (no script needed)."""
    if not values:
        return []
    top = max(v for _, v in values) or 1
    slot = width / len(values)
    result = []
    for i, (label, value) in enumerate(values):
        h = (height - 20) * value / top
        result.append(Bar(x=i * slot + slot * 0.1, y=height - 20 - h, width=slot * 0.8, height=h, value=value,
                          label=label))  # fmt: skip
    return result


def escape_cell(value: Any) -> str:
    """Spreadsheet-safe text: a cell that a spreadsheet would run as a formula gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def export_csv(now: datetime, days: int = 14) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["day", "cases", "exposures", "notices_sent", "notices_delivered", "notices_failed"])
    for d in daily(now, days):
        writer.writerow([d.day.isoformat(), d.cases, d.exposures, d.sent, d.delivered, d.failed])
    writer.writerow([])
    writer.writerow(["venue_id", "venue", "exposures"])
    for venue_id, name, count in top_venues(now, days, limit=100):
        writer.writerow([venue_id, escape_cell(name), count])
    return buffer.getvalue()
