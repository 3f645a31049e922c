"""Keys behind a visitor's rotating personal QR code and Bluetooth token (formats: docs/kiosk-protocols.md).

The key's row id is the `person_ref` (QR) or `key_id` (Bluetooth) that travels in the code, so a
revoked key stops every code made from it and the code never carries the person's id.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from app.extensions import db
from app.models import MAX_ROW_ID, Person, PersonalCodeKey
from app.services.personal_data import keyring
from venue_kiosk import codes

KEY_CONTEXT = "personal-code-key"
PURPOSES = ("qr", "ble")


def active_key(person: Person, purpose: str, now: datetime) -> PersonalCodeKey:
    """The person's current key for `purpose`, created on first use."""
    return _current_key(person, purpose) or _new_key(person, purpose, now)


def _current_key(person: Person, purpose: str) -> PersonalCodeKey | None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown personal code purpose {purpose!r}")
    return db.session.scalar(
        select(PersonalCodeKey)
        .where(
            PersonalCodeKey.person_id == person.id,
            PersonalCodeKey.purpose == purpose,
            PersonalCodeKey.revoked_at.is_(None),
        )
        .order_by(PersonalCodeKey.id.desc())
        .limit(1)
    )


def _new_key(person: Person, purpose: str, now: datetime) -> PersonalCodeKey:
    raw = secrets.token_bytes(32)
    key = PersonalCodeKey(
        person_id=person.id,
        purpose=purpose,
        key_enc=keyring().encrypt(base64.b64encode(raw).decode(), context=KEY_CONTEXT),
        created_at=now,
    )
    db.session.add(key)
    db.session.flush()
    return key


@dataclass(frozen=True)
class BleKey:
    """A phone's Bluetooth check-in key as the city app receives it (docs/kiosk-protocols.md, section 3)."""

    key_id: int
    key: bytes
    issued_at: datetime
    replace_after: datetime
    is_new: bool


def ble_key_for_phone(person: Person, now: datetime, lifetime: timedelta, *, replace: bool = False) -> BleKey:
    """The person's Bluetooth key, replaced by a fresh one once it is `lifetime` old (or on request).

    The key_id travels in clear in every advertisement, so a listener can follow a phone for as long
    as one key lives; a phone asks again at `replace_after`. A replaced key is revoked at `now`, which
    still vouches for tokens observed before then (a kiosk that was offline sends them late).
    """
    key = _current_key(person, "ble")
    is_new = key is None or replace or key.created_at + lifetime <= now
    if is_new:
        if key is not None:
            key.revoked_at = now
        key = _new_key(person, "ble", now)
    assert key is not None
    return BleKey(key.id, key_bytes(key), key.created_at, key.created_at + lifetime, is_new)


def ble_key_issued_at(person: Person) -> datetime | None:
    """When the person's current Bluetooth key was issued; None if Bluetooth check-in is off."""
    key = _current_key(person, "ble")
    return key.created_at if key is not None else None


def key_bytes(key: PersonalCodeKey) -> bytes:
    return base64.b64decode(keyring().decrypt(key.key_enc, context=KEY_CONTEXT))


def current_qr_code(person: Person, now: datetime) -> str:
    """The personal code for the step holding `now` (what the phone shows as a QR)."""
    key = active_key(person, "qr", now)
    return codes.personal_code(key_bytes(key), key.id, now)


def key_lookup(purpose: str) -> object:
    """A `key_lookup(ref) -> bytes | None` for venue_kiosk.codes verifiers."""

    def lookup(ref: int) -> bytes | None:
        if not 0 < ref <= MAX_ROW_ID:  # codes carry 32 bits unsigned: past the id range is no key of ours
            return None
        key = db.session.get(PersonalCodeKey, ref)
        if key is None or key.purpose != purpose or key.revoked_at is not None:
            return None
        return key_bytes(key)

    return lookup


def person_for_qr_code(raw: str, now: datetime, window_steps: int = 1) -> Person | None:
    """The person whose personal QR code this is, if it is genuine and current; else None."""
    try:
        parsed = codes.parse_personal_code(raw)
    except codes.PersonalCodeError:
        return None
    verified = codes.verify_personal_code(parsed, key_lookup("qr"), now, window_steps)  # type: ignore[arg-type]
    if verified is None:
        return None
    key = db.session.get(PersonalCodeKey, verified.person_ref)
    return db.session.get(Person, key.person_id) if key is not None else None


def revoke_keys(person: Person, now: datetime, purpose: str | None = None) -> int:
    """Revoke every key of the person, or those for `purpose` (a new one is made on next use); returns how many."""
    query = select(PersonalCodeKey).where(PersonalCodeKey.person_id == person.id, PersonalCodeKey.revoked_at.is_(None))
    if purpose is not None:
        query = query.where(PersonalCodeKey.purpose == purpose)
    keys = db.session.scalars(query).all()
    for key in keys:
        key.revoked_at = now
    db.session.flush()
    return len(keys)
