"""Phone sign-in: one-time SMS codes and the remembered devices they unlock.

Only keyed hashes of codes and device tokens are stored. Counting codes per number uses the
LoginCode rows themselves, so the limit holds across every web node. Nothing here tells a caller
whether a number belongs to a known person: a person is found or created only after a correct code.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, select, update

from app.errors import DomainError, NotFoundError, RateLimited, ValidationError
from app.extensions import db
from app.models import LoginCode, MessageChannel, MessageKind, Person, RememberedDevice
from app.services import outbox, people
from app.services.i18n import t
from app.services.personal_data import keyring, mask_phone, secret_hash

CODE_DIGITS = 6
MAX_CODE_CHARS = 16
# Writing last_used_at on every request would cost a write per check-in; once an hour is enough.
LAST_USED_GRANULARITY = timedelta(hours=1)


def setting(name: str) -> int:
    return int(current_app.config[name])


class CodeRefused(DomainError):
    """A wrong, expired, used-up or replayed code. The attempt has been counted (flushed)."""

    status = 400


class DeviceRevoked(DomainError):
    status = 401


@dataclass(frozen=True)
class CodeRequest:
    login_code: LoginCode
    masked_phone: str


def _code_hash(phone_hash: bytes, code: str) -> bytes:
    return keyring().lookup_hash(f"{phone_hash.hex()}|{code}", context="login_code")


def code_message_key(login_code_id: int) -> str:
    """The deduplication key of a code request's SMS (the message names no person: there may be none yet)."""
    return f"otp:{login_code_id}"


def request_code(raw_phone: str, now: datetime, lang: str = "ru") -> CodeRequest:
    """Queue a fresh code by SMS (first in the dispatcher's queue) for a number typed any usual way.

    The same answer for every valid number, known or not. Raises ValidationError for a bad number and
    RateLimited when the number asked for too many codes in the last hour.
    """
    phone = people.normalise_phone(raw_phone)
    phone_hash = people.phone_lookup(phone)
    recent = db.session.scalar(
        select(func.count())
        .select_from(LoginCode)
        .where(LoginCode.phone_hash == phone_hash, LoginCode.created_at > now - timedelta(hours=1))
    )
    if recent >= setting("OTP_PER_NUMBER_PER_HOUR"):
        raise RateLimited(t("too_many_codes", lang), field="phone")
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    login_code = LoginCode(
        phone_hash=phone_hash,
        # Kept so the person can be created once the code is confirmed (and not before).
        phone_enc=keyring().encrypt(phone, context=people.PHONE),
        code_hash=_code_hash(phone_hash, code),
        created_at=now,
        expires_at=now + timedelta(seconds=setting("OTP_TTL_SECONDS")),
        attempts=0,
    )
    db.session.add(login_code)
    db.session.flush()
    outbox.enqueue(
        dedup_key=code_message_key(login_code.id),
        channel=MessageChannel.SMS,
        kind=MessageKind.OTP,
        recipient=phone,
        body=t("sms_code", lang, code=code),
        now=now,
    )
    return CodeRequest(login_code, mask_phone(phone))


def confirm_code(login_code_id: Any, code: str, now: datetime) -> tuple[Person, str]:
    """Check a typed code against the code request; on success return (person, new device token).

    Each wrong guess counts against OTP_MAX_ATTEMPTS; a code works once and only until it expires.
    The caller must commit even when CodeRefused is raised, so the counted attempt sticks.
    """
    typed = "".join(ch for ch in (code or "")[:MAX_CODE_CHARS] if not ch.isspace() and ch != "-")
    if not typed.isascii() or not typed.isdigit() or len(typed) != CODE_DIGITS:
        raise ValidationError("Enter the 6 digits from the SMS.", field="code")
    if not isinstance(login_code_id, int) or isinstance(login_code_id, bool) or not 0 < login_code_id < 2**31:
        raise NotFoundError("This sign-in has expired; please ask for a new code.")
    login_code = db.session.get(LoginCode, login_code_id, with_for_update=True)
    if login_code is None:
        raise NotFoundError("This sign-in has expired; please ask for a new code.")
    if login_code.consumed_at is not None:
        raise CodeRefused("This code has already been used; please ask for a new code.", field="code")
    if login_code.expires_at <= now:
        raise CodeRefused("This code has expired; please ask for a new code.", field="code")
    if login_code.attempts >= setting("OTP_MAX_ATTEMPTS"):
        raise CodeRefused("Too many wrong codes; please ask for a new code.", field="code")
    login_code.attempts += 1
    if not hmac.compare_digest(login_code.code_hash, _code_hash(login_code.phone_hash, typed)):
        db.session.flush()
        left = setting("OTP_MAX_ATTEMPTS") - login_code.attempts
        raise CodeRefused(
            f"Wrong code; {left} attempt(s) left." if left > 0 else "Wrong code; please ask for a new code.",
            field="code",
        )
    login_code.consumed_at = now
    person = _person_for_hash(login_code, now)
    person.last_seen_at = now
    return person, remember_device(person, now)


