"""Visitors' JSON API for a city app: sign-in by SMS code, check-in, check-out, my visits (the rest of the
account: app/views/me_api.py).

CSRF-exempt, so every write requires `Content-Type: application/json` (a cross-site form cannot send
it) and a device token: `Authorization: Bearer <token>` or the remembered-device cookie.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from itsdangerous import BadSignature, URLSafeSerializer

from app.errors import DomainError, NotFoundError, ValidationError
from app.extensions import db, limiter
from app.models import Checkin, CheckinSource, Entrance, Person, Venue, utcnow
from app.services import checkins, device_checkin, kiosks, posters, sign_in
from app.views.visitors import current_person
from app.views.visitors.identity import APP_DEVICE_ID, code_request_device_key
from venue_kiosk import codes

bp = Blueprint("visitors_api", __name__, url_prefix="/api/v1")
MAX_KIOSK_CODE = 64


class Unauthorized(DomainError):
    status = 401


class UnsupportedMediaType(DomainError):
    status = 415


def json_body() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Send the request body as JSON (Content-Type: application/json).")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    return body


def _string(body: dict[str, Any], name: str, max_len: int, required: bool = True) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ValidationError(f"'{name}' must be a string of 1 to {max_len} characters.", field=name)
    return value


def bearer_token() -> str | None:
    """The device token sent as `Authorization: Bearer <token>`; None if the request sends none."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else None


def api_person(now: datetime) -> Person:
    token = bearer_token()
    if token is not None:
        try:
            person = sign_in.person_for_device(token, now)
        except sign_in.DeviceRevoked as exc:
            raise Unauthorized(exc.message) from None
    else:
        person, _ = current_person(now)
    if person is None:
        raise Unauthorized("Sign in first: send a device token as 'Authorization: Bearer <token>'.")
    return person


def _requests() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="login-code-request")


def visit_json(visit: Checkin, venue: Venue | None = None) -> dict[str, Any]:
    return view_json(checkins.VisitView.of(visit, venue or db.session.get(Venue, visit.venue_id)))


@bp.post("/visitors/code")
@limiter.limit(lambda: f"{sign_in.setting('OTP_PER_ADDRESS_PER_HOUR')}/hour", scope="visitor-code-address")
@limiter.limit(
    lambda: f"{sign_in.setting('OTP_PER_DEVICE_PER_HOUR')}/hour",
    key_func=code_request_device_key,
    scope="visitor-code-device",
)
def request_code() -> Any:
    body = json_body()
    device_id = _string(body, "device_id", 128, required=False)
    if device_id and not APP_DEVICE_ID.match(device_id):
        raise ValidationError(
            "'device_id' must be 8 to 128 letters, digits or the characters . _ : -", field="device_id"
        )
    lang = body.get("lang") if body.get("lang") in ("ru", "en") else "ru"
    created = sign_in.request_code(_string(body, "phone", 32), utcnow(), lang=lang)
    return jsonify(
        request_id=_requests().dumps(created.login_code.id),
        sent_to=created.masked_phone,
        expires_in=sign_in.setting("OTP_TTL_SECONDS"),
    ), 202


@bp.post("/visitors/code/confirm")
def confirm_code() -> Any:
    body = json_body()
    try:
        login_code_id = _requests().loads(_string(body, "request_id", 200))
    except BadSignature:
        raise NotFoundError("This sign-in has expired; please ask for a new code.") from None
    code = _string(body, "code", 16)
    try:
        _person_row, token = sign_in.confirm_code(login_code_id, code, utcnow())
    except sign_in.CodeRefused:
        # The counted attempt must stick even though the answer is a refusal.
        db.session.commit()
        raise
    return jsonify(device_token=token, expires_in_days=sign_in.setting("DEVICE_COOKIE_DAYS")), 200


