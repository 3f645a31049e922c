"""Visit rules: check in, continue, end, check out and correct a person's visits.

Rules (PRODUCT.md, "Default rules"):
- one open visit per person, enforced by the partial unique index `uq_checkins_one_open_visit_per_person`;
- a repeat check-in at the venue of the open visit continues it: no new row; the planned end moves to
  `now + default stay` if that is later (the person is evidently still there), the party size can grow
  (never shrink) and new companions are added;
- a check-in elsewhere ends the open visit at `now` (reason next_checkin);
- an open visit whose planned end already passed is closed at its planned end (reason auto), never at
  `now`, so a forgotten check-out cannot stretch a stay;
- a client id (kiosks, offline clients) makes a re-sent check-in return the visit it already created.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from app.errors import DomainError, NotFoundError, ValidationError
from app.extensions import db
from app.models import Checkin, CheckinSource, CheckoutReason, Companion, Entrance, Person, Venue
from app.services import people, posters

MAX_PARTY_SIZE = 50
MAX_VISIT = timedelta(hours=24)
# A correction may move a visit, not invent another one: the new start stays this close to the old.
MAX_CORRECTION_SHIFT = timedelta(hours=24)


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
        ended: Checkin | None = None
        if current is not None and current.planned_checkout_at <= now:
            _end(current, now, CheckoutReason.AUTO)
            ended, current = current, None
        if current is not None and current.venue_id == venue.id:
            current.planned_checkout_at = continued_until(current.planned_checkout_at, now, stay)
            current.party_size = max(current.party_size, party_size)
            _add_companions(current, phones, current.party_size, now)
            db.session.flush()
            return CheckinResult(current, "continued", None)
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
        _add_companions(visit, phones, party_size, now)
        db.session.flush()
    return CheckinResult(visit, "created", ended)


def continued_until(planned_checkout_at: datetime, now: datetime, stay: timedelta) -> datetime:
    """A repeat check-in at the open visit's venue: the person is evidently still there."""
    return max(planned_checkout_at, now + stay)


# --- the JSON check-in's fast path ---------------------------------------------------------------
#
# A visitor alone (no companions, no client id) checking in through the API is the busiest path of
# the whole service. It applies the same rules as check_in (through `ending` and `continued_until`)
# with a few Core statements instead of the ORM: read the open visit with its venue, close or extend
# it, insert the new one. The partial unique index decides races: the insert does nothing if another
# request opened a visit meanwhile, and the decision is made once more against that visit.
# tests/app/visitors/test_checkin_fast_path.py runs both paths side by side on random sequences.


@dataclass(frozen=True)
class VisitView:
    """A visit as the check-in answer shows it."""

    id: int
    venue_name: str
    venue_short_code: str
    party_size: int
    source: CheckinSource
    checked_in_at: datetime
    planned_checkout_at: datetime
    checked_out_at: datetime | None
    checkout_reason: CheckoutReason | None

    @classmethod
    def of(cls, visit: Checkin, venue: Venue | None) -> VisitView:
        return cls(
            visit.id,
            venue.name if venue else "",
            venue.short_code if venue else "",
            visit.party_size,
            visit.source,
            visit.checked_in_at,
            visit.planned_checkout_at,
            visit.checked_out_at,
            visit.checkout_reason,
        )


@dataclass(frozen=True)
class QuickResult:
    checkin: VisitView
    status: Literal["created", "continued"]
    ended: VisitView | None


class CheckinBusy(DomainError):
    status = 503


_c = Checkin.__table__
_v = Venue.__table__
_p = Person.__table__


def open_visit_query(person_id: Any) -> Select[Any]:
    """The person's open visit with its venue's name, locked: `person_id` is a bind parameter or an
    expression (the fast path finds the person from the device in the same statement)."""
    return (
        select(
            _c.c.id,
            _c.c.venue_id,
            _c.c.party_size,
            _c.c.source,
            _c.c.checked_in_at,
            _c.c.planned_checkout_at,
            _v.c.name,
            _v.c.short_code,
        )
        .join(_v, _v.c.id == _c.c.venue_id)
        .where(_c.c.person_id == person_id, _c.c.checked_out_at.is_(None))
        .with_for_update(of=_c)
    )


