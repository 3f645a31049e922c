"""The JSON check-in's fast path: the visit rules for a person alone, on compiled Core statements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, bindparam, select, text, update

from app.errors import DomainError
from app.extensions import db
from app.models import Checkin, CheckinSource, CheckoutReason, Person, Venue
from app.services import people, posters
from app.services.checkins.rules import check_in_time, continued_until, continues, ending

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


class NeedsGeneralPath(Exception):
    """The open visit must end and a new one carry its companions (it would outlast MAX_VISIT): a job for
    the general path (rules.check_in), which the caller runs instead, in the same transaction."""


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
    at: datetime  # the check-in's time: `now`, or the open visit's start if that is later (see check_in_time)


def quick_step(
    current: Sequence[Any] | None, venue: posters.PosterTarget, now: datetime, ended: VisitView | None = None
) -> QuickStep:
    """The visit rules for a person alone, on a row of open_visit_query (pure; no I/O)."""
    if current is None:
        return QuickStep([], None, ended, now)
    visit_id, venue_id, party_size, source, checked_in_at, planned_checkout_at, name, short_code = current
    checked_in_at, planned_checkout_at = checked_in_at.astimezone(UTC), planned_checkout_at.astimezone(UTC)
    now = check_in_time(now, checked_in_at)
    visit = VisitView(
        visit_id, name, short_code, party_size, CheckinSource(source), checked_in_at, planned_checkout_at, None, None
    )
    if venue_id == venue.venue_id and planned_checkout_at > now:
        until = continued_until(planned_checkout_at, now, timedelta(minutes=venue.default_stay_minutes))
        if continues(checked_in_at, until):
            writes = [(EXTEND_UPDATE, {"b_id": visit_id, "b_until": until})]
            result = QuickResult(replace(visit, planned_checkout_at=until), "continued", ended)
            return QuickStep(writes, result, ended, now)
        if party_size > 1:
            raise NeedsGeneralPath
        # Alone, and continuing would outlast MAX_VISIT: ended here like a visit elsewhere, and begun again.
    # Elsewhere, or here after its planned end (which `ending` turns into an automatic end).
    out_at, out_reason = ending(checked_in_at, planned_checkout_at, now, CheckoutReason.NEXT_CHECKIN)
    writes = [(CLOSE_UPDATE, {"b_id": visit_id, "b_out": out_at, "b_reason": out_reason})]
    return QuickStep(writes, None, replace(visit, checked_out_at=out_at, checkout_reason=out_reason), now)


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
        ended, now = step.ended, step.at
        new_id = connection.execute(INSERT_OPEN, insert_params(person_id, venue, source, now)).scalar()
        if new_id is not None:
            return created(new_id, venue, source, now, ended)
    raise CheckinBusy("Another check-in for you is in progress; please try again.")
