"""Venue operators' JSON API (organisations, venues, entrances, posters, kiosks).

Authenticated by the operator's session cookie (from `POST /api/v1/operator/session` or the web
sign-in). The blueprint is CSRF-exempt, so every write must be `Content-Type: application/json`:
a cross-site form cannot send that, and a cross-site script would need a CORS pre-flight we never grant.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Blueprint, Response, g, jsonify, request

from app.errors import DomainError, NotFoundError, ValidationError
from app.extensions import limiter
from app.models import Entrance, Kiosk, Operator, Venue, utcnow
from app.services import accounts, kiosks, occupancy, posters, venues
from app.views.operators import LOGIN_LIMIT, download, sign_in, sign_out, signed_in_operator

bp = Blueprint("operators_api", __name__, url_prefix="/api/v1/operator")

F = TypeVar("F", bound=Callable[..., Any])


class Unauthenticated(DomainError):
    status = 401


class UnsupportedMediaType(DomainError):
    status = 415


@bp.before_request
def _writes_are_json() -> None:
    # DELETE carries no body, and no cross-site form can send it.
    if request.method in {"POST", "PUT", "PATCH"} and not request.is_json:
        raise UnsupportedMediaType("Send the request body as JSON with Content-Type: application/json.")


def api_login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        operator = signed_in_operator()
        if operator is None:
            raise Unauthenticated("Sign in first: POST /api/v1/operator/session with e-mail and password.")
        g.operator = operator
        return view(*args, **kwargs)

    return cast(F, wrapper)


def _operator() -> Operator:
    return cast(Operator, g.operator)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ValidationError("The request body must be a JSON object.")
    return body


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{name} must be a whole number.", field=name)
    return value


def _string(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string.", field=name)
    return value


def entrance_json(entrance: Entrance) -> dict[str, Any]:
    version = posters.current_version(entrance)
    return {
        "id": entrance.id,
        "name": entrance.name,
        "kind": entrance.kind.value,
        "archived": entrance.archived_at is not None,
        "poster_version": version.version if version else None,
        "poster_issued_at": version.issued_at.isoformat() if version else None,
    }


def venue_json(venue: Venue) -> dict[str, Any]:
    return {
        "id": venue.id,
        "name": venue.name,
        "address": venue.address,
        "kind": venue.kind,
        "timezone": venue.timezone,
        "default_stay_minutes": venue.default_stay_minutes,
        "capacity": venue.capacity,
        "short_code": venue.short_code,
        "archived": venue.archived_at is not None,
        "entrances": [entrance_json(e) for e in venue.entrances],
    }


def kiosk_json(kiosk: Kiosk, entrance: Entrance, venue: Venue) -> dict[str, Any]:
    return {
        "id": kiosk.id,
        "name": kiosk.name,
        "venue_id": venue.id,
        "entrance_id": entrance.id,
        "enrolled_at": kiosk.enrolled_at.isoformat(),
        "last_seen_at": kiosk.last_seen_at.isoformat() if kiosk.last_seen_at else None,
        "last_status": kiosk.last_status,
        "revoked": kiosk.revoked_at is not None,
    }


# --- session ----------------------------------------------------------------------------------


@bp.post("/session")
@limiter.limit(LOGIN_LIMIT)
def login() -> Response:
    body = _body()
    operator = accounts.authenticate_operator(_string(body, "email"), _string(body, "password"), utcnow())
    sign_in(operator)
    return jsonify({"operator_id": operator.id, "organisation_id": operator.organisation_id, "role": operator.role})


@bp.delete("/session")
def logout() -> tuple[str, int]:
    sign_out()
    return "", 204


# --- venues -----------------------------------------------------------------------------------


@bp.get("/venues")
@api_login_required
def list_venues() -> Response:
    include_archived = request.args.get("archived") == "true"
    found = venues.venues_of(_operator().organisation_id, include_archived=include_archived)
    return jsonify({"venues": [venue_json(v) for v in found]})


@bp.post("/venues")
@api_login_required
def create_venue() -> tuple[Response, int]:
    body = _body()
    names = body.get("entrances") or ["Main entrance"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValidationError("entrances must be a list of names.", field="entrances")
    stay = _optional_int(body, "default_stay_minutes")
    venue = venues.create_venue(
        _operator().organisation_id,
        _string(body, "name"),
        address=_string(body, "address"),
        kind=_string(body, "kind", "other"),
        timezone=_string(body, "timezone", "Europe/Moscow"),
        default_stay_minutes=60 if stay is None else stay,
        capacity=_optional_int(body, "capacity"),
        entrance_names=tuple(names),
    )
    return jsonify(venue_json(venue)), 201


@bp.get("/venues/<int:venue_id>")
@api_login_required
def get_venue(venue_id: int) -> Response:
    return jsonify(venue_json(venues.venue_of(_operator().organisation_id, venue_id)))


@bp.patch("/venues/<int:venue_id>")
@api_login_required
def update_venue(venue_id: int) -> Response:
    venue = venues.venue_of(_operator().organisation_id, venue_id)
    body = _body()
    changes: dict[str, Any] = {}
    for name in ("name", "address", "kind", "timezone"):
        if name in body:
            changes[name] = _string(body, name)
    for name in ("default_stay_minutes", "capacity"):
        if name in body:
            changes[name] = _optional_int(body, name)
    if changes.get("default_stay_minutes", 0) is None:
        raise ValidationError("default_stay_minutes cannot be empty.", field="default_stay_minutes")
    unknown = set(body) - set(venues.EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    return jsonify(venue_json(venues.update_venue(venue, changes)))


@bp.post("/venues/<int:venue_id>/archive")
@api_login_required
def archive_venue(venue_id: int) -> Response:
    venue = venues.venue_of(_operator().organisation_id, venue_id)
    venues.archive_venue(venue, utcnow())
    return jsonify(venue_json(venue))


@bp.get("/venues/<int:venue_id>/stats")
@api_login_required
def venue_stats(venue_id: int) -> Response:
    venue = venues.venue_of(_operator().organisation_id, venue_id)
    now = utcnow()
    present = occupancy.current_occupancy(venue, now)
    return jsonify(
        {
            "present": present.present,
            "capacity": present.capacity,
            "hourly": [
                {"starts_at": h.starts_at.isoformat(), "checkins": h.checkins}
                for h in occupancy.hourly_checkins(venue, now)
            ],
        }
    )


# --- entrances and posters --------------------------------------------------------------------


@bp.post("/venues/<int:venue_id>/entrances")
@api_login_required
def add_entrance(venue_id: int) -> tuple[Response, int]:
    venue = venues.venue_of(_operator().organisation_id, venue_id)
    body = _body()
    entrance = venues.add_entrance(
        venue, _string(body, "name"), venues.parse_entrance_kind(_string(body, "kind", "entrance"))
    )
    return jsonify(entrance_json(entrance)), 201


@bp.patch("/entrances/<int:entrance_id>")
@api_login_required
def update_entrance(entrance_id: int) -> Response:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    body = _body()
    kind = venues.parse_entrance_kind(_string(body, "kind")) if "kind" in body else None
    name = _string(body, "name") if "name" in body else None
    return jsonify(entrance_json(venues.update_entrance(entrance, name, kind)))


@bp.post("/entrances/<int:entrance_id>/archive")
@api_login_required
def archive_entrance(entrance_id: int) -> Response:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    venues.archive_entrance(entrance, utcnow())
    return jsonify(entrance_json(entrance))


@bp.get("/entrances/<int:entrance_id>/poster")
@api_login_required
def poster(entrance_id: int) -> Response:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    fmt = posters.parse_format(request.args.get("format"))
    size = posters.parse_page_size(request.args.get("size"))
    data = posters.render_entrance_poster(entrance, fmt, size, utcnow())
    return download(data, posters.MEDIA_TYPES[fmt], posters.poster_filename(entrance, fmt))


@bp.post("/entrances/<int:entrance_id>/poster/reissue")
@api_login_required
def reissue_poster(entrance_id: int) -> tuple[Response, int]:
    entrance = venues.entrance_of(_operator().organisation_id, entrance_id)
    if entrance.archived_at is not None or entrance.venue.archived_at is not None:
        raise ValidationError("Posters are only issued for open venues and entrances.")
    version, token = posters.issue_poster(entrance, utcnow())
    body = {
        "version": version.version,
        "issued_at": version.issued_at.isoformat(),
        "url": posters.poster_url(token),
        "verify_url": posters.verify_url(token),
    }
    return jsonify(body), 201


@bp.get("/posters")
@api_login_required
def all_posters() -> Response:
    archive = request.args.get("format", "pdf")
    if archive not in {"pdf", "zip"}:
        raise ValidationError("format must be pdf or zip.", field="format")
    size = posters.parse_page_size(request.args.get("size"))
    data = posters.render_organisation_posters(_operator().organisation_id, archive, size, utcnow())
    media_type = "application/pdf" if archive == "pdf" else "application/zip"
    return download(data, media_type, f"posters.{archive}")


# --- kiosks -----------------------------------------------------------------------------------


@bp.post("/entrances/<int:entrance_id>/pairing-codes")
@api_login_required
def pairing_code(entrance_id: int) -> tuple[Response, int]:
    operator = _operator()
    entrance = venues.entrance_of(operator.organisation_id, entrance_id)
    if entrance.archived_at is not None or entrance.venue.archived_at is not None:
        raise ValidationError("Kiosks can only be paired with open venues and entrances.")
    now = utcnow()
    code = kiosks.create_pairing_code(entrance.id, now, created_by_id=operator.id)
    return jsonify({"code": code, "expires_at": (now + kiosks.PAIRING_CODE_TTL).isoformat()}), 201


@bp.get("/kiosks")
@api_login_required
def list_kiosks() -> Response:
    return jsonify({"kiosks": [kiosk_json(*row) for row in kiosks.kiosks_of(_operator().organisation_id)]})


@bp.post("/kiosks/<int:kiosk_id>/revoke")
@api_login_required
def revoke_kiosk(kiosk_id: int) -> Response:
    operator = _operator()
    kiosk = kiosks.kiosk_of(operator.organisation_id, kiosk_id)
    kiosks.revoke_kiosk(kiosk, utcnow())
    row = next((r for r in kiosks.kiosks_of(operator.organisation_id) if r[0].id == kiosk.id), None)
    if row is None:  # pragma: no cover - kiosk_of just found it
        raise NotFoundError("No such kiosk.")
    return jsonify(kiosk_json(*row))