# Built once, executed on the session's connection: building and compiling a statement costs more
# Python time than the database needs to run it.
_OPEN_VISIT = open_visit_query(bindparam("person_id"))
EXTEND_UPDATE = update(_c).where(_c.c.id == bindparam("b_id")).values(planned_checkout_at=bindparam("b_until"))
CLOSE_UPDATE = (
    update(_c)
    .where(_c.c.id == bindparam("b_id"))
    .values(checked_out_at=bindparam("b_out"), checkout_reason=bindparam("b_reason"))
)
SEEN_UPDATE = update(_p).where(_p.c.id == bindparam("b_id")).values(last_seen_at=bindparam("b_at"))
# The same statement on PostgreSQL and SQLite; its conflict target is uq_checkins_one_open_visit_per_person.
INSERT_OPEN = (
    text(
        "INSERT INTO checkins (person_id, venue_id, entrance_id, party_size, source, checked_in_at, "
        "planned_checkout_at, created_at) VALUES (:person_id, :venue_id, :entrance_id, 1, :source, :checked_in_at, "
        ":planned_checkout_at, :checked_in_at) "
        "ON CONFLICT (person_id) WHERE checked_out_at IS NULL DO NOTHING RETURNING id"
    )
    .bindparams(
        bindparam("source", type_=_c.c.source.type),
        bindparam("checked_in_at", type_=_c.c.checked_in_at.type),
        bindparam("planned_checkout_at", type_=_c.c.planned_checkout_at.type),
    )
    .columns(id=_c.c.id.type)
)
_RACE_ATTEMPTS = 3


@dataclass(frozen=True)
class QuickStep:
    """What one round of quick_check_in does with the open visit it read (None: no open visit)."""

    writes: list[tuple[Any, dict[str, Any]]]  # statements (EXTEND_UPDATE, CLOSE_UPDATE) with parameters
    continued: QuickResult | None  # the answer when the open visit continues; else INSERT_OPEN follows
    ended: VisitView | None  # the visit this round ends


def quick_step(
    current: Sequence[Any] | None, venue: posters.PosterTarget, now: datetime, ended: VisitView | None = None
) -> QuickStep:
    """The visit rules for a person alone, on a row of open_visit_query (pure; no I/O)."""
    if current is None:
        return QuickStep([], None, ended)
    visit_id, venue_id, party_size, source, checked_in_at, planned_checkout_at, name, short_code = current
    checked_in_at, planned_checkout_at = checked_in_at.astimezone(UTC), planned_checkout_at.astimezone(UTC)
    visit = VisitView(
        visit_id, name, short_code, party_size, CheckinSource(source), checked_in_at, planned_checkout_at, None, None
    )
    if venue_id == venue.venue_id and planned_checkout_at > now:
        until = continued_until(planned_checkout_at, now, timedelta(minutes=venue.default_stay_minutes))
        writes = [(EXTEND_UPDATE, {"b_id": visit_id, "b_until": until})]
        return QuickStep(writes, QuickResult(replace(visit, planned_checkout_at=until), "continued", ended), ended)
    # Elsewhere, or here after its planned end (which `ending` turns into an automatic end).
    out_at, out_reason = ending(checked_in_at, planned_checkout_at, now, CheckoutReason.NEXT_CHECKIN)
    writes = [(CLOSE_UPDATE, {"b_id": visit_id, "b_out": out_at, "b_reason": out_reason})]
    return QuickStep(writes, None, replace(visit, checked_out_at=out_at, checkout_reason=out_reason))


def insert_params(person_id: int, venue: posters.PosterTarget, source: CheckinSource, now: datetime) -> dict[str, Any]:
    """INSERT_OPEN's parameters for a new visit starting now."""
    return {
        "person_id": person_id,
        "venue_id": venue.venue_id,
        "entrance_id": venue.entrance_id,
        "source": source,
        "checked_in_at": now,
        "planned_checkout_at": now + timedelta(minutes=venue.default_stay_minutes),
    }


def created(
    new_id: int, venue: posters.PosterTarget, source: CheckinSource, now: datetime, ended: VisitView | None
) -> QuickResult:
    until = now + timedelta(minutes=venue.default_stay_minutes)
    view = VisitView(new_id, venue.venue_name, venue.venue_short_code, 1, source, now, until, None, None)
    return QuickResult(view, "created", ended)


