"""Numbers for the officials' dashboard: per-day counts, top venues, failed messages, CSV export."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from app.extensions import db
from app.models import Case, Exposure, MessageKind, MessageStatus, OutboxMessage, Venue, VenueOutbreak

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


def _day(column: Any) -> Any:
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _per_day(column: Any, since: datetime, *conditions: Any) -> dict[date, int]:
    day = _day(column)
    rows = db.session.execute(select(day, func.count()).where(column >= since, *conditions).group_by(day)).all()
    return {_as_date(d): int(n) for d, n in rows}


def daily(now: datetime, days: int = 14) -> list[Day]:
    """Cases, exposures and notice messages (by status) for each of the last `days` UTC days."""
    first = now.date() - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time(), tzinfo=now.tzinfo)
    notice_kinds = OutboxMessage.kind.in_([MessageKind.NOTICE, MessageKind.RETRACTION])
    cases = _per_day(Case.created_at, since)
    exposures = _per_day(Exposure.created_at, since)
    sent = _per_day(OutboxMessage.created_at, since, notice_kinds, OutboxMessage.status == MessageStatus.SENT)
    delivered = _per_day(OutboxMessage.created_at, since, notice_kinds, OutboxMessage.status == MessageStatus.DELIVERED)
    failed = _per_day(OutboxMessage.created_at, since, notice_kinds, OutboxMessage.status == MessageStatus.FAILED)
    result = []
    for i in range(days):
        d = first + timedelta(days=i)
        result.append(Day(d, cases.get(d, 0), exposures.get(d, 0), sent.get(d, 0), delivered.get(d, 0),
                          failed.get(d, 0)))  # fmt: skip
    return result


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
