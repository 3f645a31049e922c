"""Delivery channels behind one seam: the log (demo), SMS through a gateway, e-mail over SMTP.

Every channel answers each message with one of four outcomes; the dispatcher turns them into
statuses. The line between RETRY and IN_DOUBT is the one that decides whether a message may be
sent twice: RETRY only when the gateway certainly did not take the message.
"""

from __future__ import annotations

import enum
import logging
import re
import smtplib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import make_msgid
from typing import Any

from app.models import MessageChannel
from app.services.personal_data import mask_phone
from app.services.sms_gateways import (
    GenericHttpGateway,
    KannelGateway,
    OutgoingSms,
    SendOutcome,
    SendResult,
    SmsGateway,
    kannel_dlr_url_template,
    shorten_for_sms,
)

log = logging.getLogger(__name__)

SMS_MAX_SEGMENTS = 3  # a notice longer than three parts is cut at a word, deliberately
SMTP_TIMEOUT = 10.0
SMS_HTTP_TIMEOUT = 5.0  # per gateway request; a request in flight ends within twice this


class Attempt(enum.StrEnum):
    ACCEPTED = "accepted"  # the gateway or server took it
    RETRY = "retry"  # certainly not taken (refused connection, an explicit "try later")
    PERMANENT = "permanent"  # retrying the same message cannot help (invalid number)
    IN_DOUBT = "in_doubt"  # sent, but the answer was lost: it may have been taken


@dataclass(frozen=True)
class Outgoing:
    """One claimed message, decrypted for sending only; never logged whole."""

    id: int
    channel: MessageChannel
    recipient: str
    subject: str
    body: str
    reference: str  # ours; Kannel echoes it back in delivery reports


@dataclass(frozen=True)
class AttemptResult:
    attempt: Attempt
    detail: str = ""


def from_send_result(result: SendResult) -> AttemptResult:
    if result.outcome is SendOutcome.ACCEPTED:
        return AttemptResult(Attempt.ACCEPTED, result.message[:200])
    if result.outcome is SendOutcome.PERMANENT_ERROR:
        return AttemptResult(Attempt.PERMANENT, result.message[:500])
    if result.in_doubt:
        return AttemptResult(Attempt.IN_DOUBT, result.message[:500])
    return AttemptResult(Attempt.RETRY, result.message[:500])


_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]{8,}")
# A number as gateways echo it: +79161234567, 79161234567, URL-encoded (%2B79161234567, to=79161234567),
# or grouped (+7 916 123-45-67, (916) 123 45 67): 7 to 15 digits, single separators between groups.
# Not inside a word (0x0000000b, msgid42424242 are codes, not numbers).
_PHONE_LIKE = re.compile(r"(?:%2[Bb]|(?<![\w+])\+?)\d{1,15}(?:[ .-]\(?\d{1,4}\)?){0,7}(?!\d)")
_NOT_DIGIT = re.compile(r"\D")
_EMAIL_LIKE = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def scrub_personal(text: str) -> str:
    """Mask phone numbers and e-mail addresses that a gateway or SMTP server echoed in an error,
    before the text is stored or logged."""
    text = _EMAIL_LIKE.sub(lambda m: mask_recipient(m.group(0)), text)
    return _PHONE_LIKE.sub(_mask_phone_like, text)


def _mask_phone_like(match: re.Match[str]) -> str:
    digits = _NOT_DIGIT.sub("", match.group(0).replace("%2B", "").replace("%2b", ""))
    if not 7 <= len(digits) <= 15:
        return match.group(0)
    return mask_phone(("+" if match.group(0)[:1] in "+%" else "") + digits)


def mask_recipient(recipient: str) -> str:
    if "@" in recipient:
        local, _, domain = recipient.partition("@")
        return f"{local[:1]}***@{domain}"
    return mask_phone(recipient)


# -- SMS -----------------------------------------------------------------------------------------


