"""Visitors' pages: the poster check-in page, sign-in by SMS code or mos.ru, my visits.

Identity on the web is the remembered-device cookie only (set after an SMS code or a mos.ru sign-in),
so signing a device out works the same for both. The Flask session holds just the sign-in in
progress and a kiosk pass; no phone number ever goes into a cookie.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import qrcode
from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import Markup
from werkzeug.wrappers import Response as BaseResponse

from app.errors import DomainError, NotFoundError, ValidationError
from app.extensions import db, limiter
from app.models import CheckinSource, Entrance, Kiosk, Notice, Person, Venue, utcnow
from app.services import audit, checkins, mosru, people, personal_codes, posters, sign_in
from app.services.i18n import normalise_language, t
from app.services.personal_data import PersonalDataError, keyring, mask_phone
from venue_kiosk import codes

bp = Blueprint("visitors", __name__)

DEVICE_COOKIE = "device"
LANG_COOKIE = "lang"
KIOSK_PASS = timedelta(minutes=15)  # time to type a number after scanning a kiosk's screen
MAX_COMPANION_LINES = 50
_NEXT = re.compile(r"^/(?:p/[A-Za-z0-9]{1,160}|k/here|me)$")


# --- language, identity, place -------------------------------------------------------------------


@bp.before_request
def _language() -> None:
    chosen = request.args.get("lang")
    g.visitor_lang_chosen = chosen if chosen in ("ru", "en") else None
    g.visitor_lang = normalise_language(g.visitor_lang_chosen or request.cookies.get(LANG_COOKIE))


@bp.after_request
def _remember_language(response: Response) -> Response:
    if getattr(g, "visitor_lang_chosen", None):
        response.set_cookie(
            LANG_COOKIE, g.visitor_lang_chosen, max_age=365 * 86400, samesite="Lax", secure=_https(), httponly=True
        )
    return response


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    lang = g.get("visitor_lang", "ru")
    return {
        "lang": lang,
        "_": lambda key, **kw: t(key, lang, **kw),
        "local_time": _local_time,
        "oidc_enabled": mosru.is_enabled(current_app),
    }


def _local_time(moment: datetime | None, zone: str = "Europe/Moscow", fmt: str = "%d.%m %H:%M") -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime(fmt) if moment else ""


def _https() -> bool:
    return str(current_app.config["PUBLIC_BASE_URL"]).startswith("https://")


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="remembered-device")


def device_token_from_cookie() -> str | None:
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw or len(raw) > 512:
        return None
    try:
        token = _serializer().loads(raw)
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def set_device_cookie(response: BaseResponse, token: str) -> None:
    days = sign_in.setting("DEVICE_COOKIE_DAYS")
    response.set_cookie(
        DEVICE_COOKIE,
        _serializer().dumps(token),
        max_age=days * 86400,
        httponly=True,
        samesite="Lax",
        secure=_https(),
    )


def current_person(now: datetime) -> tuple[Person | None, bool]:
    """(person, was_revoked): the person behind this browser's remembered-device cookie."""
    token = device_token_from_cookie()
    if token is None:
        return None, False
    try:
        return sign_in.person_for_device(token, now), False
    except sign_in.DeviceRevoked:
        return None, True


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
        if entrance is None or entrance.venue.archived_at is not None:
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


def _safe_next(value: str | None) -> str:
    return value if value and _NEXT.match(value) else "/me"


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


