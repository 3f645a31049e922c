"""Heartbeats keep the server's view of each kiosk current; the CLI pairs, lists and revokes kiosks."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from flask.testing import FlaskClient, FlaskCliRunner

from app.models import Kiosk
from app.services import kiosk_sync
from tests import factories
from tests.app.kiosks.conftest import EnrolledKiosk

URL = "/api/v1/kiosk/heartbeat"


def test_a_heartbeat_records_when_and_how_the_kiosk_is(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    body = {
        "sent_at": (api_now - timedelta(seconds=93)).isoformat(),
        "queue_length": 12,
        "ble_ok": False,
        "scanner_ok": True,
        "version": "0.1.0",
    }
    resp = client.post(URL, json=body, headers=kiosk.headers)
    assert resp.status_code == 200
    assert datetime.fromisoformat(resp.json["server_time"]) == api_now
    row = db.session.get(Kiosk, kiosk.id)
    db.session.refresh(row)
    assert row.last_seen_at == api_now
    assert json.loads(row.last_status) == {
        "queue_length": 12,
        "ble_ok": False,
        "scanner_ok": True,
        "version": "0.1.0",
        "clock_offset_s": 93.0,
    }


def test_a_bad_heartbeat_is_refused_and_a_revoked_kiosk_gets_401(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    for bad in (
        {"queue_length": -1},
        {"queue_length": "7"},
        {"ble_ok": "yes"},
        {"version": "x" * 41},
        {"sent_at": "now"},
    ):
        resp = client.post(URL, json=bad, headers=kiosk.headers)
        assert resp.status_code == 400 and resp.json["field"] == next(iter(bad)), bad
    kiosk_sync.revoke(kiosk.id, api_now)
    db.session.commit()
    assert client.post(URL, json={}, headers=kiosk.headers).status_code == 401


def test_the_cli_pairs_lists_and_revokes_kiosks(runner: FlaskCliRunner, client: FlaskClient, db: Any) -> None:
    venue = factories.venue(name="Театр на Покровке")
    db.session.commit()
    paired = runner.invoke(args=["kiosks", "pair", str(venue.entrances[0].id)])
    assert paired.exit_code == 0, paired.output
    code = re.search(r"\d{4}-\d{4}-\d{4}", paired.output).group(0)
    assert "Театр на Покровке — Main entrance" in paired.output
    enrolled = client.post("/api/v1/kiosk/enrol", json={"pairing_code": code})
    assert enrolled.status_code == 201
    kiosk_id = enrolled.json["kiosk_id"]
    listed = runner.invoke(args=["kiosks", "list"])
    assert re.search(rf"^{kiosk_id}\tТеатр на Покровке — Main entrance\tactive\tlast seen ", listed.output, re.M)
    revoked = runner.invoke(args=["kiosks", "revoke", str(kiosk_id)])
    assert revoked.exit_code == 0 and f"Kiosk {kiosk_id} revoked" in revoked.output
    assert "\trevoked " in runner.invoke(args=["kiosks", "list"]).output
    headers = {"Authorization": f"Bearer {enrolled.json['credential']}"}
    assert client.post(URL, json={}, headers=headers).status_code == 401


def test_the_cli_explains_unknown_ids(runner: FlaskCliRunner, db: Any) -> None:
    assert "No entrance with id 999999" in runner.invoke(args=["kiosks", "pair", "999999"]).output
    missing = runner.invoke(args=["kiosks", "revoke", "999999"])
    assert missing.exit_code == 1 and "No kiosk with id 999999" in missing.output
