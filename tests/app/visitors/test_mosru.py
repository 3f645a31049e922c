"""mos.ru sign-in end to end: a live server, a real OpenID Connect provider on loopback, no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Person, utcnow
from app.services import people
from tests.support.live import LiveServer
from tests.support.oidc import OidcProvider, httpx, login_via_http


@pytest.fixture
def oidc_live(live: LiveServer, mos: OidcProvider) -> Iterator[LiveServer]:
    live.app.config.update(OIDC_ISSUER=mos.issuer, OIDC_CLIENT_ID=mos.client_id, OIDC_CLIENT_SECRET=mos.client_secret)
    live.app.extensions.pop("mosru_oauth", None)
    try:
        yield live
    finally:
        live.app.config.update(OIDC_ISSUER="", OIDC_CLIENT_ID="", OIDC_CLIENT_SECRET="")
        live.app.extensions.pop("mosru_oauth", None)


def sign_in(live: LiveServer, sub: str, browser: httpx.Client) -> httpx.Response:
    start = browser.get(f"{live.url}/auth/mos", params={"next": "/me"})
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"{live.url}/auth/mos/callback"]
    callback = login_via_http(browser, authorize, sub)
    assert callback.startswith(f"{live.url}/auth/mos/callback?")
    return browser.get(callback)


def test_mos_account_with_verified_phone_signs_in_and_links_to_that_number(oidc_live: LiveServer) -> None:
    with oidc_live.app.app_context():
        person, _ = people.get_or_create_by_phone("+79161234567", utcnow())
        db.session.commit()
        known_id = person.id
    with httpx.Client(timeout=10) as browser:
        done = sign_in(oidc_live, "mos-1001", browser)
        assert done.status_code == 303
        assert done.headers["location"] == "/me"
        assert "device=" in done.headers["set-cookie"]
        me = browser.get(f"{oidc_live.url}/me")
        assert "+7916***4567" in me.text
    with oidc_live.app.app_context():
        linked = people.find_by_subject(oidc_live.app.config["OIDC_ISSUER"], "mos-1001")
        assert linked is not None and linked.id == known_id
        assert b"mos-1001" not in (linked.oidc_subject_enc or b"")


def test_mos_account_without_phone_becomes_a_person_of_its_own(oidc_live: LiveServer) -> None:
    with httpx.Client(timeout=10) as browser:
        done = sign_in(oidc_live, "mos-1002", browser)
        assert done.status_code == 303
        assert browser.get(f"{oidc_live.url}/me").status_code == 200
    with httpx.Client(timeout=10) as other_browser:
        assert sign_in(oidc_live, "mos-1002", other_browser).status_code == 303
    with oidc_live.app.app_context():
        person = people.find_by_subject(oidc_live.app.config["OIDC_ISSUER"], "mos-1002")
        assert person is not None and person.phone_hash is None
        count = len(
            db.session.scalars(select(Person).where(Person.oidc_subject_hash == person.oidc_subject_hash)).all()
        )
        assert count == 1


def test_callback_with_a_forged_state_is_refused(oidc_live: LiveServer) -> None:
    with httpx.Client(timeout=10) as browser:
        browser.get(f"{oidc_live.url}/auth/mos")
        forged = browser.get(f"{oidc_live.url}/auth/mos/callback", params={"code": "x", "state": "forged"})
    assert forged.status_code == 400
    assert "не завершён" in forged.text


def test_mos_button_is_a_link_shown_only_when_configured(oidc_live: LiveServer) -> None:
    with httpx.Client(timeout=10) as browser:
        page = browser.get(f"{oidc_live.url}/me")
    assert 'href="/auth/mos?next=%2Fme"' in page.text or 'href="/auth/mos?next=/me"' in page.text
