"""Finding contacts in the database: a case's visits, then the visits co-present with them, streamed
through the pure rules of app/services/matching.py from index range scans."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from app.extensions import db
from app.models import EntranceKind
from app.services import matching
from app.services.matching import Contact, MatchRules, Stay

# No visit is taken as longer than this (the longest default stay a venue can set). Bounding stays
# lets the candidate query be a tight range on (venue_id, checked_in_at).
MAX_STAY = timedelta(hours=24)

# The columns of a visit as matching reads them (see _stay), on the check-ins aliased as c.
_VISIT_SQL = (
    "c.id, c.person_id, c.venue_id, c.entrance_id, c.party_size, c.checked_in_at, c.planned_checkout_at,"
    " c.checked_out_at"
)


def rules_from_config(config: Mapping[str, Any]) -> MatchRules:
    return MatchRules(
        tail=timedelta(minutes=int(config["MATCH_TAIL_MINUTES"])),
        high_risk_overlap=timedelta(minutes=int(config["MATCH_HIGH_RISK_MINUTES"])),
        lead_days=int(config["MATCH_LEAD_DAYS"]),
        outbreak_cases=int(config["OUTBREAK_CASES"]),
        outbreak_window=timedelta(days=int(config["OUTBREAK_WINDOW_DAYS"])),
    )


def _driver_rows(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Run SQL written with ``?`` markers through the driver's own cursor on the session's connection.

    Matching's reads are small and many: SQLAlchemy compiling, caching and wrapping each of them cost
    more than the database's work (a case's ten visits took 3 ms to fetch, 0.3 ms of it in SQLite).
    """
    connection = db.session.connection()
    if connection.dialect.paramstyle != "qmark":
        sql = sql.replace("?", "%s")
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def _marks(count: int) -> str:
    """``?, ?, ?``: the markers of an IN list of ``count`` values."""
    return ", ".join("?" * count)


def _as_utc(dialect: str) -> Any:
    """The function that turns this driver's raw timestamps into aware UTC datetimes."""
    return _sqlite_utc if dialect == "sqlite" else _utc


class _Halls:
    """Entrance id -> hall id (None for plain entrances), loaded per venue on first use."""

    def __init__(self) -> None:
        self._loaded: set[int] = set()
        self._halls: set[int] = set()

    def preload(self, venue_ids: Iterable[int]) -> None:
        """Load the halls of many venues in one query (the case's venues are known up front)."""
        missing = sorted(set(venue_ids) - self._loaded)
        for first in range(0, len(missing), PEOPLE_PER_QUERY):
            chunk = missing[first : first + PEOPLE_PER_QUERY]
            sql = f"SELECT id FROM entrances WHERE kind = ? AND venue_id IN ({_marks(len(chunk))})"  # noqa: S608 (markers only)
            self._halls.update(row[0] for row in _driver_rows(sql, [EntranceKind.HALL.value, *chunk]))
        self._loaded.update(missing)

    @property
    def ids(self) -> set[int]:
        """Entrance ids that are halls, among the preloaded venues."""
        return self._halls


def _stay(row: Any, person_id: int, halls: _Halls, now: datetime) -> Stay:
    """A visit as the matcher sees it. It ended at its check-out, else at its planned end if that has
    passed, else now; never more than MAX_STAY after it began and never before it began."""
    # Unpacked positionally (see _VISIT_SQL): this runs once per candidate visit.
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


@dataclass(frozen=True)
class CaseQuery:
    """What matching needs of a case: who, and the infectious window [start, end) in UTC."""

    case_id: int
    person_id: int
    window: tuple[datetime, datetime]


# People per query when fetching many cases' own visits (bounded IN lists).
PEOPLE_PER_QUERY = 500