def _person_for_hash(login_code: LoginCode, now: datetime) -> Person:
    person = db.session.scalar(select(Person).where(Person.phone_hash == login_code.phone_hash))
    if person is not None:
        return person
    if login_code.phone_enc is None:
        raise NotFoundError("This sign-in has expired; please ask for a new code.")
    phone = keyring().decrypt(login_code.phone_enc, context=people.PHONE)
    return people.get_or_create_by_phone(phone, now)[0]


def remember_device(person: Person, now: datetime) -> str:
    """A new remembered device for the person; returns the token (stored only as a hash)."""
    token = secrets.token_urlsafe(32)
    db.session.add(RememberedDevice(person_id=person.id, token_hash=secret_hash(token), created_at=now))
    db.session.flush()
    return token


def person_for_device(token: str, now: datetime) -> Person | None:
    """The person behind a device token; None if unknown; DeviceRevoked if it was signed out."""
    owner = device_owner(token, now)
    return None if owner is None else db.session.get(Person, owner.person_id)


@dataclass(frozen=True)
class DeviceOwner:
    person_id: int
    last_seen_at: datetime | None


# The device lookup in plain columns: the JSON check-in's fast path needs no ORM objects.
_devices = RememberedDevice.__table__
_people = Person.__table__
OWNER_QUERY = (
    select(
        _devices.c.id,
        _devices.c.revoked_at,
        _devices.c.last_used_at,
        _people.c.id,
        _people.c.last_seen_at,
        _devices.c.created_at,
    )
    .join(_people, _people.c.id == _devices.c.person_id)
    .where(_devices.c.token_hash == bindparam("token_hash"))
)
USED_UPDATE = update(_devices).where(_devices.c.id == bindparam("b_id")).values(last_used_at=bindparam("b_at"))


def device_owner(token: str, now: datetime) -> DeviceOwner | None:
    """Who holds the token (None if unknown); DeviceRevoked if it was signed out. Marks the device
    used, at most once per granularity."""
    if not is_device_token(token):
        return None
    connection = db.session.connection()
    owned = owner_from_row(connection.execute(OWNER_QUERY, {"token_hash": secret_hash(token)}).first(), now)
    if owned is None:
        return None
    owner, stale_device_id = owned
    if stale_device_id is not None:
        connection.execute(USED_UPDATE, {"b_id": stale_device_id, "b_at": now})
    return owner


def is_device_token(token: str) -> bool:
    """Shaped like a device token (anything else is unknown without asking the database)."""
    return bool(token) and len(token) <= 128


def owner_from_row(found: Sequence[Any] | None, now: datetime) -> tuple[DeviceOwner, int | None] | None:
    """The owner in a row of OWNER_QUERY (None: unknown token), and the device's id when its "last
    used" is due to be written (USED_UPDATE); DeviceRevoked for a signed-out device."""
    if found is None:
        return None
    device_id, revoked_at, last_used_at, person_id, last_seen_at, created_at = found
    if revoked_at is not None:
        raise DeviceRevoked("This phone was signed out. Please confirm your number again.")
    # Remembered for DEVICE_COOKIE_DAYS after the confirmed code, as the cookie and the API promise.
    if created_at < now - timedelta(days=setting("DEVICE_COOKIE_DAYS")):
        raise DeviceRevoked("This phone is no longer remembered. Please confirm your number again.")
    stale = last_used_at is None or last_used_at < now - LAST_USED_GRANULARITY
    return DeviceOwner(person_id, last_seen_at), device_id if stale else None


def devices_of(person: Person) -> list[RememberedDevice]:
    return list(
        db.session.scalars(
            select(RememberedDevice)
            .where(RememberedDevice.person_id == person.id)
            .order_by(RememberedDevice.created_at.desc())
        )
    )


def revoke_device(person: Person, device_id: int, now: datetime) -> RememberedDevice:
    device = db.session.get(RememberedDevice, device_id)
    if device is None or device.person_id != person.id:
        raise NotFoundError("No such device among yours.")
    if device.revoked_at is None:
        device.revoked_at = now
    db.session.flush()
    return device
