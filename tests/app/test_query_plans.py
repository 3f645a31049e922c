"""The busiest reads use the index meant for them, whatever the planner's statistics say.

Each test first makes the statistics stale the way production can: the table is analysed while no
visit is open (at night, or after a bulk load), and only then do visits open. A planner that then
believes there are no open visits must still find a person's open visit through the one-open-visit
index, not by scanning every open visit.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import psycopg.sql
import pytest
from sqlalchemy import insert, select, text

from app.extensions import db
from app.models import Case, Checkin, Exposure, ExposureStatus, Notice, NoticeKind, Person
from app.services import checkins, device_checkin, notices, sign_in, visits
from app.services.kiosk_sync.recording import people_visits_query
from app.services.personal_data import keyring, secret_hash
from tests import factories

CLOSED, OPEN = 3000, 400


@pytest.fixture
def stale_statistics(db: Any, now: datetime) -> list[int]:
    """CLOSED finished visits, analysed; then OPEN open visits the statistics have not seen."""
    venue = factories.venue()
    ring = keyring()
    people = [
        {"phone_hash": ring.lookup_hash(f"+7916{i:07d}", context="phone"), "phone_enc": b"-", "created_at": now}
        for i in range(OPEN)
    ]
    db.session.execute(insert(Person), people)
    ids = list(db.session.scalars(select(Person.id).order_by(Person.id.desc()).limit(OPEN)))
    start = now - timedelta(days=2)
    visit = {"venue_id": venue.id, "party_size": 1, "source": "poster", "created_at": start}
    db.session.execute(
        insert(Checkin),
        [
            {
                **visit,
                "person_id": ids[i % OPEN],
                "checked_in_at": start + timedelta(minutes=i),
                "planned_checkout_at": start + timedelta(minutes=i + 60),
                "checked_out_at": start + timedelta(minutes=i + 30),
                "checkout_reason": "visitor",
            }
            for i in range(CLOSED)
        ],
    )
    db.session.execute(text("ANALYZE checkins"))
    db.session.execute(
        insert(Checkin),
        [
            {**visit, "person_id": pid, "checked_in_at": now, "planned_checkout_at": now + timedelta(hours=1)}
            for pid in ids
        ],
    )
    return ids


def plan(statement: Any, params: dict[str, Any]) -> str:
    """The database's plan for the statement as the app runs it (PostgreSQL: custom and generic plans);
    `statement` may also be PostgreSQL text with %(name)s placeholders."""
    connection = db.session.connection()
    compiled = (
        statement
        if isinstance(statement, str)
        else statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    )
    values = {**getattr(compiled, "params", {}), **params}
    if connection.dialect.name == "sqlite":
        positional = tuple(values[name] for name in compiled.positiontup)
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", positional).all()
        return "\n".join(str(row[-1]) for row in rows)
    names = re.findall(r"%\((\w+)\)s", str(compiled))
    lines = []
    for mode in ("force_custom_plan", "force_generic_plan"):
        connection.exec_driver_sql(f"SET LOCAL plan_cache_mode = {mode}")
        # A prepared statement, as psycopg runs the app's statements after a few executions.
        connection.exec_driver_sql("DEALLOCATE ALL")
        connection.exec_driver_sql(f"PREPARE plan_probe AS {_numbered(str(compiled), names)}")
        # EXPLAIN EXECUTE takes no bind parameters: the values go in as literals.
        driver = connection.connection.driver_connection
        args = ", ".join(psycopg.sql.Literal(values[name]).as_string(driver) for name in names)
        rows = connection.exec_driver_sql(f"EXPLAIN EXECUTE plan_probe{f'({args})' if args else ''}").all()
        lines += [row[0] for row in rows]
        connection.exec_driver_sql("DEALLOCATE plan_probe")
    return "\n".join(lines)


def _numbered(sql: str, names: list[str]) -> str:
    for i, name in enumerate(names, start=1):
        sql = sql.replace(f"%({name})s", f"${i}", 1)
    return sql


def test_a_persons_open_visit_is_read_through_the_one_open_visit_index(stale_statistics: list[int]) -> None:
    shown = plan(checkins.open_visit_query(stale_statistics[0]), {})
    assert "uq_checkins_one_open_visit_per_person" in shown, shown
    assert "ix_checkins_open_planned_checkout_at" not in shown, shown


def test_due_auto_check_outs_are_read_through_their_own_index(stale_statistics: list[int], now: datetime) -> None:
    shown = plan(visits.overdue_query(now, 500), {})
    assert "ix_checkins_open_planned_checkout_at" in shown, shown


def test_the_device_check_in_reads_the_open_visit_through_the_one_open_visit_index(
    stale_statistics: list[int], now: datetime
) -> None:
    if db.session.get_bind().dialect.name != "postgresql":
        pytest.skip("the one-statement read is PostgreSQL's")
    person = db.session.get(Person, stale_statistics[0])
    token = sign_in.remember_device(person, now)
    params = {"token_hash": secret_hash(token), "entrance_id": None, "version": None, "key_id": None}
    shown = plan(device_checkin._read_sql(db.session.connection()), params)
    assert "uq_checkins_one_open_visit_per_person" in shown, shown
    assert "ix_checkins_open_planned_checkout_at" not in shown, shown


def test_a_kiosk_batch_reads_its_peoples_visits_without_scanning_every_open_visit(
    stale_statistics: list[int], now: datetime
) -> None:
    shown = plan(people_visits_query(stale_statistics[:50], now - timedelta(days=1)), {})
    assert "ix_checkins_open_planned_checkout_at" not in shown, shown
    assert "uq_checkins_one_open_visit_per_person" in shown or "ix_checkins_person_id_checked_in_at" in shown, shown


def test_exposures_waiting_for_their_notice_are_found_through_their_own_index(
    stale_statistics: list[int], now: datetime
) -> None:
    """Thousands of exposures, analysed: half approved with their notices sent, half new (awaiting review,
    no notice either); none waiting for a notice. Queuing notices (after every approval, every minute in
    the policy job) must find that without reading the approved ones or the new ones."""
    sick = factories.person(phone="+79991234567")  # the fixture's people have +7916 numbers
    case = Case(person_id=sick.id, tested_on=now.date(), created_at=now)
    db.session.add(case)
    db.session.flush()
    visits_ = db.session.execute(
        select(Checkin.id, Checkin.person_id, Checkin.venue_id).where(Checkin.checked_out_at.is_not(None))
    ).all()
    approved, new = visits_[: len(visits_) // 2], visits_[len(visits_) // 2 :]
    notice_ids = db.session.scalars(
        insert(Notice).returning(Notice.id, sort_by_parameter_order=True),
        [
            {
                "person_id": person_id,
                "checkin_id": checkin_id,
                "kind": NoticeKind.EXPOSURE,
                "risk": "high",
                "body_ru": "-",
                "body_en": "-",
                "created_at": now,
            }
            for checkin_id, person_id, _venue_id in approved
        ],
    ).all()
    db.session.execute(
        insert(Exposure),
        [
            {
                "case_id": case.id,
                "checkin_id": checkin_id,
                "person_id": person_id,
                "venue_id": venue_id,
                "risk": "high",
                "overlap_seconds": 600,
                "reason_en": "-",
                "reason_ru": "-",
                "status": ExposureStatus.APPROVED if notice_id else ExposureStatus.NEW,
                "created_at": now,
                "notice_id": notice_id,
            }
            for (checkin_id, person_id, venue_id), notice_id in [
                *zip(approved, notice_ids, strict=True),
                *((v, None) for v in new),
            ]
        ],
    )
    db.session.execute(text("ANALYZE exposures"))
    shown = plan(notices.AWAITING_NOTICE_QUERY, {})
    assert "ix_exposures_awaiting_notice" in shown, shown
    assert "ix_exposures_status_created_at" not in shown, shown


def test_cases_whose_outbreaks_are_still_to_count_are_found_through_their_own_index(
    stale_statistics: list[int], now: datetime
) -> None:
    """Thousands of matched cases, analysed, none left to count: the job's count after its batches (every
    run) must find that without reading them all."""
    from app.services.exposures.storing import PENDING_OUTBREAKS_QUERY

    cases = [
        {"person_id": pid, "tested_on": now.date(), "created_at": now, "matched_at": now}
        for pid in stale_statistics
        for _ in range(5)
    ]
    db.session.execute(insert(Case), cases)
    db.session.execute(text("ANALYZE cases"))
    shown = plan(PENDING_OUTBREAKS_QUERY, {})
    assert "ix_cases_outbreaks_pending" in shown, shown