def _case_stays_many(
    cases: Sequence[CaseQuery], now: datetime, halls: _Halls, owners: dict[int, int] | None = None
) -> dict[int, list[Stay]]:
    """Case id -> the case's visits that overlap its infectious window: their own check-ins and the
    check-ins they were a companion on (ix_checkins_person_id_checked_in_at and the companions
    index), one query per PEOPLE_PER_QUERY people. Fills ``owners`` (check-in id -> the person who
    checked in) for those visits."""
    by_person: dict[int, list[CaseQuery]] = {}
    for case in cases:
        by_person.setdefault(case.person_id, []).append(case)
    low = min(case.window[0] for case in cases) - MAX_STAY
    high = max(case.window[1] for case in cases)
    people = sorted(by_person)
    rows: list[Any] = []
    as_utc = _as_utc(db.session.get_bind().dialect.name)
    bounds = [_driver_time(low), _driver_time(high)]
    for first in range(0, len(people), PEOPLE_PER_QUERY):
        chunk = people[first : first + PEOPLE_PER_QUERY]
        marks = _marks(len(chunk))
        sql = (
            f"SELECT {_VISIT_SQL}, c.person_id FROM checkins c"  # noqa: S608 (constants and markers only)
            f" WHERE c.person_id IN ({marks}) AND c.checked_in_at >= ? AND c.checked_in_at < ?"
            f" UNION ALL SELECT {_VISIT_SQL}, m.person_id FROM checkins c JOIN companions m ON m.checkin_id = c.id"
            f" WHERE m.person_id IN ({marks}) AND c.checked_in_at >= ? AND c.checked_in_at < ?"
        )
        for row in _driver_rows(sql, [*chunk, *bounds, *chunk, *bounds]):
            rows.append((*row[:5], as_utc(row[5]), as_utc(row[6]), None if row[7] is None else as_utc(row[7]), row[8]))
    halls.preload(row[2] for row in rows)  # candidates are at these venues too
    found: dict[int, dict[int, Stay]] = {case.case_id: {} for case in cases}
    for row in rows:
        visit, person_id = tuple(row[:8]), row[8]
        if owners is not None:
            owners[visit[0]] = visit[1]
        for case in by_person[person_id]:
            start, end = case.window
            if not (start - MAX_STAY <= visit[5] < end):
                continue
            stay = _stay(visit, person_id, halls, now)
            if stay.ends_at > start:
                found[case.case_id].setdefault(stay.checkin_id, stay)
    return {
        case_id: sorted(stays.values(), key=lambda s: (s.starts_at, s.checkin_id)) for case_id, stays in found.items()
    }


def case_stays(
    person_id: int, window: tuple[datetime, datetime], now: datetime, halls: _Halls | None = None
) -> list[Stay]:
    """The visits of one person that overlap an infectious window (see _case_stays_many)."""
    return _case_stays_many([CaseQuery(0, person_id, window)], now, halls or _Halls())[0]


def _candidate_ranges(stays: Sequence[Stay], rules: MatchRules) -> list[tuple[int, datetime, datetime]]:
    """(venue, since, reach) ranges that together cover every case visit: case visits at one venue
    whose reach (end plus tail) overlaps or touches the next one's start share one range, so a busy
    venue is read once however many case visits it had."""
    by_venue: dict[int, list[Stay]] = {}
    for stay in stays:
        by_venue.setdefault(stay.venue_id, []).append(stay)
    ranges = []
    for venue_id in sorted(by_venue):
        group = sorted(by_venue[venue_id], key=lambda s: s.starts_at)
        since, reach = group[0].starts_at, group[0].ends_at + rules.tail
        for stay in group[1:]:
            if stay.starts_at > reach:
                ranges.append((venue_id, since, reach))
                since, reach = stay.starts_at, stay.ends_at + rules.tail
            else:
                reach = max(reach, stay.ends_at + rules.tail)
        ranges.append((venue_id, since, reach))
    return ranges


_CANDIDATE_BRANCH = (
    "SELECT id, person_id, venue_id, entrance_id, party_size, checked_in_at, planned_checkout_at, checked_out_at"
    " FROM checkins WHERE venue_id = :venue{n} AND checked_in_at > :low{n} AND checked_in_at < :reach{n}"
    " AND coalesce(checked_out_at, planned_checkout_at) > :since{n}"
)


@lru_cache(maxsize=64)
def _candidate_query(ranges: int) -> str:
    """Visits at a range's venue that arrived before its reach (at most MAX_STAY before ``since``: a
    tight range on ix_checkins_venue_id_checked_in_at) and had not left by ``since``; one UNION ALL
    branch per range. SQLite's form, run on the driver's cursor with named parameters.

    The last condition is a superset of the exact rule (matching decides exactly) that lets the
    database drop the day's other visits instead of shipping them to Python. The index holds every
    column read here, so each branch is an index-only range scan that never visits the table (an OR
    of the ranges would make SQLite and PostgreSQL fetch every row of the range to test it). Textual
    SQL, built once per number of ranges, on the driver's own cursor: building and caching an
    expression of fifty ranges for every query, and SQLAlchemy's handling of each result row, cost
    more than the database's work.
    """
    return " UNION ALL ".join(_CANDIDATE_BRANCH.format(n=n) for n in range(ranges))


