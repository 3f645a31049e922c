"""Recording verified kiosk check-ins: the visit rules applied to a whole batch in a few statements."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, NamedTuple

from sqlalchemy import ARRAY, ColumnElement, Select, any_, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from app.errors import DomainError, is_transient_database_error
from app.extensions import db
from app.models import Checkin, CheckinSource, CheckoutReason, Person
from app.services import people
from app.services.checkins.rules import MAX_VISIT, continues
from app.services.kiosk_sync.enrolment import KioskContext

WRITE_ATTEMPTS = 3


class KioskBusy(DomainError):
    """Concurrent writes for the same people kept colliding; the kiosk retries the batch later."""

    status = 503


class _StaleVisits(Exception):
    """A visit changed between reading and writing it (another request won the race)."""


class VerifiedItem(NamedTuple):
    """A check-in whose token verified: who, when, how."""

    index: int
    client_id: str
    person_id: int
    observed_at: datetime
    source: CheckinSource


# --- recording: the visit rules applied to a whole batch ------------------------------------------------

MAX_STAY = MAX_VISIT  # no visit lasts longer; venues' default stay is at most as long
_CONTINUED = "Checked in; the visit already in progress here continues."
_CREATED = "Checked in."


@dataclass
class PlannedVisit:
    """A person's visit as the planner sees it: an existing row (id set) or a new one."""

    venue_id: int
    checked_in_at: datetime
    planned_checkout_at: datetime
    checked_out_at: datetime | None = None
    checkout_reason: CheckoutReason | None = None
    id: int | None = None
    item: VerifiedItem | None = None
    old_checked_out_at: datetime | None = None
    is_changed: bool = False

    @property
    def ends_at(self) -> datetime:
        return self.checked_out_at or self.planned_checkout_at

    def close(self, at: datetime, reason: CheckoutReason) -> None:
        self.checked_out_at, self.checkout_reason, self.is_changed = at, reason, True


@dataclass
class PersonPlan:
    visits: list[PlannedVisit]
    outcomes: dict[int, tuple[str, str | None]] = field(default_factory=dict)


_observed_at = attrgetter("observed_at")


def plan_visits(
    visits: list[PlannedVisit], items: Iterable[VerifiedItem], venue_id: int, stay: timedelta, now: datetime
) -> PersonPlan:
    """Apply one person's kiosk check-ins, oldest first, to their known visits (pure; no I/O).

    The rules of app/services/checkins/rules.py, extended to check-ins that arrive late from an offline kiosk:
    - a check-in inside a visit at this venue continues it (an open visit's planned end moves to t + stay),
      unless the open visit would then last longer than MAX_STAY: then it ends at t and a new one begins;
    - otherwise the open visit that began before t ends at t (or at its planned end if that passed), and
      a visit elsewhere that ended after t is cut back to t, whatever ended it: its planned end, a check-in
      elsewhere (that one may itself have arrived late, and later than t), or the visitor;
    - the new visit ends where the person's next known visit begins, or at its planned end if that has
      passed, else it stays open.
    """
    ordered = sorted(items, key=_observed_at)
    if not visits and len(ordered) == 1:
        # A kiosk batch's common case, the rules below applied to nothing known: one new visit, closed at
        # its planned end if that has passed.
        item = ordered[0]
        return PersonPlan([_new_visit(item, venue_id, stay, None, now)], {item.index: ("accepted", _CREATED)})
    plan = PersonPlan(sorted(visits, key=lambda v: v.checked_in_at))
    for item in ordered:
        t = item.observed_at
        here = [v for v in plan.visits if v.venue_id == venue_id and v.checked_in_at <= t < v.ends_at]
        # A visit lasts at most MAX_STAY: one that would outlast it by continuing ends at t (below) and a
        # new one begins.
        if here and (here[-1].checked_out_at is not None or continues(here[-1].checked_in_at, t + stay)):
            visit = here[-1]
            if visit.checked_out_at is None and visit.planned_checkout_at < t + stay:
                visit.planned_checkout_at, visit.is_changed = t + stay, True
            plan.outcomes[item.index] = ("accepted", _CONTINUED)
            continue
        for visit in plan.visits:
            if visit.checked_out_at is None and visit.checked_in_at <= t:
                if visit.planned_checkout_at <= t:
                    visit.close(visit.planned_checkout_at, CheckoutReason.AUTO)
                else:
                    visit.close(t, CheckoutReason.NEXT_CHECKIN)
            elif visit.checked_in_at <= t < visit.ends_at:
                # A visit elsewhere that ended after t, however it ended: the person was here at t.
                visit.close(t, CheckoutReason.NEXT_CHECKIN)
        following = min((v.checked_in_at for v in plan.visits if v.checked_in_at > t), default=None)
        plan.visits.append(_new_visit(item, venue_id, stay, following, now))
        plan.visits.sort(key=lambda v: v.checked_in_at)
        plan.outcomes[item.index] = ("accepted", _CREATED)
    return plan


