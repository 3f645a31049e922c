"""The JSON check-in's fast paths (checkins.quick_check_in, and device_checkin.check_in, pipelined on
PostgreSQL) against the ORM path (checkins.check_in).

Three people walk the same random route, one through each path; their visits must come out identical.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import false, func, select

from app.models import Checkin, CheckinSource, CheckoutReason, Person, Venue
from app.services import checkins, device_checkin, posters, sign_in
from app.services.checkins import quick
from tests import factories

POSTER = CheckinSource.POSTER


def target(venue: Venue) -> posters.PosterTarget:
    return posters.PosterTarget(
        venue.id, venue.name, venue.short_code, venue.default_stay_minutes, venue.entrances[0].id
    )


def visits(person: Person) -> list[tuple[Any, ...]]:
    from app.extensions import db

    db.session.expire_all()
    rows = db.session.scalars(select(Checkin).where(Checkin.person_id == person.id).order_by(Checkin.id))
    return [
        (v.venue_id, v.checked_in_at, v.planned_checkout_at, v.checked_out_at, v.checkout_reason, v.party_size)
        for v in rows
    ]


def shape(visit: Any) -> tuple[Any, ...] | None:
    if visit is None:
        return None
    return (visit.checked_in_at, visit.planned_checkout_at, visit.checked_out_at, visit.checkout_reason)


steps = st.lists(
    st.tuples(
        st.sampled_from(["check_in", "check_in", "check_in", "check_out"]),
        st.integers(0, 3),  # which venue
        # minutes since the previous step; the stays themselves hit the planned end exactly
        st.one_of(st.sampled_from([0, 30, 60, 180]), st.integers(0, 200)),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=steps)
@example(route=[("check_in", 0, 0), ("check_in", 0, 30)])  # again exactly at the planned end
@example(route=[("check_in", 0, 0), ("check_in", 1, 31)])  # elsewhere, after the planned end
@example(route=[("check_in", 3, 0), ("check_in", 3, 60)])  # a day's stay: a repeat scan begins it again
@example(route=[("check_in", 2, 0)] + [("check_in", 2, 150)] * 10)  # continued past 24 h: begun again
def test_both_paths_leave_the_same_visits(db: Any, now: datetime, route: list[tuple[str, int, int]]) -> None:
    venues = [factories.venue(default_stay_minutes=m) for m in (30, 60, 180, 24 * 60)]
    orm_person, fast_person, device_person = factories.person(), factories.person(), factories.person()
    device = sign_in.remember_device(device_person, now - timedelta(days=1))
    poster_tokens = [posters.issue_poster(v.entrances[0], now - timedelta(minutes=1))[1] for v in venues]
    at = now
    for action, which, minutes in route:
        at += timedelta(minutes=minutes)
        if action == "check_out":
            checkins.check_out(orm_person, at)
            checkins.check_out(fast_person, at)
            checkins.check_out(device_person, at)
            continue
        venue = venues[which]
        slow = checkins.check_in(orm_person, venue, venue.entrances[0], POSTER, at)
        fast = checkins.quick_check_in(fast_person.id, None, target(venue), POSTER, at)
        assert fast.status == slow.status
        assert shape(fast.checkin) == shape(slow.checkin)
        assert shape(fast.ended) == shape(slow.ended)
        assert fast.checkin.venue_name == venue.name
        by_device = device_checkin.check_in(device, poster_tokens[which], POSTER, at)
        assert by_device is not None and by_device.status == slow.status
        assert shape(by_device.checkin) == shape(slow.checkin)
        assert shape(by_device.ended) == shape(slow.ended)
        assert (by_device.checkin.venue_name, by_device.checkin.venue_short_code) == (venue.name, venue.short_code)
    assert visits(fast_person) == visits(orm_person)
    assert visits(device_person) == visits(orm_person)
    # Matching reads no visit as longer than a day: none is.
    assert all((out or until) - start <= checkins.MAX_VISIT for _v, start, until, out, _r, _p in visits(orm_person))


def test_a_visit_opened_by_a_racing_request_is_ended_not_duplicated(
    db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our first read misses the open visit another request just wrote: the insert does nothing
    (the partial unique index), and the second round ends that visit."""
    cafe, theatre = factories.venue(), factories.venue()
    person = factories.person()
    racing = factories.checkin(person, cafe, now - timedelta(minutes=5), minutes=None)
    connection = db.session.connection()
    execute = connection.execute
    blinded: list[Any] = []

    def first_read_blind(statement: Any, *args: Any, **kwargs: Any) -> Any:
        if statement is checkins._OPEN_VISIT and not blinded:
            blinded.append(statement)
            statement = statement.where(false())
        return execute(statement, *args, **kwargs)

    monkeypatch.setattr(connection, "execute", first_read_blind)
    result = checkins.quick_check_in(person.id, None, target(theatre), POSTER, now)
    monkeypatch.undo()
    assert blinded and result.status == "created"
    assert result.ended is not None and result.ended.id == racing.id
    assert result.ended.checkout_reason is CheckoutReason.NEXT_CHECKIN
    open_now = db.session.scalar(
        select(func.count()).where(Checkin.person_id == person.id, Checkin.checked_out_at.is_(None))
    )
    assert open_now == 1


