"""Cases matched again when visits they could not have seen appear later: a kiosk's late upload, a
visitor's correction, the case's own new visits, people arriving while the case is still there."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.jobs import run_job
from app.models import Case, Exposure
from app.services import exposure_jobs
from app.services.checkins import own_visits
from app.services.exposures import match_case, rematching, rules_from_config
from tests import factories as f


@pytest.fixture
def job_clock(monkeypatch: pytest.MonkeyPatch, now: datetime) -> list[datetime]:
    """The matching job's clock: starts at `now`; a test moves it by replacing clock[0]."""
    clock = [now]
    monkeypatch.setattr(exposure_jobs, "utcnow", lambda: clock[0])
    return clock


def _case(person: Any, now: datetime) -> Case:
    """A case tested and recorded at `now`, committed (the job runs in its own transactions)."""
    case = f.case(person, now, now)
    f.db.session.commit()
    return case


def _matched(app: Flask, case: Case, at: datetime) -> Case:
    match_case(case.id, now=at, rules=rules_from_config(app.config), tz=ZoneInfo("Europe/Moscow"))
    f.db.session.commit()
    return case


def _exposed(case: Case) -> list[int]:
    f.db.session.expire_all()
    return sorted(f.db.session.scalars(select(Exposure.person_id).where(Exposure.case_id == case.id)))


def _visit(who: Any, venue: Any, at: datetime, *, recorded: datetime, minutes: int | None = 60) -> Any:
    visit = f.checkin(who, venue, at, minutes=minutes)
    visit.created_at = recorded
    f.db.session.commit()
    return visit


def test_people_arriving_while_the_case_is_still_there_are_found_by_the_next_run(
    app: Flask, db: Any, now: datetime, job_clock: list[datetime]
) -> None:
    venue = f.venue()
    sick, newcomer, after_tail = f.person(), f.person(), f.person()
    _visit(sick, venue, now - timedelta(minutes=30), recorded=now - timedelta(minutes=30), minutes=None)  # open
    case = _case(sick, now)
    assert run_job(app, "match_cases")["cases"] == 1

    job_clock[0] = now + timedelta(minutes=20)
    _visit(newcomer, venue, now + timedelta(minutes=10), recorded=now + timedelta(minutes=10), minutes=None)
    result = run_job(app, "match_cases")
    assert result["matched_again"] == 1 and _exposed(case) == [newcomer.id]

    # The case's visit ends at its planned end (60 minutes); someone arriving long after the tail is no
    # contact, and once the stay, its tail and the margin are over the case is left alone.
    job_clock[0] = now + timedelta(hours=3)
    _visit(after_tail, venue, now + timedelta(hours=2), recorded=now + timedelta(hours=2))
    run_job(app, "match_cases")
    assert _exposed(case) == [newcomer.id]
    assert run_job(app, "match_cases")["matched_again"] == 0


def test_after_days_without_a_jobs_process_people_who_arrived_while_the_case_was_there_are_found(
    app: Flask, db: Any, now: datetime, job_clock: list[datetime]
) -> None:
    venue = f.venue()
    sick, newcomer = f.person(), f.person()
    _visit(sick, venue, now - timedelta(minutes=30), recorded=now - timedelta(minutes=30))  # until now + 30 min
    case = _case(sick, now)
    assert run_job(app, "match_cases")["cases"] == 1
    _visit(newcomer, venue, now + timedelta(minutes=10), recorded=now + timedelta(minutes=10))
    # The jobs process stops before its next run and comes back three days later, long after the window.
    job_clock[0] = now + timedelta(days=3)
    assert run_job(app, "match_cases")["matched_again"] == 1
    assert _exposed(case) == [newcomer.id]
    assert run_job(app, "match_cases")["matched_again"] == 0


