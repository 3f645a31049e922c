"""Matching a case again when visits it could not have seen appear after it was matched.

A case is matched once, against the visits stored at that moment. Three kinds of visit come later:
- a visit recorded late: a kiosk that was offline sends its check-ins hours later, or a visitor corrects
  a visit's times. Whoever records it calls `reopen_after_late_visits`, which marks for matching again
  the active cases whose person was at that venue around that time (their own visit or as a companion);
- the case's own new visits, while the infectious window is still open (a case recorded in the morning,
  window to midnight, who goes out);
- other people arriving while the case is still there, or inside the tail after the case left: a stay
  that was going on when the case was matched.
The last two are found by `cases_to_match_again`, which the matching job runs before each run's new
cases. A case marked again loses its matched mark and goes through matching like a new one: exposures
already stored are kept (unique per case, visit and person) and only new ones are added, so a person is
still notified once per visit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, func, literal_column, select, union, update

from app.extensions import db
from app.models import Case, CaseStatus, Checkin, Companion
from app.services.exposures.finding import MAX_STAY, PEOPLE_PER_QUERY, rules_from_config
from app.services.matching import MatchRules

# A visit recorded more than this after it began is late (kiosk batches normally arrive within seconds).
# A visit recorded sooner is covered by the job's check of stays going on near the matching time, which
# allows the same margin.
LATE_AFTER = timedelta(minutes=5)


def settling_time(rules: MatchRules) -> timedelta:
    """How long after its window's end a case's match can still change through its own visits: a stay
    that began inside the window lasts at most MAX_STAY, then its tail, then the margin for recording.
    A case examined later than that, and found complete, is settled for good (`cases_to_match_again`)."""
    return MAX_STAY + rules.tail + LATE_AFTER


def _matched_before_settling(rules: MatchRules) -> ColumnElement[bool]:
    """Cases matched before their window's end plus settling_time (in SQL: a comparison of two columns)."""
    seconds = settling_time(rules).total_seconds()
    if db.session.get_bind().dialect.name == "postgresql":
        return Case.matched_at < Case.window_ends_at + literal_column(f"interval '{int(seconds)} seconds'")
    # SQLite keeps timestamps as ISO text: compare them as Julian days.
    return func.julianday(Case.matched_at) < func.julianday(Case.window_ends_at) + seconds / 86400


