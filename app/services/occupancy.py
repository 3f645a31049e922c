"""Counts for the operator dashboard: check-ins per hour and people present now. Counts only.

Both queries range over Checkin(venue_id, checked_in_at), so they walk the composite index and
stay flat however large the check-ins table grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, or_, select

from app.extensions import db
from app.models import Checkin, Venue
from app.services.venues import MAX_STAY_MINUTES

DASHBOARD_HOURS = 72


@dataclass(frozen=True)
class HourCount:
    starts_at: datetime  # aware UTC, on the hour
    local_label: str  # "20.11 14:00" in the venue's time zone
    checkins: int


@dataclass(frozen=True)
class Occupancy:
    present: int  # people, companions included
    capacity: int | None

    @property
    def ratio(self) -> float | None:
        return None if not self.capacity else self.present / self.capacity


def _hour_bucket(column: ColumnElement[datetime]) -> ColumnElement[str]:
    """The hour of a timestamp as 'YYYY-MM-DD HH' text, the same on both databases."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    return func.strftime("%Y-%m-%d %H", column)


def hourly_checkins(venue: Venue, now: datetime, hours: int = DASHBOARD_HOURS) -> list[HourCount]:
    """Check-ins per UTC hour over the last `hours` hours, oldest first, the current hour included."""
    current_hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    start = current_hour - timedelta(hours=hours - 1)
    bucket = _hour_bucket(Checkin.checked_in_at).label("bucket")
    rows = db.session.execute(
        select(bucket, func.count())
        .where(Checkin.venue_id == venue.id, Checkin.checked_in_at >= start, Checkin.checked_in_at <= now)
        .group_by(bucket)
    ).all()
    counts = {str(label): int(count) for label, count in rows}
    zone = ZoneInfo(venue.timezone)
    result = []
    for i in range(hours):
        hour = start + timedelta(hours=i)
        result.append(
            HourCount(
                starts_at=hour,
                local_label=hour.astimezone(zone).strftime("%d.%m %H:%M"),
                checkins=counts.get(hour.strftime("%Y-%m-%d %H"), 0),
            )
        )
    return result


def current_occupancy(venue: Venue, now: datetime) -> Occupancy:
    """People present now: visits begun within the longest possible stay that have not ended.

    An open visit past its planned check-out counts as ended even before the auto check-out job runs.
    """
    present = db.session.scalar(
        select(func.coalesce(func.sum(Checkin.party_size), 0)).where(
            Checkin.venue_id == venue.id,
            Checkin.checked_in_at > now - timedelta(minutes=MAX_STAY_MINUTES),
            Checkin.checked_in_at <= now,
            or_(
                Checkin.checked_out_at > now,
                Checkin.checked_out_at.is_(None) & (Checkin.planned_checkout_at > now),
            ),
        )
    )
    return Occupancy(present=int(present or 0), capacity=venue.capacity)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str


@dataclass(frozen=True)
class Chart:
    """Geometry of the hourly bar chart, drawn by the template as inline SVG (no script needed)."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    labels: tuple[tuple[float, str], ...]  # (x, text) under the bars, one per 12 hours
    peak: int


def hourly_chart(hours: list[HourCount], width: int = 720, height: int = 160) -> Chart:
    peak = max((h.checkins for h in hours), default=0)
    slot = width / max(len(hours), 1)
    bars = []
    for i, hour in enumerate(hours):
        bar_height = 0.0 if peak == 0 else (height - 4) * hour.checkins / peak
        bars.append(
            Bar(
                x=round(i * slot + 1, 2),
                y=round(height - bar_height, 2),
                width=round(max(slot - 2, 1), 2),
                height=round(bar_height, 2),
                title=f"{hour.local_label}: {hour.checkins}",
            )
        )
    labels = tuple((round(i * slot, 2), hour.local_label) for i, hour in enumerate(hours) if i % 12 == 0)
    return Chart(width=width, height=height, bars=tuple(bars), labels=labels, peak=peak)
