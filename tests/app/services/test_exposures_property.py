"""Property: the matching job's Exposure rows equal a brute-force oracle written independently here.

Random venues with halls, visits (some still open), companions and a case around the end of summer
time in Berlin (25 Oct 2026), written to the database; visits start on a 5-minute grid so touching
intervals and visits that begin exactly where the tail ends come up often.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from app.models import Case, Checkin, CheckinSource, Companion, Exposure
from app.services.exposures import match_case, match_case_batch
from app.services.matching import MatchRules
from tests import factories as f

BERLIN = ZoneInfo("Europe/Berlin")
BASE = datetime(2026, 10, 23, 20, 0, tzinfo=UTC)
NOW = BASE + timedelta(days=3)
RULES = MatchRules(tail=timedelta(minutes=30), high_risk_overlap=timedelta(minutes=15), lead_days=1)


@dataclass
class V:
    owner: int
    venue: int
    hall: int | None  # index of a hall of the venue, or None for the main entrance
    start: int  # minutes after BASE
    minutes: int | None  # None: still open
    planned: int
    companions: list[int]


visit = st.builds(
    V,
    owner=st.integers(0, 5),
    venue=st.integers(0, 1),
    hall=st.one_of(st.none(), st.integers(0, 1)),
    start=st.integers(0, 3 * 24 * 12 - 1).map(lambda n: n * 5),
    minutes=st.one_of(st.none(), st.integers(1, 36).map(lambda n: n * 5)),
    planned=st.integers(1, 36).map(lambda n: n * 5),
    companions=st.lists(st.integers(0, 5), max_size=2),
)
scenario = st.fixed_dictionaries(
    {
        "visits": st.lists(visit, min_size=1, max_size=14),
        "halls": st.tuples(st.integers(0, 2), st.integers(0, 2)),
        "tested_on": st.sampled_from([date(2026, 10, d) for d in range(24, 28)]),
        "onset_days_before": st.one_of(st.none(), st.integers(-1, 2)),
        "isolated_days_after": st.one_of(st.none(), st.integers(0, 2)),
    }
)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)


def _oracle(visits: list[tuple[int, V]], case_person: int, window: tuple[datetime, datetime]) -> set[Any]:
    def interval(v: V) -> tuple[datetime, datetime]:
        start = BASE + timedelta(minutes=v.start)
        end = (
            start + timedelta(minutes=v.minutes)
            if v.minutes is not None
            else min(start + timedelta(minutes=v.planned), NOW)
        )
        return start, max(start, end)

    def members(v: V) -> set[int]:
        return {v.owner, *v.companions}

    case_visits = []
    for cid, v in visits:
        s, e = interval(v)
        if case_person in members(v) and s < window[1] and e > window[0]:
            case_visits.append((cid, v, s, e))
    best: dict[tuple[int, int], tuple[tuple[Any, ...], tuple[int, int, str, int, int]]] = {}
    for case_id, cv, cs, ce in case_visits:
        reach = ce + RULES.tail
        for oid, ov in visits:
            os_, oe = interval(ov)
            if oid != case_id:
                if ov.venue != cv.venue or ov.owner == case_person:
                    continue
                if cv.hall is not None and ov.hall is not None and cv.hall != ov.hall:
                    continue
                if not (os_ < reach and oe > cs):
                    continue
            overlap = min(oe, reach) - max(os_, cs)
            tail_only = os_ >= ce
            risk = "high" if overlap >= RULES.high_risk_overlap and not tail_only else "low"
            for person in members(ov) - {case_person}:
                strength = (risk == "high", overlap, not tail_only, -case_id)
                row = (oid, person, risk, int(overlap.total_seconds()), case_id)
                if (oid, person) not in best or strength > best[(oid, person)][0]:
                    best[(oid, person)] = (strength, row)
    return {row for _, row in best.values()}


def _write(db: Any, data: dict[str, Any]) -> tuple[list[Any], list[tuple[int, V]]]:
    """Write the scenario's venues, six people and their visits; returns the people and (id, visit)."""
    venues = [f.venue(name=f"Venue {i}", timezone="Europe/Berlin", halls=("A", "B")[:n])
              for i, n in enumerate(data["halls"])]  # fmt: skip
    persons = [f.person() for _ in range(6)]
    # The schema allows one open visit per person: later open visits of the same person get closed.
    open_seen: set[int] = set()
    written: list[tuple[int, V]] = []
    for v in data["visits"]:
        hall_count = len(venues[v.venue].entrances) - 1
        if v.hall is not None and v.hall >= hall_count:
            v.hall = None
        if v.minutes is None and v.owner in open_seen:
            v.minutes = v.planned
        if v.minutes is None:
            open_seen.add(v.owner)
        v.companions = sorted(set(v.companions) - {v.owner})
        start = BASE + timedelta(minutes=v.start)
        entrance = venues[v.venue].entrances[0 if v.hall is None else v.hall + 1]
        row = Checkin(
            person_id=persons[v.owner].id,
            venue_id=venues[v.venue].id,
            entrance_id=entrance.id,
            party_size=1 + len(v.companions),
            source=CheckinSource.POSTER,
            checked_in_at=start,
            planned_checkout_at=start + timedelta(minutes=v.planned),
            checked_out_at=None if v.minutes is None else start + timedelta(minutes=v.minutes),
        )
        row.companions = [Companion(person_id=persons[c].id) for c in v.companions]
        db.session.add(row)
        db.session.flush()
        written.append((row.id, v))
    return persons, written


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=scenario)
def test_exposures_equal_a_brute_force_oracle(app: Any, db: Any, data: dict[str, Any]) -> None:
    savepoint = db.session.begin_nested()
    try:
        persons, written = _write(db, data)
        tested = data["tested_on"]
        onset = None if data["onset_days_before"] is None else tested - timedelta(days=data["onset_days_before"])
        isolated = None if data["isolated_days_after"] is None else tested + timedelta(days=data["isolated_days_after"])
        case = Case(
            person_id=persons[0].id, tested_on=tested, symptom_onset=onset, isolated_on=isolated, created_at=NOW
        )
        db.session.add(case)
        db.session.flush()
        first_day = tested if onset is None else min(onset, tested)
        window = (_midnight(first_day - timedelta(days=RULES.lead_days)),
                  _midnight((isolated or tested) + timedelta(days=1)))  # fmt: skip

        match_case(case.id, now=NOW, rules=RULES, tz=BERLIN)
        match_case(case.id, now=NOW, rules=RULES, tz=BERLIN)  # idempotent

        id_of = {p.id: i for i, p in enumerate(persons)}
        got = {
            (e.checkin_id, id_of[e.person_id], e.risk.value, e.overlap_seconds, e.case_checkin_id)
            for e in db.session.scalars(select(Exposure).where(Exposure.case_id == case.id))
        }
        assert (case.window_starts_at, case.window_ends_at) == window
        assert got == _oracle(written, 0, window)
    finally:
        savepoint.rollback()


