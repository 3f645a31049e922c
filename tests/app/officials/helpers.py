"""Signing officials in through the real login form."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from flask.testing import FlaskClient

from app.models import Official, OfficialRole
from app.services import officials
from tests.support.forms import csrf_token

PASSWORD = "Vaccinate-Early-2026"
_seq = itertools.count(1)


def make_official(now: datetime, role: OfficialRole = OfficialRole.SUPERVISOR, can_reveal: bool = True) -> Official:
    return officials.create_official(f"epi{next(_seq)}@health.example", PASSWORD, "Epi", role, can_reveal, now=now)


def email_of(official: Official) -> str:
    from app.services.personal_data import keyring

    return keyring().decrypt(official.email_enc, context="email")


def sign_in(client: FlaskClient, official: Official, code: str = "") -> Any:
    page = client.get("/official/login")
    return client.post(
        "/official/login",
        data={"email": email_of(official), "password": PASSWORD, "code": code, "csrf_token": csrf_token(page.text)},
    )


def post(client: FlaskClient, url: str, data: dict[str, Any], page: str = "/official/") -> Any:
    token = csrf_token(client.get(page).text)
    return client.post(url, data={**data, "csrf_token": token})


def dashboard_clock_at(monkeypatch: Any, now: datetime) -> None:
    """The dashboard counts the last 14 days before its clock; tests that seed data at the frozen `now`
    set that clock too, so they do not start failing two weeks after the date frozen in them."""
    from app.views import officials as official_views

    monkeypatch.setattr(official_views, "utcnow", lambda: now)
