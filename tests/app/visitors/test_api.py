"""The visitors' JSON API: code, confirm, check in, check out, my visits; JSON-only writes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.models import Checkin, CheckinSource, Entrance, LoginCode, utcnow
from venue_kiosk import codes

from .conftest import Poster, last_code_sent_to
from .test_bad_input import kiosk_for

PHONE = "+79169100001"


def device_token(client: FlaskClient, db: Any, phone: str = PHONE) -> str:
    asked = client.post("/api/v1/visitors/code", json={"phone": phone})
    assert asked.status_code == 202, asked.json
    confirmed = client.post(
        "/api/v1/visitors/code/confirm",
        json={"request_id": asked.json["request_id"], "code": last_code_sent_to(db, phone)},
    )
    assert confirmed.status_code == 200, confirmed.json
    return confirmed.json["device_token"]


def test_sign_in_check_in_continue_and_check_out(client: FlaskClient, db: Any, poster: Poster) -> None:
    auth = {"Authorization": f"Bearer {device_token(client, db)}"}
    first = client.post("/api/v1/checkins", json={"poster_token": poster.token, "party_size": 2}, headers=auth)
    assert first.status_code == 201, first.json
    assert first.json["status"] == "created"
    assert first.json["checkin"]["venue"]["name"] == "Кафе «Тест»"
    again = client.post("/api/v1/checkins", json={"poster_token": poster.token}, headers=auth)
    assert again.status_code == 200
    assert again.json["checkin"]["id"] == first.json["checkin"]["id"]
    mine = client.get("/api/v1/me/visits", headers=auth)
    assert [v["id"] for v in mine.json["visits"]] == [first.json["checkin"]["id"]]
    assert mine.json["visits"][0]["deleted_after"]
    out = client.post("/api/v1/checkins/current/checkout", json={}, headers=auth)
    assert out.status_code == 200 and out.json["checkin"]["checkout_reason"] == "visitor"
    assert client.post("/api/v1/checkins/current/checkout", json={}, headers=auth).status_code == 404


def test_writes_must_be_json(client: FlaskClient, db: Any, poster: Poster) -> None:
    auth = {"Authorization": f"Bearer {device_token(client, db)}"}
    form = client.post("/api/v1/checkins", data={"poster_token": poster.token}, headers=auth)
    assert form.status_code == 415
    assert client.post("/api/v1/visitors/code", data={"phone": PHONE}).status_code == 415
    assert db.session.scalar(select(func.count()).select_from(Checkin)) == 0


def test_no_or_bad_token_is_401(client: FlaskClient, poster: Poster) -> None:
    assert client.post("/api/v1/checkins", json={"poster_token": poster.token}).status_code == 401
    bad = client.post("/api/v1/checkins", json={"poster_token": poster.token}, headers={"Authorization": "Bearer x"})
    assert bad.status_code == 401
    assert bad.json["error"].startswith("Sign in first")


def test_wrong_code_counts_and_forged_request_id_is_404(client: FlaskClient, db: Any) -> None:
    asked = client.post("/api/v1/visitors/code", json={"phone": PHONE})
    right = last_code_sent_to(db, PHONE)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    refused = client.post("/api/v1/visitors/code/confirm", json={"request_id": asked.json["request_id"], "code": wrong})
    assert refused.status_code == 400
    assert db.session.scalar(select(LoginCode)).attempts == 1
    forged = client.post("/api/v1/visitors/code/confirm", json={"request_id": "1.forged", "code": right})
    assert forged.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"poster_token": "A" * 10_000},
        {"poster_token": "AAAA"},
        {"poster_token": 12},
        {"party_size": 2},
        [1, 2],
        "x",
    ],
)
def test_bad_check_in_bodies_are_clear_4xx(client: FlaskClient, db: Any, poster: Poster, body: Any) -> None:
    auth = {"Authorization": f"Bearer {device_token(client, db)}"}
    response = client.post("/api/v1/checkins", json=body, headers=auth)
    assert 400 <= response.status_code < 500
    assert response.json["error"]
    assert db.session.scalar(select(func.count()).select_from(Checkin)) == 0


@pytest.mark.parametrize(
    "extra",
    [
        {"party_size": 0},
        {"party_size": "3"},
        {"party_size": True},
        {"companion_phones": "+79160000000"},
        {"companion_phones": ["x" * 10_000]},
        {"party_size": 2, "companion_phones": ["+79160000001", "+79160000002"]},
    ],
)
def test_bad_parties_are_400(client: FlaskClient, db: Any, poster: Poster, extra: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {device_token(client, db)}"}
    response = client.post("/api/v1/checkins", json={"poster_token": poster.token, **extra}, headers=auth)
    assert response.status_code == 400, response.json
    assert db.session.scalar(select(func.count()).select_from(Checkin)) == 0


def test_openapi_documents_the_visitor_paths(client: FlaskClient) -> None:
    spec = client.get("/api/v1/openapi.json").json
    for path in (
        "/api/v1/visitors/code",
        "/api/v1/visitors/code/confirm",
        "/api/v1/checkins",
        "/api/v1/checkins/current/checkout",
        "/api/v1/me/visits",
    ):
        assert path in spec["paths"]
    assert "415" in spec["paths"]["/api/v1/checkins"]["post"]["responses"]


def test_a_kiosk_screen_code_at_a_closed_entrance_is_refused_like_its_poster(
    client: FlaskClient, db: Any, poster: Poster
) -> None:
    kiosk, secret = kiosk_for(db, poster)
    entrance = db.session.get(Entrance, kiosk.entrance_id)
    entrance.archived_at = utcnow() - timedelta(minutes=5)
    db.session.commit()
    auth = {"Authorization": f"Bearer {device_token(client, db)}"}
    answer = client.post(
        "/api/v1/checkins", json={"kiosk_code": codes.kiosk_code(secret, kiosk.id, utcnow())}, headers=auth
    )
    assert answer.status_code == 410 and "no longer takes check-ins" in answer.json["error"]
    assert db.session.scalar(select(func.count()).select_from(Checkin)) == 0


def test_a_kiosk_screen_code_checks_in_at_the_kiosks_entrance(client: FlaskClient, db: Any, poster: Poster) -> None:
    kiosk, secret = kiosk_for(db, poster)
    db.session.commit()
    auth = {"Authorization": f"Bearer {device_token(client, db)}"}
    fresh = codes.kiosk_code(secret, kiosk.id, utcnow())
    refused = {
        "stale": ({"kiosk_code": codes.kiosk_code(secret, kiosk.id, utcnow() - timedelta(minutes=5))}, 410),
        "forged": ({"kiosk_code": codes.kiosk_code(b"another-secret", kiosk.id, utcnow())}, 410),
        "no such kiosk": ({"kiosk_code": codes.kiosk_code(secret, 2**31, utcnow())}, 410),
        "garbage": ({"kiosk_code": "x" * 10_000}, 400),
        "not text": ({"kiosk_code": 12345}, 400),
        "both": ({"kiosk_code": fresh, "poster_token": poster.token}, 400),
        "party of zero": ({"kiosk_code": fresh, "party_size": 0}, 400),
    }
    for name, (body, status) in refused.items():
        answer = client.post("/api/v1/checkins", json=body, headers=auth)
        assert answer.status_code == status, (name, answer.json)
        assert answer.json["error"], name
    assert db.session.scalar(select(func.count()).select_from(Checkin)) == 0
    made = client.post("/api/v1/checkins", json={"kiosk_code": fresh, "party_size": 2}, headers=auth)
    assert made.status_code == 201, made.json
    visit = db.session.get(Checkin, made.json["checkin"]["id"])
    assert (visit.source, visit.kiosk_id, visit.entrance_id, visit.party_size) == (
        CheckinSource.KIOSK_QR, kiosk.id, kiosk.entrance_id, 2,
    )  # fmt: skip
    again = client.post("/api/v1/checkins", json={"kiosk_code": fresh}, headers=auth)
    assert again.status_code == 200 and again.json["checkin"]["id"] == visit.id
    assert client.post("/api/v1/checkins", json={"kiosk_code": fresh}).status_code == 401


def test_code_requests_are_limited_per_app_device(
    client: FlaskClient, app: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The address limit stays above what is sent here, so each refusal is the device's.
    monkeypatch.setitem(app.config, "OTP_PER_DEVICE_PER_HOUR", 2)
    monkeypatch.setitem(app.config, "OTP_PER_ADDRESS_PER_HOUR", 50)

    def ask(i: int, **extra: str) -> int:
        return client.post("/api/v1/visitors/code", json={"phone": f"+7916910{i:04d}", **extra}).status_code

    assert [ask(i, device_id="install-aaaa-0001") for i in range(3)] == [202, 202, 429]
    refused = client.post(
        "/api/v1/visitors/code",
        json={"phone": "+79169107777", "device_id": "install-aaaa-0001"},
        headers={"Accept-Language": "ru"},
    )
    assert refused.json["error"] == "Слишком много попыток. Попробуйте снова через 60 мин."
    assert ask(3, device_id="install-bbbb-0002") == 202  # another installation is not held back
    # Without a device_id the session cookie is the device: this client's, once, then a fresh client's.
    assert [ask(i) for i in range(4, 7)] == [202, 202, 429]
    assert app.test_client().post("/api/v1/visitors/code", json={"phone": "+79169109999"}).status_code == 202
    # A malformed id is refused before any code goes out.
    for junk in ("x y", "short", "x" * 10_000, 12):
        bad = app.test_client().post("/api/v1/visitors/code", json={"phone": "+79169108888", "device_id": junk})
        assert bad.status_code == 400 and bad.json["field"] == "device_id", bad.json
    assert db.session.scalar(select(func.count()).select_from(LoginCode)) == 6


@pytest.mark.parametrize("party", [1, 3])
def test_a_repeat_check_in_that_would_outlast_a_day_begins_a_new_visit(
    client: FlaskClient, db: Any, poster: Poster, monkeypatch: pytest.MonkeyPatch, party: int
) -> None:
    from app.views import visitors_api

    auth = {"Authorization": f"Bearer {device_token(client, db)}"}
    start = utcnow()
    poster.venue.default_stay_minutes = 600
    db.session.commit()
    monkeypatch.setattr(visitors_api, "utcnow", lambda: start)
    first = client.post("/api/v1/checkins", json={"poster_token": poster.token, "party_size": party}, headers=auth)
    assert first.status_code == 201
    later = start + timedelta(hours=9)
    monkeypatch.setattr(visitors_api, "utcnow", lambda: later)
    assert client.post("/api/v1/checkins", json={"poster_token": poster.token}, headers=auth).status_code == 200
    # A party's visit takes the general path (its companions move along); a visitor alone stays on the fast one.
    latest = start + timedelta(hours=18)
    monkeypatch.setattr(visitors_api, "utcnow", lambda: latest)
    again = client.post("/api/v1/checkins", json={"poster_token": poster.token}, headers=auth)
    assert again.status_code == 201, again.json
    assert again.json["ended"]["id"] == first.json["checkin"]["id"]
    assert again.json["ended"]["checkout_reason"] == "next_checkin"
    assert again.json["checkin"]["party_size"] == party
    rows = db.session.scalars(select(Checkin).order_by(Checkin.id)).all()
    assert [(r.checked_in_at, r.checked_out_at, r.party_size, len(r.companions)) for r in rows] == [
        (start, latest, party, party - 1),
        (latest, None, party, party - 1),
    ]