def _window(tested: date, onset: date | None, isolated: date | None) -> tuple[datetime, datetime]:
    first_day = tested if onset is None else min(onset, tested)
    return (_midnight(first_day - timedelta(days=RULES.lead_days)),
            _midnight((isolated or tested) + timedelta(days=1)))  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=scenario,
    cases=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from([date(2026, 10, d) for d in range(24, 28)])),
        min_size=1,
        max_size=4,
    ),
)
def test_a_batch_of_cases_gives_each_case_what_the_oracle_gives_it_alone(
    app: Any, db: Any, data: dict[str, Any], cases: list[tuple[int, date]]
) -> None:
    """Several cases matched in one batch (the job's way): people who were each other's contacts,
    shared a party's check-in, or are the same person twice; every case still gets exactly its own
    exposures."""
    savepoint = db.session.begin_nested()
    try:
        persons, written = _write(db, data)
        rows = [Case(person_id=persons[who].id, tested_on=tested, created_at=NOW) for who, tested in cases]
        db.session.add_all(rows)
        db.session.flush()

        result = match_case_batch([c.id for c in rows], now=NOW, rules=RULES, tz=BERLIN)

        assert [r.case_id for r in result.cases] == [c.id for c in rows]
        id_of = {p.id: i for i, p in enumerate(persons)}
        for case, (who, tested) in zip(rows, cases, strict=True):
            window = _window(tested, None, None)
            got = {
                (e.checkin_id, id_of[e.person_id], e.risk.value, e.overlap_seconds, e.case_checkin_id)
                for e in db.session.scalars(select(Exposure).where(Exposure.case_id == case.id))
            }
            assert (case.window_starts_at, case.window_ends_at) == window
            assert case.matched_at == NOW
            assert got == _oracle(written, who, window)
    finally:
        savepoint.rollback()
