"""A signed-in visitor's own pages: a visit (check out, correct it), my visits, devices, notices, erasure."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import qrcode
from flask import Response, current_app, make_response, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response as BaseResponse

from app.errors import ValidationError
from app.extensions import db
from app.models import Venue, utcnow
from app.services import audit, checkins, notices, people, personal_codes, sign_in
from app.views.visitors.identity import DEVICE_COOKIE, _signed_in, bp, current_person, device_token_from_cookie

# --- a visit --------------------------------------------------------------------------------------


@bp.get("/visit/<int:checkin_id>")
def visit(checkin_id: int) -> str:
    now = utcnow()
    person = _signed_in(now)
    checkin = checkins.own_visit(person, checkin_id)
    ended = request.args.get("ended", type=int)
    ended_visit = checkins.own_visit(person, ended) if ended else None
    return render_template(
        "visitors/visit.html",
        visit=checkin,
        venue=db.session.get(Venue, checkin.venue_id),
        ended_venue=db.session.get(Venue, ended_visit.venue_id) if ended_visit else None,
        status=request.args.get("s", ""),
    )


@bp.post("/visit/<int:checkin_id>/checkout")
def visit_checkout(checkin_id: int) -> BaseResponse:
    now = utcnow()
    person = _signed_in(now)
    visit = checkins.own_visit(person, checkin_id)
    # Only this visit: from a page left open since, the button must not end a newer visit elsewhere.
    if visit.checked_out_at is None:
        checkins.check_out(person, now)
    return redirect(url_for("visitors.visit", checkin_id=checkin_id), code=303)


def _parse_local(value: str | None, zone: str, field: str) -> datetime:
    try:
        naive = datetime.strptime((value or "")[:16], "%Y-%m-%dT%H:%M")  # noqa: DTZ007 (zone added next)
    except ValueError:
        raise ValidationError("Enter a date and time.", field=field) from None
    return naive.replace(tzinfo=ZoneInfo(zone))


@bp.post("/visit/<int:checkin_id>/correct")
def visit_correct(checkin_id: int) -> BaseResponse:
    now = utcnow()
    person = _signed_in(now)
    zone = db.session.get(Venue, checkins.own_visit(person, checkin_id).venue_id).timezone  # type: ignore[union-attr]
    checkins.correct_times(
        person,
        checkin_id,
        _parse_local(request.form.get("checked_in_at"), zone, "checked_in_at"),
        _parse_local(request.form.get("checked_out_at"), zone, "checked_out_at"),
        now,
        retention_days=int(current_app.config["RETENTION_DAYS"]),
    )
    return redirect("/me", code=303)


# --- my visits ------------------------------------------------------------------------------------


def qr_svg(data: str) -> Markup:
    """A QR code as inline SVG (one path, no style attributes, so the strict CSP allows it)."""
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(data)
    code.make(fit=True)
    matrix = code.get_matrix()
    cells = "".join(f"M{x} {y}h1v1h-1z" for y, row in enumerate(matrix) for x, dark in enumerate(row) if dark)
    size = len(matrix)
    # Built only from integers and fixed text: nothing from the request reaches this markup.
    return Markup(  # noqa: S704
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" class="qr" role="img" '
        f'aria-label="QR"><rect width="{size}" height="{size}" fill="#fff"/><path d="{cells}" fill="#000"/></svg>'
    )


@bp.get("/me")
def me() -> Any:
    now = utcnow()
    person, revoked = current_person(now)
    if person is None:
        return render_template("visitors/sign_in.html", revoked=revoked), 200
    retention = int(current_app.config["RETENTION_DAYS"])
    visits = checkins.visits_of(person, now, retention)
    venues = {v.id: v for v in db.session.query(Venue).filter(Venue.id.in_({c.venue_id for c in visits}))}
    token = device_token_from_cookie()
    from app.services.personal_data import secret_hash

    return render_template(
        "visitors/me.html",
        person=person,
        visits=visits,
        venues=venues,
        deleted_on=lambda c: c.checked_in_at + timedelta(days=retention),
        notices=notices.inbox_of(person),
        devices=sign_in.devices_of(person),
        this_device_hash=secret_hash(token) if token else None,
        qr=qr_svg(personal_codes.current_qr_code(person, now)),
        phone=people.masked_phone(person),
        data_access=audit.entries_about(person.id),
        bluetooth_since=personal_codes.ble_key_issued_at(person),
    )


@bp.get("/me/qr.svg")
def me_qr() -> Response:
    now = utcnow()
    person = _signed_in(now)
    response = make_response(str(qr_svg(personal_codes.current_qr_code(person, now))))
    response.headers["Content-Type"] = "image/svg+xml"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/me/notices/<int:notice_id>/read")
def notice_read(notice_id: int) -> BaseResponse:
    now = utcnow()
    person = _signed_in(now)
    notices.mark_read(person, notice_id, now)
    return redirect("/me", code=303)


@bp.post("/me/devices/<int:device_id>/revoke")
def device_revoke(device_id: int) -> BaseResponse:
    now = utcnow()
    sign_in.revoke_device(_signed_in(now), device_id, now)
    return redirect("/me", code=303)


@bp.post("/me/bluetooth/off")
def bluetooth_off() -> BaseResponse:
    """Turn Bluetooth check-in off: the phone's key stops vouching for anything heard from now on."""
    now = utcnow()
    personal_codes.revoke_keys(_signed_in(now), now, purpose="ble")
    return redirect("/me", code=303)


@bp.get("/me/erase")
def erase_confirm() -> str:
    _signed_in(utcnow())
    return render_template("visitors/erase.html")


@bp.post("/me/erase")
def erase() -> BaseResponse:
    now = utcnow()
    people.erase_person(_signed_in(now), now)
    response = make_response(render_template("visitors/erased.html"))
    response.delete_cookie(DEVICE_COOKIE)
    return response