def test_the_device_path_ends_a_visit_opened_by_a_racing_request(
    db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL the first read travels in the pipeline; blinding the rules to it makes the insert
    # meet the racing visit, which the retry loop must then end.
    cafe, theatre = factories.venue(), factories.venue()
    person = factories.person()
    device = sign_in.remember_device(person, now - timedelta(days=1))
    poster = posters.issue_poster(theatre.entrances[0], now - timedelta(minutes=1))[1]
    racing = factories.checkin(person, cafe, now - timedelta(minutes=5), minutes=None)
    real_step = checkins.quick_step
    calls: list[Any] = []

    def first_read_blind(current: Any, *args: Any, **kwargs: Any) -> checkins.QuickStep:
        calls.append(current)
        return real_step(None if len(calls) == 1 else current, *args, **kwargs)

    # device_checkin's pipelined path (PostgreSQL) calls checkins.quick_step; quick_check_in's retry loop
    # calls it in app/services/checkins/quick.py: both callers must see the blinded rules.
    monkeypatch.setattr(checkins, "quick_step", first_read_blind)
    monkeypatch.setattr(quick, "quick_step", first_read_blind)
    result = device_checkin.check_in(device, poster, POSTER, now)
    monkeypatch.undo()
    assert len(calls) == 2 and calls[0] is not None  # the pipelined read did see the racing visit
    assert result is not None and result.status == "created"
    assert result.ended is not None and result.ended.id == racing.id
    assert result.ended.checkout_reason is CheckoutReason.NEXT_CHECKIN
    assert visits(person) == [
        (cafe.id, racing.checked_in_at, racing.planned_checkout_at, now, CheckoutReason.NEXT_CHECKIN, 1),
        (theatre.id, now, now + timedelta(minutes=theatre.default_stay_minutes), None, None, 1),
    ]


def test_the_device_path_checks_the_device_before_the_poster(db: Any, now: datetime) -> None:
    venue = factories.venue()
    person = factories.person()
    device = sign_in.remember_device(person, now - timedelta(days=1))
    assert device_checkin.check_in("unknown-device-token", "junk", POSTER, now) is None
    assert device_checkin.check_in("x" * 129, "junk", POSTER, now) is None
    with pytest.raises(posters.PosterTokenInvalid):
        device_checkin.check_in(device, "junk", POSTER, now)
    sign_in.revoke_device(person, sign_in.devices_of(person)[0].id, now)
    poster = posters.issue_poster(venue.entrances[0], now - timedelta(minutes=1))[1]
    with pytest.raises(sign_in.DeviceRevoked):
        device_checkin.check_in(device, poster, POSTER, now)
    assert visits(person) == []


def test_a_device_remembered_longer_ago_than_the_remember_period_checks_nobody_in(
    app: Any, db: Any, now: datetime
) -> None:
    days = int(app.config["DEVICE_COOKIE_DAYS"])
    venue, person = factories.venue(), factories.person()
    expired = sign_in.remember_device(person, now - timedelta(days=days, minutes=1))
    current = sign_in.remember_device(person, now - timedelta(days=days, minutes=-1))
    poster = posters.issue_poster(venue.entrances[0], now - timedelta(minutes=1))[1]
    with pytest.raises(sign_in.DeviceRevoked, match="no longer remembered"):
        device_checkin.check_in(expired, poster, POSTER, now)
    with pytest.raises(sign_in.DeviceRevoked, match="no longer remembered"):
        sign_in.person_for_device(expired, now)
    assert visits(person) == []
    assert device_checkin.check_in(current, poster, POSTER, now) is not None
    assert len(visits(person)) == 1


def test_last_seen_is_written_only_when_it_is_stale(db: Any, now: datetime) -> None:
    venue = factories.venue()
    person = factories.person()
    checkins.quick_check_in(person.id, None, target(venue), POSTER, now)
    db.session.expire_all()
    assert db.session.get(Person, person.id).last_seen_at == now
    checkins.quick_check_in(person.id, now, target(venue), POSTER, now + timedelta(minutes=5))
    db.session.expire_all()
    assert db.session.get(Person, person.id).last_seen_at == now  # within the hour: not rewritten


def test_the_device_path_reads_once_and_writes_once_when_nobody_races(
    db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL the writes travel as one statement: the new visit must be inserted after the open
    # visit it ends is closed, or the one-open-visit index refuses it and the retry loop runs a second
    # round (correct, but twice the work). One round per check-in means the order held.
    cafe, theatre = factories.venue(), factories.venue()
    person = factories.person()
    device = sign_in.remember_device(person, now - timedelta(days=1))
    cafe_poster, theatre_poster = (
        posters.issue_poster(v.entrances[0], now - timedelta(minutes=1))[1] for v in (cafe, theatre)
    )
    real_step = checkins.quick_step
    rounds: list[Any] = []

    def counted(*args: Any, **kwargs: Any) -> checkins.QuickStep:
        rounds.append(args[0])
        return real_step(*args, **kwargs)

    monkeypatch.setattr(checkins, "quick_step", counted)
    monkeypatch.setattr(quick, "quick_step", counted)
    first = device_checkin.check_in(device, cafe_poster, POSTER, now)
    moved = device_checkin.check_in(device, theatre_poster, POSTER, now + timedelta(minutes=5))
    again = device_checkin.check_in(device, theatre_poster, POSTER, now + timedelta(minutes=6))
    assert first is not None and moved is not None and again is not None
    assert (first.status, moved.status, again.status) == ("created", "created", "continued")
    assert moved.ended is not None and moved.ended.id == first.checkin.id
    assert len(rounds) == 3
    assert visits(person) == [
        (
            cafe.id,
            now,
            now + timedelta(minutes=cafe.default_stay_minutes),
            now + timedelta(minutes=5),
            CheckoutReason.NEXT_CHECKIN,
            1,
        ),
        (
            theatre.id,
            now + timedelta(minutes=5),
            now + timedelta(minutes=6 + theatre.default_stay_minutes),
            None,
            None,
            1,
        ),
    ]


def test_a_check_in_whose_clock_reads_before_the_open_visit_takes_effect_at_its_start(db: Any, now: datetime) -> None:
    # Two requests for one person reach the row lock in the other order than their clocks were read:
    # the second finds a visit that began after its own `now`. Its visit starts where that one began,
    # on every path, so the person's visits do not overlap.
    cafe, theatre = factories.venue(), factories.venue()
    orm_person, fast_person, device_person = factories.person(), factories.person(), factories.person()
    device = sign_in.remember_device(device_person, now - timedelta(days=1))
    theatre_poster = posters.issue_poster(theatre.entrances[0], now - timedelta(minutes=5))[1]
    for person in (orm_person, fast_person, device_person):
        checkins.check_in(person, cafe, cafe.entrances[0], POSTER, now)
    early = now - timedelta(milliseconds=35)
    slow = checkins.check_in(orm_person, theatre, theatre.entrances[0], POSTER, early)
    fast = checkins.quick_check_in(fast_person.id, None, target(theatre), POSTER, early)
    by_device = device_checkin.check_in(device, theatre_poster, POSTER, early)
    assert by_device is not None
    for result in (slow, fast, by_device):
        assert result.status == "created"
        assert shape(result.checkin) == (now, now + timedelta(minutes=theatre.default_stay_minutes), None, None)
        assert shape(result.ended) == (
            now,
            now + timedelta(minutes=cafe.default_stay_minutes),
            now,
            CheckoutReason.NEXT_CHECKIN,
        )
    assert visits(fast_person) == visits(orm_person) == visits(device_person)
