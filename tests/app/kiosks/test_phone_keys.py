"""A phone's Bluetooth key from the visitors' API checks its owner in at a kiosk, until it is replaced or turned off."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from app.models import Checkin, CheckinSource
from app.services import sign_in
from app.views import me_api
from tests import factories
from tests.app.kiosks.conftest import EnrolledKiosk
from venue_kiosk import codes


def _advertised(key: dict[str, Any], at: datetime) -> str:
    """What the phone app puts in its advertisement at `at`, as the kiosk forwards it (docs/kiosk-protocols.md)."""
    payload = codes.ble_token_payload(base64.b64decode(key["key"]), key["key_id"], at)
    return codes.parse_ble_payload(payload).text


def _heard(client: FlaskClient, kiosk: EnrolledKiosk, token: str, at: datetime) -> dict[str, Any]:
    item = {"client_id": str(uuid.uuid4()), "method": "ble", "token": token, "observed_at": at.isoformat()}
    answer = client.post("/api/v1/kiosk/checkins", json={"items": [item]}, headers=kiosk.headers)
    assert answer.status_code == 200, answer.json
    return answer.json["results"][0]


def test_the_key_a_phone_gets_checks_its_owner_in_until_it_is_replaced_or_turned_off(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": api_now - timedelta(minutes=30)}
    monkeypatch.setattr(me_api, "utcnow", lambda: clock["now"])
    visitor = factories.person()
    phone = {"Authorization": f"Bearer {sign_in.remember_device(visitor, api_now - timedelta(days=1))}"}
    db.session.commit()
    first = client.post("/api/v1/me/bluetooth-key", json={}, headers=phone).json

    heard = _heard(client, kiosk, _advertised(first, api_now - timedelta(minutes=20)), api_now - timedelta(minutes=20))
    assert heard["status"] == "accepted", heard
    visit = db.session.scalars(select(Checkin).where(Checkin.person_id == visitor.id)).one()
    assert (visit.source, visit.kiosk_id) == (CheckinSource.BLE, kiosk.id)

    # The phone asks for a new key ten minutes ago; its old key still vouches for what was heard before.
    clock["now"] = api_now - timedelta(minutes=10)
    second = client.post("/api/v1/me/bluetooth-key", json={"replace": True}, headers=phone).json
    assert second["key_id"] != first["key_id"]
    late = _heard(client, kiosk, _advertised(first, api_now - timedelta(minutes=15)), api_now - timedelta(minutes=15))
    assert late["status"] == "accepted", late
    stale = _heard(client, kiosk, _advertised(first, api_now - timedelta(minutes=5)), api_now - timedelta(minutes=5))
    assert stale == {**stale, "status": "rejected", "reason": "The code is not genuine or no longer valid."}
    fresh = _heard(client, kiosk, _advertised(second, api_now - timedelta(minutes=5)), api_now - timedelta(minutes=5))
    assert fresh["status"] == "accepted", fresh

    # Turned off from the phone: nothing it advertises afterwards checks anyone in.
    clock["now"] = api_now - timedelta(minutes=2)
    assert client.post("/api/v1/me/bluetooth-key/revoke", json={}, headers=phone).json == {"revoked": 1}
    after = _heard(client, kiosk, _advertised(second, api_now), api_now)
    assert after["status"] == "rejected"