def reopen_cases_at(venue_id: int, starts_at: datetime, ends_at: datetime, rules: MatchRules) -> int:
    """Mark for matching again the active, matched cases that were at `venue_id` (themselves or as a
    companion) at a time that a visit there from `starts_at` to `ends_at`, just recorded late, could
    overlap, tail included; their number. In the caller's transaction."""
    earliest = starts_at - rules.tail - MAX_STAY
    concerned = (
        Case.status == CaseStatus.ACTIVE,
        Case.matched_at.is_not(None),
        Case.window_starts_at < ends_at,
        Case.window_ends_at > earliest,
    )
    # Most late uploads meet no case at all: one look at the cases first, not at the venue's visits.
    if db.session.scalar(select(Case.id).where(*concerned).limit(1)) is None:
        return 0
    present = union(
        select(Checkin.person_id).where(
            Checkin.venue_id == venue_id, Checkin.checked_in_at >= earliest, Checkin.checked_in_at < ends_at
        ),
        select(Companion.person_id)
        .join(Checkin, Checkin.id == Companion.checkin_id)
        .where(
            Checkin.venue_id == venue_id,
            Checkin.checked_in_at >= earliest,
            Checkin.checked_in_at < ends_at,
            Companion.person_id.is_not(None),
        ),
    )
    result = db.session.execute(
        update(Case)
        .where(*concerned, Case.person_id.in_(select(present.subquery().c.person_id)))
        .values(matched_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)


def reopen_after_late_visits(venue_id: int, spans: Iterable[tuple[datetime, datetime]], now: datetime) -> int:
    """`reopen_cases_at` for the visits (start, end) just recorded at a venue that began more than
    LATE_AFTER before `now`, if any (one statement for them all); the number of cases marked."""
    late = [(start, end) for start, end in spans if start < now - LATE_AFTER]
    if not late:
        return 0
    rules = rules_from_config(current_app.config)
    return reopen_cases_at(venue_id, min(s for s, _ in late), max(e for _, e in late), rules)


def cases_to_match_again(now: datetime, rules: MatchRules, retention_days: int = 21) -> list[int]:
    """Active cases matched before one of their own visits (inside the window) was recorded or
    corrected, or while one of them was going on or had ended less than the tail (plus LATE_AFTER)
    before: people arriving since may be contacts (one query per PEOPLE_PER_QUERY people).

    Only cases matched before their window's end plus `settling_time` are looked at, however long ago
    that was (a jobs process stopped for days still finds them), within retention. One looked at after
    that time and found complete is settled: its matched_at moves to `now`, which the stored exposures
    hold true for, and it is not looked at again (a late upload still reopens it)."""
    cases = db.session.execute(
        select(Case.id, Case.person_id, Case.matched_at, Case.window_starts_at, Case.window_ends_at).where(
            Case.status == CaseStatus.ACTIVE,
            Case.matched_at.is_not(None),
            Case.window_ends_at > now - timedelta(days=retention_days),
            _matched_before_settling(rules),
        )
    ).all()
    if not cases:
        return []
    # person -> (case id, matched at, window start, window end)
    by_person: dict[int, list[tuple[int, datetime, datetime, datetime]]] = {}
    for case_id, person_id, matched_at, window_start, window_end in cases:
        by_person.setdefault(person_id, []).append((case_id, matched_at, window_start, window_end))
    low = min(window_start for found in by_person.values() for _, _, window_start, _ in found) - MAX_STAY
    high = max(window_end for found in by_person.values() for _, _, _, window_end in found)
    columns = (
        Checkin.checked_in_at,
        Checkin.checked_out_at,
        Checkin.planned_checkout_at,
        Checkin.created_at,
        Checkin.corrected_at,
    )
    again: set[int] = set()
    people = sorted(by_person)
    for first in range(0, len(people), PEOPLE_PER_QUERY):
        chunk = people[first : first + PEOPLE_PER_QUERY]
        in_range = (Checkin.checked_in_at >= low, Checkin.checked_in_at < high)
        rows = db.session.execute(
            union(
                select(Checkin.person_id, *columns).where(Checkin.person_id.in_(chunk), *in_range),
                select(Companion.person_id, *columns)
                .join(Checkin, Checkin.id == Companion.checkin_id)
                .where(Companion.person_id.in_(chunk), *in_range),
            )
        ).all()
        for person_id, starts_at, checked_out_at, planned_at, created_at, corrected_at in rows:
            ends_at = min(checked_out_at or planned_at, starts_at + MAX_STAY)
            recorded = max(created_at, corrected_at) if corrected_at is not None else created_at
            for case_id, matched_at, window_start, window_end in by_person[person_id]:
                if not (starts_at < window_end and ends_at > window_start):
                    continue
                if recorded > matched_at or ends_at + rules.tail > matched_at - LATE_AFTER:
                    again.add(case_id)
    settled = [
        case_id
        for case_id, _p, _m, _s, window_end in cases
        if case_id not in again and now >= window_end + settling_time(rules)
    ]
    _set_matched_at(settled, now)
    return sorted(again)


def mark_for_matching_again(case_ids: Sequence[int]) -> None:
    _set_matched_at(case_ids, None)


def _set_matched_at(case_ids: Sequence[int], value: datetime | None) -> None:
    """Set matched_at of those of the cases still matched (one reopened meanwhile stays reopened)."""
    for first in range(0, len(case_ids), PEOPLE_PER_QUERY):
        db.session.execute(
            update(Case)
            .where(Case.id.in_(case_ids[first : first + PEOPLE_PER_QUERY]), Case.matched_at.is_not(None))
            .values(matched_at=value)
            .execution_options(synchronize_session=False)
        )
