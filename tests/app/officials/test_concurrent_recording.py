"""First-time records made twice at the same moment: the same lab result sent twice, the same new number.

Each request runs in its own thread, app context and connection on a committed database, and both
are held until each has looked for the existing row, so both really try to insert it. One insert
wins; the other request must get the winner's row or a clear refusal, never a server error.
(On SQLite the write lock serialises them, so the second simply finds the first's row.)
"""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.errors import ConflictError, NotFoundError
from app.extensions import db
from app.models import Case, Operator, OperatorRole, Person, utcnow
from app.services import accounts, case_imports, cases, mosru, people
from tests.support.concurrency import errors, run_in_app_together
from tests.support.live import LiveServer, live_server_fixture

live = live_server_fixture()


def _hold_after_lookup(monkeypatch: pytest.MonkeyPatch, name: str, parties: int = 2) -> None:
    """Make people.<name> wait, after looking, until every request has looked (or 2 s have passed:
    on SQLite the second request cannot look before the first commits)."""
    looked = threading.Barrier(parties)
    find = getattr(people, name)

    def find_then_wait(*args: Any) -> Any:
        found = find(*args)
        with contextlib.suppress(threading.BrokenBarrierError):
            looked.wait(2)
        return found

    monkeypatch.setattr(people, name, find_then_wait)


def _count(app: Flask, statement: Any) -> int:
    with app.app_context():
        try:
            return int(db.session.scalar(statement) or 0)
        finally:
            db.session.remove()


def test_one_new_number_arriving_twice_at_once_makes_one_person(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hold_after_lookup(monkeypatch, "find_by_phone")
    now = utcnow()
    outcomes = run_in_app_together(live.app, [lambda: people.get_or_create_by_phone("+79160000101", now)[0].id] * 2)
    assert errors(outcomes) == []
    assert outcomes[0] == outcomes[1]
    with live.app.app_context():
        hashed = people.phone_lookup("+79160000101")
    assert _count(live.app, select(func.count()).select_from(Person).where(Person.phone_hash == hashed)) == 1


def test_one_lab_result_recorded_twice_at_once_makes_one_case_and_a_clear_refusal(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hold_after_lookup(monkeypatch, "find_by_phone")
    now = utcnow()

    def record() -> int:
        return cases.record_case(tested_on=now.date() - timedelta(days=1), now=now, lead_days=2,
                                 phone="+79160000102", lab_reference="LAB-TWICE").case.id  # fmt: skip

    outcomes = run_in_app_together(live.app, [record, record])
    refused = errors(outcomes)
    assert len(refused) == 1 and isinstance(refused[0], ConflictError), outcomes
    assert refused[0].field == "lab_reference"
    assert _count(live.app, select(func.count()).select_from(Case).where(Case.lab_reference == "LAB-TWICE")) == 1


def test_one_lab_file_imported_twice_at_once_records_each_result_once(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hold_after_lookup(monkeypatch, "find_by_phone")
    now = utcnow()
    day = (now.date() - timedelta(days=1)).isoformat()
    text = f"lab_reference,phone,tested_on\nLAB-FILE-1,+79160000103,{day}\n"

    def load() -> case_imports.ImportResult:
        return case_imports.import_cases(text, now=now, lead_days=2, issuer="")

    outcomes = run_in_app_together(live.app, [load, load])
    assert errors(outcomes) == []
    assert sorted((r.created, r.already_recorded, len(r.errors)) for r in outcomes) == [(0, 1, 0), (1, 0, 0)]
    assert _count(live.app, select(func.count()).select_from(Case).where(Case.lab_reference == "LAB-FILE-1")) == 1


def test_one_new_mos_ru_account_signing_in_twice_at_once_makes_one_person(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hold_after_lookup(monkeypatch, "find_by_subject", parties=2)
    now = utcnow()

    def sign_in() -> int:
        person, _token = mosru.sign_in_with_claims("https://login.mos.example", {"sub": "twice-at-once"}, now)
        return person.id

    outcomes = run_in_app_together(live.app, [sign_in, sign_in])
    assert errors(outcomes) == []
    assert outcomes[0] == outcomes[1]
    with live.app.app_context():
        hashed = people.subject_lookup("https://login.mos.example", "twice-at-once")
    assert _count(live.app, select(func.count()).select_from(Person).where(Person.oidc_subject_hash == hashed)) == 1


def test_one_invitation_accepted_twice_at_once_makes_one_operator_and_a_clear_answer(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = utcnow()
    with live.app.app_context():
        owner = accounts.create_organisation_with_owner("Twice Ltd", "owner@twice.example", "correct horse battery")
        _invitation, token = accounts.invite_operator(owner, "new@twice.example", OperatorRole.MANAGER, now)
        db.session.commit()
        db.session.remove()
    looked = threading.Barrier(2)
    find = accounts.find_invitation

    def find_then_wait(*args: Any) -> Any:
        found = find(*args)
        with contextlib.suppress(threading.BrokenBarrierError):
            looked.wait(2)
        return found

    monkeypatch.setattr(accounts, "find_invitation", find_then_wait)

    def accept() -> int:
        return accounts.accept_invitation(token, "another horse battery", utcnow()).id

    outcomes = run_in_app_together(live.app, [accept, accept])
    refused = errors(outcomes)
    # A sentence for the second request either way: "just used" when the two really overlapped
    # (PostgreSQL), "not valid any more" when the second came after the first (SQLite's write lock).
    assert len(refused) == 1 and isinstance(refused[0], ConflictError | NotFoundError), outcomes
    with live.app.app_context():
        hashed = accounts.email_lookup("new@twice.example")
    assert _count(live.app, select(func.count()).select_from(Operator).where(Operator.email_hash == hashed)) == 1