def build_sms_gateway(config: Mapping[str, Any], concurrency: int) -> SmsGateway | None:
    """The configured gateway, or None for SMS_CHANNEL=log (messages are written to the log)."""
    channel = config["SMS_CHANNEL"]
    if channel == "kannel":
        secret = config.get("SMS_INBOUND_SECRET") or ""
        # Kannel expands %-escapes anywhere in dlr-url, so a percent-encoded secret would be mangled
        # and every delivery report refused; without a secret none would be accepted at all.
        if not _URL_SAFE.fullmatch(secret):
            raise ValueError("SMS_INBOUND_SECRET must be set, using only letters, digits and . _ ~ - (Kannel)")
        callback = f"{config['PUBLIC_BASE_URL'].rstrip('/')}/gateway/sms/dlr?secret={secret}"
        return KannelGateway(
            config["KANNEL_SENDSMS_URL"],
            config["KANNEL_USERNAME"],
            config["KANNEL_PASSWORD"],
            config["SMS_SHORT_NUMBER"],
            kannel_dlr_url_template(callback),
            max_segments=SMS_MAX_SEGMENTS,
            concurrency=concurrency,
            timeout=SMS_HTTP_TIMEOUT,
        )
    if channel == "http":
        token = config.get("SMS_HTTP_TOKEN") or ""
        return GenericHttpGateway(
            config["SMS_HTTP_URL"],
            sender=config["SMS_SHORT_NUMBER"],
            auth_header=("Authorization", f"Bearer {token}") if token else None,
            concurrency=concurrency,
            timeout=SMS_HTTP_TIMEOUT,
        )
    return None


def send_sms(
    gateway: SmsGateway | None, messages: Sequence[Outgoing], start_within: float | None = None
) -> list[AttemptResult]:
    """Submit SMS concurrently through the gateway (or write them to the log), results in order;
    none is started after `start_within` seconds (see SmsGateway.send_many)."""
    items = [OutgoingSms(m.recipient, shorten_for_sms(m.body, SMS_MAX_SEGMENTS), m.reference) for m in messages]
    if gateway is None:
        for item in items:
            log.info("SMS to %s: %s", mask_recipient(item.to), item.text, extra={"reference": item.reference})
        return [AttemptResult(Attempt.ACCEPTED, "logged")] * len(items)
    return [from_send_result(r) for r in gateway.send_many(items, start_within)]


# -- e-mail --------------------------------------------------------------------------------------


def build_email(sender: str, message: Outgoing) -> Message:
    email = MIMEText(message.body, "plain", "utf-8")
    email["From"] = sender
    email["To"] = message.recipient
    # Header() keeps the spaces of a long non-ASCII subject: the default policy's folding drops
    # a space that falls between two encoded words ("возможный контакт" arrived as one word).
    email["Subject"] = Header(message.subject, "utf-8")
    email["Message-ID"] = make_msgid(idstring=message.reference)
    return email


def send_emails(config: Mapping[str, Any], messages: Sequence[Outgoing]) -> list[AttemptResult]:
    """Send over one SMTP connection. A refused connection is RETRY; a connection lost after the
    message data went out is IN_DOUBT (the server may have queued it); 5xx replies are PERMANENT."""
    if not messages:
        return []
    host = config.get("SMTP_HOST") or ""
    if not host:
        return [AttemptResult(Attempt.PERMANENT, "e-mail is disabled (SMTP_HOST is empty)")] * len(messages)
    try:
        smtp = smtplib.SMTP(host, int(config["SMTP_PORT"]), timeout=SMTP_TIMEOUT)
    except (OSError, smtplib.SMTPException) as exc:
        return [AttemptResult(Attempt.RETRY, f"SMTP connect: {type(exc).__name__}: {exc}")] * len(messages)
    results: list[AttemptResult] = []
    try:
        for index, message in enumerate(messages):
            try:
                smtp.send_message(build_email(config["SMTP_FROM"], message))
                results.append(AttemptResult(Attempt.ACCEPTED, "250"))
            except smtplib.SMTPRecipientsRefused as exc:
                code = next(iter(exc.recipients.values()))[0]
                results.append(_by_code(code, str(exc)))
            except smtplib.SMTPResponseException as exc:
                results.append(_by_code(exc.smtp_code, str(exc)))
            except (TimeoutError, smtplib.SMTPServerDisconnected, OSError) as exc:
                # The connection broke somewhere in this message's dialogue: it may have been queued.
                results.append(AttemptResult(Attempt.IN_DOUBT, f"{type(exc).__name__}: {exc}"[:500]))
                rest = messages[index + 1 :]
                results.extend([AttemptResult(Attempt.RETRY, "not attempted: SMTP connection lost")] * len(rest))
                return results
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
    return results


def _by_code(code: int, detail: str) -> AttemptResult:
    attempt = Attempt.RETRY if 400 <= code < 500 else Attempt.PERMANENT
    return AttemptResult(attempt, f"SMTP {code}: {detail}"[:500])


# -- log -----------------------------------------------------------------------------------------


def send_to_log(messages: Sequence[Outgoing]) -> list[AttemptResult]:
    for m in messages:
        log.info("message to %s: %s %s", mask_recipient(m.recipient), m.subject, m.body)
    return [AttemptResult(Attempt.ACCEPTED, "logged")] * len(messages)
