"""The database side of matching: a case's visits, the visits co-present with them, Exposure rows.

The rules themselves live in app/services/matching.py (pure); this module feeds it from two index
range scans and writes what it finds idempotently, so a case matched twice, or a job that crashed
half-way through a case, never leaves duplicates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.extensions import db
from app.models import (
    Case,
    CaseStatus,
    Checkin,
    Companion,
    Entrance,
    EntranceKind,
    Exposure,
    ExposureStatus,
    Venue,
    VenueOutbreak,
)
from app.services import matching
from app.services.matching import Contact, MatchRules, Stay

# No visit is taken as longer than this (the longest default stay a venue can set). Bounding stays
# lets the candidate query be a tight range on (venue_id, checked_in_at).
MAX_STAY = timedelta(hours=24)
STREAM_BATCH = 2000

_VISIT_COLUMNS = (
    Checkin.id,
    Checkin.person_id,
    Checkin.venue_id,
    Checkin.entrance_id,
    Checkin.party_size,
    Checkin.checked_in_at,
    Checkin.planned_checkout_at,
    Checkin.checked_out_at,
)


def rules_from_config(config: Mapping[str, Any]) -> MatchRules:
    return MatchRules(
        tail=timedelta(minutes=int(config["MATCH_TAIL_MINUTES"])),
        high_risk_overlap=timedelta(minutes=int(config["MATCH_HIGH_RISK_MINUTES"])),
        lead_days=int(config["MATCH_LEAD_DAYS"]),
        outbreak_cases=int(config["OUTBREAK_CASES"]),
        outbreak_window=timedelta(days=int(config["OUTBREAK_WINDOW_DAYS"])),
    )


@dataclass(frozen=True)
class CaseMatch:
    case_id: int
    case_visits: int
    exposures_found: int
    exposures_inserted: int
    outbreaks: int


class _Halls:
    """Entrance id -> hall id (None for plain entrances), loaded per venue on first use."""

    def __init__(self) -> None:
        self._loaded: set[int] = set()
        self._halls: set[int] = set()

    def preload(self, venue_ids: Iterable[int]) -> None:
        """Load the halls of many venues in one query (the case's venues are known up front)."""
        missing = set(venue_ids) - self._loaded
        if missing:
            self._halls.update(
                db.session.scalars(
                    select(Entrance.id).where(Entrance.venue_id.in_(missing), Entrance.kind == EntranceKind.HALL)
                )
            )
            self._loaded |= missing

    @property
    def ids(self) -> set[int]:
        """Entrance ids that are halls, among the preloaded venues."""
        return self._halls


def _stay(row: Any, person_id: int, halls: _Halls, now: datetime) -> Stay:
    """A visit as the matcher sees it. It ended at its check-out, else at its planned end if that has
    passed, else now; never more than MAX_STAY after it began and never before it began."""
    # Unpacked positionally (see _VISIT_COLUMNS): this runs once per candidate visit.
    checkin_id, _owner, venue_id, entrance_id, party_size, starts_at, planned_at, checked_out_at = row
    end = checked_out_at if checked_out_at is not None else (planned_at if planned_at < now else now)
    cap = starts_at + MAX_STAY
    return Stay(
        checkin_id=checkin_id,
        person_id=person_id,
        venue_id=venue_id,
        hall_id=entrance_id if entrance_id in halls.ids else None,
        starts_at=starts_at,
        ends_at=starts_at if end < starts_at else (cap if end > cap else end),
        party_size=party_size,
    )


def case_stays(
    person_id: int, window: tuple[datetime, datetime], now: datetime, halls: _Halls | None = None
) -> list[Stay]:
    """The case's visits that overlap the infectious window: their own check-ins and the check-ins
    they were a companion on (ix_checkins_person_id_checked_in_at and the companions index)."""
    halls = halls or _Halls()
    start, end = window
    in_range = and_(Checkin.checked_in_at >= start - MAX_STAY, Checkin.checked_in_at < end)
    own = select(*_VISIT_COLUMNS).where(Checkin.person_id == person_id, in_range)
    as_companion = (
        select(*_VISIT_COLUMNS)
        .join(Companion, Companion.checkin_id == Checkin.id)
        .where(Companion.person_id == person_id, in_range)
    )
    rows = [row for query in (own, as_companion) for row in db.session.connection().execute(query)]
    halls.preload(row.venue_id for row in rows)  # candidates are at these venues too
    stays: dict[int, Stay] = {}
    for row in rows:
        stay = _stay(row, person_id, halls, now)
        if stay.ends_at > start and stay.checkin_id not in stays:
            stays[stay.checkin_id] = stay
    return sorted(stays.values(), key=lambda s: (s.starts_at, s.checkin_id))


def _candidate_range(stay: Stay, rules: MatchRules) -> Any:
    """Visits at the case visit's venue that arrived before its reach ended (at most MAX_STAY before it
    began: a tight range on ix_checkins_venue_id_checked_in_at) and had not left before it began.

    The last condition is a superset of the exact rule (matching decides exactly) that lets the database
    drop the day's other visits instead of shipping them to Python.
    """
    return and_(
        Checkin.venue_id == stay.venue_id,
        Checkin.checked_in_at > stay.starts_at - MAX_STAY,
        Checkin.checked_in_at < stay.ends_at + rules.tail,
        func.coalesce(Checkin.checked_out_at, Checkin.planned_checkout_at) > stay.starts_at,
    )


# Case visits per candidate query: one round trip per case in practice, bounded statement size.
STAYS_PER_QUERY = 50


def candidate_stays(stays: Sequence[Stay], rules: MatchRules, now: datetime, halls: _Halls) -> Iterator[Stay]:
    """Stream the visits that may overlap any case visit: one query per group of case visits, each
    branch an index range scan (PostgreSQL: BitmapOr; SQLite: multi-index OR)."""
    for first in range(0, len(stays), STAYS_PER_QUERY):
        group = stays[first : first + STAYS_PER_QUERY]
        query = select(*_VISIT_COLUMNS).where(or_(*(_candidate_range(stay, rules) for stay in group)))
        # Core execution on the session's connection: same transaction, without ORM row processing,
        # which costs more than the rest of the per-row work together.
        # (Options per statement: Connection.execution_options() would change the shared connection.)
        result = db.session.connection().execute(query, execution_options={"yield_per": STREAM_BATCH})
        for row in result:
            yield _stay(row, row.person_id, halls, now)


def _parties(checkin_ids: Iterable[int]) -> dict[int, list[int]]:
    """Check-in id -> the people who came as its companions and gave a phone number (or an account)."""
    ids = sorted(set(checkin_ids))
    parties: dict[int, list[int]] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        rows = db.session.execute(
            select(Companion.checkin_id, Companion.person_id).where(
                Companion.checkin_id.in_(chunk), Companion.person_id.is_not(None)
            )
        )
        for checkin_id, person_id in rows:
            parties.setdefault(checkin_id, []).append(person_id)
    return parties


def find_case_contacts(
    person_id: int, window: tuple[datetime, datetime], rules: MatchRules, now: datetime
) -> tuple[list[Stay], list[Contact]]:
    """The case's visits and, per exposed (check-in, person), the strongest contact.

    Exposed are: other visitors co-present with a case visit (matching.find_contacts), their
    companions, and the rest of the case's own party on each case visit (the owner of a check-in the
    case joined as a companion, and the other companions).
    """
    halls = _Halls()
    stays = case_stays(person_id, window, now, halls)
    if not stays:
        return [], []
    contacts = matching.find_contacts(stays, candidate_stays(stays, rules, now, halls), rules)
    parties = _parties([c.checkin_id for c in contacts] + [s.checkin_id for s in stays])
    owners = {s.checkin_id: None for s in stays}
    expanded: list[Contact] = []
    for contact in contacts:
        expanded.append(contact)
        for companion in parties.get(contact.checkin_id, ()):
            expanded.append(dataclasses.replace(contact, person_id=companion))
    if stays:
        owner_rows = db.session.execute(select(Checkin.id, Checkin.person_id).where(Checkin.id.in_(list(owners))))
        owners.update(dict(owner_rows.tuples().all()))
    for stay in stays:
        party = [owners[stay.checkin_id], *parties.get(stay.checkin_id, ())]
        for member in party:
            if member is None or member == person_id:
                continue
            contact = matching.co_present(stay, dataclasses.replace(stay, person_id=member), rules)
            if contact is not None:
                expanded.append(contact)
    best: dict[tuple[int, int], Contact] = {}
    for contact in expanded:
        if contact.person_id == person_id:
            continue  # the case is never exposed to themselves
        key = (contact.checkin_id, contact.person_id)
        current = best.get(key)
        if current is None:
            best[key] = contact
        else:
            best[key] = matching.strongest_per_person([current, contact])[contact.person_id]
    return stays, sorted(best.values(), key=lambda c: (c.checkin_id, c.person_id))


def _insert_ignoring_duplicates(rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Exposure.__table__
    stmt = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["case_id", "checkin_id", "person_id"])
        .returning(table.c.id)
    )
    connection = db.session.connection()
    inserted = 0
    for start in range(0, len(rows), 1000):
        inserted += len(connection.execute(stmt, rows[start : start + 1000]).all())
    return inserted


