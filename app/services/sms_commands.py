"""SMS commands sent to the short number: a venue code checks in, OUT / ВЫХОД checks out.

Every incoming message gets a reply (queued in the outbox in the same transaction), including
unknown codes and text we cannot read: silence leaves a person at a door not knowing what happened.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select

from app.errors import ValidationError
from app.extensions import db
from app.models import CheckinSource, MessageChannel, MessageKind, OutboxMessage, Venue
from app.services import checkins, outbox, people
from app.services.i18n import t

log = logging.getLogger(__name__)

CHECKOUT_WORDS = frozenset({"OUT", "EXIT", "ВЫХОД", "ВЫЙТИ", "ВЫШЕЛ", "ВЫШЛА"})
HELP_WORDS = frozenset({"HELP", "?", "ПОМОЩЬ", "СПРАВКА"})
MAX_TEXT_CHARS = 160
_SEPARATORS = re.compile(r"[\s\-–—.,/]+")
# Cyrillic letters that look like Latin ones, to their twins: "ОUТ" typed with Cyrillic О and Т is OUT,
# "BЫXOД" typed with Latin B, X and O is ВЫХОД.
_LOOKALIKES = str.maketrans("АВЕКМНОРСТУХ", "ABEKMHOPCTYX")
_CHECKOUT_SHAPES = frozenset(word.translate(_LOOKALIKES) for word in CHECKOUT_WORDS)
# Punctuation a word may carry around it ("Выход!", "OUT."); "?" alone is a help word, so it is kept.
_WORD_PUNCTUATION = " .,!;:…\"'«»()"


@dataclass(frozen=True)
class Command:
    action: str  # "checkin", "checkout", "help", "bad_party", "malformed"
    code: str = ""
    party_size: int = 1


def parse(text: str) -> Command:
    """Read a message: '123456789', '123 456-789 3', 'ВЫХОД'... Never raises."""
    cleaned = (text or "")[:MAX_TEXT_CHARS].strip().upper().replace("Ё", "Е")
    if cleaned.strip(_WORD_PUNCTUATION).translate(_LOOKALIKES) in _CHECKOUT_SHAPES:
        return Command("checkout")
    if not cleaned or cleaned in HELP_WORDS:
        return Command("help")
    parts = [p for p in _SEPARATORS.split(cleaned) if p]
    if not parts or not all(p.isascii() and p.isdigit() for p in parts):
        return Command("malformed")
    # Digit groups of three or more make up the 9-digit code; at most one group after it is the party size.
    # A group of one or two digits is never part of the code: "12345678 3" is an 8-digit code and a party
    # of 3, refused, not the code 123456783 (another venue's, perhaps).
    code = ""
    rest = list(parts)
    while rest and len(code) < 9 and len(rest[0]) >= 3:
        code += rest.pop(0)
    if len(code) != 9 or len(rest) > 1:
        return Command("malformed", code=code[:12])
    if not rest:
        return Command("checkin", code=code)
    if len(rest[0]) > 2 or not 1 <= int(rest[0]) <= checkins.MAX_PARTY_SIZE:
        return Command("bad_party", code=code)
    return Command("checkin", code=code, party_size=int(rest[0]))


def _local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%H:%M")


def _short_venue_name(venue: Venue) -> str:
    return venue.name if len(venue.name) <= 40 else venue.name[:39] + "…"


def _dedup_key(message_id: str | None) -> str:
    if message_id:
        return "sms-reply:" + hashlib.sha256(message_id.encode()).hexdigest()[:40]
    return f"sms-reply:{uuid.uuid4().hex}"


def handle_incoming_sms(sender: str, text: str, now: datetime, message_id: str | None = None) -> str:
    """Perform the command in `text` for the phone `sender`, queue the reply SMS and return its text.

    A gateway re-delivering the same message id gets the same reply and nothing is done twice.
    A sender that is not a valid mobile number cannot be answered: the reply is returned, not queued.
    """
    dedup_key = _dedup_key(message_id)
    if message_id:
        earlier = db.session.scalar(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key))
        if earlier is not None:
            return earlier.body
    short = current_app.config["SMS_SHORT_NUMBER"]
    try:
        phone = people.normalise_phone(sender)
    except ValidationError:
        log.warning("incoming SMS from an unusable sender number ignored")
        return t("sms_help", "ru")
    person = people.find_by_phone(phone)
    lang = person.preferred_language if person is not None else "ru"
    command = parse(text)
    if command.action == "checkout":
        visit = checkins.check_out(person, now) if person is not None else None
        if visit is None:
            reply = t("sms_nothing_open", lang)
        else:
            venue = db.session.get(Venue, visit.venue_id)
            assert venue is not None
            reply = t(
                "sms_checked_out",
                lang,
                venue=_short_venue_name(venue),
                end=_local(visit.checked_out_at or now, venue.timezone),
            )
    elif command.action == "checkin":
        venue = db.session.scalar(select(Venue).where(Venue.short_code == command.code))
        if venue is None:
            reply = t("sms_unknown_code", lang, code=command.code)
        elif venue.archived_at is not None and venue.archived_at <= now:
            reply = t("sms_closed", lang, code=command.code)
        else:
            if person is None:
                person, _ = people.get_or_create_by_phone(phone, now)
            entrance = next((e for e in venue.entrances if e.archived_at is None), None)
            result = checkins.check_in(person, venue, entrance, CheckinSource.SMS, now, party_size=command.party_size)
            visit = result.checkin
            key = "sms_checked_in" if result.status == "created" else "sms_continued"
            reply = t(
                key,
                lang,
                venue=_short_venue_name(venue),
                start=_local(visit.checked_in_at, venue.timezone),
                end=_local(visit.planned_checkout_at, venue.timezone),
                short=short,
            )
    elif command.action == "bad_party":
        reply = t("sms_bad_party", lang)
    elif command.action == "malformed" and command.code:
        reply = t("sms_unknown_code", lang, code=command.code)
    else:
        reply = t("sms_help", lang)
    outbox.enqueue(
        dedup_key=dedup_key,
        channel=MessageChannel.SMS,
        kind=MessageKind.CONFIRMATION,
        recipient=phone,
        body=reply,
        now=now,
        person_id=person.id if person is not None else None,
        recipient_timezone=person.timezone if person is not None else "Europe/Moscow",
    )
    return reply
