"""The visitor's own account in the JSON API: notices, corrections, devices, Bluetooth key, personal code, erase.

The same operations as the "my visits" page (app/views/visitors/visits.py), for a city app. Authenticated
and JSON-only like the rest of app/views/visitors_api.py.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request

from app.errors import ValidationError
from app.extensions import limiter
from app.models import Notice, Person, RememberedDevice, utcnow
from app.services import audit, checkins, notices, people, personal_codes, sign_in
from app.services.personal_data import secret_hash
from app.views.visitors import device_token_from_cookie
from app.views.visitors_api import api_person, bearer_token, json_body, visit_json
from venue_kiosk import codes

bp = Blueprint("me_api", __name__, url_prefix="/api/v1/me")

ERASE_CONFIRMATION = "erase my data"
MAX_TIME_CHARS = 40


@bp.get("")
def profile() -> Any:
    now = utcnow()
    person = api_person(now)
    return jsonify(
        phone=people.masked_phone(person),
        preferred_language=person.preferred_language,
        retention_days=int(current_app.config["RETENTION_DAYS"]),
        bluetooth_key_issued_at=_iso(personal_codes.ble_key_issued_at(person)),
        devices=_devices_json(person),
        data_access=[
            {"at": e.at.isoformat(), "actor_kind": e.actor_kind, "actor_id": e.actor_id, "action": e.action}
            for e in audit.entries_about(person.id)
        ],
    )


# --- notices ---------------------------------------------------------------------------------------


@bp.get("/notices")
def notice_list() -> Any:
    now = utcnow()
    person = api_person(now)
    lang = request.args.get("lang", person.preferred_language)
    if lang not in ("ru", "en"):
        raise ValidationError("lang must be ru or en.", field="lang")
    return jsonify(notices=[_notice_json(n, lang) for n in notices.inbox_of(person)])


@bp.post("/notices/<int:notice_id>/read")
def notice_read(notice_id: int) -> Any:
    now = utcnow()
    json_body()
    person = api_person(now)
    notice = notices.mark_read(person, notice_id, now)
    return jsonify(notice=_notice_json(notice, person.preferred_language))


def _notice_json(notice: Notice, lang: str) -> dict[str, Any]:
    return {
        "id": notice.id,
        "kind": notice.kind.value,
        "risk": notice.risk,
        "text": notice.body_en if lang == "en" else notice.body_ru,
        "language": lang,
        "visit_id": notice.checkin_id,
        "created_at": notice.created_at.isoformat(),
        "read_at": _iso(notice.read_at),
        "retracted_at": _iso(notice.retracted_at),
    }


# --- visits ----------------------------------------------------------------------------------------


@bp.post("/visits/<int:checkin_id>/correct")
def visit_correct(checkin_id: int) -> Any:
    now = utcnow()
    body = json_body()
    person = api_person(now)
    checkins.own_visit(person, checkin_id)  # someone else's visit is "not found" before its times are read
    visit = checkins.correct_times(
        person,
        checkin_id,
        _moment(body, "checked_in_at"),
        _moment(body, "checked_out_at"),
        now,
        retention_days=int(current_app.config["RETENTION_DAYS"]),
    )
    return jsonify(checkin=visit_json(visit))


def _moment(body: dict[str, Any], name: str) -> datetime:
    """An ISO 8601 time with its UTC offset: a time without one could mean any zone."""
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TIME_CHARS:
        raise ValidationError(f"'{name}' must be an ISO 8601 time such as 2026-11-20T14:30:00+03:00.", field=name)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"'{name}' is not an ISO 8601 time such as 2026-11-20T14:30:00+03:00.", field=name
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(f"'{name}' needs a UTC offset (…+03:00 or …Z).", field=name)
    return moment


# --- devices ---------------------------------------------------------------------------------------


@bp.get("/devices")
def devices() -> Any:
    person = api_person(utcnow())
    return jsonify(devices=_devices_json(person))


@bp.post("/devices/<int:device_id>/revoke")
def device_revoke(device_id: int) -> Any:
    now = utcnow()
    json_body()
    device = sign_in.revoke_device(api_person(now), device_id, now)
    return jsonify(device=_device_json(device, _this_device_hash()))


def _devices_json(person: Person) -> list[dict[str, Any]]:
    this_device_hash = _this_device_hash()
    return [_device_json(d, this_device_hash) for d in sign_in.devices_of(person)]


def _device_json(device: RememberedDevice, this_device_hash: bytes | None) -> dict[str, Any]:
    return {
        "id": device.id,
        "this_device": device.token_hash == this_device_hash,
        "created_at": device.created_at.isoformat(),
        "last_used_at": _iso(device.last_used_at),
        "revoked_at": _iso(device.revoked_at),
    }


def _this_device_hash() -> bytes | None:
    token = bearer_token()
    if token is None:
        token = device_token_from_cookie()
    return secret_hash(token) if token else None


# --- Bluetooth key and personal code -----------------------------------------------------------------


def _caller_key() -> str:
    """Rate-limit key: the caller's device (token or cookie), as a keyed hash."""
    return (_this_device_hash() or b"").hex() or (request.remote_addr or "")


