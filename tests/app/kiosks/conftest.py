"""Fixtures for the kiosk API tests: an enrolled kiosk, visitors' codes, a frozen API clock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from app.extensions import limiter
from app.models import Entrance, Person, Venue
from app.services import kiosk_sync, kiosks, personal_codes
from app.views import kiosk_api
from tests import factories
from venue_kiosk import codes


@pytest.fixture(autouse=True)
def _fresh_rate_limits(app: Flask) -> None:
    # The limiter's counters live for the whole session; each test starts from zero.
    with app.app_context():
        limiter.reset()


@pytest.fixture
def api_now(monkeypatch: pytest.MonkeyPatch, now: datetime) -> datetime:
    """The kiosk API's clock, frozen at the `now` fixture."""
    monkeypatch.setattr(kiosk_api, "utcnow", lambda: now)
    return now


@dataclass
class EnrolledKiosk:
    id: int
    credential: str
    rotation_secret: str
    venue: Venue
    entrance: Entrance

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}


def enrol_kiosk(venue: Venue, at: datetime) -> EnrolledKiosk:
    code = kiosks.create_pairing_code(venue.entrances[0].id, at)
    enrolment = kiosk_sync.enrol(code, at)
    return EnrolledKiosk(enrolment.kiosk.id, enrolment.credential, enrolment.rotation_secret, venue, venue.entrances[0])


@pytest.fixture
def kiosk(db: Any, api_now: datetime) -> EnrolledKiosk:
    """A kiosk enrolled an hour ago at a venue whose visits last 60 minutes (committed: a 4xx answer
    rolls the request's session back, and the test's setup must survive that)."""
    enrolled = enrol_kiosk(factories.venue(name="Министерство, корпус 1"), api_now - timedelta(hours=1))
    db.session.commit()
    return enrolled


def scanner_item(person: Person, at: datetime, *, token_at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """What a kiosk sends after its scanner read the person's personal QR (made at `token_at`)."""
    key = personal_codes.active_key(person, "qr", at)
    token = codes.personal_code(personal_codes.key_bytes(key), key.id, token_at or at)
    return {
        "client_id": str(uuid.uuid4()),
        "method": "kiosk_scanner",
        "token": token,
        "observed_at": at.isoformat(),
    } | extra


def ble_item(person: Person, at: datetime, *, token_at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    """What a kiosk sends after its Bluetooth scanner picked up the person's phone."""
    key = personal_codes.active_key(person, "ble", at)
    payload = codes.ble_token_payload(personal_codes.key_bytes(key), key.id, token_at or at)
    token = codes.parse_ble_payload(payload).text
    return {"client_id": str(uuid.uuid4()), "method": "ble", "token": token, "observed_at": at.isoformat()} | extra
