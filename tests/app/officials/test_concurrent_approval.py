"""Approvals that run at the same moment notify each person once.

An official approves the case while another approves the venue and the policy job approves what
waited long enough; or a supervisor resumes sending while the policy job queues notices. Each runs in
its own thread with its own database connection, on a committed database, so they really race; the
unique notice per person and visit must settle it without an error reaching anyone.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.extensions import db
from app.models import (
    Case,
    CaseStatus,
    Exposure,
    ExposureStatus,
    MessageKind,
    MessageStatus,
    Notice,
    Official,
    OfficialRole,
    OutboxMessage,
    utcnow,
)
from app.services import accounts, cases, notices
from app.services.exposures import match_case, rules_from_config, storing
from tests import factories
from tests.support.concurrency import errors, run_in_app_together
from tests.support.live import LiveServer, live_server_fixture

live = live_server_fixture()

CONTACTS = 30
BASE_URL = "http://checkin.test"


def _case_with_contacts(app: Flask, now: datetime, prefix: str) -> dict[str, Any]:
    """A matched case with CONTACTS exposed contacts, and two supervisors; committed."""
    with app.app_context():
        venue = factories.venue(name=f"Кафе «{prefix}»")
        sick = factories.person()
        start = now - timedelta(days=1)
        factories.checkin(sick, venue, start, minutes=60)
        for person in [factories.person() for _ in range(CONTACTS)]:
            factories.checkin(person, venue, start + timedelta(minutes=10), minutes=40)
        case = Case(person_id=sick.id, tested_on=now.date(), created_at=now - timedelta(hours=2))
        db.session.add(case)
        db.session.flush()
        match_case(case.id, now=now - timedelta(hours=2), rules=rules_from_config(app.config), tz=ZoneInfo("UTC"))
        officials = [
            accounts.create_official(
                f"{prefix}{i}@health.example", "correct horse battery", "T", OfficialRole.SUPERVISOR
            )
            for i in range(2)
        ]
        ids = {"case": case.id, "venue": venue.id, "officials": [o.id for o in officials]}
        db.session.commit()
        assert db.session.scalar(select(func.count()).where(Exposure.case_id == case.id)) == CONTACTS
        db.session.remove()
    return ids


def _as_official(which: int, ids: dict[str, Any], action: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    def run() -> Any:
        return action(*args, db.session.get(Official, ids["officials"][which]), now=utcnow(), public_base_url=BASE_URL)

    return run


def _each_contact_notified_once(app: Flask, case_id: int) -> None:
    with app.app_context():
        exposed = select(Exposure.checkin_id).where(Exposure.case_id == case_id)
        per_person = Counter(db.session.scalars(select(Notice.person_id).where(Notice.checkin_id.in_(exposed))))
        assert len(per_person) == CONTACTS and set(per_person.values()) == {1}
        sms = Counter(
            db.session.scalars(
                select(OutboxMessage.person_id).where(
                    OutboxMessage.kind == MessageKind.NOTICE, OutboxMessage.person_id.in_(list(per_person))
                )
            )
        )
        assert len(sms) == CONTACTS and set(sms.values()) == {1}
        db.session.remove()


def test_simultaneous_approvals_of_one_case_notify_each_contact_once(live: LiveServer) -> None:
    now = utcnow()
    ids = _case_with_contacts(live.app, now, "approver")
    outcomes = run_in_app_together(
        live.app,
        [
            _as_official(0, ids, notices.approve_case, ids["case"]),
            _as_official(1, ids, notices.approve_venue, ids["venue"]),
            lambda: notices.approve_due(now=utcnow(), after_minutes=60, public_base_url=BASE_URL),
        ],
    )
    assert errors(outcomes) == []
    # Each exposure is credited to the one approval that changed it (the audit log says who).
    assert sum(approved for approved, _queued in outcomes) == CONTACTS
    _each_contact_notified_once(live.app, ids["case"])


def test_resuming_sending_while_the_policy_job_queues_notifies_each_contact_once(live: LiveServer) -> None:
    now = utcnow()
    ids = _case_with_contacts(live.app, now, "resumer")
    with live.app.app_context():
        supervisor = db.session.get(Official, ids["officials"][0])
        notices.set_sending_halted(True, supervisor, "checking the list", now=now, public_base_url=BASE_URL)
        assert notices.approve_case(ids["case"], supervisor, now=now, public_base_url=BASE_URL) == (CONTACTS, 0)
        db.session.commit()
        db.session.remove()
    outcomes = run_in_app_together(
        live.app,
        [
            lambda: notices.set_sending_halted(
                False, db.session.get(Official, ids["officials"][1]), "checked", now=utcnow(), public_base_url=BASE_URL
            ),
            lambda: notices.approve_due(now=utcnow(), after_minutes=0, public_base_url=BASE_URL),
        ],
    )
    assert errors(outcomes) == []
    _each_contact_notified_once(live.app, ids["case"])


def test_annulling_a_case_while_it_is_being_matched_leaves_no_exposure_to_notify(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The official annuls the case just after the matching job read it, before its exposures are
    written. Whichever commits first, no exposure of the annulled case may stay new (approvable)."""
    now = utcnow()
    app = live.app
    with app.app_context():
        venue = factories.venue(name="Кафе «annulled»")
        sick = factories.person()
        start = now - timedelta(days=1)
        factories.checkin(sick, venue, start, minutes=60)
        for person in [factories.person() for _ in range(5)]:
            factories.checkin(person, venue, start + timedelta(minutes=10), minutes=40)
        case = Case(person_id=sick.id, tested_on=now.date(), created_at=now - timedelta(hours=1))
        db.session.add(case)
        official = accounts.create_official("annul@health.example", "correct horse battery", "T", OfficialRole.OFFICIAL)
        db.session.commit()
        case_id, official_id = case.id, official.id
        db.session.remove()

    read, annulled = threading.Event(), threading.Event()
    find = storing.find_contacts_for_cases

    def find_then_give_the_official_time(*args: Any, **kwargs: Any) -> Any:
        read.set()  # the job has read the case
        annulled.wait(3)  # the annulment's chance to commit first, unless the job's lock holds it back
        return find(*args, **kwargs)

    monkeypatch.setattr(storing, "find_contacts_for_cases", find_then_give_the_official_time)

    def annul() -> Any:
        assert read.wait(30)
        try:
            return cases.annul_case(case_id, reason="lab mix-up", official_id=official_id, now=utcnow(),
                                    public_base_url=BASE_URL)  # fmt: skip
        finally:
            annulled.set()

    def match() -> Any:
        return match_case(case_id, now=now, rules=rules_from_config(app.config), tz=ZoneInfo("UTC"))

    outcomes = run_in_app_together(app, [match, annul])
    assert errors(outcomes) == []
    with app.app_context():
        assert db.session.get(Case, case_id).status == CaseStatus.ANNULLED
        statuses = Counter(db.session.scalars(select(Exposure.status).where(Exposure.case_id == case_id)))
        assert ExposureStatus.NEW not in statuses, statuses
        db.session.remove()