def _new_visit(
    item: VerifiedItem, venue_id: int, stay: timedelta, following: datetime | None, now: datetime
) -> PlannedVisit:
    """The item's new visit: it ends where the person's next known visit (`following`) begins, or at its
    planned end if that has passed, else it stays open."""
    t = item.observed_at
    new = PlannedVisit(venue_id, t, t + stay, item=item)
    if following is not None and following < new.planned_checkout_at:
        new.checked_out_at, new.checkout_reason = following, CheckoutReason.NEXT_CHECKIN
    elif following is not None or new.planned_checkout_at <= now:
        new.checked_out_at, new.checkout_reason = new.planned_checkout_at, CheckoutReason.AUTO
    return new


def record_visits_in_bulk(
    ctx: KioskContext, items: Sequence[VerifiedItem], now: datetime
) -> dict[int, tuple[str, str | None]]:
    """Record verified check-ins with a few statements per batch; retried when a concurrent write wins.

    The people's visits are read and locked in person order (so two batches cannot deadlock), the
    rules are applied in memory by `plan_visits`, and the changes are written with guarded updates and
    one multi-row insert. A lost race (an open visit or client id inserted meanwhile, a visit closed
    meanwhile) rolls back the savepoint and the batch is planned again.
    """
    for _attempt in range(WRITE_ATTEMPTS):
        try:
            with db.session.begin_nested():
                return _record_once(ctx, items, now)
        except (IntegrityError, _StaleVisits):
            continue
        except OperationalError as exc:
            if "database is locked" in str(exc.orig):
                # SQLite: another worker holds the write lock and our read snapshot cannot be upgraded;
                # only a new transaction helps, so the kiosk sends the batch again after its backoff.
                raise KioskBusy("The database is busy; send this batch again shortly.") from None
            if not is_transient_database_error(exc):  # a deadlock or serialization failure: plan again
                raise
    raise KioskBusy("The server is busy with the same visitors; send this batch again shortly.")


def people_visits_query(person_ids: Sequence[int], since: datetime) -> Select[Any]:
    """The people's visits that began since `since` or are still open, locked in person order."""
    checkins = Checkin.__table__
    return (
        select(
            checkins.c.id,
            checkins.c.person_id,
            checkins.c.venue_id,
            checkins.c.checked_in_at,
            checkins.c.planned_checkout_at,
            checkins.c.checked_out_at,
            checkins.c.checkout_reason,
        )
        .where(
            _among(checkins.c.person_id, person_ids),
            or_(checkins.c.checked_in_at >= since, checkins.c.checked_out_at.is_(None)),
        )
        .order_by(checkins.c.person_id, checkins.c.id)
        .with_for_update()
    )


def _record_once(ctx: KioskContext, items: Sequence[VerifiedItem], now: datetime) -> dict[int, tuple[str, str | None]]:
    checkins = Checkin.__table__
    by_person: dict[int, list[VerifiedItem]] = defaultdict(list)
    for item in items:
        by_person[item.person_id].append(item)
    since = min(i.observed_at for i in items) - MAX_STAY
    person_ids = sorted(by_person)
    # Batches from several kiosks about the same people take turns on the people's rows: locking the
    # visits alone would not do, since a late item's new visit is a row no lock covers yet.
    people.lock_rows(_among(Person.__table__.c.id, person_ids))
    rows = db.session.execute(people_visits_query(person_ids, since)).all()
    known: dict[int, list[PlannedVisit]] = defaultdict(list)
    for row in rows:
        known[row.person_id].append(
            PlannedVisit(
                row.venue_id,
                row.checked_in_at,
                row.planned_checkout_at,
                row.checked_out_at,
                CheckoutReason(row.checkout_reason) if row.checkout_reason else None,
                id=row.id,
                old_checked_out_at=row.checked_out_at,
            )
        )
    stay = timedelta(minutes=ctx.venue.default_stay_minutes)
    outcomes: dict[int, tuple[str, str | None]] = {}
    changed: list[dict[str, Any]] = []
    new: list[tuple[Any, ...]] = []
    new_spans: list[tuple[datetime, datetime]] = []
    where = (ctx.venue.id, ctx.entrance.id, ctx.kiosk.id)
    for person_id, person_items in by_person.items():
        plan = plan_visits(known[person_id], person_items, ctx.venue.id, stay, now)
        outcomes.update(plan.outcomes)
        for visit in plan.visits:
            if visit.item is not None:
                new.append(_new_row(where, visit, now))
                new_spans.append((visit.checked_in_at, visit.ends_at))
            elif visit.is_changed:
                changed.append(
                    {
                        "b_id": visit.id,
                        "b_old_out": visit.old_checked_out_at,
                        "b_out": visit.checked_out_at,
                        "b_reason": visit.checkout_reason,
                        "b_planned": visit.planned_checkout_at,
                    }
                )
    if changed:
        # Guarded by the end time we read: a visit closed meanwhile by someone else is not overwritten.
        result = db.session.execute(
            update(checkins)
            .where(
                checkins.c.id == bindparam("b_id"),
                checkins.c.checked_out_at.is_not_distinct_from(
                    bindparam("b_old_out", type_=checkins.c.checked_out_at.type)
                ),
            )
            .values(
                checked_out_at=bindparam("b_out"),
                checkout_reason=bindparam("b_reason"),
                planned_checkout_at=bindparam("b_planned"),
            ),
            changed,
        )
        if db.session.get_bind().dialect.supports_sane_multi_rowcount and result.rowcount != len(changed):
            raise _StaleVisits
    if new:
        _insert_visits(new)
        _reopen_cases(ctx, new_spans, now)
    # No "last seen" write: it only keeps a person from the retention purge, and the visit written here
    # already does (a person with any visit is never purged, and the visit lives as long as its date
    # would have kept "last seen" alive). Skipping it saves an indexed row update per item.
    return outcomes


