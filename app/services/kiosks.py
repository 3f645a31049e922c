"""Kiosk enrolment: one-time pairing codes exchanged for a device credential."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from app.extensions import db
from app.models import KioskPairingCode
from app.services.personal_data import secret_hash

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
