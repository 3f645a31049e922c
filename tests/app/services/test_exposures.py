"""Matching in the database: exposures found, companions and halls, idempotency, crash safety."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.jobs import run_job, unit_of_work
from app.models import Case, Companion, Exposure, Notice, OutboxMessage, VenueOutbreak
from app.services import exposure_jobs, exposures, matching, notices
from app.services.exposures import match_case, rules_from_config
from tests import factories as f

MSK = ZoneInfo("Europe/Moscow")


def _match(app: Flask, case: Case, now: datetime) -> exposures.CaseMatch:
    return match_case(case.id, now=now, rules=rules_from_config(app.config), tz=MSK)


def _case(person: Any, now: datetime, tested_on: date | None = None) -> Case:
    c = Case(person_id=person.id, tested_on=tested_on or now.date(), created_at=now)
    f.db.session.add(c)
    f.db.session.flush()
    return c


def test_a_co_present_visitor_is_exposed_with_risk_and_a_reason_that_never_names_the_case(
    app: Flask, db: Any, now: datetime
) -> None:
    venue = f.venue(name="Кафе «Тест»")
    sick, other, later, elsewhere = f.person(), f.person(), f.person(), f.person()
    start = now - timedelta(days=1)
    f.checkin(sick, venue, start, minutes=60)
    near = f.checkin(other, venue, start + timedelta(minutes=30), minutes=60)
    tail = f.checkin(later, venue, start + timedelta(minutes=70), minutes=60)  # inside the 30 min tail
    f.checkin(later, f.venue(name="Elsewhere"), start + timedelta(minutes=200), minutes=30)
    f.checkin(elsewhere, venue, start + timedelta(minutes=90), minutes=30)  # arrives as the tail ends
    case = _case(sick, now)

    result = _match(app, case, now)

    rows = {e.checkin_id: e for e in db.session.scalars(select(Exposure).where(Exposure.case_id == case.id))}
    assert set(rows) == {near.id, tail.id}
    assert rows[near.id].risk == "high" and rows[near.id].overlap_seconds == 60 * 60
    assert rows[tail.id].risk == "low"
    assert rows[near.id].reason_en == (
        "You were at Кафе «Тест» from 15:30 to 16:30 on 19 Nov; "
        "a person who later tested positive was there from 15:00 to 16:00."
    )
    assert "Кафе «Тест»" in rows[near.id].reason_ru
    assert result.exposures_inserted == 2
    assert case.matched_at == now and case.window_starts_at is not None


def test_a_venue_name_full_of_quotes_braces_and_backslashes_is_stored_in_the_reason_as_it_is(
    app: Flask, db: Any, now: datetime
) -> None:
    """On PostgreSQL the reasons travel inside text arrays: nothing in a name may break them."""
    name = 'Bar "{A, B}" \\ NULL \\"end\\'
    venue = f.venue(name=name)
    sick, other = f.person(), f.person()
    start = now - timedelta(days=1)
    f.checkin(sick, venue, start, minutes=60)
    f.checkin(other, venue, start + timedelta(minutes=30), minutes=60)
    case = _case(sick, now)

    assert _match(app, case, now).exposures_inserted == 1

    (exposure,) = db.session.scalars(select(Exposure).where(Exposure.case_id == case.id))
    assert exposure.reason_en.startswith(f"You were at {name} from 15:30 to 16:30 on 19 Nov;")
    assert f"«{name}»" in exposure.reason_ru
    assert exposure.status == "new" and exposure.created_at == now and exposure.case_checkin_id is not None


def test_matching_twice_inserts_nothing_new(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue()
    sick, other = f.person(), f.person()
    start = now - timedelta(hours=5)
    f.checkin(sick, venue, start)
    f.checkin(other, venue, start)
    case = _case(sick, now)
    assert _match(app, case, now).exposures_inserted == 1
    second = _match(app, case, now)
    assert second.exposures_found == 1 and second.exposures_inserted == 0
    assert db.session.scalar(select(func.count()).select_from(Exposure)) == 1


def _committed_case_among(others: int, now: datetime) -> tuple[Case, set[int]]:
    """A case's visit and `others` visitors arriving a minute apart while the case is there, committed
    (they stay when a failed match rolls back); the case and the others' visit ids."""
    venue = f.venue()
    start = now - timedelta(hours=5)
    sick = f.person()
    f.checkin(sick, venue, start)
    visits = {f.checkin(f.person(), venue, start + timedelta(minutes=n)).id for n in range(others)}
    case = _case(sick, now)
    f.db.session.commit()
    return case, visits