@bp.post("/checkins")
def check_in() -> Any:
    now = utcnow()
    body = json_body()
    party_size = body.get("party_size", 1)
    phones = body.get("companion_phones", [])
    token = bearer_token()
    kiosk_code = body.get("kiosk_code")
    if kiosk_code is not None:
        return _check_in_at_kiosk(body, kiosk_code, party_size, phones, now)
    if token is not None and type(party_size) is int and party_size == 1 and phones == []:
        # The common case, a visitor alone with a remembered phone: plain columns, no ORM objects.
        try:
            poster_token, poster_problem = _string(body, "poster_token", posters.MAX_TOKEN_CHARS), None
        except ValidationError as exc:  # answered after the device, as on the general path
            poster_token, poster_problem = "", exc
        try:
            quick = device_checkin.check_in(token, poster_token, CheckinSource.POSTER, now, poster_problem)
        except sign_in.DeviceRevoked as exc:
            raise Unauthorized(exc.message) from None
        except checkins.NeedsGeneralPath:
            quick = None  # rare: a party's visit outlasting 24 h begins again; the general path below
        else:
            if quick is None:
                raise Unauthorized("Sign in first: send a device token as 'Authorization: Bearer <token>'.")
            payload = {
                "status": quick.status,
                "checkin": view_json(quick.checkin),
                "ended": view_json(quick.ended) if quick.ended else None,
            }
            return jsonify(payload), 201 if quick.status == "created" else 200
    person = api_person(now)
    ref = posters.resolve_poster_token(_string(body, "poster_token", posters.MAX_TOKEN_CHARS), now)
    result = checkins.check_in(
        person,
        ref.venue,
        ref.entrance,
        CheckinSource.POSTER,
        now,
        party_size=party_size,
        companion_phones=_companion_phones(phones),
    )
    return _result_json(result, ref.venue)


def _companion_phones(phones: object) -> list[str]:
    if (
        not isinstance(phones, list)
        or len(phones) > checkins.MAX_PARTY_SIZE
        or not all(isinstance(p, str) for p in phones)
    ):
        raise ValidationError("'companion_phones' must be a list of phone numbers.", field="companion_phones")
    return phones


def _result_json(result: checkins.CheckinResult, venue: Venue) -> Any:
    payload = {
        "status": result.status,
        "checkin": visit_json(result.checkin, venue),
        "ended": visit_json(result.ended) if result.ended else None,
    }
    return jsonify(payload), 201 if result.status == "created" else 200


class KioskCodeStale(DomainError):
    status = 410


def _check_in_at_kiosk(body: dict[str, Any], kiosk_code: object, party_size: Any, phones: object, now: datetime) -> Any:
    """Check in at the entrance whose kiosk shows this rotating code (the text after /k/ in its QR)."""
    person = api_person(now)
    if "poster_token" in body:
        raise ValidationError("Send either 'poster_token' or 'kiosk_code', not both.", field="kiosk_code")
    if not isinstance(kiosk_code, str) or not 0 < len(kiosk_code) <= MAX_KIOSK_CODE:
        raise ValidationError("'kiosk_code' is not a code from a kiosk's screen.", field="kiosk_code")
    try:
        kiosk = kiosks.kiosk_for_code(
            kiosk_code,
            now,
            step_s=int(current_app.config["KIOSK_CODE_STEP_SECONDS"]),
            window_steps=int(current_app.config["KIOSK_CODE_WINDOW_STEPS"]),
        )
    except codes.KioskCodeError:
        raise ValidationError("'kiosk_code' is not a code from a kiosk's screen.", field="kiosk_code") from None
    if kiosk is None:
        raise KioskCodeStale("The code on the kiosk's screen has changed; scan it again.")
    entrance = db.session.get(Entrance, kiosk.entrance_id)
    assert entrance is not None  # a foreign key
    result = checkins.check_in(
        person,
        entrance.venue,
        entrance,
        CheckinSource.KIOSK_QR,
        now,
        party_size=party_size,
        companion_phones=_companion_phones(phones),
        kiosk_id=kiosk.id,
    )
    return _result_json(result, entrance.venue)


def view_json(visit: checkins.VisitView) -> dict[str, Any]:
    return {
        "id": visit.id,
        "venue": {"name": visit.venue_name, "short_code": visit.venue_short_code},
        "party_size": visit.party_size,
        "source": visit.source.value,
        "checked_in_at": visit.checked_in_at.isoformat(),
        "planned_checkout_at": visit.planned_checkout_at.isoformat(),
        "checked_out_at": visit.checked_out_at.isoformat() if visit.checked_out_at else None,
        "checkout_reason": visit.checkout_reason.value if visit.checkout_reason else None,
    }


@bp.post("/checkins/current/checkout")
def check_out() -> Any:
    now = utcnow()
    json_body()
    visit = checkins.check_out(api_person(now), now)
    if visit is None:
        raise NotFoundError("You have no active visit.")
    return jsonify(checkin=visit_json(visit)), 200


@bp.get("/me/visits")
def my_visits() -> Any:
    now = utcnow()
    person = api_person(now)
    retention = int(current_app.config["RETENTION_DAYS"])
    items = []
    for visit in checkins.visits_of(person, now, retention):
        item = visit_json(visit)
        item["deleted_after"] = (visit.checked_in_at + timedelta(days=retention)).isoformat()
        items.append(item)
    return jsonify(visits=items), 200
