"""Cases, review and approval, the stop switch, annulment with retraction, reveals, dashboard, import."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from app.models import (
    AuditEntry,
    Case,
    Exposure,
    MessageKind,
    MessageStatus,
    Notice,
    NoticeKind,
    OfficialRole,
    OutboxMessage,
)
from app.services import notices, outbox
from app.services.exposures import match_case, rules_from_config
from tests import factories as f
from tests.app.officials.helpers import dashboard_clock_at, make_official, post, sign_in

BASE = "http://checkin.test"


def _scene(app: Flask, now: datetime) -> tuple[Case, Any, Any]:
    venue = f.venue(name="Кафе «Тест»")
    sick, other = f.person("+79161110001"), f.person("+79162220002")
    start = now - timedelta(hours=6)
    f.checkin(sick, venue, start)
    f.checkin(other, venue, start + timedelta(minutes=10))
    case = Case(person_id=sick.id, tested_on=now.date(), created_at=now)
    f.db.session.add(case)
    f.db.session.flush()
    match_case(case.id, now=now, rules=rules_from_config(app.config), tz=ZoneInfo("Europe/Moscow"))
    return case, other, venue


def test_recording_a_case_by_phone_creates_an_unknown_person_and_says_no_visits(
    client: FlaskClient, db: Any, now: datetime
) -> None:
    sign_in(client, make_official(now))
    today = datetime.now(ZoneInfo("Europe/Moscow")).date().isoformat()  # the form checks dates against today
    response = post(client, "/official/cases/new", {"phone": "8 916 555-44-33", "tested_on": today},
                    page="/official/cases/new")  # fmt: skip
    assert response.status_code == 302
    page = client.get(response.location)
    assert "no visits on record" in page.text and "+7916***4433" in page.text and "+79165554433" not in page.text
    bad = post(client, "/official/cases/new", {"phone": "12", "tested_on": "2026-13-01"}, page="/official/cases/new")
    assert bad.status_code == 400 and "not a date" in bad.text


def test_approval_queues_one_sms_notice_that_never_names_the_case(
    app: Flask, client: FlaskClient, db: Any, now: datetime
) -> None:
    case, other, _venue = _scene(app, now)
    sign_in(client, make_official(now))
    page = client.get(f"/official/cases/{case.id}")
    assert "+7916***0002" in page.text and "+79162220002" not in page.text
    assert post(client, f"/official/cases/{case.id}/approve", {}).status_code == 302
    notice = db.session.scalars(select(Notice).where(Notice.person_id == other.id)).one()
    message = db.session.scalars(select(OutboxMessage).where(OutboxMessage.notice_id == notice.id)).one()
    assert message.kind == MessageKind.NOTICE and message.dedup_key == f"notice:{notice.id}:sms"
    assert outbox.recipient_of(message) == "+79162220002"
    assert "Кафе «Тест»" in message.body and f"{BASE}/me" in message.body and "Риск: высокий" in message.body
    assert "1110001" not in message.body and "+7916" not in message.body


def test_the_stop_switch_holds_notices_shows_a_banner_and_releases_them_when_lifted(
    app: Flask, client: FlaskClient, db: Any, now: datetime
) -> None:
    case, other, venue = _scene(app, now)
    sign_in(client, make_official(now))
    assert notices.sending_halted() is False
    assert post(client, "/official/switch", {"state": "on", "reason": "wrong lab batch"}).status_code == 302
    assert notices.sending_halted() is True
    assert "All sending of notices is STOPPED" in client.get("/official/dashboard").text
    post(client, f"/official/venues/{venue.id}/approve", {})
    assert db.session.scalars(select(Exposure.status).where(Exposure.case_id == case.id)).all() == ["approved"]
    assert db.session.scalars(select(Notice)).all() == []
    assert db.session.scalars(select(OutboxMessage)).all() == []
    post(client, "/official/switch", {"state": "off", "reason": "checked"})
    assert notices.sending_halted() is False
    assert len(db.session.scalars(select(OutboxMessage).where(OutboxMessage.person_id == other.id)).all()) == 1


def test_only_a_supervisor_can_stop_sending(client: FlaskClient, db: Any, now: datetime) -> None:
    sign_in(client, make_official(now, role=OfficialRole.OFFICIAL))
    assert post(client, "/official/switch", {"state": "on", "reason": "x"}).status_code == 403


def test_annulling_cancels_unsent_notices_and_retracts_sent_ones(
    app: Flask, client: FlaskClient, db: Any, now: datetime
) -> None:
    venue = f.venue()
    sick, pending_person, sent_person, also_exposed = (f.person() for _ in range(4))
    start = now - timedelta(hours=6)
    for who in (sick, pending_person, sent_person, also_exposed):
        f.checkin(who, venue, start)
    other_sick = f.person()
    f.checkin(other_sick, venue, start)
    case = Case(person_id=sick.id, tested_on=now.date(), created_at=now)
    other_case = Case(person_id=other_sick.id, tested_on=now.date(), created_at=now)
    db.session.add_all([case, other_case])
    db.session.flush()
    for c in (case, other_case):
        match_case(c.id, now=now, rules=rules_from_config(app.config), tz=ZoneInfo("Europe/Moscow"))
    official = make_official(now)
    notices.approve_case(case.id, official, now=now, public_base_url=BASE)
    db.session.execute(
        OutboxMessage.__table__.update()
        .where(OutboxMessage.person_id == sent_person.id)
        .values(status=MessageStatus.DELIVERED.value)
    )
    # Someone exposed by both cases stays notified when only one of them is annulled.
    notices.approve_case(other_case.id, official, now=now, public_base_url=BASE)
    sign_in(client, official)

    assert post(client, f"/official/cases/{case.id}/annul", {"reason": ""}).status_code == 400
    assert post(client, f"/official/cases/{case.id}/annul", {"reason": "lab mix-up"}).status_code == 302
    db.session.expire_all()

    def messages(person: Any) -> list[tuple[str, str]]:
        rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.person_id == person.id)).all()
        return sorted((m.kind.value, m.status.value) for m in rows)

    assert messages(pending_person) == [("notice", "pending")]  # still exposed by the other active case
    assert messages(sent_person) == [("notice", "delivered")]
    assert {e.status.value for e in db.session.scalars(select(Exposure).where(Exposure.case_id == case.id))} == {
        "withdrawn"
    }
    # Annul the second case too: now nobody is exposed any more.
    post(client, f"/official/cases/{other_case.id}/annul", {"reason": "lab mix-up"})
    db.session.expire_all()
    assert messages(pending_person) == [("notice", "cancelled")]
    assert messages(sent_person) == [("notice", "delivered"), ("retraction", "pending")]
    kinds = db.session.scalars(select(Notice.kind).where(Notice.person_id == sent_person.id)).all()
    assert sorted(kinds) == [NoticeKind.EXPOSURE, NoticeKind.RETRACTION]


def test_revealing_a_number_needs_the_permission_and_a_reason_and_is_audited(
    app: Flask, client: FlaskClient, db: Any, now: datetime
) -> None:
    case, other, _venue = _scene(app, now)
    plain = make_official(now, role=OfficialRole.OFFICIAL, can_reveal=False)
    sign_in(client, plain)
    denied = post(client, f"/official/people/{other.id}/reveal", {"reason": "calling them", "case_id": case.id})
    assert denied.status_code == 403
    revealer = make_official(now)
    sign_in(client, revealer)
    assert post(client, f"/official/people/{other.id}/reveal", {"reason": ""}).status_code == 400
    for no_case in (case.id + 1000, 2**31, 10**30):  # a clear refusal, not a database error
        assert (
            post(
                client, f"/official/people/{other.id}/reveal", {"reason": "calling them", "case_id": no_case}
            ).status_code
            == 400
        )
    shown = post(client, f"/official/people/{other.id}/reveal", {"reason": "calling them", "case_id": case.id})
    assert shown.status_code == 200 and "+79162220002" in shown.text
    entry = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "phone.reveal")).one()
    assert (entry.actor_id, entry.subject_person_id, entry.reason, entry.case_id) == (
        revealer.id, other.id, "calling them", case.id,
    )  # fmt: skip


@pytest.mark.parametrize("phone", ["+68271234", "+29051234", "+376312345"])
def test_a_short_valid_number_is_masked_too_for_an_official_who_may_not_reveal(
    client: FlaskClient, db: Any, now: datetime, phone: str
) -> None:
    # Valid mobiles of the Cook Islands, Saint Helena and Andorra: 8 to 10 characters. The mask kept
    # 5 leading and 4 trailing characters whatever the length, so it showed these in full or hid one digit.
    from app.services import people

    assert people.normalise_phone(phone) == phone
    case = Case(person_id=f.person(phone).id, tested_on=now.date(), created_at=now)
    db.session.add(case)
    db.session.flush()
    sign_in(client, make_official(now, role=OfficialRole.OFFICIAL, can_reveal=False))
    page = client.get(f"/official/cases/{case.id}")
    assert page.status_code == 200 and phone not in page.text
    shown = page.text.split('<span class="masked">', 1)[1].split("</span>", 1)[0]
    assert shown.count("*") >= 3 and shown[:3] == phone[:3] and shown[-2:] == phone[-2:]


def test_dashboard_draws_svg_and_its_csv_escapes_formulas(
    app: Flask, client: FlaskClient, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard_clock_at(monkeypatch, now)
    _case, _other, venue = _scene(app, now)
    venue.name = '=HYPERLINK("http://evil.example","click")'
    db.session.flush()
    sign_in(client, make_official(now))
    page = client.get("/official/dashboard")
    assert page.status_code == 200 and "<svg" in page.text and "<script" not in page.text
    exported = client.get("/official/dashboard.csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    venue_rows = [r for r in rows if r and r[0] == str(venue.id)]
    assert venue_rows == [[str(venue.id), '\'=HYPERLINK("http://evil.example","click")', "1"]]


def test_cli_import_reports_line_numbers_and_is_idempotent(
    app: Flask, runner: FlaskCliRunner, db: Any, now: datetime, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date().isoformat()
    path = tmp_path / "lab.csv"
    path.write_text(
        "lab_reference,phone,tested_on,symptom_onset,isolated_on\n"
        f"LAB-1,+79163330001,{today},,\n"
        f"LAB-2,not a phone,{today},,\n"
        f"LAB-3,+79163330003,yesterday,,\n"
        f"LAB-4,+79163330004,{today},{today},\n"
    )
    first = runner.invoke(args=["cases", "import", str(path)])
    assert first.exit_code == 0, first.output
    assert "line 3: This does not look like a phone number." in first.output
    assert "line 4: tested_on 'yesterday' is not a date" in first.output
    assert "2 recorded, 0 already recorded, 2 errors" in first.output
    second = runner.invoke(args=["cases", "import", str(path)])
    assert "0 recorded, 2 already recorded, 2 errors" in second.output
    assert len(db.session.scalars(select(Case).where(Case.lab_reference.is_not(None))).all()) == 2
