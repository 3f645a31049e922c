"""The visitor's own account in the JSON API: notices, corrections, devices, Bluetooth key, personal code, erase."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.models import Checkin, Notice, NoticeKind, Person, PersonalCodeKey, RememberedDevice, utcnow
from app.services import personal_codes
from app.views import me_api
from venue_kiosk import codes

from .conftest import Poster
from .test_api import PHONE, device_token

OTHER_PHONE = "+79169100002"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _person(db: Any, phone: str = PHONE) -> Person:
    from app.services import people

    found = people.find_by_phone(phone)
    assert found is not None
    return found


def _count(db: Any, model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)))


def test_account_lists_devices_masks_the_number_and_marks_this_device(client: FlaskClient, db: Any) -> None:
    first, second = device_token(client, db), device_token(client, db)
    account = client.get("/api/v1/me", headers=_auth(second))
    assert account.status_code == 200
    assert account.json["phone"] == "+7916***0001"
    assert PHONE not in account.get_data(as_text=True)
    assert [d["this_device"] for d in account.json["devices"]].count(True) == 1
    assert len(account.json["devices"]) == 2
    assert account.json["bluetooth_key_issued_at"] is None
    assert client.get("/api/v1/me", headers=_auth(first)).json["devices"] != account.json["devices"]
    assert client.get("/api/v1/me").status_code == 401


def test_notices_are_listed_in_either_language_and_marked_read(client: FlaskClient, db: Any, now: datetime) -> None:
    token = device_token(client, db)
    person = _person(db)
    notice = Notice(
        person_id=person.id, kind=NoticeKind.EXPOSURE, risk="high", body_ru="Вы были рядом", body_en="You were near",
        created_at=now,
    )  # fmt: skip
    db.session.add(notice)
    db.session.commit()
    listed = client.get("/api/v1/me/notices", headers=_auth(token))
    assert listed.status_code == 200
    assert [(n["id"], n["text"], n["read_at"]) for n in listed.json["notices"]] == [(notice.id, "Вы были рядом", None)]
    assert client.get("/api/v1/me/notices?lang=en", headers=_auth(token)).json["notices"][0]["text"] == "You were near"
    bad_lang = client.get("/api/v1/me/notices?lang=fr", headers=_auth(token))
    assert bad_lang.status_code == 400 and bad_lang.json["field"] == "lang"
    assert client.post(f"/api/v1/me/notices/{notice.id}/read", headers=_auth(token)).status_code == 415
    read = client.post(f"/api/v1/me/notices/{notice.id}/read", json={}, headers=_auth(token))
    assert read.status_code == 200 and read.json["notice"]["read_at"]
    # Someone else's notice is "not found", whether it exists or not.
    stranger = device_token(client, db, OTHER_PHONE)
    assert client.post(f"/api/v1/me/notices/{notice.id}/read", json={}, headers=_auth(stranger)).status_code == 404
    assert client.get("/api/v1/me/notices", headers=_auth(stranger)).json["notices"] == []


def test_a_visit_is_corrected_with_times_that_carry_their_offset(client: FlaskClient, db: Any, poster: Poster) -> None:
    token = device_token(client, db)
    made = client.post("/api/v1/checkins", json={"poster_token": poster.token}, headers=_auth(token))
    visit_id = made.json["checkin"]["id"]
    start = datetime.fromisoformat(made.json["checkin"]["checked_in_at"])
    url = f"/api/v1/me/visits/{visit_id}/correct"
    earlier = (start - timedelta(minutes=40)).astimezone(UTC).replace(microsecond=0)
    fixed = {"checked_in_at": earlier.isoformat(), "checked_out_at": (earlier + timedelta(minutes=30)).isoformat()}
    refused = {
        "naive": ({**fixed, "checked_in_at": earlier.replace(tzinfo=None).isoformat()}, "UTC offset"),
        "junk": ({**fixed, "checked_out_at": "x" * 10_000}, "ISO 8601"),
        "not a time": ({**fixed, "checked_out_at": "half past two"}, "ISO 8601"),
        "number": ({**fixed, "checked_in_at": 1_700_000_000}, "ISO 8601"),
        "missing": ({"checked_in_at": fixed["checked_in_at"]}, "ISO 8601"),
        "future": ({**fixed, "checked_out_at": (utcnow() + timedelta(hours=2)).isoformat()}, ""),
        "backwards": ({"checked_in_at": fixed["checked_out_at"], "checked_out_at": fixed["checked_in_at"]}, ""),
    }
    for name, (body, words) in refused.items():
        answer = client.post(url, json=body, headers=_auth(token))
        assert answer.status_code == 400, (name, answer.json)
        assert words in answer.json["error"], (name, answer.json)
    visit = db.session.get(Checkin, visit_id)
    db.session.refresh(visit)
    assert visit.checked_out_at is None and visit.checked_in_at == start  # nothing half-written
    corrected = client.post(url, json=fixed, headers=_auth(token))
    assert corrected.status_code == 200, corrected.json
    assert datetime.fromisoformat(corrected.json["checkin"]["checked_in_at"]) == earlier
    assert datetime.fromisoformat(corrected.json["checkin"]["checked_out_at"]) == earlier + timedelta(minutes=30)
    # Moscow time with its offset is the same moment.
    zone = ZoneInfo(poster.venue.timezone)
    moscow = {k: datetime.fromisoformat(v).astimezone(zone).isoformat() for k, v in fixed.items()}
    assert client.post(url, json=moscow, headers=_auth(token)).status_code == 200
    stranger = device_token(client, db, OTHER_PHONE)
    assert client.post(url, json=fixed, headers=_auth(stranger)).status_code == 404
    assert client.post("/api/v1/me/visits/99999999/correct", json=fixed, headers=_auth(token)).status_code == 404


def test_a_device_is_signed_out_and_its_token_stops_working(client: FlaskClient, db: Any) -> None:
    phone_a, phone_b = device_token(client, db), device_token(client, db)
    devices = client.get("/api/v1/me/devices", headers=_auth(phone_a)).json["devices"]
    other = next(d for d in devices if not d["this_device"])
    answer = client.post(f"/api/v1/me/devices/{other['id']}/revoke", json={}, headers=_auth(phone_a))
    assert answer.status_code == 200 and answer.json["device"]["revoked_at"]
    assert client.get("/api/v1/me", headers=_auth(phone_b)).status_code == 401
    assert client.get("/api/v1/me", headers=_auth(phone_a)).status_code == 200
    stranger = device_token(client, db, OTHER_PHONE)
    mine = client.get("/api/v1/me/devices", headers=_auth(stranger)).json["devices"][0]["id"]
    assert client.post(f"/api/v1/me/devices/{mine}/revoke", json={}, headers=_auth(phone_a)).status_code == 404
    assert db.session.get(RememberedDevice, mine).revoked_at is None


def test_the_bluetooth_key_is_kept_while_young_then_replaced(
    client: FlaskClient, db: Any, monkeypatch: pytest.MonkeyPatch, now: datetime
) -> None:
    monkeypatch.setattr(me_api, "utcnow", lambda: now)
    token = device_token(client, db)
    url = "/api/v1/me/bluetooth-key"
    first = client.post(url, json={}, headers=_auth(token))
    assert first.status_code == 201, first.json
    assert len(base64.b64decode(first.json["key"])) == 32
    assert first.json["service_uuid"] == codes.BLE_SERVICE_UUID
    assert datetime.fromisoformat(first.json["replace_after"]) == now + timedelta(hours=24)
    again = client.post(url, json={}, headers=_auth(token))
    assert again.status_code == 200
    assert (again.json["key_id"], again.json["key"]) == (first.json["key_id"], first.json["key"])
    assert client.post(url, json={"replace": "yes"}, headers=_auth(token)).status_code == 400
    replaced = client.post(url, json={"replace": True}, headers=_auth(token))
    assert replaced.status_code == 201 and replaced.json["key_id"] != first.json["key_id"]
    assert db.session.get(PersonalCodeKey, first.json["key_id"]).revoked_at == now
    # A day later the phone gets a new key without asking for one.
    monkeypatch.setattr(me_api, "utcnow", lambda: now + timedelta(hours=24))
    aged = client.post(url, json={}, headers=_auth(token))
    assert aged.status_code == 201 and aged.json["key_id"] != replaced.json["key_id"]
    assert client.get("/api/v1/me", headers=_auth(token)).json["bluetooth_key_issued_at"]
    off = client.post(f"{url}/revoke", json={}, headers=_auth(token))
    assert off.json == {"revoked": 1}
    assert client.get("/api/v1/me", headers=_auth(token)).json["bluetooth_key_issued_at"] is None
    # The personal QR's key is a different key and stays.
    assert _count(db, PersonalCodeKey) == 3


def test_a_runaway_app_cannot_mint_bluetooth_keys_without_end(client: FlaskClient, db: Any) -> None:
    token, other = device_token(client, db), device_token(client, db, OTHER_PHONE)
    answers = [client.post("/api/v1/me/bluetooth-key", json={"replace": True}, headers=_auth(token)) for _ in range(31)]
    assert [a.status_code for a in answers] == [201] * 30 + [429]
    assert _count(db, PersonalCodeKey) == 30
    # Counted per device: another phone is not held back.
    assert client.post("/api/v1/me/bluetooth-key", json={}, headers=_auth(other)).status_code == 201


def test_the_personal_code_verifies_as_its_owner(client: FlaskClient, db: Any) -> None:
    token = device_token(client, db)
    answer = client.get("/api/v1/me/personal-code", headers=_auth(token))
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    valid_from, next_at = (datetime.fromisoformat(answer.json[k]) for k in ("valid_from", "next_at"))
    assert next_at - valid_from == timedelta(seconds=codes.PERSONAL_STEP_S)
    owner = personal_codes.person_for_qr_code(answer.json["code"], valid_from + timedelta(seconds=1))
    assert owner is not None and owner.id == _person(db).id


def test_erasing_needs_the_confirmation_then_removes_the_account(client: FlaskClient, db: Any, poster: Poster) -> None:
    token = device_token(client, db)
    client.post("/api/v1/checkins", json={"poster_token": poster.token}, headers=_auth(token))
    for body in ({}, {"confirm": True}, {"confirm": "yes"}, {"confirm": "x" * 10_000}):
        refused = client.post("/api/v1/me/erase", json=body, headers=_auth(token))
        assert refused.status_code == 400 and "erase my data" in refused.json["error"]
    assert _count(db, Checkin) == 1
    erased = client.post("/api/v1/me/erase", json={"confirm": "erase my data"}, headers=_auth(token))
    assert erased.status_code == 200 and erased.json == {"erased": True, "case_record_kept": False}
    assert _count(db, Checkin) == 0 and _count(db, Person) == 0
    assert client.get("/api/v1/me", headers=_auth(token)).status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/me/notices/1/read"),
        ("POST", "/api/v1/me/notices/99999999999999999999999/read"),
        ("POST", "/api/v1/me/notices/2147483648/read"),
        ("POST", "/api/v1/me/visits/3000000000/correct"),
        ("POST", "/api/v1/me/devices/2147483648/revoke"),
        ("POST", "/api/v1/me/visits/99999999999999999999999/correct"),
        ("POST", "/api/v1/me/devices/99999999999999999999999/revoke"),
    ],
)
def test_odd_paths_get_a_clear_answer(client: FlaskClient, db: Any, method: str, path: str) -> None:
    token = device_token(client, db)
    answer = client.open(path, method=method, json={}, headers=_auth(token))
    assert answer.status_code in (404, 405), answer.status_code


def test_a_device_token_older_than_the_remember_period_is_refused_with_a_message(
    client: FlaskClient, db: Any, app: Any
) -> None:
    from app.services import sign_in

    days = int(app.config["DEVICE_COOKIE_DAYS"])
    from app.services import people

    person, _ = people.get_or_create_by_phone(OTHER_PHONE, utcnow())
    token = sign_in.remember_device(person, utcnow() - timedelta(days=days + 30))
    db.session.commit()
    response = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "no longer remembered" in response.text
