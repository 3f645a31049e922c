"""A visit's venue, entrance and kiosk must exist, and cannot be deleted while a visit refers to them.

SQLite enforces this with foreign keys; PostgreSQL with triggers that check once per statement
(migration l1_checkin_places_per_statement). Both must refuse the same things, leave nothing written,
and on PostgreSQL hold under concurrent deletes as a foreign key's lock does.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db as _db
from app.models import MAX_ROW_ID, Checkin, CheckinSource, Entrance, Kiosk, Venue, utcnow
from app.services import kiosk_sync
from app.services import kiosks as kiosk_service
from app.services.kiosk_sync import recording
from tests import factories
from tests.support.live import LiveServer, live_server_fixture

live = live_server_fixture()

MISSING = MAX_ROW_ID


def _kiosk(venue: Venue) -> Kiosk:
    now = utcnow()
    code = kiosk_service.create_pairing_code(venue.entrances[0].id, now - timedelta(minutes=5))
    return kiosk_sync.enrol(code, now - timedelta(minutes=5)).kiosk


def _postgresql_only(dialect_name: str) -> None:
    if dialect_name != "postgresql":
        pytest.skip("PostgreSQL only (set TEST_DATABASE_URL)")


def _visit_at(person_id: int, venue_id: int, entrance_id: int | None, kiosk_id: int | None = None) -> dict[str, Any]:
    """A finished visit an hour ago, as insert() takes it (ids only: usable from any app context)."""
    start = utcnow() - timedelta(hours=1)
    return {
        "person_id": person_id,
        "venue_id": venue_id,
        "entrance_id": entrance_id,
        "kiosk_id": kiosk_id,
        "party_size": 1,
        "source": CheckinSource.KIOSK_SCANNER if kiosk_id else CheckinSource.POSTER,
        "checked_in_at": start,
        "planned_checkout_at": start + timedelta(hours=2),
        "checked_out_at": start + timedelta(minutes=30),
        "created_at": start,
    }


def _row(person_id: int, venue: Venue, kiosk: Kiosk | None = None) -> dict[str, Any]:
    return _visit_at(person_id, venue.id, venue.entrances[0].id, kiosk.id if kiosk else None)


def _visits() -> int:
    return int(_db.session.scalar(select(func.count()).select_from(Checkin)) or 0)


@pytest.mark.parametrize("column", ["venue_id", "entrance_id", "kiosk_id"])
def test_a_visit_at_a_place_that_does_not_exist_is_refused(db: Any, column: str) -> None:
    venue = factories.venue()
    kiosk = _kiosk(venue)
    people = [factories.person() for _ in range(3)]
    before = _visits()
    rows = [_row(p.id, venue, kiosk) for p in people]
    rows[1][column] = MISSING  # one bad row among good ones fails the whole statement
    with pytest.raises(IntegrityError, match=r"(?i)foreign key") as refused, db.session.begin_nested():
        db.session.execute(insert(Checkin), rows)
    if db.engine.dialect.name == "postgresql":
        assert f"fk_checkins_{column}_" in str(refused.value)
        assert f"({column})=({MISSING})" in str(refused.value)
    assert _visits() == before


def test_visits_at_existing_places_are_written(db: Any) -> None:
    venue = factories.venue(halls=("Hall A",))
    kiosk = _kiosk(venue)
    people = [factories.person() for _ in range(3)]
    before = _visits()
    rows = [_row(people[0].id, venue, kiosk), _visit_at(people[1].id, venue.id, venue.entrances[1].id)]
    rows.append(_visit_at(people[2].id, venue.id, None))  # no entrance and no kiosk: nothing to check
    db.session.execute(insert(Checkin), rows)
    assert _visits() == before + 3


def test_the_kiosk_batch_copy_is_checked_too(db: Any) -> None:
    _postgresql_only(db.engine.dialect.name)
    venue = factories.venue()
    kiosk = _kiosk(venue)
    person = factories.person()
    before = _visits()
    now = utcnow()
    row = _row(person.id, venue, kiosk)
    values = tuple(
        {"source": CheckinSource.BLE.value, "client_id": "copy-1", "checkout_reason": None, "created_at": now}.get(
            name, row.get(name)
        )
        for name in recording._NEW_NAMES
    )
    other = factories.person()
    changes = {"kiosk_id": MISSING, "client_id": "copy-2", "person_id": other.id}
    bad = tuple(changes.get(name, value) for name, value in zip(recording._NEW_NAMES, values, strict=True))
    with pytest.raises(recording._StaleVisits) as refused, db.session.begin_nested():
        recording._insert_visits([values, bad])
    assert "fk_checkins_kiosk_id_kiosks" in str(refused.value.__cause__)
    assert _visits() == before
    with db.session.begin_nested():
        recording._insert_visits([values])
    assert _visits() == before + 1


@pytest.mark.parametrize("column", ["venue_id", "entrance_id", "kiosk_id"])
def test_moving_a_visit_to_a_place_that_does_not_exist_is_refused(db: Any, column: str, now: Any) -> None:
    venue = factories.venue()
    visit = factories.checkin(factories.person(), venue, now - timedelta(hours=2))
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), db.session.begin_nested():
        db.session.execute(update(Checkin).where(Checkin.id == visit.id).values({column: MISSING}))
    db.session.refresh(visit)
    assert (visit.venue_id, visit.entrance_id, visit.kiosk_id) == (venue.id, venue.entrances[0].id, None)


@pytest.mark.parametrize("model", [Venue, Entrance, Kiosk])
def test_a_place_with_visits_cannot_be_deleted_or_renumbered(db: Any, model: type, now: Any) -> None:
    venue = factories.venue()
    kiosk = _kiosk(venue)
    db.session.execute(insert(Checkin), [_row(factories.person().id, venue, kiosk)])
    place_id = {Venue: venue.id, Entrance: venue.entrances[0].id, Kiosk: kiosk.id}[model]
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), db.session.begin_nested():
        db.session.execute(delete(model).where(model.id == place_id))
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), db.session.begin_nested():
        db.session.execute(update(model).where(model.id == place_id).values(id=MISSING))
    assert db.session.get(model, place_id) is not None


def test_a_place_without_visits_can_still_be_deleted(db: Any) -> None:
    venue = factories.venue(halls=("Hall A",))
    _kiosk(venue)
    hall = venue.entrances[1]
    db.session.execute(delete(Entrance).where(Entrance.id == hall.id))
    db.session.expunge(hall)
    assert db.session.get(Entrance, hall.id) is None


def test_postgresql_checks_the_places_with_triggers_not_foreign_keys(db: Any) -> None:
    _postgresql_only(db.engine.dialect.name)
    connection = db.session.connection()
    foreign_keys = {fk["name"] for fk in inspect(connection).get_foreign_keys("checkins")}
    assert foreign_keys == {"fk_checkins_person_id_people"}
    triggers = set(connection.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars().all())
    assert {
        "checkins_places_exist",
        "checkins_changed_places_exist",
        "venues_not_referenced_by_checkins",
        "entrances_not_referenced_by_checkins",
        "kiosks_not_referenced_by_checkins",
    } <= triggers


# --- concurrent deletes (PostgreSQL; SQLite's single writer cannot interleave them) --------------------


def _committed_place(app: Flask) -> tuple[int, int, int]:
    """A committed venue with a hall nobody visited; returns (person id, venue id, hall id)."""
    with app.app_context():
        try:
            venue = factories.venue(halls=("Hall B",))
            person = factories.person()
            _db.session.commit()
            return person.id, venue.id, venue.entrances[1].id
        finally:
            _db.session.remove()


def _in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _second_waits_for_first(engine: Any, first: Any, second: Any, what: str) -> Any:
    """Run `first` on a connection whose transaction stays open, then `second` on another connection, which
    must wait for the first's locks; commit the first, and return what the second returned or raised."""

    def connect() -> Any:
        connection = engine.connect()
        connection.execute(text("SET lock_timeout = '20s'"))  # a lost wake-up fails the test, not CI
        return connection

    def run_second() -> Any:
        with connect() as waiting:
            result = second(waiting)
            waiting.commit()
            return result

    with connect() as holding:
        first(holding)
        thread, outcome = _in_thread(run_second)
        time.sleep(0.5)
        assert thread.is_alive(), f"the {what} did not wait for the other transaction"
        holding.commit()
        thread.join(30)
    return outcome[0]