@bp.post("/bluetooth-key")
# A phone needs a key a day; each replacement is a new row, so a runaway app must not mint thousands.
@limiter.limit("30 per hour", key_func=_caller_key, scope="bluetooth-key")
def bluetooth_key() -> Any:
    """The phone's key for Bluetooth check-in tokens (docs/kiosk-protocols.md, section 3)."""
    now = utcnow()
    body = json_body()
    replace = body.get("replace", False)
    if not isinstance(replace, bool):
        raise ValidationError("'replace' must be true or false.", field="replace")
    lifetime = timedelta(hours=int(current_app.config["BLE_KEY_HOURS"]))
    key = personal_codes.ble_key_for_phone(api_person(now), now, lifetime, replace=replace)
    payload = {
        "key_id": key.key_id,
        "key": base64.b64encode(key.key).decode(),
        "issued_at": key.issued_at.isoformat(),
        "replace_after": key.replace_after.isoformat(),
        "service_uuid": codes.BLE_SERVICE_UUID,
        "step_seconds": codes.BLE_STEP_S,
        "format_version": codes.BLE_TOKEN_VERSION,
    }
    return jsonify(payload), 201 if key.is_new else 200


@bp.post("/bluetooth-key/revoke")
def bluetooth_key_revoke() -> Any:
    """Turn Bluetooth check-in off: every key stops vouching for tokens observed from now on."""
    now = utcnow()
    json_body()
    revoked = personal_codes.revoke_keys(api_person(now), now, purpose="ble")
    return jsonify(revoked=revoked)


@bp.get("/personal-code")
def personal_code() -> Any:
    """The rotating personal code that kiosk scanners read, for the app to show as a QR."""
    now = utcnow()
    person = api_person(now)
    step = codes.PERSONAL_STEP_S
    valid_from = datetime.fromtimestamp(codes.time_step(now, step) * step, tz=now.tzinfo)
    response = jsonify(
        code=personal_codes.current_qr_code(person, now),
        valid_from=valid_from.isoformat(),
        next_at=(valid_from + timedelta(seconds=step)).isoformat(),
        step_seconds=step,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# --- erase -----------------------------------------------------------------------------------------


@bp.post("/erase")
def erase() -> Any:
    now = utcnow()
    body = json_body()
    person = api_person(now)
    if body.get("confirm") != ERASE_CONFIRMATION:
        raise ValidationError(
            f'Erasing cannot be undone: send {{"confirm": "{ERASE_CONFIRMATION}"}} to go ahead.', field="confirm"
        )
    row_deleted = people.erase_person(person, now)
    return jsonify(erased=True, case_record_kept=not row_deleted)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