def _sqlite_time(value: datetime) -> str:
    """A UTC instant in UTCDateTime's SQLite storage form (naive UTC text, which sorts in time order)."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _driver_time(value: datetime) -> Any:
    """A timestamp parameter for SQL run on the driver's cursor (see _driver_rows)."""
    return _sqlite_time(value) if db.session.get_bind().dialect.name == "sqlite" else value


def _sqlite_utc(value: str) -> datetime:
    """UTCDateTime's SQLite text back as an aware UTC datetime, in one C call."""
    return datetime.fromisoformat(value + "+00:00")


def _utc(value: Any) -> datetime:
    """A raw timestamp from the driver as an aware UTC datetime: SQLite hands back text in the format
    UTCDateTime stores, PostgreSQL an aware datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# psycopg's named parameters, run on the driver's cursor (SQLAlchemy's result rows cost more than
# the server's work); psycopg prepares it after a few executions.
_CANDIDATE_QUERY_POSTGRESQL = (
    "SELECT c.id, c.person_id, c.venue_id, c.entrance_id, c.party_size, c.checked_in_at,"
    " c.planned_checkout_at, c.checked_out_at"
    " FROM unnest(CAST(%(venues)s AS integer[]), CAST(%(lows)s AS timestamptz[]),"
    " CAST(%(reaches)s AS timestamptz[]), CAST(%(sinces)s AS timestamptz[])) AS r(venue_id, low, reach, since)"
    " CROSS JOIN LATERAL (SELECT * FROM checkins WHERE checkins.venue_id = r.venue_id"
    " AND checkins.checked_in_at > r.low AND checkins.checked_in_at < r.reach"
    " AND coalesce(checkins.checked_out_at, checkins.planned_checkout_at) > r.since) AS c"
)

# Ranges per candidate query: bounded statement size (SQLite: one UNION ALL branch each;
# PostgreSQL: one array element each, in one statement the driver prepares once).
RANGES_PER_QUERY = {"sqlite": 50, "postgresql": 1000}


def _candidate_rows(connection: Any, ranges: Sequence[tuple[int, datetime, datetime]]) -> list[tuple[Any, ...]]:
    """The rows of _candidate_query for these ranges, times as aware UTC datetimes. PostgreSQL gets
    the same ranges as four arrays joined laterally to the index: one fixed statement, so the driver
    prepares it once and the server never re-plans it for each number of ranges."""
    cursor = connection.connection.driver_connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            cursor.execute(
                _CANDIDATE_QUERY_POSTGRESQL,
                {
                    "venues": [venue_id for venue_id, _since, _reach in ranges],
                    "lows": [since - MAX_STAY for _venue, since, _reach in ranges],
                    "reaches": [reach for _venue, _since, reach in ranges],
                    "sinces": [since for _venue, since, _reach in ranges],
                },
            )
            return [
                (row[0], row[1], row[2], row[3], row[4], _utc(row[5]), _utc(row[6]),
                 None if row[7] is None else _utc(row[7]))
                for row in cursor.fetchall()
            ]  # fmt: skip
        return _sqlite_candidate_rows(cursor, ranges)
    finally:
        cursor.close()


def _sqlite_candidate_rows(cursor: Any, ranges: Sequence[tuple[int, datetime, datetime]]) -> list[tuple[Any, ...]]:
    params: dict[str, Any] = {}
    for n, (venue_id, since, reach) in enumerate(ranges):
        params.update(
            {
                f"venue{n}": venue_id,
                f"low{n}": _sqlite_time(since - MAX_STAY),
                f"reach{n}": _sqlite_time(reach),
                f"since{n}": _sqlite_time(since),
            }
        )
    cursor.execute(_candidate_query(len(ranges)), params)
    return [
        (row[0], row[1], row[2], row[3], row[4], _sqlite_utc(row[5]), _sqlite_utc(row[6]),
         None if row[7] is None else _sqlite_utc(row[7]))
        for row in cursor.fetchall()
    ]  # fmt: skip


def candidate_stays(stays: Sequence[Stay], rules: MatchRules, now: datetime, halls: _Halls) -> Iterator[Stay]:
    """Stream the visits that may overlap any case visit: one query per group of ranges. A visit
    reached by two ranges is streamed twice; find_contacts counts each pair once."""
    ranges = _candidate_ranges(stays, rules)
    connection = db.session.connection()
    size = RANGES_PER_QUERY.get(connection.dialect.name, 50)
    for first in range(0, len(ranges), size):
        # Not streamed with yield_per: the overlap filter returns only visits that really overlap
        # (hundreds per case visit), and a server-side cursor would cost PostgreSQL extra round trips.
        for row in _candidate_rows(connection, ranges[first : first + size]):
            yield _stay(row, row[1], halls, now)


def _parties(checkin_ids: Iterable[int]) -> dict[int, list[int]]:
    """Check-in id -> the people who came as its companions and gave a phone number (or an account).

    Callers pass only check-ins whose party size is above one: companions are only ever added within
    the party size (checkins.validate_party), so a party of one has none (and most visits are one
    person's, so most batches need no query here at all).
    """
    ids = sorted(set(checkin_ids))
    parties: dict[int, list[int]] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        sql = (
            "SELECT checkin_id, person_id FROM companions"  # noqa: S608 (markers only)
            f" WHERE person_id IS NOT NULL AND checkin_id IN ({_marks(len(chunk))})"
        )
        for checkin_id, person_id in _driver_rows(sql, chunk):
            parties.setdefault(checkin_id, []).append(person_id)
    return parties


def _expand(
    person_id: int,
    stays: Sequence[Stay],
    contacts: Iterable[Contact],
    parties: Mapping[int, list[int]],
    owners: Mapping[int, int],
    rules: MatchRules,
) -> list[Contact]:
    """Add the exposed visitors' companions and the case's own party on each case visit (the owner of a
    check-in the case joined as a companion, and the other companions); keep the strongest contact per
    (check-in, person); never the case themselves."""
    expanded: list[Contact] = []
    for contact in contacts:
        expanded.append(contact)
        for companion in parties.get(contact.checkin_id, ()):
            expanded.append(dataclasses.replace(contact, person_id=companion))
    for stay in stays:
        for member in (owners.get(stay.checkin_id), *parties.get(stay.checkin_id, ())):
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
    return sorted(best.values(), key=lambda c: (c.checkin_id, c.person_id))


def _rounds(cases: Sequence[CaseQuery], stays: Mapping[int, list[Stay]]) -> list[list[CaseQuery]]:
    """Split cases so that no check-in is a case visit of two cases in one round (the same person
    twice, or two cases on one party's check-in): within a round a case visit names its case."""
    rounds: list[tuple[list[CaseQuery], set[int]]] = []
    for case in cases:
        ids = {stay.checkin_id for stay in stays[case.case_id]}
        for members, used in rounds:
            if used.isdisjoint(ids):
                members.append(case)
                used |= ids
                break
        else:
            rounds.append(([case], ids))
    return [members for members, _ in rounds]


def find_contacts_for_cases(
    cases: Sequence[CaseQuery], rules: MatchRules, now: datetime
) -> dict[int, tuple[list[Stay], list[Contact]]]:
    """Case id -> (the case's visits, per exposed (check-in, person) the strongest contact), for many
    cases at once: their visits in one query per PEOPLE_PER_QUERY people, and every venue's visits
    read once per round however many case visits it had. The same result as one case at a time.

    Exposed are: other visitors co-present with a case visit (matching.find_contacts), their
    companions, and the rest of the case's own party on each case visit.
    """
    if not cases:
        return {}
    halls = _Halls()
    owners: dict[int, int] = {}
    stays = _case_stays_many(cases, now, halls, owners)
    results: dict[int, tuple[list[Stay], list[Contact]]] = {}
    for members in _rounds(cases, stays):
        round_stays = [stay for case in members for stay in stays[case.case_id]]
        case_of = {stay.checkin_id: case.case_id for case in members for stay in stays[case.case_id]}
        found = matching.find_contacts(round_stays, candidate_stays(round_stays, rules, now, halls), rules)
        per_case: dict[int, list[Contact]] = {case.case_id: [] for case in members}
        for contact in found:
            per_case[case_of[contact.case_checkin_id]].append(contact)
        parties = _parties(
            [c.checkin_id for c in found if c.party_size > 1] + [s.checkin_id for s in round_stays if s.party_size > 1]
        )
        for case in members:
            case_stays_ = stays[case.case_id]
            results[case.case_id] = (
                case_stays_,
                _expand(case.person_id, case_stays_, per_case[case.case_id], parties, owners, rules),
            )
    return results


def find_case_contacts(
    person_id: int, window: tuple[datetime, datetime], rules: MatchRules, now: datetime
) -> tuple[list[Stay], list[Contact]]:
    """One person's visits in the window and the contacts they exposed (see find_contacts_for_cases)."""
    return find_contacts_for_cases([CaseQuery(0, person_id, window)], rules, now)[0]
