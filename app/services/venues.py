"""Venues and their entrances or halls: create, edit, archive, and scoped look-ups for operators."""

from __future__ import annotations

import secrets
import unicodedata
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from app.errors import NotFoundError, ValidationError
from app.extensions import db
from app.models import Entrance, EntranceKind, Venue

MIN_STAY_MINUTES = 15
MAX_STAY_MINUTES = 24 * 60
MAX_CAPACITY = 1_000_000
VENUE_KINDS = (
    "cafe",
    "restaurant",
    "bar",
    "club",
    "theatre",
    "cinema",
    "concert_hall",
    "museum",
    "shop",
    "sports",
    "education",
    "office",
    "government",
    "medical",
    "other",
)
EDITABLE_FIELDS = ("name", "address", "kind", "timezone", "default_stay_minutes", "capacity")


def _new_short_code() -> str:
    """A 9-digit code that doesn't start with 0 (some phones drop a leading zero when texting)."""
    for _ in range(20):
        code = str(secrets.randbelow(900_000_000) + 100_000_000)
        if db.session.scalar(select(Venue.id).where(Venue.short_code == code)) is None:
            return code
    raise RuntimeError("could not find a free venue code")  # 20 collisions in 9e8: not plausible


def clean_name(value: str, what: str, field: str = "name", limit: int = 200) -> str:
    """Names in any script, NFC-normalised, single-spaced; control and bidi-override characters refused.

    A bidi override (U+202E) would make a printed poster read differently from what was registered.
    """
    value = " ".join(unicodedata.normalize("NFC", value).split())
    if not value or len(value) > limit:
        raise ValidationError(f"The {what} needs a name of at most {limit} characters.", field=field)
    if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"} for ch in value):
        raise ValidationError(f"The {what} name contains invisible control characters.", field=field)
    return value


# The longest IANA zone name is 32 characters (America/Argentina/ComodRivadavia).
MAX_TIMEZONE_LENGTH = 64


def validate_venue_fields(name: str, timezone: str, default_stay_minutes: int, capacity: int | None) -> None:
    clean_name(name, "venue")
    try:
        if len(timezone) > MAX_TIMEZONE_LENGTH:
            raise ValueError(timezone)
        ZoneInfo(timezone)
    # OSError: a name that is a directory of the zone database ("Europe") or too long for a file name.
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(
            f"Unknown time zone {timezone!r}; use a name like Europe/Moscow.", field="timezone"
        ) from None
    if not MIN_STAY_MINUTES <= default_stay_minutes <= MAX_STAY_MINUTES:
        raise ValidationError("The default stay must be between 15 minutes and 24 hours.", field="default_stay_minutes")
    if capacity is not None and not 1 <= capacity <= MAX_CAPACITY:
        raise ValidationError(f"Capacity must be a number from 1 to {MAX_CAPACITY:,}.", field="capacity")


def _clean_address(address: str) -> str:
    address = " ".join(address.split())
    if len(address) > 300:
        raise ValidationError("The address must be at most 300 characters long.", field="address")
    return address


def _clean_kind(kind: str) -> str:
    kind = kind.strip().lower() or "other"
    if kind not in VENUE_KINDS:
        raise ValidationError(f"Unknown kind of venue {kind!r}; use one of: {', '.join(VENUE_KINDS)}.", field="kind")
    return kind


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
    entrances = [clean_name(n, "entrance") for n in entrance_names] or ["Main entrance"]
    venue = Venue(
        organisation_id=organisation_id,
        name=clean_name(name, "venue"),
        address=_clean_address(address),
        kind=_clean_kind(kind),
        timezone=timezone,
        default_stay_minutes=default_stay_minutes,
        capacity=capacity,
        short_code=_new_short_code(),
    )
    db.session.add(venue)
    for entrance_name in entrances:
        venue.entrances.append(Entrance(name=entrance_name, kind=EntranceKind.ENTRANCE))
    db.session.flush()
    return venue


def update_venue(venue: Venue, changes: dict[str, Any]) -> Venue:
    """Apply the given fields (a subset of EDITABLE_FIELDS); all are validated before any is written."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    merged = {field: changes.get(field, getattr(venue, field)) for field in EDITABLE_FIELDS}
    validate_venue_fields(merged["name"], merged["timezone"], merged["default_stay_minutes"], merged["capacity"])
    venue.name = clean_name(merged["name"], "venue")
    venue.address = _clean_address(merged["address"])
    venue.kind = _clean_kind(merged["kind"])
    venue.timezone = merged["timezone"]
    venue.default_stay_minutes = merged["default_stay_minutes"]
    venue.capacity = merged["capacity"]
    db.session.flush()
    return venue


def archive_venue(venue: Venue, now: datetime) -> None:
    """An archived venue takes no check-ins; its posters answer 410 and it leaves the operator's lists."""
    if venue.archived_at is None:
        venue.archived_at = now
        db.session.flush()


def add_entrance(venue: Venue, name: str, kind: EntranceKind = EntranceKind.ENTRANCE) -> Entrance:
    if venue.archived_at is not None:
        raise ValidationError("This venue is archived; entrances cannot be added.")
    entrance = Entrance(venue=venue, name=clean_name(name, "entrance"), kind=kind)
    db.session.add(entrance)
    db.session.flush()
    return entrance


def update_entrance(entrance: Entrance, name: str | None = None, kind: EntranceKind | None = None) -> Entrance:
    if name is not None:
        entrance.name = clean_name(name, "entrance")
    if kind is not None:
        entrance.kind = kind
    db.session.flush()
    return entrance


def archive_entrance(entrance: Entrance, now: datetime) -> None:
    """Close one entrance; a venue keeps at least one open entrance."""
    if entrance.archived_at is not None:
        return
    others = [e for e in entrance.venue.entrances if e.id != entrance.id and e.archived_at is None]
    if not others:
        raise ValidationError("A venue needs at least one open entrance; add another before closing this one.")
    entrance.archived_at = now
    db.session.flush()


def parse_entrance_kind(value: str) -> EntranceKind:
    try:
        return EntranceKind(value.strip().lower() or "entrance")
    except ValueError:
        raise ValidationError("The kind must be 'entrance' or 'hall'.", field="kind") from None


# --- scoped look-ups: an operator only ever reaches their own organisation's records ----------


def venues_of(organisation_id: int, *, include_archived: bool = False) -> list[Venue]:
    query = select(Venue).where(Venue.organisation_id == organisation_id)
    if not include_archived:
        query = query.where(Venue.archived_at.is_(None))
    return list(db.session.scalars(query.order_by(Venue.name, Venue.id)))


MAX_ID = 2**31 - 1  # ids are INTEGER columns; larger numbers from a URL must not reach the driver


def is_valid_id(value: int) -> bool:
    return 1 <= value <= MAX_ID


def venue_of(organisation_id: int, venue_id: int) -> Venue:
    """The venue if it belongs to the organisation; otherwise 404, exactly as if it did not exist."""
    venue = db.session.get(Venue, venue_id) if is_valid_id(venue_id) else None
    if venue is None or venue.organisation_id != organisation_id:
        raise NotFoundError("No such venue.")
    return venue


def entrance_of(organisation_id: int, entrance_id: int) -> Entrance:
    entrance = db.session.get(Entrance, entrance_id) if is_valid_id(entrance_id) else None
    if entrance is None or entrance.venue.organisation_id != organisation_id:
        raise NotFoundError("No such entrance.")
    return entrance


def open_entrances(venue: Venue) -> list[Entrance]:
    return [e for e in venue.entrances if e.archived_at is None]
