"""Quiet hours: when an SMS may wake someone, and when it may go out instead (pure functions)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_hhmm(value: str) -> time:
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


def is_quiet(local: time, start: time, end: time) -> bool:
    """True when the local wall-clock time falls in [start, end).

    A window with start > end crosses midnight (22:00-09:00); start == end means no quiet hours.
    """
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def spread_offset(message_id: int, spread: timedelta) -> timedelta:
    """A stable offset in [0, spread) from the message id, so a morning queue goes out spread out.

    Hashing (rather than id modulo spread) keeps consecutive ids apart: the messages of one
    exposure batch, queued together, do not leave together.
    """
    seconds = int(spread.total_seconds())
    if seconds <= 0:
        return timedelta(0)
    digest = hashlib.blake2b(message_id.to_bytes(8, "big", signed=True), digest_size=8).digest()
    return timedelta(seconds=int.from_bytes(digest, "big") % seconds)


def zone_or_default(name: str, default: str) -> ZoneInfo:
    """The recipient's zone; an unknown or empty name falls back to the default zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory's name, or far too long
        return ZoneInfo(default)


def _at_local(day: date, wall: time, zone: ZoneInfo) -> datetime:
    # A wall time that does not exist that day (a spring-forward gap) resolves to the instant one
    # offset-change later, which zoneinfo does with fold=0; a repeated hour takes its first instance.
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def quiet_until(
    now: datetime,
    timezone: str,
    *,
    start: time,
    end: time,
    default_timezone: str = "Europe/Moscow",
    message_id: int = 0,
    spread: timedelta = timedelta(0),
) -> datetime | None:
    """None if an SMS may go out at `now` (aware UTC) in the recipient's zone; otherwise the UTC
    instant it may go: the end of the quiet window in local time plus the message's spread offset.

    Computed from the local calendar, so a daylight-saving change during the night moves the
    morning correctly (09:00 stays 09:00 local, whatever the UTC offset did overnight).
    """
    if now.tzinfo is None:
        raise ValueError("naive datetime refused: pass an aware UTC datetime")
    zone = zone_or_default(timezone, default_timezone)
    local = now.astimezone(zone)
    if not is_quiet(local.time().replace(tzinfo=None), start, end):
        return None
    # In the evening part of a window crossing midnight, the morning is tomorrow.
    day = local.date() + timedelta(days=1) if start > end and local.time() >= start else local.date()
    morning = _at_local(day, end, zone)
    if morning <= now:  # only when the window's end fell into a skipped hour; go now
        return None
    return morning + spread_offset(message_id, spread)