@pytest.mark.parametrize(
    ("path", "pause_in"),
    # Where the writer pauses for the annulment: the approval just before it writes its notices, the
    # resumed sending as it writes the first one (it takes its lock as it starts writing).
    [("approval", "queue_pending_notices"), ("resumed sending", "notice_texts")],
)
def test_annulling_a_case_while_its_notices_are_being_written_cancels_them(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, path: str, pause_in: str
) -> None:
    """The official annuls the case while its notices are being written: by another official's approval,
    or by a supervisor resuming sending after the exposures were approved under the stop switch.
    Whichever commits first, no notice of the annulled case may stay queued to be sent."""
    ids = _case_with_contacts(live.app, utcnow(), f"annul-{path.split()[0]}")
    if path == "approval":
        write_notices = _as_official(0, ids, notices.approve_case, ids["case"])
    else:
        with live.app.app_context():
            supervisor = db.session.get(Official, ids["officials"][0])
            notices.set_sending_halted(True, supervisor, "checking the list", now=utcnow(), public_base_url=BASE_URL)
            notices.approve_case(ids["case"], supervisor, now=utcnow(), public_base_url=BASE_URL)
            db.session.commit()
            db.session.remove()

        def write_notices() -> Any:
            supervisor = db.session.get(Official, ids["officials"][0])
            return notices.set_sending_halted(False, supervisor, "checked", now=utcnow(), public_base_url=BASE_URL)

    writing, annulled = threading.Event(), threading.Event()
    paused = getattr(notices, pause_in)

    def after_the_annulment_had_its_chance(*args: Any, **kwargs: Any) -> Any:
        if not writing.is_set():
            writing.set()
            annulled.wait(3)  # the annulment's chance to withdraw first, unless a lock holds it back
        return paused(*args, **kwargs)

    monkeypatch.setattr(notices, pause_in, after_the_annulment_had_its_chance)

    def annul() -> Any:
        assert writing.wait(30)
        try:
            return cases.annul_case(ids["case"], reason="lab mix-up", official_id=ids["officials"][1], now=utcnow(),
                                    public_base_url=BASE_URL)  # fmt: skip
        finally:
            annulled.set()

    outcomes = run_in_app_together(live.app, [write_notices, annul])
    assert errors(outcomes) == []
    with live.app.app_context():
        exposed = select(Exposure.person_id).where(Exposure.case_id == ids["case"])
        sms = Counter(
            db.session.scalars(
                select(OutboxMessage.status).where(
                    OutboxMessage.kind == MessageKind.NOTICE, OutboxMessage.person_id.in_(exposed)
                )
            )
        )
        assert sms == Counter({MessageStatus.CANCELLED: CONTACTS}), sms
        db.session.remove()
