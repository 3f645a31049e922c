"""Signing a visitor in: by a code sent in an SMS, or with mos.ru; either way the device is remembered."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from app.errors import NotFoundError, ValidationError
from app.extensions import db, limiter
from app.models import utcnow
from app.services import mosru, sign_in
from app.services.i18n import localise_error
from app.views.visitors.checkin import _do_check_in, place_for
from app.views.visitors.identity import bp, code_request_device_key, set_device_cookie

_NEXT = re.compile(r"^/(?:p/[A-Za-z0-9]{1,160}|k/here|me)$")


def _safe_next(value: str | None) -> str:
    return value if value and _NEXT.match(value) else "/me"


# --- sign-in by SMS code --------------------------------------------------------------------------


@bp.post("/signin/code")
@limiter.limit(lambda: f"{sign_in.setting('OTP_PER_ADDRESS_PER_HOUR')}/hour", scope="visitor-code-address")
@limiter.limit(
    lambda: f"{sign_in.setting('OTP_PER_DEVICE_PER_HOUR')}/hour",
    key_func=code_request_device_key,
    scope="visitor-code-device",
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
    if error is not None:
        error = localise_error(error, g.visitor_lang)
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