def match_case(case_id: int, *, now: datetime, rules: MatchRules, tz: ZoneInfo) -> CaseMatch:
    """Find and store the exposures of one case, then mark it matched. Flushes, never commits.

    Running it again for the same case inserts nothing new (unique (case, check-in, person)).
    An annulled case is marked matched without looking for anyone.
    """
    case = db.session.get(Case, case_id)
    if case is None:
        raise LookupError(f"no case {case_id}")
    if case.status != CaseStatus.ACTIVE:
        case.matched_at = now
        db.session.flush()
        return CaseMatch(case_id, 0, 0, 0, 0)
    window = matching.infectious_window(case.tested_on, case.symptom_onset, case.isolated_on, tz, rules)
    case.window_starts_at, case.window_ends_at = window
    stays, contacts = find_case_contacts(case.person_id, window, rules, now)
    venues = {v.id: v for v in db.session.scalars(select(Venue).where(Venue.id.in_({c.venue_id for c in contacts})))}
    rows = []
    for contact in contacts:
        venue = venues[contact.venue_id]
        venue_tz = ZoneInfo(venue.timezone)
        rows.append(
            {
                "case_id": case.id,
                "case_checkin_id": contact.case_checkin_id,
                "checkin_id": contact.checkin_id,
                "person_id": contact.person_id,
                "venue_id": contact.venue_id,
                "risk": contact.risk,
                "overlap_seconds": int(contact.overlap.total_seconds()),
                "reason_en": matching.describe(contact, venue.name, venue_tz, "en"),
                "reason_ru": matching.describe(contact, venue.name, venue_tz, "ru"),
                "status": ExposureStatus.NEW.value,
                "created_at": now,
            }
        )
    inserted = _insert_ignoring_duplicates(rows)
    outbreaks = record_outbreaks({s.venue_id for s in stays}, rules, now)
    case.matched_at = now
    db.session.flush()
    return CaseMatch(case.id, len(stays), len(rows), inserted, outbreaks)


