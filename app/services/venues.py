"""Venues and their entrances or halls."""

from __future__ import annotations

import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from app.errors import ValidationError
from app.extensions import db
from app.models import Entrance, EntranceKind, Venue

MIN_STAY_MINUTES = 15
MAX_STAY_MINUTES = 24 * 60


def _new_short_code() -> str:
    """A 9-digit code that doesn't start with 0 (some phones drop a leading zero when texting)."""
    for _ in range(20):
        code = str(secrets.randbelow(900_000_000) + 100_000_000)
        if db.session.scalar(select(Venue.id).where(Venue.short_code == code)) is None:
            return code
    raise RuntimeError("could not find a free venue code")  # 20 collisions in 9e8: not plausible


def validate_venue_fields(name: str, timezone: str, default_stay_minutes: int, capacity: int | None) -> None:
    if not name.strip() or len(name) > 200:
        raise ValidationError("The venue needs a name of at most 200 characters.", field="name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            f"Unknown time zone {timezone!r}; use a name like Europe/Moscow.", field="timezone"
        ) from None
    if not MIN_STAY_MINUTES <= default_stay_minutes <= MAX_STAY_MINUTES:
        raise ValidationError("The default stay must be between 15 minutes and 24 hours.", field="default_stay_minutes")
    if capacity is not None and capacity < 1:
        raise ValidationError("Capacity must be a positive number.", field="capacity")


def create_venue(
    organisation_id: int,
    name: str,
    *,
    address: str = "",
    kind: str = "other",
    timezone: str = "Europe/Moscow",
    default_stay_minutes: int = 60,
    capacity: int | None = None,
    entrance_names: tuple[str, ...] = ("Main entrance",),
) -> Venue:
    """Create a venue with its entrances; every venue has at least one entrance (posters hang there)."""
    validate_venue_fields(name, timezone, default_stay_minutes, capacity)
    venue = Venue(
        organisation_id=organisation_id,
        name=name.strip(),
        address=address.strip(),
        kind=kind,
        timezone=timezone,
        default_stay_minutes=default_stay_minutes,
        capacity=capacity,
        short_code=_new_short_code(),
    )
    db.session.add(venue)
    for entrance_name in entrance_names or ("Main entrance",):
        venue.entrances.append(Entrance(name=entrance_name, kind=EntranceKind.ENTRANCE))
    db.session.flush()
    return venue


def add_entrance(venue: Venue, name: str, kind: EntranceKind = EntranceKind.ENTRANCE) -> Entrance:
    if not name.strip() or len(name) > 200:
        raise ValidationError("The entrance needs a name of at most 200 characters.", field="name")
    entrance = Entrance(venue=venue, name=name.strip(), kind=kind)
    db.session.add(entrance)
    db.session.flush()
    return entrance