def quick_check_in(
    person_id: int,
    last_seen_at: datetime | None,
    venue: posters.PosterTarget,
    source: CheckinSource,
    now: datetime,
    ended: VisitView | None = None,
) -> QuickResult:
    """check_in for one person without companions or client id, on plain values; flushes nothing
    through the ORM and never commits. `ended`: a visit an earlier round already ended."""
    connection = db.session.connection()
    if people.seen_is_stale(last_seen_at, now):
        connection.execute(SEEN_UPDATE, {"b_id": person_id, "b_at": now})
    for _attempt in range(_RACE_ATTEMPTS):
        step = quick_step(connection.execute(_OPEN_VISIT, {"person_id": person_id}).first(), venue, now, ended)
        for statement, params in step.writes:
            connection.execute(statement, params)
        if step.continued is not None:
            return step.continued
        ended = step.ended
        new_id = connection.execute(INSERT_OPEN, insert_params(person_id, venue, source, now)).scalar()
        if new_id is not None:
            return created(new_id, venue, source, now, ended)
    raise CheckinBusy("Another check-in for you is in progress; please try again.")


def check_out(person: Person, now: datetime) -> Checkin | None:
    """End the person's open visit at `now` (or at its planned end if that passed); None if none is open."""
    visit = open_visit(person.id)
    if visit is None:
        return None
    _end(visit, now, CheckoutReason.VISITOR)
    people.mark_seen(person, now)
    db.session.flush()
    return visit


def own_visit(person: Person, checkin_id: int) -> Checkin:
    """One of the person's own visits; anyone else's is 'not found' (its existence is not revealed)."""
    visit = db.session.get(Checkin, checkin_id)
    if visit is None or visit.person_id != person.id:
        raise NotFoundError("No such visit among yours.")
    return visit


def correct_times(
    person: Person,
    checkin_id: int,
    checked_in_at: datetime,
    checked_out_at: datetime,
    now: datetime,
    retention_days: int = 21,
) -> Checkin:
    """Let a visitor fix the times of their own visit, within limits that keep the record plausible.

    The corrected visit must start and end in the past, last at most 24 hours, start within the
    retention period and within 24 hours of its recorded start, and not overlap another of the
    person's visits. A correction closes an open visit.
    """
    visit = own_visit(person, checkin_id)
    if checked_in_at.tzinfo is None or checked_out_at.tzinfo is None:
        raise ValidationError("Times must include a time zone.", field="checked_in_at")
    if checked_out_at <= checked_in_at:
        raise ValidationError("The visit must end after it starts.", field="checked_out_at")
    if checked_out_at > now:
        raise ValidationError("A visit cannot end in the future.", field="checked_out_at")
    if checked_out_at - checked_in_at > MAX_VISIT:
        raise ValidationError("A visit cannot last longer than 24 hours.", field="checked_out_at")
    if checked_in_at < now - timedelta(days=retention_days):
        raise ValidationError(f"Only visits of the last {retention_days} days can be corrected.", field="checked_in_at")
    if abs(checked_in_at - visit.checked_in_at) > MAX_CORRECTION_SHIFT:
        raise ValidationError("A correction can move the start by at most 24 hours.", field="checked_in_at")
    other_end = func.coalesce(Checkin.checked_out_at, Checkin.planned_checkout_at)
    overlapping = db.session.scalar(
        select(func.count())
        .select_from(Checkin)
        .where(
            Checkin.person_id == person.id,
            Checkin.id != visit.id,
            Checkin.checked_in_at < checked_out_at,
            other_end > checked_in_at,
        )
    )
    if overlapping:
        raise ValidationError("These times overlap another of your visits.", field="checked_in_at")
    visit.checked_in_at = checked_in_at
    visit.checked_out_at = checked_out_at
    visit.planned_checkout_at = checked_out_at
    visit.checkout_reason = CheckoutReason.CORRECTED
    visit.corrected_at = now
    db.session.flush()
    return visit


def visits_of(person: Person, now: datetime, retention_days: int) -> list[Checkin]:
    """The person's visits still within retention, newest first."""
    return list(
        db.session.scalars(
            select(Checkin)
            .where(Checkin.person_id == person.id, Checkin.checked_in_at >= now - timedelta(days=retention_days))
            .order_by(Checkin.checked_in_at.desc())
        )
    )
