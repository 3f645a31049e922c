"""Kiosk enrolment with a one-time pairing code, bearer authentication, heartbeats and the operators' CLI."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.errors import DomainError, NotFoundError, ValidationError
from app.extensions import db
from app.models import Entrance, Kiosk, KioskPairingCode, Venue
from app.services import audit, once
from app.services.personal_data import keyring, secret_hash

_PAIRING_DIGITS = re.compile(r"\d{12}")


class KioskUnauthorized(DomainError):
    """No valid bearer credential: the kiosk shows "revoked" and stops syncing."""

    status = 401


# --- enrolment -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrolment:
    kiosk: Kiosk
    credential: str
    rotation_secret: str  # base64url, as the kiosk stores it
    venue_name: str
    entrance_name: str


def normalise_pairing_code(raw: object) -> str:
    """ "1234 5678 9012", "123456789012" and "1234-5678-9012" are the same code."""
    digits = re.sub(r"[\s\-]", "", raw) if isinstance(raw, str) else ""
    if not _PAIRING_DIGITS.fullmatch(digits):
        raise ValidationError("A pairing code has 12 digits, like 1234-5678-9012.", field="pairing_code")
    return "-".join(digits[i : i + 4] for i in range(0, 12, 4))


def enrol(raw_code: object, now: datetime) -> Enrolment:
    """Exchange a one-time pairing code for a new kiosk's credential and rotation secret.

    The code works once and until it expires. The credential and the secret are returned only here:
    the credential is stored as a hash, the secret encrypted (the visitor pages decrypt it to verify
    the kiosk's on-screen codes).
    """
    code = normalise_pairing_code(raw_code)
    pairing = db.session.scalar(select(KioskPairingCode).where(KioskPairingCode.code_hash == secret_hash(code)))
    if pairing is None:
        raise NotFoundError("This pairing code is not known. Check the digits or ask for a new code.")
    if pairing.used_at is not None:
        raise ValidationError("This pairing code was already used. Ask the venue operator for a new one.")
    if pairing.expires_at <= now:
        raise ValidationError("This pairing code has expired. Ask the venue operator for a new one.")
    entrance, venue = db.session.execute(
        select(Entrance, Venue).join(Venue, Entrance.venue_id == Venue.id).where(Entrance.id == pairing.entrance_id)
    ).one()
    if entrance.archived_at is not None or venue.archived_at is not None:
        raise ValidationError("This entrance no longer takes check-ins.")
    # Claim the code with a guarded update so two tablets racing with one code cannot both enrol.
    if not once.claim(KioskPairingCode.used_at, pairing.id, now):
        raise ValidationError("This pairing code was already used. Ask the venue operator for a new one.")
    credential = secrets.token_urlsafe(32)
    rotation_secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    kiosk = Kiosk(
        entrance_id=entrance.id,
        name=f"{venue.name} — {entrance.name}"[:100],
        credential_hash=secret_hash(credential),
        rotation_secret_enc=keyring().encrypt(rotation_secret, context="kiosk"),
        enrolled_at=now,
        last_seen_at=now,
    )
    db.session.add(kiosk)
    db.session.flush()
    audit.record("kiosk", kiosk.id, "kiosk_enrolled", now=now, target=f"entrance:{entrance.id}")
    return Enrolment(kiosk, credential, rotation_secret, venue.name, entrance.name)


# --- authentication and heartbeats ---------------------------------------------------------------


@dataclass(frozen=True)
class KioskContext:
    """An authenticated kiosk and where it stands."""

    kiosk: Kiosk
    entrance: Entrance
    venue: Venue


def authenticate(authorization: str | None) -> KioskContext:
    """The kiosk whose credential is in an `Authorization: Bearer ...` header; 401 otherwise."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > 200:
        raise KioskUnauthorized("This request needs the kiosk's credential (Authorization: Bearer ...).")
    row = db.session.execute(
        select(Kiosk, Entrance, Venue)
        .join(Entrance, Kiosk.entrance_id == Entrance.id)
        .join(Venue, Entrance.venue_id == Venue.id)
        .where(Kiosk.credential_hash == secret_hash(credential))
    ).one_or_none()
    if row is None:
        raise KioskUnauthorized("This kiosk credential is not known. Pair the kiosk again.")
    kiosk, entrance, venue = row
    if kiosk.revoked_at is not None:
        raise KioskUnauthorized("This kiosk was revoked. Pair it again with a new code.")
    return KioskContext(kiosk, entrance, venue)


def parse_time(raw: object, field_name: str) -> datetime:
    if not isinstance(raw, str) or len(raw) > 40:
        raise ValidationError(f"{field_name} must be an ISO 8601 time with a UTC offset.", field=field_name)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{field_name} is not an ISO 8601 time.", field=field_name) from None
    if value.tzinfo is None:
        raise ValidationError(f"{field_name} must include a UTC offset.", field=field_name)
    return value


def record_heartbeat(ctx: KioskContext, body: Mapping[str, Any], now: datetime) -> None:
    """Remember when the kiosk was last heard from and what it reported (queue, inputs, version, clock)."""
    queue_length = body.get("queue_length", 0)
    if not isinstance(queue_length, int) or isinstance(queue_length, bool) or queue_length < 0:
        raise ValidationError("queue_length must be a whole number, 0 or more.", field="queue_length")
    flags = {}
    for name in ("ble_ok", "scanner_ok"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise ValidationError(f"{name} must be true or false.", field=name)
        flags[name] = value
    version = body.get("version", "")
    if not isinstance(version, str) or len(version) > 40:
        raise ValidationError("version must be a short text.", field="version")
    status: dict[str, Any] = {"queue_length": queue_length, **flags, "version": version}
    if body.get("sent_at") is not None:
        # One-way estimate (includes the network delay): enough to spot a tablet whose clock is off.
        status["clock_offset_s"] = round((now - parse_time(body["sent_at"], "sent_at")).total_seconds(), 1)
    ctx.kiosk.last_seen_at = now
    ctx.kiosk.last_status = json.dumps(status, separators=(",", ":"), ensure_ascii=False)[:500]
    db.session.flush()


# --- administration (CLI) ---------------------------------------------------------------------------


def all_kiosks() -> list[tuple[Kiosk, Entrance, Venue]]:
    rows = db.session.execute(
        select(Kiosk, Entrance, Venue)
        .join(Entrance, Kiosk.entrance_id == Entrance.id)
        .join(Venue, Entrance.venue_id == Venue.id)
        .order_by(Kiosk.id)
    ).all()
    return [(k, e, v) for k, e, v in rows]


def revoke(kiosk_id: int, now: datetime, actor_kind: str = "system", actor_id: int | None = None) -> Kiosk:
    """Stop a kiosk's credential at once (its next request gets 401); idempotent."""
    kiosk = db.session.get(Kiosk, kiosk_id)
    if kiosk is None:
        raise NotFoundError(f"No kiosk with id {kiosk_id}.")
    if kiosk.revoked_at is None:
        kiosk.revoked_at = now
        audit.record(actor_kind, actor_id, "kiosk_revoked", now=now, target=f"kiosk:{kiosk.id}")
        db.session.flush()
    return kiosk


def pairing_entrance(entrance_id: int) -> tuple[Entrance, Venue]:
    row = db.session.execute(
        select(Entrance, Venue).join(Venue, Entrance.venue_id == Venue.id).where(Entrance.id == entrance_id)
    ).one_or_none()
    if row is None:
        raise NotFoundError(f"No entrance with id {entrance_id}.")
    entrance, venue = row
    if entrance.archived_at is not None or venue.archived_at is not None:
        raise ValidationError("This entrance no longer takes check-ins.")
    return entrance, venue
