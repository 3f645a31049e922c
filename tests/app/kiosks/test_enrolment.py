"""Enrolment: a one-time pairing code becomes a kiosk credential and rotation secret, once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from app.models import AuditEntry, Kiosk, KioskPairingCode
from app.services import kiosks
from app.services.personal_data import secret_hash
from tests import factories
from venue_kiosk import codes
from venue_kiosk.config import decode_secret


def _pair(now: datetime, **venue: Any) -> tuple[str, Any]:
    place = factories.venue(**venue)
    return kiosks.create_pairing_code(place.entrances[0].id, now - timedelta(minutes=5)), place


def test_a_pairing_code_enrols_a_kiosk_at_its_entrance(
    app: Flask, client: FlaskClient, db: Any, api_now: datetime
) -> None:
    code, place = _pair(api_now, name="Театр на Покровке")
    resp = client.post("/api/v1/kiosk/enrol", json={"pairing_code": code})
    assert resp.status_code == 201, resp.json
    body = resp.json
    assert body["venue_name"] == "Театр на Покровке" and body["entrance_name"] == "Main entrance"
    assert body["checkin_base_url"] == "http://checkin.test"
    assert datetime.fromisoformat(body["server_time"]) == api_now
    kiosk = db.session.get(Kiosk, body["kiosk_id"])
    assert kiosk.entrance_id == place.entrances[0].id and kiosk.enrolled_at == api_now
    # Only a hash of the credential is stored; the secret is stored encrypted for the /k/ pages.
    assert kiosk.credential_hash == secret_hash(body["credential"])
    assert body["credential"].encode() not in kiosk.credential_hash
    ring = app.extensions["keyring"]
    assert ring.decrypt(kiosk.rotation_secret_enc, context="kiosk") == body["rotation_secret"]
    secret = decode_secret(body["rotation_secret"])
    assert len(secret) == 32
    shown = codes.kiosk_code(secret, kiosk.id, api_now)
    assert codes.verify_kiosk_code(shown, secret, kiosk.id, api_now)
    used = db.session.scalar(select(KioskPairingCode).where(KioskPairingCode.code_hash == secret_hash(code)))
    assert used.used_at == api_now
    assert db.session.scalar(select(AuditEntry.action).where(AuditEntry.actor_id == kiosk.id)) == "kiosk_enrolled"


def test_a_code_typed_with_spaces_or_without_dashes_works(client: FlaskClient, db: Any, api_now: datetime) -> None:
    code, _ = _pair(api_now)
    resp = client.post("/api/v1/kiosk/enrol", json={"pairing_code": f" {code.replace('-', ' ')} "})
    assert resp.status_code == 201


def test_a_used_code_cannot_enrol_a_second_kiosk(client: FlaskClient, db: Any, api_now: datetime) -> None:
    code, _ = _pair(api_now)
    assert client.post("/api/v1/kiosk/enrol", json={"pairing_code": code}).status_code == 201
    again = client.post("/api/v1/kiosk/enrol", json={"pairing_code": code.replace("-", "")})
    assert again.status_code == 400
    assert again.json == {
        "error": "This pairing code was already used. Ask the venue operator for a new one.",
        "status": 400,
    }
    assert db.session.query(Kiosk).count() == 1


def test_an_expired_code_is_refused(client: FlaskClient, db: Any, api_now: datetime) -> None:
    place = factories.venue()
    code = kiosks.create_pairing_code(place.entrances[0].id, api_now - kiosks.PAIRING_CODE_TTL)
    resp = client.post("/api/v1/kiosk/enrol", json={"pairing_code": code})
    assert resp.status_code == 400 and "expired" in resp.json["error"]
    assert db.session.query(Kiosk).count() == 0


def test_unknown_and_malformed_codes_are_refused_clearly(client: FlaskClient, db: Any, api_now: datetime) -> None:
    unknown = client.post("/api/v1/kiosk/enrol", json={"pairing_code": "1111-2222-3333"})
    assert unknown.status_code == 404 and "not known" in unknown.json["error"]
    for junk in ("12", 123456789012, None, "abcd-efgh-ijkl", "1" * 200):
        resp = client.post("/api/v1/kiosk/enrol", json={"pairing_code": junk})
        assert resp.status_code == 400 and resp.json["field"] == "pairing_code", junk
    assert client.post("/api/v1/kiosk/enrol", data="not json").status_code == 400
    assert client.post("/api/v1/kiosk/enrol", json=["1111-2222-3333"]).status_code == 400


def test_guessing_codes_is_rate_limited_but_successful_enrolments_are_not_counted(
    client: FlaskClient, db: Any, api_now: datetime
) -> None:
    good = [_pair(api_now)[0] for _ in range(12)]
    for code in good:  # an installer enrolling a floor of tablets
        assert client.post("/api/v1/kiosk/enrol", json={"pairing_code": code}).status_code == 201
    statuses = [
        client.post("/api/v1/kiosk/enrol", json={"pairing_code": f"0000-0000-{n:04d}"}).status_code for n in range(11)
    ]
    assert statuses == [404] * 10 + [429]
    code, _ = _pair(api_now)
    blocked = client.post("/api/v1/kiosk/enrol", json={"pairing_code": code})
    assert blocked.status_code == 429 and blocked.json["status"] == 429


def test_an_archived_entrance_cannot_take_a_new_kiosk(client: FlaskClient, db: Any, api_now: datetime) -> None:
    code, place = _pair(api_now)
    place.archived_at = api_now - timedelta(minutes=1)
    db.session.flush()
    resp = client.post("/api/v1/kiosk/enrol", json={"pairing_code": code})
    assert resp.status_code == 400 and "no longer" in resp.json["error"]
