"""The visit rules through the ORM: check a person in, continue or end their open visit, check out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.errors import DomainError, ValidationError
from app.extensions import db
from app.models import Checkin, CheckinSource, CheckoutReason, Companion, Entrance, Person, Venue
from app.services import people

MAX_PARTY_SIZE = 50
# No visit lasts longer: matching reads a visit as ending at most this long after it began
# (exposures.MAX_STAY), and venues' default stay is at most this long (ck_venues_default_stay_range).
MAX_VISIT = timedelta(hours=24)


class VenueClosed(DomainError):
    status = 410


@dataclass(frozen=True)
class CheckinResult:
    checkin: Checkin
    status: Literal["created", "continued"]
    ended: Checkin | None  # the previous visit this check-in ended, if any


def validate_party(party_size: int, companion_phones: Sequence[str]) -> tuple[int, list[str]]:
    """Party size and normalised companion numbers (blank entries ignored, duplicates dropped)."""
    if not isinstance(party_size, int) or isinstance(party_size, bool) or not 1 <= party_size <= MAX_PARTY_SIZE:
        raise ValidationError(f"The party size must be a whole number from 1 to {MAX_PARTY_SIZE}.", field="party_size")
    phones: list[str] = []
    for raw in companion_phones:
        if not raw or not raw.strip():
            continue
        phone = people.normalise_phone(raw)
        if phone not in phones:
            phones.append(phone)
    if len(phones) > party_size - 1:
        raise ValidationError(
            "There are more companion phone numbers than companions: raise the party size or remove a number.",
            field="companion_phones",
        )
    return party_size, phones


def open_visit(person_id: int) -> Checkin | None:
    """The person's open visit, locked, after the person's row (people.lock_rows: the lock order)."""
    people.lock_rows(Person.__table__.c.id == person_id)
    return db.session.scalar(
        select(Checkin).where(Checkin.person_id == person_id, Checkin.checked_out_at.is_(None)).with_for_update()
    )


def ending(
    checked_in_at: datetime, planned_checkout_at: datetime, now: datetime, reason: CheckoutReason
) -> tuple[datetime, CheckoutReason]:
    """When and why an open visit ends at `now`: at its planned end (auto) if that passed."""
    if planned_checkout_at <= now:
        return planned_checkout_at, CheckoutReason.AUTO
    # A late offline batch can carry a `now` before the open visit began; never end before the start.
    return max(now, checked_in_at), reason


def check_in_time(now: datetime, open_visit_began: datetime) -> datetime:
    """The time a check-in takes effect: `now`, unless the open visit it found began later.

    Two requests for one person whose clocks were read in one order can reach the open visit's row
    lock in the other. The later one in the lock's order then finds a visit that began after its own
    `now`; starting its visit at `now` would overlap the visit that one ended. It takes effect at that
    visit's start instead, so that a person's visits never overlap.
    """
    return max(now, open_visit_began)


def _end(visit: Checkin, now: datetime, reason: CheckoutReason) -> None:
    visit.checked_out_at, visit.checkout_reason = ending(visit.checked_in_at, visit.planned_checkout_at, now, reason)


def _add_companions(visit: Checkin, phones: Sequence[str], party_size: int, now: datetime) -> None:
    existing = list(visit.companions)
    known = {c.person_id for c in existing if c.person_id is not None}
    for phone in phones:
        companion, _ = people.get_or_create_by_phone(phone, now)
        people.mark_seen(companion, now)
        if companion.id in known:
            continue
        known.add(companion.id)
        anonymous = next((c for c in existing if c.person_id is None), None)
        if anonymous is not None:
            # An earlier scan counted this companion without a number; give that slot the number.
            anonymous.person_id = companion.id
            existing.remove(anonymous)
        else:
            visit.companions.append(Companion(person_id=companion.id))
    while len(visit.companions) < party_size - 1:
        visit.companions.append(Companion(person_id=None))


def check_in(
    person: Person,
    venue: Venue,
    entrance: Entrance | None,
    source: CheckinSource,
    now: datetime,
    party_size: int = 1,
    companion_phones: Sequence[str] = (),
    client_id: str | None = None,
    kiosk_id: int | None = None,
) -> CheckinResult:
    """Check `person` in at `venue` following the visit rules above; flushes, never commits.

    Two simultaneous check-ins of one person cannot both open a visit: the loser's insert hits the
    unique index inside a savepoint and the whole decision is made once more against the winner's row.
    """
    if venue.archived_at is not None and venue.archived_at <= now:
        raise VenueClosed("This venue no longer takes check-ins.")
    if entrance is not None and entrance.venue_id != venue.id:
        raise ValidationError("This entrance belongs to another venue.", field="entrance")
    if entrance is not None and entrance.archived_at is not None and entrance.archived_at <= now:
        raise VenueClosed("This entrance no longer takes check-ins.")
    if client_id is not None and (not client_id or len(client_id) > 64):
        raise ValidationError("The client id must have 1 to 64 characters.", field="client_id")
    party_size, phones = validate_party(party_size, companion_phones)
    if client_id is not None:
        earlier = db.session.scalar(select(Checkin).where(Checkin.client_id == client_id))
        if earlier is not None:
            return CheckinResult(earlier, "continued", None)
    try:
        return _check_in_once(person, venue, entrance, source, now, party_size, phones, client_id, kiosk_id)
    except IntegrityError:
        # Another transaction opened a visit for this person (or used this client id) first.
        return _check_in_once(person, venue, entrance, source, now, party_size, phones, client_id, kiosk_id)


def _check_in_once(
    person: Person,
    venue: Venue,
    entrance: Entrance | None,
    source: CheckinSource,
    now: datetime,
    party_size: int,
    phones: list[str],
    client_id: str | None,
    kiosk_id: int | None,
) -> CheckinResult:
    stay = timedelta(minutes=venue.default_stay_minutes)
    with db.session.begin_nested():
        people.mark_seen(person, now)
        current = open_visit(person.id)
        if current is not None:
            now = check_in_time(now, current.checked_in_at)
        ended: Checkin | None = None
        if current is not None and current.planned_checkout_at <= now:
            _end(current, now, CheckoutReason.AUTO)
            ended, current = current, None
        carried: Checkin | None = None
        if current is not None and current.venue_id == venue.id:
            until = continued_until(current.planned_checkout_at, now, stay)
            if continues(current.checked_in_at, until):
                current.planned_checkout_at = until
                current.party_size = max(current.party_size, party_size)
                _add_companions(current, phones, current.party_size, now)
                _check_party_size(current)
                db.session.flush()
                return CheckinResult(current, "continued", None)
            # Continuing would outlast MAX_VISIT: the visit ends here and a new one, with the same party,
            # begins, so that the person stays covered.
            carried = current
        if current is not None:
            _end(current, now, CheckoutReason.NEXT_CHECKIN)
            ended = current
            # Close the old visit before the new one exists: the unique index allows one open row.
            db.session.flush()
        visit = Checkin(
            person_id=person.id,
            venue_id=venue.id,
            entrance_id=entrance.id if entrance is not None else None,
            party_size=party_size,
            source=source,
            checked_in_at=now,
            planned_checkout_at=now + stay,
            client_id=client_id,
            kiosk_id=kiosk_id,
            created_at=now,
        )
        db.session.add(visit)
        if carried is not None:
            visit.party_size = max(carried.party_size, party_size)
            visit.companions.extend(Companion(person_id=c.person_id) for c in carried.companions)
        _add_companions(visit, phones, visit.party_size, now)
        _check_party_size(visit)
        db.session.flush()
    return CheckinResult(visit, "created", ended)


def _check_party_size(visit: Checkin) -> None:
    """A companion number not given before joins the party: the party grows to hold everyone."""
    if len(visit.companions) + 1 > MAX_PARTY_SIZE:
        raise ValidationError(
            f"A party has at most {MAX_PARTY_SIZE} people, companions with numbers included.",
            field="companion_phones",
        )
    visit.party_size = max(visit.party_size, len(visit.companions) + 1)


def continued_until(planned_checkout_at: datetime, now: datetime, stay: timedelta) -> datetime:
    """A repeat check-in at the open visit's venue: the person is evidently still there."""
    return max(planned_checkout_at, now + stay)


def continues(checked_in_at: datetime, until: datetime) -> bool:
    """Whether a visit that began at `checked_in_at` may continue until `until`: for at most MAX_VISIT.
    Otherwise a repeat check-in ends it and opens a new visit at the same venue."""
    return until - checked_in_at <= MAX_VISIT


def check_out(person: Person, now: datetime) -> Checkin | None:
    """End the person's open visit at `now` (or at its planned end if that passed); None if none is open."""
    visit = open_visit(person.id)
    if visit is None:
        return None
    _end(visit, now, CheckoutReason.VISITOR)
    people.mark_seen(person, now)
    db.session.flush()
    return visit
