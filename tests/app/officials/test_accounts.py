"""Officials' accounts: password rules, sign-in, second factor, session timeout, rate limit, CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from app.errors import ValidationError
from app.models import AuditEntry, Official
from app.services import officials
from tests.app.officials.helpers import email_of, make_official, sign_in
from tests.support.forms import csrf_token


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short-pw1", "at least 12"),
        ("password1234", "most common"),
        ("Qwerty123!!!!", "most common"),
        ("aaaaaaaaaaaaaaa", "too few"),
        ("my-anna.petrova-pass", "e-mail"),
    ],
)
def test_weak_passwords_are_refused_with_the_reason(password: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        officials.check_password(password, "anna.petrova@health.example")


def test_a_strong_password_is_accepted() -> None:
    officials.check_password("Vaccinate-Early-2026", "anna.petrova@health.example")


def test_sign_in_audits_and_opens_the_review_page(client: FlaskClient, db: Any, now: datetime) -> None:
    official = make_official(now)
    assert client.get("/official/").status_code == 302
    response = sign_in(client, official)
    assert response.status_code == 302 and response.location.endswith("/official/")
    page = client.get("/official/")
    assert page.status_code == 200 and "New exposures" in page.text
    actions = db.session.scalars(select(AuditEntry.action).where(AuditEntry.actor_id == official.id)).all()
    assert "official.login" in actions and "exposures.view" in actions


def test_a_wrong_password_is_refused_without_saying_which_part(client: FlaskClient, db: Any, now: datetime) -> None:
    official = make_official(now)
    page = client.get("/official/login")
    response = client.post("/official/login", data={"email": email_of(official), "password": "wrong-password-x",
                                                    "csrf_token": csrf_token(page.text)})  # fmt: skip
    assert response.status_code == 401 and "e-mail, password or code is not right" in response.text


def test_the_second_factor_is_enrolled_from_the_qr_page_and_then_required(
    client: FlaskClient, db: Any, now: datetime
) -> None:
    official = make_official(now)
    sign_in(client, official)
    page = client.get("/official/totp")
    assert "<svg" in page.text and "style=" not in page.text.split("<svg", 1)[1].split("</svg>")[0]
    with client.session_transaction() as session:
        secret = session["totp_pending"]
    bad = client.post("/official/totp", data={"code": "000000", "csrf_token": csrf_token(page.text)})
    assert bad.status_code == 400
    good = client.post("/official/totp", data={"code": pyotp.TOTP(secret).now(), "csrf_token": csrf_token(page.text)})
    assert good.status_code == 302, good.text[-600:]
    assert db.session.get(Official, official.id).totp_secret_enc is not None
    assert secret.encode() not in db.session.get(Official, official.id).totp_secret_enc

    client.post("/official/logout", data={"csrf_token": csrf_token(client.get("/official/").text)})
    assert sign_in(client, official).status_code == 401  # no code
    assert sign_in(client, official, code=pyotp.TOTP(secret).now()).status_code == 302


def test_the_session_ends_after_inactivity(client: FlaskClient, db: Any, now: datetime) -> None:
    sign_in(client, make_official(now))
    with client.session_transaction() as session:
        session["official_seen"] = session["official_seen"] - 31 * 60
    response = client.get("/official/")
    assert response.status_code == 302 and "expired=1" in response.location


def test_sign_in_attempts_are_rate_limited(client: FlaskClient, db: Any, now: datetime) -> None:
    official = make_official(now)
    token = csrf_token(client.get("/official/login").text)
    statuses = [
        client.post(
            "/official/login", data={"email": email_of(official), "password": "nope-nope-nope", "csrf_token": token}
        ).status_code
        for _ in range(11)
    ]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429


def test_cli_creates_an_official_with_the_password_from_the_environment(
    app: Flask, runner: FlaskCliRunner, db: Any
) -> None:
    result = runner.invoke(
        args=["cases", "create-official", "chief@health.example", "--role", "supervisor", "--can-reveal"],
        env={"OFFICIAL_PASSWORD": "Vaccinate-Early-2026"},
    )
    assert result.exit_code == 0, result.output
    assert "role supervisor, can reveal" in result.output
    weak = runner.invoke(args=["cases", "create-official", "x@health.example"], env={"OFFICIAL_PASSWORD": "password"})
    assert weak.exit_code == 1 and "at least 12" in weak.output
