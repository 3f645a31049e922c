"""Model factories for tests: they add and flush, never commit."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from app.extensions import db
from app.models import (
    Case,
    Checkin,
    CheckinSource,
    Entrance,
    EntranceKind,
    Organisation,
    Person,
    Venue,
)
from app.services.personal_data import keyring

_seq = itertools.count(1)


def organisation(name: str = "Test organisation") -> Organisation:
    org = Organisation(name=name)
    db.session.add(org)
    db.session.flush()
    return org


def venue(
    org: Organisation | None = None,
    name: str = "Кафе «Тест»",
    *,
    timezone: str = "Europe/Moscow",
    default_stay_minutes: int = 60,
    capacity: int | None = 50,
    halls: tuple[str, ...] = (),
) -> Venue:
    org = org or organisation()
    v = Venue(
        organisation_id=org.id,
        name=name,
        timezone=timezone,
        default_stay_minutes=default_stay_minutes,
        capacity=capacity,
        short_code=f"{100_000_000 + next(_seq):09d}",
    )
    v.entrances.append(Entrance(name="Main entrance", kind=EntranceKind.ENTRANCE))
    for hall in halls:
        v.entrances.append(Entrance(name=hall, kind=EntranceKind.HALL))
    db.session.add(v)
    db.session.flush()
    return v


def person(phone: str | None = None) -> Person:
    phone = phone or f"+7916{next(_seq):07d}"
    ring = keyring()
    p = Person(
        phone_hash=ring.lookup_hash(phone, context="phone"),
        phone_enc=ring.encrypt(phone, context="phone"),
    )
    db.session.add(p)
    db.session.flush()
    return p


def checkin(
    who: Person,
    where: Venue,
    checked_in_at: datetime,
    *,
    minutes: int | None = 60,
    planned_minutes: int | None = None,
    entrance: Entrance | None = None,
    source: CheckinSource = CheckinSource.POSTER,
    party_size: int = 1,
    client_id: str | None = None,
) -> Checkin:
    """A visit; `minutes=None` leaves it open (no check-out yet)."""
    planned = checked_in_at + timedelta(minutes=planned_minutes or where.default_stay_minutes)
    c = Checkin(
        person_id=who.id,
        venue_id=where.id,
        entrance_id=(entrance or where.entrances[0]).id,
        party_size=party_size,
        source=source,
        checked_in_at=checked_in_at,
        planned_checkout_at=planned,
        checked_out_at=None if minutes is None else checked_in_at + timedelta(minutes=minutes),
        client_id=client_id,
    )
    db.session.add(c)
    db.session.flush()
    return c


def case(who: Person, tested_on: datetime, created_at: datetime) -> Case:
    c = Case(person_id=who.id, tested_on=tested_on.date(), created_at=created_at)
    db.session.add(c)
    db.session.flush()
    return c
