"""Operators never see who visited: every operator route, walked with visitors' data in the database."""

from __future__ import annotations

import io
import re
import secrets
from datetime import timedelta
from typing import Any

import pypdf
from flask import Flask, g

from app.models import Kiosk, Operator, OperatorRole, Person, utcnow
from app.services import accounts
from app.services.personal_data import keyring, secret_hash
from tests import factories
from tests.app.operators.conftest import signed_in_client
from tests.support.forms import csrf_token

VISITORS = [
    ("+79031234567", "visitor.secret@example.net", "mosru-subject-8f3a2b71"),
    ("+79269876543", "second.visitor@example.org", "mosru-subject-c0ffee42"),
]
# Written last: they end the session or archive what the other routes need.
LAST = {"logout", "archive_venue", "archive_entrance", "revoke_kiosk"}


def phone_forms(phone: str) -> list[str]:
    """Spellings of +7 903 123-45-67 a page might contain, reduced to digits-only needles."""
    national = phone[2:]  # 9031234567
    return [national, "7" + national, "8" + national]


def _visitor(phone: str, email: str, subject: str) -> Person:
    ring = keyring()
    person = factories.person(phone)
    person.email_hash = ring.lookup_hash(email, context="email")
    person.email_enc = ring.encrypt(email, context="email")
    person.oidc_subject_hash = ring.lookup_hash(subject, context="oidc")
    person.oidc_subject_enc = ring.encrypt(subject, context="oidc")
    return person


def _text_of(response: Any) -> str:
    if response.mimetype == "application/pdf":
        return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(response.data)).pages)
    if response.mimetype in {"image/png", "application/zip"}:
        return ""  # no text layer; the same content is checked through the PDF and SVG routes
    return response.get_data(as_text=True)


def _leaks(text: str, operator_email: str) -> list[str]:
    digits = re.sub(r"(?<=\d)[\s\-().+]+(?=\d)", "", text)
    found = [needle for phone, _, _ in VISITORS for needle in phone_forms(phone) if needle in digits]
    for _, email, subject in VISITORS:
        found += [value for value in (email, subject) if value in text]
    if operator_email in text:
        found.append(operator_email)
    return found


def test_no_operator_route_shows_personal_data(app: Flask, db: Any, operator: Operator) -> None:
    now = utcnow()  # the pages read the real clock; visits must fall inside their windows
    venue = factories.venue(operator.organisation, name="Кафе «Приват»", capacity=30, halls=("Зал",))
    for i, (phone, email, subject) in enumerate(VISITORS):
        visitor = _visitor(phone, email, subject)
        factories.checkin(visitor, venue, now - timedelta(minutes=10 + i), minutes=None, party_size=2)
        factories.checkin(visitor, venue, now - timedelta(hours=30 + i), minutes=45)
    kiosk = Kiosk(
        entrance_id=venue.entrances[0].id,
        name="Планшет",
        credential_hash=secret_hash(secrets.token_urlsafe(8)),
        rotation_secret_enc=b"x",
        enrolled_at=now,
        last_seen_at=now,
        last_status="ok",
    )
    db.session.add(kiosk)
    _, invitation_token = accounts.invite_operator(
        operator, "new.colleague@romashka.example", OperatorRole.MANAGER, now
    )
    db.session.commit()

    values = {
        "venue_id": venue.id,
        "entrance_id": venue.entrances[1].id,
        "kiosk_id": kiosk.id,
        "fmt": "svg",
        "archive": "pdf",
        "token": invitation_token,
    }
    rules = [r for r in app.url_map.iter_rules() if r.endpoint.startswith(("operators.", "operators_api."))]
    calls = [(rule, method) for rule in rules for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    calls.sort(key=lambda c: (c[1] != "GET", c[0].endpoint.split(".")[1] in LAST, c[0].endpoint.endswith("logout")))
    extra = [
        ("/operator/entrances/{entrance_id}/poster.pdf", "GET"),
        ("/api/v1/operator/entrances/{entrance_id}/poster?format=pdf", "GET"),
        ("/api/v1/operator/posters?format=pdf", "GET"),
    ]
    client = signed_in_client(app, operator)
    # The dashboard really has the visits to count: two parties of two inside now, four visits in 72 h.
    dashboard = client.get(f"/operator/venues/{venue.id}").get_data(as_text=True)
    assert "4 / 30" in dashboard and "(4 in all)" in dashboard
    visited: set[str] = set()
    checked = 0
    for url, method, endpoint in [
        *((p.format(**values), m, "extra") for p, m in extra),
        *((r.build(values, append_unknown=False)[1], m, r.endpoint) for r, m in calls),
    ]:
        if method == "GET":
            response = client.get(url)
        elif endpoint.startswith("operators_api."):
            response = client.open(url, method=method, json={})
        else:
            g.pop("csrf_token", None)
            token = csrf_token(client.get("/operator/password").get_data(as_text=True))
            response = client.open(url, method=method, data={"csrf_token": token})
        assert response.status_code < 500, (method, url, response.status_code)
        if method == "GET" and endpoint != "operators_api.logout":
            assert response.status_code in {200, 302}, (url, response.status_code)
        assert _leaks(_text_of(response), "owner@romashka.example") == [], (method, url)
        visited.add(endpoint)
        checked += 1
    assert visited >= {r.endpoint for r in rules}
    assert checked >= 40


def test_leak_detector_catches_the_spellings_it_claims_to(db: Any) -> None:
    for spelling in ("+7 (903) 123-45-67", "8 903 123 45 67", "79031234567", "903-123-45-67"):
        assert _leaks(f"<td>{spelling}</td>", "x@y.z"), spelling
    assert _leaks("mail: visitor.secret@example.net", "x@y.z")
    assert _leaks("owner@romashka.example", "owner@romashka.example")
    assert _leaks("<p>20.11 12:00 · 40 check-ins</p>", "x@y.z") == []