def _among(column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """`column IN (...)`; on PostgreSQL `= ANY(array)`: one parameter instead of 500 keeps the
    statement short enough for psycopg to cache its parsing, which otherwise costs more than the query."""
    if db.session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


# A new visit's columns, with the PostgreSQL types binary COPY writes them as.
_NEW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("person_id", "int4"),
    ("venue_id", "int4"),
    ("entrance_id", "int4"),
    ("kiosk_id", "int4"),
    ("party_size", "int2"),
    ("source", "text"),
    ("checked_in_at", "timestamptz"),
    ("planned_checkout_at", "timestamptz"),
    ("checked_out_at", "timestamptz"),
    ("checkout_reason", "text"),
    ("client_id", "text"),
    ("created_at", "timestamptz"),
)
_NEW_NAMES = tuple(name for name, _ in _NEW_COLUMNS)
_COPY_NEW = f"COPY checkins ({', '.join(_NEW_NAMES)}) FROM STDIN (FORMAT BINARY)"


def _new_row(where: tuple[int, int, int], visit: PlannedVisit, now: datetime) -> tuple[Any, ...]:
    """A new visit in _NEW_COLUMNS order (venue, entrance and kiosk ids in `where`); enums as their values."""
    item = visit.item
    assert item is not None
    reason = visit.checkout_reason
    return (
        item.person_id,
        *where,
        1,
        item.source.value,
        visit.checked_in_at,
        visit.planned_checkout_at,
        visit.checked_out_at,
        None if reason is None else reason.value,
        item.client_id,
        now,
    )


def _insert_visits(rows: list[tuple[Any, ...]]) -> None:
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        db.session.execute(Checkin.__table__.insert(), [dict(zip(_NEW_NAMES, row, strict=True)) for row in rows])
        return
    # COPY is PostgreSQL's bulk path: about ten times faster than multi-row INSERTs from Python here,
    # and in binary a row costs about 0.5 us to write instead of 6 us as text (no timestamp formatting).
    driver = connection.connection.driver_connection
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY_NEW) as copy:
            copy.set_types([pg_type for _, pg_type in _NEW_COLUMNS])
            for row in rows:
                copy.write_row(row)
    except connection.dialect.dbapi.IntegrityError as exc:  # an open visit or client id inserted meanwhile
        raise _StaleVisits from exc
    except connection.dialect.dbapi.OperationalError as exc:
        # The driver's own error (COPY bypasses SQLAlchemy): a deadlock or serialization failure with a
        # concurrent check-in is a lost race like the others; anything else is a real fault.
        if is_transient_database_error(exc):
            raise _StaleVisits from exc
        raise


def record_each_with_check_in(
    ctx: KioskContext, items: Sequence[VerifiedItem], now: datetime
) -> dict[int, tuple[str, str | None]]:
    """The same job through `checkins.check_in`, one item at a time (slower; the single rule path)."""
    from app.services.checkins import check_in

    people = {p.id: p for p in db.session.scalars(select(Person).where(Person.id.in_({i.person_id for i in items})))}
    outcomes: dict[int, tuple[str, str | None]] = {}
    spans: list[tuple[datetime, datetime]] = []
    for item in sorted(items, key=lambda i: i.observed_at):
        try:
            result = check_in(
                people[item.person_id],
                ctx.venue,
                ctx.entrance,
                item.source,
                item.observed_at,
                client_id=item.client_id,
                kiosk_id=ctx.kiosk.id,
            )
        except DomainError as exc:
            outcomes[item.index] = ("rejected", exc.message)
        except IntegrityError:
            outcomes[item.index] = ("retry", "The server was busy with this visitor; send again.")
        else:
            outcomes[item.index] = ("accepted", _CREATED if result.status == "created" else _CONTINUED)
            if result.status == "created":
                visit = result.checkin
                spans.append((visit.checked_in_at, visit.checked_out_at or visit.planned_checkout_at))
    _reopen_cases(ctx, spans, now)
    return outcomes


def _reopen_cases(ctx: KioskContext, spans: list[tuple[datetime, datetime]], now: datetime) -> None:
    """Visits recorded late (a kiosk that was offline) may have been missed by cases matched meanwhile."""
    from app.services.exposures.rematching import reopen_after_late_visits

    reopen_after_late_visits(ctx.venue.id, spans, now)