def test_a_case_found_complete_after_its_window_settled_is_not_looked_at_again(
    app: Flask, db: Any, now: datetime, job_clock: list[datetime]
) -> None:
    venue = f.venue()
    sick = f.person()
    _visit(sick, venue, now - timedelta(hours=5), recorded=now - timedelta(hours=5))  # over before matching
    case = _case(sick, now)
    run_job(app, "match_cases")
    db.session.expire_all()
    first_match = db.session.get(Case, case.id).matched_at
    assert first_match == now
    rules = rules_from_config(app.config)
    # Before its window has settled a run looks at it and leaves it; after, once, and marks it complete.
    job_clock[0] = case.window_ends_at + timedelta(hours=1)
    assert run_job(app, "match_cases")["matched_again"] == 0
    db.session.expire_all()
    assert db.session.get(Case, case.id).matched_at == first_match
    settled_at = case.window_ends_at + rematching.settling_time(rules) + timedelta(minutes=1)
    job_clock[0] = settled_at
    assert run_job(app, "match_cases")["matched_again"] == 0
    db.session.expire_all()
    assert db.session.get(Case, case.id).matched_at == settled_at
    # Looked at again, it would be settled again at the new time.
    assert rematching.cases_to_match_again(settled_at + timedelta(days=2), rules) == []
    db.session.expire_all()
    assert db.session.get(Case, case.id).matched_at == settled_at


def test_the_cases_own_visit_after_matching_inside_the_window_is_matched(
    app: Flask, db: Any, now: datetime, job_clock: list[datetime]
) -> None:
    first, second = f.venue(), f.venue()
    sick, there = f.person(), f.person()
    _visit(sick, first, now - timedelta(hours=5), recorded=now - timedelta(hours=5))
    case = _case(sick, now)
    run_job(app, "match_cases")
    # Recorded in the morning, the window runs to midnight: the case goes out anyway.
    job_clock[0] = now + timedelta(hours=2)
    _visit(there, second, now + timedelta(minutes=50), recorded=now + timedelta(minutes=50))
    _visit(sick, second, now + timedelta(hours=1), recorded=now + timedelta(hours=1))
    assert run_job(app, "match_cases")["matched_again"] == 1
    assert _exposed(case) == [there.id]


def test_a_visitors_correction_into_the_cases_time_is_matched(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue()
    sick, visitor = f.person(), f.person()
    _visit(sick, venue, now - timedelta(hours=10), recorded=now - timedelta(hours=10))
    visit = _visit(visitor, venue, now - timedelta(hours=14), recorded=now - timedelta(hours=14))
    case = _matched(app, _case(sick, now - timedelta(minutes=30)), now - timedelta(minutes=29))
    assert _exposed(case) == []
    # "I was there at 10 hours ago, not 14": the corrected visit now overlaps the case's.
    own_visits.correct_times(
        visitor, visit.id, now - timedelta(hours=10, minutes=-5), now - timedelta(hours=9), now=now, retention_days=21
    )
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Case, case.id).matched_at is None


def test_reopening_matches_only_cases_present_at_that_venue_and_time(app: Flask, db: Any, now: datetime) -> None:
    here, there = f.venue(), f.venue()
    at_here, at_there, companion_here, annulled = f.person(), f.person(), f.person(), f.person()
    start = now - timedelta(hours=8)
    _visit(at_here, here, start, recorded=start)
    _visit(at_there, there, start, recorded=start)
    _visit(annulled, here, start, recorded=start)
    with_companion = _visit(f.person(), here, start, recorded=start)
    from app.models import CaseStatus, Companion

    db.session.add(Companion(checkin_id=with_companion.id, person_id=companion_here.id))
    cases = {who: _matched(app, _case(who, now), now) for who in (at_here, at_there, companion_here, annulled)}
    cases[annulled].status = CaseStatus.ANNULLED
    db.session.commit()
    rules = rules_from_config(app.config)
    reopened = rematching.reopen_cases_at(here.id, start + timedelta(minutes=70), start + timedelta(hours=2), rules)
    db.session.expire_all()
    assert reopened == 2
    assert {who for who, case in cases.items() if db.session.get(Case, case.id).matched_at is None} == {
        at_here,
        companion_here,
    }
    # A visit starting after the case's stay and tail: nobody to reopen.
    later = start + timedelta(hours=1, minutes=31)
    assert rematching.reopen_cases_at(here.id, later, later + timedelta(hours=1), rules) == 0
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.matched_at.is_(None))) == 2
