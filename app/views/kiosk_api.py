"""The kiosk tablets' API: enrolment, check-in batches, heartbeats (docs/kiosk-protocols.md, section 4)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from app.errors import ValidationError
from app.extensions import limiter
from app.models import utcnow
from app.services import kiosk_sync

bp = Blueprint("kiosk_api", __name__, url_prefix="/api/v1/kiosk")


def _json_object() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("Send a JSON object.")
    return body


@bp.post("/enrol")
# Only refused codes count, so an installer enrolling a floor of tablets is never slowed down.
@limiter.limit("10 per minute;60 per hour", deduct_when=lambda response: response.status_code != 201)
def enrol() -> ResponseReturnValue:
    now = utcnow()
    enrolment = kiosk_sync.enrol(_json_object().get("pairing_code"), now)
    return jsonify(
        kiosk_id=enrolment.kiosk.id,
        credential=enrolment.credential,
        rotation_secret=enrolment.rotation_secret,
        venue_name=enrolment.venue_name,
        entrance_name=enrolment.entrance_name,
        checkin_base_url=current_app.config["PUBLIC_BASE_URL"].rstrip("/"),
        server_time=now.isoformat(),
    ), 201


@bp.post("/checkins")
def checkins() -> ResponseReturnValue:
    ctx = kiosk_sync.authenticate(request.headers.get("Authorization"))
    now = utcnow()
    results = kiosk_sync.ingest_checkins(
        ctx,
        _json_object().get("items"),
        now,
        retention_days=int(current_app.config["RETENTION_DAYS"]),
    )
    # Serialised directly (no key sorting or pretty-printing): a batch answers up to 500 results.
    body = {"server_time": now.isoformat(), "results": [r.as_json() for r in results]}
    return current_app.response_class(json.dumps(body, separators=(",", ":")), mimetype="application/json")


@bp.post("/heartbeat")
def heartbeat() -> ResponseReturnValue:
    ctx = kiosk_sync.authenticate(request.headers.get("Authorization"))
    now = utcnow()
    kiosk_sync.record_heartbeat(ctx, _json_object(), now)
    return jsonify(server_time=now.isoformat())
