"""The check-in page: the place a poster or a kiosk's rotating code stands for, and checking in there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.errors import DomainError, ValidationError
from app.extensions import db
from app.models import CheckinSource, Entrance, Kiosk, Person, Venue, utcnow
from app.services import checkins, kiosks, posters
from app.services.i18n import t
from app.views.visitors.identity import bp, current_person
from venue_kiosk import codes

KIOSK_PASS = timedelta(minutes=15)  # time to type a number after scanning a kiosk's screen
MAX_COMPANION_LINES = 50


@dataclass(frozen=True)
class Place:
    venue: Venue
    entrance: Entrance
    source: CheckinSource
    path: str
    kiosk_id: int | None = None


def place_for(path: str, now: datetime) -> Place:
    """The venue and entrance a check-in page stands for: a poster token, or this browser's kiosk pass."""
    if path.startswith("/p/"):
        ref = posters.resolve_poster_token(path[3:], now)
        return Place(ref.venue, ref.entrance, CheckinSource.POSTER, path)
    if path == "/k/here":
        kiosk_pass = session.get("kiosk")
        if not isinstance(kiosk_pass, dict) or float(kiosk_pass.get("until", 0)) < now.timestamp():
            raise KioskCodeStale(t("kiosk_stale", g.visitor_lang))
        entrance = db.session.get(Entrance, kiosk_pass.get("entrance_id"))
        kiosk = db.session.get(Kiosk, kiosk_pass.get("kiosk_id"))
        # The pass lasts minutes, but not past its kiosk's revocation or its entrance's closing.
        closed = entrance is None or entrance.venue.archived_at is not None or entrance.archived_at is not None
        if closed or kiosk is None or kiosk.revoked_at is not None:
            raise KioskCodeStale(t("kiosk_stale", g.visitor_lang))
        return Place(entrance.venue, entrance, CheckinSource.KIOSK_QR, path, kiosk_pass.get("kiosk_id"))
    raise ValidationError("This check-in link is not valid.")


class KioskCodeStale(DomainError):
    status = 410


def _party_from_form() -> tuple[int, list[str]]:
    raw_size = (request.form.get("party_size") or "1").strip()
    if not raw_size.isascii() or not raw_size.isdigit() or len(raw_size) > 2:
        raise ValidationError(f"The party size must be a whole number from 1 to {checkins.MAX_PARTY_SIZE}.")
    lines = (request.form.get("companion_phones") or "").splitlines()
    if len(lines) > MAX_COMPANION_LINES:
        raise ValidationError("Too many companion numbers.", field="companion_phones")
    return int(raw_size), lines


def _do_check_in(person: Person, place: Place, now: datetime) -> BaseResponse:
    party_size, phones = _party_from_form()
    result = checkins.check_in(
        person,
        place.venue,
        place.entrance,
        place.source,
        now,
        party_size=party_size,
        companion_phones=phones,
        kiosk_id=place.kiosk_id,
    )
    args: dict[str, Any] = {"checkin_id": result.checkin.id, "s": result.status}
    if result.ended is not None:
        args["ended"] = result.ended.id
    return redirect(url_for("visitors.visit", **args), code=303)


def _checkin_page(place: Place, now: datetime) -> str:
    person, revoked = current_person(now)
    open_visit = checkins.open_visit(person.id) if person is not None else None
    return render_template(
        "visitors/checkin.html",
        place=place,
        person=person,
        revoked=revoked,
        open_visit=open_visit,
        short_number=current_app.config["SMS_SHORT_NUMBER"],
    )


# --- the check-in page ---------------------------------------------------------------------------


@bp.get("/p/<token>")
def poster(token: str) -> Any:
    now = utcnow()
    return _checkin_page(place_for(f"/p/{token}", now), now)


@bp.get("/k/<code>")
def kiosk_code(code: str) -> Any:
    """The kiosk's rotating on-screen QR: valid for a few seconds, then a pass in this browser's session."""
    now = utcnow()
    lang = g.visitor_lang
    try:
        kiosk = kiosks.kiosk_for_code(
            code,
            now,
            step_s=int(current_app.config["KIOSK_CODE_STEP_SECONDS"]),
            window_steps=int(current_app.config["KIOSK_CODE_WINDOW_STEPS"]),
        )
    except codes.KioskCodeError:
        raise ValidationError(t("kiosk_stale", lang)) from None
    if kiosk is None:
        raise KioskCodeStale(t("kiosk_stale", lang))
    session["kiosk"] = {
        "kiosk_id": kiosk.id,
        "entrance_id": kiosk.entrance_id,
        "until": (now + KIOSK_PASS).timestamp(),
    }
    return redirect(url_for("visitors.kiosk_here"), code=303)


@bp.get("/k/here")
def kiosk_here() -> Any:
    now = utcnow()
    return _checkin_page(place_for("/k/here", now), now)


@bp.post("/checkin")
def check_in() -> BaseResponse:
    now = utcnow()
    place = place_for(request.form.get("place", ""), now)
    person, _ = current_person(now)
    if person is None:
        return redirect(place.path, code=303)
    return _do_check_in(person, place, now)
