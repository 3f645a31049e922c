"""Bad input on the visitor pages: forged or replaced posters, stale kiosk codes, junk in every field."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.models import Checkin, Kiosk, LoginCode, OutboxMessage, Person, utcnow
from app.services import posters
from app.services.personal_data import keyring, secret_hash
from tests.support.forms import csrf_token
from venue_kiosk import codes

from .conftest import Poster

JUNK = "Ω<script>'\"" * 1000  # about 10 kB


def written(db: Any) -> tuple[int, int, int, int]:
    return tuple(  # type: ignore[return-value]
        db.session.scalar(select(func.count()).select_from(model))
        for model in (Checkin, LoginCode, OutboxMessage, Person)
    )


@pytest.mark.parametrize("token", ["AAAA", "A" * 200, "not-a-token", "%00", JUNK[:150]])
def test_forged_or_malformed_poster_tokens_get_a_clear_400(client: FlaskClient, token: str) -> None:
    response = client.get(f"/p/{token}")
    assert response.status_code in (400, 404)
    assert "Something went wrong" not in response.text


def test_altered_poster_token_is_refused(client: FlaskClient, poster: Poster) -> None:
    altered = poster.token[:-2] + ("AA" if poster.token[-2:] != "AA" else "BB")
    response = client.get(f"/p/{altered}")
    assert response.status_code == 400
    assert "не плакат нашего сервиса" in response.text  # the page speaks Russian by default


def test_replaced_poster_is_410(client: FlaskClient, db: Any, poster: Poster, now: datetime) -> None:
    posters.issue_poster(poster.venue.entrances[0], now)
    response = client.get(poster.path)
    assert response.status_code == 410
    assert "Этот плакат заменён" in response.text


@pytest.mark.parametrize("field", ["phone", "next", "code", "party_size", "companion_phones", "place"])
def test_ten_kilobytes_of_junk_in_any_field_is_a_clear_4xx_and_writes_nothing(
    client: FlaskClient, db: Any, poster: Poster, field: str
) -> None:
    page = client.get(poster.path)
    token = csrf_token(page.text)
    before = written(db)
    base = {"csrf_token": token, "phone": "+79169200001", "next": poster.path}
    if field in ("phone", "next"):
        response = client.post("/signin/code", data={**base, field: JUNK})
        if field == "next":  # an unknown next falls back to /me; the code request itself is fine
            assert response.status_code == 303
            return
    elif field == "place":
        response = client.post("/checkin", data={"csrf_token": token, "place": JUNK})
    else:
        sent = client.post("/signin/code", data=base)
        assert sent.status_code == 303
        before = written(db)
        form = client.get("/signin/code")
        response = client.post(
            "/signin/confirm", data={"csrf_token": csrf_token(form.text), "code": "000000", field: JUNK}
        )
    assert 400 <= response.status_code < 500, response.status_code
    assert "Something went wrong" not in response.text
    assert written(db) == before


def test_junk_in_json_fields_is_a_clear_4xx(client: FlaskClient, db: Any) -> None:
    before = written(db)
    for body in ({"phone": JUNK}, {"phone": ["+79169200001"]}, {"request_id": JUNK, "code": JUNK}):
        for path in ("/api/v1/visitors/code", "/api/v1/visitors/code/confirm"):
            response = client.post(path, json=body)
            assert 400 <= response.status_code < 500
            assert response.json["error"]
    assert written(db) == before


def kiosk_for(db: Any, poster: Poster) -> tuple[Kiosk, bytes]:
    secret = b"rotation-secret-for-tests-000000"
    kiosk = Kiosk(
        entrance_id=poster.venue.entrances[0].id,
        credential_hash=secret_hash("kiosk-credential"),
        rotation_secret_enc=keyring().encrypt(secret.decode(), context="kiosk"),
    )
    db.session.add(kiosk)
    db.session.flush()
    return kiosk, secret


def test_current_kiosk_code_opens_the_check_in_page_for_its_entrance(
    client: FlaskClient, db: Any, poster: Poster
) -> None:
    kiosk, secret = kiosk_for(db, poster)
    code = codes.kiosk_code(secret, kiosk.id, utcnow())
    response = client.get(f"/k/{code}")
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert "Кафе «Тест»" in page.text
    assert 'value="/k/here"' in page.text


def test_a_kiosk_pass_ends_when_its_kiosk_is_revoked(client: FlaskClient, db: Any, poster: Poster) -> None:
    kiosk, secret = kiosk_for(db, poster)
    db.session.commit()
    assert client.get(f"/k/{codes.kiosk_code(secret, kiosk.id, utcnow())}").status_code == 303
    assert client.get("/k/here").status_code == 200  # the pass: a few minutes to check in
    kiosk.revoked_at = utcnow()
    db.session.commit()
    assert client.get("/k/here").status_code == 410


@pytest.mark.parametrize("age", [timedelta(minutes=5), timedelta(seconds=-60)])
def test_stale_kiosk_code_gets_a_410_asking_to_scan_again(
    client: FlaskClient, db: Any, poster: Poster, age: timedelta
) -> None:
    kiosk, secret = kiosk_for(db, poster)
    code = codes.kiosk_code(secret, kiosk.id, utcnow() - age)
    response = client.get(f"/k/{code}")
    assert response.status_code == 410
    assert "Отсканируйте код на экране ещё раз" in response.text


def test_kiosk_code_from_another_secret_or_garbage_is_refused(client: FlaskClient, db: Any, poster: Poster) -> None:
    kiosk, _ = kiosk_for(db, poster)
    forged = codes.kiosk_code(b"someone-elses-secret", kiosk.id, utcnow())
    assert client.get(f"/k/{forged}").status_code == 410
    assert client.get("/k/" + base64.urlsafe_b64encode(b"x" * 40).decode()).status_code == 400
    assert client.get("/k/here").status_code == 410  # no kiosk pass in this browser
    # The code carries the kiosk id as 32 bits unsigned: one past the id column's range is no kiosk.
    assert client.get(f"/k/{codes.kiosk_code(b'x', 2**31, utcnow())}").status_code == 410


def test_forged_device_cookie_is_ignored(client: FlaskClient, poster: Poster) -> None:
    client.set_cookie("device", "forged.value")
    page = client.get(poster.path)
    assert page.status_code == 200
    assert "Номер мобильного телефона" in page.text
