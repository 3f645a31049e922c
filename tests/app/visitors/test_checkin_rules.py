"""The visit rules: one open visit, continue on a repeat scan, end on a check-in elsewhere, auto end."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.errors import NotFoundError, ValidationError
from app.models import Checkin, CheckinSource, CheckoutReason, Companion, Person
from app.services import checkins, people
from app.services.checkins import rules
from tests import factories

POSTER = CheckinSource.POSTER


def open_visits(person: Person) -> int:
    from app.extensions import db

    return db.session.scalar(
        select(func.count())
        .select_from(Checkin)
        .where(Checkin.person_id == person.id, Checkin.checked_out_at.is_(None))
    )


def test_first_check_in_opens_a_visit_with_the_venue_default_stay(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=90)
    person = factories.person()
    result = checkins.check_in(person, venue, venue.entrances[0], POSTER, now)
    assert result.status == "created"
    assert result.ended is None
    assert result.checkin.checked_in_at == now
    assert result.checkin.planned_checkout_at == now + timedelta(minutes=90)
    assert result.checkin.checked_out_at is None
    assert person.last_seen_at == now


def test_repeat_scan_at_the_same_venue_continues_the_visit_and_extends_its_planned_end(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    person = factories.person()
    first = checkins.check_in(person, venue, venue.entrances[0], POSTER, now).checkin
    again = checkins.check_in(person, venue, venue.entrances[0], POSTER, now + timedelta(minutes=30))
    assert again.status == "continued"
    assert again.checkin.id == first.id
    assert again.checkin.planned_checkout_at == now + timedelta(minutes=90)
    assert open_visits(person) == 1
    assert db.session.scalar(select(func.count()).select_from(Checkin).where(Checkin.person_id == person.id)) == 1


def test_check_in_elsewhere_ends_the_previous_visit_at_that_moment(db: Any, now: datetime) -> None:
    cafe, theatre = factories.venue(name="Cafe"), factories.venue(name="Theatre")
    person = factories.person()
    first = checkins.check_in(person, cafe, None, POSTER, now).checkin
    later = now + timedelta(minutes=20)
    second = checkins.check_in(person, theatre, None, POSTER, later)
    assert second.status == "created"
    assert second.ended is first
    assert first.checked_out_at == later
    assert first.checkout_reason == CheckoutReason.NEXT_CHECKIN
    assert open_visits(person) == 1


def test_overdue_open_visit_is_closed_at_its_planned_end_not_at_the_new_check_in(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    person = factories.person()
    old = factories.checkin(person, venue, now - timedelta(hours=5), minutes=None)
    result = checkins.check_in(person, venue, None, POSTER, now)
    assert result.status == "created"  # the old visit was over: this is a new one, even at the same venue
    assert result.ended is old
    assert old.checked_out_at == now - timedelta(hours=4)
    assert old.checkout_reason == CheckoutReason.AUTO


def test_check_out_ends_the_open_visit_now_and_then_has_nothing_to_end(db: Any, now: datetime) -> None:
    venue = factories.venue()
    person = factories.person()
    visit = checkins.check_in(person, venue, None, POSTER, now).checkin
    assert checkins.check_out(person, now + timedelta(minutes=10)) is visit
    assert visit.checked_out_at == now + timedelta(minutes=10)
    assert visit.checkout_reason == CheckoutReason.VISITOR
    assert checkins.check_out(person, now + timedelta(minutes=11)) is None


def test_group_check_in_records_companions_and_companions_with_numbers_become_people(db: Any, now: datetime) -> None:
    venue = factories.venue()
    person = factories.person()
    visit = checkins.check_in(
        person, venue, None, POSTER, now, party_size=3, companion_phones=["8 916 555-00-01", " "]
    ).checkin
    assert visit.party_size == 3
    assert len(visit.companions) == 2
    companion = people.find_by_phone("+79165550001")
    assert companion is not None
    assert {c.person_id for c in visit.companions} == {companion.id, None}


def test_repeat_scan_with_a_bigger_party_adds_companions_but_never_shrinks(db: Any, now: datetime) -> None:
    venue = factories.venue()
    person = factories.person()
    visit = checkins.check_in(person, venue, None, POSTER, now, party_size=2).checkin
    checkins.check_in(person, venue, None, POSTER, now, party_size=3, companion_phones=["+79165550002"])
    checkins.check_in(person, venue, None, POSTER, now, party_size=1)
    assert visit.party_size == 3
    assert len(visit.companions) == 2
    assert db.session.scalar(select(func.count()).select_from(Companion).where(Companion.checkin_id == visit.id)) == 2


def test_a_repeat_scan_naming_another_companion_grows_the_party_to_hold_everyone(db: Any, now: datetime) -> None:
    venue, person = factories.venue(), factories.person()
    visit = checkins.check_in(person, venue, None, POSTER, now, party_size=2, companion_phones=["+79161110001"]).checkin
    later = now + timedelta(minutes=5)
    checkins.check_in(person, venue, None, POSTER, later, party_size=2, companion_phones=["+79161110002"])
    assert (visit.party_size, len(visit.companions)) == (3, 2)
    assert all(c.person_id is not None for c in visit.companions)


def test_a_visit_continued_past_a_day_ends_and_begins_again_with_its_party(db: Any, now: datetime) -> None:
    venue, person = factories.venue(default_stay_minutes=600), factories.person()
    first = checkins.check_in(person, venue, None, POSTER, now, party_size=3, companion_phones=["+79161110003"])
    visit = first.checkin
    nine = checkins.check_in(person, venue, None, POSTER, now + timedelta(hours=9))
    assert nine.status == "continued" and visit.planned_checkout_at == now + timedelta(hours=19)
    # At 18 h, continuing would end at 28 h: the visit ends at the scan and a new one begins, same party.
    later = now + timedelta(hours=18)
    again = checkins.check_in(person, venue, None, POSTER, later, party_size=2, companion_phones=["+79161110004"])
    assert again.status == "created" and again.ended is visit
    assert (visit.checked_out_at, visit.checkout_reason) == (later, CheckoutReason.NEXT_CHECKIN)
    new = again.checkin
    assert (new.venue_id, new.checked_in_at, new.planned_checkout_at) == (venue.id, later, later + timedelta(hours=10))
    third, fourth = (people.find_by_phone(p) for p in ("+79161110003", "+79161110004"))
    assert third is not None and fourth is not None
    # The new number took the party's unnamed place; the ended visit keeps the party it had.
    assert new.party_size == 3 and sorted(c.person_id for c in new.companions) == sorted([third.id, fourth.id])
    assert {c.person_id for c in visit.companions} == {third.id, None}
    assert open_visits(person) == 1


@pytest.mark.parametrize(
    ("party_size", "phones"),
    [(0, ()), (51, ()), (2, ("+79165550003", "+79165550004")), (2, ("12",))],
)
def test_impossible_parties_are_refused_and_nothing_is_written(
    db: Any, now: datetime, party_size: int, phones: tuple[str, ...]
) -> None:
    venue = factories.venue()
    person = factories.person()
    with pytest.raises(ValidationError):
        checkins.check_in(person, venue, None, POSTER, now, party_size=party_size, companion_phones=phones)
    assert db.session.scalar(select(func.count()).select_from(Checkin).where(Checkin.person_id == person.id)) == 0


def test_archived_venue_refuses_check_in(db: Any, now: datetime) -> None:
    venue = factories.venue()
    venue.archived_at = now - timedelta(days=1)
    with pytest.raises(checkins.VenueClosed):
        checkins.check_in(factories.person(), venue, None, POSTER, now)


def test_client_id_makes_a_resent_check_in_return_the_same_visit(db: Any, now: datetime) -> None:
    venue = factories.venue()
    person = factories.person()
    first = checkins.check_in(person, venue, None, CheckinSource.KIOSK_SCANNER, now, client_id="kiosk-1-abc")
    again = checkins.check_in(person, venue, None, CheckinSource.KIOSK_SCANNER, now, client_id="kiosk-1-abc")
    assert again.checkin.id == first.checkin.id
    assert again.status == "continued"


def test_correct_times_moves_own_visit_within_limits(db: Any, now: datetime) -> None:
    venue = factories.venue()
    person = factories.person()
    visit = factories.checkin(person, venue, now - timedelta(hours=3), minutes=120)
    fixed = checkins.correct_times(
        person, visit.id, now - timedelta(hours=3, minutes=30), now - timedelta(hours=2), now
    )
    assert fixed.checked_in_at == now - timedelta(hours=3, minutes=30)
    assert fixed.checked_out_at == now - timedelta(hours=2)
    assert fixed.checkout_reason == CheckoutReason.CORRECTED
    assert fixed.corrected_at == now


@pytest.mark.parametrize(
    ("start", "end", "field"),
    [
        (timedelta(hours=-3), timedelta(hours=-4), "checked_out_at"),  # ends before it starts
        (timedelta(hours=-1), timedelta(hours=1), "checked_out_at"),  # ends in the future
        (timedelta(hours=-30), timedelta(hours=-2), "checked_out_at"),  # longer than 24 h
        (timedelta(days=-22), timedelta(days=-22, hours=1), "checked_in_at"),  # beyond retention
        (timedelta(hours=-6), timedelta(hours=-4, minutes=30), "checked_in_at"),  # overlaps the other visit
    ],
)
def test_correct_times_refuses_implausible_times(
    db: Any, now: datetime, start: timedelta, end: timedelta, field: str
) -> None:
    venue = factories.venue()
    person = factories.person()
    factories.checkin(person, venue, now - timedelta(hours=6), minutes=60)  # 6 h ago to 5 h ago
    visit = factories.checkin(person, venue, now - timedelta(hours=3), minutes=60)
    with pytest.raises(ValidationError) as refused:
        checkins.correct_times(person, visit.id, now + start, now + end, now)
    assert refused.value.field == field
    assert visit.checked_in_at == now - timedelta(hours=3)


def test_nobody_can_correct_someone_elses_visit(db: Any, now: datetime) -> None:
    venue = factories.venue()
    visit = factories.checkin(factories.person(), venue, now - timedelta(hours=3), minutes=60)
    with pytest.raises(NotFoundError):
        checkins.correct_times(factories.person(), visit.id, now - timedelta(hours=3), now - timedelta(hours=2), now)


def test_the_schema_refuses_a_second_open_visit_and_check_in_retries_against_it(db: Any, now: datetime) -> None:
    """A racing transaction's open visit appears between our read and our insert."""
    from app.extensions import db as _db

    cafe, theatre = factories.venue(), factories.venue()
    person = factories.person()
    racing = factories.checkin(person, cafe, now - timedelta(minutes=5), minutes=None)
    # Patched where check_in looks it up: app/services/checkins/rules.py.
    original = rules.open_visit
    calls = {"n": 0}

    def blind_first_time(person_id: int) -> Checkin | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else original(person_id)

    rules.open_visit = blind_first_time  # type: ignore[assignment]
    try:
        result = checkins.check_in(person, theatre, None, POSTER, now)
    finally:
        rules.open_visit = original  # type: ignore[assignment]
    assert calls["n"] == 2
    assert result.status == "created"
    assert result.ended is not None and result.ended.id == racing.id
    _db.session.refresh(racing)
    assert racing.checked_out_at == now
    assert open_visits(person) == 1
