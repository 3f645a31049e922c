"""The visitors' blueprint, its language hooks, and the person behind this browser's device cookie."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, g, request, session
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response as BaseResponse

from app.errors import NotFoundError
from app.models import Person
from app.services import mosru, sign_in
from app.services.i18n import normalise_language, t

bp = Blueprint("visitors", __name__)

DEVICE_COOKIE = "device"
LANG_COOKIE = "lang"
# A city app names its installation with `device_id` when it asks for a sign-in code (JSON API).
APP_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def code_request_device_key() -> str:
    """Whom the per-device limit on SMS code requests counts: the app installation's `device_id` if the
    JSON request names one, else this browser's anonymous session id (set on first use). A client that
    throws both away each time is still held by the per-address and per-number limits."""
    body = request.get_json(silent=True) if request.is_json else None
    named = body.get("device_id") if isinstance(body, dict) else None
    if isinstance(named, str) and APP_DEVICE_ID.match(named):
        return "app:" + named
    anon = session.get("anon")
    if not isinstance(anon, str):
        anon = session["anon"] = secrets.token_urlsafe(12)
    return "device:" + anon


def request_language() -> tuple[str, str | None]:
    """This request's page language, and the language `?lang=` chose (None if it chose none)."""
    chosen = request.args.get("lang")
    chosen = chosen if chosen in ("ru", "en") else None
    return normalise_language(chosen or request.cookies.get(LANG_COOKIE)), chosen


@bp.before_request
def _language() -> None:
    g.visitor_lang, g.visitor_lang_chosen = request_language()


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


def _signed_in(now: datetime) -> Person:
    person, _ = current_person(now)
    if person is None:
        raise NotFoundError("Please sign in to see your visits.")
    return person