def test_a_delete_racing_an_uncommitted_visit_waits_for_it_and_then_fails(live: LiveServer) -> None:
    person_id, venue_id, hall_id = _committed_place(live.app)
    with live.app.app_context():
        engine = _db.engine
        _postgresql_only(engine.dialect.name)
        outcome = _second_waits_for_first(
            engine,
            lambda c: c.execute(insert(Checkin).values(_visit_at(person_id, venue_id, hall_id))),
            lambda c: c.execute(delete(Entrance).where(Entrance.id == hall_id)).rowcount,
            "delete",
        )
        assert isinstance(outcome, IntegrityError), outcome
        assert "fk_checkins_entrance_id_entrances" in str(outcome)
        with engine.connect() as check:
            assert check.scalar(select(func.count()).where(Entrance.id == hall_id)) == 1
            assert check.scalar(select(func.count()).where(Checkin.entrance_id == hall_id)) == 1


def test_a_visit_racing_an_uncommitted_delete_waits_for_it_and_then_fails(live: LiveServer) -> None:
    person_id, venue_id, hall_id = _committed_place(live.app)
    with live.app.app_context():
        engine = _db.engine
        _postgresql_only(engine.dialect.name)
        outcome = _second_waits_for_first(
            engine,
            lambda c: c.execute(delete(Entrance).where(Entrance.id == hall_id)),
            lambda c: c.execute(insert(Checkin).values(_visit_at(person_id, venue_id, hall_id))),
            "insert",
        )
        assert isinstance(outcome, IntegrityError), outcome
        assert f"(entrance_id)=({hall_id})" in str(outcome)
        with engine.connect() as check:
            assert check.scalar(select(func.count()).where(Checkin.entrance_id == hall_id)) == 0
