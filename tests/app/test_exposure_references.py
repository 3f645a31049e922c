"""An exposure's case, visits, person and venue must exist, and deleting them does what the references say.

SQLite enforces this with foreign keys; PostgreSQL with triggers that check once per statement and do the
ON DELETE actions (migrations n1_exposure_references and p1_exposure_references_unlocked). Both must refuse
the same things, leave nothing written, delete or clear the same rows, and on PostgreSQL hold under
concurrent deletes as a foreign key's lock does, without locking the rows an insert refers to.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db as _db
from app.models import MAX_ROW_ID, Case, Checkin, Exposure, ExposureStatus, Person, RiskLevel, Venue, utcnow
from tests import factories
from tests.app.test_checkin_place_references import _postgresql_only, _second_waits_for_first
from tests.support.live import LiveServer, live_server_fixture

live = live_server_fixture()

MISSING = MAX_ROW_ID
COLUMNS = ["case_id", "case_checkin_id", "checkin_id", "person_id", "venue_id"]


def _exposure(
    case_id: int, case_checkin_id: int | None, checkin_id: int, person_id: int, venue_id: int
) -> dict[str, Any]:
    """An exposure row as insert() takes it (ids only: usable from any app context)."""
    return {
        "case_id": case_id,
        "case_checkin_id": case_checkin_id,
        "checkin_id": checkin_id,
        "person_id": person_id,
        "venue_id": venue_id,
        "risk": RiskLevel.HIGH,
        "overlap_seconds": 1800,
        "reason_en": "reason",
        "reason_ru": "причина",
        "status": ExposureStatus.NEW,
        "created_at": utcnow(),
    }


class Scene:
    """A case at a venue and three other visitors there at the same time, none exposed yet."""

    def __init__(self, now: datetime) -> None:
        self.venue = factories.venue()
        start = now - timedelta(hours=3)
        sick = factories.person()
        self.case_visit = factories.checkin(sick, self.venue, start)
        self.case = factories.case(sick, start, now)
        self.people = [factories.person() for _ in range(3)]
        self.visits = [factories.checkin(p, self.venue, start) for p in self.people]
        factories.db.session.flush()

    def rows(self) -> list[dict[str, Any]]:
        return [
            _exposure(self.case.id, self.case_visit.id, v.id, p.id, self.venue.id)
            for v, p in zip(self.visits, self.people, strict=True)
        ]


def _count(*where: Any) -> int:
    return int(_db.session.scalar(select(func.count()).select_from(Exposure).where(*where)) or 0)


@pytest.mark.parametrize("column", COLUMNS)
def test_an_exposure_referring_to_something_that_does_not_exist_is_refused(db: Any, now: datetime, column: str) -> None:
    scene = Scene(now)
    rows = scene.rows()
    rows[1][column] = MISSING  # one bad row among good ones fails the whole statement
    with pytest.raises(IntegrityError, match=r"(?i)foreign key") as refused, db.session.begin_nested():
        db.session.execute(insert(Exposure), rows)
    if db.engine.dialect.name == "postgresql":
        assert f"fk_exposures_{column}_" in str(refused.value)
        assert f"({column})=({MISSING})" in str(refused.value)
    assert _count() == 0


def test_exposures_referring_to_what_exists_are_written(db: Any, now: datetime) -> None:
    scene = Scene(now)
    rows = scene.rows()
    rows[0]["case_checkin_id"] = None  # the case visit may be gone already: nothing to check
    db.session.execute(insert(Exposure), rows)
    assert _count() == 3


@pytest.mark.parametrize("column", COLUMNS)
def test_pointing_an_exposure_at_something_that_does_not_exist_is_refused(db: Any, now: datetime, column: str) -> None:
    scene = Scene(now)
    db.session.execute(insert(Exposure), scene.rows())
    exposure_id = db.session.scalar(select(func.min(Exposure.id)))
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), db.session.begin_nested():
        db.session.execute(update(Exposure).where(Exposure.id == exposure_id).values({column: MISSING}))
    assert _count(getattr(Exposure, column) == MISSING) == 0
    # Clearing the optional one is fine.
    db.session.execute(update(Exposure).where(Exposure.id == exposure_id).values(case_checkin_id=None))
    assert _count(Exposure.case_checkin_id.is_(None)) == 1


def test_deleting_visits_deletes_their_exposures_and_clears_the_case_visit(db: Any, now: datetime) -> None:
    scene = Scene(now)
    db.session.execute(insert(Exposure), scene.rows())
    gone = [scene.visits[0].id, scene.visits[1].id]
    db.session.execute(delete(Checkin).where(Checkin.id.in_(gone)), execution_options={"synchronize_session": False})
    assert _count() == 1 and _count(Exposure.checkin_id.in_(gone)) == 0
    db.session.execute(
        delete(Checkin).where(Checkin.id == scene.case_visit.id), execution_options={"synchronize_session": False}
    )
    assert _count() == 1 and _count(Exposure.case_checkin_id.is_(None)) == 1


@pytest.mark.parametrize("model", [Case, Person])
def test_deleting_a_case_or_a_person_deletes_their_exposures(db: Any, now: datetime, model: type) -> None:
    scene = Scene(now)
    db.session.execute(insert(Exposure), scene.rows())
    if model is Case:
        db.session.execute(
            delete(Case).where(Case.id == scene.case.id), execution_options={"synchronize_session": False}
        )
        assert _count() == 0
    else:
        person_id = scene.people[2].id
        db.session.execute(
            delete(Person).where(Person.id == person_id), execution_options={"synchronize_session": False}
        )
        assert _count() == 2 and _count(Exposure.person_id == person_id) == 0


def test_a_venue_with_exposures_cannot_be_deleted_and_no_parent_can_be_renumbered(db: Any, now: datetime) -> None:
    scene = Scene(now)
    # An exposure at a venue nobody visited (only the exposure refers to it): the visits' own check
    # (migration l1) does not stand in the way.
    empty = factories.venue()
    row = scene.rows()[0] | {"venue_id": empty.id}
    db.session.execute(insert(Exposure), [row])
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"), db.session.begin_nested():
        db.session.execute(delete(Venue).where(Venue.id == empty.id), execution_options={"synchronize_session": False})
    parents = [(Case, scene.case.id), (Checkin, scene.visits[0].id), (Person, scene.people[0].id)]
    for model, parent_id in parents:
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"), db.session.begin_nested():
            db.session.execute(
                update(model).where(model.id == parent_id).values(id=MISSING),
                execution_options={"synchronize_session": False},
            )
    assert _count() == 1


def test_postgresql_checks_the_exposures_references_with_triggers_not_foreign_keys(db: Any) -> None:
    _postgresql_only(db.engine.dialect.name)
    connection = db.session.connection()
    foreign_keys = {fk["name"] for fk in inspect(connection).get_foreign_keys("exposures")}
    assert foreign_keys == {"fk_exposures_approved_by_id_officials", "fk_exposures_notice_id_notices"}
    triggers = set(connection.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars().all())
    expected = {"exposures_references_exist", "exposures_changed_references_exist"}
    for parent in ("cases", "checkins", "people", "venues"):
        expected |= {f"{parent}_deleted_for_exposures", f"{parent}_renumbered_for_exposures"}
    assert expected <= triggers


# --- concurrent deletes (PostgreSQL; SQLite's single writer cannot interleave them) --------------------


@pytest.fixture
def committed(live: LiveServer) -> Iterator[tuple[Any, list[dict[str, Any]], int]]:
    """(engine, exposure rows of a committed scene, the first row's visit id), on PostgreSQL only."""
    with live.app.app_context():
        _postgresql_only(_db.engine.dialect.name)
        try:
            rows = Scene(utcnow()).rows()
            _db.session.commit()
        finally:
            _db.session.remove()
        yield _db.engine, rows, rows[0]["checkin_id"]


def test_a_visit_deleted_while_its_exposure_is_being_stored_takes_the_exposure_with_it(committed: Any) -> None:
    engine, rows, visit_id = committed
    outcome = _second_waits_for_first(
        engine,
        lambda c: c.execute(insert(Exposure), rows[:1]),
        lambda c: c.execute(delete(Checkin).where(Checkin.id == visit_id)).rowcount,
        "delete",
    )
    assert outcome == 1  # it waited for the exposure to commit, then deleted both
    with engine.connect() as check:
        assert check.scalar(select(func.count()).where(Checkin.id == visit_id)) == 0
        assert check.scalar(select(func.count()).where(Exposure.checkin_id == visit_id)) == 0


def test_an_exposure_stored_while_its_visit_is_being_deleted_waits_and_then_fails(committed: Any) -> None:
    engine, rows, visit_id = committed
    outcome = _second_waits_for_first(
        engine,
        lambda c: c.execute(delete(Checkin).where(Checkin.id == visit_id)),
        lambda c: c.execute(insert(Exposure), rows),
        "insert",
    )
    assert isinstance(outcome, IntegrityError), outcome
    assert f"(checkin_id)=({visit_id})" in str(outcome)
    with engine.connect() as check:
        assert check.scalar(select(func.count()).select_from(Exposure)) == 0


def test_storing_exposures_leaves_their_visits_and_people_unlocked(committed: Any) -> None:
    """The insert's check takes no row locks (migration p1): locking every visit and person of a batch
    cost more than checking them. Another transaction can still lock those rows at once."""
    engine, rows, visit_id = committed
    with engine.connect() as storing, engine.connect() as other:
        storing.execute(insert(Exposure), rows)
        other.execute(text("SET lock_timeout = '2s'"))
        locked = other.execute(
            text("SELECT count(*) FROM (SELECT 1 FROM checkins WHERE id = :v FOR UPDATE NOWAIT) s"), {"v": visit_id}
        ).scalar()
        person = other.execute(
            text("SELECT count(*) FROM (SELECT 1 FROM people WHERE id = :p FOR UPDATE NOWAIT) s"),
            {"p": rows[0]["person_id"]},
        ).scalar()
        other.rollback()
        storing.commit()
    assert (locked, person) == (1, 1)


def test_deletes_do_not_wait_for_each_other(committed: Any) -> None:
    """Deletes take the exposures' advisory lock shared: a purge and an erasure run side by side."""
    engine, rows, _visit_id = committed
    with engine.connect() as first, engine.connect() as second:
        first.execute(delete(Checkin).where(Checkin.id == rows[0]["checkin_id"]))
        second.execute(text("SET lock_timeout = '2s'"))
        deleted = second.execute(delete(Checkin).where(Checkin.id == rows[1]["checkin_id"])).rowcount
        second.commit()
        first.commit()
    assert deleted == 1
    with engine.connect() as check:
        assert (
            check.scalar(
                select(func.count()).select_from(Checkin).where(Checkin.id.in_([r["checkin_id"] for r in rows[:2]]))
            )
            == 0
        )


def test_a_person_erased_while_their_exposure_is_being_stored_takes_the_exposure_with_it(committed: Any) -> None:
    engine, rows, _visit_id = committed
    person_id = rows[2]["person_id"]
    outcome = _second_waits_for_first(
        engine,
        lambda c: c.execute(insert(Exposure), rows),
        lambda c: (
            c.execute(delete(Checkin).where(Checkin.person_id == person_id)),
            c.execute(delete(Person).where(Person.id == person_id)).rowcount,
        )[1],
        "delete",
    )
    assert outcome == 1
    with engine.connect() as check:
        case = Exposure.case_id == rows[0]["case_id"]
        assert check.scalar(select(func.count()).select_from(Exposure).where(case)) == 2
        assert check.scalar(select(func.count()).select_from(Exposure).where(Exposure.person_id == person_id)) == 0