def test_exposures_stream_in_chunks_and_a_failure_midway_writes_none_of_them(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small chunks, so that eleven exposures take four insert statements (on PostgreSQL, pipelined).
    monkeypatch.setattr(exposures.storing, "INSERT_CHUNK", 3)
    case, visits = _committed_case_among(11, now)
    real_describe = matching.describe_all
    calls = 0

    def fail_in_the_third_chunk(*args: Any, **kwargs: Any) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 8:  # two chunks are already on their way to the database
            raise RuntimeError("the reasons could not be written")
        return real_describe(*args, **kwargs)

    monkeypatch.setattr(matching, "describe_all", fail_in_the_third_chunk)
    with pytest.raises(RuntimeError, match="could not be written"), unit_of_work():
        _match(app, case, now)
    assert calls == 8
    assert db.session.scalar(select(func.count()).select_from(Exposure)) == 0
    assert db.session.get(Case, case.id).matched_at is None

    monkeypatch.setattr(matching, "describe_all", real_describe)
    with unit_of_work():
        result = _match(app, case, now)
    assert result.exposures_found == result.exposures_inserted == 11
    assert set(db.session.scalars(select(Exposure.checkin_id))) == visits
    assert _match(app, case, now).exposures_inserted == 0  # all eleven were stored, none twice


def test_a_row_the_database_refuses_midway_leaves_no_exposure_and_a_usable_session(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The visit of the last contact vanished (say, erased) between reading and writing: its foreign key
    # fails in the fourth insert statement, after three were sent (on PostgreSQL, in the pipeline).
    monkeypatch.setattr(exposures.storing, "INSERT_CHUNK", 3)
    case, _visits = _committed_case_among(10, now)
    real_find = exposures.storing.find_contacts_for_cases

    def with_a_vanished_visit(*args: Any, **kwargs: Any) -> Any:
        found = real_find(*args, **kwargs)
        stays, contacts = found[case.id]
        found[case.id] = (stays, [*contacts, dataclasses.replace(contacts[-1], checkin_id=2**31 - 1)])
        return found

    monkeypatch.setattr(exposures.storing, "find_contacts_for_cases", with_a_vanished_visit)
    with pytest.raises(Exception, match=r"(?i)foreign key"), unit_of_work():
        _match(app, case, now)
    assert db.session.scalar(select(func.count()).select_from(Exposure)) == 0
    assert db.session.get(Case, case.id).matched_at is None

    monkeypatch.setattr(exposures.storing, "find_contacts_for_cases", real_find)
    with unit_of_work():
        assert _match(app, case, now).exposures_inserted == 10


def test_companions_of_an_exposed_visit_and_of_the_case_are_exposed_as_themselves(
    app: Flask, db: Any, now: datetime
) -> None:
    venue = f.venue()
    sick, friend_of_sick, other, companion, no_phone = (f.person() for _ in range(5))
    start = now - timedelta(hours=5)
    sick_visit = f.checkin(sick, venue, start, party_size=2)
    other_visit = f.checkin(other, venue, start + timedelta(minutes=10), party_size=3)
    db.session.add_all(
        [
            Companion(checkin_id=sick_visit.id, person_id=friend_of_sick.id),
            Companion(checkin_id=other_visit.id, person_id=companion.id),
            Companion(checkin_id=other_visit.id, person_id=None),  # gave no phone: nobody to notify
        ]
    )
    db.session.flush()
    del no_phone
    case = _case(sick, now)
    _match(app, case, now)
    got = {(e.checkin_id, e.person_id, e.risk) for e in db.session.scalars(select(Exposure))}
    assert got == {
        (sick_visit.id, friend_of_sick.id, "high"),
        (other_visit.id, other.id, "high"),
        (other_visit.id, companion.id, "high"),
    }


def test_a_case_who_came_as_a_companion_exposes_the_visitor_who_brought_them(
    app: Flask, db: Any, now: datetime
) -> None:
    venue = f.venue()
    host, sick, other = f.person(), f.person(), f.person()
    start = now - timedelta(hours=5)
    host_visit = f.checkin(host, venue, start)
    db.session.add(Companion(checkin_id=host_visit.id, person_id=sick.id))
    other_visit = f.checkin(other, venue, start + timedelta(minutes=20))
    db.session.flush()
    _match(app, _case(sick, now), now)
    got = {(e.checkin_id, e.person_id) for e in db.session.scalars(select(Exposure))}
    assert got == {(host_visit.id, host.id), (other_visit.id, other.id)}


def test_different_halls_are_not_together_but_a_venue_level_visit_is_with_every_hall(
    app: Flask, db: Any, now: datetime
) -> None:
    venue = f.venue(halls=("Big hall", "Small hall"))
    _entrance, big, small = venue.entrances
    sick, in_big, in_small, at_door = f.person(), f.person(), f.person(), f.person()
    start = now - timedelta(hours=5)
    f.checkin(sick, venue, start, entrance=big)
    a = f.checkin(in_big, venue, start, entrance=big)
    f.checkin(in_small, venue, start, entrance=small)
    c = f.checkin(at_door, venue, start)
    _match(app, _case(sick, now), now)
    assert {e.checkin_id for e in db.session.scalars(select(Exposure))} == {a.id, c.id}


def test_an_open_visit_counts_until_its_planned_end_or_now(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue(default_stay_minutes=60)
    sick, stayer, arrives_after_now = f.person(), f.person(), f.person()
    f.checkin(sick, venue, now - timedelta(minutes=20), minutes=None)  # still there, planned end in 40 min
    f.checkin(stayer, venue, now - timedelta(minutes=10), minutes=None)
    # Both open visits count as ending now; someone arriving after the case's tail is not exposed.
    f.checkin(arrives_after_now, venue, now + timedelta(minutes=45), minutes=30)
    _match(app, _case(sick, now), now)
    rows = list(db.session.scalars(select(Exposure)))
    assert [(e.person_id, e.overlap_seconds) for e in rows] == [(stayer.id, 10 * 60)]


def test_visits_outside_the_infectious_window_are_ignored(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue()
    sick, other = f.person(), f.person()
    old = datetime(2026, 11, 10, 12, 0, tzinfo=MSK)
    f.checkin(sick, venue, old)
    f.checkin(other, venue, old)
    case = _case(sick, now, tested_on=date(2026, 11, 19))  # window opens 17 Nov 00:00 Moscow
    assert _match(app, case, now).exposures_found == 0


def test_two_cases_at_one_venue_mark_an_outbreak_once(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue()
    first, second = f.person(), f.person()
    f.checkin(first, venue, now - timedelta(days=2))
    f.checkin(second, venue, now - timedelta(days=1))
    c1, c2 = _case(first, now), _case(second, now)
    _match(app, c1, now)
    assert db.session.scalar(select(func.count()).select_from(VenueOutbreak)) == 0
    _match(app, c2, now)
    _match(app, c2, now)
    outbreak = db.session.scalars(select(VenueOutbreak)).one()
    assert (outbreak.venue_id, outbreak.case_count) == (venue.id, 2)


def test_one_batch_records_the_outbreaks_of_several_venues_and_grows_a_known_one(
    app: Flask, db: Any, now: datetime
) -> None:
    cafe, gym, shop = f.venue(), f.venue(), f.venue()
    a, b, c, d = f.person(), f.person(), f.person(), f.person()
    f.checkin(a, cafe, now - timedelta(days=2))
    f.checkin(b, cafe, now - timedelta(days=1, hours=3))
    f.checkin(a, gym, now - timedelta(days=2, hours=2))
    f.checkin(c, gym, now - timedelta(days=1))
    f.checkin(d, shop, now - timedelta(days=1))  # one case only: no outbreak
    cases = [_case(person, now) for person in (a, b, c, d)]
    rules = rules_from_config(app.config)
    batch = exposures.match_case_batch([x.id for x in cases[:3]], now=now, rules=rules, tz=MSK)
    assert batch.outbreaks == 2
    found = {(o.venue_id, o.case_count) for o in db.session.scalars(select(VenueOutbreak))}
    assert found == {(cafe.id, 2), (gym.id, 2)}
    f.checkin(d, cafe, now - timedelta(hours=20))
    assert exposures.match_case_batch([cases[3].id], now=now, rules=rules, tz=MSK).outbreaks == 0
    found = {(o.venue_id, o.case_count) for o in db.session.scalars(select(VenueOutbreak))}
    assert found == {(cafe.id, 3), (gym.id, 2)}  # the cafe's group grew; not a second outbreak


def test_a_case_who_came_as_a_companion_counts_towards_a_venue_outbreak(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue()
    first, host, second = f.person(), f.person(), f.person()
    f.checkin(first, venue, now - timedelta(days=2))
    host_visit = f.checkin(host, venue, now - timedelta(days=1), party_size=2)
    db.session.add(Companion(checkin_id=host_visit.id, person_id=second.id))
    c1, c2 = _case(first, now), _case(second, now)
    _match(app, c1, now)
    _match(app, c2, now)
    found = [(o.venue_id, o.case_count) for o in db.session.scalars(select(VenueOutbreak))]
    assert found == [(venue.id, 2)]


def test_one_persons_two_lab_results_are_one_case_for_the_outbreak_rule(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue()
    sick = f.person()
    f.checkin(sick, venue, now - timedelta(days=2))
    f.checkin(sick, venue, now - timedelta(days=1))
    _match(app, _case(sick, now), now)
    _match(app, _case(sick, now), now)
    assert db.session.scalar(select(func.count()).select_from(VenueOutbreak)) == 0


def test_annulling_a_case_recounts_the_outbreaks_it_counted_in(app: Flask, db: Any, now: datetime) -> None:
    from app.services import cases

    cafe, gym = f.venue(), f.venue()
    a, b, c = f.person(), f.person(), f.person()
    for who, where, days in ((a, cafe, 2), (b, cafe, 1), (c, cafe, 1), (b, gym, 2), (c, gym, 1)):
        f.checkin(who, where, now - timedelta(days=days))
    matched = [_case(who, now) for who in (a, b, c)]
    for case in matched:
        _match(app, case, now)
    outbreaks = {(o.venue_id, o.case_count) for o in db.session.scalars(select(VenueOutbreak))}
    assert outbreaks == {(cafe.id, 3), (gym.id, 2)}
    official = _official()
    cases.annul_case(
        matched[1].id, reason="recorded in error", official_id=official.id, now=now, public_base_url="http://x"
    )
    db.session.expire_all()
    # The cafe keeps an outbreak of two; the gym, left with one case, has none ("single cases are weak evidence").
    assert {(o.venue_id, o.case_count) for o in db.session.scalars(select(VenueOutbreak))} == {(cafe.id, 2)}


def test_the_job_counts_outbreaks_once_after_its_batches(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.services import exposure_jobs

    cafe, gym = f.venue(), f.venue()
    a, b, c = f.person(), f.person(), f.person()
    for who, where, days in ((a, cafe, 2), (b, cafe, 1), (c, cafe, 1), (b, gym, 2), (c, gym, 1)):
        f.checkin(who, where, now - timedelta(days=days))
    matched = [_case(who, now) for who in (a, b, c)]
    db.session.commit()
    calls: list[set[int]] = []
    real_outbreaks = exposures.storing.record_outbreaks

    def counting(venue_ids: Any, *args: Any, **kwargs: Any) -> int:
        calls.append(set(venue_ids))
        return real_outbreaks(venue_ids, *args, **kwargs)

    monkeypatch.setattr(exposures.storing, "record_outbreaks", counting)
    monkeypatch.setattr(exposure_jobs, "MATCH_BATCH", 1)  # three batches
    result = run_job(app, "match_cases")
    assert (result["cases"], result["outbreaks"]) == (3, 2)
    assert calls == [{cafe.id, gym.id}]  # once, for the venues of the three batches
    db.session.expire_all()
    assert {(o.venue_id, o.case_count) for o in db.session.scalars(select(VenueOutbreak))} == {
        (cafe.id, 3),
        (gym.id, 2),
    }
    assert not any(db.session.get(Case, case.id).outbreaks_pending for case in matched)
    assert run_job(app, "match_cases")["outbreaks"] == 0
    assert len(calls) == 2 and calls[1] == set()


def test_outbreaks_left_uncounted_by_a_run_that_stopped_are_counted_by_the_next(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exposure_jobs, "utcnow", lambda: now)  # the job runs when the batch did
    venue = f.venue()
    a, b = f.person(), f.person()
    for who, days in ((a, 2), (b, 1)):  # recorded as they happened, before the batch (nothing to match again)
        f.checkin(who, venue, now - timedelta(days=days)).created_at = now - timedelta(days=days)
    cases = [_case(a, now), _case(b, now)]
    rules = rules_from_config(app.config)
    # A run's batch committed, and the run stopped before it counted outbreaks.
    with unit_of_work():
        batch = exposures.match_case_batch([x.id for x in cases], now=now, rules=rules, tz=MSK, outbreaks=False)
    assert batch.outbreaks == 0
    assert db.session.scalar(select(func.count()).select_from(VenueOutbreak)) == 0
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.outbreaks_pending)) == 2
    result = run_job(app, "match_cases")
    assert (result["cases"], result["outbreaks"]) == (0, 1)
    db.session.expire_all()
    assert [(o.venue_id, o.case_count) for o in db.session.scalars(select(VenueOutbreak))] == [(venue.id, 2)]
    assert db.session.scalar(select(func.count()).select_from(Case).where(Case.outbreaks_pending)) == 0


def test_the_job_commits_per_case_so_a_failure_reruns_only_that_case(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = f.venue()
    start = now - timedelta(hours=3)
    sick1, sick2, other = f.person(), f.person(), f.person()
    f.checkin(sick1, venue, start - timedelta(days=1))
    f.checkin(sick2, venue, start)
    f.checkin(other, venue, start - timedelta(days=1))
    f.checkin(other, venue, start + timedelta(minutes=5), minutes=10)
    c1 = _case(sick1, now - timedelta(minutes=2))
    c2 = _case(sick2, now - timedelta(minutes=1))
    real_insert = exposures.storing._begin_insert

    def crash_on_second_case(rows: Any, case_ids: list[int]) -> Any:
        # Fails whenever the second case is being matched, once its exposures are stored, so the batch of
        # both fails, then the second case alone does.
        inserted, finish = real_insert(rows, case_ids)

        def power_cut() -> None:
            finish()
            if c2.id in case_ids:
                raise RuntimeError("power cut after the exposures were inserted")

        return inserted, power_cut

    monkeypatch.setattr(exposures.storing, "_begin_insert", crash_on_second_case)
    assert run_job(app, "match_cases") == {"cases": 1, "exposures": 1, "failed": 1, "matched_again": 0, "outbreaks": 0}
    db.session.expire_all()
    assert db.session.get(Case, c1.id).matched_at is not None
    assert db.session.get(Case, c2.id).matched_at is None
    assert db.session.scalars(select(Exposure.case_id)).all() == [c1.id]  # the second case rolled back whole

    monkeypatch.setattr(exposures.storing, "_begin_insert", real_insert)
    # Both cases were at the venue within a week: the second one makes an outbreak.
    assert run_job(app, "match_cases") == {"cases": 1, "exposures": 1, "failed": 0, "matched_again": 0, "outbreaks": 1}
    assert run_job(app, "match_cases") == {"cases": 0, "exposures": 0, "failed": 0, "matched_again": 0, "outbreaks": 0}
    assert sorted(db.session.scalars(select(Exposure.case_id))) == [c1.id, c2.id]


def test_two_cases_at_one_venue_and_time_still_send_one_notice_per_person(app: Flask, db: Any, now: datetime) -> None:
    venue = f.venue()
    start = now - timedelta(hours=3)
    sick1, sick2, other = f.person(), f.person(), f.person()
    for who in (sick1, sick2, other):
        f.checkin(who, venue, start)
    c1, c2 = _case(sick1, now), _case(sick2, now)
    _match(app, c1, now)
    _match(app, c2, now)
    official = _official()
    notices.approve_case(c1.id, official, now=now, public_base_url="http://checkin.test")
    notices.approve_case(c2.id, official, now=now, public_base_url="http://checkin.test")
    other_notices = list(db.session.scalars(select(Notice).where(Notice.person_id == other.id)))
    assert len(other_notices) == 1
    linked = db.session.scalars(select(Exposure).where(Exposure.person_id == other.id)).all()
    assert len(linked) == 2 and {e.notice_id for e in linked} == {other_notices[0].id}
    messages = db.session.scalars(select(OutboxMessage).where(OutboxMessage.person_id == other.id)).all()
    assert len(messages) == 1


def _official() -> Any:
    from app.models import OfficialRole
    from app.services import accounts

    return accounts.create_official(
        f"official{id(object())}@health.example", "correct horse battery", "Test", OfficialRole.SUPERVISOR
    )
