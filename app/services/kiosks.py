"""Kiosk enrolment: one-time pairing codes exchanged for a device credential; listing and revoking."""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from app.errors import NotFoundError
from app.extensions import db
from app.models import MAX_ROW_ID, Entrance, Kiosk, KioskPairingCode, Venue
from app.services.personal_data import keyring, secret_hash
from venue_kiosk import codes

PAIRING_CODE_TTL = timedelta(hours=24)


def create_pairing_code(entrance_id: int, now: datetime, created_by_id: int | None = None) -> str:
    """A one-time code (shown once to the operator, stored only as a hash)."""
    code = "-".join(f"{secrets.randbelow(10_000):04d}" for _ in range(3))
    db.session.add(
        KioskPairingCode(
            entrance_id=entrance_id,
            code_hash=secret_hash(code),
            created_by_id=created_by_id,
            created_at=now,
            expires_at=now + PAIRING_CODE_TTL,
        )
    )
    db.session.flush()
    return code


def kiosks_of(organisation_id: int) -> list[tuple[Kiosk, Entrance, Venue]]:
    """Every kiosk enrolled at the organisation's entrances, newest first, with where it stands."""
    rows = db.session.execute(
        select(Kiosk, Entrance, Venue)
        .join(Entrance, Kiosk.entrance_id == Entrance.id)
        .join(Venue, Entrance.venue_id == Venue.id)
        .where(Venue.organisation_id == organisation_id)
        .order_by(Venue.name, Kiosk.id.desc())
    ).all()
    return [(kiosk, entrance, venue) for kiosk, entrance, venue in rows]


def kiosk_of(organisation_id: int, kiosk_id: int) -> Kiosk:
    if not 1 <= kiosk_id <= 2**31 - 1:  # an INTEGER column: larger ids from a URL must not reach the driver
        raise NotFoundError("No such kiosk.")
    row = db.session.execute(
        select(Kiosk)
        .join(Entrance, Kiosk.entrance_id == Entrance.id)
        .join(Venue, Entrance.venue_id == Venue.id)
        .where(Kiosk.id == kiosk_id, Venue.organisation_id == organisation_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFoundError("No such kiosk.")
    return row


def revoke_kiosk(kiosk: Kiosk, now: datetime) -> None:
    """The kiosk's credential stops working at once; it must be paired again with a new code."""
    if kiosk.revoked_at is None:
        kiosk.revoked_at = now
        db.session.flush()


def kiosk_for_code(code: str, now: datetime, *, step_s: int, window_steps: int) -> Kiosk | None:
    """The live kiosk whose rotating on-screen code this is, if the code is current (docs/kiosk-protocols.md,
    section 1); None for an unknown or revoked kiosk, a wrong MAC or a stale step.

    Raises codes.KioskCodeError when the text is not a kiosk code at all.
    """
    parsed = codes.parse_kiosk_code(code[:64])
    # The code carries 32 bits unsigned; past the id column's range it is no kiosk (and no query).
    kiosk = db.session.get(Kiosk, parsed.kiosk_id) if parsed.kiosk_id <= MAX_ROW_ID else None
    if kiosk is None or kiosk.revoked_at is not None:
        return None
    stored = keyring().decrypt(kiosk.rotation_secret_enc, context="kiosk")
    if not any(
        codes.verify_kiosk_code(code, secret, kiosk.id, now, window_steps=window_steps, step_s=step_s)
        for secret in _secret_candidates(stored)
    ):
        return None
    return kiosk


def _secret_candidates(stored: str) -> list[bytes]:
    """The MAC key as the kiosk holds it: the stored text itself, or the bytes it encodes in base64url."""
    candidates = [stored.encode()]
    try:
        decoded = base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
    except (binascii.Error, ValueError):
        return candidates
    if len(decoded) >= 16:
        candidates.append(decoded)
    return candidates
