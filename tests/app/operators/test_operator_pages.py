"""Operator web pages: sign-up, sign-in, passwords, invitations, venues, posters, kiosks, dashboard."""

from __future__ import annotations

import io
import secrets
import zipfile
from datetime import timedelta
from typing import Any

import pypdf
from flask import Flask, g
from flask.testing import FlaskClient

from app.models import Kiosk, KioskPairingCode, Operator, OperatorRole, PosterVersion, Venue
from app.services import accounts, posters
from app.services.personal_data import keyring, secret_hash
from tests import factories
from tests.app.operators.conftest import PASSWORD, signed_in_client
from tests.support.forms import csrf_token


def fresh_csrf() -> None:
    # The db fixture keeps one app context for the whole test, so `g` outlives a request and
    # Flask-WTF would hand every client the token cached for the first one.
    g.pop("csrf_token", None)


def _post(client: FlaskClient, page: str, action: str, data: dict[str, Any], **kwargs: Any) -> Any:
    fresh_csrf()
    token = csrf_token(client.get(page).get_data(as_text=True))
    return client.post(action, data={"csrf_token": token, **data}, **kwargs)


def test_signup_creates_an_organisation_and_signs_the_owner_in(client: FlaskClient, db: Any) -> None:
    response = _post(
        client,
        "/operator/signup",
        "/operator/signup",
        {"organisation": "Театр «Луна»", "email": "Boss@Luna.example", "password": PASSWORD},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/operator/venues/new")
    operator = db.session.query(Operator).one()
    assert operator.role == OperatorRole.OWNER and operator.organisation.name == "Театр «Луна»"
    assert b"boss@luna.example" not in operator.email_enc
    assert client.get("/operator/").status_code == 200


def test_signup_with_a_short_password_explains_and_writes_nothing(client: FlaskClient, db: Any) -> None:
    response = _post(
        client,
        "/operator/signup",
        "/operator/signup",
        {"organisation": "X", "email": "a@b.example", "password": "short"},
    )
    assert response.status_code == 400
    assert "at least 10 characters" in response.get_data(as_text=True)
    assert db.session.query(Operator).count() == 0


def test_forms_without_csrf_token_are_refused(client: FlaskClient, db: Any) -> None:
    response = client.post("/operator/signup", data={"organisation": "X", "email": "a@b.example", "password": PASSWORD})
    assert response.status_code == 400
    assert db.session.query(Operator).count() == 0


def test_login_and_logout(client: FlaskClient, operator: Operator) -> None:
    bad = _post(client, "/operator/login", "/operator/login", {"email": "owner@romashka.example", "password": "nope"})
    assert bad.status_code == 401 and "not right" in bad.get_data(as_text=True)
    ok = _post(client, "/operator/login", "/operator/login", {"email": "OWNER@romashka.example", "password": PASSWORD})
    assert ok.status_code == 302
    assert client.get("/operator/").status_code == 200
    assert operator.last_login_at is not None
    _post(client, "/operator/", "/operator/logout", {})
    assert client.get("/operator/").status_code == 302


def test_pages_need_a_signed_in_operator(client: FlaskClient, db: Any) -> None:
    response = client.get("/operator/kiosks")
    assert response.status_code == 302 and "/operator/login?next=" in response.headers["Location"]


def test_login_is_rate_limited_per_address(client: FlaskClient, operator: Operator) -> None:
    token = csrf_token(client.get("/operator/login").get_data(as_text=True))
    data = {"csrf_token": token, "email": "owner@romashka.example", "password": "wrong password"}
    statuses = [client.post("/operator/login", data=data).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    # Another address is not affected.
    other = client.post("/operator/login", data=data, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 401


def test_open_redirect_after_login_is_refused(client: FlaskClient, operator: Operator) -> None:
    response = _post(
        client,
        "/operator/login",
        "/operator/login",
        {"email": "owner@romashka.example", "password": PASSWORD, "next": "//evil.example/x"},
    )
    assert response.headers["Location"] == "/operator/"


def test_password_change_signs_out_other_sessions(app: Flask, op_client: FlaskClient, operator: Operator) -> None:
    other_device = signed_in_client(app, operator)
    response = _post(
        op_client,
        "/operator/password",
        "/operator/password",
        {"current_password": PASSWORD, "new_password": "an even better password"},
    )
    assert response.status_code == 200 and "password is changed" in response.get_data(as_text=True)
    assert op_client.get("/operator/").status_code == 200
    assert other_device.get("/operator/").status_code == 302
    assert accounts.password_matches(operator.password_hash, "an even better password")


def test_invitation_link_is_shown_once_and_works_once(client: FlaskClient, op_client: FlaskClient, db: Any) -> None:
    page = _post(op_client, "/operator/team", "/operator/team", {"email": "anna@romashka.example", "role": "manager"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    link = html.split('value="http://checkin.test')[1].split('"')[0]
    assert link.startswith("/operator/invitations/")
    accepted = _post(client, link, link, {"password": "anna's long password"})
    assert accepted.status_code == 302
    anna = db.session.query(Operator).filter_by(role=OperatorRole.MANAGER).one()
    assert keyring().decrypt(anna.email_enc, context="email") == "anna@romashka.example"
    assert client.get(link).status_code == 404
    # Managers cannot invite.
    manager_page = client.get("/operator/team").get_data(as_text=True)
    assert "Invite an operator" not in manager_page
    assert "o***@romashka.example" in manager_page and "owner@romashka.example" not in manager_page


def test_create_edit_and_archive_a_venue(op_client: FlaskClient, operator: Operator, db: Any) -> None:
    created = _post(
        op_client,
        "/operator/venues/new",
        "/operator/venues/new",
        {
            "name": "  Кафе   «Пушкинъ» ",
            "address": "Тверской бульвар, 26А",
            "kind": "cafe",
            "timezone": "Europe/Moscow",
            "default_stay_minutes": "90",
            "capacity": "120",
            "entrances": "Главный вход\nЛетняя веранда",
        },
    )
    assert created.status_code == 302
    venue = db.session.query(Venue).one()
    assert venue.name == "Кафе «Пушкинъ»" and [e.name for e in venue.entrances] == ["Главный вход", "Летняя веранда"]
    assert len(venue.short_code) == 9 and venue.short_code.isdigit()
    page = f"/operator/venues/{venue.id}"
    assert "Кафе «Пушкинъ»" in op_client.get(page).get_data(as_text=True)
    bad = _post(
        op_client,
        page + "/edit",
        page + "/edit",
        {"name": "X", "timezone": "Europe/Moscow", "default_stay_minutes": "5"},
    )
    assert bad.status_code == 400 and "between 15 minutes and 24 hours" in bad.get_data(as_text=True)
    edited = _post(
        op_client,
        page + "/edit",
        page + "/edit",
        {
            "name": "Кафе «Пушкин»",
            "kind": "restaurant",
            "timezone": "Asia/Yekaterinburg",
            "default_stay_minutes": "120",
            "capacity": "",
        },
    )
    assert edited.status_code == 302
    assert (venue.name, venue.timezone, venue.capacity) == ("Кафе «Пушкин»", "Asia/Yekaterinburg", None)
    _post(op_client, page, page + "/archive", {})
    assert venue.archived_at is not None
    assert "Кафе «Пушкин»" not in op_client.get("/operator/").get_data(as_text=True)


def test_entrances_can_be_added_renamed_and_closed_but_not_the_last(
    op_client: FlaskClient, operator: Operator, db: Any
) -> None:
    venue = factories.venue(operator.organisation)
    db.session.commit()
    page = f"/operator/venues/{venue.id}"
    _post(op_client, page, page + "/entrances", {"name": "Большой зал", "kind": "hall"})
    hall = venue.entrances[1]
    assert hall.kind.value == "hall"
    _post(op_client, page, f"/operator/entrances/{hall.id}/edit", {"name": "Малый зал", "kind": "hall"})
    assert hall.name == "Малый зал"
    _post(op_client, page, f"/operator/entrances/{hall.id}/archive", {})
    assert hall.archived_at is not None
    last = _post(op_client, page, f"/operator/entrances/{venue.entrances[0].id}/archive", {})
    assert last.status_code == 400 and "at least one open entrance" in last.get_data(as_text=True)


def test_poster_downloads_in_every_format_and_size(op_client: FlaskClient, operator: Operator, db: Any) -> None:
    venue = factories.venue(operator.organisation, name="Кафе «Тест»")
    entrance = venue.entrances[0]
    db.session.commit()
    pdf = op_client.get(f"/operator/entrances/{entrance.id}/poster.pdf?size=A5")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    page = pypdf.PdfReader(io.BytesIO(pdf.data)).pages[0]
    assert round(float(page.mediabox.width)) == 420  # A5 in points
    assert "Кафе «Тест»" in page.extract_text()
    assert op_client.get(f"/operator/entrances/{entrance.id}/poster.png").data.startswith(b"\x89PNG")
    svg = op_client.get(f"/operator/entrances/{entrance.id}/poster.svg")
    assert svg.mimetype == "image/svg+xml" and b"<svg" in svg.data
    assert op_client.get(f"/operator/entrances/{entrance.id}/poster.gif").status_code == 400
    assert op_client.get(f"/operator/entrances/{entrance.id}/poster.pdf?size=A3").status_code == 400
    # Every download shows the same current poster: one version.
    assert db.session.query(PosterVersion).filter_by(entrance_id=entrance.id).count() == 1


def test_reissue_revokes_the_printed_poster(op_client: FlaskClient, operator: Operator, now: Any) -> None:
    entrance = factories.venue(operator.organisation).entrances[0]
    old = posters.current_token(entrance, now - timedelta(days=1))
    page = f"/operator/venues/{entrance.venue_id}"
    assert _post(op_client, page, f"/operator/entrances/{entrance.id}/reissue", {}).status_code == 302
    new = posters.current_token(entrance, now)
    assert new != old
    assert op_client.get(f"/verify/{old}").status_code == 410
    assert "version 2" in op_client.get(page).get_data(as_text=True)


def test_batch_posters_as_one_pdf_and_as_a_zip(op_client: FlaskClient, operator: Operator) -> None:
    factories.venue(operator.organisation, name="Кафе один", halls=("Зал",))
    factories.venue(operator.organisation, name="Кафе два")
    pdf = op_client.get("/operator/posters.pdf")
    assert pdf.status_code == 200 and len(pypdf.PdfReader(io.BytesIO(pdf.data)).pages) == 3
    archive = zipfile.ZipFile(io.BytesIO(op_client.get("/operator/posters.zip?size=A5").data))
    assert len(archive.namelist()) == 3 and all(n.endswith(".pdf") for n in archive.namelist())


def test_pairing_code_and_kiosk_revocation(op_client: FlaskClient, operator: Operator, db: Any, now: Any) -> None:
    venue = factories.venue(operator.organisation)
    entrance = venue.entrances[0]
    page = f"/operator/venues/{venue.id}"
    shown = _post(op_client, page, f"/operator/entrances/{entrance.id}/pairing-code", {})
    code = shown.get_data(as_text=True).split('aria-label="Pairing code">')[1].split("<")[0]
    stored = db.session.query(KioskPairingCode).one()
    assert stored.code_hash == secret_hash(code) and stored.created_by_id == operator.id
    kiosk = Kiosk(
        entrance_id=entrance.id,
        name="Планшет у входа",
        credential_hash=secret_hash(secrets.token_urlsafe(8)),
        rotation_secret_enc=b"x",
        enrolled_at=now,
        last_seen_at=now - timedelta(minutes=3),
        last_status="ok; queue 0",
    )
    db.session.add(kiosk)
    db.session.flush()
    listing = op_client.get("/operator/kiosks").get_data(as_text=True)
    assert "Планшет у входа" in listing and "ok; queue 0" in listing and "11:57 UTC" in listing
    _post(op_client, "/operator/kiosks", f"/operator/kiosks/{kiosk.id}/revoke", {})
    assert kiosk.revoked_at is not None


def test_dashboard_shows_hourly_bars_and_occupancy(op_client: FlaskClient, operator: Operator, now: Any) -> None:
    venue = factories.venue(operator.organisation, capacity=10)
    for minutes_ago in (5, 20, 70):
        factories.checkin(factories.person(), venue, now - timedelta(minutes=minutes_ago), minutes=None)
    html = op_client.get(f"/operator/venues/{venue.id}").get_data(as_text=True)
    # The dashboard uses the real clock; the frozen visits are in the past relative to it, so only the
    # page structure is asserted here (the counts are pinned in test_occupancy.py with a frozen now).
    assert 'class="op-chart"' in html and "Present now" in html and "<svg" in html


def test_other_organisations_venues_are_not_found(op_client: FlaskClient, operator: Operator, db: Any) -> None:
    foreign = factories.venue(factories.organisation("Чужая сеть"))
    entrance = foreign.entrances[0]
    db.session.commit()
    for url in (
        f"/operator/venues/{foreign.id}",
        f"/operator/venues/{foreign.id}/edit",
        f"/operator/entrances/{entrance.id}/poster.pdf",
    ):
        assert op_client.get(url).status_code == 404, url
    page = "/operator/"
    for url in (
        f"/operator/venues/{foreign.id}/archive",
        f"/operator/entrances/{entrance.id}/reissue",
        f"/operator/entrances/{entrance.id}/pairing-code",
    ):
        assert _post(op_client, page, url, {}).status_code == 404, url
    assert foreign.archived_at is None


def test_verify_page_for_genuine_forged_and_archived_posters(client: FlaskClient, db: Any, now: Any) -> None:
    venue = factories.venue(name="Музей «Гараж»")
    token = posters.current_token(venue.entrances[0], now)
    db.session.commit()
    ok = client.get(f"/verify/{token}")
    html = ok.get_data(as_text=True)
    assert ok.status_code == 200 and "genuine and current" in html and "Музей «Гараж»" in html
    assert venue.short_code in html and "version" in html.lower()
    # A different signature tail (the genuine one ends in "AA" once in about a thousand tokens).
    forged = client.get(f"/verify/{token[:-2]}{'AA' if token[-2:] != 'AA' else 'BB'}")
    assert forged.status_code == 400 and "not a valid poster" in forged.get_data(as_text=True)
    assert client.get("/verify/" + "x" * 500).status_code == 400
    venue.archived_at = now
    db.session.commit()
    assert client.get(f"/verify/{token}").status_code == 410


def test_invitation_is_emailed_through_the_outbox_when_smtp_is_set(
    app: Flask, op_client: FlaskClient, db: Any, monkeypatch: Any
) -> None:
    from app.models import MessageChannel, OutboxMessage
    from app.services.outbox import RECIPIENT_CONTEXT

    monkeypatch.setitem(app.config, "SMTP_HOST", "127.0.0.1")
    page = _post(op_client, "/operator/team", "/operator/team", {"email": "ivan@romashka.example", "role": "owner"})
    assert "e-mailed this one-time link" in page.get_data(as_text=True)
    message = db.session.query(OutboxMessage).one()
    assert message.channel == MessageChannel.EMAIL
    assert keyring().decrypt(message.recipient_enc, context=RECIPIENT_CONTEXT) == "ivan@romashka.example"
    link = page.get_data(as_text=True).split('readonly value="')[1].split('"')[0]
    assert link.startswith("http://checkin.test/operator/invitations/") and link in message.body
