"""Logs carry ids, never phone numbers, e-mail addresses or secrets: a full scenario through the real
routes and jobs, with every record captured at DEBUG and formatted both as text and as JSON."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import select, text

from app.extensions import limiter
from app.jobs import run_job
from app.logs import HIDDEN_DETAIL, JsonFormatter, TextFormatter
from app.models import Exposure, MessageStatus, OutboxMessage, utcnow
from app.services import posters, sign_in
from app.views.visitors import DEVICE_COOKIE, _serializer
from tests import factories
from tests.app.officials.helpers import PASSWORD as OFFICIAL_PASSWORD
from tests.app.officials.helpers import email_of, make_official, post
from tests.app.officials.helpers import sign_in as official_sign_in
from tests.app.visitors.conftest import last_code_sent_to
from tests.conftest import TEST_KEYS
from tests.support.forms import csrf_token

VISITOR_PHONE = "+79161234567"
CASE_PHONE = "+79167654321"
OPERATOR_EMAIL = "director@cafe-romashka.example"
OPERATOR_PASSWORD = "correct horse battery staple"
SMS_LINE = re.compile(r"^SMS to (\S+): ")


def phone_variants(phone: str) -> list[str]:
    """The usual ways to write a Russian mobile number: +7..., 7..., 8..., the bare ten digits, spaced."""
    digits = phone.removeprefix("+")
    ten = digits[1:]
    spaced = f"{ten[:3]} {ten[3:6]}-{ten[6:8]}-{ten[8:]}"
    return [phone, digits, "8" + ten, ten, f"+7 {spaced}", f"8 {spaced}", f"({ten[:3]}) {ten[3:6]}"]


@dataclass
class Line:
    logger: str
    message: str
    text: str  # everything the record would print: message, extras, traceback, in both formats


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Callable[[], list[Line]]:
    """Every record of every logger at DEBUG so far, as the terminal format and the JSON format show it."""
    caplog.set_level(logging.DEBUG)
    text_format = TextFormatter()

    def lines() -> list[Line]:
        return [
            Line(r.name, r.getMessage(), text_format.format(r) + "\n" + JsonFormatter().format(r))
            for r in caplog.records
        ]

    return lines


def _forget_cached_csrf_token() -> None:
    # Requests share the test's app context, where Flask-WTF caches the last client's token in g.
    g.pop("csrf_token", None)


def _visitor_checks_in(app: Flask, db: Any, poster_path: str, phone: str) -> tuple[str, str]:
    """Sign in on the poster page with an SMS code and check in; returns the code and the device token."""
    _forget_cached_csrf_token()
    client = app.test_client()
    page = client.get(poster_path)
    assert page.status_code == 200
    sent = client.post("/signin/code", data={"csrf_token": csrf_token(page.text), "phone": phone, "next": poster_path})
    assert sent.status_code == 303
    form = client.get(sent.headers["Location"])
    code = last_code_sent_to(db, phone)
    done = client.post("/signin/confirm", data={"csrf_token": csrf_token(form.text), "code": code})
    assert done.status_code == 303 and "Вы отмечены" in client.get(done.headers["Location"]).text
    cookie = client.get_cookie(DEVICE_COOKIE)
    assert cookie is not None
    return code, _serializer().loads(cookie.value)


def _operator_signs_up(app: Flask) -> FlaskClient:
    _forget_cached_csrf_token()
    client = app.test_client()
    page = client.get("/operator/signup")
    form = {"organisation": "Ромашка", "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD}
    response = client.post("/operator/signup", data={"csrf_token": csrf_token(page.text), **form})
    assert response.status_code in (302, 303)
    return client


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    limiter.reset()


def test_a_full_scenario_logs_no_number_e_mail_or_secret(
    app: Flask, db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch, captured: Callable[[], list[Line]]
) -> None:
    assert app.config["SMS_CHANNEL"] == "log"  # the demo channel: it prints message bodies by design
    monkeypatch.setitem(app.config, "AUTO_APPROVE_AFTER_MINUTES", 5)
    # No quiet hours, so the notices leave whatever the time of day the suite runs at.
    monkeypatch.setitem(app.config, "QUIET_HOURS_START", "00:00")
    monkeypatch.setitem(app.config, "QUIET_HOURS_END", "00:00")
    real_now = utcnow()

    _operator_signs_up(app)
    venue = factories.venue(name="Кафе «Лог»")
    _, token = posters.issue_poster(venue.entrances[0], real_now)
    db.session.commit()
    visitor_code, visitor_device = _visitor_checks_in(app, db, f"/p/{token}", VISITOR_PHONE)
    case_code, case_device = _visitor_checks_in(app, db, f"/p/{token}", CASE_PHONE)

    _forget_cached_csrf_token()
    official = make_official(now)
    official_email = email_of(official)
    db.session.commit()
    staff = app.test_client()
    assert official_sign_in(staff, official).status_code == 302
    # Today where the visits were (Moscow): from 21:00 UTC on, the UTC date is already yesterday there.
    today = real_now.astimezone(ZoneInfo(app.config["DEFAULT_TIMEZONE"])).date()
    case_form = {"phone": "8 916 765-43-21", "tested_on": today.isoformat()}
    recorded = post(staff, "/official/cases/new", case_form, page="/official/cases/new")
    assert recorded.status_code == 302, recorded.status_code

    assert run_job(app, "match_cases")["exposures"] == 1
    exposure = db.session.scalar(select(Exposure))
    exposure.created_at -= timedelta(minutes=10)  # it has waited longer than the policy's delay
    db.session.commit()
    assert run_job(app, "auto_approve") == {"approved": 1, "queued": 1}
    sent = run_job(app, "dispatch_outbox")
    assert sent["sent"] == 3, sent  # two sign-in codes and one notice
    db.session.expire_all()
    assert db.session.scalar(select(Exposure)).approved_at is not None
    assert {m.status for m in db.session.scalars(select(OutboxMessage))} == {MessageStatus.SENT}

    lines = captured()
    assert lines, "nothing was logged: the capture is broken"
    everything = "\n".join(line.text for line in lines)
    assert "job done" in everything  # the capture is real

    for phone in (VISITOR_PHONE, CASE_PHONE):
        for variant in phone_variants(phone):
            assert variant not in everything, f"{variant!r} in the logs"
    for address in (OPERATOR_EMAIL, official_email):
        assert address not in everything
    secrets = {
        "device token": [visitor_device, case_device],
        "SECRET_KEY": [TEST_KEYS["SECRET_KEY"]],
        "data key": [TEST_KEYS["DATA_ENCRYPTION_KEYS"].split(":", 1)[1], TEST_KEYS["LOOKUP_HASH_KEY"]],
        "gateway secret": [app.config["SMS_INBOUND_SECRET"]],
        "password": [OPERATOR_PASSWORD, OFFICIAL_PASSWORD],
        "poster token": [token],
    }
    for what, values in secrets.items():
        for value in values:
            assert value not in everything, f"a {what} is in the logs"

    # The demo channel prints each SMS (so a developer can read the code), to a masked number only;
    # a code appears nowhere else.
    sms_lines = [line for line in lines if SMS_LINE.match(line.message)]
    assert {SMS_LINE.match(line.message).group(1) for line in sms_lines} >= {"+7916***4567", "+7916***4321"}
    for code in (visitor_code, case_code):
        holders = [line for line in lines if code in line.message or code in line.text]
        assert holders and all(line in sms_lines and line.logger == "app.services.channels" for line in holders)


def test_a_500_logs_the_traceback_without_the_form_values(
    app: Flask, db: Any, monkeypatch: pytest.MonkeyPatch, captured: Callable[[], list[Line]]
) -> None:
    venue = factories.venue(name="Кафе «Сбой»")
    _, token = posters.issue_poster(venue.entrances[0], utcnow())
    db.session.commit()

    def broken(phone: str, now: datetime, **kwargs: Any) -> Any:
        raise RuntimeError("the outbox is unavailable")

    monkeypatch.setattr(sign_in, "request_code", broken)
    _forget_cached_csrf_token()
    client = app.test_client()
    page = client.get(f"/p/{token}")
    response = client.post("/signin/code", data={"csrf_token": csrf_token(page.text), "phone": "8 916 123-45-67",
                                                 "next": f"/p/{token}"})  # fmt: skip
    assert response.status_code == 500
    assert "Traceback" not in response.text and "outbox is unavailable" not in response.text
    lines = captured()
    errors = [line for line in lines if line.logger == "app.errors"]
    assert len(errors) == 1 and "RuntimeError: the outbox is unavailable" in errors[0].text
    everything = "\n".join(line.text for line in lines)
    for variant in phone_variants(VISITOR_PHONE):
        assert variant not in everything, f"{variant!r} in the logs"
    assert csrf_token(page.text) not in everything


def test_a_database_error_logs_its_statement_without_the_values(
    app: Flask, db: Any, monkeypatch: pytest.MonkeyPatch, captured: Callable[[], list[Line]]
) -> None:
    # A database error's text would carry the statement's values: here an SMS body with a sign-in code.
    venue = factories.venue(name="Кафе «Сбой»")
    _, token = posters.issue_poster(venue.entrances[0], utcnow())
    db.session.commit()
    secret = "Ваш код для входа: 493817"

    def failing_insert(phone: str, now: datetime, **kwargs: Any) -> Any:
        # A real statement the database refuses (dedup_key and the rest are NOT NULL).
        db.session.execute(text("INSERT INTO outbox_messages (body) VALUES (:body)"), {"body": secret})

    monkeypatch.setattr(sign_in, "request_code", failing_insert)
    _forget_cached_csrf_token()
    client = app.test_client()
    page = client.get(f"/p/{token}")
    response = client.post("/signin/code", data={"csrf_token": csrf_token(page.text), "phone": VISITOR_PHONE,
                                                 "next": f"/p/{token}"})  # fmt: skip
    assert response.status_code == 500
    errors = [line for line in captured() if line.logger == "app.errors"]
    assert len(errors) == 1 and "IntegrityError" in errors[0].text and "INSERT INTO outbox_messages" in errors[0].text
    everything = "\n".join(line.text for line in captured())
    assert "493817" not in everything
    if db.engine.dialect.name == "postgresql":  # its DETAIL quotes the failing row; SQLite names the column only
        assert HIDDEN_DETAIL in errors[0].text
