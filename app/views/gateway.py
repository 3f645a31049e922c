"""Endpoints the SMS gateway calls: incoming messages and delivery reports.

Both authenticate with SMS_INBOUND_SECRET (a `secret` parameter Kannel appends to our URLs) and
answer with an empty body: Kannel would otherwise send a non-empty answer back to the phone.
"""

from __future__ import annotations

import hmac
import re

from flask import Blueprint, Response, current_app, request

from app.errors import NotFoundError, PermissionDenied, ValidationError
from app.models import utcnow
from app.services.outbox import record_delivery_report
from app.services.sms_gateways import DlrParseError, parse_kannel_dlr

bp = Blueprint("gateway", __name__, url_prefix="/gateway")

_SENDER = re.compile(r"\+?[0-9]{3,20}")
MAX_INCOMING_TEXT = 1600  # ten concatenated parts; anything longer is not an SMS


def _require_secret() -> None:
    expected = current_app.config.get("SMS_INBOUND_SECRET") or ""
    given = request.values.get("secret", "")
    # An unset secret refuses everything rather than accepting anyone.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionDenied("wrong or missing gateway secret")


def _empty(status: int = 200) -> Response:
    return Response(b"", status=status, mimetype="text/plain")


@bp.route("/sms/dlr", methods=["GET", "POST"])
def sms_delivery_report() -> Response:
    _require_secret()
    try:
        report = parse_kannel_dlr(request.values.to_dict())
    except DlrParseError as exc:
        raise ValidationError(str(exc)) from None
    if not record_delivery_report(report, utcnow()):
        raise NotFoundError("unknown message reference")
    return _empty()


@bp.route("/sms/incoming", methods=["GET", "POST"])
def sms_incoming() -> Response:
    _require_secret()
    sender = request.values.get("from", "").strip()
    text = request.values.get("text")
    message_id = request.values.get("id", "").strip() or None
    if not _SENDER.fullmatch(sender):
        raise ValidationError("`from` must be a phone number", field="from")
    if text is None or len(text) > MAX_INCOMING_TEXT:
        raise ValidationError(f"`text` is required and at most {MAX_INCOMING_TEXT} characters", field="text")
    if message_id is not None and len(message_id) > 100:
        raise ValidationError("`id` is too long", field="id")
    from app.services import sms_commands  # the visitors' SMS commands: check-in by venue code

    sms_commands.handle_incoming_sms(sender, text, utcnow(), message_id=message_id)
    return _empty()