def _checkin_page(place: Place, now: datetime, status: int = 200, error: str | None = None) -> tuple[str, int]:
    person, revoked = current_person(now)
    open_visit = checkins.open_visit(person.id) if person is not None else None
    return (
        render_template(
            "visitors/checkin.html",
            place=place,
            person=person,
            revoked=revoked,
            open_visit=open_visit,
            error=error,
            short_number=current_app.config["SMS_SHORT_NUMBER"],
        ),
        status,
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
        parsed = codes.parse_kiosk_code(code[:64])
    except codes.KioskCodeError:
        raise ValidationError(t("kiosk_stale", lang)) from None
    kiosk = db.session.get(Kiosk, parsed.kiosk_id)
    if kiosk is None or kiosk.revoked_at is not None:
        raise KioskCodeStale(t("kiosk_stale", lang))
    step = int(current_app.config["KIOSK_CODE_STEP_SECONDS"])
    window = int(current_app.config["KIOSK_CODE_WINDOW_STEPS"])
    stored = keyring().decrypt(kiosk.rotation_secret_enc, context="kiosk")
    if not any(
        codes.verify_kiosk_code(code, secret, kiosk.id, now, window_steps=window, step_s=step)
        for secret in _kiosk_secret_candidates(stored)
    ):
        raise KioskCodeStale(t("kiosk_stale", lang))
    session["kiosk"] = {
        "kiosk_id": kiosk.id,
        "entrance_id": kiosk.entrance_id,
        "until": (now + KIOSK_PASS).timestamp(),
    }
    return redirect(url_for("visitors.kiosk_here"), code=303)


def _kiosk_secret_candidates(stored: str) -> list[bytes]:
    """The MAC key as the kiosk holds it: the stored text itself, or the bytes it encodes in base64url."""
    candidates = [stored.encode()]
    try:
        decoded = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
    except (binascii.Error, ValueError):
        return candidates
    if len(decoded) >= 16:
        candidates.append(decoded)
    return candidates


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


# --- sign-in by SMS code --------------------------------------------------------------------------


def _device_key() -> str:
    anon = session.get("anon")
    if not isinstance(anon, str):
        anon = session["anon"] = secrets.token_urlsafe(12)
    return "device:" + anon


@bp.post("/signin/code")
@limiter.limit(lambda: f"{sign_in.setting('OTP_PER_ADDRESS_PER_HOUR')}/hour", scope="visitor-code-address")
@limiter.limit(
    lambda: f"{sign_in.setting('OTP_PER_DEVICE_PER_HOUR')}/hour", key_func=_device_key, scope="visitor-code-device"
)
def request_code() -> BaseResponse:
    now = utcnow()
    target = _safe_next(request.form.get("next"))
    created = sign_in.request_code(request.form.get("phone", ""), now, lang=g.visitor_lang)
    session["signin"] = {"id": created.login_code.id, "masked": created.masked_phone, "next": target}
    return redirect(url_for("visitors.code_form"), code=303)


@bp.get("/signin/code")
def code_form() -> Any:
    pending = session.get("signin")
    if not isinstance(pending, dict):
        return redirect("/me", code=303)
    return _code_page(pending)


def _code_page(pending: dict[str, Any], error: str | None = None, status: int = 200) -> tuple[str, int]:
    place = None
    if pending["next"] != "/me":
        place = place_for(pending["next"], utcnow())
    return render_template("visitors/code.html", pending=pending, place=place, error=error), status


@bp.post("/signin/confirm")
def confirm_code() -> Any:
    now = utcnow()
    pending = session.get("signin")
    if not isinstance(pending, dict):
        raise NotFoundError("This sign-in has expired; please ask for a new code.")
    try:
        person, token = sign_in.confirm_code(pending.get("id"), request.form.get("code", ""), now)
    except sign_in.CodeRefused as refused:
        # The counted attempt must stick even though the answer is a refusal (after_request rolls back).
        db.session.commit()
        return _code_page(pending, refused.message, refused.status)
    session.pop("signin", None)
    target = pending["next"]
    if target == "/me":
        response: BaseResponse = redirect("/me", code=303)
    else:
        response = _do_check_in(person, place_for(target, now), now)
    set_device_cookie(response, token)
    return response


# --- mos.ru ---------------------------------------------------------------------------------------


@bp.get("/auth/mos")
def mos_start() -> BaseResponse:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not mosru.is_enabled(app):
        raise NotFoundError("Sign-in with mos.ru is not available here.")
    session["mos_next"] = _safe_next(request.args.get("next"))
    return mosru.client(app).authorize_redirect(url_for("visitors.mos_callback", _external=True))  # type: ignore[no-any-return]


@bp.get("/auth/mos/callback")
def mos_callback() -> BaseResponse:
    from authlib.integrations.base_client import OAuthError

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not mosru.is_enabled(app):
        raise NotFoundError("Sign-in with mos.ru is not available here.")
    client = mosru.client(app)
    try:
        token = client.authorize_access_token()
        claims = dict(token.get("userinfo") or {})
        extra = client.userinfo(token=token)
    except OAuthError as exc:
        raise ValidationError("mos.ru sign-in was not completed; please try again.") from exc
    if extra.get("sub") == claims.get("sub"):
        claims.update(extra)
    issuer = client.load_server_metadata()["issuer"]
    _person, device = mosru.sign_in_with_claims(issuer, claims, utcnow())
    response = redirect(_safe_next(session.pop("mos_next", None)), code=303)
    set_device_cookie(response, device)
    return response


# --- a visit --------------------------------------------------------------------------------------


def _signed_in(now: datetime) -> Person:
    person, _ = current_person(now)
    if person is None:
        raise NotFoundError("Please sign in to see your visits.")
    return person


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
    checkins.own_visit(person, checkin_id)
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
    notices = list(
        db.session.scalars(db.select(Notice).where(Notice.person_id == person.id).order_by(Notice.created_at.desc()))
    )
    token = device_token_from_cookie()
    from app.services.personal_data import secret_hash

    return render_template(
        "visitors/me.html",
        person=person,
        visits=visits,
        venues=venues,
        deleted_on=lambda c: c.checked_in_at + timedelta(days=retention),
        notices=notices,
        devices=sign_in.devices_of(person),
        this_device_hash=secret_hash(token) if token else None,
        qr=qr_svg(personal_codes.current_qr_code(person, now)),
        phone=_masked_phone(person),
        data_access=audit.entries_about(person.id),
    )


def _masked_phone(person: Person) -> str:
    # In sealed mode the web tier cannot open stored numbers, by design: show nothing rather than fail.
    try:
        return mask_phone(people.phone_of(person) or "")
    except PersonalDataError:
        return ""


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
    notice = db.session.get(Notice, notice_id)
    if notice is None or notice.person_id != person.id:
        raise NotFoundError("No such notice among yours.")
    notice.read_at = notice.read_at or now
    return redirect("/me", code=303)


@bp.post("/me/devices/<int:device_id>/revoke")
def device_revoke(device_id: int) -> BaseResponse:
    now = utcnow()
    sign_in.revoke_device(_signed_in(now), device_id, now)
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
