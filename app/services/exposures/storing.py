"""Storing what matching finds: Exposure rows written idempotently (unique per case, check-in and person),
cases marked matched, venue outbreaks recorded, in bounded batches."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select, union, union_all, update
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import Case, CaseStatus, Checkin, Companion, Exposure, ExposureStatus, Venue, VenueOutbreak
from app.services import matching
from app.services.exposures.finding import PEOPLE_PER_QUERY, CaseQuery, _utc, find_contacts_for_cases
from app.services.matching import MatchRules


@dataclass(frozen=True)
class CaseMatch:
    case_id: int
    case_visits: int
    exposures_found: int
    exposures_inserted: int
    outbreaks: int  # venue outbreaks recorded by the run (the batch) that matched the case


def _stored_per_case(case_ids: Sequence[int]) -> Counter[int]:
    rows = db.session.execute(
        select(Exposure.case_id, func.count()).where(Exposure.case_id.in_(case_ids)).group_by(Exposure.case_id)
    )
    return Counter(dict(rows.tuples().all()))


# The columns of an exposure row as the matcher writes it, in order.
_COLUMNS = (
    "case_id, case_checkin_id, checkin_id, person_id, venue_id, risk, overlap_seconds, reason_en, reason_ru,"
    " status, created_at"
)
# SQLite: an executemany that skips rows already stored.
_INSERT_EXPOSURES_BY_STYLE = {
    style: f"INSERT INTO exposures ({_COLUMNS}) VALUES ({', '.join([m] * 11)})"  # noqa: S608
    " ON CONFLICT (case_id, checkin_id, person_id) DO NOTHING"
    for style, m in (("qmark", "?"), ("format", "%s"), ("pyformat", "%s"))
}
# PostgreSQL: one binary COPY per batch, of the rows not stored yet. The binary format costs the job
# about 2 us of CPU per row, where adapting the same rows as arrays for an INSERT ... SELECT FROM unnest
# cost about 34 us (and the server about 9 us more, for the insert's speculative conflict check).
_COPY_EXPOSURES = f"COPY exposures ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ("int4", "int4", "int4", "int4", "int4", "varchar", "int4", "text", "text", "varchar", "timestamptz")


# Rows per executemany on SQLite.
INSERT_CHUNK = 1000


def _stored_keys(case_ids: Sequence[int]) -> set[tuple[int, int, int]]:
    """(case, check-in, person) of the exposures already stored for these cases."""
    rows = db.session.execute(
        select(Exposure.case_id, Exposure.checkin_id, Exposure.person_id).where(Exposure.case_id.in_(case_ids))
    )
    return set(rows.tuples())


def _begin_insert(rows: Iterable[tuple[Any, ...]], case_ids: Sequence[int]) -> tuple[Counter[int], Callable[[], None]]:
    """Send exposure rows (tuples in _COLUMNS's order, created_at already in the driver's form),
    skipping those already stored; returns the number sent per case and a function that waits until
    the database has stored them (and raises if it refused them). Until then the session's connection
    must not be used for anything else. The caller holds the cases' rows locked (match_case_batch),
    and only the matcher writes exposures.

    Through the driver with plain values: SQLAlchemy's per-row parameter processing cost as much as
    the database's own work.

    PostgreSQL: the keys already stored for these cases are read first, and the rest go in by one
    binary COPY, which the server parses and inserts while Python writes the reasons of the next rows
    (``rows`` is consumed lazily). The server is usually still inserting when the last row is sent; the
    matching job lets it finish while it reads the next batch (exposure_jobs). The unique constraint on
    (case, check-in, person) still stands behind it: a duplicate, which the case locks rule out, would
    fail the batch, never store twice. A row the database refuses fails the COPY, and nothing of it is
    stored.

    SQLite: executemany in chunks of INSERT_CHUNK with ON CONFLICT DO NOTHING, and a count per case
    before and after gives the numbers inserted; nothing is left to wait for.
    """
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        stored = _stored_keys(case_ids)
        inserted: Counter[int] = Counter()
        cursor = connection.connection.driver_connection.cursor()
        copying = cursor.copy(_COPY_EXPOSURES)
        copy = copying.__enter__()
        try:
            copy.set_types(_COPY_TYPES)
            for row in rows:
                if stored and (row[0], row[2], row[3]) in stored:
                    continue
                copy.write_row(row)
                inserted[row[0]] += 1
        except BaseException as exc:
            try:
                copying.__exit__(type(exc), exc, exc.__traceback__)  # the server drops the rows sent
            finally:
                cursor.close()
            raise

        def finish() -> None:
            try:
                copying.__exit__(None, None, None)
            finally:
                cursor.close()

        return inserted, finish
    before = _stored_per_case(case_ids)
    sql = _INSERT_EXPOSURES_BY_STYLE[connection.dialect.paramstyle]
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == INSERT_CHUNK:
            connection.exec_driver_sql(sql, chunk)
            chunk = []
    if chunk:
        connection.exec_driver_sql(sql, chunk)
    after = _stored_per_case(case_ids)
    after.subtract(before)
    return after, lambda: None


def _driver_value(column: Any, value: Any) -> Any:
    """A value as the driver takes it for this column (for example a UTC timestamp as SQLite text)."""
    dialect = db.session.get_bind().dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process(value) if process is not None else value


@dataclass(frozen=True)
class BatchMatch:
    cases: list[CaseMatch]
    outbreaks: int


def match_case_batch(
    case_ids: Sequence[int], *, now: datetime, rules: MatchRules, tz: ZoneInfo, outbreaks: bool = True
) -> BatchMatch:
    """Find and store the exposures of many cases together, then mark them matched. Flushes, never
    commits: the caller's transaction holds the whole batch.

    Running it again for the same cases inserts nothing new (unique (case, check-in, person)).
    An annulled case is marked matched without looking for anyone. Raises LookupError for an unknown
    case id and ValueError for a case whose dates give no window; nothing of the batch is flushed then.

    With `outbreaks` the venue outbreaks of the cases' venues are counted too; without, the cases are
    marked for record_pending_outbreaks, which the matching job runs once after its batches (counting
    reads every active case's visits at those venues: once per batch, a run of many batches read them
    again and again).
    """
    batch = begin_case_batch(case_ids, now=now, rules=rules, tz=tz, outbreaks=outbreaks)
    result = batch.complete()
    if not outbreaks:
        return result
    recorded = record_outbreaks(batch.venue_ids, rules, now)
    db.session.flush()
    return BatchMatch([dataclasses.replace(r, outbreaks=recorded) for r in result.cases], recorded)


@dataclass
class StartedBatch:
    """A batch whose exposures were sent to the database (begin_case_batch), not yet all stored."""

    session: Session
    results: list[CaseMatch]
    venue_ids: set[int]  # of the cases' own visits in their windows (for counting outbreaks)
    _finish: Callable[[], None]

    def complete(self) -> BatchMatch:
        """Wait until the database has stored the exposures (raises if it refused one), and flush the
        cases' windows and marks. Uses only this batch's session: it may run in another thread, while
        the thread that began it goes on with a session of its own."""
        self._finish()
        self.session.flush()
        return BatchMatch(self.results, 0)


def begin_case_batch(
    case_ids: Sequence[int], *, now: datetime, rules: MatchRules, tz: ZoneInfo, outbreaks: bool = True
) -> StartedBatch:
    """match_case_batch up to sending the exposures; StartedBatch.complete does the rest. Until then
    the session (db.session, kept in the result) must not be used for anything else."""
    # Locked until the batch commits: annulling a case locks it too, so an annulment waits for the batch
    # and then withdraws the exposures it stored, and a batch that comes second sees the case annulled.
    # Unlocked, an annulment committed mid-batch would leave new exposures of an annulled case behind.
    cases = select(Case).where(Case.id.in_(list(case_ids))).order_by(Case.id).with_for_update(of=Case)
    loaded = {c.id: c for c in db.session.scalars(cases)}
    missing = [case_id for case_id in case_ids if case_id not in loaded]
    if missing:
        raise LookupError(f"no case {missing[0]}")
    queries = []
    windows = {}
    for case_id in case_ids:
        case = loaded[case_id]
        if case.status == CaseStatus.ACTIVE:
            window = matching.infectious_window(case.tested_on, case.symptom_onset, case.isolated_on, tz, rules)
            windows[case_id] = window
            queries.append(CaseQuery(case_id, case.person_id, window))
    found = find_contacts_for_cases(queries, rules, now)
    venue_ids = {c.venue_id for _stays, contacts in found.values() for c in contacts}
    venues = {v.id: v for v in db.session.scalars(select(Venue).where(Venue.id.in_(venue_ids)))}
    zones = {venue_id: ZoneInfo(venue.timezone) for venue_id, venue in venues.items()}
    created_at = _driver_value(Exposure.__table__.c.created_at, now)
    new = ExposureStatus.NEW.value
    # Set before the rows go out: nothing may query (and so autoflush) while they are being sent.
    for case_id, window in windows.items():
        loaded[case_id].window_starts_at, loaded[case_id].window_ends_at = window
    for case_id in case_ids:
        loaded[case_id].matched_at = now
        loaded[case_id].outbreaks_pending = not outbreaks

    def rows() -> Iterator[tuple[Any, ...]]:
        for case_id, (_stays, contacts) in found.items():
            for contact in contacts:
                reason_en, reason_ru = matching.describe_all(
                    contact, venues[contact.venue_id].name, zones[contact.venue_id], ("en", "ru")
                )
                yield (
                    case_id,
                    contact.case_checkin_id,
                    contact.checkin_id,
                    contact.person_id,
                    contact.venue_id,
                    contact.risk,
                    int(contact.overlap.total_seconds()),
                    reason_en,
                    reason_ru,
                    new,
                    created_at,
                )

    # No venue means no contact: nothing to insert or count.
    inserted, finish = _begin_insert(rows(), list(found)) if venue_ids else (Counter(), lambda: None)
    results = []
    for case_id in case_ids:
        stays, contacts = found.get(case_id, ([], []))
        results.append(CaseMatch(case_id, len(stays), len(contacts), inserted[case_id], 0))
    stay_venues = {s.venue_id for stays, _contacts in found.values() for s in stays}
    return StartedBatch(db.session(), results, stay_venues, finish)


def match_case(case_id: int, *, now: datetime, rules: MatchRules, tz: ZoneInfo, outbreaks: bool = True) -> CaseMatch:
    """Find and store the exposures of one case, then mark it matched (see match_case_batch)."""
    return match_case_batch([case_id], now=now, rules=rules, tz=tz, outbreaks=outbreaks).cases[0]


def _visits_in_window(columns: Sequence[Any], *where: Any) -> tuple[Select[Any], Select[Any]]:
    """Active cases' visits inside their infectious windows, as two selects of `columns` (of Case and
    Checkin): their own visits, and those they came to as a companion (as matching counts them)."""
    in_window = (
        Case.status == CaseStatus.ACTIVE,
        Case.window_starts_at.is_not(None),
        Checkin.checked_in_at < Case.window_ends_at,
        Checkin.checked_in_at >= Case.window_starts_at,
        *where,
    )
    own = select(*columns).join_from(Case, Checkin, Checkin.person_id == Case.person_id).where(*in_window)
    as_companion = (
        select(*columns)
        .join_from(Case, Companion, Companion.person_id == Case.person_id)
        .join(Checkin, Checkin.id == Companion.checkin_id)
        .where(*in_window)
    )
    return own, as_companion


# Through the partial index ix_cases_outbreaks_pending: normally none, or one run's cases.
PENDING_OUTBREAKS_QUERY = select(Case.id).where(Case.outbreaks_pending).order_by(Case.id)


def record_pending_outbreaks(rules: MatchRules, now: datetime) -> int:
    """Count the venue outbreaks that cases matched without them (match_case_batch with outbreaks=False)
    may have made, at the venues of those cases' visits in their windows (their own and those they came
    to as a companion), and clear their marks; the number of outbreaks recorded. Flushes, never commits."""
    pending = list(db.session.scalars(PENDING_OUTBREAKS_QUERY))
    venues: set[int] = set()
    for first in range(0, len(pending), PEOPLE_PER_QUERY):
        chunk = pending[first : first + PEOPLE_PER_QUERY]
        venues.update(db.session.scalars(union(*_visits_in_window((Checkin.venue_id,), Case.id.in_(chunk)))))
    recorded = record_outbreaks(venues, rules, now)
    for first in range(0, len(pending), PEOPLE_PER_QUERY):
        db.session.execute(
            update(Case).where(Case.id.in_(pending[first : first + PEOPLE_PER_QUERY])).values(outbreaks_pending=False),
            execution_options={"synchronize_session": False},
        )
    return recorded


def record_outbreaks(venue_ids: Iterable[int], rules: MatchRules, now: datetime, *, prune: bool = False) -> int:
    """Mark venues where OUTBREAK_CASES or more active cases were present within the outbreak window.

    Looks only at the given venues and at the active cases' visits inside their infectious windows,
    their own and those they came to as a companion (as matching does). Cases count by person: one
    person's two lab results are one case. Each group is stored once per (venue, first visit of the
    group), with its count raised when a later case joins it. With `prune` (after an annulment), groups
    stored at these venues that no longer hold enough active cases are removed, and counts lowered.
    One query per PEOPLE_PER_QUERY venues, not one per venue: a batch of cases touches most venues.
    """
    venues = sorted(set(venue_ids))
    rows: list[Any] = []
    stored: dict[tuple[int, datetime], VenueOutbreak] = {}
    for first in range(0, len(venues), PEOPLE_PER_QUERY):
        chunk = venues[first : first + PEOPLE_PER_QUERY]
        columns = (Case.person_id, Checkin.venue_id, Checkin.checked_in_at)
        rows.extend(db.session.execute(union_all(*_visits_in_window(columns, Checkin.venue_id.in_(chunk)))).tuples())
        for outbreak in db.session.scalars(select(VenueOutbreak).where(VenueOutbreak.venue_id.in_(chunk))):
            stored[(outbreak.venue_id, _utc(outbreak.window_starts_at))] = outbreak
    found = 0
    starts: dict[tuple[int, int], datetime] = {}
    for person_id, venue_id, starts_at in rows:
        key = (venue_id, person_id)
        if key not in starts or starts_at < starts[key]:
            starts[key] = starts_at
    groups: dict[tuple[int, datetime], int] = {}
    for venue, people in matching.venue_outbreaks(rows, rules):
        window_start = min(starts[(venue, person_id)] for person_id in people)
        key = (venue, _utc(window_start))
        groups[key] = max(groups.get(key, 0), len(people))
    for (venue, window_start), count in sorted(groups.items()):
        existing = stored.get((venue, window_start))
        if existing is None:
            outbreak = VenueOutbreak(venue_id=venue, window_starts_at=window_start, case_count=count, detected_at=now)
            db.session.add(outbreak)
            stored[(venue, window_start)] = outbreak
            found += 1
        elif existing.case_count < count or (prune and existing.case_count != count):
            existing.case_count = count
    if prune:
        for key, outbreak in stored.items():
            if key not in groups:
                db.session.delete(outbreak)
    db.session.flush()
    return found


def pending_case_ids(limit: int, exclude: Iterable[int] = ()) -> list[int]:
    """Cases not matched yet, oldest first (the partial index ix_cases_pending_match)."""
    query = select(Case.id).where(Case.matched_at.is_(None)).order_by(Case.created_at, Case.id).limit(limit)
    excluded = list(exclude)
    if excluded:
        query = query.where(Case.id.not_in(excluded))
    return list(db.session.scalars(query))