def record_outbreaks(venue_ids: Iterable[int], rules: MatchRules, now: datetime) -> int:
    """Mark venues where OUTBREAK_CASES or more active cases were present within the outbreak window.

    Looks only at the venues just matched and at the active cases' own visits inside their
    infectious windows; each group of cases is stored once per (venue, first visit of the group),
    with its count raised when a later case joins the same group.
    """
    found = 0
    for venue_id in sorted(set(venue_ids)):
        rows = db.session.execute(
            select(Case.id, Checkin.venue_id, Checkin.checked_in_at)
            .join(Checkin, Checkin.person_id == Case.person_id)
            .where(
                Checkin.venue_id == venue_id,
                Case.status == CaseStatus.ACTIVE,
                Case.window_starts_at.is_not(None),
                Checkin.checked_in_at < Case.window_ends_at,
                Checkin.checked_in_at >= Case.window_starts_at,
            )
        ).all()
        for venue, cases in matching.venue_outbreaks(rows, rules):
            window_start = min(t for c, _v, t in rows if c in cases)
            existing = db.session.scalar(
                select(VenueOutbreak).where(
                    VenueOutbreak.venue_id == venue, VenueOutbreak.window_starts_at == window_start
                )
            )
            if existing is None:
                db.session.add(
                    VenueOutbreak(venue_id=venue, window_starts_at=window_start, case_count=len(cases), detected_at=now)
                )
                found += 1
            elif existing.case_count < len(cases):
                existing.case_count = len(cases)
    db.session.flush()
    return found


def pending_case_ids(limit: int, exclude: Iterable[int] = ()) -> list[int]:
    """Cases not matched yet, oldest first (the partial index ix_cases_pending_match)."""
    query = select(Case.id).where(Case.matched_at.is_(None)).order_by(Case.created_at, Case.id).limit(limit)
    excluded = list(exclude)
    if excluded:
        query = query.where(Case.id.not_in(excluded))
    return list(db.session.scalars(query))
